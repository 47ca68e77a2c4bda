# lib.rawtx against the documented transactions and variants of each: the Fireblocks ETH example,
# a consistent 2,500 USDC transfer, and the two-input legacy BTC example of Fireblocks'
# btc_tx_validation guide. Each variant changes one thing and is re-hashed (unless the hash is
# what it breaks), so the problem it must cause is the only one.
package lib.rawtx_test

import data.lib.rawtx
import rego.v1

assets := {
	"ETH": {"kind": "eth", "chain_id": "1"},
	"USDC": {"kind": "erc20", "chain_id": "1", "contract": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "decimals": 6},
	"BTC": {"kind": "btc", "network": "mainnet"},
}

eth_request(raw) := {
	"operation": "TRANSFER", "asset": "ETH", "amountStr": "0.010000000000000000",
	"destAddress": "0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8", "rawTx": raw,
}

usdc(raw) := object.union(eth_request(raw), {"asset": "USDC", "amountStr": "2500"})

btc_request(raw) := {
	"operation": "TRANSFER", "asset": "BTC", "amountStr": "0.00087600",
	"destAddress": "1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC",
	"destinations": [{"dstAddress": "1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC", "amountNativeStr": "0.000876"}],
	"rawTx": raw,
}

problems(request) := p if {
	p := rawtx.problems(request) with data.rawtx.assets as assets
}

