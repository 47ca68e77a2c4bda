# What is signed is what is described. The Co-signer signs rawTx[].payload, the hash of
# rawTx[].rawTx; every other rule reads the description Fireblocks computed (destAddress,
# amountStr, destinations[]). If the two disagree — a bug upstream, a compromised workspace —
# those rules judged a transfer that is not the one being signed. This library compares them.
#
#   problems(request)   a set of strings, empty when every rawTx entry agrees with the description
#   unchecked(request)  a set of strings: why the raw transaction was not (fully) verified — no
#                       rawTx, an asset missing from the table, an operation that is not a TRANSFER
#
# Checked, by the asset's kind in data.rawtx.assets (policies/rawtx/data.json):
#   all     each payload is the hash of its rawTx: keccak-256 (Ethereum), double SHA-256 (Bitcoin)
#   eth     one unsigned transaction (legacy, EIP-2930, EIP-1559) for the asset's chain id; `to` is
#           destAddress (case-insensitive); `value` is amountStr in wei, exactly; no calldata
#   erc20   the same, except: `to` is the token's contract, `value` is 0, and the calldata is
#           transfer(recipient, amount) with recipient destAddress and amount = amountStr in the
#           token's smallest unit (its decimals), exactly
#   btc     one legacy preimage per input, all of one transaction, each signing a different input
#           with SIGHASH_ALL; every described destination is paid exactly its amount; any other
#           output is change to a key or script being signed with; at most one change output
# Not checked: the inputs' amounts (a legacy preimage does not carry them), hence the fee; that
# the inputs belong to the source vault; gas prices; access lists.
#
# Table entries: {"kind": "eth", "chain_id": "1"}, {"kind": "erc20", "chain_id": "1",
# "contract": "0x…", "decimals": 6}, {"kind": "btc", "network": "mainnet" | "testnet"}.
#
# Written so that nothing undefined can hide a problem: each set is a union of comprehensions
# (always defined), and each comparison that could be undefined is made by a helper under `not`.
package lib.rawtx

import rego.v1

default assets := {}

assets := data.rawtx.assets

checkable := {"eth", "erc20", "btc"}

problems(request) := ((shape_problems(request) | hash_problems(request)) | eth_problems(request)) | btc_problems(request)

unchecked(request) := ({"the request carries no rawTx" | not carries_raw(request)} | {msg |
	carries_raw(request)
	not checkable[kind(request)]
	msg := sprintf("asset %v is not in data.rawtx.assets: its raw transaction is not checked", [object.get(request, "asset", "<missing>")])
}) | {msg |
	carries_raw(request)
	checkable[kind(request)]
	op := object.get(request, "operation", "<missing>")
	op != "TRANSFER"
	msg := sprintf("operation %v is not a transfer: only the hashes were checked", [op])
}

# ── The request's parts ──────────────────────────────────────────────────────────────────────

asset(request) := object.get(assets, object.get(request, "asset", ""), {})

kind(request) := object.get(asset(request), "kind", "")

raw(request) := object.get(request, "rawTx", null)

entries(request) := [e | r := raw(request); is_array(r); some e in r]

carries_raw(request) if count(entries(request)) > 0

# A transfer whose raw transaction this library can compare with its description.
transfer_of(request, kinds) if {
	kinds[kind(request)]
	object.get(request, "operation", "") == "TRANSFER"
	carries_raw(request)
}

entry_hex(e) := object.get(e, "rawTx", "") if is_object(e)

destination_address(request) := object.get(request, "destAddress", "<missing>")

amount(request) := object.get(request, "amountStr", "<missing>")

same_address(a, b) if {
	is_string(a)
	is_string(b)
	lower(a) == lower(b)
}

# `units` (an integer string) is exactly `amount` (a decimal string) with `decimals` places.
same_units(units, amount, decimals) if decimal.to_units(amount, decimals) == units

shape_problems(request) := {"rawTx is not a list" | r := raw(request); r != null; not is_array(r)} | {msg |
	some i, e in entries(request)
	not well_formed(e)
	msg := sprintf("rawTx[%d] is not an object with rawTx and payload strings", [i])
}

