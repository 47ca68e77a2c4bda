//! The transaction's whole life: Fireblocks webhooks, signed as Fireblocks signs them (v2 detached
//! JWS RS512 with a JWKS, v1 RSA-SHA512) with RSA keys generated here, delivered over TLS to the
//! webhook listener of the real server; releases by hand through the CLI.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cosigner_guard::http_client::Target;
use cosigner_guard::keys::{GeneratedKeyPair, generate_rsa_2048};
use hyper::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::common::{BIN, RedisServer, Spec, TestServer, decide, keys, spawn, spawn_in, write};

const TX: &str = "tx_sign_request";

/// At most 10 of an asset per 24 hours out of one source vault, recorded on approval.
const DAILY_LIMIT: &str = r#"
key := sprintf("src:%s:%s", [input.request.sourceId, input.request.asset])
spent := velocity.sum(key, "24h")
decision := {"action": "APPROVE", "record": [{"key": key, "amount": input.request.amountStr}]} if {
	decimal.cmp(decimal.sum([spent, input.request.amountStr]), "10") <= 0
} else := {"action": "REJECT", "reason": sprintf("daily limit: %s already spent", [spent])}
"#;

/// Fireblocks' signing keys: two in the JWKS (a rotation), one legacy (v1), one stranger's.
struct Fireblocks {
    current: GeneratedKeyPair,
    next: GeneratedKeyPair,
    legacy: GeneratedKeyPair,
    stranger: GeneratedKeyPair,
}

fn fireblocks() -> &'static Fireblocks {
    static KEYS: std::sync::OnceLock<Fireblocks> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| Fireblocks {
        current: generate_rsa_2048().unwrap(),
        next: generate_rsa_2048().unwrap(),
        legacy: generate_rsa_2048().unwrap(),
        stranger: generate_rsa_2048().unwrap(),
    })
}

/// A JWK for an RSA public key, as Fireblocks publishes them.
fn jwk(kid: &str, pair: &GeneratedKeyPair) -> Value {
    let der = pem::parse(&pair.public_pem).unwrap();
    let public = aws_lc_rs::rsa::PublicKey::from_der(der.contents()).unwrap();
    json!({
        "kty": "RSA", "kid": kid, "alg": "RS512", "use": "sig",
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    })
}

pub(crate) fn jwks_of(keys: &[(&str, &GeneratedKeyPair)]) -> String {
    json!({"keys": keys.iter().map(|(kid, pair)| jwk(kid, pair)).collect::<Vec<_>>()}).to_string()
}

/// The v2 header: a detached JWS over the raw body, RS512.
pub(crate) fn v2(body: &[u8], kid: &str, pair: &GeneratedKeyPair) -> String {
    let protected = URL_SAFE_NO_PAD.encode(json!({"alg": "RS512", "kid": kid}).to_string());
    let signed = format!("{protected}.{}", URL_SAFE_NO_PAD.encode(body));
    let key = EncodingKey::from_rsa_pem(pair.private_pem.as_bytes()).unwrap();
    format!("{protected}..{}", jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::RS512).unwrap())
}

/// The v1 header: base64 of RSA-SHA512 over the body.
fn v1(body: &[u8], pair: &GeneratedKeyPair) -> String {
    let key = EncodingKey::from_rsa_pem(pair.private_pem.as_bytes()).unwrap();
    let signature = jsonwebtoken::crypto::sign(body, &key, Algorithm::RS512).unwrap();
    STANDARD.encode(URL_SAFE_NO_PAD.decode(signature).unwrap())
}

/// A v2 status event for transaction `tx`.
pub(crate) fn event(id: &str, tx: &str, status: &str, last_updated: u64) -> Vec<u8> {
    json!({
        "id": id, "eventType": "transaction.status.updated", "createdAt": last_updated,
        "data": {"id": tx, "status": status, "subStatus": if status == "FAILED" { "INSUFFICIENT_FUNDS" } else { "" },
                 "lastUpdated": last_updated, "txHash": "0xabc", "feeInfo": {"networkFee": "0.0006"},
                 "amountInfo": {"amount": "6", "netAmount": "6"}},
    })
    .to_string()
    .into_bytes()
}

