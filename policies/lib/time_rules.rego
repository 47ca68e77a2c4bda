# Time rules on the request's receipt time (input.context.received_at), so fixtures can freeze it.
#
#   business hours  {"time_zone": "Europe/Zurich", "days": ["Monday", ..., "Friday"],
#                    "start": "09:00", "end": "18:00"}      (zero-padded 24-hour times; end exclusive)
#   blackout dates  ["2026-12-25", ...] in that time zone
package lib.time_rules

import rego.v1

# received_ns: the request's receipt time in nanoseconds since the epoch.
received_ns := time.parse_rfc3339_ns(input.context.received_at)

within_business_hours(ns, hours) if {
	tz := object.get(hours, "time_zone", "UTC")
	time.weekday([ns, tz]) in hours.days
	[h, m, _] := time.clock([ns, tz])
	# Zero-padded "HH:MM" strings compare as times.
	now := sprintf("%02d:%02d", [h, m])
	now >= hours.start
	now < hours.end
}

in_blackout(ns, tz, dates) if {
	[y, mo, d] := time.date([ns, tz])
	sprintf("%04d-%02d-%02d", [y, mo, d]) in dates
}
