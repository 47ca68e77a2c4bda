# Starter configuration-change policy: approve address whitelisting for known assets and wallet
# kinds; leave sensitive governance changes to the workspace's human approvers; reject the rest.
package cosigner.config_change

import data.treasury
import rego.v1

change := input.request

rules := treasury.config_change

default decision := {"action": "REJECT", "reason": "configuration change type is not approved automatically"}

decision := {"action": "APPROVE"} if {
	change.type == "UNMANAGED_WALLET"
	count(whitelist_violations) == 0
}

decision := {"action": "REJECT", "reason": concat("; ", sort([v | some v in whitelist_violations]))} if {
	change.type == "UNMANAGED_WALLET"
	count(whitelist_violations) > 0
}

decision := {"action": "IGNORE", "reason": sprintf("%v is left to the workspace's human approvers", [change.type])} if {
	change.type in rules.left_to_human_approvers
}

whitelist_violations contains msg if {
	not object.get(change, ["extraInfo", "asset"], "<missing>") in rules.whitelist_assets
	msg := sprintf("whitelisting for asset %v is not allowed", [object.get(change, ["extraInfo", "asset"], "<missing>")])
}

whitelist_violations contains msg if {
	not object.get(change, ["extraInfo", "subType"], "<missing>") in rules.whitelist_sub_types
	msg := sprintf("whitelisting a %v address is not allowed", [object.get(change, ["extraInfo", "subType"], "<missing>")])
}

whitelist_violations contains "the address to whitelist is missing" if {
	not is_string(object.get(change, ["extraInfo", "address"], null))
}

# The address must be one of the asset's network (data.rawtx.assets says which), checksum
# included: a typo or another chain's address is never whitelisted.
whitelist_violations contains msg if {
	address := object.get(change, ["extraInfo", "address"], null)
	is_string(address)
	asset := object.get(change, ["extraInfo", "asset"], "<missing>")
	not valid_address(asset, address)
	msg := sprintf("%v is not a valid %v address", [address, asset])
}

valid_address(asset, address) if {
	data.rawtx.assets[asset].kind in {"eth", "erc20"}
	eth.valid_address(address)
}

valid_address(asset, address) if {
	data.rawtx.assets[asset].kind == "btc"
	btc.valid_address(address, data.rawtx.assets[asset].network)
}