/// A server with the daily limit and the webhook listener; the JWKS in a file unless `webhooks`
/// says otherwise.
fn spec(dir: &Path, webhooks: &str) -> Spec {
    write(&dir.join("fireblocks_jwks.json"), &jwks_of(&[("fb-1", &fireblocks().current)]));
    write(&dir.join("fireblocks_webhook.pem"), &fireblocks().legacy.public_pem);
    Spec::new(DAILY_LIMIT, r#"decision := {"action": "REJECT"}"#).extra(&format!(
        "[fireblocks_webhooks]\nlisten = \"127.0.0.1:0\"\nlegacy_public_key = \"fireblocks_webhook.pem\"\n{webhooks}"
    ))
}

async fn server(extra: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), if extra.is_empty() { "jwks = \"fireblocks_jwks.json\"" } else { extra });
    spawn_in(spec, dir).await
}

/// The documented ETH transfer as transaction `id` of `amount` ETH.
fn transfer(id: &str, amount: &str) -> Value {
    let mut tx = crate::common::eth_transfer(id, amount);
    tx.as_object_mut().unwrap().remove("rawTx");
    tx
}

async fn action(server: &TestServer, tx: &Value) -> String {
    decide(server, "jwt", TX, tx).await["action"].as_str().unwrap().to_string()
}

