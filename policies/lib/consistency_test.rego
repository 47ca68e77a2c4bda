package lib.consistency_test

import data.lib.consistency
import rego.v1

tx := {
	"txId": "t1", "requestId": "t1", "amountStr": "0.010000000000000000",
	"destinations": [{"dstAddress": "0xa", "amountNativeStr": "0.004", "action": "ALLOW"}, {"dstAddress": "0xb", "amountNativeStr": "0.006", "action": "ALLOW"}],
}

test_a_consistent_request_has_no_problems if count(consistency.problems(tx)) == 0

test_a_batch_request_id_extends_the_tx_id if count(consistency.problems(object.union(tx, {"requestId": "t1-2"}))) == 0

test_a_foreign_request_id_is_a_problem if "requestId does not belong to txId" in consistency.problems(object.union(tx, {"requestId": "other"}))

test_destinations_must_add_up_exactly if {
	bad := json.patch(tx, [{"op": "replace", "path": "/destinations/1/amountNativeStr", "value": "0.006000000000000001"}])
	"destinations add up to 0.010000000000000001, not the transaction amount 0.010000000000000000" in consistency.problems(bad)
}

test_every_destination_must_be_allowed_by_tap if {
	bad := json.patch(tx, [{"op": "replace", "path": "/destinations/0/action", "value": "BLOCK"}])
	"destination 0xa was not allowed by the workspace policy (BLOCK)" in consistency.problems(bad)
}

# Missing fields are problems, not silence (`cosigner-guard test --mutate` checks every field).
test_a_destination_without_a_verdict_is_not_allowed if {
	bad := json.patch(tx, [{"op": "remove", "path": "/destinations/0/action"}])
	"destination 0xa was not allowed by the workspace policy (<missing>)" in consistency.problems(bad)
}

test_a_request_without_destinations_has_no_verdict if {
	"the request lists no destinations: the workspace policy's verdict is unknown" in consistency.problems(object.remove(tx, ["destinations"]))
	"the request lists no destinations: the workspace policy's verdict is unknown" in consistency.problems(object.union(tx, {"destinations": []}))
}

test_a_destination_amount_that_is_missing_or_a_number_cannot_be_added_up if {
	missing := json.patch(tx, [{"op": "remove", "path": "/destinations/1/amountNativeStr"}])
	"a destination has no amountNativeStr: the amounts cannot be added up" in consistency.problems(missing)
	number := json.patch(tx, [{"op": "replace", "path": "/destinations/1/amountNativeStr", "value": 0.006}])
	"a destination has no amountNativeStr: the amounts cannot be added up" in consistency.problems(number)
}

test_amounts_that_are_not_decimals_do_not_add_up if {
	bad := json.patch(tx, [{"op": "replace", "path": "/destinations/1/amountNativeStr", "value": "six"}])
	"destinations add up to not a sum of decimals, not the transaction amount 0.010000000000000000" in consistency.problems(bad)
}
