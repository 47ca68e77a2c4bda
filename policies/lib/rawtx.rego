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
# What the checks read is taken from the request once (`facts`): every call costs the interpreter
# about a microsecond.
package lib.rawtx

import rego.v1

default assets := {}

assets := data.rawtx.assets

checkable := {"eth", "erc20", "btc"}

problems(request) := ((shape_problems(f) | hash_problems(f)) | eth_problems(f)) | btc_problems(f) if {
	f := facts(request)
}

unchecked(request) := ({"the request carries no rawTx" | count(f.entries) == 0} | {msg |
	count(f.entries) > 0
	not checkable[f.kind]
	msg := sprintf("asset %v is not in data.rawtx.assets: its raw transaction is not checked", [f.asset])
}) | {msg |
	count(f.entries) > 0
	checkable[f.kind]
	f.operation != "TRANSFER"
	msg := sprintf("operation %v is not a transfer: only the hashes were checked", [f.operation])
} if {
	f := facts(request)
}

# ── The request's parts ──────────────────────────────────────────────────────────────────────

facts(request) := {
	"asset": object.get(request, "asset", "<missing>"),
	"table": table,
	"kind": object.get(table, "kind", ""),
	"raw": raw,
	"entries": [e | is_array(raw); some e in raw],
	"operation": object.get(request, "operation", "<missing>"),
	"destination": object.get(request, "destAddress", "<missing>"),
	"amount": object.get(request, "amountStr", "<missing>"),
	"destinations": object.get(request, "destinations", []),
} if {
	table := object.get(assets, object.get(request, "asset", ""), {})
	raw := object.get(request, "rawTx", null)
}

# A transfer whose raw transaction this library can compare with its description.
transfer_of(f, kinds) if {
	kinds[f.kind]
	f.operation == "TRANSFER"
	count(f.entries) > 0
}

entry_hex(e) := object.get(e, "rawTx", "") if is_object(e)

same_address(a, b) if {
	is_string(a)
	is_string(b)
	lower(a) == lower(b)
}

# `units` (an integer string) is exactly `amount` (a decimal string) with `decimals` places.
same_units(units, amount, decimals) if decimal.to_units(amount, decimals) == units

shape_problems(f) := {"rawTx is not a list" | f.raw != null; not is_array(f.raw)} | {msg |
	some i, e in f.entries
	not well_formed(e)
	msg := sprintf("rawTx[%d] is not an object with rawTx and payload strings", [i])
}

well_formed(e) if {
	is_string(e.rawTx)
	is_string(e.payload)
}

# ── Hashes ───────────────────────────────────────────────────────────────────────────────────

hash_names := {"eth": "keccak-256", "erc20": "keccak-256", "btc": "double SHA-256"}

