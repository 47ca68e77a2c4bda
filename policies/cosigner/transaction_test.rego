package cosigner.transaction_test

import data.cosigner.transaction
import rego.v1

# A transfer every rule allows; each test changes one thing.
eth := {
	"operation": "TRANSFER",
	"sourceType": "VAULT", "sourceId": "0",
	"destType": "VAULT", "destAddressType": "WHITELISTED",
	"asset": "ETH", "amountStr": "0.5",
	"destAddress": "0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8",
	"destinations": [{"dstAddress": "0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8", "amountUSD": 1500, "action": "ALLOW"}],
	"requestId": "r-1",
	"txId": "r-1",
}

# A destination says the amount the transaction says, unless a test says otherwise: the starter
# refuses a request whose descriptions disagree (lib/transfer.rego).
request(changes) := object.union(r, {"destinations": [object.union({"amountNativeStr": r.amountStr}, d) | some d in r.destinations]}) if {
	r := object.union(eth, changes)
	is_array(r.destinations)
	is_string(r.amountStr)
} else := object.union(eth, changes)

decide(changes) := d if {
	d := transaction.decision with input as {"kind": "transaction", "request": request(changes)}
}

rejected_for(changes, text) if {
	d := decide(changes)
	d.action == "REJECT"
	contains(d.reason, text)
}

test_an_allowed_transfer_is_approved_and_recorded_against_its_vault if {
	decide({}) == {"action": "APPROVE", "record": [{"key": "vault:0:ETH", "amount": "0.5"}]}
}

test_a_transfer_to_a_one_time_address_is_also_counted if {
	d := decide({"destAddressType": "ONE_TIME", "amountStr": "0.1"})
	d.action == "APPROVE"
	{"key": "one-time-address", "amount": "1"} in d.record
}

test_an_asset_without_a_daily_limit_records_nothing if {
	d := decide({"asset": "ETH", "amountStr": "x"})
	d.action == "REJECT"
	not d.record
}

test_operation_must_be_allowed if rejected_for({"operation": "RAW"}, "operation RAW is not allowed")

test_asset_must_be_on_the_allow_list if rejected_for({"asset": "DOGE"}, "asset DOGE is not on the allow-list")

test_source_must_be_a_vault if rejected_for({"sourceType": "EXCHANGE"}, "source type EXCHANGE is not allowed")

test_source_vault_must_be_listed if rejected_for({"sourceId": "9"}, "source vault 9")

test_amount_must_be_a_decimal_string if rejected_for({"amountStr": "lots"}, "amountStr is missing")

test_amount_at_the_limit_is_approved if decide({"amountStr": "10"}).action == "APPROVE"

test_amount_over_the_limit_is_rejected if rejected_for({"amountStr": "10.000000000000000001"}, "exceeds the per-transaction limit of 10")

test_one_time_address_under_the_cap_is_approved if {
	decide({"destType": "ONE_TIME_ADDRESS", "destAddressType": "ONE_TIME", "amountStr": "1"}).action == "APPROVE"
}

test_one_time_address_over_the_cap_is_rejected if {
	rejected_for({"destAddressType": "ONE_TIME", "amountStr": "1.5"}, "one-time cap of 1")
}

test_one_time_addresses_can_be_disabled if {
	d := transaction.decision with input as {"request": object.union(eth, {"destAddressType": "ONE_TIME"})}
		with data.treasury.one_time_address.allowed as false
	contains(d.reason, "transfers to one-time addresses are disabled")
}

test_one_time_asset_without_a_cap_is_capped_at_zero if {
	rejected_for({"asset": "ETH_TEST5", "destAddressType": "ONE_TIME", "amountStr": "0.1"}, "one-time cap of 0")
}

test_every_destination_must_be_allowed_by_the_workspace_policy if {
	rejected_for({"destinations": [{"dstAddress": "0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8", "action": "BLOCK"}]}, "was not allowed by the workspace policy")
}

test_all_violations_are_listed_in_order if {
	d := decide({"operation": "RAW", "asset": "DOGE"})
	d.reason == "asset DOGE is not on the allow-list; operation RAW is not allowed"
}

# Held for approval: above 100,000 USD (data.treasury.hold_for_approval), two approvers.
usdc_big := {"asset": "USDC", "amountStr": "150000", "destinations": [{"dstAddress": "0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8", "amountUSD": 150000, "action": "ALLOW"}]}

