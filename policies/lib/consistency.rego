# Consistency checks on a transaction request: what Fireblocks already decided, and whether the
# request's parts agree with each other. problems(tx) is the set of what is wrong.
package lib.consistency

import data.lib.tap
import rego.v1

problems(tx) := {msg | some msg in all_problems(tx)}

all_problems(tx) := array.concat(tap_verdicts(tx), array.concat(id_problems(tx), sum_problems(tx)))

# Fireblocks' own policy (TAP) must have allowed every destination: a destination without a
# verdict is not allowed, and a request without destinations has no verdict at all.
tap_verdicts(tx) := ["the request lists no destinations: the workspace policy's verdict is unknown"] if {
	not has_destinations(tx)
} else := [sprintf("destination %v was not allowed by the workspace policy (%v)", [object.get(d, "dstAddress", i), verdict]) |
	some i, d in tx.destinations
	verdict := object.get(d, "action", "<missing>")
	verdict != "ALLOW"
]

has_destinations(tx) if {
	is_array(tx.destinations)
	count(tx.destinations) > 0
}

# requestId equals txId, or extends it for a batch.
id_problems(tx) := ["requestId does not belong to txId"] if {
	is_string(tx.txId)
	not startswith(object.get(tx, "requestId", ""), tx.txId)
} else := []

# The destinations' native amounts must add up to the transaction amount, exactly; a destination
# without one (or with a number, or a non-decimal) cannot be added up, which is a problem too.
sum_problems(tx) := ["a destination has no amountNativeStr: the amounts cannot be added up"] if {
	some d in tap.destinations(tx)
	not is_string(object.get(d, "amountNativeStr", null))
} else := [sprintf("destinations add up to %v, not the transaction amount %v", [total, amount])] if {
	amounts := [d.amountNativeStr | some d in tap.destinations(tx)]
	count(amounts) > 0
	amount := object.get(tx, "amountStr", "<missing>")
	total := sum_of(amounts)
	not equal_amounts(total, amount)
} else := []

# Under `not`, a helper whose arguments are defined: OPA would hoist a nested decimal.cmp, and an
# undefined comparison (an amount that is not a decimal) would then silence the check.
equal_amounts(a, b) if decimal.cmp(a, b) == 0

# decimal.sum, or a word saying why there is none (so the comparison above fails, not vanishes).
sum_of(amounts) := decimal.sum(amounts) if decimal.sum(amounts)

else := "not a sum of decimals"
