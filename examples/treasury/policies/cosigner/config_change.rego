# A data-driven configuration-change policy: whitelisting approved only for allowed sub-types,
# assets and address patterns; exchange and fiat accounts only from an allow-list; every other
# change type IGNOREd (left to human approvers) or REJECTed, as data.treasury.config_changes says.
package cosigner.config_change

import rego.v1

change := input.request

rules := data.treasury.config_changes

default decision := {"action": "REJECT", "reason": "configuration change type is not approved automatically"}

decision := {"action": "APPROVE"} if {
	change.type == "UNMANAGED_WALLET"
	count(whitelisting_problems) == 0
}

decision := {"action": "REJECT", "reason": concat("; ", sort([p | some p in whitelisting_problems]))} if {
	change.type == "UNMANAGED_WALLET"
	count(whitelisting_problems) > 0
}

decision := {"action": "APPROVE"} if {
	change.type in {"EXCHANGE", "FIAT_ACCOUNT"}
	change.extraInfo.accountId in rules.accounts
}

decision := {"action": "IGNORE", "reason": sprintf("%v is left to the workspace's human approvers", [change.type])} if {
	change.type in rules.ignore
}

info := object.get(change, "extraInfo", {})

whitelisting_problems contains sprintf("whitelisting a %v address is not allowed", [object.get(info, "subType", "<missing>")]) if {
	not object.get(info, "subType", "") in rules.whitelisting.sub_types
}

whitelisting_problems contains sprintf("whitelisting for asset %v is not allowed", [object.get(info, "asset", "<missing>")]) if {
	not object.get(info, "asset", "") in object.keys(rules.whitelisting.address_patterns)
}

whitelisting_problems contains "the address does not match the asset's address pattern" if {
	pattern := rules.whitelisting.address_patterns[info.asset]
	not regex.match(pattern, object.get(info, "address", ""))
}
