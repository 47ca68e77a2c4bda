# Exact comparison of non-negative decimal strings such as Fireblocks' amountStr
# ("0.010000000000000000"): no floating point, so 18 fractional digits compare exactly.
package lib.decimal

import rego.v1

# valid(s) holds for a plain non-negative decimal string.
valid(s) if {
	is_string(s)
	regex.match(`^[0-9]+(\.[0-9]+)?$`, s)
}

# le(a, b) holds when a <= b. Undefined unless both are valid decimals.
le(a, b) if {
	valid(a)
	valid(b)
	[ia, fa] := _parts(a)
	[ib, fb] := _parts(b)
	_le_parts(ia, fa, ib, fb)
}

_le_parts(ia, _, ib, _) if count(ia) < count(ib)

_le_parts(ia, fa, ib, fb) if {
	count(ia) == count(ib)
	concat("", [ia, fa]) <= concat("", [ib, fb])
}

# Integer part without leading zeros, fraction right-padded to a common width.
_parts(s) := [trim_left(p[0], "0"), _pad(_fraction(p))] if p := split(s, ".")

_fraction(p) := p[1] if count(p) == 2

else := ""

_pad(f) := concat("", [f, substring("000000000000000000000000000000000000", 0, 36 - count(f))])
