//! What is signed is what is described: the starter set, served over TLS and asked with RS256
//! Co-signer JWTs, approves the documented ETH and BTC payloads and a consistent USDC transfer,
//! and rejects — naming the problem — each variant whose raw transaction, rebuilt here and
//! re-hashed, pays someone else, pays another amount, adds an output, uses another token
//! contract, or whose payload is not the hash of its bytes.

use crate::common::{Spec, TestServer, decide, payload, spawn};
use cosigner_guard::rawtx::{from_hex, keccak256, sha256d, to_hex};
use serde_json::{Value, json};

const TX: &str = "tx_sign_request";
const DEST: &str = "5dc69b1fbb13bafd09af88a782f0f285772ad5f8";
const STRANGER: &str = "1111111111111111111111111111111111111111";
const USDC: &str = "a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";
const USDT: &str = "dac17f958d2ee523a2206206994597c13d831ec7";

/// RLP, enough to build unsigned EIP-1559 transactions.
fn rlp_bytes(bytes: &[u8]) -> Vec<u8> {
    match bytes {
        [b] if *b < 0x80 => vec![*b],
        _ if bytes.len() <= 55 => [vec![0x80 + bytes.len() as u8], bytes.to_vec()].concat(),
        _ => [vec![0xb8, bytes.len() as u8], bytes.to_vec()].concat(),
    }
}

fn rlp_uint(value: u128) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    rlp_bytes(&bytes[first..])
}

fn rlp_list(items: &[Vec<u8>]) -> Vec<u8> {
    let payload = items.concat();
    assert!(payload.len() <= 255);
    let header = if payload.len() <= 55 { vec![0xc0 + payload.len() as u8] } else { vec![0xf8, payload.len() as u8] };
    [header, payload].concat()
}

/// The documented transaction's fields, with `to`, `value` and `data` chosen by the variant (and
/// gas for a token call when there is data).
fn eip1559(to: &str, value: u128, data: &[u8]) -> Vec<u8> {
    let gas = if data.is_empty() { 21_000 } else { 65_000 };
    let fields = [
        rlp_uint(1),
        rlp_uint(4),
        rlp_uint(1_000_000_000),
        rlp_uint(0x06a0c1987d),
        rlp_uint(gas),
        rlp_bytes(&from_hex(to).unwrap()),
        rlp_uint(value),
        rlp_bytes(data),
        rlp_list(&[]),
    ];
    [vec![0x02], rlp_list(&fields)].concat()
}

fn erc20_transfer(recipient: &str, amount: u128) -> Vec<u8> {
    let mut data = from_hex("a9059cbb").unwrap();
    data.extend([0; 12]);
    data.extend(from_hex(recipient).unwrap());
    data.extend([0; 16]);
    data.extend(amount.to_be_bytes());
    data
}

fn eth_entry(tx: &[u8]) -> Value {
    json!({"keyDerivationPath": "[ 44, 60, 0, 0, 0 ]", "rawTx": to_hex(tx), "payload": to_hex(&keccak256(tx))})
}

/// A variant of a payload under its own transaction id, with `changes` merged in.
fn variant(base: &Value, name: &str, changes: Value) -> Value {
    let mut request = base.clone();
    request.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
    request["txId"] = json!(format!("rawtx-{name}"));
    request["requestId"] = request["txId"].clone();
    request
}

/// Each of the BTC payload's preimages with its outputs replaced, re-hashed.
fn btc_entries(base: &Value, outputs: &str) -> Value {
    const OUTPUTS: &str = "0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb";
    let entries: Vec<Value> = base["rawTx"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let raw = entry["rawTx"].as_str().unwrap();
            assert!(raw.contains(OUTPUTS), "the documented preimage's outputs");
            let raw = from_hex(&raw.replace(OUTPUTS, outputs)).unwrap();
            json!({"keyDerivationPath": entry["keyDerivationPath"], "rawTx": to_hex(&raw), "payload": to_hex(&sha256d(&raw))})
        })
        .collect();
    Value::from(entries)
}

fn btc_output(sats: u64, script: &str) -> String {
    format!("{}{:02x}{script}", to_hex(&sats.to_le_bytes()), script.len() / 2)
}

const PAY: &str = "76a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac";
const CHANGE: &str = "001495f6fbf9976938f6bffc646adf8b54a8f70620eb";

