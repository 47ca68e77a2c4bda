//! What proving origin adds to a decision: finding the token in the note, verifying its signature
//! and comparing its claims with the transfer (`Origin::inspect`), per key type. The one-use read
//! is a `velocity.count` read like any other (see `benches/state.rs`).
//!
//!     cargo bench --bench origin
#![allow(clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use cosigner_guard::keys::{GeneratedKeyPair, SigningAlgorithm, generate};
use cosigner_guard::origin::{Carrier, Origin, OriginKey, OriginSigner, claims_for, generate_ed25519};
use cosigner_guard::transfer::Transfer;
use divan::{Bencher, black_box};
use serde_json::{Map, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

/// The documented ETH transfer, its note carrying a token made with `pair`, and the origin check.
fn setup(pair: &GeneratedKeyPair) -> (Origin, Map<String, Value>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/payloads/eth_transfer.json");
    let mut request: Value = serde_json::from_slice(&std::fs::read(path).expect("payload")).expect("json");
    let signer = OriginSigner::from_pem(pair.private_pem.as_bytes()).expect("signer");
    let dest = ("VAULT", "1", Some("0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8"));
    let now = chrono::Utc::now().timestamp();
    let claims = claims_for("ETH", "0.01", ("VAULT", "0"), dest, "bench", now, Duration::from_secs(3600));
    let token = signer.sign(&claims, Some("backend")).expect("token");
    request["note"] = Value::from(format!("payroll run 42 | {token}"));
    let key = OriginKey::from_pem("backend", pair.public_pem.as_bytes()).expect("key");
    let origin = Origin { carrier: Carrier::Note, max_age: Duration::from_secs(3600), keys: vec![key] };
    (origin, request.as_object().expect("object").clone())
}

#[divan::bench(args = ["EdDSA", "ES256", "RS256"])]
fn inspect(bencher: Bencher, alg: &str) {
    let pair = match alg {
        "EdDSA" => generate_ed25519().expect("key"),
        "ES256" => generate(SigningAlgorithm::Es256).expect("key"),
        _ => generate(SigningAlgorithm::Rs256).expect("key"),
    };
    let (origin, request) = setup(&pair);
    let transfer = Transfer::describe(&request);
    let now = chrono::Utc::now();
    assert!(origin.inspect(&request, &transfer, now).verified);
    bencher.bench_local(|| black_box(origin.inspect(black_box(&request), &transfer, now)));
}
