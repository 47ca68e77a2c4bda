# Consistency checks on a transaction request: what Fireblocks already decided, and whether the
# request's parts agree with each other. problems(tx) is the set of what is wrong.
package lib.consistency

import rego.v1

problems(tx) := {msg | some msg in all_problems(tx)}

all_problems(tx) := array.concat(tap_verdicts(tx), array.concat(id_problems(tx), sum_problems(tx)))

# Fireblocks' own policy (TAP) must have allowed every destination.
tap_verdicts(tx) := [sprintf("destination %v was not allowed by the workspace policy (%v)", [object.get(d, "dstAddress", i), d.action]) |
	some i, d in object.get(tx, "destinations", [])
	object.get(d, "action", "ALLOW") != "ALLOW"
]

# requestId equals txId, or extends it for a batch.
id_problems(tx) := ["requestId does not belong to txId"] if {
	is_string(tx.txId)
	not startswith(tx.requestId, tx.txId)
} else := []

# The destinations' native amounts must add up to the transaction amount, exactly.
sum_problems(tx) := [sprintf("destinations add up to %v, not the transaction amount %v", [total, tx.amountStr])] if {
	amounts := [a | some d in tx.destinations; a := d.amountNativeStr]
	count(amounts) > 0
	count(amounts) == count(tx.destinations)
	total := decimal.sum(amounts)
	decimal.cmp(total, tx.amountStr) != 0
} else := []
