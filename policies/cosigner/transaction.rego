# Starter transaction policy: approve only what every rule allows, and say why otherwise.
#
# Limits and lists come from data.treasury (policies/treasury/data.json). Amounts are compared
# exactly with the decimal.* builtins; a limit that is not a decimal counts as exceeded.
package cosigner.transaction

import data.treasury
import rego.v1

tx := input.request

# `else` gives exactly one decision, and an approval evaluates one body.
decision := {"action": "APPROVE"} if {
	count(violations) == 0
} else := {"action": "REJECT", "reason": concat("; ", sort(violations))}

violations contains msg if {
	not tx.operation in treasury.allowed_operations
	msg := sprintf("operation %v is not allowed", [object.get(tx, "operation", "<missing>")])
}

violations contains msg if {
	not treasury.assets[tx.asset]
	msg := sprintf("asset %v is not on the allow-list", [object.get(tx, "asset", "<missing>")])
}

violations contains msg if {
	not tx.sourceType == "VAULT"
	msg := sprintf("source type %v is not allowed: only vault accounts may send", [object.get(tx, "sourceType", "<missing>")])
}

violations contains msg if {
	tx.sourceType == "VAULT"
	not tx.sourceId in treasury.source_vaults
	msg := sprintf("source vault %v is not allowed to send automatically", [tx.sourceId])
}

violations contains "amountStr is missing or not a decimal string" if not decimal.valid(tx.amountStr)

violations contains msg if {
	limit := treasury.assets[tx.asset].max_amount
	decimal.valid(tx.amountStr)
	not decimal.cmp(tx.amountStr, limit) <= 0
	msg := sprintf("amount %v %v exceeds the per-transaction limit of %v", [tx.amountStr, tx.asset, limit])
}

# One-time (non-whitelisted) addresses: allowed only when enabled, and only up to a small amount.
one_time if tx.destAddressType == "ONE_TIME"

one_time if tx.destType == "ONE_TIME_ADDRESS"

violations contains "transfers to one-time addresses are disabled" if {
	one_time
	not treasury.one_time_address.allowed
}

violations contains msg if {
	one_time
	treasury.one_time_address.allowed
	limit := object.get(treasury.one_time_address.max_amount, tx.asset, "0")
	decimal.valid(tx.amountStr)
	not decimal.cmp(tx.amountStr, limit) <= 0
	msg := sprintf("amount %v %v to a one-time address exceeds the one-time cap of %v", [tx.amountStr, tx.asset, limit])
}

# Fireblocks' own policy engine (TAP) must have allowed every destination too.
violations contains msg if {
	some d in tx.destinations
	d.action != "ALLOW"
	msg := sprintf("destination %v was not allowed by the workspace policy (action %v)", [d.dstAddress, d.action])
}