# Generated: each entry's payload is the hash of its rawTx unless the name says otherwise.
raw := {
	"eth_ok": [
		{"rawTx": "02ef0104843b9aca008506a0c1987d825208945dc69b1fbb13bafd09af88a782f0f285772ad5f8872386f26fc1000080c0", "payload": "77b4e74099ce90c08503c0e0bb6e672dbe1c5e3e127ce333bf22eb581cd3f6ce"},
	],
	"eth_stranger": [
		{"rawTx": "02ef0104843b9aca008506a0c1987d825208941111111111111111111111111111111111111111872386f26fc1000080c0", "payload": "e09833f805218d512027f4b67522ca5dda55248b6ae46038ec939984e82f0a22"},
	],
	"eth_one_wei_more": [
		{"rawTx": "02ef0104843b9aca008506a0c1987d825208945dc69b1fbb13bafd09af88a782f0f285772ad5f8872386f26fc1000180c0", "payload": "df1b357f4c5763532ab5a7f08d27046bb968cbaffb4fea9e0a4df2c1116c4e0b"},
	],
	"eth_chain5": [
		{"rawTx": "02ef0504843b9aca008506a0c1987d825208945dc69b1fbb13bafd09af88a782f0f285772ad5f8872386f26fc1000080c0", "payload": "7395154979a68a56dfee13b155f7ffea0078c54c38256d995d90abb9370cd14f"},
	],
	"eth_calldata": [
		{"rawTx": "02f30104843b9aca008506a0c1987d825208945dc69b1fbb13bafd09af88a782f0f285772ad5f8872386f26fc1000084deadbeefc0", "payload": "f02b7bd4dbe65105c6be1a1290181cd1d7cbeb097a3e8cc92e5e4a83b4002344"},
	],
	"usdc_ok": [
		{"rawTx": "02f86d010c843b9aca008506fc23ac0082fde894a0b86991c6218b36c1d19d4a2e9eb0ce3606eb4880b844a9059cbb0000000000000000000000005dc69b1fbb13bafd09af88a782f0f285772ad5f8000000000000000000000000000000000000000000000000000000009502f900c0", "payload": "35300173f1dbf132be4e1f1c206933d2d3083b0fe67aae8b3d6884f79a747040"},
	],
	"usdc_usdt_contract": [
		{"rawTx": "02f86d010c843b9aca008506fc23ac0082fde894dac17f958d2ee523a2206206994597c13d831ec780b844a9059cbb0000000000000000000000005dc69b1fbb13bafd09af88a782f0f285772ad5f8000000000000000000000000000000000000000000000000000000009502f900c0", "payload": "c0204ab67684c24305053b3158c3cb41e3a00b698386d57205d003e10ecbe572"},
	],
	"usdc_one_unit_more": [
		{"rawTx": "02f86d010c843b9aca008506fc23ac0082fde894a0b86991c6218b36c1d19d4a2e9eb0ce3606eb4880b844a9059cbb0000000000000000000000005dc69b1fbb13bafd09af88a782f0f285772ad5f8000000000000000000000000000000000000000000000000000000009502f901c0", "payload": "f70887b41d7baeb1cf3b815712a9f7c9c5d6ada41150bfaf7b23745ebc27c097"},
	],
	"usdc_stranger": [
		{"rawTx": "02f86d010c843b9aca008506fc23ac0082fde894a0b86991c6218b36c1d19d4a2e9eb0ce3606eb4880b844a9059cbb0000000000000000000000001111111111111111111111111111111111111111000000000000000000000000000000000000000000000000000000009502f900c0", "payload": "7aaf5882f05db6df592ec85bcf90be1c34ce8eaab250fc3a75fd3d8cc4ddb7a6"},
	],
	"usdc_approve": [
		{"rawTx": "02f86d010c843b9aca008506fc23ac0082fde894a0b86991c6218b36c1d19d4a2e9eb0ce3606eb4880b844095ea7b30000000000000000000000005dc69b1fbb13bafd09af88a782f0f285772ad5f8000000000000000000000000000000000000000000000000000000009502f900c0", "payload": "8f725a92aabc737e6c8f077fcad72c400f5c2e15f80c61f64cdfbb3b498ebf78"},
	],
	"usdc_with_value": [
		{"rawTx": "02f86d010c843b9aca008506fc23ac0082fde894a0b86991c6218b36c1d19d4a2e9eb0ce3606eb4801b844a9059cbb0000000000000000000000005dc69b1fbb13bafd09af88a782f0f285772ad5f8000000000000000000000000000000000000000000000000000000009502f900c0", "payload": "26576281b40e0eb6a19bc9f386927db8027310a1e17c9ceb5906d5b855df2ac6"},
	],
	"btc_ok": [
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "74bac76ffa277c14ba33ff1be302ed07e0a1e5dceebdc5f161df8d9d688b613c"},
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac80000000000ffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f48000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "ea70ff4dd53c7e99948ee3a27e070fe4efea2e3d9dd793eadea86cb04c8103be"},
	],
	"btc_one_sat_more": [
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0231560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2a4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "db545ed5734da527000eb4105aa21aa148261e0e801558a7551e50d30323678b"},
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac80000000000ffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f48000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffff0231560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2a4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "219cb588d368352690cf9bcbb5762278de9abbafe4fd82fc9ba001406339922e"},
	],
	"btc_stranger": [
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0230560100000000001976a914333333333333333333333333333333333333333388ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "00451c555d7f5b1cd07e97a0f8656909734990226f81cd168fb45c41924f30aa"},
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac80000000000ffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f48000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffff0230560100000000001976a914333333333333333333333333333333333333333388ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "fc985f73190b7ba8d5d6ebb75cb5ad5065387997d5e5f0a2a29788af93959937"},
	],
	"btc_extra_output": [
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0330560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac434501000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620ebe80300000000000016001422222222222222222222222222222222222222220000000001000000", "payload": "a20f17974a9417d5113a26940a0d7efe12d50230d01fb62acd9ec3ee1e2dbc18"},
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac80000000000ffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f48000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffff0330560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac434501000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620ebe80300000000000016001422222222222222222222222222222222222222220000000001000000", "payload": "30c48065b89cfca1f20a32e6f182adb2559908120c3629ad81b4ee0d8d57234b"},
	],
	"btc_change_elsewhere": [
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001422222222222222222222222222222222222222220000000001000000", "payload": "af30b36bcf9307a91a0073fd42192de5608b3312182251f3a5a28e0836de0ef7"},
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac80000000000ffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f48000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001422222222222222222222222222222222222222220000000001000000", "payload": "b18cdb556bad790cfff747f5a1f838606b46ac891b19df57e6cc6bc7ff7fd6bf"},
	],
	"btc_anyonecanpay": [
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000081000000", "payload": "76b17a691d1363fd4bcef6a749ab0697625399046e1dae352de995421b8d3ffb"},
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac80000000000ffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f48000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000081000000", "payload": "cbb1c4aa6154f0f56511c258e454d78979196528cdb17a2f01e12e377382a263"},
	],
	"btc_one_entry": [
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "74bac76ffa277c14ba33ff1be302ed07e0a1e5dceebdc5f161df8d9d688b613c"},
	],
	"btc_two_changes": [
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0330560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac10a400000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb1ba50000000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88ac0000000001000000", "payload": "b5df7620c4eccd865584b59781e50098be29e8590077dbad1ebb7a1800131533"},
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac80000000000ffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f48000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffff0330560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac10a400000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb1ba50000000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88ac0000000001000000", "payload": "b402740e5ebe645d46ecd24ec1ebde8bf34d09d210dd088dca94c80ccaddbc7e"},
	],
	"btc_mixed": [
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "74bac76ffa277c14ba33ff1be302ed07e0a1e5dceebdc5f161df8d9d688b613c"},
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac80000000000ffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f48000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2a4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "97e4516ac91f501f58c64af9f3639454edc78100a4e2b9bc78a37e8cf2c65c90"},
	],
	"btc_same_input_twice": [
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "74bac76ffa277c14ba33ff1be302ed07e0a1e5dceebdc5f161df8d9d688b613c"},
		{"rawTx": "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000", "payload": "74bac76ffa277c14ba33ff1be302ed07e0a1e5dceebdc5f161df8d9d688b613c"},
	],
}

