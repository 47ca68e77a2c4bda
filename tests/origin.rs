//! Proof of origin on the real server over TLS: the starter set with `data.origin.required`, tokens
//! made by a standard JWT library (not ours) with Ed25519 and RSA backend keys generated here.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::{RedisServer, Spec, TestServer, decide, payload, spawn, write};
use cosigner_guard::keys::{GeneratedKeyPair, SigningAlgorithm, generate};
use cosigner_guard::origin::generate_ed25519;

const TX: &str = "tx_sign_request";
const DEST: &str = "0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8";

struct Backends {
    ed25519: GeneratedKeyPair,
    rsa: GeneratedKeyPair,
    stranger: GeneratedKeyPair,
}

fn backends() -> &'static Backends {
    static KEYS: std::sync::OnceLock<Backends> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| Backends {
        ed25519: generate_ed25519().unwrap(),
        rsa: generate(SigningAlgorithm::Rs256).unwrap(),
        stranger: generate_ed25519().unwrap(),
    })
}

/// The starter set with the origin required, two backend keys (a rotation), tokens in the note.
fn required(extra: &str) -> Spec {
    let dir = tempfile::tempdir().unwrap().keep();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"), &dir.join("policies"));
    write(&dir.join("policies/origin/data.json"), r#"{"required": true}"#);
    write(&dir.join("backend.pem"), &backends().ed25519.public_pem);
    write(&dir.join("backend_rsa.pem"), &backends().rsa.public_pem);
    let mut spec = Spec::starter().extra(&format!(
        "[origin]\ncarrier = \"note\"\nmax_age = \"1h\"\n[origin.keys]\nbackend = {:?}\nbackend_2026 = {:?}\n{extra}",
        dir.join("backend.pem").display().to_string(),
        dir.join("backend_rsa.pem").display().to_string(),
    ));
    spec.policy_dir = Some(dir.join("policies"));
    spec
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// What the backend authorises: the documented ETH transfer, vault 0 to vault 1.
fn claims(jti: &str) -> Value {
    json!({
        "jti": jti, "iat": now(), "exp": now() + 600,
        "asset": "ETH", "amount": "0.01",
        "source": {"type": "VAULT", "id": "0"},
        "destination": {"type": "VAULT", "id": "1", "address": DEST},
    })
}

fn ed25519(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("backend".into());
    let key = EncodingKey::from_ed_pem(backends().ed25519.private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// The documented ETH transfer as transaction `id`, its note carrying `token`.
fn transfer(id: &str, token: &str) -> Value {
    let mut tx = payload("eth_transfer.json");
    tx["txId"] = json!(id);
    tx["requestId"] = json!(format!("{id}-request"));
    tx["note"] = json!(format!("payroll run 42 | {token}"));
    tx
}

/// The answer, and the origin view the decision log kept of its request.
async fn decided(server: &TestServer, request: &Value) -> (String, String, Value) {
    let mine = |records: Vec<Value>| -> Vec<Value> {
        records.into_iter().filter(|r| r["requestId"] == request["requestId"]).collect()
    };
    let before = mine(server.decision_records()).len();
    let answer = decide(server, "jwt", TX, request).await;
    // The record is written as the answer leaves: wait for it to reach the file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let record = loop {
        if let Some(record) = mine(server.decision_records()).into_iter().nth(before) {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "no decision record for {}", request["requestId"]);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let reason = answer["rejectionReason"].as_str().unwrap_or_default().to_string();
    (answer["action"].as_str().unwrap().to_string(), reason, record["input"]["context"]["origin"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_exactly_this_transfer_is_approved_and_each_changed_claim_is_named() {
    let server = spawn(required("")).await;
    let (action, reason, origin) = decided(&server, &transfer("ok", &ed25519(&claims("j-ok")))).await;
    assert_eq!(action, "APPROVE", "{reason}");
    assert_eq!(origin["verified"], true, "{origin}");
    assert_eq!(origin["key"], "backend");
    assert_eq!(origin["mismatches"], json!([]));
    assert_eq!(origin["reused"], false);

    let edits: [(&str, &str, Value); 5] = [
        ("amount", "/amount", json!("0.010000000000000001")),
        ("destination", "/destination/address", json!("0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f9")),
        ("destination", "/destination/id", json!("2")),
        ("asset", "/asset", json!("ETH_TEST5")),
        ("source", "/source/id", json!("7")),
    ];
    for (i, (name, pointer, value)) in edits.into_iter().enumerate() {
        let mut edited = claims(&format!("j-edit-{i}"));
        *edited.pointer_mut(pointer).unwrap() = value;
        let (action, reason, origin) = decided(&server, &transfer(&format!("edit-{i}"), &ed25519(&edited))).await;
        assert_eq!(action, "REJECT", "{pointer}");
        assert_eq!(origin["mismatches"], json!([name]), "{pointer}: {reason} {origin}");
        assert!(reason.contains(&format!("does not match the transaction's {name}")), "{pointer}: {reason}");
    }

    // The token is right; the request moves something else (a token for another request).
    let mut other = transfer("other", &ed25519(&claims("j-other")));
    other["destId"] = json!("3");
    other["destinations"][0]["dstId"] = json!("3");
    let (action, reason, origin) = decided(&server, &other).await;
    assert_eq!((action.as_str(), origin["mismatches"].clone()), ("REJECT", json!(["destination"])), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_that_are_not_ours_or_not_now_are_refused_saying_why() {
    let server = spawn(required("")).await;
    let b = backends();
    let rsa_key = EncodingKey::from_rsa_pem(b.rsa.private_pem.as_bytes()).unwrap();
    let stranger = EncodingKey::from_ed_pem(b.stranger.private_pem.as_bytes()).unwrap();
    let with_kid = |alg, kid: &str| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        header
    };
    let mut expired = claims("j-expired");
    expired["exp"] = json!(now() - 120);
    let mut old = claims("j-old");
    old["iat"] = json!(now() - 2 * 3600);
    old["exp"] = json!(now() + 600);
    let b64 = |v: &Value| crate::common::b64(v.to_string().as_bytes());
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims("j-none")));
    let hmac = EncodingKey::from_secret(b.rsa.public_pem.as_bytes());
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", ed25519(&expired), "expired"),
        ("too-old", ed25519(&old), "older than origin.max_age"),
        (
            "unknown-kid",
            jsonwebtoken::encode(&with_kid(Algorithm::EdDSA, "ops"), &claims("j-1"), &stranger).unwrap(),
            "unknown key",
        ),
        (
            "stranger",
            jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims("j-2"), &stranger).unwrap(),
            "does not verify",
        ),
        ("alg-none", unsigned, "\"none\" is not accepted"),
        (
            "hs256",
            jsonwebtoken::encode(&with_kid(Algorithm::HS256, "backend_2026"), &claims("j-3"), &hmac).unwrap(),
            "\"HS256\" is not accepted",
        ),
        (
            "other-alg",
            jsonwebtoken::encode(&with_kid(Algorithm::RS256, "backend"), &claims("j-4"), &rsa_key).unwrap(),
            "signs with EdDSA, not RS256",
        ),
        ("no-token", String::new(), "no origin token"),
    ];
    for (id, token, why) in cases {
        let (action, reason, origin) = decided(&server, &transfer(id, &token)).await;
        assert_eq!(action, "REJECT", "{id}");
        assert_eq!(origin["verified"], false, "{id}");
        assert!(origin["error"].as_str().unwrap().contains(why), "{id}: {origin}");
        assert!(reason.contains("origin: no valid origin token"), "{id}: {reason}");
    }
    // The second key of a rotation verifies, by its kid.
    let rotated =
        jsonwebtoken::encode(&with_kid(Algorithm::RS256, "backend_2026"), &claims("j-rsa"), &rsa_key).unwrap();
    let (action, reason, origin) = decided(&server, &transfer("rotated", &rotated)).await;
    assert_eq!((action.as_str(), origin["key"].as_str()), ("APPROVE", Some("backend_2026")), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_moves_one_transaction_its_retries_included() {
    let server = spawn(required("")).await;
    let token = ed25519(&claims("j-once"));
    let first = transfer("first", &token);
    assert_eq!(decided(&server, &first).await.0, "APPROVE");
    // The same transaction asking again (a retry, the signing stage) is the same use.
    let (action, _, origin) = decided(&server, &first).await;
    assert_eq!((action.as_str(), &origin["reused"]), ("APPROVE", &json!(false)));
    let (action, reason, origin) = decided(&server, &transfer("second", &token)).await;
    assert_eq!((action.as_str(), &origin["reused"]), ("REJECT", &json!(true)));
    assert!(reason.contains("already used by another transaction"), "{reason}");
    // A rejected transaction binds nothing: its token still moves the transfer it was made for.
    let spare = ed25519(&claims("j-spare"));
    let mut refused = transfer("refused", &spare);
    refused["destinations"][0]["action"] = json!("BLOCK");
    assert_eq!(decided(&server, &refused).await.0, "REJECT");
    assert_eq!(decided(&server, &transfer("spare", &spare)).await.0, "APPROVE");
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_on_redis_share_each_tokens_one_use() {
    let redis = RedisServer::start();
    let a = spawn(required(&redis.state_toml())).await;
    let b = spawn(required(&redis.state_toml())).await;
    let token = ed25519(&claims("j-shared"));
    assert_eq!(decided(&a, &transfer("on-a", &token)).await.0, "APPROVE");
    assert_eq!(decided(&b, &transfer("on-a", &token)).await.0, "APPROVE", "the same transaction on the other replica");
    let (action, _, origin) = decided(&b, &transfer("on-b", &token)).await;
    assert_eq!((action.as_str(), &origin["reused"]), ("REJECT", &json!(true)));
}

/// Two transactions racing with one token: exactly one is approved.
#[tokio::test(flavor = "multi_thread")]
async fn racing_transactions_with_one_token_approve_exactly_one() {
    let server = std::sync::Arc::new(spawn(required("")).await);
    let token = ed25519(&claims("j-race"));
    let mut racers = Vec::new();
    for i in 0..8 {
        let (server, request) = (server.clone(), transfer(&format!("race-{i}"), &token));
        racers.push(tokio::spawn(async move { decide(&server, "jwt", TX, &request).await["action"].clone() }));
    }
    let mut approved = 0;
    for racer in racers {
        approved += usize::from(racer.await.unwrap() == "APPROVE");
    }
    assert_eq!(approved, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_carrier_is_a_clear_refusal_not_a_crash() {
    let server = spawn(required("").server("max_body_bytes = 4194304")).await;
    let cases: [(&str, Value, &str); 4] = [
        ("megabyte", json!(format!("{} {}", "x".repeat(1 << 20), ed25519(&claims("j-big")))), "longer than"),
        ("binary", json!("\u{0}\u{1}eyJ\u{7f}.eyJ\u{fffd}.\u{0}"), "no origin token"),
        ("two-tokens", json!(format!("{} {}", ed25519(&claims("j-a")), ed25519(&claims("j-b")))), "more than one"),
        ("not-a-string", json!({"token": ed25519(&claims("j-obj"))}), "not a string"),
    ];
    for (id, note, why) in cases {
        let mut request = transfer(id, "");
        request["note"] = note;
        let (action, _, origin) = decided(&server, &request).await;
        assert_eq!(action, "REJECT", "{id}");
        assert!(origin["error"].as_str().unwrap().contains(why), "{id}: {origin}");
    }
    assert_eq!(decided(&server, &transfer("after", &ed25519(&claims("j-after")))).await.0, "APPROVE");
}

/// The page's code block in `language`, from `docs/origin.md`.
fn snippet(language: &str) -> String {
    let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/origin.md")).unwrap();
    let start = page.find(&format!("```{language}\n")).unwrap() + language.len() + 4;
    page[start..start + page[start..].find("```").unwrap()].to_string()
}

/// What the handler makes of a token a documented snippet printed, for vault 0 → vault 1.
fn judged(token: &str) -> cosigner_guard::origin::OriginView {
    use cosigner_guard::origin::{Carrier, Origin, OriginKey};
    let key = OriginKey::from_pem("backend", backends().ed25519.public_pem.as_bytes()).unwrap();
    let origin = Origin { carrier: Carrier::Note, max_age: std::time::Duration::from_secs(3600), keys: vec![key] };
    let mut request = transfer("snippet", token.trim());
    request["amountStr"] = json!("0.01");
    let request = request.as_object().unwrap().clone();
    origin.inspect(&request, &cosigner_guard::transfer::Transfer::describe(&request), chrono::Utc::now())
}

/// Where `.ci/run` installs the snippets' libraries (PyJWT, jose); a machine without them skips.
fn doc_tools() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/doc-tools")
}

#[test]
fn the_documented_python_snippet_makes_a_token_the_handler_verifies() {
    let tools = doc_tools().join("python");
    if !tools.join("jwt").exists() {
        eprintln!("skipped: PyJWT is not in {} (.ci/run installs it)", tools.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("backend_private.pem"), &backends().ed25519.private_pem);
    let out = std::process::Command::new("python3")
        .args(["-c", &format!("{}\nprint(token)", snippet("python"))])
        .env("PYTHONPATH", &tools)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let view = judged(&String::from_utf8(out.stdout).unwrap());
    assert!(view.verified && view.mismatches.is_empty(), "{view:?}");
}

#[test]
fn the_documented_typescript_snippet_makes_a_token_the_handler_verifies() {
    let tools = doc_tools();
    if !tools.join("node_modules/jose").exists() {
        eprintln!("skipped: jose is not in {} (.ci/run installs it)", tools.display());
        return;
    }
    let dir = tempfile::tempdir_in(&tools).unwrap();
    write(&dir.path().join("backend_private.pem"), &backends().ed25519.private_pem);
    let script = format!(
        "import fs from \"node:fs\";\nconst privatePem = fs.readFileSync(\"backend_private.pem\", \"utf8\");\n{}\nconsole.log(token);\n",
        snippet("ts")
    );
    write(&dir.path().join("snippet.mjs"), &script);
    let out = std::process::Command::new("node").arg("snippet.mjs").current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let view = judged(&String::from_utf8(out.stdout).unwrap());
    assert!(view.verified && view.mismatches.is_empty(), "{view:?}");
}

/// Fixture cases state the origin outcome; a `jti` in it is bound and checked as on the server.
#[test]
fn fixtures_state_the_origin_and_its_one_use_is_checked() {
    let spec = required("");
    let policies = spec.policy_dir.clone().unwrap();
    let fixture = r#"
kind: transaction
cases:
  - name: a verified token moves one transaction, the second is refused
    request: ../payloads/eth_transfer.json
    now: "2026-03-02T12:00:00Z"
    context:
      origin: {present: true, verified: true, key: backend, claims: {jti: j-1, iat: 1772452800, exp: 1772453400}}
    steps:
      - name: first transaction
        patch: {txId: first, requestId: first}
        expect: {action: APPROVE}
      - name: its retry
        patch: {txId: first, requestId: first}
        expect: {action: APPROVE}
      - name: the same token on another transaction
        expect: {action: REJECT, reason: "already used by another transaction"}
  - name: a mismatch is refused naming the claim
    request: ../payloads/eth_transfer.json
    context:
      origin: {present: true, verified: true, claims: {jti: j-2, iat: 1772452800, exp: 1772453400}, mismatches: [amount]}
    expect: {action: REJECT, reason: "does not match the transaction's amount"}
  - name: no view is no proof
    request: ../payloads/eth_transfer.json
    expect: {action: REJECT, reason: "[origin] is not configured"}
"#;
    // The starter's own cases run without the origin: this set requires it.
    for starter in ["cosigner/transaction_test.yaml", "cosigner/transaction_test.rego"] {
        std::fs::remove_file(policies.join(starter)).unwrap();
    }
    write(&policies.join("cosigner/origin_test.yaml"), fixture);
    let out = std::process::Command::new(crate::common::BIN).args(["test"]).arg(&policies).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("PASS  a verified token moves one transaction"), "{stdout}");
}

/// Replay decides with the logged origin view and the logged reuse read, long after the token expired.
#[tokio::test(flavor = "multi_thread")]
async fn replay_decides_with_the_logged_origin() {
    let spec = required("");
    let policies = spec.policy_dir.clone().unwrap();
    let server = spawn(spec).await;
    let token = ed25519(&claims("j-replay"));
    assert_eq!(decided(&server, &transfer("r-1", &token)).await.0, "APPROVE");
    assert_eq!(decided(&server, &transfer("r-2", &token)).await.0, "REJECT");
    let log = server.dir.path().join("decisions.jsonl");
    let out = std::process::Command::new(crate::common::BIN)
        .args(["replay", "--format", "json", "--log"])
        .arg(&log)
        .arg("--policies")
        .arg(&policies)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay found a change: {stdout}{}", String::from_utf8_lossy(&out.stderr));
}

/// An operator tries the set-up without code: `keygen --origin`, then `origin sign` for a transfer.
#[tokio::test(flavor = "multi_thread")]
async fn keygen_and_origin_sign_make_a_token_the_server_approves() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::common::BIN).args(args).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let printed = run(&["keygen", "--out", "keys", "--origin", "payments"]);
    assert!(printed.contains("[origin.keys]\npayments = \"keys/payments_public.pem\""), "{printed}");
    let dest = format!("VAULT:1:{DEST}");
    let token = run(&[
        "origin",
        "sign",
        "--key",
        "keys/payments_private.pem",
        "--name",
        "payments",
        "--asset",
        "ETH",
        "--amount",
        "0.010000000000000000",
        "--source",
        "VAULT:0",
        "--dest",
        &dest,
        "--ttl",
        "5m",
    ]);
    let public = dir.path().join("keys/payments_public.pem").display().to_string();
    let server = spawn(required(&format!("payments = {public:?}"))).await;
    let (action, reason, origin) = decided(&server, &transfer("cli", token.trim())).await;
    assert_eq!((action.as_str(), origin["key"].as_str()), ("APPROVE", Some("payments")), "{reason}");
    let exp = origin["claims"]["exp"].as_i64().unwrap() - origin["claims"]["iat"].as_i64().unwrap();
    assert_eq!(exp, 300, "--ttl 5m");
}

/// Across features: a transaction approved with a token that then FAILED in Fireblocks has its
/// limits released — but its token stays used (a token moves one transaction, even one that
/// failed), and the failed txId itself is never signed again.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_transactions_token_stays_used() {
    let fireblocks = cosigner_guard::keys::generate_rsa_2048().unwrap();
    let jwks = tempfile::tempdir().unwrap().keep().join("jwks.json");
    write(&jwks, &crate::lifecycle::jwks_of(&[("fb", &fireblocks)]));
    let webhooks = format!("[fireblocks_webhooks]\nlisten = \"127.0.0.1:0\"\njwks = {:?}", jwks.display().to_string());
    let server = spawn(required("").extra(&webhooks)).await;
    let token = ed25519(&claims("j-failed"));
    assert_eq!(decided(&server, &transfer("will-fail", &token)).await.0, "APPROVE");
    let body = crate::lifecycle::event("e-1", "will-fail", "FAILED", 1_000);
    let signature = crate::lifecycle::v2(&body, "fb", &fireblocks);
    let addr = server.webhooks.unwrap();
    let target = cosigner_guard::http_client::Target::new(
        &format!("https://localhost:{}", addr.port()),
        Some(crate::common::keys().tls_cert_pem.as_bytes()),
    )
    .await
    .unwrap();
    let headers = [("Fireblocks-Webhook-Signature", signature.as_str())];
    let (status, _) = target.connect().await.unwrap().post_with("/fireblocks/webhook", &headers, body).await.unwrap();
    assert!(status.is_success());
    let (action, reason, origin) = decided(&server, &transfer("second-try", &token)).await;
    assert_eq!((action.as_str(), &origin["reused"]), ("REJECT", &json!(true)), "{reason}");
    let again = decide(&server, "jwt", TX, &transfer("will-fail", &token)).await;
    assert_eq!(again["action"], "REJECT", "the failed transaction is not signed again: {again}");
}