hash_problems(f) := {msg |
	name := hash_names[f.kind]
	some i, e in f.entries
	not hash_matches(f.kind, e)
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

eth_problems(f) := {msg |
	transfer_of(f, {"eth", "erc20"})
	n := count(f.entries)
	n != 1
	msg := sprintf("an Ethereum transaction is one rawTx entry, not %d", [n])
} | {msg |
	transfer_of(f, {"eth", "erc20"})
	some msg in transaction_problems(f, eth.decode_tx(entry_hex(f.entries[0])))
}

transaction_problems(_, tx) := {sprintf("rawTx[0] is not an unsigned Ethereum transaction: %s", [tx.error])} if tx.error

transaction_problems(f, tx) := chain_problems(f, tx) | native_problems(f, tx) if {
	not tx.error
	f.kind == "eth"
}

transaction_problems(f, tx) := chain_problems(f, tx) | token_problems(f, tx) if {
	not tx.error
	f.kind == "erc20"
}

chain_problems(f, tx) := {msg |
	want := object.get(f.table, "chain_id", "<none in data.rawtx.assets>")
	tx.chainId != want
	msg := sprintf("rawTx[0] is for chain id %v, not %v's chain id %v", [tx.chainId, f.asset, want])
}

native_problems(f, tx) := ({msg |
	not same_address(tx.to, f.destination)
	msg := sprintf("rawTx[0] pays %v, not the destination %v", [tx.to, f.destination])
} | {msg |
	not same_units(tx.value, f.amount, 18)
	msg := sprintf("rawTx[0] moves %v wei, not amountStr %v %v", [tx.value, f.amount, f.asset])
}) | {"rawTx[0] carries calldata: a native transfer has none" | tx.data != "0x"}

token_problems(f, tx) := ({msg |
	contract := object.get(f.table, "contract", "<none in data.rawtx.assets>")
	not same_address(tx.to, contract)
	msg := sprintf("rawTx[0] calls %v, not the %v contract %v", [tx.to, f.asset, contract])
} | {msg |
	tx.value != "0"
	msg := sprintf("rawTx[0] sends %v wei along with a token transfer", [tx.value])
}) | call_problems(f, eth.decode_erc20(tx.data))

call_problems(_, call) := {sprintf("rawTx[0]'s calldata is not an ERC-20 call: %s", [call.error])} if call.error

call_problems(_, call) := {sprintf("rawTx[0] calls %v, not transfer", [call.method])} if {
	not call.error
	call.method != "transfer"
}

call_problems(f, call) := {msg |
	not same_address(call.to, f.destination)
	msg := sprintf("rawTx[0] transfers to %v, not the destination %v", [call.to, f.destination])
} | {msg |
	decimals := object.get(f.table, "decimals", "<none in data.rawtx.assets>")
	not same_units(call.amount, f.amount, decimals)
	msg := sprintf("rawTx[0] transfers %v units, not amountStr %v %v (%v decimals)", [call.amount, f.amount, f.asset, decimals])
} if {
	call.method == "transfer"
}

# ── Bitcoin ──────────────────────────────────────────────────────────────────────────────────

btc_problems(f) := {msg |
	transfer_of(f, {"btc"})
	network := object.get(f.table, "network", "<none in data.rawtx.assets>")
	preimages := [decode_preimage(e, network) | some e in f.entries]
	some msg in preimage_problems(f, preimages)
}

decode_preimage(e, network) := btc.decode_preimage(entry_hex(e), network) if is_object(e)

decode_preimage(e, _) := {"error": "not an object"} if not is_object(e)

preimage_problems(f, preimages) := errors | {msg |
	count(errors) == 0
	some msg in bitcoin_problems(described(f), preimages)
} if {
	errors := {msg |
		some i, p in preimages
		msg := sprintf("rawTx[%d] is not a legacy Bitcoin signing preimage: %s", [i, p.error])
	}
}

# The described destinations: destinations[] when present, else destAddress and amountStr.
described(f) := array.concat(listed, [{"address": f.destination, "amount": f.amount} | count(listed) == 0]) if {
	listed := [{"address": object.get(d, "dstAddress", object.get(d, "displayDstAddress", "<missing>")), "amount": object.get(d, "amountNativeStr", "<missing>")} |
		is_array(f.destinations)
		some d in f.destinations
		is_object(d)
	]
}

bitcoin_problems(described, preimages) := (signing_problems(preimages) | destination_problems(described, addresses, preimages[0].outputs)) | output_problems(addresses, preimages) if {
	addresses := {d.address | some d in described}
}

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

destination_problems(described, addresses, outputs) := {msg |
	some d in described
	not decimal.to_units(d.amount, 8)
	msg := sprintf("destination %v: amount %v is not a decimal of at most 8 places", [d.address, d.amount])
} | {msg |
	some address in addresses
	paid := decimal.sum([o.value | some o in outputs; o.address == address])
	expected := decimal.sum([units | some d in described; d.address == address; units := decimal.to_units(d.amount, 8)])
	paid != expected
	msg := sprintf("rawTx pays %v %v satoshis, described as %v", [address, paid, expected])
}

output_problems(addresses, preimages) := {msg |
	some j, o in preimages[0].outputs
	not object.get(o, "address", "<none>") in addresses
	not change(o, preimages)
	msg := sprintf("output %d pays %v satoshis to %v: neither a described destination nor change to a signing key", [j, o.value, object.get(o, "address", sprintf("a %v script", [o.type]))])
} | {msg |
	outputs := count(preimages[0].outputs)
	paid := count(addresses)
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
