//! How the cost of a decision grows with the policy set and the payload:
//!
//! - `policy_rules`: a transaction policy of N rules, each checked on every request (none fires);
//! - `data_entries`: the starter policy plus a destination allow-list of N addresses in data;
//! - `destinations`: the starter policy on the documented ETH transfer split over N destinations,
//!   from the JSON body to the decision (decode, input document, evaluation; signing is constant).
//!
//!     cargo bench --bench scaling
#![allow(clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cosigner_guard::envelope::{self, Mode};
use cosigner_guard::keys::CosignerKeyring;
use cosigner_guard::policy::{CompileOptions, PolicySnapshot, RequestContext};
use cosigner_guard::request::{CosignerRequest, RequestKind};
use divan::{Bencher, black_box};
use serde::Deserialize;
use serde_json::{Value, json};

mod support;

// The server's allocator, so the stages cost here what they cost there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn eth_transfer() -> Value {
    serde_json::from_slice(&std::fs::read(root().join("policies/payloads/eth_transfer.json")).expect("payload"))
        .expect("json")
}

/// Compiles a policy directory written by `write` the way the server does.
fn snapshot(write: impl FnOnce(&Path)) -> Arc<PolicySnapshot> {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path());
    let options = CompileOptions { load_timeout: Duration::from_secs(60), ..CompileOptions::default() };
    Arc::new(PolicySnapshot::load(dir.path(), &options).expect("policies"))
}

fn input(payload: Value, snapshot: &PolicySnapshot) -> regorus::Value {
    let request = CosignerRequest::from_payload(RequestKind::Transaction, payload).expect("request");
    let context = RequestContext { received_at: Utc::now(), mode: Mode::Json, cosigner_key: None, origin: None };
    regorus::Value::deserialize(&support::input_document(request, &context, &snapshot.assets)).expect("input")
}

fn decide(bencher: Bencher, snapshot: &PolicySnapshot, payload: Value, want: &str) {
    let input = input(payload, snapshot);
    let decision = snapshot.evaluate(RequestKind::Transaction, input.clone()).0.expect("evaluates");
    assert_eq!(decision["action"], regorus::Value::from(want), "{decision}");
    bencher.bench(|| snapshot.evaluate(RequestKind::Transaction, black_box(input.clone())).0.expect("evaluates"));
}

#[divan::bench(args = [10, 100, 1000])]
fn policy_rules(bencher: Bencher, rules: usize) {
    let snapshot = snapshot(|dir| {
        let mut rego = String::from(
            "package cosigner.transaction\nimport rego.v1\n\n\
             decision := {\"action\": \"APPROVE\"} if {\n\tcount(violations) == 0\n} \
             else := {\"action\": \"REJECT\", \"reason\": concat(\"; \", sort(violations))}\n",
        );
        for i in 0..rules {
            rego.push_str(&format!(
                "violations contains \"rule {i}\" if {{\n\tinput.request.destAddress == \"0xblocked{i}\"\n}}\n"
            ));
        }
        support::copy_starter(dir);
        std::fs::write(dir.join("cosigner/transaction.rego"), rego).expect("write");
    });
    decide(bencher, &snapshot, eth_transfer(), "APPROVE");
}

#[divan::bench(args = [1_000, 100_000])]
fn data_entries(bencher: Bencher, entries: usize) {
    let payload = eth_transfer();
    let destination = payload["destAddress"].as_str().expect("destAddress").to_lowercase();
    let snapshot = snapshot(|dir| {
        support::copy_starter(dir);
        let mut allowed: serde_json::Map<String, Value> =
            (0..entries - 1).map(|i| (format!("0x{i:040x}"), Value::Bool(true))).collect();
        allowed.insert(destination, Value::Bool(true));
        std::fs::create_dir_all(dir.join("allowlist")).expect("mkdir");
        std::fs::write(dir.join("allowlist/data.json"), json!({ "addresses": allowed }).to_string()).expect("write");
        std::fs::write(
            dir.join("cosigner/allowlist.rego"),
            "package cosigner.transaction\nimport rego.v1\n\n\
             violations contains \"destination is not on the allow-list\" if {\n\
             \tnot data.allowlist.addresses[lower(input.request.destAddress)]\n}\n",
        )
        .expect("write");
    });
    decide(bencher, &snapshot, payload, "APPROVE");
}

#[divan::bench(args = [1, 100, 1000])]
fn destinations(bencher: Bencher, count: usize) {
    let snapshot = snapshot(support::copy_starter);
    let mut payload = eth_transfer();
    let one = payload["destinations"][0].clone();
    payload["destinations"] = Value::Array(vec![one; count]);
    let body = serde_json::to_vec(&payload).expect("json");
    let keyring = CosignerKeyring::default();
    bencher.bench(|| {
        let opened = envelope::open(Mode::Json, black_box(&body), &keyring).expect("decodes");
        let request = CosignerRequest::from_payload(RequestKind::Transaction, opened.payload).expect("request");
        let context = RequestContext { received_at: Utc::now(), mode: Mode::Json, cosigner_key: None, origin: None };
        let input = support::input_document(request, &context, &snapshot.assets);
        let input = regorus::Value::deserialize(&input).expect("input");
        snapshot.evaluate(RequestKind::Transaction, input).0.expect("evaluates")
    });
}