well_formed(e) if {
	is_string(e.rawTx)
	is_string(e.payload)
}

# ── Hashes ───────────────────────────────────────────────────────────────────────────────────

hash_names := {"eth": "keccak-256", "erc20": "keccak-256", "btc": "double SHA-256"}

hash_problems(request) := {msg |
	name := hash_names[kind(request)]
	some i, e in entries(request)
	not hash_matches(kind(request), e)
	msg := sprintf("rawTx[%d]: payload is not the %s hash of its rawTx", [i, name])
}

hash_matches(k, e) if {
	well_formed(e)
	lower(trim_prefix(e.payload, "0x")) == digest(k, e.rawTx)
}

digest("eth", hex) := eth.keccak256(hex)

digest("erc20", hex) := eth.keccak256(hex)

digest("btc", hex) := btc.sha256d(hex)

# ── Ethereum and ERC-20 ──────────────────────────────────────────────────────────────────────

eth_problems(request) := ({msg |
	transfer_of(request, {"eth", "erc20"})
	n := count(entries(request))
	n != 1
	msg := sprintf("an Ethereum transaction is one rawTx entry, not %d", [n])
} | {msg |
	transfer_of(request, {"eth", "erc20"})
	tx := eth.decode_tx(entry_hex(entries(request)[0]))
	msg := sprintf("rawTx[0] is not an unsigned Ethereum transaction: %s", [tx.error])
}) | {msg |
	transfer_of(request, {"eth", "erc20"})
	tx := eth.decode_tx(entry_hex(entries(request)[0]))
	not tx.error
	some msg in eth_transaction_problems(request, tx)
}

eth_transaction_problems(request, tx) := (chain_problems(request, tx) | native_problems(request, tx)) | token_problems(request, tx)

chain_problems(request, tx) := {msg |
	want := object.get(asset(request), "chain_id", "<none in data.rawtx.assets>")
	tx.chainId != want
	msg := sprintf("rawTx[0] is for chain id %v, not %v's chain id %v", [tx.chainId, request.asset, want])
}

native_problems(request, tx) := ({msg |
	kind(request) == "eth"
	not same_address(tx.to, destination_address(request))
	msg := sprintf("rawTx[0] pays %v, not the destination %v", [tx.to, destination_address(request)])
} | {msg |
	kind(request) == "eth"
	not same_units(tx.value, amount(request), 18)
	msg := sprintf("rawTx[0] moves %v wei, not amountStr %v %v", [tx.value, amount(request), request.asset])
}) | {"rawTx[0] carries calldata: a native transfer has none" |
	kind(request) == "eth"
	tx.data != "0x"
}

token_problems(request, tx) := ({msg |
	kind(request) == "erc20"
	contract := object.get(asset(request), "contract", "<none in data.rawtx.assets>")
	not same_address(tx.to, contract)
	msg := sprintf("rawTx[0] calls %v, not the %v contract %v", [tx.to, request.asset, contract])
} | {msg |
	kind(request) == "erc20"
	tx.value != "0"
	msg := sprintf("rawTx[0] sends %v wei along with a token transfer", [tx.value])
}) | {msg |
	kind(request) == "erc20"
	some msg in call_problems(request, eth.decode_erc20(tx.data))
}

call_problems(request, call) := (({msg |
	msg := sprintf("rawTx[0]'s calldata is not an ERC-20 call: %s", [call.error])
} | {msg |
	not call.error
	call.method != "transfer"
	msg := sprintf("rawTx[0] calls %v, not transfer", [call.method])
}) | {msg |
	call.method == "transfer"
	not same_address(call.to, destination_address(request))
	msg := sprintf("rawTx[0] transfers to %v, not the destination %v", [call.to, destination_address(request)])
}) | {msg |
	call.method == "transfer"
	decimals := object.get(asset(request), "decimals", "<none in data.rawtx.assets>")
	not same_units(call.amount, amount(request), decimals)
	msg := sprintf("rawTx[0] transfers %v units, not amountStr %v %v (%v decimals)", [call.amount, amount(request), request.asset, decimals])
}

# ── Bitcoin ──────────────────────────────────────────────────────────────────────────────────

