# Starter transaction policy: approve only what every rule allows, and say why otherwise.
#
# Limits and lists come from data.treasury (policies/treasury/data.json). Amounts are compared
# exactly with the decimal.* builtins; a limit that is not a decimal counts as exceeded.
package cosigner.transaction

import data.lib.holds
import data.lib.origin
import data.lib.rawtx
import data.lib.tap
import data.lib.transfer
import data.treasury
import rego.v1

# Every rule reads the request through the canonical view of what it moves (lib/transfer.rego):
# amountStr, destAddress, destinations[] and the raw transaction cannot say different things here.
tx := transfer.request

violations contains sprintf("the transaction contradicts itself: %s", [c]) if some c in transfer.conflicts

# Proof of origin (lib/origin.rego): with data.origin.required, only a transfer carrying a token our
# own backend signed for exactly this transfer, used by no other transaction, is approved.
violations contains sprintf("origin: %s", [p]) if {
	data.origin.required == true
	some p in origin.problems(tx)
}

# Fields are read with defaults wherever a missing one must not silence a rule: `not f(tx.x)` is
# true here when tx.x is missing, but under OPA the whole expression is undefined and the rule
# does not fire (see "Writing policies" in the README). `cosigner-guard test --mutate` checks it.

# `else` gives exactly one decision. A transfer that breaks a rule is rejected; a large one waits
# for approvers (see "Held for approval" below); the rest is approved. An approval records what
# the limits over time count (see "Limits over time" below); a rejection records nothing.
# Comparisons under `not` are made by helpers whose every argument is defined: OPA moves a call
# nested in a negated expression in front of the `not`, and an undefined result (a limit that is
# not a decimal) would then silence the rule instead of breaking the limit (open-policy-agent/opa#7558).
at_most(amount, limit) if decimal.cmp(amount, limit) <= 0

within(sent, amount, limit) if decimal.cmp(decimal.sum([sent, amount]), limit) <= 0

decision := {"action": "REJECT", "reason": concat("; ", sort(violations))} if {
	count(violations) > 0
} else := holds.decide(approval, treasury.hold_for_approval.approvals, hold_reason) if {
	needs_approval
} else := approval

approval := {"action": "APPROVE", "record": [r | some r in records]}

violations contains msg if {
	not object.get(tx, "operation", "<missing>") in treasury.allowed_operations
	msg := sprintf("operation %v is not allowed", [object.get(tx, "operation", "<missing>")])
}

violations contains msg if {
	not treasury.assets[object.get(tx, "asset", "<missing>")]
	msg := sprintf("asset %v is not on the allow-list", [object.get(tx, "asset", "<missing>")])
}

violations contains msg if {
	object.get(tx, "sourceType", "<missing>") != "VAULT"
	msg := sprintf("source type %v is not allowed: only vault accounts may send", [object.get(tx, "sourceType", "<missing>")])
}

violations contains msg if {
	tx.sourceType == "VAULT"
	not object.get(tx, "sourceId", "<missing>") in treasury.source_vaults
	msg := sprintf("source vault %v is not allowed to send automatically", [object.get(tx, "sourceId", "<missing>")])
}

violations contains "amountStr is missing or not a decimal string" if not decimal.valid(object.get(tx, "amountStr", ""))

violations contains msg if {
	limit := treasury.assets[tx.asset].max_amount
	decimal.valid(tx.amountStr)
	not at_most(tx.amountStr, limit)
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
	not at_most(tx.amountStr, limit)
	msg := sprintf("amount %v %v to a one-time address exceeds the one-time cap of %v", [tx.amountStr, tx.asset, limit])
}

# Fireblocks' own policy engine (TAP) must have allowed every destination too. A destination
# without a verdict is not allowed, and neither is a request without destinations: read with
# defaults, so a missing field cannot make the rule undefined (and silent).
violations contains msg if {
	some d in destinations
	verdict := object.get(d, "action", "<missing>")
	verdict != "ALLOW"
	msg := sprintf("destination %v was not allowed by the workspace policy (action %v)", [object.get(d, "dstAddress", "<missing>"), verdict])
}

violations contains "the request lists no destinations: the workspace policy's verdict is unknown" if count(destinations) == 0

destinations := d if {
	d := object.get(tx, "destinations", [])
	is_array(d)
} else := []

# What is signed is what is described: the server decodes each rawTx entry natively and lists
# every disagreement with the description among the transfer's conflicts (refused above) — the
# checks lib/rawtx.rego spells out in Rego, at a twentieth of the cost; tests/rawtx.rs proves the
# native check refuses everything the Rego one does. A workspace that promises to send rawTx sets
# data.rawtx.required, so a request without one — or with one that cannot be checked — is refused.
violations contains sprintf("raw transaction not verified (data.rawtx.required): %s", [u]) if {
	data.rawtx.required == true
	some u in rawtx.unchecked(tx)
}

# Limits over time. velocity.sum/count read what approved transfers recorded in a rolling window
# before this request; the server counts each transaction once (its retries and its signing stage
# add nothing) and never lets concurrent requests overrun a limit.

# The daily limit of each source vault, per asset: data.treasury.daily_limit_per_vault.
vault_key := sprintf("vault:%s:%s", [object.get(tx, "sourceId", ""), object.get(tx, "asset", "")])

violations contains msg if {
	limit := treasury.daily_limit_per_vault[tx.asset]
	decimal.valid(tx.amountStr)
	sent := velocity.sum(vault_key, "24h")
	not within(sent, tx.amountStr, limit)
	msg := sprintf("vault %v has sent %v %v in the last 24 hours: %v more exceeds its daily limit of %v", [object.get(tx, "sourceId", "<missing>"), sent, tx.asset, tx.amountStr, limit])
}

records contains {"key": vault_key, "amount": tx.amountStr} if {
	treasury.daily_limit_per_vault[tx.asset]
	decimal.valid(tx.amountStr)
}

# How many transfers to one-time addresses an hour, workspace-wide.
violations contains msg if {
	one_time
	sent := velocity.count("one-time-address", "1h")
	sent >= treasury.one_time_address.max_per_hour
	msg := sprintf("%v transfers to one-time addresses in the last hour: the limit is %v", [sent, treasury.one_time_address.max_per_hour])
}

records contains {"key": "one-time-address", "amount": "1"} if one_time

# Held for approval: a transfer worth more than data.treasury.hold_for_approval.above_usd (the
# destinations' amountUSD, Fireblocks' estimate) waits — answered RETRY — until that many
# configured approvers sign it off (`cosigner-guard holds approve`). A destination without a USD
# value is held too: unknown is not small.
needs_approval if decimal.cmp(tap.usd(tx), decimal.from_number(treasury.hold_for_approval.above_usd)) > 0

needs_approval if {
	some d in destinations
	not is_number(object.get(d, "amountUSD", null))
}

hold_reason := sprintf("the USD value of a destination is unknown: needs %v approvals", [treasury.hold_for_approval.approvals]) if {
	some d in destinations
	not is_number(object.get(d, "amountUSD", null))
} else := sprintf("%v USD is above %v USD: needs %v approvals", [tap.usd(tx), treasury.hold_for_approval.above_usd, treasury.hold_for_approval.approvals])
