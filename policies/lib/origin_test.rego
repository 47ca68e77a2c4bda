package lib.origin_test

import data.lib.origin
import rego.v1

tx := {"txId": "t-1", "asset": "ETH", "amountStr": "1"}

given(view) := {"request": tx, "context": {"origin": view}}

good := {"present": true, "verified": true, "key": "backend", "claims": {"jti": "j-1"}, "mismatches": [], "reused": false, "error": null}

test_a_verified_matching_unused_token_has_no_problems if {
	count(origin.problems(input.request)) == 0 with input as given(good)
}

test_without_a_view_the_server_inspected_nothing if {
	ps := origin.problems(input.request) with input as {"request": {"txId": "t-1"}, "context": {}}
	ps == {"the server inspected no origin token: [origin] is not configured"}
}

test_an_unverified_token_says_why if {
	view := {"present": true, "verified": false, "mismatches": [], "reused": false, "error": "the token expired 120s ago"}
	ps := origin.problems(input.request) with input as given(view)
	ps == {"no valid origin token: the token expired 120s ago"}
}

test_each_mismatch_is_named if {
	view := object.union(good, {"mismatches": ["amount", "destination"]})
	ps := origin.problems(input.request) with input as given(view)
	ps == {
		"the origin token does not match the transaction's amount",
		"the origin token does not match the transaction's destination",
	}
}

test_a_reused_token_is_a_problem if {
	ps := origin.problems(input.request) with input as given(object.union(good, {"reused": true}))
	ps == {"the origin token was already used by another transaction"}
}

test_a_view_without_its_fields_is_not_verified if {
	ps := origin.problems(input.request) with input as given({"present": true})
	ps == {"no valid origin token: unknown error"}
}
