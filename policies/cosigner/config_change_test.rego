package cosigner.config_change_test

import data.cosigner.config_change
import rego.v1

wallet := {
	"requestId": "c-1",
	"type": "UNMANAGED_WALLET",
	"extraInfo": {"subType": "EXTERNAL", "asset": "ETH", "address": "0xabc", "walletName": "w"},
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

test_governance_changes_are_left_to_human_approvers if {
	d := decide({"requestId": "c-2", "type": "ADD_USER"})
	d.action == "IGNORE"
	contains(d.reason, "ADD_USER is left to the workspace's human approvers")
}

test_other_changes_are_rejected if decide({"requestId": "c-3", "type": "ADD_NETWORK_CONNECTION"}).action == "REJECT"
