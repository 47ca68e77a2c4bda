//! The decision log as a test oracle: `replay` re-decides logged decisions with what the policy saw
//! then (input, receipt time, state reads), and `fixture --from-log` turns a record into a case.

use std::path::Path;
use std::process::Command;

use crate::common::{BIN, Spec, TestServer, decide, payload, spawn};
use serde_json::{Value, json};

/// Transfers up to `max` ETH each, 10 ETH an hour in all; the hourly refusal names the instant
/// `time.now_ns()` gave, so a replay that does not pin the clock changes its reason.
fn limits(max: u32) -> String {
    format!(
        r#"
default decision := {{"action": "REJECT", "reason": "no rule"}}
amount := to_number(input.request.amountStr)
spent := to_number(velocity.sum("eth", "1h"))
decision := {{"action": "APPROVE", "record": [{{"key": "eth", "amount": input.request.amountStr}}]}} if {{
	amount <= {max}
	spent + amount <= 10
}}
decision := {{"action": "REJECT", "reason": sprintf("over the hourly limit at %d", [time.now_ns()])}} if {{
	amount <= {max}
	spent + amount > 10
}}
decision := {{"action": "REJECT", "reason": "over {max} ETH"}} if amount > {max}
"#
    )
}

/// A server on `limits(5)`, logging durably, that decided transfers of these amounts in order.
async fn logged_transfers(amounts: &[&str]) -> TestServer {
    let server =
        spawn(Spec::both(&limits(5)).decision_log("sink = \"file\"\npath = \"decisions.jsonl\"\ndurable = true")).await;
    for (n, amount) in amounts.iter().enumerate() {
        let mut tx = payload("eth_transfer.json");
        tx["requestId"] = format!("r-{n}").into();
        tx["txId"] = format!("t-{n}").into();
        tx["amountStr"] = (*amount).into();
        decide(&server, "jwt", "tx_sign_request", &tx).await;
    }
    server
}

fn run(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).current_dir(dir).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn replay_json(server: &TestServer, policies: &str) -> (Option<i32>, Value) {
    let (code, stdout, stderr) =
        run(&["replay", "--log", "decisions.jsonl", "--policies", policies, "--format", "json"], server.dir.path());
    (code, serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}")))
}

/// A candidate set beside the server's: `rego` decides transactions (and configuration changes).
fn candidate(server: &TestServer, rego: &str) -> String {
    let dir = server.dir.path().join("candidate");
    for (file, package) in [("tx.rego", "transaction"), ("cc.rego", "config_change")] {
        crate::common::write(&dir.join(file), &format!("package cosigner.{package}\nimport rego.v1\n{rego}"));
    }
    dir.display().to_string()
}

const AMOUNTS: [&str; 7] = ["1", "3", "4", "2", "7", "1", "2"];

#[tokio::test(flavor = "multi_thread")]
async fn replaying_against_the_set_that_wrote_the_log_changes_nothing_even_with_time_and_state() {
    let server = logged_transfers(&AMOUNTS).await;
    let actions: Vec<Value> = server.decision_records().iter().map(|r| r["action"].clone()).collect();
    let expected = ["APPROVE", "APPROVE", "APPROVE", "APPROVE", "REJECT", "REJECT", "REJECT"];
    assert_eq!(actions, expected, "the log is what the limits decided");
    // Later, with the store full and the clock moved on: only the record can give the same answers.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (code, report) = replay_json(&server, "policies");
    assert_eq!((report["total"].as_u64(), report["changed"].as_u64()), (Some(7), Some(0)), "{report}");
    assert_eq!(code, Some(0), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_against_a_stricter_candidate_reports_exactly_the_decisions_it_changes() {
    let server = logged_transfers(&AMOUNTS).await;
    let (code, report) = replay_json(&server, &candidate(&server, &limits(3)));
    assert_eq!(code, Some(2), "a change is a failing gate: {report}");
    assert_eq!((report["total"].as_u64(), report["changed"].as_u64()), (Some(7), Some(2)), "{report}");
    let changes: Vec<(String, String, String, String)> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_string();
            (s(&c["requestId"]), s(&c["before"]["action"]), s(&c["after"]["action"]), s(&c["after"]["reason"]))
        })
        .collect();
    let want = |r: &str, b: &str, a: &str, why: &str| (r.to_string(), b.to_string(), a.to_string(), why.to_string());
    assert_eq!(
        changes,
        [want("r-2", "APPROVE", "REJECT", "over 3 ETH"), want("r-4", "REJECT", "REJECT", "over 3 ETH")],
        "the 4 ETH approval and the reason of the 7 ETH refusal; the rest are decided as before"
    );
    let decision_ids: Vec<&Value> = report["changes"].as_array().unwrap().iter().map(|c| &c["decision_id"]).collect();
    let records = server.decision_records();
    assert_eq!(decision_ids, [&records[2]["decision_id"], &records[4]["decision_id"]]);

    let (_, pretty, _) = run(&["replay", "--log", "decisions.jsonl", "--policies", "candidate"], server.dir.path());
    assert!(pretty.contains("7 decisions") && pretty.contains("APPROVE → REJECT ×1"), "{pretty}");
}

