package lib.limits_test

import data.lib.limits
import rego.v1

daily := {"name": "daily", "match": {"asset": "ETH"}, "per": ["source"], "window": "24h", "max_amount": "50"}

hourly := {"name": "hourly", "match": {"dest_address_type": "ONE_TIME"}, "window": "1h", "max_count": 2}

tx := {"asset": "ETH", "sourceType": "VAULT", "sourceId": "3", "amountStr": "50", "destAddressType": "ONE_TIME"}

# Rego unit tests run with an empty state store: nothing was sent before.
test_an_amount_up_to_the_limit_passes if count(limits.problems(tx, [daily])) == 0

test_an_amount_over_the_limit_is_a_problem if {
	limits.problems(object.union(tx, {"amountStr": "50.000000000000000001"}), [daily]) == {
		`limit "daily": 0 ETH sent in the last 24h, 50.000000000000000001 more exceeds 50`,
	}
}

test_a_missing_amount_exceeds_an_amount_limit if {
	count(limits.problems(object.remove(tx, ["amountStr"]), [daily])) == 1
}

test_a_count_limit_is_not_reached_on_an_empty_store if count(limits.problems(tx, [hourly])) == 0

test_a_count_limit_of_zero_refuses_everything if {
	limits.problems(tx, [object.union(hourly, {"max_count": 0})]) == {
		`limit "hourly": 0 transactions in the last 1h already, at most 0`,
	}
}

test_limits_that_do_not_match_are_ignored if {
	count(limits.problems(object.union(tx, {"asset": "BTC", "destAddressType": "WHITELISTED"}), [daily, hourly])) == 0
}

test_records_name_the_limit_and_its_per_values_and_amount_limits_are_per_asset if {
	limits.records(tx, [daily, hourly]) == [
		{"key": "limit:daily|source=VAULT:3|asset=ETH", "amount": "50"},
		{"key": "limit:hourly", "amount": "50"},
	]
}

test_every_per_value_is_part_of_the_key if {
	all := {"name": "all", "per": ["destination", "signer", "asset"], "window": "1h", "max_count": 1}
	limits.records(object.union(tx, {"destAddress": "0xa", "signerId": "u1"}), [all]) == [
		{"key": "limit:all|destination=0xa|signer=u1|asset=ETH", "amount": "50"},
	]
}

test_an_invalid_amount_is_recorded_as_zero if {
	limits.records(object.union(tx, {"amountStr": "x"}), [hourly]) == [{"key": "limit:hourly", "amount": "0"}]
}

# A limit per source cannot count a request that names no source: a problem, not a fresh key.
test_a_limit_per_a_field_the_request_lacks_is_a_problem if {
	limits.problems(object.remove(tx, ["sourceId"]), [daily]) == {`limit "daily" counts per source, which the request does not give`}
	count(limits.problems(object.union(tx, {"sourceType": ["VAULT"]}), [daily])) == 1
}