with_hold(changes, hold) := d if {
	defaults := {"required": 2, "approvals": [], "rejections": [], "expires_at": "2026-01-01T00:55:00.000Z"}
	doc := {"kind": "transaction", "request": request(changes), "context": {"hold": object.union(defaults, hold)}}
	d := transaction.decision with input as doc
}

test_a_transfer_above_100k_usd_is_held_for_two_approvals if {
	d := decide(usdc_big)
	d.action == "RETRY"
	d.hold == {"approvals": 2}
	contains(d.reason, "150000 USD is above 100000 USD")
	not d.record
}

test_exactly_100k_usd_is_not_held if {
	decide(object.union(usdc_big, {"destinations": [{"dstAddress": "0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8", "amountUSD": 100000, "action": "ALLOW"}]})).action == "APPROVE"
}

test_a_destination_without_a_usd_value_is_held if {
	decide({"destinations": [{"dstAddress": "0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8", "action": "ALLOW"}]}).hold == {"approvals": 2}
}

test_a_released_hold_approves_and_records if {
	d := with_hold(usdc_big, {"status": "approved"})
	d == {"action": "APPROVE", "record": [{"key": "vault:0:USDC", "amount": "150000"}]}
}

test_a_rejected_hold_rejects_with_the_approvers_reason if {
	d := with_hold(usdc_big, {"status": "rejected", "rejections": [{"approver": "bob", "at": "2026-01-01T00:01:00.000Z", "reason": "unknown beneficiary"}]})
	d == {"action": "REJECT", "reason": "rejected by bob: unknown beneficiary"}
}

test_a_broken_rule_rejects_even_when_approvers_released_it if {
	d := with_hold(object.union(usdc_big, {"sourceId": "9"}), {"status": "approved"})
	d.action == "REJECT"
}

# Raw transactions (lib/rawtx.rego): a workspace that promises to send them sets data.rawtx.required.
test_a_missing_raw_transaction_is_refused_when_the_workspace_promises_one if {
	d := decide({}) with data.rawtx.required as true
	d.action == "REJECT"
	d.reason == "raw transaction not verified (data.rawtx.required): the request carries no rawTx"
}

test_a_missing_raw_transaction_is_allowed_by_default if decide({}).action == "APPROVE"

test_raw_transaction_problems_are_the_reason if {
	d := decide({"rawTx": [{"rawTx": "00", "payload": "00"}]})
	d.action == "REJECT"
	contains(d.reason, "rawTx[0]: payload is not the hash of its rawTx")
}

# Destinations that are not a list are no destinations: nothing says the workspace policy allowed them.
test_destinations_that_are_not_a_list_are_refused if {
	rejected_for({"destinations": {"0": {"dstAddress": "0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8", "action": "ALLOW"}}}, "the request lists no destinations")
}

# A limit in data that is not a decimal counts as exceeded — under OPA too: the comparison is made
# by a helper with every argument defined, never nested under `not` (open-policy-agent/opa#7558).
test_a_per_transaction_limit_that_is_not_a_decimal_is_exceeded if {
	d := decide({}) with data.treasury.assets.ETH.max_amount as "ten"
	contains(d.reason, "exceeds the per-transaction limit of ten")
}

test_a_daily_limit_that_is_not_a_decimal_is_exceeded if {
	d := decide({}) with data.treasury.daily_limit_per_vault.ETH as "fifty"
	contains(d.reason, "exceeds its daily limit of fifty")
}

# Proof of origin (lib/origin.rego): off by default; with data.origin.required only a verified,
# matching, unused token lets a transfer through.
with_origin(view) := d if {
	d := transaction.decision with input as {"kind": "transaction", "request": request({}), "context": {"origin": view}}
		with data.origin.required as true
}

verified_origin := {"present": true, "verified": true, "key": "backend", "claims": {"jti": "j-1"}, "mismatches": [], "reused": false}

test_with_origin_required_a_verified_matching_unused_token_is_approved if {
	with_origin(verified_origin).action == "APPROVE"
}

test_with_origin_required_a_transfer_without_proof_is_rejected_saying_why if {
	d := with_origin({"present": false, "verified": false, "mismatches": [], "reused": false, "error": "no origin token in the carrier"})
	d.action == "REJECT"
	contains(d.reason, "origin: no valid origin token: no origin token in the carrier")
}

test_with_origin_required_a_mismatch_or_a_reuse_is_rejected if {
	contains(with_origin(object.union(verified_origin, {"mismatches": ["destination"]})).reason, "transaction's destination")
	contains(with_origin(object.union(verified_origin, {"reused": true})).reason, "already used by another transaction")
}
