//! Limits over time (`velocity.*`): each transaction counted exactly once, no race exceeding a
//! limit, durable, fail-closed, shared by replicas on a real Redis, and replayable from the log.

use std::time::{Duration, Instant};

use crate::common::{RedisServer, Spec, TestServer, decide, keys, post_signed, sign, spawn, start};
use hyper::StatusCode;
use serde_json::{Value, json};

const TX: &str = "tx_sign_request";

/// At most 10 of an asset per 24 hours out of one source vault, recorded on approval; the
/// rejection says what was already spent.
const DAILY_LIMIT: &str = r#"
key := sprintf("src:%s:%s", [input.request.sourceId, input.request.asset])
spent := velocity.sum(key, "24h")
after := decimal.sum([spent, input.request.amountStr])

decision := {"action": "APPROVE", "record": [{"key": key, "amount": input.request.amountStr}]} if {
	decimal.cmp(after, "10") <= 0
} else := {"action": "REJECT", "reason": sprintf("daily limit: %s already spent", [spent])}
"#;

fn limited() -> Spec {
    Spec::new(DAILY_LIMIT, r#"decision := {"action": "REJECT"}"#)
}

use crate::common::eth_transfer as transfer;

async fn action(server: &TestServer, tx: &Value) -> String {
    decide(server, "jwt", TX, tx).await["action"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_over_time_approves_until_it_is_reached_and_counts_only_what_was_approved() {
    let server = spawn(limited()).await;
    for n in 1..=10 {
        assert_eq!(action(&server, &transfer(&format!("t{n}"), "1")).await, "APPROVE", "transfer {n} fits");
    }
    let eleventh = decide(&server, "jwt", TX, &transfer("t11", "1")).await;
    assert_eq!(eleventh["action"], "REJECT");
    assert_eq!(eleventh["rejectionReason"], "daily limit: 10 already spent");
    assert_eq!(action(&server, &transfer("t12", "0.000000000000000001")).await, "REJECT", "one unit over");
    let mut elsewhere = transfer("t13", "1");
    elsewhere["sourceId"] = json!("1");
    assert_eq!(action(&server, &elsewhere).await, "APPROVE", "another key has its own limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_counts_once_across_retries_its_signing_stage_and_both_modes() {
    let server = spawn(limited()).await;
    let approval = {
        let mut tx = transfer("once", "6");
        tx.as_object_mut().unwrap().remove("rawTx");
        tx
    };
    assert_eq!(action(&server, &approval).await, "APPROVE");
    assert_eq!(action(&server, &approval).await, "APPROVE", "a retry gets the answer it got before");
    let signing = transfer("once", "6");
    assert_eq!(action(&server, &signing).await, "APPROVE", "the signing stage is not counted against itself");
    assert_eq!(decide(&server, "json", TX, &signing).await["action"], "APPROVE", "nor through the other mode");
    // 6 counted once: 5 more would be 11, 4 more is exactly 10.
    assert_eq!(action(&server, &transfer("five", "5")).await, "REJECT");
    assert_eq!(action(&server, &transfer("four", "4")).await, "APPROVE");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_decision_log_shows_what_the_policy_read_and_what_the_approval_recorded() {
    let server = spawn(limited()).await;
    assert_eq!(action(&server, &transfer("a", "3")).await, "APPROVE");
    assert_eq!(action(&server, &transfer("b", "2.5")).await, "APPROVE");
    assert_eq!(action(&server, &transfer("c", "5")).await, "REJECT");
    let records = wait_for_records(&server, 3).await;
    let b = &records[1]["state"];
    assert_eq!(b["reads"], json!([{"function": "sum", "key": "src:0:ETH", "window": "24h", "value": "3"}]));
    assert_eq!(b["records"], json!([{"key": "src:0:ETH", "amount": "2.5"}]));
    assert_eq!(b["new"], json!(["src:0:ETH"]));
    let c = &records[2]["state"];
    assert_eq!(c["reads"][0]["value"], "5.5");
    assert!(c.get("records").is_none(), "a rejection records nothing: {c}");
}

async fn wait_for_records(server: &TestServer, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = server.decision_records();
        if records.len() >= count {
            return records;
        }
        assert!(Instant::now() < deadline, "only {} records", records.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends 30 distinct 1-ETH transfers at once, spread over `servers`; returns how many were approved.
async fn thirty_at_once(servers: &[&TestServer]) -> usize {
    let signed: Vec<(usize, String)> = (0..30)
        .map(|n| (n % servers.len(), sign(&transfer(&format!("race-{n}"), "1"), &keys().primary.private_pem)))
        .collect();
    let mut connections = Vec::new();
    for (server, _) in &signed {
        connections.push(servers[*server].target.connect().await.unwrap());
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(signed.len()));
    let tasks: Vec<_> = connections
        .into_iter()
        .zip(signed)
        .map(|(mut connection, (_, token))| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let (status, body) = connection.post("/v2/tx_sign_request", token).await.unwrap();
                assert_eq!(status, StatusCode::OK);
                crate::common::verify_answer(&body)["action"] == "APPROVE"
            })
        })
        .collect();
    let mut approved = 0;
    for task in tasks {
        approved += usize::from(task.await.unwrap());
    }
    approved
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_simultaneous_requests_against_a_limit_of_ten_approve_exactly_ten() {
    let server = spawn(limited()).await;
    assert_eq!(thirty_at_once(&[&server]).await, 10);
    assert_eq!(action(&server, &transfer("after", "1")).await, "REJECT", "the limit stays reached");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_sharing_redis_share_limits_records_and_the_request_id_memory() {
    let redis = RedisServer::start();
    let a = spawn(limited().extra(&redis.state_toml())).await;
    let b = spawn(limited().extra(&redis.state_toml())).await;
    assert_eq!(thirty_at_once(&[&a, &b]).await, 10, "no race across replicas exceeds the limit");
    assert_eq!(action(&b, &transfer("late", "1")).await, "REJECT");

    // Exactly once across replicas: approval on one, retry and signing stage on the other.
    let tenant = format!("{}\nkey_prefix = \"other-tenant\"", redis.state_toml());
    let c = spawn(limited().extra(&tenant)).await;
    assert_eq!(action(&c, &transfer("x", "6")).await, "APPROVE", "another key prefix is another store");
    let d = spawn(limited().extra(&tenant)).await;
    assert_eq!(action(&d, &transfer("x", "6")).await, "APPROVE", "same transaction on the other replica");
    assert_eq!(action(&d, &transfer("y", "5")).await, "REJECT", "6 counted once, not twice");

    // A requestId seen by one replica with another payload is refused by the other.
    let reused = decide(&a, "jwt", TX, &transfer("race-0", "2")).await;
    assert_eq!(reused["action"], "REJECT");
    assert_eq!(reused["rejectionReason"], "cosigner-guard: this requestId was already seen with a different payload");

    // A txId decided by one replica cannot move something else on the other, under a new requestId.
    assert_eq!(action(&c, &transfer("bound", "1")).await, "APPROVE");
    let mut more = transfer("bound", "3");
    more["requestId"] = json!("bound-again");
    let answer = decide(&d, "jwt", TX, &more).await;
    assert_eq!(
        (answer["action"].as_str(), answer["rejectionReason"].as_str()),
        (
            Some("REJECT"),
            Some("cosigner-guard: this txId was first decided moving something else: one txId, one transaction")
        )
    );
}

/// The value of a counter in `/metrics`.
async fn counter(server: &TestServer, name: &str) -> u64 {
    let metrics = server.metrics().await;
    let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// On Redis, a replica answers reads of a key it knows from its own copy (an approval then waits
/// for one round trip, its commit), and never decides on a copy another replica made stale: the
/// commit refuses a version that moved, and a refusal built on the copy is checked before it is
/// answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_s_copy_of_a_limit_saves_a_round_trip_and_never_outvotes_another_replica() {
    let redis = RedisServer::start();
    let a = spawn(limited().extra(&redis.state_toml())).await;
    let b = spawn(limited().extra(&redis.state_toml())).await;
    const COPIED: &str = "cosigner_guard_state_copy_reads_total";
    // A key's first write starts its version anew: t2 reads Redis, t2b the copy t2 left.
    assert_eq!(action(&a, &transfer("t1", "5")).await, "APPROVE");
    assert_eq!(action(&a, &transfer("t2", "0.5")).await, "APPROVE");
    assert_eq!(counter(&a, COPIED).await, 0);
    assert_eq!(action(&a, &transfer("t2b", "0.5")).await, "APPROVE");
    assert_eq!(counter(&a, COPIED).await, 1, "t2b was decided from the copy t2's read and commit left");
    // b approves 4 more: a's copy (6 spent) is stale, and 2 more would be 12.
    assert_eq!(action(&b, &transfer("t3", "4")).await, "APPROVE");
    let refused = decide(&a, "jwt", TX, &transfer("t4", "2")).await;
    assert_eq!(refused["rejectionReason"], "daily limit: 10 already spent", "decided on what b approved");
    // A release on b gives 4 back: a's copy (10 spent) would refuse; it is checked, and approves.
    let admin = format!("http://{}", b.admin);
    let out = std::process::Command::new(crate::common::BIN)
        .args(["state", "release", "t3", "--admin", &admin, "--reason", "failed on chain"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(action(&a, &transfer("t5", "4")).await, "APPROVE", "the release counts on every replica");
    assert_eq!(action(&a, &transfer("t6", "0.000000000000000001")).await, "REJECT", "and the limit is reached");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_store_is_down_nothing_is_approved_and_the_handler_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let server = spawn(limited().extra(&redis.state_toml())).await;
    assert_eq!(action(&server, &transfer("before", "1")).await, "APPROVE");
    redis.stop();
    let answer = decide(&server, "jwt", TX, &transfer("during", "1")).await;
    assert_eq!(answer["action"], "RETRY", "the state fallback defaults to RETRY: {answer}");
    assert_eq!(answer["rejectionReason"], "cosigner-guard fallback: state");
    let (status, ready) = server.admin_get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["reason"], "state store is unavailable");
    let (_, status) = server.admin_get("/status").await;
    assert_eq!(status["state"]["up"], false);
    assert_eq!(status["state"]["backend"], "redis");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.metrics().await.contains("cosigner_guard_state_up 0") {
        assert!(Instant::now() < deadline, "the metric never said the store is down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    redis.resume();
    // No request needed: the probe notices the store is back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.admin_get("/readyz").await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "readiness never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(action(&server, &transfer("after", "1")).await, "APPROVE");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_the_durable_log_refuses_is_not_counted() {
    let redis = RedisServer::start();
    let server = spawn(
        limited().extra(&redis.state_toml()).decision_log("sink = \"file\"\npath = \"/dev/full\"\ndurable = true"),
    )
    .await;
    let answer = decide(&server, "jwt", TX, &transfer("unlogged", "6")).await;
    assert_eq!(answer["rejectionReason"], "cosigner-guard fallback: decision_log");
    // A replica on the same store, with a working log: 6 more fit under the limit of 10 only if
    // the 6 that never left were taken back.
    let replica = spawn(limited().extra(&redis.state_toml())).await;
    assert_eq!(action(&replica, &transfer("after", "6")).await, "APPROVE", "the record was taken back with the answer");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_store_failure_answers_the_configured_fallback() {
    let mut redis = RedisServer::start();
    let server = spawn(limited().extra(&format!("{}\non_error = \"REJECT\"", redis.state_toml()))).await;
    redis.stop();
    let answer = decide(&server, "jwt", TX, &transfer("t", "1")).await;
    assert_eq!(
        (answer["action"].as_str(), answer["rejectionReason"].as_str()),
        (Some("REJECT"), Some("cosigner-guard fallback: state"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_was_approved_survives_kill_9_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = limited().write(dir.path());
    let (mut child, port) = start(&config);
    assert_eq!(post_signed(port, &transfer("before-crash", "7")).await["action"], "APPROVE");
    child.signal("-KILL");
    assert_eq!(child.wait(), None, "killed by a signal, no chance to flush");
    let (mut child, port) = start(&config);
    let answer = post_signed(port, &transfer("after-crash", "4")).await;
    assert_eq!(answer["rejectionReason"], "daily limit: 7 already spent", "the approval was on disk before its answer");
    assert_eq!(post_signed(port, &transfer("before-crash", "7")).await["action"], "APPROVE", "and still counted once");
    child.signal("-TERM");
    assert_eq!(child.wait(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_request_id_is_remembered_through_kill_9() {
    // The guard entry is durable before the answer leaves: a REJECTed requestId cannot come back
    // after a crash moving something smaller that would be approved.
    let dir = tempfile::tempdir().unwrap();
    let config = limited().write(dir.path());
    let (mut child, port) = start(&config);
    assert_eq!(post_signed(port, &transfer("too-much", "11")).await["action"], "REJECT");
    child.signal("-KILL");
    assert_eq!(child.wait(), None, "killed by a signal, no chance to flush");
    let (mut child, port) = start(&config);
    let answer = post_signed(port, &transfer("too-much", "1")).await;
    assert_eq!(
        (answer["action"].as_str(), answer["rejectionReason"].as_str()),
        (Some("REJECT"), Some("cosigner-guard: this requestId was already seen with a different payload"))
    );
    child.signal("-TERM");
    assert_eq!(child.wait(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_state_store_and_the_decision_log_are_readable_by_their_owner_only() {
    // What was approved and held, and the full payloads: 0600 both.
    let server = spawn(limited().decision_log("sink = \"file\"\npath = \"decisions.jsonl\"")).await;
    use std::os::unix::fs::PermissionsExt;
    for file in ["state/cosigner-guard.redb", "decisions.jsonl"] {
        let mode = std::fs::metadata(server.dir.path().join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_request_after_a_redis_restart_is_decided_not_retried() {
    // An idle replica finds its connection broken only when it next uses it: it reconnects and
    // runs the script again within the request, instead of answering the state fallback.
    let mut redis = RedisServer::start();
    let server = spawn(limited().extra(&redis.state_toml())).await;
    assert_eq!(action(&server, &transfer("before", "1")).await, "APPROVE");
    redis.stop();
    redis.resume();
    let answer = decide(&server, "jwt", TX, &transfer("after-restart", "1")).await;
    assert_eq!(answer["action"], "APPROVE", "{answer}");
}