async fn expect(server: &TestServer, name: &str, request: &Value, action: &str, reason: &str) {
    let answer = decide(server, "jwt", TX, request).await;
    let got = answer["rejectionReason"].as_str().unwrap_or_default();
    assert_eq!(answer["action"], action, "{name}: {answer}");
    assert!(got.contains(reason), "{name}: reason {got:?} should contain {reason:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn consistent_raw_transactions_are_approved() {
    let server = spawn(Spec::starter()).await;
    expect(&server, "documented ETH", &payload("eth_transfer.json"), "APPROVE", "").await;
    expect(&server, "documented BTC", &payload("btc_one_time_address.json"), "APPROVE", "").await;
    expect(&server, "consistent USDC", &payload("usdc_transfer.json"), "APPROVE", "").await;
    // The variants below are built like this: the builder reproduces the documented bytes.
    let documented = eip1559(DEST, 10_000_000_000_000_000, &[]);
    assert_eq!(eth_entry(&documented), payload("eth_transfer.json")["rawTx"][0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ethereum_raw_transaction_that_disagrees_is_rejected_naming_the_problem() {
    let server = spawn(Spec::starter()).await;
    let eth = payload("eth_transfer.json");
    let stranger = eip1559(STRANGER, 10_000_000_000_000_000, &[]);
    let cases = [
        (
            "stranger",
            json!({"rawTx": [eth_entry(&stranger)]}),
            format!("the raw transaction pays 0x{STRANGER} 0.01, described as 0"),
        ),
        (
            "one wei more",
            json!({"rawTx": [eth_entry(&eip1559(DEST, 10_000_000_000_000_001, &[]))]}),
            "the raw transaction pays 0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8 0.010000000000000001, described as 0.01".into(),
        ),
        (
            "twice the amount",
            json!({"rawTx": [eth_entry(&eip1559(DEST, 20_000_000_000_000_000, &[]))]}),
            "pays 0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8 0.02, described as 0.01".into(),
        ),
        (
            "calldata on a native transfer",
            json!({"rawTx": [eth_entry(&eip1559(DEST, 10_000_000_000_000_000, &[0xde, 0xad]))]}),
            "carries calldata".into(),
        ),
        (
            "a hash of other bytes",
            json!({"rawTx": [{"rawTx": to_hex(&eip1559(DEST, 10_000_000_000_000_000, &[])), "payload": to_hex(&keccak256(&stranger))}]}),
            "rawTx[0]: payload is not the hash of its rawTx".into(),
        ),
        ("not hex", json!({"rawTx": [{"rawTx": "0xzz", "payload": "00"}]}), "not hex".into()),
    ];
    for (name, changes, reason) in cases {
        expect(&server, name, &variant(&eth, name, changes), "REJECT", &reason).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_transfer_that_disagrees_is_rejected_naming_the_problem() {
    let server = spawn(Spec::starter()).await;
    let usdc = payload("usdc_transfer.json");
    let amount = 2_500_000_000;
    let cases = [
        (
            "another token contract",
            eip1559(USDT, 0, &erc20_transfer(DEST, amount)),
            format!("not the token contract 0x{USDC}"),
        ),
        (
            "another recipient",
            eip1559(USDC, 0, &erc20_transfer(STRANGER, amount)),
            format!("the raw transaction pays 0x{STRANGER} 2500, described as 0"),
        ),
        (
            "one unit more",
            eip1559(USDC, 0, &erc20_transfer(DEST, amount + 1)),
            "pays 0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8 2500.000001, described as 2500".into(),
        ),
        (
            "ether attached",
            eip1559(USDC, 1, &erc20_transfer(DEST, amount)),
            "sends 1 wei along with a token transfer".into(),
        ),
    ];
    let consistent =
        variant(&usdc, "consistent", json!({"rawTx": [eth_entry(&eip1559(USDC, 0, &erc20_transfer(DEST, amount)))]}));
    expect(&server, "consistent", &consistent, "APPROVE", "").await;
    for (name, tx, reason) in cases {
        expect(&server, name, &variant(&usdc, name, json!({"rawTx": [eth_entry(&tx)]})), "REJECT", &reason).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bitcoin_transaction_that_disagrees_is_rejected_naming_the_problem() {
    let server = spawn(Spec::starter()).await;
    let btc = payload("btc_one_time_address.json");
    let documented = format!("02{}{}", btc_output(87_600, PAY), btc_output(84_267, CHANGE));
    expect(
        &server,
        "rebuilt",
        &variant(&btc, "rebuilt", json!({"rawTx": btc_entries(&btc, &documented)})),
        "APPROVE",
        "",
    )
    .await;
    let stranger = "76a914333333333333333333333333333333333333333388ac";
    let cases = [
        (
            "one satoshi more",
            format!("02{}{}", btc_output(87_601, PAY), btc_output(84_266, CHANGE)),
            "the raw transaction pays 1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC 0.00087601, described as 0.000876",
        ),
        (
            "another recipient",
            format!("02{}{}", btc_output(87_600, stranger), btc_output(84_267, CHANGE)),
            "the raw transaction pays 15fioDrrk36NmHdRCtGTu2TMj6rPXzG3sn 0.000876, described as 0",
        ),
        (
            "an extra output",
            format!("03{}{}{}", btc_output(87_600, PAY), btc_output(83_267, CHANGE), btc_output(1_000, stranger)),
            "the raw transaction pays 15fioDrrk36NmHdRCtGTu2TMj6rPXzG3sn 0.00001, described as 0",
        ),
    ];
    for (name, outputs, reason) in cases {
        let request = variant(&btc, name, json!({"rawTx": btc_entries(&btc, &outputs)}));
        expect(&server, name, &request, "REJECT", reason).await;
    }
    let mut wrong_hash = btc_entries(&btc, &documented);
    wrong_hash[1]["payload"] = wrong_hash[0]["payload"].clone();
    let request = variant(&btc, "wrong hash", json!({"rawTx": wrong_hash}));
    expect(&server, "wrong hash", &request, "REJECT", "rawTx[1]: payload is not the hash of its rawTx").await;
}

/// One truth per transaction: each attack that once got through the gaps between single-field
/// checks (a reused txId, BTC destinations against amountStr, the key path that signs, change to
/// a key slipped in as an input, a contract creation) is refused on the real server, naming what
/// disagrees.
#[tokio::test(flavor = "multi_thread")]
async fn attacks_through_the_gaps_between_checks_are_refused() {
    let server = spawn(Spec::starter()).await;
    let eth = payload("eth_transfer.json");
    let btc = payload("btc_one_time_address.json");

    // H1: txId T approved for 0.01 ETH; then T again under new requestIds, 10 ETH each, consistent.
    let first = variant(&eth, "h1", json!({}));
    expect(&server, "h1 first", &first, "APPROVE", "").await;
    for n in 1..=6 {
        let mut more = first.clone();
        more["requestId"] = json!(format!("rawtx-h1-{n}"));
        more["amountStr"] = json!("10");
        more["destinations"][0]["amountNativeStr"] = json!("10");
        more["rawTx"] = json!([eth_entry(&eip1559(DEST, 10_000_000_000_000_000_000, &[]))]);
        expect(&server, "h1 reuse", &more, "REJECT", "this txId was first decided moving something else").await;
    }

    // H2: what limits read (amountStr) and what is paid must be one amount, one set of addresses.
    let stranger_script = "76a914333333333333333333333333333333333333333388ac";
    let stranger = "15fioDrrk36NmHdRCtGTu2TMj6rPXzG3sn";
    let ten_btc = format!("02{}{}", btc_output(1_000_000_000, PAY), btc_output(84_267, CHANGE));
    let mut paid_ten = variant(&btc, "h2-ten", json!({"rawTx": btc_entries(&btc, &ten_btc)}));
    paid_ten["destinations"][0]["amountNativeStr"] = json!("10");
    expect(&server, "h2 10 BTC", &paid_ten, "REJECT", "the destinations add up to 10, not amountStr 0.000876").await;

    let plus_five = format!(
        "03{}{}{}",
        btc_output(87_600, PAY),
        btc_output(84_267, CHANGE),
        btc_output(500_000_000, stranger_script)
    );
    let mut second = variant(&btc, "h2-second", json!({"rawTx": btc_entries(&btc, &plus_five)}));
    let mut extra = second["destinations"][0].clone();
    extra["dstAddress"] = json!(stranger);
    extra["displayDstAddress"] = json!(stranger);
    extra["amountNativeStr"] = json!("5");
    second["destinations"].as_array_mut().unwrap().push(extra);
    expect(&server, "h2 second destination", &second, "REJECT", "add up to 5.000876, not amountStr 0.000876").await;

    let to_stranger = format!("02{}{}", btc_output(87_600, stranger_script), btc_output(84_267, CHANGE));
    let mut swapped = variant(&btc, "h2-stranger", json!({"rawTx": btc_entries(&btc, &to_stranger)}));
    swapped["destinations"][0]["dstAddress"] = json!(stranger);
    swapped["destinations"][0]["displayDstAddress"] = json!(stranger);
    expect(&server, "h2 stranger in destinations", &swapped, "REJECT", "where destAddress says").await;

    // H3: the key path names the vault account whose key signs.
    let usdc = payload("usdc_transfer.json");
    for (name, base, path) in [
        ("h3-eth", &eth, "[ 44, 60, 7, 0, 0 ]"),
        ("h3-usdc", &usdc, "[ 44, 60, 7, 0, 0 ]"),
        ("h3-btc", &btc, "[ 44, 0, 7, 0, 0 ]"),
        ("h3-garbage", &eth, "garbage"),
    ] {
        let mut request = variant(base, name, json!({}));
        for entry in request["rawTx"].as_array_mut().unwrap() {
            entry["keyDerivationPath"] = json!(path);
        }
        let reason = if path == "garbage" { "not a BIP-44 path" } else { "vault account 7, not the source vault 0" };
        expect(&server, name, &request, "REJECT", reason).await;
    }

    // M1: an input whose script code is an attacker's key, signed through the vault's own path,
    // and the "change" paid to that key.
    let (vault, attacker) = ("95f6fbf9976938f6bffc646adf8b54a8f70620eb", "2222222222222222222222222222222222222222");
    let entries: Vec<Value> = btc["rawTx"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let mut raw =
                entry["rawTx"].as_str().unwrap().replace(&format!("160014{vault}"), &format!("160014{attacker}"));
            if i == 1 {
                raw = raw.replace(&format!("1976a914{vault}88ac"), &format!("1976a914{attacker}88ac"));
            }
            let bytes = from_hex(&raw).unwrap();
            json!({"keyDerivationPath": entry["keyDerivationPath"], "rawTx": raw, "payload": to_hex(&sha256d(&bytes))})
        })
        .collect();
    let change_to_attacker = variant(&btc, "m1", json!({"rawTx": entries}));
    expect(&server, "m1", &change_to_attacker, "REJECT", "signs an input of another key than its key path signs").await;

    // A contract creation (no `to`) described with an empty destination address.
    let creation = [
        vec![0x02],
        rlp_list(&[
            rlp_uint(1),
            rlp_uint(4),
            rlp_uint(1_000_000_000),
            rlp_uint(0x06a0c1987d),
            rlp_uint(21_000),
            rlp_bytes(&[]),
            rlp_uint(10_000_000_000_000_000),
            rlp_bytes(&[]),
            rlp_list(&[]),
        ]),
    ]
    .concat();
    let mut create = variant(&eth, "creation", json!({"destAddress": "", "rawTx": [eth_entry(&creation)]}));
    create["destinations"][0]["displayDstAddress"] = json!("");
    expect(&server, "contract creation", &create, "REJECT", "creates a contract").await;
}

/// The starter set checks raw transactions natively (the transfer view's conflicts), where
/// `lib/rawtx.rego` spells the same checks out in Rego at twenty times the cost. Over every
/// decision of the starter's fixtures and their mutants (fields removed and retyped), whenever the
/// Rego specification finds a problem the native check finds one too: replacing it loosened
/// nothing. Likewise the request every rule reads (`transfer.request`, native) is exactly the one
/// `lib/transfer_spec.rego` specifies.
#[test]
fn the_native_checks_agree_with_their_rego_specifications() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("decisions.jsonl");
    let out = std::process::Command::new(crate::common::BIN)
        .args(["test", "policies", "--mutate", "--export-decisions"])
        .arg(&export)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // The specification, asked of each decision's input: no problem, or a native conflict.
    let set = dir.path().join("policies");
    let copy = std::process::Command::new("cp").arg("-rL").arg(root.join("policies")).arg(&set).status().unwrap();
    assert!(copy.success());
    crate::common::write(
        &set.join("spec_check.rego"),
        "package spec_check\nimport rego.v1\nimport data.lib.rawtx\nimport data.lib.transfer\n\
         agrees if count(rawtx.problems(transfer.request)) == 0\n\
         agrees if count(input.context.transfer.conflicts) > 0\n\
         found := count(rawtx.problems(transfer.request))\n\
         same_request if transfer.request == data.lib.transfer_spec.request\n",
    );
    let inputs: Vec<serde_json::Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line["kind"] == "transaction")
        .map(|line| line["input"].clone())
        .collect();
    let (checked, found) = cosigner_guard::policy::on_eval_stack(move || {
        let options = cosigner_guard::policy::CompileOptions::default();
        let snapshot = cosigner_guard::policy::PolicySnapshot::load(&set, &options).unwrap();
        let mut found = 0;
        for input in &inputs {
            let value = regorus::Value::from_json_str(&input.to_string()).unwrap();
            let (agrees, _) = snapshot.eval_rule("data.spec_check.agrees", Some(value.clone()));
            assert_eq!(agrees.unwrap(), regorus::Value::Bool(true), "the native check missed a problem: {input}");
            let (same, _) = snapshot.eval_rule("data.spec_check.same_request", Some(value.clone()));
            assert_eq!(same.unwrap(), regorus::Value::Bool(true), "transfer.request is not its specification: {input}");
            let (problems, _) = snapshot.eval_rule("data.spec_check.found", Some(value));
            found += usize::from(problems.is_ok_and(|p| p != regorus::Value::from(0u64)));
        }
        (inputs.len(), found)
    })
    .unwrap();
    assert!(checked > 1000 && found > 50, "{checked} decisions, {found} with a problem the specification found");
}
