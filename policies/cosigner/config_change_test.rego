package cosigner.config_change_test

import data.cosigner.config_change
import rego.v1

wallet := {
	"requestId": "c-1",
	"type": "UNMANAGED_WALLET",
	"extraInfo": {"subType": "EXTERNAL", "asset": "ETH", "address": "0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8", "walletName": "w"},
}

decide(request) := d if {
	d := config_change.decision with input as {"kind": "config_change", "request": request}
}

test_whitelisting_an_allowed_wallet_is_approved if decide(wallet) == {"action": "APPROVE"}

test_whitelisting_an_unknown_asset_is_rejected if {
	d := decide(json.patch(wallet, [{"op": "replace", "path": "/extraInfo/asset", "value": "DOGE"}]))
	d.action == "REJECT"
	contains(d.reason, "whitelisting for asset DOGE is not allowed")
}

test_whitelisting_a_contract_is_rejected if {
	d := decide(json.patch(wallet, [{"op": "replace", "path": "/extraInfo/subType", "value": "CONTRACT"}]))
	contains(d.reason, "whitelisting a CONTRACT address is not allowed")
}

test_whitelisting_without_an_address_is_rejected if {
	d := decide(json.patch(wallet, [{"op": "remove", "path": "/extraInfo/address"}]))
	contains(d.reason, "the address to whitelist is missing")
}

with_address(asset, address) := json.patch(wallet, [
	{"op": "replace", "path": "/extraInfo/asset", "value": asset},
	{"op": "replace", "path": "/extraInfo/address", "value": address},
])

rejected_address(asset, address) if {
	d := decide(with_address(asset, address))
	d.action == "REJECT"
	contains(d.reason, sprintf("%v is not a valid %v address", [address, asset]))
}

test_an_address_that_is_not_a_string_of_the_assets_network_is_rejected if rejected_address("ETH", "hello")

test_a_short_ethereum_address_is_rejected if rejected_address("ETH", "0xabc")

test_an_ethereum_address_is_not_a_bitcoin_address if rejected_address("BTC", "0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8")

test_a_mainnet_address_is_not_a_testnet_address if rejected_address("BTC_TEST", "1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC")

test_a_wrong_eip55_checksum_is_rejected if rejected_address("ETH", "0x5DC69B1Fbb13Bafd09af88a782F0F285772Ad5f8")

test_a_bitcoin_legacy_address_is_approved if decide(with_address("BTC", "1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC")).action == "APPROVE"

test_a_bitcoin_segwit_address_is_approved if decide(with_address("BTC", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")).action == "APPROVE"

test_a_lowercase_token_address_is_approved if decide(with_address("USDC", "0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8")).action == "APPROVE"

test_governance_changes_are_left_to_human_approvers if {
	d := decide({"requestId": "c-2", "type": "ADD_USER"})
	d.action == "IGNORE"
	contains(d.reason, "ADD_USER is left to the workspace's human approvers")
}

test_other_changes_are_rejected if decide({"requestId": "c-3", "type": "ADD_NETWORK_CONNECTION"}).action == "REJECT"
