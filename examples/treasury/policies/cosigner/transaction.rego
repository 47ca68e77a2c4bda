# A data-driven transaction policy built from the library: what a treasury team changes lives in
# data.treasury (treasury/data.yaml); this file stays the same.
#
# Order: inconsistent or denied requests, and those over a limit over time, are rejected; outside
# business hours (or on a blackout date) everything is held for review (RETRY); otherwise the first
# matching TAP-style rule decides, and an approval records what the limits over time count.
package cosigner.transaction

import data.lib.consistency
import data.lib.destinations
import data.lib.limits
import data.lib.tap
import data.lib.time_rules
import data.lib.transfer
import rego.v1

# Every rule reads the canonical view of what the transaction moves (lib/transfer.rego), and any
# disagreement between its descriptions is a problem of its own.
tx := transfer.request

settings := data.treasury

problems contains sprintf("the transaction contradicts itself: %s", [c]) if some c in transfer.conflicts

problems contains p if some p in consistency.problems(tx)

# Every address the transaction pays: each destination, and what its raw transaction pays.
paid_to contains d.address if some d in transfer.view.destinations

paid_to contains p.address if {
	is_object(transfer.view.raw)
	some p in transfer.view.raw.pays
}

problems contains sprintf("destination %v is on the deny-list", [address]) if {
	some address in paid_to
	is_string(address)
	destinations.denied(object.get(tx, "asset", ""), address, object.get(settings, "address_lists", {}))
}

# Read with a default: `not is_string(d.address)` would be undefined under OPA, not true.
problems contains "a destination has no address: the deny-list cannot be checked" if {
	some d in transfer.view.destinations
	not is_string(object.get(d, "address", null))
}

decision := {"action": "REJECT", "reason": concat("; ", sort([p | some p in problems]))} if count(problems) > 0

decision := {"action": "RETRY", "reason": "outside business hours: held for review"} if {
	count(problems) == 0
	not open_now
}

problems contains p if some p in limits.problems(tx, over_time)

over_time := object.get(settings, "limits", [])

decision := recorded(tap.decision(tx, settings.rules)) if {
	count(problems) == 0
	open_now
}

recorded(d) := object.union(d, {"record": limits.records(tx, over_time)}) if d.action == "APPROVE"

recorded(d) := d if d.action != "APPROVE"

hours := object.get(settings, "business_hours", null)

open_now if {
	hours == null
}

open_now if {
	hours != null
	time_rules.within_business_hours(time_rules.received_ns, hours)
	zone := hours.time_zone
	not time_rules.in_blackout(time_rules.received_ns, zone, object.get(settings, "blackout_dates", []))
}