test_documented_and_consistent_transactions_have_no_problems if {
	problems(eth_request(raw.eth_ok)) == set()
	problems(usdc(raw.usdc_ok)) == set()
	problems(btc_request(raw.btc_ok)) == set()
}

test_addresses_compare_case_insensitively if {
	problems(object.union(eth_request(raw.eth_ok), {"destAddress": "0x5DC69B1FBB13BAFD09AF88A782F0F285772AD5F8"})) == set()
}

test_a_wrong_hash_is_found if {
	wrong := [{"rawTx": raw.eth_ok[0].rawTx, "payload": raw.eth_stranger[0].payload}]
	problems(eth_request(wrong)) == {"rawTx[0]: payload is not the keccak-256 hash of its rawTx"}
	btc_wrong := [raw.btc_ok[0], {"rawTx": raw.btc_ok[1].rawTx, "payload": raw.btc_ok[0].payload}]
	problems(btc_request(btc_wrong)) == {"rawTx[1]: payload is not the double SHA-256 hash of its rawTx"}
}

test_a_payload_with_0x_and_capitals_still_matches if {
	entry := {"rawTx": raw.eth_ok[0].rawTx, "payload": concat("", ["0x", upper(raw.eth_ok[0].payload)])}
	problems(eth_request([entry])) == set()
}

test_eth_paying_a_stranger if {
	problems(eth_request(raw.eth_stranger)) == {"rawTx[0] pays 0x1111111111111111111111111111111111111111, not the destination 0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8"}
}

test_eth_one_wei_more if {
	problems(eth_request(raw.eth_one_wei_more)) == {"rawTx[0] moves 10000000000000001 wei, not amountStr 0.010000000000000000 ETH"}
}

test_eth_for_another_chain if {
	problems(eth_request(raw.eth_chain5)) == {"rawTx[0] is for chain id 5, not ETH's chain id 1"}
}

test_eth_native_transfer_with_calldata if {
	problems(eth_request(raw.eth_calldata)) == {"rawTx[0] carries calldata: a native transfer has none"}
}

