//! The decision path stage by stage, and whole, for both request kinds.
//!
//!     cargo bench --bench pipeline
//!
//! Keys are generated at start; the policies are the repository's starter set.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use cosigner_guard::decision::{Action, Decision, Source};
use cosigner_guard::envelope::{self, Answer, Mode};
use cosigner_guard::keys::{CosignerKey, CosignerKeyring, HandlerKey, generate_rsa_2048};
use cosigner_guard::policy::{CompileOptions, PolicySnapshot, RequestContext};
use cosigner_guard::request::{CosignerRequest, RequestKind};
use divan::{Bencher, black_box};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;

mod support;

// The server's allocator, so the stages cost here what they cost there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

struct Fixture {
    keyring: CosignerKeyring,
    handler: HandlerKey,
    snapshot: Arc<PolicySnapshot>,
    tokens: [(RequestKind, String); 2],
    payloads: [(RequestKind, Vec<u8>); 2],
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cosigner = generate_rsa_2048().expect("key");
        let handler = generate_rsa_2048().expect("key");
        let key = EncodingKey::from_rsa_pem(cosigner.private_pem.as_bytes()).expect("key");
        let read = |name: &str| std::fs::read(root.join("policies/payloads").join(name)).expect("payload");
        let payloads = [
            (RequestKind::Transaction, read("eth_transfer.json")),
            (RequestKind::ConfigChange, read("whitelist_wallet.json")),
        ];
        let sign = |bytes: &[u8]| {
            let value: serde_json::Value = serde_json::from_slice(bytes).expect("json");
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &value, &key).expect("sign")
        };
        let options = CompileOptions::default();
        Fixture {
            keyring: CosignerKeyring::new(vec![
                CosignerKey::from_pem("primary", cosigner.public_pem.as_bytes()).expect("key"),
            ]),
            handler: HandlerKey::from_pem(handler.private_pem.as_bytes()).expect("key"),
            snapshot: Arc::new(PolicySnapshot::load(&root.join("policies"), &options).expect("policies")),
            tokens: [
                (RequestKind::Transaction, sign(&payloads[0].1)),
                (RequestKind::ConfigChange, sign(&payloads[1].1)),
            ],
            payloads,
        }
    })
}

const KINDS: [usize; 2] = [0, 1];

#[divan::bench(args = KINDS)]
fn jwt_verify(bencher: Bencher, kind: usize) {
    let f = fixture();
    let token = f.tokens[kind].1.as_bytes();
    bencher.bench(|| envelope::open(Mode::Jwt, black_box(token), &f.keyring).expect("verifies"));
}

#[divan::bench(args = KINDS)]
fn payload_decode(bencher: Bencher, kind: usize) {
    let f = fixture();
    let (request_kind, body) = (&f.payloads[kind].0, &f.payloads[kind].1);
    bencher.bench(|| {
        let opened = envelope::open(Mode::Json, black_box(body), &f.keyring).expect("json");
        CosignerRequest::from_payload(*request_kind, opened.payload).expect("request")
    });
}

fn request(kind: usize) -> (CosignerRequest, RequestContext) {
    let f = fixture();
    let opened = envelope::open(Mode::Json, &f.payloads[kind].1, &f.keyring).expect("json");
    let request = CosignerRequest::from_payload(f.payloads[kind].0, opened.payload).expect("request");
    (
        request,
        RequestContext { received_at: Utc::now(), mode: Mode::Jwt, cosigner_key: Some("primary".into()), origin: None },
    )
}

#[divan::bench(args = KINDS)]
fn input_document_build(bencher: Bencher, kind: usize) {
    let f = fixture();
    let (request, context) = request(kind);
    bencher.bench(|| {
        let input = support::input_document(black_box(request.clone()), &context, &f.snapshot.assets);
        regorus::Value::deserialize(&input).expect("input")
    });
}

#[divan::bench(args = KINDS)]
fn evaluation(bencher: Bencher, kind: usize) {
    let f = fixture();
    let (request, context) = request(kind);
    let input =
        regorus::Value::deserialize(&support::input_document(request, &context, &f.snapshot.assets)).expect("input");
    let kind = f.payloads[kind].0;
    bencher.bench(|| f.snapshot.evaluate(kind, black_box(input.clone())).0.expect("evaluates"));
}

#[divan::bench]
fn answer_signing(bencher: Bencher) {
    let f = fixture();
    let decision =
        Decision { action: Action::Approve, reason: None, source: Source::Policy, records: Vec::new(), hold: None };
    bencher.bench(|| envelope::seal(Mode::Jwt, &Answer::new(black_box("9c794cee-7e27"), &decision), Some(&f.handler)));
}

/// Everything but the network: verify, decode, input document, evaluate (on this thread), sign.
#[divan::bench(args = KINDS)]
fn whole_pipeline_jwt(bencher: Bencher, kind: usize) {
    let f = fixture();
    let token = f.tokens[kind].1.as_bytes();
    let request_kind = f.tokens[kind].0;
    bencher.bench(|| {
        let opened = envelope::open(Mode::Jwt, black_box(token), &f.keyring).expect("verifies");
        let request = CosignerRequest::from_payload(request_kind, opened.payload).expect("request");
        let context = RequestContext {
            received_at: Utc::now(),
            mode: Mode::Jwt,
            cosigner_key: opened.cosigner_key,
            origin: None,
        };
        let request_id = request.request_id.clone();
        let input = support::input_document(request, &context, &f.snapshot.assets);
        let value =
            f.snapshot.evaluate(request_kind, regorus::Value::deserialize(&input).expect("input")).0.expect("ok");
        let decision = Decision::from_policy_output(&serde_json::to_value(&value).expect("json")).expect("decision");
        envelope::seal(Mode::Jwt, &Answer::new(&request_id, &decision), Some(&f.handler)).expect("signed")
    });
}

/// The crypto floor of one jwt-mode decision with the same library: one RS256 verify + one sign.
#[divan::bench]
fn crypto_floor_rsa2048_sign_plus_verify(bencher: Bencher) {
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey};
    let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("key");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let message = b"header.payload";
    let mut signature = vec![0; pair.public_modulus_len()];
    let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public_key().as_ref().to_vec());
    let _ = Instant::now();
    bencher.bench_local(|| {
        pair.sign(&RSA_PKCS1_SHA256, &rng, black_box(message), &mut signature).expect("sign");
        public.verify(message, &signature).expect("verify");
    });
}
