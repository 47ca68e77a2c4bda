# Limits over time, from data: each limit selects transactions like a TAP rule, counts them per a
# key built from the request, over a rolling window, and caps their sum and/or their number.
# Approved transactions are recorded once each (retries and the signing stage add nothing).
#
#   name         required, unique: part of the key (renaming a limit starts it afresh)
#   match        which transactions count: the keys of a lib.tap rule, without action
#   per          a list of "source", "destination", "asset", "signer": one count per value
#   window       rolling, a whole number and a unit: "90s", "15m", "24h", "7d"
#   max_amount   exact decimal string, inclusive; a sum of native amounts, so always per asset
#   max_count    the most transactions already approved in the window before this one is refused
#
# problems(tx, limits): what this transaction would exceed, one string per limit.
# records(tx, limits): what an approval of it must record for the limits to count it.
package lib.limits

import data.lib.tap
import rego.v1

problems(tx, limits) := (amounts | counts) | unknown if {
	# A limit counting per a field the request does not give cannot count it: refused, rather than
	# counted under a key of its own with nothing in its window.
	unknown := {msg |
		some limit in limits
		applies(limit, tx)
		some p in per(limit)
		not known(p, tx)
		msg := sprintf("limit %q counts per %v, which the request does not give", [limit.name, p])
	}
	amounts := {msg |
		some limit in limits
		applies(limit, tx)
		limit.max_amount
		msg := amount_problem(limit, tx)
	}
	counts := {msg |
		some limit in limits
		applies(limit, tx)
		limit.max_count
		msg := count_problem(limit, tx)
	}
}

records(tx, limits) := [{"key": key(limit, tx), "amount": amount(tx)} |
	some limit in limits
	applies(limit, tx)
]

# A missing amount still matches a rule without amount bounds (tap reads tx.amountStr).
applies(limit, tx) if {
	tap.matches(object.get(limit, "match", {}), object.union(tx, {"amountStr": object.get(tx, "amountStr", "")}))
}

# An invalid or missing amount exceeds every amount limit: decimal.sum is undefined, so the
# comparison cannot hold.
amount_problem(limit, tx) := msg if {
	sent := velocity.sum(key(limit, tx), limit.window)
	ceiling := limit.max_amount
	not within(sent, object.get(tx, "amountStr", ""), ceiling)
	msg := sprintf("limit %q: %v %v sent in the last %v, %v more exceeds %v", [limit.name, sent, object.get(tx, "asset", ""), limit.window, object.get(tx, "amountStr", "<missing>"), limit.max_amount])
}

count_problem(limit, tx) := msg if {
	sent := velocity.count(key(limit, tx), limit.window)
	sent >= limit.max_count
	msg := sprintf("limit %q: %v transactions in the last %v already, at most %v", [limit.name, sent, limit.window, limit.max_count])
}

# Amount limits add the asset: summing ETH with USDC means nothing.
key(limit, tx) := concat("|", array.concat([sprintf("limit:%v", [limit.name])], [part(p, tx) | some p in per(limit)]))

per(limit) := ps if {
	limit.max_amount
	ps := array.concat([p | some p in object.get(limit, "per", []); p != "asset"], ["asset"])
}

per(limit) := object.get(limit, "per", []) if not limit.max_amount

part("source", tx) := sprintf("source=%v:%v", [object.get(tx, "sourceType", ""), object.get(tx, "sourceId", "")])

part("destination", tx) := sprintf("destination=%v", [object.get(tx, "destAddress", "")])

part("asset", tx) := sprintf("asset=%v", [object.get(tx, "asset", "")])

part("signer", tx) := sprintf("signer=%v", [object.get(tx, "signerId", "")])

known("source", tx) if {
	is_string(tx.sourceType)
	is_string(tx.sourceId)
}

known("destination", tx) if is_string(tx.destAddress)

known("asset", tx) if is_string(tx.asset)

known("signer", tx) if is_string(tx.signerId)

# Under `not`, with every argument defined: OPA hoists nested calls out of a negation, and an
# undefined sum would then silence the limit instead of exceeding it.
within(sent, amount, max) if decimal.cmp(decimal.sum([sent, amount]), max) <= 0

amount(tx) := tx.amountStr if decimal.valid(tx.amountStr)

amount(tx) := "0" if not decimal.valid(object.get(tx, "amountStr", ""))