/// The most common change — a new limit, on a key the old set never recorded — is judged, not
/// given up on: the new key's reads come from the candidate's own approvals earlier in the log.
#[tokio::test(flavor = "multi_thread")]
async fn a_candidate_adding_a_limit_is_judged_with_state_derived_from_its_own_approvals() {
    let server = logged_transfers(&["1", "1", "1"]).await;
    let rego = r#"
decision := {"action": "APPROVE", "record": [{"key": "per-day", "amount": "1"}]} if {
	velocity.count("per-day", "24h") < 2
} else := {"action": "REJECT", "reason": "two a day"}
"#;
    let (code, report) = replay_json(&server, &candidate(&server, rego));
    assert_eq!(code, Some(2), "{report}");
    assert_eq!((&report["derived"], &report["unreplayable"]), (&json!(3), &json!([])), "{report}");
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{report}");
    assert_eq!((&changes[0]["requestId"], &changes[0]["after"]["reason"]), (&json!("r-2"), &json!("two a day")));
    assert_eq!(changes[0]["derived"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixture_made_from_a_record_passes_with_its_time_and_state() {
    let server = logged_transfers(&AMOUNTS).await;
    let record = &server.decision_records()[5]; // refused by the hourly limit: reads state and the clock
    let id = record["decision_id"].as_str().unwrap();
    let (code, yaml, stderr) =
        run(&["fixture", "--from-log", "decisions.jsonl", "--decision-id", id], server.dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(yaml.contains("state:") && yaml.contains("REJECT"), "{yaml}");
    // Every string quoted: YAML 1.1 tools would read a plain long hex address as an integer.
    assert!(yaml.contains("destAddress: \"0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8\""), "{yaml}");
    crate::common::write(&server.policy_dir().join("incident_test.yaml"), &yaml);
    let (code, out, err) = run(&["test", "policies", "--format", "json"], server.dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(out.contains(id) && report["summary"]["passed"] == 1, "{out}");

    let (code, _, stderr) =
        run(&["fixture", "--from-log", "decisions.jsonl", "--decision-id", "nope"], server.dir.path());
    assert_eq!(code, Some(1), "{stderr}");

    // By transaction: its last decision in the log.
    let tx_id = record["txId"].as_str().unwrap();
    let (code, by_tx, stderr) = run(&["fixture", "--from-log", "decisions.jsonl", "--tx-id", tx_id], server.dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    let last = server.decision_records().into_iter().rfind(|r| r["txId"] == tx_id).unwrap();
    assert!(by_tx.contains(last["decision_id"].as_str().unwrap()), "{by_tx}");
}

fn write_candidate(dir: &Path, max: u32) {
    for (file, package) in [("tx.rego", "transaction"), ("cc.rego", "config_change")] {
        crate::common::write(&dir.join(file), &format!("package cosigner.{package}\nimport rego.v1\n{}", limits(max)));
    }
}

async fn admin_text(admin: std::net::SocketAddr, path: &str) -> String {
    let target = cosigner_guard::http_client::Target::new(&format!("http://{admin}"), None).await.unwrap();
    let (_, body) = target.connect().await.unwrap().get(path).await.unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

async fn shadow_status(admin: std::net::SocketAddr) -> Value {
    serde_json::from_str::<Value>(&admin_text(admin, "/status").await).unwrap()["shadow"].clone()
}

/// Waits until `/status` says `field` is no longer `from`.
async fn shadow_moved(admin: std::net::SocketAddr, field: &str, from: &Value) -> Value {
    for _ in 0..400 {
        let now = shadow_status(admin).await;
        if now.pointer(field) != Some(from) {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the shadow's {field} stayed {from}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_counts_the_candidates_disagreements_without_changing_an_answer_and_reloads_it() {
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("candidate");
    write_candidate(&candidate, 3);
    let spec = Spec::both(&limits(5))
        .policy("candidate_dir = \"candidate\"")
        .decision_log("sink = \"file\"\npath = \"decisions.jsonl\"\ndurable = true");
    let server = crate::common::spawn_in(spec, dir).await;
    let send = |n: usize, amount: &str| {
        let mut tx = payload("eth_transfer.json");
        tx["requestId"] = format!("r-{n}").into();
        tx["txId"] = format!("t-{n}").into();
        tx["amountStr"] = amount.into();
        tx
    };
    let mut answers = Vec::new();
    for (n, amount) in AMOUNTS.iter().enumerate() {
        answers.push(decide(&server, "jwt", "tx_sign_request", &send(n, amount)).await["action"].clone());
    }
    let active = ["APPROVE", "APPROVE", "APPROVE", "APPROVE", "REJECT", "REJECT", "REJECT"];
    assert_eq!(answers, active, "the active set answers, whatever the candidate says");

    let mut status = shadow_status(server.admin).await;
    while status["evaluations"] != 7 {
        status = shadow_moved(server.admin, "/evaluations", &status["evaluations"]).await;
    }
    assert_eq!(status["disagreements"], 2, "{status}");
    let disagreements: Vec<Value> =
        server.decision_records().into_iter().filter(|r| r["event"] == "shadow_disagreement").collect();
    let ids: Vec<&Value> = disagreements.iter().map(|r| &r["requestId"]).collect();
    assert_eq!(ids, ["r-2", "r-4"], "{disagreements:?}");
    assert_eq!(disagreements[0]["candidate"]["reason"], "over 3 ETH");
    let metrics = admin_text(server.admin, "/metrics").await;
    for line in ["cosigner_guard_shadow_evaluations_total 7", "cosigner_guard_shadow_disagreements_total 2"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }

    // The candidate reloads like the active set: now it agrees.
    write_candidate(&candidate, 5);
    shadow_moved(server.admin, "/candidate/revision", &status["candidate"]["revision"]).await;
    decide(&server, "jwt", "tx_sign_request", &send(7, "4")).await;
    let status = shadow_moved(server.admin, "/evaluations", &json!(7)).await;
    assert_eq!(status["disagreements"], 2, "the reloaded candidate agrees: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixture_from_a_redacted_record_stays_redacted_and_says_so() {
    let server = spawn(Spec::both(&limits(5)).decision_log(
        "sink = \"file\"\npath = \"decisions.jsonl\"\ndurable = true\nredact = [\"/request/destAddress\"]",
    ))
    .await;
    decide(&server, "jwt", "tx_sign_request", &payload("eth_transfer.json")).await;
    let id = server.decision_records()[0]["decision_id"].as_str().unwrap().to_string();
    let (code, yaml, stderr) =
        run(&["fixture", "--from-log", "decisions.jsonl", "--decision-id", &id], server.dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(yaml.contains("# Redacted: the log replaced some request fields"), "{yaml}");
    assert!(yaml.contains("destAddress: '[REDACTED]'") || yaml.contains("destAddress: \"[REDACTED]\""), "{yaml}");
}

/// A candidate that does not compile never keeps the active set from serving: `serve` runs
/// without the shadow and says why in `/status`; `check --config` says the same, as a warning.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_candidate_is_served_without_not_refused_and_check_agrees() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::write(&dir.path().join("candidate/tx.rego"), "package cosigner.transaction\ndecision := {");
    let spec = Spec::both(r#"decision := {"action": "APPROVE"}"#).policy("candidate_dir = \"candidate\"");
    let config = spec.write(dir.path());
    let out = std::process::Command::new(crate::common::BIN).args(["check", "--config"]).arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("warning: policy.candidate_dir") && stdout.contains("WITHOUT the shadow"), "{stdout}");
    let server = crate::common::spawn_config(&config, dir).await;
    let answer = decide(&server, "jwt", "tx_sign_request", &payload("eth_transfer.json")).await;
    assert_eq!(answer["action"], "APPROVE");
    let (_, status) = server.admin_get("/status").await;
    assert!(status["shadow"]["error"].as_str().is_some_and(|e| e.contains("candidate")), "{status}");
}

/// A decision that depends on a value the log redacted cannot be judged by replay: it is
/// reported inconclusive, not as a change, and replay against the set that wrote it exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_that_depends_on_a_redacted_value_is_inconclusive_not_a_change() {
    let rego = r#"decision := {"action": "REJECT", "reason": "blocked note"} if input.request.note == "block"
else := {"action": "APPROVE"}"#;
    let spec = Spec::both(rego)
        .decision_log("sink = \"file\"\npath = \"decisions.jsonl\"\ndurable = true\nredact = [\"/request/note\"]");
    let server = spawn(spec).await;
    let mut tx = payload("eth_transfer.json");
    tx["note"] = json!("block");
    assert_eq!(decide(&server, "jwt", "tx_sign_request", &tx).await["action"], "REJECT");
    let (code, report) = replay_json(&server, "policies");
    assert_eq!(code, Some(0), "{report}");
    assert_eq!((&report["changed"], &report["redacted"]), (&json!(0), &json!(1)), "{report}");
    assert!(report["inconclusive"][0]["why"].as_str().unwrap().contains("redacted"), "{report}");
}

/// The shipped example configuration's decision log, written by the starter set for every
/// documented payload, replays unchanged against that set: the recommended CI gate passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_written_with_the_example_config_replays_unchanged_against_the_starter_set() {
    let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.toml")).unwrap();
    let mut table: toml::Table = toml::from_str(&example).unwrap();
    let mut log = table.remove("decision_log").unwrap().as_table().unwrap().clone();
    log.insert("path".into(), "decisions.jsonl".into());
    let server = spawn(Spec::starter().decision_log(&toml::to_string(&log).unwrap())).await;
    for name in ["eth_transfer.json", "btc_one_time_address.json", "usdc_transfer.json", "usdc_large_transfer.json"] {
        decide(&server, "jwt", "tx_sign_request", &payload(name)).await;
    }
    decide(&server, "jwt", "config_change_sign_request", &payload("whitelist_wallet.json")).await;
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (code, report) = replay_json(&server, policies.to_str().unwrap());
    assert_eq!(code, Some(0), "{report}");
    assert_eq!((&report["total"], &report["changed"]), (&json!(5), &json!(0)), "{report}");
}