test_eth_is_one_entry if {
	problems(eth_request([raw.eth_ok[0], raw.eth_ok[0]])) == {"an Ethereum transaction is one rawTx entry, not 2"}
}

test_eth_bytes_that_are_not_a_transaction if {
	bad := "00"
	problems(eth_request([{"rawTx": bad, "payload": eth.keccak256(bad)}])) == {"rawTx[0] is not an unsigned Ethereum transaction: unknown transaction type 0x00"}
}

test_malformed_entries if {
	problems(eth_request("not a list")) == {"rawTx is not a list"}
	problems(eth_request([{"rawTx": 5}])) == {
		"rawTx[0] is not an object with rawTx and payload strings",
		"rawTx[0]: payload is not the keccak-256 hash of its rawTx",
		"rawTx[0] is not an unsigned Ethereum transaction: not hex: not a string",
	}
	problems(btc_request([7])) == {
		"rawTx[0] is not an object with rawTx and payload strings",
		"rawTx[0]: payload is not the double SHA-256 hash of its rawTx",
		"rawTx[0] is not a legacy Bitcoin signing preimage: not an object",
	}
}

test_usdc_to_another_token_contract if {
	problems(usdc(raw.usdc_usdt_contract)) == {"rawTx[0] calls 0xdac17f958d2ee523a2206206994597c13d831ec7, not the USDC contract 0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"}
}

test_usdc_one_unit_more if {
	problems(usdc(raw.usdc_one_unit_more)) == {"rawTx[0] transfers 2500000001 units, not amountStr 2500 USDC (6 decimals)"}
}

test_usdc_to_a_stranger if {
	problems(usdc(raw.usdc_stranger)) == {"rawTx[0] transfers to 0x1111111111111111111111111111111111111111, not the destination 0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8"}
}

test_usdc_approve_is_not_a_transfer if {
	problems(usdc(raw.usdc_approve)) == {"rawTx[0] calls approve, not transfer"}
}

test_usdc_with_ether_attached if {
	problems(usdc(raw.usdc_with_value)) == {"rawTx[0] sends 1 wei along with a token transfer"}
}

test_usdc_without_calldata if {
	problems(usdc(raw.eth_ok)) == {
		"rawTx[0] calls 0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8, not the USDC contract 0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
		"rawTx[0] sends 10000000000000000 wei along with a token transfer",
		"rawTx[0]'s calldata is not an ERC-20 call: truncated: the function selector runs past the end of the data",
	}
}

test_a_token_missing_from_the_table_is_a_problem_not_a_pass if {
	p := rawtx.problems(usdc(raw.usdc_ok)) with data.rawtx.assets as {"USDC": {"kind": "erc20"}}
	p == {
		"rawTx[0] is for chain id 1, not USDC's chain id <none in data.rawtx.assets>",
		"rawTx[0] calls 0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48, not the USDC contract <none in data.rawtx.assets>",
		"rawTx[0] transfers 2500000000 units, not amountStr 2500 USDC (<none in data.rawtx.assets> decimals)",
	}
}

test_btc_one_satoshi_more if {
	problems(btc_request(raw.btc_one_sat_more)) == {"rawTx pays 1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC 87601 satoshis, described as 87600"}
}

test_btc_paying_a_stranger if {
	problems(btc_request(raw.btc_stranger)) == {
		"rawTx pays 1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC 0 satoshis, described as 87600",
		"output 0 pays 87600 satoshis to 15fioDrrk36NmHdRCtGTu2TMj6rPXzG3sn: neither a described destination nor change to a signing key",
	}
}

test_btc_extra_output if {
	problems(btc_request(raw.btc_extra_output)) == {
		"output 2 pays 1000 satoshis to bc1qyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zc6v074: neither a described destination nor change to a signing key",
		"3 outputs: more than the 1 destinations and one change",
	}
}

