//! Holds: a transfer held for people is answered RETRY until M of N approvers sign it off with
//! their own keys (through the `holds` CLI and the admin API), then approved at its retry and at
//! its signing stage. Verdicts that must not count are refused and change nothing; a rejection
//! rejects; an unreleased hold expires; holds survive a restart and are shared by replicas.

use std::path::Path;
use std::time::Duration;

use crate::common::{BIN, RedisServer, Spec, TestServer, decide, payload, spawn_in, start_with_log};
use cosigner_guard::holds::{ApproverSigningKey, Hold, SignedVerdict, Verdict, generate_approver_key};
use cosigner_guard::http_client::Target;
use hyper::StatusCode;
use serde_json::{Value, json};

const TX: &str = "tx_sign_request";

/// The starter library's usual gate: hold every transfer for two approvers, approve once released.
const HOLD_FOR_TWO: &str = r#"
import data.lib.holds
decision := holds.decide({"action": "APPROVE"}, 2, "needs two approvers")
"#;

const APPROVERS: [&str; 3] = ["alice", "bob", "carol"];

/// A server whose transactions are decided by `rego` (with `lib/holds.rego`), with three approvers
/// (alice, bob, carol) whose keys are generated now, plus `extra` config.
fn spec(rego: &str, dir: &Path, extra: &str) -> Spec {
    let mut spec = Spec::new(rego, r#"decision := {"action": "REJECT"}"#);
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/lib/holds.rego")).unwrap();
    spec.policies.push(("lib/holds.rego", lib));
    let mut approvers = String::from("[holds.approvers]\n");
    for name in APPROVERS.iter().chain(&["stranger"]) {
        let pair = generate_approver_key().unwrap();
        crate::common::write(&dir.join(format!("approvers/{name}_private.pem")), &pair.private_pem);
        crate::common::write(&dir.join(format!("approvers/{name}_public.pem")), &pair.public_pem);
        if *name != "stranger" {
            approvers.push_str(&format!("{name} = \"approvers/{name}_public.pem\"\n"));
        }
    }
    spec.extra(extra).extra(&approvers)
}

async fn held_server(rego: &str, extra: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(rego, dir.path(), extra);
    spawn_in(spec, dir).await
}

/// The documented ETH transfer as new transaction `id`.
fn transfer(id: &str) -> Value {
    let mut tx = payload("eth_transfer.json");
    tx["txId"] = json!(id);
    tx["requestId"] = json!(id);
    tx
}

/// The same transaction at its signing stage: fee and raw transaction added, same identity.
fn signing_stage(id: &str) -> Value {
    let mut tx = transfer(id);
    tx["fee"] = json!("0.000597803762241000");
    tx["rawTx"] = json!([{"keyDerivationPath": "[ 44, 60, 0, 0, 0 ]", "rawTx": "02ef", "payload": "77b4"}]);
    tx
}

/// Runs `cosigner-guard holds ARGS --admin URL`; returns whether it succeeded, stdout and stderr.
async fn holds_cli(admin: &str, args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(BIN);
    command.arg("holds").args(args).args(["--admin", admin]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

async fn approve(server: &TestServer, id: &str, who: &str) -> (bool, String, String) {
    let key = server.dir.path().join(format!("approvers/{who}_private.pem"));
    holds_cli(&format!("http://{}", server.admin), &["approve", id, "--key", key.to_str().unwrap()]).await
}

async fn reject(server: &TestServer, id: &str, who: &str, reason: &str) -> (bool, String, String) {
    let key = server.dir.path().join(format!("approvers/{who}_private.pem"));
    let admin = format!("http://{}", server.admin);
    holds_cli(&admin, &["reject", id, "--key", key.to_str().unwrap(), "--reason", reason]).await
}

async fn hold(server: &TestServer, id: &str) -> Value {
    let (status, hold) = server.admin_get(&format!("/holds/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{hold}");
    hold
}

fn approvers_of(hold: &Value) -> Vec<&str> {
    hold["approvals"].as_array().unwrap().iter().map(|a| a["approver"].as_str().unwrap()).collect()
}

/// POSTs a verdict to the admin API by hand; returns the status and the error code.
async fn post_verdict(server: &TestServer, id: &str, verdict: &Value) -> (StatusCode, Value) {
    let target = Target::new(&format!("http://{}", server.admin), None).await.unwrap();
    let (status, body) =
        target.connect().await.unwrap().post_json(&format!("/holds/{id}/verdicts"), verdict).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn signed(server: &TestServer, hold: &Value, who: &str, verdict: Verdict, reason: &str) -> Value {
    let key = ApproverSigningKey::from_pem_file(&server.dir.path().join(format!("approvers/{who}_private.pem")));
    let hold: Hold = serde_json::from_value(hold.clone()).unwrap();
    serde_json::to_value(SignedVerdict::sign(&hold, verdict, reason, &key.unwrap(), chrono::Utc::now())).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_transfer_is_released_by_two_approvers_and_approved_at_its_retry_and_signing_stage() {
    let server = held_server(HOLD_FOR_TWO, "").await;
    let first = decide(&server, "jwt", TX, &transfer("t1")).await;
    assert_eq!(
        (first["action"].as_str(), first["rejectionReason"].as_str()),
        (Some("RETRY"), Some("needs two approvers"))
    );
    let created = hold(&server, "t1").await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["required"], 2);
    assert_eq!(created["summary"]["asset"], "ETH");
    assert_eq!(created["summary"]["amount"], "0.01", "the canonical amount, as its identity says");

    let (ok, listed, _) = holds_cli(&format!("http://{}", server.admin), &["list"]).await;
    assert!(ok && listed.contains("t1") && listed.contains("pending") && listed.contains("0/2"), "{listed}");

    let (ok, out, err) = approve(&server, "t1", "alice").await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("approved as alice: hold t1 is pending (1 of 2 approvals)"), "{out}");
    // The approver is shown the identity its signature binds: every destination and its amount.
    assert!(
        out.contains("hold t1: TRANSFER 0.01 ETH from VAULT 0 to 0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8 (0.01)"),
        "{out}"
    );
    assert_eq!(decide(&server, "jwt", TX, &transfer("t1")).await["action"], "RETRY", "one of two is not enough");

    let (ok, out, err) = approve(&server, "t1", "bob").await;
    assert!(ok && out.contains("hold t1 is approved (2 of 2 approvals)"), "{out}{err}");
    assert_eq!(decide(&server, "jwt", TX, &transfer("t1")).await["action"], "APPROVE", "the retry after release");
    assert_eq!(decide(&server, "jwt", TX, &signing_stage("t1")).await["action"], "APPROVE", "the signing stage");
    // A signing stage that shows another address than the one approved contradicts itself: refused
    // by the hold whatever the policy (this one never reads the transfer view).
    let mut swapped = signing_stage("t1");
    swapped["destinations"][0]["displayDstAddress"] = json!("0x0000000000000000000000000000000000000bad");
    let answer = decide(&server, "jwt", TX, &swapped).await;
    assert_eq!(answer["action"], "REJECT", "{answer}");
    assert!(
        answer["rejectionReason"].as_str().unwrap().contains("contradicts itself: destinations[0].displayDstAddress")
    );

    // The audit trail: who approved, when, with their signatures; and the decision they released.
    let records = server.decision_records();
    let verdicts: Vec<&Value> = records.iter().filter(|r| r["event"] == "hold_verdict").collect();
    assert_eq!(verdicts.iter().map(|r| r["approver"].as_str().unwrap()).collect::<Vec<_>>(), ["alice", "bob"]);
    assert!(verdicts.iter().all(|r| r["hold"] == "t1" && r["signature"].is_string() && r["signed_at"].is_string()));
    assert_eq!(records.iter().find(|r| r["hold"]["created"] == true).unwrap()["action"], "RETRY");
    let released = records.iter().find(|r| r["action"] == "APPROVE").unwrap();
    assert_eq!(released["hold"]["status"], "approved");
    assert_eq!(released["hold"]["approvals"], json!(["alice", "bob"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_approver_approving_twice_counts_once() {
    let server = held_server(HOLD_FOR_TWO, "").await;
    decide(&server, "jwt", TX, &transfer("t1")).await;
    assert!(approve(&server, "t1", "alice").await.0);
    let (ok, _, err) = approve(&server, "t1", "alice").await;
    assert!(!ok && err.contains("409 already_counted") && err.contains("alice has already given a verdict"), "{err}");
    let after = hold(&server, "t1").await;
    assert_eq!((after["status"].as_str(), approvers_of(&after)), (Some("pending"), vec!["alice"]));
    assert_eq!(decide(&server, "jwt", TX, &transfer("t1")).await["action"], "RETRY");
}

#[tokio::test(flavor = "multi_thread")]
async fn verdicts_that_must_not_count_are_refused_and_change_nothing() {
    let server = held_server(HOLD_FOR_TWO, "").await;
    let mut bigger = transfer("t2");
    bigger["amountStr"] = json!("0.02");
    for request in [transfer("t1"), bigger] {
        decide(&server, "jwt", TX, &request).await;
    }
    let t1 = hold(&server, "t1").await;
    let t2 = hold(&server, "t2").await;
    assert_ne!(t1["digest"], t2["digest"], "t2 moves another amount");

    // A key that is not an approver's.
    let (ok, _, err) = approve(&server, "t1", "stranger").await;
    assert!(!ok && err.contains("403 not_an_approver"), "{err}");
    // alice's approval of t2, presented for t1.
    let (status, body) = post_verdict(&server, "t1", &signed(&server, &t2, "alice", Verdict::Approve, "")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("another_hold")));
    // alice's approval of t1 with another request digest.
    let mut forged = signed(&server, &t1, "alice", Verdict::Approve, "");
    forged["digest"] = t2["digest"].clone();
    assert_eq!(post_verdict(&server, "t1", &forged).await.1["error"], "another_hold");
    // alice's rejection turned into an approval.
    let mut flipped = signed(&server, &t1, "alice", Verdict::Reject, "no");
    flipped["verdict"] = json!("approve");
    assert_eq!(post_verdict(&server, "t1", &flipped).await.0, StatusCode::FORBIDDEN);
    assert_eq!(hold(&server, "t1").await, t1, "nothing refused changed the hold");

    // A verdict on a hold that is no longer pending.
    assert!(approve(&server, "t1", "alice").await.0 && approve(&server, "t1", "bob").await.0);
    let released = hold(&server, "t1").await;
    let (ok, _, err) = reject(&server, "t1", "carol", "too late").await;
    assert!(!ok && err.contains("409 not_pending"), "{err}");
    assert_eq!(hold(&server, "t1").await, released);
    assert_eq!(decide(&server, "jwt", TX, &transfer("t1")).await["action"], "APPROVE");
    let (status, _) = server.admin_get("/holds/t404").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejection_rejects_the_transfer_at_its_retry_and_signing_stage() {
    let server = held_server(HOLD_FOR_TWO, "").await;
    decide(&server, "jwt", TX, &transfer("t1")).await;
    assert!(approve(&server, "t1", "alice").await.0);
    let (ok, out, err) = reject(&server, "t1", "bob", "unknown beneficiary").await;
    assert!(ok && out.contains("hold t1 is rejected"), "{out}{err}");
    for request in [transfer("t1"), signing_stage("t1")] {
        let answer = decide(&server, "jwt", TX, &request).await;
        assert_eq!(answer["action"], "REJECT");
        assert_eq!(answer["rejectionReason"], "rejected by bob: unknown beneficiary");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_never_approves_what_a_hold_has_not_released_whatever_the_policy_says() {
    // A careless policy: asks for a hold, then approves as soon as one exists, whatever its status.
    let careless = r#"
decision := {"action": "APPROVE"} if input.context.hold
else := {"action": "RETRY", "reason": "big", "hold": {"approvals": 2}}
"#;
    let server = held_server(careless, "").await;
    decide(&server, "jwt", TX, &transfer("t1")).await;
    let pending = decide(&server, "jwt", TX, &transfer("t1")).await;
    assert_eq!(pending["action"], "RETRY");
    assert_eq!(pending["rejectionReason"], "held for approval: 0 of 2 approvals (big)");
    assert_eq!(server.decision_records().last().unwrap()["source"], "hold");
    assert!(reject(&server, "t1", "carol", "no").await.0);
    assert_eq!(decide(&server, "jwt", TX, &transfer("t1")).await["action"], "REJECT");

    // The held transaction moving something else (another request id, same txId): refused before
    // the policy, since its txId is bound to what it first moved.
    decide(&server, "jwt", TX, &transfer("t2")).await;
    let mut other = signing_stage("t2");
    other["requestId"] = json!("t2-1");
    other["destinations"][0]["dstAddress"] = json!("0x0000000000000000000000000000000000000bad");
    let answer = decide(&server, "jwt", TX, &other).await;
    assert_eq!(answer["action"], "REJECT");
    assert!(answer["rejectionReason"].as_str().unwrap().contains("this txId was first decided moving something else"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreleased_hold_expires_and_then_rejects() {
    let server = held_server(HOLD_FOR_TWO, "[holds]\nttl = \"2s\"").await;
    decide(&server, "jwt", TX, &transfer("t1")).await;
    assert!(approve(&server, "t1", "alice").await.0);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(hold(&server, "t1").await["status"], "expired");
    let (ok, _, err) = approve(&server, "t1", "bob").await;
    assert!(!ok && err.contains("not_pending"), "{err}");
    let answer = decide(&server, "jwt", TX, &transfer("t1")).await;
    assert_eq!(answer["action"], "REJECT");
    assert!(answer["rejectionReason"].as_str().unwrap().contains("expired"), "{answer}");
    let (_, metrics) = admin_text(&server, "/metrics").await;
    assert!(metrics.contains("cosigner_guard_holds{status=\"expired\"} 1"), "{metrics}");
}

async fn admin_text(server: &TestServer, path: &str) -> (StatusCode, String) {
    let target = Target::new(&format!("http://{}", server.admin), None).await.unwrap();
    let (status, body) = target.connect().await.unwrap().get(path).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_survive_a_restart_and_the_admin_api_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    let config = spec(HOLD_FOR_TWO, dir.path(), "").write(dir.path());
    // The admin listener over TLS, with the test certificate.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"",
    );
    std::fs::write(&config, text).unwrap();
    let ca = dir.path().join("tls/cert.pem");
    let admin_of = |log: &[String]| {
        let listening: Value = serde_json::from_str(log.last().unwrap()).unwrap();
        let port = listening["admin"].as_str().unwrap().rsplit(':').next().unwrap().to_string();
        format!("https://localhost:{port}")
    };
    let cli = |admin: String, args: Vec<String>| {
        let mut args = args;
        args.extend(["--admin-ca".into(), ca.to_str().unwrap().into()]);
        async move { holds_cli(&admin, &args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let key = |who: &str| dir.path().join(format!("approvers/{who}_private.pem")).to_str().unwrap().to_string();

    let (mut first, port, log) = start_with_log(&config, &[]);
    assert_eq!(crate::common::post_signed(port, &transfer("t1")).await["action"], "RETRY");
    let (ok, out, err) = cli(admin_of(&log), vec!["approve".into(), "t1".into(), "--key".into(), key("alice")]).await;
    assert!(ok, "{out}{err}");
    let (ok, _, err) = holds_cli(&admin_of(&log).replace("https", "http"), &["list"]).await;
    assert!(!ok, "plain HTTP is not served when the admin listener has TLS: {err}");
    first.signal("-TERM");
    first.wait();

    let (_second, port, log) = start_with_log(&config, &[]);
    let (ok, shown, _) = cli(admin_of(&log), vec!["show".into(), "t1".into()]).await;
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert!(ok && shown["status"] == "pending" && approvers_of(&shown) == ["alice"], "{shown}");
    assert!(cli(admin_of(&log), vec!["approve".into(), "t1".into(), "--key".into(), key("bob")]).await.0);
    assert_eq!(crate::common::post_signed(port, &transfer("t1")).await["action"], "APPROVE");
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_on_redis_share_holds() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let a = spawn_in(spec(HOLD_FOR_TWO, dir.path(), &redis.state_toml()), dir).await;
    // The second replica: same approvers' public keys, same store.
    let dir_b = tempfile::tempdir().unwrap();
    for name in APPROVERS {
        let public = std::fs::read_to_string(a.dir.path().join(format!("approvers/{name}_public.pem"))).unwrap();
        crate::common::write(&dir_b.path().join(format!("approvers/{name}_public.pem")), &public);
    }
    let mut spec_b = Spec::new("", "").extra(&redis.state_toml());
    spec_b.policies.clear();
    spec_b.policy_dir = Some(a.dir.path().join("policies"));
    let toml: String =
        APPROVERS.iter().map(|n| format!("{n} = \"approvers/{n}_public.pem\"\n")).collect::<Vec<_>>().concat();
    let b = spawn_in(spec_b.extra(&format!("[holds.approvers]\n{toml}")), dir_b).await;

    assert_eq!(decide(&a, "jwt", TX, &transfer("t1")).await["action"], "RETRY");
    assert_eq!(hold(&b, "t1").await["status"], "pending", "replica b sees the hold a created");
    let t1 = hold(&b, "t1").await;
    for who in ["alice", "bob"] {
        let (status, body) = post_verdict(&b, "t1", &signed(&a, &t1, who, Verdict::Approve, "")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(decide(&a, "jwt", TX, &transfer("t1")).await["action"], "APPROVE", "released on b, approved on a");
    assert_eq!(decide(&b, "jwt", TX, &signing_stage("t1")).await["action"], "APPROVE");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_hears_of_holds_created_and_decided_and_is_retried() {
    // A webhook that fails its first delivery, then records what it receives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/holds", listener.local_addr().unwrap());
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        let mut attempts = 0;
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            attempts += 1;
            let status = if attempts == 1 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    use http_body_util::BodyExt;
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    if status == StatusCode::OK {
                        tx.send(serde_json::from_slice(&body).unwrap()).unwrap();
                    }
                    let response = hyper::Response::builder().status(status);
                    Ok::<_, std::convert::Infallible>(
                        response.body(http_body_util::Empty::<axum::body::Bytes>::new()).unwrap(),
                    )
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    let server = held_server(HOLD_FOR_TWO, &format!("[holds]\nnotify_url = {url:?}")).await;
    decide(&server, "jwt", TX, &transfer("t1")).await;
    let mut next = async || tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
    let created = next().await;
    assert_eq!((created["event"].as_str(), created["hold"]["id"].as_str()), (Some("hold_created"), Some("t1")));
    assert!(approve(&server, "t1", "alice").await.0 && approve(&server, "t1", "bob").await.0);
    let approved = next().await;
    assert_eq!(approved["event"], "hold_approved");
    assert_eq!(approvers_of(&approved["hold"]), ["alice", "bob"]);
    // The notifier counts a delivery once its answer is back: after the receiver saw it.
    let start = std::time::Instant::now();
    loop {
        let (_, metrics) = admin_text(&server, "/metrics").await;
        if metrics.contains("cosigner_guard_hold_notifications_total{result=\"sent\"} 2") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "two deliveries never counted: {metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `cosigner-guard replay` on the server's log against `policies` (JSON report).
fn replay(server: &TestServer, policies: &Path) -> (Option<i32>, Value) {
    let out = std::process::Command::new(BIN)
        .args(["replay", "--log", "decisions.jsonl", "--format", "json", "--policies"])
        .arg(policies)
        .current_dir(server.dir.path())
        .output()
        .unwrap();
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_transfer_replays_unchanged_and_its_hold_still_gates_a_candidate_that_approves() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        spec(HOLD_FOR_TWO, dir.path(), "").decision_log("sink = \"file\"\npath = \"decisions.jsonl\"\ndurable = true");
    let server = spawn_in(spec, dir).await;
    assert_eq!(decide(&server, "jwt", TX, &transfer("h1")).await["action"], "RETRY", "held");
    assert!(approve(&server, "h1", "alice").await.0);
    assert_eq!(decide(&server, "jwt", TX, &transfer("h1")).await["action"], "RETRY", "one of two");
    assert!(approve(&server, "h1", "bob").await.0);
    assert_eq!(decide(&server, "jwt", TX, &transfer("h1")).await["action"], "APPROVE", "released");

    let (code, report) = replay(&server, &server.policy_dir());
    assert_eq!((code, report["total"].as_u64(), report["changed"].as_u64()), (Some(0), Some(3), Some(0)), "{report}");

    // A candidate that approves everything: the first request (no hold yet) changes; the second
    // saw a pending hold, whose gate still answers RETRY; the released one stays approved.
    let candidate = server.dir.path().join("candidate");
    crate::common::write(
        &candidate.join("tx.rego"),
        "package cosigner.transaction\ndecision := {\"action\": \"APPROVE\"}\n",
    );
    crate::common::write(
        &candidate.join("cc.rego"),
        "package cosigner.config_change\ndecision := {\"action\": \"REJECT\"}\n",
    );
    let (code, report) = replay(&server, &candidate);
    assert_eq!(code, Some(2), "{report}");
    let records = server.decision_records();
    let decisions: Vec<&Value> = records.iter().filter(|r| r.get("input").is_some()).collect();
    let after = |n: usize| {
        let change =
            report["changes"].as_array().unwrap().iter().find(|c| c["decision_id"] == decisions[n]["decision_id"]);
        change.map_or(decisions[n]["action"].clone(), |c| c["after"]["action"].clone())
    };
    assert_eq!([after(0), after(1), after(2)], [json!("APPROVE"), json!("RETRY"), json!("APPROVE")], "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_holds_commands_find_the_admin_api_from_the_environment_or_the_config() {
    let server = held_server(HOLD_FOR_TWO, "").await;
    decide(&server, "jwt", TX, &transfer("t1")).await;
    let run = |args: Vec<String>, env: Option<String>| {
        let mut command = std::process::Command::new(BIN);
        command.arg("holds").args(args).env_remove("COSIGNER_GUARD_ADMIN");
        if let Some(url) = env {
            command.env("COSIGNER_GUARD_ADMIN", url);
        }
        let out = command.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, listed) = run(vec!["list".into()], Some(format!("http://{}", server.admin)));
    assert!(ok && listed.contains("t1"), "COSIGNER_GUARD_ADMIN: {listed}");
    let config = server.dir.path().join("approver.toml");
    std::fs::write(&config, format!("[admin]\nlisten = \"{}\"\n", server.admin)).unwrap();
    let (ok, listed) = run(vec!["list".into(), "--config".into(), config.display().to_string()], None);
    assert!(ok && listed.contains("t1"), "--config: {listed}");
}

/// Hold notifications are signed by the handler's key (a detached JWS over the exact body), and
/// an expiry — a time passing, not a request — is announced too, once.
#[tokio::test(flavor = "multi_thread")]
async fn notifications_are_signed_and_an_expiry_is_announced() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/holds", listener.local_addr().unwrap());
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel::<(Option<String>, axum::body::Bytes)>();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    use http_body_util::BodyExt;
                    let signature =
                        request.headers().get("cosigner-guard-signature").map(|v| v.to_str().unwrap().to_string());
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    tx.send((signature, body)).unwrap();
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Empty::<axum::body::Bytes>::new(),
                    ))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let server = held_server(HOLD_FOR_TWO, &format!("[holds]\nttl = \"2s\"\nnotify_url = {url:?}")).await;
    decide(&server, "jwt", TX, &transfer("soon")).await;
    let mut next = async || tokio::time::timeout(Duration::from_secs(20), received.recv()).await.unwrap().unwrap();
    let verify = |signature: &str, body: &[u8]| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (protected, sig) = signature.split_once("..").unwrap();
        let message = format!("{protected}.{}", b64.encode(body));
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(crate::common::keys().handler.public_pem.as_bytes()).unwrap();
        jsonwebtoken::crypto::verify(sig, message.as_bytes(), &key, jsonwebtoken::Algorithm::RS256).unwrap()
    };
    let (signature, body) = next().await;
    let created: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(created["event"], "hold_created");
    assert!(verify(signature.as_deref().expect("signed"), &body), "the handler's key signed this body");
    let mut edited = body.to_vec();
    edited.push(b' ');
    assert!(!verify(signature.as_deref().unwrap(), &edited), "and only this body");
    let (signature, body) = next().await;
    let expired: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((expired["event"].as_str(), expired["hold"]["id"].as_str()), (Some("hold_expired"), Some("soon")));
    assert!(verify(signature.as_deref().unwrap(), &body));
}
