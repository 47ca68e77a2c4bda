package lib.destinations_test

import data.lib.destinations
import rego.v1

lists := {"ETH": {"allow": ["0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8"], "deny": ["0x000000000000000000000000000000000000dEaD"]}, "BTC": {"allow": ["bc1qAbC"]}}

test_evm_addresses_compare_case_insensitively if {
	destinations.allow_listed("ETH", "0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8", lists)
	destinations.denied("ETH", "0x000000000000000000000000000000000000DEAD", lists)
}

test_other_addresses_compare_exactly if {
	destinations.allow_listed("BTC", "bc1qAbC", lists)
	not destinations.allow_listed("BTC", "bc1qabc", lists)
}

test_unlisted_assets_and_addresses if {
	not destinations.allow_listed("USDC", "0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8", lists)
	not destinations.denied("ETH", "0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8", lists)
}
