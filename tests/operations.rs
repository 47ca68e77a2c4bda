//! Operating the handler: the decision log, readiness, metrics, shutdown, timeouts and shedding.

use std::time::{Duration, Instant};

use crate::common::{Spec, TestServer, decide, keys, payload, sign, spawn};
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TX: &str = "tx_sign_request";
const CC: &str = "config_change_sign_request";

/// A transaction policy that takes about a second in a debug build (a million-step loop).
/// Millions of steps: longer than the request deadline of the test that uses it in any build.
const SLOW: &str = r#"decision := {"action": "APPROVE"} if {
    count([1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 1000); i * j < 0]) == 0
}"#;

async fn records(server: &TestServer, count: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let records = server.decision_records();
        if records.len() >= count {
            return records;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "only {} records: {records:?}", records.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_decision_log_records_who_asked_what_was_decided_why_and_under_which_revision() {
    let server = spawn(Spec::new(
        r#"decision := {"action": "APPROVE"} if input.request.amountStr == "0.010000000000000000"
           decision := {"action": "REJECT", "reason": "too big"} if input.request.amountStr != "0.010000000000000000""#,
        r#"decision := {"action": "APPROVE"} if input.request.noSuchField"#,
    ))
    .await;
    let revision = server.admin_get("/status").await.1["policy"]["revision"].clone();
    let eth = payload("eth_transfer.json");
    let mut big = eth.clone();
    big["amountStr"] = json!("5");
    big["requestId"] = json!("another-request");
    big["txId"] = json!("another-transaction");
    let wallet = payload("whitelist_wallet.json");
    decide(&server, "jwt", TX, &eth).await;
    decide(&server, "json", TX, &big).await;
    decide(&server, "jwt", CC, &wallet).await;
    let (status, _) = server.post("/v2/tx_sign_request", sign(&eth, &keys().stranger.private_pem)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let records = records(&server, 4).await;
    let ids: Vec<&str> = records.iter().map(|r| r["decision_id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "decision ids are unique and time-ordered");

    let approve = &records[0];
    let cases = [
        ("kind", json!("transaction")),
        ("mode", json!("jwt")),
        ("requestId", eth["requestId"].clone()),
        ("txId", eth["txId"].clone()),
        ("cosigner_key", json!("primary")),
        ("action", json!("APPROVE")),
        ("reason", Value::Null),
        ("source", json!("policy")),
        ("policy_revision", revision.clone()),
    ];
    for (field, want) in cases {
        assert_eq!(approve[field], want, "approve record: {field}");
    }
    assert!(approve["latency_us"].as_u64().is_some() && approve["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(approve["input"]["request"], eth, "the full input document is recorded");
    assert_eq!(approve["input"]["context"]["cosigner_key"], "primary");

    let reject = &records[1];
    assert_eq!((reject["action"].as_str(), reject["reason"].as_str()), (Some("REJECT"), Some("too big")));
    assert_eq!((reject["mode"].as_str(), reject["cosigner_key"].clone()), (Some("json"), Value::Null));

    let fallback = &records[2];
    assert_eq!(fallback["kind"], "config_change");
    assert_eq!(fallback["signerId"], wallet["signerId"]);
    assert_eq!(fallback["action"], "REJECT");
    assert_eq!(fallback["source"], "fallback:undefined");

    let refused = &records[3];
    assert_eq!(refused["refused"], "invalid_signature");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused.get("action"), None, "a refused request has no decision");
}

#[tokio::test(flavor = "multi_thread")]
async fn redacted_fields_are_kept_out_of_the_record_but_not_from_the_policy() {
    let server =
        spawn(Spec::both(r#"decision := {"action": "REJECT", "reason": input.request.destAddress}"#).decision_log(
            r#"sink = "file"
path = "decisions.jsonl"
redact = ["/request/destAddress", "/request/destinations/*/displayDstAddress"]"#,
        ))
        .await;
    let eth = payload("eth_transfer.json");
    let answer = decide(&server, "jwt", TX, &eth).await;
    assert_eq!(answer["rejectionReason"], eth["destAddress"], "the policy saw the real value");
    let record = &records(&server, 1).await[0];
    assert_eq!(record["input"]["request"]["destAddress"], "[REDACTED]");
    assert_eq!(record["input"]["request"]["destinations"][0]["displayDstAddress"], "[REDACTED]");
    assert_eq!(record["input"]["request"]["asset"], "ETH", "other fields stay");
    let text = std::fs::read_to_string(server.dir.path().join("decisions.jsonl")).unwrap();
    let address = eth["destAddress"].as_str().unwrap();
    assert_eq!(text.matches(address).count(), 1, "only the policy's own reason carries it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_log_sink_turns_readiness_off_and_durable_decisions_into_the_fallback() {
    for (durable, want) in [(true, "REJECT"), (false, "APPROVE")] {
        let server = spawn(
            Spec::both(r#"decision := {"action": "APPROVE"}"#)
                .decision_log(&format!("sink = \"file\"\npath = \"/dev/full\"\ndurable = {durable}")),
        )
        .await;
        assert_eq!(server.admin_get("/readyz").await.0, StatusCode::OK, "ready before the first write");
        let answer = decide(&server, "jwt", TX, &payload("eth_transfer.json")).await;
        assert_eq!(answer["action"], want, "durable = {durable}");
        if durable {
            assert_eq!(answer["rejectionReason"], "cosigner-guard fallback: decision_log");
        }
        let start = Instant::now();
        while server.admin_get("/readyz").await.0 != StatusCode::SERVICE_UNAVAILABLE {
            assert!(start.elapsed() < Duration::from_secs(5), "readiness never dropped (durable = {durable})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let metrics = server.metrics().await;
        assert!(metric(&metrics, "cosigner_guard_decision_log_errors_total") >= 1.0, "{metrics}");
    }
}

/// Once the sink works again, readiness comes back without a request (a load balancer sends none
/// to an instance it took out), and the log says when it could not be written.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_comes_back_by_itself_when_the_log_sink_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let spec =
        Spec::both(r#"decision := {"action": "APPROVE"}"#).decision_log("sink = \"file\"\npath = \"decisions.jsonl\"");
    let server = crate::common::spawn_in(spec, dir).await;
    decide(&server, "jwt", TX, &payload("eth_transfer.json")).await;
    let start = Instant::now();
    while server.admin_get("/readyz").await.0 != StatusCode::SERVICE_UNAVAILABLE {
        assert!(start.elapsed() < Duration::from_secs(5), "readiness never dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_file(&path).unwrap();
    let start = Instant::now();
    while server.admin_get("/readyz").await.0 != StatusCode::OK {
        assert!(start.elapsed() < Duration::from_secs(10), "readiness never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(&path).unwrap();
    let record: Value = serde_json::from_str(log.lines().next().expect("a record")).unwrap();
    assert_eq!(record["event"], "decision_log_recovered", "{log}");
    assert!(record["failing_since"].is_string(), "{record}");
}

/// The value of the first sample whose name-and-labels start with `series`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_decisions_refusals_latencies_and_reloads() {
    let server = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#)).await;
    let before = server.metrics().await;
    let approved = r#"cosigner_guard_decisions_total{kind="transaction",action="APPROVE",source="policy"}"#;
    let refused = r#"cosigner_guard_refused_requests_total{class="malformed_jwt"}"#;
    for _ in 0..2 {
        decide(&server, "jwt", TX, &payload("eth_transfer.json")).await;
    }
    server.post("/v2/tx_sign_request", "not.a.token").await;
    crate::common::write(
        &server.policy_dir().join("tx.rego"),
        "package cosigner.transaction\ndecision := {\"action\": \"REJECT\"}\n",
    );
    let start = Instant::now();
    let after = loop {
        let text = server.metrics().await;
        if metric(&text, r#"cosigner_guard_policy_reloads_total{result="activated"}"#) >= 1.0 {
            break text;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no reload counted: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(metric(&after, approved) - metric(&before, approved), 2.0, "{after}");
    assert_eq!(metric(&after, refused) - metric(&before, refused), 1.0);
    let requests = "cosigner_guard_request_duration_seconds_count";
    assert_eq!(metric(&after, requests) - metric(&before, requests), 3.0);
    assert_eq!(metric(&after, "cosigner_guard_evaluation_duration_seconds_count"), 2.0);
    let revision = server.admin_get("/status").await.1["policy"]["revision"].as_str().unwrap().to_string();
    assert_eq!(metric(&after, &format!("cosigner_guard_policy_revision_info{{revision=\"{revision}\"}}")), 1.0);
    assert_eq!(after.matches("cosigner_guard_policy_revision_info{").count(), 1, "one active revision");
    assert!(after.contains("cosigner_guard_in_flight_requests"));
    assert_eq!(metric(&after, "cosigner_guard_policy_reload_failed"), 0.0);
    let build = format!("cosigner_guard_build_info{{version=\"{}\",revision=", env!("CARGO_PKG_VERSION"));
    assert_eq!(metric(&after, &build), 1.0, "{after}");

    // A broken set is not activated: the gauge says the served set is stale until a reload works.
    crate::common::write(
        &server.policy_dir().join("tx.rego"),
        "package cosigner.transaction
decision := {\n",
    );
    let start = Instant::now();
    while metric(&server.metrics().await, "cosigner_guard_policy_reload_failed") != 1.0 {
        assert!(start.elapsed() < Duration::from_secs(5), "the failed reload is not shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // OpenMetrics text, under its own content type.
    let mut stream = tokio::net::TcpStream::connect(server.admin).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let head = response.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"), "{head}");
    assert!(response.trim_end().ends_with("# EOF"), "{response}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_first_policy_load() {
    let dir = tempfile::tempdir().unwrap();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Deeply nested literals make regorus's parser slow: the load takes a while.
    let slow_parse = format!("package slow\nx := {}1{}\n", "[".repeat(13), "]".repeat(13));
    let mut spec = Spec::both(r#"decision := {"action": "APPROVE"}"#).extra("");
    spec.policies.push(("slow.rego", slow_parse));
    let config = spec.write(dir.path());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0\"\n\n[decision_log]", &format!("127.0.0.1:{admin_port}\"\n\n[decision_log]"));
    std::fs::write(&config, text).unwrap();
    let settings = cosigner_guard::config::Settings::load(&config).unwrap();
    let binding = tokio::spawn(cosigner_guard::app::build(settings));

    let admin =
        cosigner_guard::http_client::Target::new(&format!("http://127.0.0.1:{admin_port}"), None).await.unwrap();
    let mut saw_not_ready = false;
    while !binding.is_finished() {
        if let Ok(mut connection) = admin.connect().await
            && let Ok((status, body)) = connection.get("/readyz").await
        {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not ready before serving");
            saw_not_ready |= String::from_utf8_lossy(&body).contains("not loaded");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(saw_not_ready, "the admin listener answered \"policies not loaded yet\" during the load");
    let server = binding.await.unwrap().unwrap();
    let (status, _) = admin.connect().await.unwrap().get("/readyz").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "loaded but not yet accepting");
    tokio::spawn(server.serve(std::future::pending()));
    let start = Instant::now();
    while admin.connect().await.unwrap().get("/readyz").await.unwrap().0 != StatusCode::OK {
        assert!(start.elapsed() < Duration::from_secs(5), "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_lets_in_flight_requests_finish_and_flushes_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = Spec::new(r#"decision := {"action": "APPROVE"}"#, r#"decision := {"action": "REJECT"}"#)
        .decision_log("sink = \"file\"\npath = \"decisions.jsonl\"")
        .write(dir.path());
    let server = cosigner_guard::app::build(cosigner_guard::config::Settings::load(&config).unwrap()).await.unwrap();
    let port = server.local_addr().unwrap().port();
    let admin = server.admin_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let target = cosigner_guard::http_client::Target::new(
        &format!("https://localhost:{port}"),
        Some(keys().tls_cert_pem.as_bytes()),
    )
    .await
    .unwrap();
    // A request in flight when the stop comes: its body is still arriving.
    let body = serde_json::to_vec(&payload("eth_transfer.json")).unwrap();
    let mut stream = target.tls_stream().await.unwrap();
    let head = format!("POST /tx_sign_request HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    let admin = cosigner_guard::http_client::Target::new(&format!("http://{admin}"), None).await.unwrap();
    let start = Instant::now();
    loop {
        let (_, text) = admin.connect().await.unwrap().get("/metrics").await.unwrap();
        if metric(&String::from_utf8_lossy(&text), "cosigner_guard_in_flight_requests") >= 1.0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the request never got in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    stream.write_all(&body[10..]).await.unwrap();
    let mut answer = vec![0; 8192];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"APPROVE\""),
        "the in-flight request completes: {answer}"
    );
    tokio::time::timeout(Duration::from_secs(10), serving).await.expect("serve returns").unwrap();
    assert!(target.connect().await.is_err(), "no new connections after shutdown");
    let log = std::fs::read_to_string(dir.path().join("decisions.jsonl")).unwrap();
    let records: Vec<Value> = log.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(records.len(), 2, "the record was flushed before exit, and the head signed: {log}");
    assert_eq!((&records[0]["action"], &records[1]["event"]), (&"APPROVE".into(), &"checkpoint".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_by_the_read_timeout() {
    let server = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#).server("read_timeout_ms = 300")).await;
    // Headers that never finish: the connection is closed.
    let mut stream = server.target.tls_stream().await.unwrap();
    stream.write_all(b"POST /tx_sign_request HTTP/1.1\r\nHost: local").await.unwrap();
    let mut buf = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("cut off in time");
    assert!(matches!(read, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"), "{read:?}");

    // A body that never finishes: 408.
    let mut stream = server.target.tls_stream().await.unwrap();
    stream
        .write_all(b"POST /tx_sign_request HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"req")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("answered").unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408") && text.contains("body_timeout"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_max_in_flight_are_shed_with_503() {
    let server = spawn(Spec::both(r#"decision := {"action": "APPROVE"}"#).server("max_in_flight = 1")).await;
    let body = serde_json::to_vec(&payload("eth_transfer.json")).unwrap();
    // The first request holds its place while its body is still arriving: half of it now.
    let mut first = server.target.tls_stream().await.unwrap();
    let head = format!("POST /tx_sign_request HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n", body.len());
    first.write_all(head.as_bytes()).await.unwrap();
    first.write_all(&body[..body.len() / 2]).await.unwrap();
    let start = Instant::now();
    while metric(&server.metrics().await, "cosigner_guard_in_flight_requests") < 1.0 {
        assert!(start.elapsed() < Duration::from_secs(5), "the first request never got in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, answer) = server.post("/tx_sign_request", body.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(serde_json::from_slice::<Value>(&answer).unwrap()["error"], "overloaded");
    first.write_all(&body[body.len() / 2..]).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "the request in flight is unaffected");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_deadline_answers_the_timeout_fallback_in_time() {
    let server = spawn(
        Spec::new(SLOW, r#"decision := {"action": "REJECT"}"#)
            .server("request_timeout_ms = 200")
            .policy("on_timeout = \"RETRY\"\neval_timeout_ms = 2000"),
    )
    .await;
    // The policy would run until its own budget (2 s); the request's deadline (200 ms) answers first.
    let answer = decide(&server, "json", TX, &payload("eth_transfer.json")).await;
    assert_eq!(answer["action"], "RETRY");
    assert_eq!(answer["rejectionReason"], "cosigner-guard fallback: timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_decision_log_file_rotates_at_its_size_and_keeps_the_configured_number() {
    let server = spawn(
        Spec::both(r#"decision := {"action": "APPROVE"}"#)
            // Durable, so every record (and rotation) is done before its answer: nothing moves while read.
            .decision_log("sink = \"file\"\npath = \"decisions.jsonl\"\nmax_bytes = 4096\nkeep = 2\ndurable = true"),
    )
    .await;
    for i in 0..12 {
        let mut tx = payload("eth_transfer.json");
        tx["requestId"] = json!(format!("rotation-{i}"));
        decide(&server, "json", TX, &tx).await;
    }
    let log = |suffix: &str| server.dir.path().join(format!("decisions.jsonl{suffix}"));
    let start = Instant::now();
    while !log(".2").exists() {
        assert!(start.elapsed() < Duration::from_secs(5), "rotated twice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!log(".3").exists(), "only `keep` rotated files are kept");
    for suffix in [".1", ".2"] {
        let text = std::fs::read_to_string(log(suffix)).unwrap();
        assert!(text.len() >= 4096, "a rotated file reached max_bytes");
        assert!(text.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "whole records only");
    }
}
