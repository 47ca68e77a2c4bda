//! The Co-signer protocol end to end: real server, real TLS, real RS256 keys made at test time.

use crate::common::{Spec, b64, decide, keys, payload, sign, sign_with, spawn, verify_answer};
use hyper::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const TX: &str = "tx_sign_request";
const CC: &str = "config_change_sign_request";

/// The documented payloads, each with the endpoint it goes to.
fn documented() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("ETH transfer", TX, payload("eth_transfer.json")),
        ("BTC transfer to a one-time address", TX, payload("btc_one_time_address.json")),
        ("whitelisting request", CC, payload("whitelist_wallet.json")),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_action_comes_back_signed_with_the_request_id_echoed_in_both_modes() {
    let cases = [
        (r#"decision := {"action": "APPROVE"}"#, "APPROVE", None),
        (r#"decision := {"action": "REJECT", "reason": "over the limit"}"#, "REJECT", Some("over the limit")),
        (r#"decision := {"action": "RETRY", "reason": "held for review"}"#, "RETRY", Some("held for review")),
        (r#"decision := {"action": "IGNORE", "reason": "left to humans"}"#, "IGNORE", Some("left to humans")),
    ];
    for (rego, action, reason) in cases {
        let server = spawn(Spec::both(rego)).await;
        for mode in ["jwt", "json"] {
            for (name, endpoint, payload) in documented() {
                let answer = decide(&server, mode, endpoint, &payload).await;
                let msg = format!("{action} policy, {mode} mode, {name}");
                assert_eq!(answer["action"], action, "{msg}");
                assert_eq!(answer["requestId"], payload["requestId"], "{msg}: requestId echoed");
                assert_eq!(answer.get("rejectionReason").and_then(Value::as_str), reason, "{msg}: reason");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_never_carries_a_rejection_reason_on_the_wire() {
    let server = spawn(Spec::both(r#"decision := {"action": "APPROVE", "reason": "all good"}"#)).await;
    let answer = decide(&server, "jwt", TX, &payload("eth_transfer.json")).await;
    assert_eq!(answer, json!({"action": "APPROVE", "requestId": "9c794cee-7e27-46c9-9e9a-ed68295ff06b"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_see_kind_payload_verbatim_and_context() {
    // The policy reports what it saw in its reason, so the test reads the input document back.
    let server = spawn(Spec::both(
        r#"decision := {"action": "REJECT", "reason": json.marshal({
            "kind": input.kind,
            "extra": object.get(input.request, "someFutureField", null),
            "amountStr": object.get(input.request, "amountStr", null),
            "mode": input.context.mode,
            "key": input.context.cosigner_key,
            "at": input.context.received_at,
            "ns": is_number(input.context.received_at_ns),
        })}"#,
    ))
    .await;
    let mut tx = payload("eth_transfer.json");
    tx["someFutureField"] = json!({"nested": [1, 2]});
    let seen = |answer: Value| -> Value { serde_json::from_str(answer["rejectionReason"].as_str().unwrap()).unwrap() };

    let jwt = seen(decide(&server, "jwt", TX, &tx).await);
    assert_eq!(jwt["kind"], "transaction");
    assert_eq!(jwt["extra"], json!({"nested": [1, 2]}), "unknown fields reach the policy");
    assert_eq!(jwt["amountStr"], "0.010000000000000000", "decimal strings are kept verbatim");
    assert_eq!(jwt["mode"], "jwt");
    assert_eq!(jwt["key"], "primary", "the verifying key's name is recorded");
    assert!(jwt["at"].as_str().unwrap().ends_with('Z'), "received_at is RFC 3339 UTC: {}", jwt["at"]);
    assert_eq!(jwt["ns"], true);

    let json_mode = seen(decide(&server, "json", CC, &payload("whitelist_wallet.json")).await);
    assert_eq!(json_mode["kind"], "config_change");
    assert_eq!(json_mode["mode"], "json");
    assert_eq!(json_mode["key"], Value::Null, "no Co-signer key vouches for a json request");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_configured_cosigner_key_is_accepted_and_named() {
    let server = spawn(Spec::both(r#"decision := {"action": "RETRY", "reason": input.context.cosigner_key}"#)).await;
    let tx = payload("eth_transfer.json");
    let (status, body) = server.post("/v2/tx_sign_request", sign(&tx, &keys().backup.private_pem)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify_answer(&body)["rejectionReason"], "backup");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_malformed_requests_are_refused_and_never_approved() {
    // An approve-everything policy: any request that slipped through would come back APPROVE.
    let server = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#).server("max_body_bytes = 65536")).await;
    let keys = keys();
    let tx = payload("eth_transfer.json");
    let good = sign(&tx, &keys.primary.private_pem);
    let segments: Vec<&str> = good.split('.').collect();
    let mut richer = tx.clone();
    richer["amountStr"] = json!("1000000");
    let tampered = format!("{}.{}.{}", segments[0], b64(&serde_json::to_vec(&richer).unwrap()), segments[2]);
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let hs256 =
        sign_with(Header::new(Algorithm::HS256), &tx, &EncodingKey::from_secret(keys.primary.public_pem.as_bytes()));
    let rs384 = sign_with(
        Header::new(Algorithm::RS384),
        &tx,
        &EncodingKey::from_rsa_pem(keys.primary.private_pem.as_bytes()).unwrap(),
    );
    let mut no_id = tx.clone();
    no_id.as_object_mut().unwrap().remove("requestId");
    let mut numeric_id = tx.clone();
    numeric_id["requestId"] = json!(42);

    let cases: Vec<(&str, &str, Vec<u8>, StatusCode)> = vec![
        (
            "signed by an unknown key",
            "/v2/tx_sign_request",
            sign(&tx, &keys.stranger.private_pem).into(),
            StatusCode::UNAUTHORIZED,
        ),
        ("payload altered after signing", "/v2/tx_sign_request", tampered.into(), StatusCode::UNAUTHORIZED),
        (
            "alg none, no signature",
            "/v2/tx_sign_request",
            format!("{none_header}.{}.", segments[1]).into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "alg none, a signature",
            "/v2/tx_sign_request",
            format!("{none_header}.{}.{}", segments[1], segments[2]).into(),
            StatusCode::UNAUTHORIZED,
        ),
        ("HS256 keyed with the public key", "/v2/tx_sign_request", hs256.into(), StatusCode::UNAUTHORIZED),
        ("RS384 with the right key", "/v2/tx_sign_request", rs384.into(), StatusCode::UNAUTHORIZED),
        (
            "truncated token",
            "/v2/tx_sign_request",
            good.as_bytes()[..good.len() - 20].to_vec(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "two segments",
            "/v2/tx_sign_request",
            format!("{}.{}", segments[0], segments[1]).into(),
            StatusCode::BAD_REQUEST,
        ),
        ("extra segment", "/v2/tx_sign_request", format!("{good}.{}", segments[2]).into(), StatusCode::BAD_REQUEST),
        (
            "JSON sent to a JWT endpoint",
            "/v2/tx_sign_request",
            serde_json::to_vec(&tx).unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        ("empty body", "/v2/tx_sign_request", Vec::new(), StatusCode::BAD_REQUEST),
        ("non-UTF-8 bytes", "/v2/tx_sign_request", vec![0xff, 0xfe, b'.', 0x80, b'.', 0x00], StatusCode::BAD_REQUEST),
        (
            "signed payload without requestId",
            "/v2/tx_sign_request",
            sign(&no_id, &keys.primary.private_pem).into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "signed payload with a numeric requestId",
            "/v2/tx_sign_request",
            sign(&numeric_id, &keys.primary.private_pem).into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "signed payload that is not an object",
            "/v2/tx_sign_request",
            sign(&json!([1, 2]), &keys.primary.private_pem).into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "JSON payload without requestId",
            "/tx_sign_request",
            serde_json::to_vec(&no_id).unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        ("JSON that is not an object", "/tx_sign_request", b"[\"requestId\"]".to_vec(), StatusCode::BAD_REQUEST),
        ("a JWT sent to a JSON endpoint", "/tx_sign_request", good.clone().into(), StatusCode::BAD_REQUEST),
    ];
    for (name, path, body, want) in cases {
        let (status, answer) = server.post(path, body).await;
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, want, "{name}: {text}");
        let error: Value =
            serde_json::from_slice(&answer).unwrap_or_else(|_| panic!("{name}: error body is JSON: {text}"));
        assert!(error["error"].as_str().is_some_and(|code| !code.is_empty()), "{name}: machine-readable code: {text}");
        assert!(!text.contains("APPROVE"), "{name}: no decision in a refusal: {text}");
    }
    // The same server still approves the genuine request: the refusals above were about the requests.
    let (status, body) = server.post("/v2/tx_sign_request", good).await;
    assert_eq!((status, verify_answer(&body)["action"].as_str()), (StatusCode::OK, Some("APPROVE")));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_enabled_modes_are_served() {
    let jwt_only = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#).modes(r#"["jwt"]"#)).await;
    let tx = serde_json::to_vec(&payload("eth_transfer.json")).unwrap();
    for path in ["/tx_sign_request", "/config_change_sign_request"] {
        let (status, body) = jwt_only.post(path, tx.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "jwt only: {path} is not served");
        assert!(!String::from_utf8_lossy(&body).contains("APPROVE"));
    }
    let json_only = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#).modes(r#"["json"]"#)).await;
    let signed = sign(&payload("eth_transfer.json"), &keys().primary.private_pem);
    let (status, _) = json_only.post("/v2/tx_sign_request", signed).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "json only: the /v2 endpoints are not served");
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_mode_is_the_default() {
    let mut spec = Spec::both(r#"decision := {"action": "APPROVE"}"#);
    spec.modes = r#"["jwt"]"#;
    let dir = tempfile::tempdir().unwrap();
    let config = spec.write(dir.path());
    let text = std::fs::read_to_string(&config).unwrap().replace("modes = [\"jwt\"]\n", "");
    std::fs::write(&config, text).unwrap();
    let settings = cosigner_guard::config::Settings::load(&config).unwrap();
    assert_eq!(settings.protocol.modes, vec![cosigner_guard::envelope::Mode::Jwt]);
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_live_under_the_configured_path_prefix() {
    let server =
        spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#).server(r#"path_prefix = "/fireblocks/callback/""#))
            .await;
    let signed = sign(&payload("eth_transfer.json"), &keys().primary.private_pem);
    let (status, body) = server.post("/fireblocks/callback/v2/tx_sign_request", signed.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify_answer(&body)["action"], "APPROVE");
    let (status, _) = server.post("/v2/tx_sign_request", signed).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not served outside the prefix");
}

#[tokio::test(flavor = "multi_thread")]
async fn surrounding_whitespace_and_json_string_wrapping_of_a_jwt_are_tolerated() {
    let server = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#)).await;
    let token = sign(&payload("eth_transfer.json"), &keys().primary.private_pem);
    for body in [format!("\n  {token}\r\n"), format!("\"{token}\"")] {
        let (status, answer) = server.post("/v2/tx_sign_request", body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        assert_eq!(verify_answer(&answer)["action"], "APPROVE");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exp_and_nbf_are_honoured_when_present() {
    let server = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#)).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let cases = [
        (json!({"exp": now + 600}), StatusCode::OK, "exp in the future"),
        (json!({"exp": now - 600}), StatusCode::UNAUTHORIZED, "exp in the past"),
        (json!({"nbf": now + 600}), StatusCode::UNAUTHORIZED, "nbf in the future"),
        (json!({"exp": "tomorrow"}), StatusCode::BAD_REQUEST, "exp not a number"),
    ];
    for (claims, want, msg) in cases {
        let mut tx = payload("eth_transfer.json");
        tx.as_object_mut().unwrap().extend(claims.as_object().unwrap().clone());
        let (status, body) = server.post("/v2/tx_sign_request", sign(&tx, &keys().primary.private_pem)).await;
        assert_eq!(status, want, "{msg}: {}", String::from_utf8_lossy(&body));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_gets_413_without_being_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#).server("max_body_bytes = 65536")).await;
    let declared = "POST /v2/tx_sign_request HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n";
    let chunk = format!("4000\r\n{}\r\n", "a".repeat(0x4000));
    let cases = [
        ("declared too large: answered from Content-Length alone", declared.to_string(), 0),
        (
            "chunked without a length: refused once the limit is crossed",
            "POST /tx_sign_request HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
            8,
        ),
    ];
    for (name, head, chunks) in cases {
        let mut stream = server.target.tls_stream().await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..chunks {
            // The server may close as soon as it has seen enough: later writes may fail.
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = stream.flush().await;
        let mut answer = vec![0; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
            .await
            .expect("answered without waiting for the rest of the body")
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{name}: {text}");
        assert!(text.contains("body_too_large"), "{name}: {text}");
    }
}

/// Numbers reach the policy correctly rounded: `1000.0000000000001` is above a 1,000 cap, not
/// `1000.0` (serde_json's fast float parsing is off by one unit in the last place on such inputs).
#[tokio::test(flavor = "multi_thread")]
async fn numbers_reach_the_policy_correctly_rounded() {
    let server = spawn(Spec::both(
        r#"decision := {"action": "REJECT", "reason": "over"} if input.request.amountUSD > 1000
           else := {"action": "APPROVE"}"#,
    ))
    .await;
    for (literal, want) in [("1000.0000000000001", "REJECT"), ("1000.0", "APPROVE"), ("999.9999999999999", "APPROVE")] {
        let body = format!(r#"{{"requestId": "n-{literal}", "txId": "n-{literal}", "amountUSD": {literal}}}"#);
        let (status, answer) = server.post("/tx_sign_request", body).await;
        assert_eq!(status, hyper::StatusCode::OK);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["action"], want, "amountUSD {literal}");
    }
}

/// A plain client sends its whole body before it reads: the 413 must still reach it, not a reset.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_sends_its_whole_oversized_body_first_still_reads_the_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#).server("max_body_bytes = 65536")).await;
    for (name, size) in [("declared too large", 8_000_000), ("just over the limit", 65_537)] {
        let mut stream = server.target.tls_stream().await.unwrap();
        let head = format!("POST /v2/tx_sign_request HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&vec![b'a'; size]).await.expect("the server reads what is sent");
        stream.flush().await.unwrap();
        let mut answer = vec![0; 4096];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer)).await;
        let n = match read {
            Ok(Ok(n)) => n,
            other => panic!("{name}: no answer to read: {other:?}"),
        };
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{name}: {text}");
    }
}

/// The OpenSSL recipe of docs/operating.md ("Connecting a real Co-signer") makes a certificate a pinning client
/// accepts; OpenSSL's default self-signed one (CA:TRUE) is what it refuses.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_openssl_recipe_makes_a_certificate_clients_pin() {
    std::process::Command::new("openssl").arg("version").output().expect("openssl is installed (.ci/run installs it)");
    let dir = tempfile::tempdir().unwrap();
    let config = Spec::both(r#"decision := {"action": "APPROVE"}"#).write(dir.path());
    let make = |to: &std::path::Path, extensions: &[&str]| {
        let mut openssl = std::process::Command::new("openssl");
        openssl.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825", "-subj", "/CN=localhost"]);
        openssl.arg("-keyout").arg(to.join("key.pem")).arg("-out").arg(to.join("cert.pem"));
        for extension in extensions {
            openssl.args(["-addext", extension]);
        }
        assert!(openssl.output().unwrap().status.success());
        std::fs::read(to.join("cert.pem")).unwrap()
    };
    let pinned = |cert: Vec<u8>, port: u16| async move {
        let target =
            cosigner_guard::http_client::Target::new(&format!("https://localhost:{port}"), Some(&cert)).await?;
        target.connect().await?.get("/").await
    };
    let recipe = make(
        &dir.path().join("tls"),
        &[
            "subjectAltName=DNS:localhost",
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
        ],
    );
    let server = crate::common::spawn_config(&config, dir).await;
    assert!(pinned(recipe, server.target_port()).await.is_ok(), "the recipe's certificate is accepted");

    // OpenSSL's default: CA:TRUE. Served by a second server, it fails the pinning client.
    let dir = tempfile::tempdir().unwrap();
    let config = Spec::both(r#"decision := {"action": "APPROVE"}"#).write(dir.path());
    let default = make(&dir.path().join("tls"), &["subjectAltName=DNS:localhost"]);
    let server = crate::common::spawn_config(&config, dir).await;
    let refused = pinned(default, server.target_port()).await.expect_err("CA:TRUE as a server certificate");
    assert!(format!("{refused:#}").contains("CaUsedAsEndEntity"), "{refused:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_can_be_signed_es256_with_a_p256_key() {
    let pair = cosigner_guard::keys::generate(cosigner_guard::keys::SigningAlgorithm::Es256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Spec::both(r#"decision := {"action": "REJECT", "reason": "es"}"#).write(dir.path());
    std::fs::write(dir.path().join("keys/handler.pem"), &pair.private_pem).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "signing_key = \"keys/handler.pem\"",
        "signing_key = \"keys/handler.pem\"\nsigning_algorithm = \"ES256\"",
    );
    std::fs::write(&config, text).unwrap();
    let server = crate::common::spawn_config(&config, dir).await;
    let (status, body) =
        server.post("/v2/tx_sign_request", sign(&payload("eth_transfer.json"), &keys().primary.private_pem)).await;
    assert_eq!(status, StatusCode::OK);
    let token = std::str::from_utf8(&body).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let key = jsonwebtoken::DecodingKey::from_ec_pem(pair.public_pem.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).expect("the ES256 answer verifies").claims;
    assert_eq!(claims["action"], "REJECT");
    assert_eq!(claims["rejectionReason"], "es");
}
