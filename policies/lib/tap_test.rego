# The library's TAP-style rules on a treasury team's policy: "USDC up to 1,000,000 per transaction
# to whitelisted addresses only, ETH up to 50, nothing to one-time addresses above 1,000 USD, hold
# anything larger for review" — data only, each clause at its exact boundary.
package lib.tap_test

import data.lib.tap
import rego.v1

rules := [
	{"name": "one-time up to 1,000 USD", "dest_address_type": "ONE_TIME", "max_usd": 1000, "action": "APPROVE"},
	{"name": "one-time above 1,000 USD", "dest_address_type": "ONE_TIME", "action": "REJECT", "reason": "one-time addresses only up to 1,000 USD"},
	{"name": "USDC", "asset": "USDC", "dest_address_type": "WHITELISTED", "max_amount": "1000000", "action": "APPROVE"},
	{"name": "ETH", "asset": "ETH", "dest_address_type": "WHITELISTED", "max_amount": "50", "action": "APPROVE"},
	{"name": "larger", "asset": ["USDC", "ETH"], "dest_address_type": "WHITELISTED", "action": "RETRY", "reason": "held for review"},
]

tx(asset, amount, address_type, usd) := {
	"operation": "TRANSFER", "asset": asset, "amountStr": amount,
	"sourceType": "VAULT", "sourceId": "0", "destType": "UNMANAGED", "destId": "w1",
	"destAddressType": address_type,
	"destinations": [{"amountUSD": usd, "dstSubType": "EXTERNAL", "action": "ALLOW"}],
}

test_usdc_at_the_limit_is_approved if tap.decision(tx("USDC", "1000000.000000000000000000", "WHITELISTED", 1e6), rules).action == "APPROVE"

test_usdc_one_unit_above_is_held if {
	d := tap.decision(tx("USDC", "1000000.000000000000000001", "WHITELISTED", 1e6), rules)
	d == {"action": "RETRY", "reason": "held for review"}
}

test_eth_at_50_is_approved_and_above_is_held if {
	tap.decision(tx("ETH", "50", "WHITELISTED", 1.5e5), rules).action == "APPROVE"
	tap.decision(tx("ETH", "50.000000000000000001", "WHITELISTED", 1.5e5), rules).action == "RETRY"
}

test_one_time_up_to_1000_usd_is_approved if tap.decision(tx("ETH", "0.3", "ONE_TIME", 1000), rules).action == "APPROVE"

test_one_time_above_1000_usd_is_rejected if {
	d := tap.decision(tx("ETH", "0.3", "ONE_TIME", 1000.01), rules)
	d == {"action": "REJECT", "reason": "one-time addresses only up to 1,000 USD"}
}

test_anything_else_is_rejected_by_default if {
	d := tap.decision(tx("BTC", "0.1", "WHITELISTED", 9000), rules)
	d == {"action": "REJECT", "reason": "no policy rule matches this transaction"}
}

test_the_first_matching_rule_wins_and_names_itself if {
	d := tap.decision(tx("ETH", "1", "WHITELISTED", 3000), [{"name": "first", "action": "IGNORE"}, {"name": "second", "action": "REJECT"}])
	d == {"action": "IGNORE", "reason": "matched rule first"}
}

test_source_destination_and_operation_patterns if {
	r := [{"operation": ["TRANSFER", "MINT"], "source": {"type": "VAULT", "id": "0"}, "destination": {"type": "UNMANAGED", "sub_type": "EXTERNAL"}, "action": "APPROVE"}]
	tap.decision(tx("ETH", "1", "WHITELISTED", 1), r).action == "APPROVE"
	tap.decision(object.union(tx("ETH", "1", "WHITELISTED", 1), {"sourceId": "7"}), r).action == "REJECT"
	tap.decision(object.union(tx("ETH", "1", "WHITELISTED", 1), {"operation": "RAW"}), r).action == "REJECT"
	tap.decision(object.union(tx("ETH", "1", "WHITELISTED", 1), {"destType": "EXCHANGE"}), r).action == "REJECT"
}

test_a_minimum_amount_bound if {
	r := [{"min_amount": "10", "action": "RETRY"}, {"action": "APPROVE"}]
	tap.decision(tx("ETH", "10", "WHITELISTED", 1), r).action == "RETRY"
	tap.decision(tx("ETH", "9.999999999999999999", "WHITELISTED", 1), r).action == "APPROVE"
}

test_a_bound_that_cannot_be_compared_does_not_match if {
	r := [{"max_amount": "10", "action": "APPROVE"}]
	tap.decision(tx("ETH", "lots", "WHITELISTED", 1), r).action == "REJECT"
}

# An unknown USD value is neither small nor large: a rule with a USD bound does not match it.
test_a_usd_bound_does_not_match_a_destination_without_amount_usd if {
	no_usd := json.patch(tx("ETH", "0.3", "ONE_TIME", 1000), [{"op": "remove", "path": "/destinations/0/amountUSD"}])
	tap.decision(no_usd, rules).action == "REJECT"
}

test_a_request_without_an_operation_matches_only_rules_for_any_operation if {
	r := [{"operation": "TRANSFER", "action": "APPROVE"}]
	tap.decision(object.remove(tx("ETH", "1", "WHITELISTED", 1), ["operation"]), r).action == "REJECT"
}

# A destination without dstSubType still matches a rule that does not ask for one.
test_a_destination_without_a_sub_type_matches_a_rule_for_any_sub_type if {
	no_sub_type := json.patch(tx("ETH", "1", "WHITELISTED", 1), [{"op": "remove", "path": "/destinations/0/dstSubType"}])
	tap.decision(no_sub_type, rules).action == "APPROVE"
}

# USD amounts add up exactly: 691.58 + 290.58 + 17.84 is 1,000, at the cap (the float sum is
# 1000.0000000000001, above it).
test_usd_amounts_add_up_exactly_at_the_cap if {
	split := json.patch(tx("ETH", "0.3", "ONE_TIME", 0), [{"op": "replace", "path": "/destinations", "value": [
		{"amountUSD": 691.58, "action": "ALLOW"}, {"amountUSD": 290.58, "action": "ALLOW"}, {"amountUSD": 17.84, "action": "ALLOW"},
	]}])
	sum([691.58, 290.58, 17.84]) > 1000
	tap.usd(split) == "1000"
	tap.decision(split, rules).action == "APPROVE"
}

test_a_usd_bound_that_is_not_a_number_does_not_match if {
	r := [{"max_usd": "1000", "action": "APPROVE"}]
	tap.decision(tx("ETH", "0.3", "ONE_TIME", 10), r).action == "REJECT"
}
