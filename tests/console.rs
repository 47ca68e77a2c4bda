//! The approval console: approvers enrolled by invitation with passkeys release a held transfer in
//! a real browser (headless Chromium with virtual authenticators, over the DevTools protocol), and
//! the decision log proves each verdict offline. What must not count does not: a session cookie
//! alone, a replayed assertion, another hold's assertion, a revoked approver.

use std::path::Path;

use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::browser::{Browser, Tab};
use crate::common::{BIN, RedisServer, Spec, TestServer, decide, payload, spawn_in};

const TX: &str = "tx_sign_request";

const HOLD_FOR_TWO: &str = r#"
import data.lib.holds
decision := holds.decide({"action": "APPROVE"}, 2, "needs two approvers")
"#;

/// Every transfer held for two approvers, the assets the raw-transaction check reads (so the
/// console can say what it found), and the console on the admin listener (loopback, plain HTTP).
fn console_spec() -> Spec {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut spec = Spec::new(HOLD_FOR_TWO, r#"decision := {"action": "REJECT"}"#);
    spec.policies.push(("lib/holds.rego", std::fs::read_to_string(root.join("policies/lib/holds.rego")).unwrap()));
    spec.policies.push(("rawtx/data.json", std::fs::read_to_string(root.join("policies/rawtx/data.json")).unwrap()));
    spec.extra("[console]\nenabled = true\n")
}

/// A console server, plus `extra` config.
async fn console_server(extra: &str) -> TestServer {
    spawn_in(console_spec().extra(extra), tempfile::tempdir().unwrap()).await
}

fn transfer(id: &str) -> Value {
    let mut tx = payload("eth_transfer.json");
    tx["txId"] = json!(id);
    tx["requestId"] = json!(id);
    tx
}

/// The console's base URL, as the browser must use it (`localhost`: WebAuthn refuses IPs).
fn origin(server: &TestServer) -> String {
    format!("http://localhost:{}", server.admin.port())
}

async fn cli(args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(BIN);
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

async fn invite(server: &TestServer, name: &str) -> String {
    let (ok, out, err) =
        cli(&["holds", "invite", name, "--ttl", "10m", "--admin", &format!("http://{}", server.admin)]).await;
    assert!(ok, "{out}{err}");
    assert!(err.contains(&format!("one-time link for {name}")), "{err}");
    out.trim().to_string()
}

/// Registers the tab's passkey with an invitation link; the page's final status.
async fn register(browser: &mut Browser, tab: &Tab, link: &str) -> String {
    browser.open(tab, link).await;
    browser.click(tab, "#register").await;
    browser.wait_text(tab, "#status", "egistered").await
}

async fn sign_in(browser: &mut Browser, tab: &Tab, server: &TestServer, name: &str) {
    browser.open(tab, &format!("{}/console/", origin(server))).await;
    browser.click(tab, "#signin").await;
    browser.wait_text(tab, "#who", &format!("Signed in as {name}")).await;
}

/// A `fetch` from the page (its cookies, its origin); `[status, body]`.
async fn page_fetch(browser: &mut Browser, tab: &Tab, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let script = format!(
        "fetch({path}, {{method: {method}, headers: {{'Content-Type': 'application/json'}}, body: {body}}})\
         .then(async r => [r.status, await r.json().catch(() => null)])",
        path = serde_json::to_string(path).unwrap(),
        method = serde_json::to_string(method).unwrap(),
        body = body.map_or("undefined".to_string(), |b| serde_json::to_string(&b.to_string()).unwrap()),
    );
    let answer = browser.eval(tab, &script).await;
    (answer[0].as_u64().unwrap() as u16, answer[1].clone())
}

async fn hold(server: &TestServer, id: &str) -> Value {
    let (status, hold) = server.admin_get(&format!("/holds/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{hold}");
    hold
}

fn passkey_verdicts(server: &TestServer) -> Vec<Value> {
    server.decision_records().into_iter().filter(|r| r["event"] == "hold_verdict").collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_approvers_enrolled_by_invitation_release_a_hold_in_chromium_and_the_log_proves_each_verdict() {
    let server = console_server("").await;
    let admin = format!("http://{}", server.admin);
    let mut browser = Browser::launch().await;
    let (alice, bob) = (browser.tab().await, browser.tab().await);

    // Enrolment: one-time links from the CLI, a passkey each.
    let alice_link = invite(&server, "alice").await;
    assert!(alice_link.starts_with(&format!("{}/console/register?token=", origin(&server))), "{alice_link}");
    let said = register(&mut browser, &alice, &alice_link).await;
    assert!(said.contains("Passkey registered for alice"), "{said}");
    assert_eq!(browser.credentials(&alice).await.len(), 1, "alice's authenticator holds her passkey");
    assert!(register(&mut browser, &bob, &invite(&server, "bob").await).await.contains("registered for bob"));
    // The link works once.
    let mallory = browser.tab().await;
    browser.open(&mallory, &alice_link).await;
    browser.click(&mallory, "#register").await;
    let said = browser.wait_text(&mallory, "#status", "Not registered").await;
    assert!(said.contains("unknown, already used or expired"), "{said}");
    let (ok, listed, err) = cli(&["holds", "approvers", "--admin", &admin]).await;
    assert!(ok && listed.contains("alice  passkey") && listed.contains("bob  passkey"), "{listed}{err}");

    // A held transfer, shown as an approver must see it.
    assert_eq!(decide(&server, "json", TX, &transfer("t1")).await["action"], "RETRY");
    sign_in(&mut browser, &alice, &server, "alice").await;
    let card = r#"[data-id="t1"]"#;
    browser.wait_text(&alice, &format!("{card} .headline"), "0.01 ETH").await;
    browser.wait_text(&alice, &format!("{card} .usd"), "18.74 USD").await;
    browser.wait_text(&alice, &format!("{card} .destinations"), "Network Deposits").await;
    browser.wait_text(&alice, &format!("{card} .destinations"), "0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8").await;
    browser.wait_text(&alice, &format!("{card} .reason"), "needs two approvers").await;
    browser
        .wait_text(
            &alice,
            &format!("{card} .raw"),
            "matches the description: pays 0.01 to 0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8",
        )
        .await;
    browser.wait_text(&alice, &format!("{card} .verdicts"), "0 of 2 approvals").await;
    let shot = browser.screenshot(&alice).await;
    assert!(shot.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png"), &shot).unwrap();
    // At phone width the facts stack under their labels and nothing scrolls sideways.
    let phone = json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true});
    browser.call(Some(&alice.session), "Emulation.setDeviceMetricsOverride", phone).await;
    let fits = browser.eval(&alice, "document.documentElement.scrollWidth <= window.innerWidth").await;
    assert_eq!(fits, json!(true), "no horizontal scrolling at 390 px");
    let shot = browser.screenshot(&alice).await;
    std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-phone.png"), &shot).unwrap();
    browser.call(Some(&alice.session), "Emulation.clearDeviceMetricsOverride", json!({})).await;

    // Approve: alice, then bob; the Co-signer's next retry is approved.
    browser.click(&alice, &format!("{card} .approve")).await;
    browser.wait_text(&alice, &format!("{card} .outcome"), "Approved by alice (1 of 2)").await;
    assert_eq!(decide(&server, "json", TX, &transfer("t1")).await["action"], "RETRY", "one of two");
    sign_in(&mut browser, &bob, &server, "bob").await;
    browser.wait_text(&bob, &format!("{card} .verdicts"), "approved by alice").await;
    browser.click(&bob, &format!("{card} .approve")).await;
    browser.wait_text(&bob, &format!("{card} .outcome"), "Approved by bob (2 of 2); the hold is approved").await;
    assert_eq!(decide(&server, "json", TX, &transfer("t1")).await["action"], "APPROVE", "released by two passkeys");

    // The log keeps each verdict's proof, and `log verify` checks them again offline.
    let verdicts = passkey_verdicts(&server);
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    let alices = verdicts.iter().find(|v| v["approver"] == "alice").unwrap().clone();
    assert!(alices["passkey"]["assertion"]["response"]["signature"].is_string(), "{alices}");
    cosigner_guard::console::reverify(&alices).expect("alice's verdict re-verifies");
    for (field, value) in
        [("verdict", json!("reject")), ("hold", json!("t2")), ("signed_at", json!("2026-01-01T00:00:00.000Z"))]
    {
        let mut forged = alices.clone();
        forged[field] = value;
        assert!(cosigner_guard::console::reverify(&forged).is_err(), "a verdict with another {field} must not verify");
    }
    let log = server.dir.path().join("decisions.jsonl");
    let (ok, out, err) = cli(&["log", "verify", log.to_str().unwrap()]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("2 passkey verdicts verified again offline (2 against their enrolment"), "{out}");

    // What must not count. A second hold, pending:
    assert_eq!(decide(&server, "json", TX, &transfer("t2")).await["action"], "RETRY");
    let t2 = hold(&server, "t2").await;
    let path = |id: &str| format!("/console/api/holds/{id}/verdict");
    let statement = |hold: &str, digest: &Value| json!({"hold": hold, "digest": digest, "verdict": "approve", "at": alices["signed_at"], "reason": ""});
    let assertion = alices["passkey"]["assertion"].clone();
    // ... alice's assertion replayed on its own hold,
    let replay = json!({"statement": statement("t1", &alices["digest"]), "credential": assertion});
    let (status, body) = page_fetch(&mut browser, &alice, "POST", &path("t1"), Some(&replay)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("passkey_refused")), "a replayed assertion: {body}");
    // ... on another hold, as it was made and bound to that hold,
    let (status, body) = page_fetch(&mut browser, &alice, "POST", &path("t2"), Some(&replay)).await;
    assert_eq!(status, 403, "t1's assertion on t2: {body}");
    let moved = json!({"statement": statement("t2", &t2["digest"]), "credential": assertion});
    let (status, body) = page_fetch(&mut browser, &alice, "POST", &path("t2"), Some(&moved)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("passkey_refused")), "t1's assertion as t2's: {body}");
    // ... and a session cookie alone (no assertion; a key-verdict without a signature).
    let bare = json!({"statement": statement("t2", &t2["digest"])});
    let (status, _) = page_fetch(&mut browser, &alice, "POST", &path("t2"), Some(&bare)).await;
    assert_eq!(status, 400, "a verdict without an assertion");
    let (status, _) =
        page_fetch(&mut browser, &alice, "POST", "/holds/t2/verdicts", Some(&statement("t2", &t2["digest"]))).await;
    assert_eq!(status, 400, "the key-verdict endpoint needs a signature");
    let forged = browser.tab().await;
    browser.open(&forged, &format!("{}/console/", origin(&server))).await;
    browser.eval(&forged, "document.cookie = 'cg_session=forged'; true").await;
    let (status, _) = page_fetch(&mut browser, &forged, "GET", "/console/api/holds", None).await;
    assert_eq!(status, 401, "a forged session");
    assert_eq!(hold(&server, "t2").await["approvals"], json!([]), "nothing counted on t2");

    // A rejection: the console asks for the reason first.
    let card2 = r#"[data-id="t2"]"#;
    browser.open(&alice, &format!("{}/console/", origin(&server))).await;
    browser.wait_text(&alice, &format!("{card2} .verdicts"), "0 of 2").await;
    browser.click(&alice, &format!("{card2} .reject")).await;
    browser.wait_text(&alice, &format!("{card2} .outcome"), "Write the reason for rejecting first").await;
    browser.eval(&alice, r#"document.querySelector('[data-id="t2"] .why').value = 'unknown beneficiary'; true"#).await;
    browser.click(&alice, &format!("{card2} .reject")).await;
    browser.wait_text(&alice, &format!("{card2} .outcome"), "Rejected by alice").await;
    let answer = decide(&server, "json", TX, &transfer("t2")).await;
    assert_eq!(answer["action"], "REJECT", "{answer}");
    assert!(answer["rejectionReason"].as_str().unwrap_or_default().contains("unknown beneficiary"), "{answer}");

    // A revoked approver: the session ends and the passkey no longer signs in or counts.
    assert_eq!(decide(&server, "json", TX, &transfer("t3")).await["action"], "RETRY");
    let (ok, out, err) = cli(&["holds", "revoke", "bob", "--admin", &admin]).await;
    assert!(ok && out.contains("revoked bob"), "{out}{err}");
    let (status, _) =
        page_fetch(&mut browser, &bob, "POST", "/console/api/holds/t3/options", Some(&json!({"verdict": "approve"})))
            .await;
    assert_eq!(status, 401, "bob's session ended with him");
    browser.open(&bob, &format!("{}/console/", origin(&server))).await;
    browser.click(&bob, "#signin").await;
    let said = browser.wait_text(&bob, "#status", "Not signed in").await;
    assert!(said.contains("not enrolled"), "{said}");
    assert_eq!(hold(&server, "t3").await["approvals"], json!([]));
    browser.close().await;

    // What operators see: the relying party in /status, every ceremony's outcome in /metrics.
    let (_, status) = server.admin_get("/status").await;
    assert_eq!(status["console"], json!({"origin": format!("{}/", origin(&server)), "rp_id": "localhost"}));
    let metrics = server.metrics().await;
    for line in [
        r#"cosigner_guard_console_events_total{event="register",result="ok"} 2"#,
        r#"cosigner_guard_console_events_total{event="verdict",result="ok"} 3"#,
        r#"cosigner_guard_console_events_total{event="verdict",result="passkey_refused"} 3"#,
        r#"cosigner_guard_console_events_total{event="sign_in",result="unknown_credential"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_on_redis_share_the_console_an_approver_enrolled_on_one_signs_in_and_approves_on_the_other() {
    let redis = RedisServer::start();
    let (a, b) = (console_server(&redis.state_toml()).await, console_server(&redis.state_toml()).await);
    let mut browser = Browser::launch().await;
    let tab = browser.tab().await;
    // Enrolled through A (passkeys belong to the relying party `localhost`, whatever the port) ...
    assert!(register(&mut browser, &tab, &invite(&a, "alice").await).await.contains("registered for alice"));
    assert_eq!(decide(&a, "json", TX, &transfer("r1")).await["action"], "RETRY", "held by A");
    // ... signs in through B: the sign-in ceremony, the session and the counter live in Redis.
    sign_in(&mut browser, &tab, &b, "alice").await;
    browser.wait_text(&tab, r#"[data-id="r1"] .headline"#, "0.01 ETH").await;
    browser.click(&tab, r#"[data-id="r1"] .approve"#).await;
    browser.wait_text(&tab, r#"[data-id="r1"] .outcome"#, "Approved by alice (1 of 2)").await;
    assert_eq!(hold(&a, "r1").await["approvals"][0]["approver"], "alice", "A sees B's verdict");
    // A revocation through A ends the session held on B.
    let (ok, out, err) = cli(&["holds", "revoke", "alice", "--admin", &format!("http://{}", a.admin)]).await;
    assert!(ok, "{out}{err}");
    let (status, _) = page_fetch(&mut browser, &tab, "GET", "/console/api/holds", None).await;
    assert_eq!(status, 401);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_the_session_cookie_is_secure_host_only_and_a_passkey_approves() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let config = console_spec().write(dir.path());
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"",
    );
    std::fs::write(&config, text).unwrap();
    let server = crate::common::spawn_config(&config, dir).await;
    // The test certificate (for `localhost`), trusted by its public key.
    let key = rcgen::KeyPair::from_pem(&crate::common::keys().tls_key_pem).unwrap();
    let spki = pem::parse(key.public_key_pem()).unwrap();
    let spki = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki.contents());
    let mut browser = Browser::launch_trusting(Some(&base64::engine::general_purpose::STANDARD.encode(spki))).await;
    let tab = browser.tab().await;
    let admin = format!("https://localhost:{}", server.admin.port());
    let ca = server.dir.path().join("tls/cert.pem");
    let (ok, link, err) =
        cli(&["holds", "invite", "alice", "--admin", &admin, "--admin-ca", ca.to_str().unwrap()]).await;
    assert!(ok && link.starts_with(&format!("{admin}/console/register?token=")), "{link}{err}");
    assert!(register(&mut browser, &tab, link.trim()).await.contains("registered for alice"));
    assert_eq!(decide(&server, "json", TX, &transfer("s1")).await["action"], "RETRY");
    browser.open(&tab, &format!("{admin}/console/")).await;
    browser.click(&tab, "#signin").await;
    browser.wait_text(&tab, "#who", "Signed in as alice").await;
    let cookies = browser.call(Some(&tab.session), "Network.getCookies", json!({"urls": [admin]})).await;
    let session = cookies["cookies"].as_array().unwrap().iter().find(|c| c["name"] == "__Host-cg_session").cloned();
    let session = session.unwrap_or_else(|| panic!("the session cookie: {cookies}"));
    assert_eq!((session["secure"].as_bool(), session["httpOnly"].as_bool()), (Some(true), Some(true)), "{session}");
    assert_eq!(session["sameSite"], "Strict");
    browser.wait_text(&tab, r#"[data-id="s1"] .headline"#, "0.01 ETH").await;
    browser.click(&tab, r#"[data-id="s1"] .approve"#).await;
    browser.wait_text(&tab, r#"[data-id="s1"] .outcome"#, "Approved by alice (1 of 2)").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn passkeys_and_keys_share_one_name_space_and_a_person_counts_once_however_many_passkeys() {
    let dir = tempfile::tempdir().unwrap();
    let bob = cosigner_guard::holds::generate_approver_key().unwrap();
    crate::common::write(&dir.path().join("approvers/bob_public.pem"), &bob.public_pem);
    crate::common::write(&dir.path().join("approvers/bob_private.pem"), &bob.private_pem);
    let server = spawn_in(console_spec().extra("[holds.approvers]\nbob = \"approvers/bob_public.pem\"\n"), dir).await;
    let admin = format!("http://{}", server.admin);
    let mut browser = Browser::launch().await;
    // alice enrols two authenticators (a phone and a laptop, say): two passkeys, one approver.
    let (phone, laptop) = (browser.tab().await, browser.tab().await);
    assert!(register(&mut browser, &phone, &invite(&server, "alice").await).await.contains("for alice"));
    assert!(register(&mut browser, &laptop, &invite(&server, "alice").await).await.contains("for alice"));
    let (_, listed, _) = cli(&["holds", "approvers", "--admin", &admin]).await;
    assert_eq!(listed.matches("alice  passkey").count(), 2, "{listed}");
    assert!(listed.contains("bob  key  sha256:"), "{listed}");

    assert_eq!(decide(&server, "json", TX, &transfer("m1")).await["action"], "RETRY");
    let card = r#"[data-id="m1"]"#;
    for tab in [&phone, &laptop] {
        sign_in(&mut browser, tab, &server, "alice").await;
        browser.wait_text(tab, &format!("{card} .headline"), "0.01 ETH").await;
    }
    browser.click(&phone, &format!("{card} .approve")).await;
    browser.wait_text(&phone, &format!("{card} .outcome"), "Approved by alice (1 of 2)").await;
    // Her second passkey is still alice: it does not make a second approval.
    browser.click(&laptop, &format!("{card} .approve")).await;
    let said = browser.wait_text(&laptop, &format!("{card} .outcome"), "Verdict not counted").await;
    assert!(said.contains("alice has already given a verdict"), "{said}");
    assert_eq!(decide(&server, "json", TX, &transfer("m1")).await["action"], "RETRY", "still one of two");
    // bob's key completes the quorum the passkey started.
    let key = server.dir.path().join("approvers/bob_private.pem");
    let (ok, out, err) = cli(&["holds", "approve", "m1", "--key", key.to_str().unwrap(), "--admin", &admin]).await;
    assert!(ok && out.contains("hold m1 is approved (2 of 2 approvals)"), "{out}{err}");
    assert_eq!(decide(&server, "json", TX, &transfer("m1")).await["action"], "APPROVE");
    browser.close().await;
}

/// A raw HTTP/1.1 exchange with the admin listener: the response head and body as text.
async fn raw(server: &TestServer, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.admin).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn post(server: &TestServer, path: &str, origin_header: Option<&str>, body: &str) -> String {
    let origin = origin_header.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost:{}\r\n{origin}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.admin.port(),
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_served_hardened_refuses_other_origins_and_limits_sign_in_attempts() {
    let server = console_server("").await;
    let page = raw(&server, "GET /console/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_string()).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let head = page.to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'none'; script-src 'self'",
        "frame-ancestors 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
    ] {
        assert!(head.contains(header), "missing {header}: {page}");
    }
    assert!(!head.contains("access-control-allow"), "no CORS: {page}");
    assert!(!page.contains("<script>") && !page.contains("style="), "no inline script or style");
    assert!(page.contains("Sign in with passkey"));

    // State-changing calls only from the console's own origin.
    let own = origin(&server);
    for other in [None, Some("https://evil.example"), Some("http://localhost:1")] {
        let answer = raw(&server, post(&server, "/console/api/signin/start", other, "{}")).await;
        assert!(answer.starts_with("HTTP/1.1 403") && answer.contains("cross_origin"), "{other:?}: {answer}");
    }
    let answer = raw(&server, post(&server, "/console/api/signin/start", Some(&own), "{}")).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"challenge\""), "{answer}");
    // Without a session, nothing but the sign-in.
    let answer =
        raw(&server, "GET /console/api/holds HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into()).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Sign-in attempts are limited per address: 20 a minute, 4 spent above (refused ones count).
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let answer = raw(&server, post(&server, "/console/api/signin/start", Some(&own), "{}")).await;
        statuses.push(answer[9..12].to_string());
    }
    let expected: Vec<&str> = [["200"; 16].as_slice(), ["429"; 4].as_slice()].concat();
    assert_eq!(statuses, expected);
    // What trusts a loopback peer trusts no web page: not a cross-site form (Origin, Sec-Fetch-*)
    // nor a page on a rebound DNS name (Host) — for managing approvers and for unsigned releases.
    let invite = r#"{"name":"mallory"}"#;
    let from_page = [
        post(&server, "/approvers/invites", Some("https://evil.example"), invite),
        post(&server, "/approvers/invites", None, invite).replace("Host: localhost", "Host: evil.example"),
        post(&server, "/approvers/invites", None, invite)
            .replace("Connection:", "Sec-Fetch-Site: cross-site\r\nConnection:"),
        post(&server, "/state/release/t1", Some("null"), r#"{"reason":"csrf"}"#),
    ];
    for request in from_page {
        let answer = raw(&server, request.clone()).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{request}\n{answer}");
    }
    let answer = raw(&server, post(&server, "/approvers/invites", None, invite)).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("/console/register?token="),
        "the CLI's way: {answer}"
    );
    // A made-up invitation.
    let answer = raw(&server, post(&server, "/console/api/register/start", Some(&own), r#"{"token":"made-up"}"#)).await;
    assert!(answer.starts_with("HTTP/1.1 429") || answer.contains("bad_invite"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_console_config_there_is_no_console_and_an_open_admin_listener_without_tls_is_refused() {
    let server =
        crate::common::spawn(Spec::new(r#"decision := {"action": "REJECT"}"#, r#"decision := {"action": "REJECT"}"#))
            .await;
    let (status, body) = server.admin_get("/console/api/session").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("no_console")));

    let dir = tempfile::tempdir().unwrap();
    let config = Spec::new("", "").extra("[console]\nenabled = true\n").write(dir.path());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[admin]\nlisten = \"127.0.0.1:0\"", "[admin]\nlisten = \"0.0.0.0:0\"\nallow_plaintext = true");
    std::fs::write(&config, text).unwrap();
    let error = cosigner_guard::config::Settings::load(&config).unwrap_err().to_string();
    assert!(error.contains("console.enabled") && error.contains("has no TLS"), "{error}");
}