/// Delivers `body` with `headers` to the webhook listener over TLS; the status and JSON answer.
async fn deliver(server: &TestServer, headers: &[(&str, &str)], body: &[u8]) -> (StatusCode, Value) {
    let addr = server.webhooks.expect("webhook listener");
    let url = format!("https://localhost:{}", addr.port());
    let target = Target::new(&url, Some(keys().tls_cert_pem.as_bytes())).await.unwrap();
    let mut connection = target.connect().await.unwrap();
    let (status, body) = connection.post_with("/fireblocks/webhook", headers, body.to_vec()).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn signed(server: &TestServer, body: &[u8]) -> (StatusCode, Value) {
    let signature = v2(body, "fb-1", &fireblocks().current);
    deliver(server, &[("Fireblocks-Webhook-Signature", &signature)], body).await
}

fn log_events(server: &TestServer, event: &str) -> Vec<Value> {
    server.decision_records().into_iter().filter(|r| r["event"] == event).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_transfer_gives_its_amount_back_and_the_log_shows_how_it_ended() {
    let server = server("").await;
    assert_eq!(action(&server, &transfer("a", "6")).await, "APPROVE");
    assert_eq!(action(&server, &transfer("b", "6")).await, "REJECT", "6 + 6 is over 10");

    let (status, answer) = signed(&server, &event("e-1", "a", "FAILED", 1_000)).await;
    assert_eq!((status, &answer["result"], &answer["released"]), (StatusCode::OK, &json!("applied"), &json!(1)));
    assert_eq!(action(&server, &transfer("c", "6")).await, "APPROVE", "the failed 6 no longer counts");
    // The released transaction is never signed after: no limit counts it any more.
    let again = decide(&server, "jwt", TX, &transfer("a", "6")).await;
    assert_eq!(again["action"], "REJECT");
    assert!(again["rejectionReason"].as_str().unwrap().contains("ended in Fireblocks"), "{again}");
    assert_eq!(action(&server, &transfer("d", "4.000000000000000001")).await, "REJECT", "6 of 10 spent, exactly");

    let (status, answer) = signed(&server, &event("e-2", "c", "COMPLETED", 2_000)).await;
    assert_eq!((status, &answer["released"]), (StatusCode::OK, &json!(0)), "a completed transfer keeps counting");
    assert_eq!(action(&server, &transfer("e", "4.000000000000000001")).await, "REJECT");

    let ended = log_events(&server, "fireblocks_status");
    assert_eq!(ended.len(), 2);
    assert_eq!(
        (&ended[0]["txId"], &ended[0]["status"], &ended[0]["subStatus"]),
        (&json!("a"), &json!("FAILED"), &json!("INSUFFICIENT_FUNDS"))
    );
    assert_eq!((&ended[1]["txHash"], &ended[1]["netAmount"]), (&json!("0xabc"), &json!("6")));
    assert!(ended[0]["hash"].is_string() && ended[0]["prev"].is_string(), "chained like every record: {}", ended[0]);
    let out = std::process::Command::new(BIN)
        .args(["log", "verify"])
        .arg(server.dir.path().join("decisions.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let text = admin_text(&server, "/metrics").await;
    assert!(
        text.contains("cosigner_guard_webhook_events_total{event=\"transaction.status.updated\",result=\"applied\"} 2"),
        "{text}"
    );
    assert!(text.contains("cosigner_guard_released_records_total 1"), "{text}");
    let (_, status) = server.admin_get("/status").await;
    assert_eq!(status["fireblocks_webhooks"]["kids"], json!(["fb-1"]), "{status}");
}

async fn admin_text(server: &TestServer, path: &str) -> String {
    let target = Target::new(&format!("http://{}", server.admin), None).await.unwrap();
    let (_, body) = target.connect().await.unwrap().get(path).await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_unsigned_forged_edited_repeated_or_stale_releases_anything() {
    let server = server("").await;
    assert_eq!(action(&server, &transfer("a", "6")).await, "APPROVE");
    let failed = event("e-1", "a", "FAILED", 1_000);
    let fb = fireblocks();
    let mut edited = failed.clone();
    edited.extend_from_slice(b" ");
    let forged_alg = format!(
        "{}..{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": "fb-1"}).to_string()),
        v2(&failed, "fb-1", &fb.current).split("..").nth(1).unwrap()
    );
    type Delivery<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>);
    let refused: Vec<Delivery> = vec![
        ("unsigned", vec![], failed.clone()),
        (
            "another key, same kid",
            vec![("Fireblocks-Webhook-Signature", v2(&failed, "fb-1", &fb.stranger))],
            failed.clone(),
        ),
        ("unknown kid", vec![("Fireblocks-Webhook-Signature", v2(&failed, "fb-9", &fb.stranger))], failed.clone()),
        ("body edited after signing", vec![("Fireblocks-Webhook-Signature", v2(&failed, "fb-1", &fb.current))], edited),
        ("RS256 claimed", vec![("Fireblocks-Webhook-Signature", forged_alg)], failed.clone()),
        ("v1 by a stranger", vec![("Fireblocks-Signature", v1(&failed, &fb.stranger))], failed.clone()),
        ("garbage", vec![("Fireblocks-Webhook-Signature", "not..a-jws!".into())], failed.clone()),
    ];
    for (what, headers, body) in refused {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, answer) = deliver(&server, &headers, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
    }
    let (status, _) = signed(&server, b"{\"id\": 1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "signed but not an event");
    assert_eq!(action(&server, &transfer("b", "6")).await, "REJECT", "nothing was released");

    // Out of order: the COMPLETED status (later) arrives first; the older FAILED one changes nothing.
    let (_, answer) = signed(&server, &event("e-2", "a", "COMPLETED", 2_000)).await;
    assert_eq!(answer["result"], "applied");
    let (_, answer) = signed(&server, &failed).await;
    assert_eq!(answer["result"], "stale");
    assert_eq!(action(&server, &transfer("c", "6")).await, "REJECT", "a stale FAILED releases nothing");

    // A repeated delivery of an applied event changes nothing either.
    assert_eq!(action(&server, &transfer("d", "1")).await, "APPROVE");
    let (_, answer) = signed(&server, &event("e-3", "d", "FAILED", 3_000)).await;
    assert_eq!(answer["released"], 1);
    let (_, answer) = signed(&server, &event("e-3", "d", "FAILED", 3_000)).await;
    assert_eq!((&answer["result"], &answer["released"]), (&json!("duplicate"), &json!(0)));
    assert_eq!(log_events(&server, "fireblocks_status").len(), 2, "only applied statuses are logged");
    let text = admin_text(&server, "/metrics").await;
    assert!(text.contains("result=\"bad_signature\"") && text.contains("result=\"unsigned\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_and_v2_deliveries_side_by_side_and_unknown_events_are_acknowledged() {
    let server = server("").await;
    assert_eq!(action(&server, &transfer("a", "6")).await, "APPROVE");
    assert_eq!(action(&server, &transfer("b", "4")).await, "APPROVE");
    let v1_body = json!({"type": "TRANSACTION_STATUS_UPDATED", "tenantId": "t", "timestamp": 5,
        "data": {"id": "a", "status": "CANCELLED", "lastUpdated": 1_000}})
    .to_string();
    let (status, answer) = deliver(
        &server,
        &[("Fireblocks-Signature", &v1(v1_body.as_bytes(), &fireblocks().legacy))],
        v1_body.as_bytes(),
    )
    .await;
    assert_eq!((status, &answer["released"]), (StatusCode::OK, &json!(1)), "{answer}");
    // Both headers, as during Fireblocks' migration: a v2 key not (yet) in the JWKS, a good v1.
    let body = event("e-2", "b", "BLOCKED", 1_000);
    let (v2_header, v1_header) = (v2(&body, "fb-2", &fireblocks().next), v1(&body, &fireblocks().legacy));
    let both = [("Fireblocks-Webhook-Signature", v2_header.as_str()), ("Fireblocks-Signature", v1_header.as_str())];
    let (_, answer) = deliver(&server, &both, &body).await;
    assert_eq!(answer["released"], 1, "{answer}");
    assert_eq!(action(&server, &transfer("c", "10")).await, "APPROVE", "both released");
    let other = json!({"id": "e-9", "eventType": "vault_account.created", "data": {"id": "7"}}).to_string();
    let (status, answer) = signed(&server, other.as_bytes()).await;
    assert_eq!((status, &answer["result"]), (StatusCode::OK, &json!("ignored")));
}

/// A transaction cancelled in Fireblocks while held: approvers can no longer release it.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_transactions_hold_refuses_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let approver = cosigner_guard::holds::generate_approver_key().unwrap();
    write(&dir.path().join("alice_private.pem"), &approver.private_pem);
    write(&dir.path().join("alice_public.pem"), &approver.public_pem);
    let mut spec = spec(dir.path(), "jwks = \"fireblocks_jwks.json\"");
    spec.policies[0].1 = "package cosigner.transaction\nimport rego.v1\nimport data.lib.holds\n\
        decision := holds.decide({\"action\": \"APPROVE\"}, 1, \"needs alice\")\n"
        .into();
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/lib/holds.rego")).unwrap();
    spec.policies.push(("lib/holds.rego", lib));
    // The hold webhook: approvers hear that there is nothing left to approve.
    let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notify_url = format!("http://{}/hooks", hooks.local_addr().unwrap());
    let (tx, mut notified) = tokio::sync::mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = hooks.accept().await else { return };
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    use http_body_util::BodyExt;
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    tx.send(serde_json::from_slice(&body).unwrap()).unwrap();
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Empty::<axum::body::Bytes>::new(),
                    ))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    let holds = format!("[holds]\nnotify_url = {notify_url:?}\n[holds.approvers]\nalice = \"alice_public.pem\"");
    let server = spawn_in(spec.extra(&holds), dir).await;
    assert_eq!(action(&server, &transfer("held", "1")).await, "RETRY");
    let (_, answer) = signed(&server, &event("e-1", "held", "CANCELLED", 1_000)).await;
    assert_eq!((&answer["result"], &answer["hold_cancelled"]), (&json!("applied"), &json!(true)), "{answer}");
    let mut next =
        async || tokio::time::timeout(std::time::Duration::from_secs(10), notified.recv()).await.unwrap().unwrap();
    assert_eq!(next().await["event"], "hold_created");
    let cancelled = next().await;
    assert_eq!(
        (cancelled["event"].as_str(), cancelled["hold"]["status"].as_str()),
        (Some("hold_cancelled"), Some("cancelled"))
    );
    let admin = format!("http://{}", server.admin);
    let key = server.dir.path().join("alice_private.pem");
    let out = std::process::Command::new(BIN)
        .args(["holds", "approve", "held", "--admin", &admin, "--key"])
        .arg(&key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Cancelled"), "{stderr}");
    let answer = decide(&server, "jwt", TX, &transfer("held", "1")).await;
    assert_eq!(answer["action"], "REJECT");
    assert!(answer["rejectionReason"].as_str().unwrap().contains("ended in Fireblocks"), "{answer}");
    let (_, hold) = server.admin_get("/holds/held").await;
    assert_eq!(hold["status"], "cancelled");
}

/// A minimal HTTPS server for the JWKS: its body can be swapped, and it counts its fetches.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(body: String) -> JwksServer {
    use hyper_util::rt::TokioIo;
    let tls = &keys();
    let certs =
        vec![rustls::pki_types::CertificateDer::from(pem::parse(&tls.tls_cert_pem).unwrap().contents().to_vec())];
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(pem::parse(&tls.tls_key_pem).unwrap().contents().to_vec()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}/.well-known/jwks.json", listener.local_addr().unwrap().port());
    let (body, fetches) = (Arc::new(Mutex::new(body)), Arc::new(AtomicUsize::new(0)));
    let (served, counted) = (body.clone(), fetches.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, served, counted) = (acceptor.clone(), served.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |_request| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().unwrap().clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            axum::body::Bytes::from(body),
                        )))
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    JwksServer { url, body, fetches }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_served_over_https_is_fetched_and_refreshed_for_a_rotated_key() {
    let fb = fireblocks();
    let jwks = jwks_server(jwks_of(&[("fb-1", &fb.current)])).await;
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("jwks_ca.pem"), &keys().tls_cert_pem);
    let spec = spec(dir.path(), &format!("jwks = {:?}\njwks_ca = \"jwks_ca.pem\"", jwks.url));
    let server = spawn_in(spec, dir).await;
    // Fetched at start-up, before any delivery asks for a key.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.admin_get("/status").await.1["fireblocks_webhooks"]["kids"] != json!(["fb-1"]) {
        assert!(std::time::Instant::now() < deadline, "the JWKS was never read");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(action(&server, &transfer("a", "6")).await, "APPROVE");
    let (status, answer) = signed(&server, &event("e-1", "a", "FAILED", 1_000)).await;
    assert_eq!((status, &answer["released"]), (StatusCode::OK, &json!(1)), "{answer}");

    // Fireblocks rotates: the new kid is unknown, so the JWKS is fetched again, once.
    *jwks.body.lock().unwrap() = jwks_of(&[("fb-1", &fb.current), ("fb-2", &fb.next)]);
    let before = jwks.fetches.load(Ordering::SeqCst);
    let body = event("e-2", "b", "COMPLETED", 2_000);
    let (status, answer) =
        deliver(&server, &[("Fireblocks-Webhook-Signature", &v2(&body, "fb-2", &fb.next))], &body).await;
    let (_, state) = server.admin_get("/status").await;
    assert_eq!(
        (status, &answer["result"]),
        (StatusCode::OK, &json!("applied")),
        "{answer} {}",
        state["fireblocks_webhooks"]
    );
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1);
    // Another unknown kid within the minute does not make it fetch again.
    let body = event("e-3", "b", "COMPLETED", 3_000);
    let (status, _) =
        deliver(&server, &[("Fireblocks-Webhook-Signature", &v2(&body, "fb-3", &fb.stranger))], &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1, "at most one refresh a minute");
    let (_, status) = server.admin_get("/status").await;
    assert_eq!(status["fireblocks_webhooks"]["kids"], json!(["fb-1", "fb-2"]), "{status}");
    assert!(status["fireblocks_webhooks"]["fetched_at"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_on_one_replica_releases_for_all_exactly_once() {
    let redis = RedisServer::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let jwks = "jwks = \"fireblocks_jwks.json\"";
    let a = spawn_in(spec(dir_a.path(), jwks).extra(&redis.state_toml()), dir_a).await;
    let b = spawn_in(spec(dir_b.path(), jwks).extra(&redis.state_toml()), dir_b).await;
    assert_eq!(action(&a, &transfer("x", "6")).await, "APPROVE");
    assert_eq!(action(&b, &transfer("y", "6")).await, "REJECT");
    let failed = event("e-1", "x", "FAILED", 1_000);
    let (_, answer) = signed(&a, &failed).await;
    assert_eq!(answer["released"], 1);
    let (_, answer) = signed(&b, &failed).await;
    assert_eq!(answer["result"], "duplicate", "the same delivery on the other replica");
    assert_eq!(action(&b, &transfer("y2", "6")).await, "APPROVE", "released for every replica");
    assert_eq!(action(&b, &transfer("x", "6")).await, "REJECT", "and ended for every replica");
    assert_eq!(action(&a, &transfer("z", "4.000000000000000001")).await, "REJECT", "y2's 6 counted, once");
}

#[tokio::test(flavor = "multi_thread")]
async fn state_release_by_hand_gives_the_amount_back_and_is_logged() {
    let server = spawn(Spec::new(DAILY_LIMIT, r#"decision := {"action": "REJECT"}"#)).await;
    assert_eq!(action(&server, &transfer("a", "6")).await, "APPROVE");
    let admin = format!("http://{}", server.admin);
    let out = std::process::Command::new(BIN)
        .args(["state", "release", "a", "--admin", &admin, "--reason", "failed on chain, no webhook"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Released 1 record(s) of a"), "{stdout}");
    assert_eq!(action(&server, &transfer("b", "10")).await, "APPROVE");
    let released = log_events(&server, "state_release");
    assert_eq!((&released[0]["txId"], &released[0]["by"]), (&json!("a"), &json!("loopback")));
    assert_eq!(released[0]["reason"], "failed on chain, no webhook");
}