test_btc_change_to_a_key_not_signing if {
	problems(btc_request(raw.btc_change_elsewhere)) == {"output 1 pays 84267 satoshis to bc1qyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zc6v074: neither a described destination nor change to a signing key"}
}

test_btc_change_split_in_two_is_one_too_many if {
	problems(btc_request(raw.btc_two_changes)) == {"3 outputs: more than the 1 destinations and one change"}
}

test_btc_sighash_other_than_all if {
	problems(btc_request(raw.btc_anyonecanpay)) == {
		"rawTx[0] signs with sighash type 129, not SIGHASH_ALL (1): other parties could change the transaction",
		"rawTx[1] signs with sighash type 129, not SIGHASH_ALL (1): other parties could change the transaction",
	}
}

test_btc_an_input_left_unsigned if {
	problems(btc_request(raw.btc_one_entry)) == {"1 rawTx entries for a transaction with 2 inputs: each input is signed once"}
}

test_btc_preimages_of_different_transactions if {
	problems(btc_request(raw.btc_mixed)) == {"rawTx[1] is not the same transaction as rawTx[0]"}
}

test_btc_the_same_input_signed_twice if {
	problems(btc_request(raw.btc_same_input_twice)) == {"two rawTx entries sign the same input"}
}

test_btc_bytes_that_are_not_a_preimage if {
	problems(btc_request([{"rawTx": "0100", "payload": btc.sha256d("0100")}])) == {"rawTx[0] is not a legacy Bitcoin signing preimage: truncated: the version runs past the end of the data"}
}

test_btc_without_destinations_uses_dest_address if {
	problems(object.remove(btc_request(raw.btc_ok), ["destinations"])) == set()
}

test_btc_destination_amount_that_is_not_satoshis if {
	request := object.union(btc_request(raw.btc_ok), {"destinations": [{"dstAddress": "1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC", "amountNativeStr": "0.000876001"}]})
	problems(request) == {
		"destination 1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC: amount 0.000876001 is not a decimal of at most 8 places",
		"rawTx pays 1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC 87600 satoshis, described as 0",
	}
}

test_btc_network_missing_from_the_table if {
	p := rawtx.problems(btc_request(raw.btc_ok)) with data.rawtx.assets as {"BTC": {"kind": "btc"}}
	p == {
		"rawTx[0] is not a legacy Bitcoin signing preimage: the network must be \"mainnet\" or \"testnet\"",
		"rawTx[1] is not a legacy Bitcoin signing preimage: the network must be \"mainnet\" or \"testnet\"",
	}
}

test_what_is_not_checked_is_said if {
	rawtx.unchecked(object.remove(eth_request(raw.eth_ok), ["rawTx"])) == {"the request carries no rawTx"} with data.rawtx.assets as assets
	rawtx.unchecked(object.union(eth_request(raw.eth_ok), {"asset": "SOL"})) == {"asset SOL is not in data.rawtx.assets: its raw transaction is not checked"} with data.rawtx.assets as assets
	rawtx.unchecked(object.union(eth_request(raw.eth_ok), {"operation": "CONTRACT_CALL"})) == {"operation CONTRACT_CALL is not a transfer: only the hashes were checked"} with data.rawtx.assets as assets
	rawtx.unchecked(eth_request(raw.eth_ok)) == set() with data.rawtx.assets as assets
}

test_a_contract_call_is_hash_checked_only if {
	call := object.union(eth_request(raw.eth_stranger), {"operation": "CONTRACT_CALL"})
	problems(call) == set()
	wrong := object.union(call, {"rawTx": [{"rawTx": raw.eth_ok[0].rawTx, "payload": raw.eth_stranger[0].payload}]})
	problems(wrong) == {"rawTx[0]: payload is not the keccak-256 hash of its rawTx"}
}

test_an_unknown_asset_has_no_problems_only_unchecked if {
	problems(object.union(eth_request(raw.eth_stranger), {"asset": "SOL"})) == set()
}
