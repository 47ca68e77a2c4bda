# Holding a request for people: answer RETRY with {"hold": {"approvals": N}} and the server keeps
# a hold for the transaction until N configured approvers sign it off (cosigner-guard holds
# approve). Every later request for it (retries, the signing stage) carries the hold as
# input.context.hold: {status: pending|approved|rejected|expired|cancelled, required, approvals,
# rejections, created_at, expires_at, cancelled: {at, reason} once its transaction ended in Fireblocks}.
#
#   decision := holds.decide(approval, 2, "above 100,000 USD") if needs_people
#
# The server keeps the promise whatever a policy says: nothing held is approved before its
# approvers release it, and a request moving something else than what was held is rejected.
package lib.holds

import rego.v1

hold := input.context.hold

# decide(approval, approvals, reason): `approval` (the policy's own APPROVE, records included)
# once the approvers released the hold; REJECT once one of them rejected it or it expired;
# otherwise RETRY, holding the request for `approvals` approvers.
decide(approval, approvals, reason) := approval if {
	hold.status == "approved"
} else := {"action": "REJECT", "reason": sprintf("rejected by %s: %s", [r.approver, r.reason])} if {
	hold.status == "rejected"
	r := hold.rejections[0]
} else := {"action": "REJECT", "reason": sprintf("not approved before the hold expired at %s", [hold.expires_at])} if {
	hold.status == "expired"
} else := {"action": "REJECT", "reason": sprintf("the hold was cancelled: %s", [object.get(hold, ["cancelled", "reason"], "its transaction ended")])} if {
	hold.status == "cancelled"
} else := {"action": "RETRY", "reason": reason, "hold": {"approvals": approvals}}

# pending: the request is held and waiting for approvers.
pending if hold.status == "pending"
