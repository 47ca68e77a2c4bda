package lib.holds_test

import data.lib.holds
import rego.v1

approval := {"action": "APPROVE", "record": [{"key": "k", "amount": "1"}]}

held(status) := {"context": {"hold": {
	"status": status, "required": 2,
	"approvals": [{"approver": "alice", "at": "2026-01-01T00:01:00.000Z"}],
	"rejections": [{"approver": "bob", "at": "2026-01-01T00:02:00.000Z", "reason": "unknown beneficiary"}],
	"created_at": "2026-01-01T00:00:00.000Z", "expires_at": "2026-01-01T00:55:00.000Z",
}}}

test_without_a_hold_the_request_is_held if {
	holds.decide(approval, 2, "big") == {"action": "RETRY", "reason": "big", "hold": {"approvals": 2}} with input as {"context": {}}
}

test_a_pending_hold_keeps_the_request_waiting if {
	d := holds.decide(approval, 2, "big") with input as held("pending")
	d.action == "RETRY"
	holds.pending with input as held("pending")
}

test_an_approved_hold_gives_the_approval_with_its_records if {
	holds.decide(approval, 2, "big") == approval with input as held("approved")
}

test_a_rejected_hold_rejects_with_who_and_why if {
	d := holds.decide(approval, 2, "big") with input as held("rejected")
	d == {"action": "REJECT", "reason": "rejected by bob: unknown beneficiary"}
}

test_an_expired_hold_rejects if {
	d := holds.decide(approval, 2, "big") with input as held("expired")
	d.action == "REJECT"
	contains(d.reason, "expired")
	not holds.pending with input as held("expired")
}

test_a_cancelled_hold_rejects_saying_why if {
	cancelled := object.union(held("cancelled"), {"context": {"hold": {"cancelled": {"at": "2026-01-01T00:03:00.000Z", "reason": "the transaction FAILED in Fireblocks"}}}})
	d := holds.decide(approval, 2, "big") with input as cancelled
	d == {"action": "REJECT", "reason": "the hold was cancelled: the transaction FAILED in Fireblocks"}
}
