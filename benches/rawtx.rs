//! What checking a raw transaction against its description costs a request:
//!
//! - `decode`: the builtins' work alone — hex, hash and decode of every `rawTx` entry;
//! - `check`: evaluating `lib.rawtx.problems(input.request)` (decoding included), against `none`,
//!   the same policy approving without looking.
//!
//! On the documented ETH transfer, the consistent USDC transfer, the documented two-input BTC
//! transfer and the same BTC transfer spending 50 inputs (50 preimages of ~2.2 KB each).
//!
//!     cargo bench --bench rawtx
#![allow(clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cosigner_guard::envelope::Mode;
use cosigner_guard::policy::{CompileOptions, PolicySnapshot, RequestContext, input_document};
use cosigner_guard::rawtx::{btc, eth, from_hex, keccak256, sha256d, to_hex};
use cosigner_guard::request::RequestKind;
use cosigner_guard::transfer::Transfer;
use divan::{Bencher, black_box};
use serde::Deserialize;
use serde_json::{Value, json};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

const PAYLOADS: [&str; 4] = ["eth", "erc20", "btc_2_inputs", "btc_50_inputs"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(root().join("policies/payloads").join(name)).expect("payload")).expect("json")
}

fn payload(name: &str) -> Value {
    match name {
        "eth" => read("eth_transfer.json"),
        "erc20" => read("usdc_transfer.json"),
        "btc_2_inputs" => read("btc_one_time_address.json"),
        "btc_50_inputs" => btc_with_inputs(50),
        other => panic!("{other}"),
    }
}

/// The documented BTC transfer's outputs, spending `n` inputs of the same key: one preimage each.
fn btc_with_inputs(n: usize) -> Value {
    let script_code = "1976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88ac";
    let outputs = "0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb";
    let entries: Vec<Value> = (0..n)
        .map(|signing| {
            let mut hex = format!("01000000{n:02x}");
            for input in 0..n {
                let script = if input == signing { script_code } else { "00" };
                hex.push_str(&format!("{input:064x}00000000{script}ffffffff"));
            }
            hex.push_str(outputs);
            hex.push_str("0000000001000000");
            let bytes = from_hex(&hex).expect("hex");
            json!({"keyDerivationPath": "[ 44, 0, 0, 0, 0 ]", "rawTx": hex, "payload": to_hex(&sha256d(&bytes))})
        })
        .collect();
    let mut request = read("btc_one_time_address.json");
    request["rawTx"] = Value::from(entries);
    request
}

fn decode_all(request: &Value) {
    let network = btc::Network::Mainnet;
    for entry in request["rawTx"].as_array().expect("rawTx") {
        let bytes = from_hex(entry["rawTx"].as_str().expect("hex")).expect("hex");
        if request["asset"] == "BTC" {
            black_box(sha256d(&bytes));
            black_box(btc::decode_preimage(&bytes, network).expect("preimage"));
        } else {
            black_box(keccak256(&bytes));
            let tx = eth::decode_transaction(&bytes).expect("transaction");
            if tx.data != "0x" {
                black_box(eth::decode_erc20(&from_hex(&tx.data).expect("hex")).expect("call"));
            }
        }
    }
}

#[divan::bench(args = PAYLOADS)]
fn decode(bencher: Bencher, name: &str) {
    let request = payload(name);
    bencher.bench(|| decode_all(black_box(&request)));
}

fn snapshot(rego: &str) -> Arc<PolicySnapshot> {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["lib/rawtx.rego", "rawtx/data.json"] {
        std::fs::create_dir_all(dir.path().join(file).parent().expect("parent")).expect("mkdir");
        std::fs::copy(root().join("policies").join(file), dir.path().join(file)).expect("copy");
    }
    std::fs::create_dir_all(dir.path().join("cosigner")).expect("mkdir");
    std::fs::write(dir.path().join("cosigner/transaction.rego"), rego).expect("write");
    std::fs::write(
        dir.path().join("cosigner/config_change.rego"),
        "package cosigner.config_change\nimport rego.v1\ndecision := {\"action\": \"APPROVE\"}\n",
    )
    .expect("write");
    let options = CompileOptions { load_timeout: Duration::from_secs(60), ..CompileOptions::default() };
    Arc::new(PolicySnapshot::load(dir.path(), &options).expect("policies"))
}

const CHECKED: &str = "package cosigner.transaction\nimport data.lib.rawtx\nimport rego.v1\n\n\
    decision := {\"action\": \"APPROVE\"} if count(rawtx.problems(input.request)) == 0\n";
const UNCHECKED: &str = "package cosigner.transaction\nimport rego.v1\n\ndecision := {\"action\": \"APPROVE\"}\n";

fn evaluate(bencher: Bencher, rego: &str, name: &str) {
    let snapshot = snapshot(rego);
    let Value::Object(request) = payload(name) else { panic!("an object") };
    let context = RequestContext { received_at: Utc::now(), mode: Mode::Json, cosigner_key: None, origin: None };
    let input =
        regorus::Value::deserialize(&input_document(RequestKind::Transaction, request, &context, None, None, None))
            .expect("input");
    let decision = snapshot.evaluate(RequestKind::Transaction, input.clone()).0.expect("evaluates");
    assert_eq!(decision["action"], regorus::Value::from("APPROVE"), "{name}: {decision}");
    bencher.bench(|| snapshot.evaluate(RequestKind::Transaction, black_box(input.clone())).0.expect("evaluates"));
}

#[divan::bench(args = PAYLOADS)]
fn check(bencher: Bencher, name: &str) {
    evaluate(bencher, CHECKED, name);
}

#[divan::bench(args = PAYLOADS)]
fn none(bencher: Bencher, name: &str) {
    evaluate(bencher, UNCHECKED, name);
}

/// The canonical transfer view, derived natively (what every request pays for `context.transfer`:
/// the description's cross-checks and the raw transaction decoded and compared).
#[divan::bench(args = PAYLOADS)]
fn transfer_view(bencher: Bencher, name: &str) {
    let snapshot = snapshot(UNCHECKED);
    let Value::Object(request) = payload(name) else { panic!("an object") };
    let view = Transfer::derive(&request, &snapshot.assets);
    assert!(view.conflicts.is_empty() && view.raw.is_some(), "{name}: {:?}", view.conflicts);
    bencher.bench(|| Transfer::derive(black_box(&request), &snapshot.assets));
}
