//! Hostile input: forged and altered tokens, replays, resource exhaustion, input-driven policy
//! faults, random mutations. Nothing may be approved that should not be, and nothing may crash.

use std::time::{Duration, Instant};

use crate::common::{Spec, b64, decide, keys, payload, sign, sign_with, spawn, verify_answer};
use hyper::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const TX: &str = "/v2/tx_sign_request";

fn approve_all() -> Spec {
    Spec::both(r#"decision := {"action": "APPROVE"}"#)
}

/// A refusal: not 200, a machine-readable JSON error, and no decision in it.
fn assert_refused(status: StatusCode, body: &[u8], what: &str) -> String {
    let text = String::from_utf8_lossy(body).to_string();
    assert_ne!(status, StatusCode::OK, "{what}: must be refused: {text}");
    let error: Value = serde_json::from_slice(body).unwrap_or_else(|_| panic!("{what}: JSON error body: {text}"));
    assert!(!text.contains("APPROVE"), "{what}: {text}");
    error["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn header_tricks_other_algorithms_and_ambiguous_json_are_refused() {
    let server = spawn(approve_all()).await;
    let keys = keys();
    let tx = payload("eth_transfer.json");
    let primary = EncodingKey::from_rsa_pem(keys.primary.private_pem.as_bytes()).unwrap();
    let stranger = EncodingKey::from_rsa_pem(keys.stranger.private_pem.as_bytes()).unwrap();
    let mut tricks = Header::new(Algorithm::RS256);
    tricks.kid = Some("primary".into());
    tricks.jku = Some("https://attacker.example/jwks.json".into());
    tricks.x5u = Some("https://attacker.example/cert.pem".into());
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let es256 = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap();
    let good = sign(&tx, &keys.primary.private_pem);
    let parts: Vec<&str> = good.split('.').collect();
    let duplicate_id =
        br#"{"requestId": "9c794cee-7e27-46c9-9e9a-ed68295ff06b", "requestId": "other", "amountStr": "1"}"#;
    let duplicate_alg = b64(br#"{"alg":"RS256","alg":"none","typ":"JWT"}"#);

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "kid/jku/x5u pointing elsewhere, signed by an unknown key",
            sign_with(tricks.clone(), &tx, &stranger),
            "invalid_signature",
        ),
        (
            "PS256 with the Co-signer's own key",
            sign_with(Header::new(Algorithm::PS256), &tx, &primary),
            "algorithm_refused",
        ),
        ("ES256 with a P-256 key", sign_with(Header::new(Algorithm::ES256), &tx, &es256), "algorithm_refused"),
        ("a duplicate alg in the header", format!("{duplicate_alg}.{}.{}", parts[1], parts[2]), "malformed_jwt"),
        ("base64 padding", format!("{good}=="), "malformed_jwt"),
        ("a payload with requestId twice", raw_signed(duplicate_id, &primary), "invalid_json"),
    ];
    for (what, token, code) in cases {
        let (status, body) = server.post(TX, token).await;
        assert_eq!(assert_refused(status, &body, what), code, "{what}");
    }
    // The header tricks are ignored, not followed: with the real key the token is simply valid.
    let (status, body) = server.post(TX, sign_with(tricks, &tx, &primary)).await;
    assert_eq!((status, verify_answer(&body)["action"].clone()), (StatusCode::OK, json!("APPROVE")));
}

/// Signs raw payload bytes (which may not be valid JSON for serde) as an RS256 JWT.
fn raw_signed(payload: &[u8], key: &EncodingKey) -> String {
    let signing_input = format!("{}.{}", b64(br#"{"typ":"JWT","alg":"RS256"}"#), b64(payload));
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, Algorithm::RS256).unwrap();
    format!("{signing_input}.{signature}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_token_posted_to_the_configuration_endpoint_is_not_approved() {
    let server = spawn(Spec::starter()).await;
    let token = sign(&payload("eth_transfer.json"), &keys().primary.private_pem);
    let (status, body) = server.post("/v2/config_change_sign_request", token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify_answer(&body)["action"], "REJECT", "decided as a configuration change, and refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_gets_the_same_answer_and_a_reused_request_id_is_never_approved() {
    let server = spawn(approve_all()).await;
    let tx = payload("eth_transfer.json");
    let token = sign(&tx, &keys().primary.private_pem);
    for attempt in 1..=3 {
        let (status, body) = server.post(TX, token.clone()).await;
        assert_eq!(
            (status, verify_answer(&body)["action"].clone()),
            (StatusCode::OK, json!("APPROVE")),
            "attempt {attempt}"
        );
    }
    let mut altered = tx.clone();
    altered["amountStr"] = json!("5000");
    altered["destAddress"] = json!("0x000000000000000000000000000000000000dEaD");
    let answer = decide(&server, "jwt", "tx_sign_request", &altered).await;
    assert_eq!(answer["action"], "REJECT");
    assert!(answer["rejectionReason"].as_str().unwrap().contains("already seen with a different payload"));
    let answer = decide(&server, "json", "tx_sign_request", &altered).await;
    assert_eq!(answer["action"], "REJECT", "in json mode too");
    let start = Instant::now();
    loop {
        let records = server.decision_records();
        if records.iter().filter(|r| r["source"] == "fallback:request_id_reuse").count() == 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the reuse is on record: {records:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_deep_and_numerically_absurd_payloads_are_bounded() {
    let server = spawn(
        Spec::both(r#"decision := {"action": "REJECT", "reason": sprintf("%d destinations", [count(object.get(input.request, "destinations", []))])}"#),
    )
    .await;
    let nested = |depth: usize| format!(r#"{{"requestId": "n", "x": {}1{}}}"#, "[".repeat(depth), "]".repeat(depth));
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("nesting within serde's limit", nested(100).into_bytes(), None),
        ("nesting beyond serde's limit", nested(5000).into_bytes(), Some("invalid_json")),
        ("a number beyond f64", br#"{"requestId": "n", "amount": 1e999999}"#.to_vec(), Some("invalid_json")),
        (
            "a 400-digit integer",
            format!(r#"{{"requestId": "n", "amount": {}}}"#, "9".repeat(400)).into_bytes(),
            Some("invalid_json"),
        ),
        ("a 900 KB string", format!(r#"{{"requestId": "n", "note": "{}"}}"#, "x".repeat(900_000)).into_bytes(), None),
    ];
    for (what, body, refused) in cases {
        let (status, answer) = server.post("/tx_sign_request", body).await;
        match refused {
            Some(code) => assert_eq!(assert_refused(status, &answer, what), code, "{what}"),
            None => assert_eq!(status, StatusCode::OK, "{what}: {}", String::from_utf8_lossy(&answer)),
        }
    }
    // 100,000 destinations inside the 1 MiB limit: decided, and the server stays responsive.
    let destinations: Vec<Value> = (0..100_000).map(|i| json!(i)).collect();
    let big = json!({"requestId": "many", "destinations": destinations});
    let answer = decide(&server, "json", "tx_sign_request", &big).await;
    assert_eq!(answer["rejectionReason"], "100000 destinations");
    let answer = decide(&server, "json", "tx_sign_request", &payload("eth_transfer.json")).await;
    assert_eq!(answer["rejectionReason"], "1 destinations");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_driven_runaway_policy_gets_the_fallback_and_others_are_unaffected() {
    let server = spawn(
        Spec::both(
            r#"decision := {"action": "APPROVE"} if {
                n := object.get(input.request, "n", 1)
                count([1 | some i in numbers.range(1, n); some j in numbers.range(1, n); i * j < 0]) == 0
            }"#,
        )
        .policy("eval_timeout_ms = 300"),
    )
    .await;
    let server = std::sync::Arc::new(server);
    let slow = {
        let server = server.clone();
        tokio::spawn(async move {
            decide(&server, "json", "tx_sign_request", &json!({"requestId": "slow", "n": 100000})).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let normal = decide(&server, "json", "tx_sign_request", &json!({"requestId": "normal", "n": 3})).await;
    assert_eq!(normal["action"], "APPROVE", "a normal request is decided meanwhile");
    assert!(!slow.is_finished(), "without waiting for the runaway one");
    let slow = slow.await.unwrap();
    assert_eq!(
        (slow["action"].as_str(), slow["rejectionReason"].as_str()),
        (Some("REJECT"), Some("cosigner-guard fallback: timeout"))
    );
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_mutated_tokens_never_yield_approve_and_the_server_recovers() {
    let server = spawn(approve_all()).await;
    let good = sign(&payload("eth_transfer.json"), &keys().primary.private_pem).into_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=\"{} \x00\xff";
    let mut rng = XorShift(0x5eed_cafe_f00d_d00d);
    let mut connection = server.target.connect().await.unwrap();
    let mut approved = 0;
    for round in 0..3000 {
        let mut token = good.clone();
        // One to four edits: replace, insert, delete or truncate; never a no-op.
        for _ in 0..=(rng.next() % 4) {
            let at = (rng.next() as usize) % token.len();
            let byte = alphabet[(rng.next() as usize) % alphabet.len()];
            match rng.next() % 4 {
                0 => token[at] = byte,
                1 => token.insert(at, byte),
                2 if token.len() > 1 => {
                    token.remove(at);
                }
                _ => token.truncate(at.max(1)),
            }
        }
        if token.trim_ascii() == good.as_slice() {
            continue;
        }
        let (status, body) = match connection.post(TX, token.clone()).await {
            Ok(answer) => answer,
            Err(_) => {
                connection = server.target.connect().await.unwrap();
                continue;
            }
        };
        if status == StatusCode::OK && verify_answer(&body)["action"] == "APPROVE" {
            approved += 1;
            eprintln!("round {round}: approved {:?}", String::from_utf8_lossy(&token));
        }
    }
    assert_eq!(approved, 0, "no altered token is ever approved");
    let (status, body) = server.post(TX, good).await;
    assert_eq!((status, verify_answer(&body)["action"].clone()), (StatusCode::OK, json!("APPROVE")), "still serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_idle_connections_do_not_stop_a_valid_request() {
    let server = spawn(approve_all().server("read_timeout_ms = 2000")).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(server.target.tls_stream().await.unwrap());
    }
    let token = sign(&payload("eth_transfer.json"), &keys().primary.private_pem);
    let (status, body) = server.post(TX, token).await;
    assert_eq!((status, verify_answer(&body)["action"].clone()), (StatusCode::OK, json!("APPROVE")));
    drop(idle);
}
