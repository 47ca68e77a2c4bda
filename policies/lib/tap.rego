# TAP-style rules: an ordered rule list (in data), first match wins, like Fireblocks' Transaction
# Authorization Policy. Each rule is an object; every key is optional and "*" matches anything:
#
#   name               a label, used in the default reason
#   operation          "TRANSFER", or a list of alternatives (a request without one matches only "*")
#   asset              "USDC", or a list
#   source             {"type": "VAULT", "id": "0"}
#   destination        {"type": "UNMANAGED", "id": "*", "sub_type": "EXTERNAL"}
#   dest_address_type  "WHITELISTED" or "ONE_TIME"
#   min_amount, max_amount   native amount bounds, inclusive, exact decimal strings ("1000000")
#   min_usd, max_usd         bounds on the summed destinations[].amountUSD, inclusive; a rule with
#                            one does not match a request missing an amountUSD
#   action             "APPROVE", "REJECT", "RETRY" (hold for review) or "IGNORE"
#   reason             the reason to give (default: "matched rule <name>")
package lib.tap

import rego.v1

# decision(tx, rules): the decision of the first rule that matches tx; REJECT when none does.
decision(tx, rules) := d if {
	first := min([i | some i, rule in rules; matches(rule, tx)])
	rule := rules[first]
	d := {"action": rule.action, "reason": object.get(rule, "reason", sprintf("matched rule %v", [object.get(rule, "name", first)]))}
}

decision(tx, rules) := {"action": "REJECT", "reason": "no policy rule matches this transaction"} if {
	count([i | some i, rule in rules; matches(rule, tx)]) == 0
}

matches(rule, tx) if {
	pattern(object.get(rule, "operation", "*"), object.get(tx, "operation", ""))
	pattern(object.get(rule, "asset", "*"), object.get(tx, "asset", ""))
	endpoint(object.get(rule, "source", {}), object.get(tx, "sourceType", ""), object.get(tx, "sourceId", ""), "")
	endpoint(object.get(rule, "destination", {}), object.get(tx, "destType", ""), object.get(tx, "destId", ""), dest_sub_type(tx))
	pattern(object.get(rule, "dest_address_type", "*"), object.get(tx, "destAddressType", ""))
	within_amount(rule, tx)
	within_usd(rule, tx)
}

pattern("*", _) := true

pattern(p, value) if p == value

pattern(p, value) if {
	is_array(p)
	value in p
}

endpoint(spec, type, id, sub_type) if {
	pattern(object.get(spec, "type", "*"), type)
	pattern(object.get(spec, "id", "*"), id)
	pattern(object.get(spec, "sub_type", "*"), sub_type)
}

# The first destination's sub-type, else "". Its value is bound in the body: a function whose
# value is undefined while its body holds does not reach its `else` in regorus 0.14.
dest_sub_type(tx) := sub_type if {
	ds := destinations(tx)
	count(ds) > 0
	sub_type := object.get(ds[0], "dstSubType", "")
} else := ""

# destinations[] when it is a list (iterating a number is an error here and nothing in OPA).
destinations(tx) := ds if {
	ds := object.get(tx, "destinations", [])
	is_array(ds)
} else := []

# Bounds are exact; a bound that is set but cannot be compared does not match.
within_amount(rule, tx) if {
	not_below(object.get(rule, "min_amount", null), tx.amountStr)
	not_above(object.get(rule, "max_amount", null), tx.amountStr)
}

not_below(null, _) := true

not_below(bound, amount) if decimal.cmp(amount, bound) >= 0

not_above(null, _) := true

not_above(bound, amount) if decimal.cmp(amount, bound) <= 0

# The transaction's value in USD: the sum over its destinations, as Fireblocks reports it.
# The transaction's value in USD: the exact decimal sum of its destinations' amountUSD (the float
# sum of 691.58 + 290.58 + 17.84 is 1000.0000000000001, above a 1,000 USD cap).
usd(tx) := decimal.sum([decimal.from_number(object.get(d, "amountUSD", 0)) | some d in destinations(tx)])

within_usd(rule, tx) if {
	object.get(rule, "min_usd", null) == null
	object.get(rule, "max_usd", null) == null
}

# A USD bound needs every destination's amountUSD: a missing one is not zero, it is unknown.
within_usd(rule, tx) if {
	usd_known(tx)
	not_below(usd_bound(rule, "min_usd"), usd(tx))
	not_above(usd_bound(rule, "max_usd"), usd(tx))
}

# A bound as an exact decimal; one that is not a number cannot be compared, so the rule does not match.
usd_bound(rule, key) := null if object.get(rule, key, null) == null

usd_bound(rule, key) := decimal.from_number(rule[key]) if is_number(rule[key])

usd_bound(rule, key) := "not a number" if {
	bound := object.get(rule, key, null)
	bound != null
	not is_number(bound)
}

usd_known(tx) if {
	ds := destinations(tx)
	count(ds) > 0
	count([d | some d in ds; is_number(object.get(d, "amountUSD", null))]) == count(ds)
}