btc_problems(request) := {msg |
	transfer_of(request, {"btc"})
	network := object.get(asset(request), "network", "<none in data.rawtx.assets>")
	preimages := [decode_preimage(e, network) | some e in entries(request)]
	some msg in preimage_problems(request, preimages)
}

decode_preimage(e, network) := btc.decode_preimage(entry_hex(e), network) if is_object(e)

decode_preimage(e, _) := {"error": "not an object"} if not is_object(e)

preimage_problems(request, preimages) := decode_problems(preimages) | {msg |
	count(decode_problems(preimages)) == 0
	some msg in transaction_problems(request, preimages)
}

decode_problems(preimages) := {msg |
	some i, p in preimages
	msg := sprintf("rawTx[%d] is not a legacy Bitcoin signing preimage: %s", [i, p.error])
}

transaction_problems(request, preimages) := (signing_problems(preimages) | destination_problems(request, preimages)) | output_problems(request, preimages)

signing_problems(preimages) := (({msg |
	some i, p in preimages
	p.sighash_type != 1
	msg := sprintf("rawTx[%d] signs with sighash type %d, not SIGHASH_ALL (1): other parties could change the transaction", [i, p.sighash_type])
} | {msg |
	some i, p in preimages
	i > 0
	not same_transaction(p, preimages[0])
	msg := sprintf("rawTx[%d] is not the same transaction as rawTx[0]", [i])
}) | {msg |
	count(preimages) != count(preimages[0].inputs)
	msg := sprintf("%d rawTx entries for a transaction with %d inputs: each input is signed once", [count(preimages), count(preimages[0].inputs)])
}) | {"two rawTx entries sign the same input" |
	count({p.signing_input | some p in preimages}) != count(preimages)
}

same_transaction(a, b) if {
	a.version == b.version
	a.locktime == b.locktime
	a.outputs == b.outputs
	outpoints(a) == outpoints(b)
}

outpoints(p) := [[x.txid, x.vout, x.sequence] | some x in p.inputs]

# The described destinations: destinations[] when present, else destAddress and amountStr.
described(request) := [{"address": object.get(d, "dstAddress", object.get(d, "displayDstAddress", "<missing>")), "amount": object.get(d, "amountNativeStr", "<missing>")} |
	some d in destinations(request)
] if {
	count(destinations(request)) > 0
}

described(request) := [{"address": destination_address(request), "amount": amount(request)}] if {
	count(destinations(request)) == 0
}

destinations(request) := [d | ds := object.get(request, "destinations", []); is_array(ds); some d in ds; is_object(d)]

described_addresses(request) := {d.address | some d in described(request)}

destination_problems(request, preimages) := {msg |
	some d in described(request)
	not decimal.to_units(d.amount, 8)
	msg := sprintf("destination %v: amount %v is not a decimal of at most 8 places", [d.address, d.amount])
} | {msg |
	some address in described_addresses(request)
	paid := decimal.sum([o.value | some o in preimages[0].outputs; o.address == address])
	expected := decimal.sum([units | some d in described(request); d.address == address; units := decimal.to_units(d.amount, 8)])
	paid != expected
	msg := sprintf("rawTx pays %v %v satoshis, described as %v", [address, paid, expected])
}

output_problems(request, preimages) := {msg |
	some j, o in preimages[0].outputs
	not o.address in described_addresses(request)
	not change(o, preimages)
	msg := sprintf("output %d pays %v satoshis to %v: neither a described destination nor change to a signing key", [j, o.value, object.get(o, "address", sprintf("a %v script", [o.type]))])
} | {msg |
	outputs := count(preimages[0].outputs)
	paid := count(described_addresses(request))
	outputs > paid + 1
	msg := sprintf("%d outputs: more than the %d destinations and one change", [outputs, paid])
}

# Change goes back to what signs: the same script as a signed input's script code, or the same
# key hash in either P2PKH or P2WPKH form.
change(o, preimages) if {
	some p in preimages
	o.script_pubkey == p.inputs[p.signing_input].script_code
}

change(o, preimages) if {
	some p in preimages
	o.pubkey_hash == p.inputs[p.signing_input].pubkey_hash
}
