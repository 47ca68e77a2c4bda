//! Fireblocks webhook deliveries: what verifying one costs (v2: a detached JWS, RS512 with a
//! 2048-bit key), and verifying and applying a releasing status (the embedded store on disk with
//! its fsync, a record to release, the decision-log record) — the events per second one core
//! handles.
//!
//!     cargo bench --bench lifecycle
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cosigner_guard::audit::{DecisionLog, DecisionLogSettings, Sink};
use cosigner_guard::decimal::Amount;
use cosigner_guard::holds::HoldSettings;
use cosigner_guard::keys::{GeneratedKeyPair, generate_rsa_2048};
use cosigner_guard::lifecycle::{JwksSource, Lifecycle, Received, WebhookKeys};
use cosigner_guard::metrics::Metrics;
use cosigner_guard::state::{Backend, Commit, Record, StateSettings, StateStore};
use divan::Bencher;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

fn jwks(pair: &GeneratedKeyPair) -> String {
    let der = pem::parse(&pair.public_pem).expect("pem");
    let public = aws_lc_rs::rsa::PublicKey::from_der(der.contents()).expect("rsa");
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    json!({"keys": [{"kty": "RSA", "kid": "fb", "n": b64(public.modulus().big_endian_without_leading_zero()),
                     "e": b64(public.exponent().big_endian_without_leading_zero())}]})
    .to_string()
}

fn signed(body: &[u8], pair: &GeneratedKeyPair) -> String {
    let protected = URL_SAFE_NO_PAD.encode(json!({"alg": "RS512", "kid": "fb"}).to_string());
    let message = format!("{protected}.{}", URL_SAFE_NO_PAD.encode(body));
    let key = EncodingKey::from_rsa_pem(pair.private_pem.as_bytes()).expect("key");
    format!("{protected}..{}", jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS512).expect("sign"))
}

fn event(id: u64) -> Vec<u8> {
    json!({"id": format!("e-{id}"), "eventType": "transaction.status.updated",
           "data": {"id": format!("t-{id}"), "status": "FAILED", "lastUpdated": 1_000}})
    .to_string()
    .into_bytes()
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    lifecycle: Lifecycle,
    state: Arc<StateStore>,
    pair: GeneratedKeyPair,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("dir");
    let pair = generate_rsa_2048().expect("key");
    std::fs::write(dir.path().join("jwks.json"), jwks(&pair)).expect("jwks");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let (lifecycle, state) = runtime.block_on(async {
        let settings =
            StateSettings { backend: Backend::Embedded { dir: dir.path().join("state") }, ..Default::default() };
        let state = Arc::new(StateStore::open(settings).expect("store"));
        let sink = Sink::File { path: dir.path().join("decisions.jsonl"), max_bytes: 1 << 30, keep: 1 };
        let metrics = Arc::new(Metrics::new());
        let log = DecisionLog::open(&DecisionLogSettings { sink, ..Default::default() }, metrics.clone()).expect("log");
        let keys = WebhookKeys::new(Some(JwksSource::File(dir.path().join("jwks.json"))), None).expect("keys");
        let lifecycle = Lifecycle::new(state.clone(), HoldSettings::default(), Arc::new(log), metrics).with_keys(keys);
        (lifecycle, state)
    });
    Setup { runtime, lifecycle, state, pair, _dir: dir }
}

/// Verifying a v2 signature alone (an event whose type is ignored: nothing is written).
#[divan::bench]
fn verify(bencher: Bencher) {
    let s = setup();
    let body = json!({"id": "x", "eventType": "vault_account.created", "data": {}}).to_string().into_bytes();
    let signature = signed(&body, &s.pair);
    bencher.bench_local(|| {
        let header = |name: &str| (name == "fireblocks-webhook-signature").then(|| signature.clone());
        let received = s.runtime.block_on(s.lifecycle.receive(header, &body)).expect("verified");
        assert_eq!(received, Received::Ignored);
    });
}

/// A FAILED status for a transaction with one record: verified, applied (fsync), released, logged.
#[divan::bench(sample_count = 50, sample_size = 20)]
fn verify_and_release(bencher: Bencher) {
    let s = setup();
    let next = AtomicU64::new(0);
    bencher
        .with_inputs(|| {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let record = Record { key: "vault:0:ETH".into(), amount: Amount::parse("1").expect("amount") };
            let commit = Commit { id: format!("t-{id}"), at_us: 1, reads: Vec::new(), records: vec![record] };
            s.runtime.block_on(s.state.commit(commit)).expect("commit");
            let body = event(id);
            (signed(&body, &s.pair), body)
        })
        .bench_local_values(|(signature, body)| {
            let header = |name: &str| (name == "fireblocks-webhook-signature").then(|| signature.clone());
            let received = s.runtime.block_on(s.lifecycle.receive(header, &body)).expect("applied");
            assert_eq!(received, Received::Applied { released: 1, hold_cancelled: false });
        });
}
