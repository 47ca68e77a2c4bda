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
import rego.v1

tx := input.request

settings := data.treasury

problems contains p if some p in consistency.problems(tx)

problems contains sprintf("destination %v is on the deny-list", [tx.destAddress]) if {
	destinations.denied(tx.asset, tx.destAddress, object.get(settings, "address_lists", {}))
}

# Read with a default: `not is_string(tx.destAddress)` would be undefined under OPA, not true.
problems contains "the request gives no destAddress: the deny-list cannot be checked" if {
	not is_string(object.get(tx, "destAddress", null))
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
	not time_rules.in_blackout(time_rules.received_ns, hours.time_zone, object.get(settings, "blackout_dates", []))
}
