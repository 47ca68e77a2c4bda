package lib.time_rules_test

import data.lib.time_rules
import rego.v1

hours := {"time_zone": "Europe/Zurich", "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"], "start": "09:00", "end": "18:00"}

ns(t) := time.parse_rfc3339_ns(t)

# 2026-01-05 is a Monday; Zurich is UTC+1 in January.
test_business_hours_in_the_configured_time_zone if {
	time_rules.within_business_hours(ns("2026-01-05T08:00:00Z"), hours)
	time_rules.within_business_hours(ns("2026-01-05T16:59:59Z"), hours)
	not time_rules.within_business_hours(ns("2026-01-05T07:59:59Z"), hours)
	not time_rules.within_business_hours(ns("2026-01-05T17:00:00Z"), hours)
}

test_weekends_are_outside_business_hours if not time_rules.within_business_hours(ns("2026-01-10T10:00:00Z"), hours)

test_blackout_dates_use_the_local_date if {
	time_rules.in_blackout(ns("2026-12-24T23:30:00Z"), "Europe/Zurich", ["2026-12-25"])
	not time_rules.in_blackout(ns("2026-12-24T22:30:00Z"), "Europe/Zurich", ["2026-12-25"])
}

test_received_at_comes_from_the_request_context if {
	time_rules.received_ns == ns("2026-01-05T10:00:00.123Z") with input as {"context": {"received_at": "2026-01-05T10:00:00.123Z"}}
}
