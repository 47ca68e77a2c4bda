//! The policy author's commands, black-box: the built binary, its output and its exit codes.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{Spec, decide, spawn, write};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cosigner-guard");

fn run(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } = Command::new(BIN).args(args).current_dir(dir).output().unwrap();
    (status.code(), String::from_utf8(stdout).unwrap(), String::from_utf8(stderr).unwrap())
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A small policy set: transactions over 100 (by `amount`) are rejected, with a print.
fn policy_set(dir: &Path) {
    write(
        &dir.join("policies/tx.rego"),
        r#"package cosigner.transaction
import rego.v1
default decision := {"action": "APPROVE"}
decision := {"action": "REJECT", "reason": "over 100"} if {
    print("amount is", input.request.amount)
    input.request.amount > 100
}
"#,
    );
    write(&dir.join("policies/cc.rego"), "package cosigner.config_change\ndecision := {\"action\": \"IGNORE\"}\n");
}

#[test]
fn the_starter_policies_pass_their_own_suite_with_full_coverage() {
    let (code, out, err) = run(&["test", "policies", "--fail-on-empty", "--coverage", "--threshold", "90"], repo());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.lines().filter(|l| l.starts_with("PASS")).count() >= 20, "{out}");
    assert!(out.lines().last().unwrap().ends_with("0 failed, 0 skipped"), "{out}");
    assert!(out.contains("coverage: "), "{out}");
}

#[test]
fn rego_unit_tests_follow_opa_semantics() {
    let dir = tempfile::tempdir().unwrap();
    policy_set(dir.path());
    write(
        &dir.path().join("policies/tx_test.rego"),
        r#"package cosigner.transaction_test
import rego.v1
import data.cosigner.transaction
test_true if transaction.decision.action == "APPROVE" with input as {"request": {"amount": 1}}
test_input_and_data_mocking if {
    transaction.decision.reason == "over 100" with input as {"request": {"amount": 101}}
}
test_false := false
test_undefined if input.nothing
test_error if { x := 1; y := 0; x / y == 1 }
todo_test_later if false
"#,
    );
    let (code, out, _) = run(&["test", "--format", "json"], dir.path());
    assert_eq!(code, Some(2), "a failing test fails the run: {out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let outcome = |name: &str| {
        report["results"].as_array().unwrap().iter().find(|r| r["name"].as_str().unwrap().ends_with(name)).unwrap()
            ["outcome"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let cases = [
        ("test_true", "pass"),
        ("test_input_and_data_mocking", "pass"),
        ("test_false", "fail"),
        ("test_undefined", "fail"),
        ("todo_test_later", "skip"),
    ];
    for (name, want) in cases {
        assert_eq!(outcome(name), want, "{name}");
    }
    assert!(matches!(outcome("test_error").as_str(), "error" | "fail"), "a runtime error never passes");
}

#[test]
fn a_failing_fixture_explains_expected_versus_got_with_the_prints() {
    let dir = tempfile::tempdir().unwrap();
    policy_set(dir.path());
    write(&dir.path().join("policies/fixtures/big.json"), r#"{"requestId": "r1", "amount": 500}"#);
    write(
        &dir.path().join("policies/tx_test.yaml"),
        r#"cases:
  - name: a big transfer is approved (wrong on purpose)
    request: fixtures/big.json
    expect: {action: APPROVE}
  - name: a small transfer is approved
    request: fixtures/big.json
    patch: {amount: 5}
    expect: {action: APPROVE}
  - name: a big transfer is rejected
    request: {requestId: r2, amount: 101}
    expect: {action: REJECT, reason: "over 100"}
"#,
    );
    let (code, out, _) = run(&["test"], dir.path());
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("FAIL  a big transfer is approved (wrong on purpose)"), "{out}");
    assert!(out.contains("tx_test.yaml:2\n"), "the failing case is named by its file and line: {out}");
    assert!(out.contains("expected APPROVE, got REJECT (policy) with reason \"over 100\""), "{out}");
    assert!(out.contains("print: ") && out.contains("amount is 500"), "the policy's prints are shown: {out}");
    assert!(out.contains("PASS  a small transfer is approved") && out.contains("PASS  a big transfer is rejected"));
    assert!(out.trim_end().ends_with("2 passed, 1 failed, 0 skipped"), "{out}");

    let (_, junit, _) = run(&["test", "--format", "junit"], dir.path());
    assert!(
        junit.starts_with("<?xml") && junit.contains("<testsuite name=\"fixture\" tests=\"3\" failures=\"1\""),
        "{junit}"
    );
    assert!(junit.contains("<failure message=\"expected APPROVE, got REJECT"), "{junit}");

    let (code, out, _) = run(&["test", "--run", "small"], dir.path());
    assert_eq!(code, Some(0), "--run selects: {out}");
    assert!(out.trim_end().ends_with("1 passed, 0 failed, 0 skipped"), "{out}");
    let (code, _, err) = run(&["test", "--run", "nothing-matches", "--fail-on-empty"], dir.path());
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = run(&["test", "--run", "small", "--threshold", "101"], dir.path());
    assert_eq!(code, Some(2), "coverage below the threshold fails: {err}");
}

#[test]
fn tests_that_cannot_be_loaded_exit_1_naming_file_and_position() {
    let cases = [
        (
            "an unknown key",
            "cases:\n  - name: x\n    request: {requestId: a}\n    expct: {action: APPROVE}\n",
            "line 4",
        ),
        ("a bad action", "cases:\n  - name: x\n    request: {requestId: a}\n    expect: {action: ALLOW}\n", "line 4"),
        (
            "a missing payload file",
            "cases:\n  - name: x\n    request: nope.json\n    expect: {action: APPROVE}\n",
            "nope.json",
        ),
        ("not YAML", "cases: [\n", "tx_test.yaml"),
    ];
    for (name, yaml, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        policy_set(dir.path());
        write(&dir.path().join("policies/tx_test.yaml"), yaml);
        let (code, out, err) = run(&["test"], dir.path());
        assert_eq!(code, Some(1), "{name}: {out}{err}");
        assert!(err.contains("tx_test.yaml") && err.contains(named), "{name}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    policy_set(dir.path());
    write(&dir.path().join("policies/broken.rego"), "package broken\nx := {\n");
    let (code, _, err) = run(&["test"], dir.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("broken.rego:"), "{err}");
}

#[test]
fn check_reports_every_parse_error_and_refuses_recursive_functions() {
    let (code, out, _) = run(&["check", "policies"], repo());
    assert_eq!((code, out.starts_with("ok: policies")), (Some(0), true), "{out}");

    let dir = tempfile::tempdir().unwrap();
    policy_set(dir.path());
    write(&dir.path().join("policies/a.rego"), "package a\nx := [\n");
    write(&dir.path().join("policies/b.rego"), "package b\ny := {\n");
    let (code, _, err) = run(&["check"], dir.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("a.rego:") && err.contains("b.rego:"), "both files reported: {err}");

    let dir = tempfile::tempdir().unwrap();
    policy_set(dir.path());
    write(&dir.path().join("policies/r.rego"), "package r\nimport rego.v1\nf(x) := y if { y := f(x) }\n");
    let (code, _, err) = run(&["check"], dir.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("r.rego:3") && err.contains("calls itself"), "{err}");
}

/// `check --config` does what start-up does except bind, like `nginx -t`: the key and certificate
/// files must exist and load, the decision log and state directory be writable.
#[test]
fn check_with_a_config_loads_everything_start_up_loads() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::both(r#"decision := {"action": "APPROVE"}"#)
        .decision_log("sink = \"file\"\npath = \"logs/decisions.jsonl\"");
    let config = spec.write(dir.path());
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let config = config.to_str().unwrap();
    let (code, out, err) = run(&["check", "--config", config], dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("(keys, certificates, decision log, state store)"), "{out}");

    for (file, setting) in [("tls/cert.pem", "server.tls_cert"), ("keys/handler.pem", "protocol.signing_key")] {
        let saved = std::fs::read(dir.path().join(file)).unwrap();
        std::fs::remove_file(dir.path().join(file)).unwrap();
        let (code, _, err) = run(&["check", "--config", config], dir.path());
        assert_eq!(code, Some(1), "without {file}");
        assert!(err.contains(setting), "{file}: {err}");
        std::fs::write(dir.path().join(file), saved).unwrap();
    }

    // A check leaves no file behind: not the decision log, not the state directory.
    assert!(!dir.path().join("logs/decisions.jsonl").exists(), "the probed log file is removed");
    assert!(!dir.path().join("state").exists(), "the probed state directory is removed");

    // The log's directory is created when missing (and removed again by a check); one that
    // cannot be is an error naming the key.
    std::fs::remove_dir_all(dir.path().join("logs")).unwrap();
    let (code, _, err) = run(&["check", "--config", config], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(!dir.path().join("logs").exists(), "the probed log directory is removed");
    std::fs::write(dir.path().join("logs"), "a file where the directory should be").unwrap();
    let (code, _, err) = run(&["check", "--config", config], dir.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("decision_log.path"), "{err}");
}

/// Holds and approvals travel through the admin API: off loopback it needs TLS, or an explicit
/// `allow_plaintext` that is warned about. `check --config` and `serve` refuse alike.
#[test]
fn an_admin_listener_off_loopback_without_tls_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = Spec::both(r#"decision := {"action": "APPROVE"}"#).write(dir.path());
    let original = std::fs::read_to_string(&config).unwrap();
    let admin = |section: &str| original.replace("[admin]\nlisten = \"127.0.0.1:0\"", section);
    let path = config.to_str().unwrap();

    std::fs::write(&config, admin("[admin]\nlisten = \"0.0.0.0:0\"")).unwrap();
    let (code, _, err) = run(&["check", "--config", path], dir.path());
    assert_eq!(code, Some(1));
    assert!(err.contains("admin.listen") && err.contains("not a loopback address"), "{err}");
    let serve = std::process::Command::new(BIN).args(["serve", "--config", path]).output().unwrap();
    assert!(!serve.status.success(), "serve refuses as check does");
    assert!(String::from_utf8_lossy(&serve.stderr).contains("not a loopback address"));

    std::fs::write(&config, admin("[admin]\nlisten = \"0.0.0.0:0\"\nallow_plaintext = true")).unwrap();
    let (code, out, err) = run(&["check", "--config", path], dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(format!("{out}{err}").contains("admin.allow_plaintext"), "warned: {out}{err}");

    let with_tls = "[admin]\nlisten = \"0.0.0.0:0\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"";
    std::fs::write(&config, admin(with_tls)).unwrap();
    let (code, out, err) = run(&["check", "--config", path], dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
}

#[test]
fn eval_shows_the_input_document_the_decision_and_why() {
    let dir = tempfile::tempdir().unwrap();
    policy_set(dir.path());
    write(&dir.path().join("big.json"), r#"{"requestId": "r1", "amount": 500}"#);
    let (code, out, err) = run(
        &["eval", "--kind", "transaction", "--request", "big.json", "--now", "2026-01-05T10:00:00Z", "--explain"],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"received_at\": \"2026-01-05T10:00:00.000Z\""), "{out}");
    assert!(out.contains("\"action\": \"REJECT\"") && out.contains("\"reason\": \"over 100\""), "{out}");
    assert!(out.contains("state: empty (eval does not read the server's store)"), "it says what the limits saw: {out}");
    assert!(out.contains("print: ") && out.contains("amount is 500"), "{out}");
    assert!(
        out.contains("data.cosigner.transaction.decision = {\"action\":\"REJECT\",\"reason\":\"over 100\"}"),
        "{out}"
    );
}

#[test]
fn eval_verifies_a_signed_request_with_the_given_key() {
    let dir = tempfile::tempdir().unwrap();
    policy_set(dir.path());
    let keys = crate::common::keys();
    write(
        &dir.path().join("req.jwt"),
        &crate::common::sign(&serde_json::json!({"requestId": "r", "amount": 1}), &keys.primary.private_pem),
    );
    write(&dir.path().join("primary.pem"), &keys.primary.public_pem);
    write(&dir.path().join("other.pem"), &keys.stranger.public_pem);
    let (code, out, err) =
        run(&["eval", "--kind", "transaction", "--request", "req.jwt", "--cosigner-key", "primary.pem"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"mode\": \"jwt\"") && out.contains("\"action\": \"APPROVE\""), "{out}");
    let (code, _, err) =
        run(&["eval", "--kind", "transaction", "--request", "req.jwt", "--cosigner-key", "other.pem"], dir.path());
    assert_eq!(code, Some(1), "a token the key does not verify is refused: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn starter_fixture_expectations_are_what_the_running_server_answers() {
    let server = spawn(Spec::starter()).await;
    for (file, endpoint) in
        [("transaction_test.yaml", "tx_sign_request"), ("config_change_test.yaml", "config_change_sign_request")]
    {
        let path = repo().join("policies/cosigner").join(file);
        let fixtures: Value = yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // Cases that seed the state store or set the time are the fixture runner's alone: a live
        // server has its own clock and store.
        let live = |case: &&Value| ["history", "hold", "steps", "now"].iter().all(|key| case.get(key).is_none());
        for case in fixtures["cases"].as_array().unwrap().iter().filter(live) {
            let mut payload = match &case["request"] {
                Value::String(file) => {
                    serde_json::from_slice(&std::fs::read(path.parent().unwrap().join(file)).unwrap()).unwrap()
                }
                inline => inline.clone(),
            };
            if case["patch"].is_object() {
                cosigner_guard::testing::fixtures::merge_patch(&mut payload, &case["patch"]);
                // A patched payload is another transaction to the server, with its own ids.
                payload["requestId"] = Value::from(format!("{}", case["name"]));
                payload["txId"] = payload["requestId"].clone();
            }
            let answer = decide(&server, "jwt", endpoint, &payload).await;
            assert_eq!(answer["action"], case["expect"]["action"], "{}", case["name"]);
        }
    }
}

/// Waits for a reload to fail (within 5 s) and returns its error.
async fn failed_reload(server: &crate::common::TestServer) -> String {
    let start = std::time::Instant::now();
    loop {
        let status = server.admin_get("/status").await.1;
        if status["policy"]["last_reload"]["result"] == "failed" {
            return status["policy"]["last_reload"]["error"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "no failed reload: {status}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn require_tests_keeps_a_set_with_failing_tests_from_going_live() {
    let server = spawn(
        Spec::both(r#"decision := {"action": "REJECT", "reason": "v1"}"#).extra("[reload]\nrequire_tests = true"),
    )
    .await;
    write(
        &server.policy_dir().join("tx.rego"),
        "package cosigner.transaction\ndecision := {\"action\": \"REJECT\", \"reason\": \"v2\"}\ntest_fails := false\n",
    );
    let error = failed_reload(&server).await;
    assert!(error.contains("test_fails"), "{error}");
    let answer = decide(&server, "json", "tx_sign_request", &crate::common::payload("eth_transfer.json")).await;
    assert_eq!(answer["rejectionReason"], "v1", "the set with a failing test never went live");
}

#[tokio::test(flavor = "multi_thread")]
async fn require_tests_keeps_a_set_failing_a_yaml_fixture_from_going_live() {
    let fixture =
        "cases:\n  - name: a transfer is approved\n    request: {requestId: r1}\n    expect: {action: APPROVE}\n";
    let mut spec = Spec::both(r#"decision := {"action": "APPROVE"}"#).extra("[reload]\nrequire_tests = true");
    spec.policies.push(("tx_test.yaml", fixture.to_string()));
    let server = spawn(spec).await;
    write(
        &server.policy_dir().join("tx.rego"),
        "package cosigner.transaction\ndecision := {\"action\": \"REJECT\", \"reason\": \"v2\"}\n",
    );
    let error = failed_reload(&server).await;
    assert!(error.contains("a transfer is approved"), "the failing case is named: {error}");
    let answer = decide(&server, "json", "tx_sign_request", &crate::common::payload("eth_transfer.json")).await;
    assert_eq!(answer["action"], "APPROVE", "the set failing its fixture never went live");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_modules_run_in_the_suite_but_take_no_part_in_decisions() {
    let rule = r#"default decision := {"action": "APPROVE"}
decision := {"action": "REJECT", "reason": "a test module took part"} if data.cosigner.transaction.planted"#;
    let planted =
        "package cosigner.transaction\nimport rego.v1\nplanted := true\ntest_planted_is_visible_to_tests if planted\n";
    for require_tests in [false, true] {
        let mut spec = Spec::new(rule, r#"decision := {"action": "IGNORE"}"#);
        spec.policies.push(("tx_test.rego", planted.to_string()));
        let spec = spec.extra(&format!("[reload]\nrequire_tests = {require_tests}"));
        let server = spawn(spec).await;
        let answer = decide(&server, "json", "tx_sign_request", &crate::common::payload("eth_transfer.json")).await;
        assert_eq!(answer["action"], "APPROVE", "require_tests = {require_tests}: {answer}");
        let (code, out, err) = run(&["test", "policies"], &server.policy_dir().join(".."));
        assert_eq!(code, Some(0), "the suite sees the test module: {out}{err}");
        assert!(out.contains("test_planted_is_visible_to_tests"), "{out}");
    }
}

#[test]
fn a_fixture_can_hold_a_signed_request_verified_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    policy_set(dir.path());
    let keys = crate::common::keys();
    let token = crate::common::sign(&serde_json::json!({"requestId": "s1", "amount": 500}), &keys.primary.private_pem);
    write(&dir.path().join("policies/fixtures/big.jwt"), &token);
    write(&dir.path().join("policies/fixtures/primary.pem"), &keys.primary.public_pem);
    write(&dir.path().join("policies/fixtures/other.pem"), &keys.stranger.public_pem);
    write(
        &dir.path().join("policies/tx_test.yaml"),
        r#"cases:
  - name: a signed big transfer is rejected
    jwt: {token: fixtures/big.jwt, key: fixtures/primary.pem, key_name: primary}
    expect: {action: REJECT, reason: "over 100"}
  - name: a token the key does not verify gets no decision
    jwt: {token: fixtures/big.jwt, key: fixtures/other.pem}
    expect: {action: REJECT}
"#,
    );
    let (code, out, _) = run(&["test"], dir.path());
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("PASS  a signed big transfer is rejected"), "{out}");
    assert!(out.contains("FAIL  a token the key does not verify gets no decision"), "{out}");
    assert!(out.contains("the request was refused, no decision: signature does not verify"), "{out}");
}

#[test]
fn the_treasury_example_passes_its_fixtures_at_every_boundary() {
    let (code, out, err) = run(&["test", "examples/treasury/policies", "--fail-on-empty"], repo());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("PASS  USDC one micro-unit above 1,000,000 is held for review"), "{out}");
}

#[test]
fn every_guide_snippet_is_in_the_file_it_names() {
    let readme = std::fs::read_to_string(repo().join("docs/policies.md")).unwrap();
    let mut checked = 0;
    for (i, part) in readme.split("<!-- from: ").enumerate().skip(1) {
        let (path, rest) = part.split_once(" -->").unwrap();
        let block = rest.split_once("```yaml\n").unwrap().1.split_once("```").unwrap().0;
        let file = std::fs::read_to_string(repo().join(path)).unwrap();
        assert!(file.contains(block), "snippet {i} is not in {path}:\n{block}");
        checked += 1;
    }
    assert!(checked >= 5, "the guide's snippets were found ({checked})");
}

/// At most 3 transfers an hour, counted on approval.
fn counted_policy_set(dir: &Path) {
    write(
        &dir.join("policies/tx.rego"),
        r#"package cosigner.transaction
import rego.v1
sent := velocity.count("transfers", "1h")
decision := {"action": "APPROVE", "record": [{"key": "transfers", "amount": input.request.amountStr}]} if {
    sent < 3
} else := {"action": "REJECT", "reason": sprintf("%d transfers this hour", [sent])}
"#,
    );
    write(&dir.join("policies/cc.rego"), "package cosigner.config_change\ndecision := {\"action\": \"IGNORE\"}\n");
}

#[test]
fn fixture_steps_carry_state_from_request_to_request_and_a_wrong_step_is_named() {
    let dir = tempfile::tempdir().unwrap();
    counted_policy_set(dir.path());
    let request = r#"request: {requestId: r, txId: r, amountStr: "1"}
    now: "2026-01-01T10:00:00Z""#;
    write(
        &dir.path().join("policies/tx_test.yaml"),
        &format!(
            r#"cases:
  - name: three an hour
    {request}
    steps:
      - {{repeat: 3, expect: {{action: APPROVE}}}}
      - {{expect: {{action: REJECT, reason: "3 transfers this hour"}}}}
  - name: history counts and the same transaction twice counts once
    {request}
    history: [{{key: transfers, amount: "1", at: "2026-01-01T09:30:00Z"}}]
    steps:
      - {{patch: {{txId: same, requestId: same}}, repeat: 4, expect: {{action: APPROVE}}}}
      - {{expect: {{action: APPROVE}}}}
      - {{expect: {{action: REJECT}}}}
  - name: a wrong expectation
    {request}
    steps:
      - {{repeat: 2, expect: {{action: APPROVE}}}}
      - {{name: third, repeat: 2, expect: {{action: APPROVE}}}}
"#
        ),
    );
    let (code, out, err) = run(&["test", "policies"], dir.path());
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("PASS  three an hour"), "{out}");
    assert!(out.contains("PASS  history counts and the same transaction twice counts once"), "{out}");
    assert!(
        out.contains(
            "step 2 (third), request 4: expected APPROVE, got REJECT (policy) with reason \"3 transfers this hour\""
        ),
        "{out}"
    );
}

#[test]
fn a_case_must_have_either_expect_or_steps() {
    let dir = tempfile::tempdir().unwrap();
    counted_policy_set(dir.path());
    write(
        &dir.path().join("policies/tx_test.yaml"),
        "cases:\n  - name: both\n    request: {requestId: r}\n    expect: {action: APPROVE}\n    steps: [{expect: {action: APPROVE}}]\n",
    );
    let (code, out, err) = run(&["test", "policies"], dir.path());
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("exactly one of `expect` and `steps` is required"), "{err}");
}

/// A set that rejects a destination the workspace policy blocked, by the `violations` rules given.
fn blocked_destination_set(dir: &Path, violations: &str) {
    let policy = format!(
        "package cosigner.transaction\nimport rego.v1\n{violations}\n\
         decision := {{\"action\": \"REJECT\", \"reason\": concat(\"; \", violations)}} if count(violations) > 0\n\
         else := {{\"action\": \"APPROVE\"}}\n"
    );
    write(&dir.join("policies/tx.rego"), &policy);
    write(&dir.join("policies/cc.rego"), "package cosigner.config_change\ndecision := {\"action\": \"IGNORE\"}\n");
    write(
        &dir.join("policies/tx_test.yaml"),
        r#"cases:
  - name: a blocked destination is rejected
    request: {requestId: r1, asset: ETH, destinations: [{dstAddress: "0xa", action: BLOCK}]}
    expect: {action: REJECT}
"#,
    );
}

#[test]
fn mutate_fails_a_policy_whose_violation_message_reads_an_absent_field_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    blocked_destination_set(
        dir.path(),
        r#"violations contains msg if {
    some d in input.request.destinations
    d.action != "ALLOW"
    msg := sprintf("%v is blocked", [d.dstAddress])
}"#,
    );
    let (code, out, err) = run(&["test", "policies"], dir.path());
    assert_eq!(code, Some(0), "the suite alone passes: {out}{err}");
    let (code, out, err) = run(&["test", "policies", "--mutate"], dir.path());
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains(r#"MUTANT APPROVED  "a blocked destination is rejected" (policies/tx_test.yaml): /destinations/0/dstAddress removed"#),
        "{out}"
    );
    // The machine-readable reports say it too: a red job never comes with a green report.
    let (code, json, _) = run(&["test", "policies", "--mutate", "--format", "json"], dir.path());
    assert_eq!(code, Some(2));
    let report: Value = serde_json::from_str(&json).unwrap();
    assert!(report["summary"]["failed"].as_u64().unwrap() > 0, "every approved mutant is a failed result: {json}");
    assert!(json.contains("a blocked destination is rejected with /destinations/0/dstAddress removed"), "{json}");
    let (_, junit, _) = run(&["test", "policies", "--mutate", "--format", "junit"], dir.path());
    assert!(junit.contains("<testsuite name=\"mutation\"") && junit.contains("<failure message=\"approved"), "{junit}");
}

#[test]
fn mutate_passes_a_policy_that_reads_every_field_with_a_default() {
    let dir = tempfile::tempdir().unwrap();
    blocked_destination_set(
        dir.path(),
        r#"destinations := d if {
    d := object.get(input.request, "destinations", [])
    is_array(d)
} else := []
violations contains msg if {
    some d in destinations
    verdict := object.get(d, "action", "<missing>")
    verdict != "ALLOW"
    msg := sprintf("%v is blocked (%v)", [object.get(d, "dstAddress", "<missing>"), verdict])
}
violations contains "no destinations" if count(destinations) == 0"#,
    );
    let (code, out, err) = run(&["test", "policies", "--mutate"], dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 cases expecting no APPROVE") && out.contains(" 0 approved"), "{out}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_copy_of_the_starter_policies_outside_the_repository_passes_its_own_tests() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("policies"), &dir.path().join("my-policies"));
    let (code, out, err) = run(&["test", "my-policies", "--fail-on-empty"], dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn eval_gives_a_payload_the_context_a_fixture_gets_and_spells_config_change_as_the_input_does() {
    let dir = tempfile::tempdir().unwrap();
    policy_set(dir.path());
    write(&dir.path().join("cc.json"), r#"{"requestId": "c1", "type": "ADD_ADDRESS"}"#);
    let (code, out, err) = run(&["eval", "--kind", "config_change", "--request", "cc.json"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(r#""kind": "config_change""#) && out.contains(r#""mode": "jwt""#), "{out}");
    assert!(out.contains(r#""cosigner_key": "fixture""#), "{out}");
    let (_, out, _) = run(&["eval", "--kind", "config-change", "--request", "cc.json", "--mode", "json"], dir.path());
    assert!(out.contains(r#""mode": "json""#) && out.contains(r#""cosigner_key": null"#), "{out}");
}

#[test]
fn check_refuses_an_unknown_function_and_an_action_that_does_not_exist_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("policies/tx.rego"),
        r#"package cosigner.transaction
import rego.v1
default decision := {"action": "REJECT"}
decision := {"action": "Approve"} if treasury_limits.within(input.request)
"#,
    );
    write(
        &dir.path().join("policies/cc.rego"),
        "package cosigner.config_change\ndecision := {\"action\": \"IGNORE\"}\n",
    );
    let (code, out, err) = run(&["check", "policies"], dir.path());
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("tx.rego:4: unknown function treasury_limits.within"), "{err}");
    assert!(err.contains(r#"tx.rego:4: action "Approve" is not one of APPROVE, REJECT, RETRY, IGNORE"#), "{err}");
}

/// A three-branch `else` chain, and fixture cases taking the branches named.
fn else_chain(dir: &Path, amounts: &[u32]) {
    write(
        &dir.join("policies/tx.rego"),
        r#"package cosigner.transaction
import rego.v1

decision := {"action": "REJECT", "reason": "big"} if {
	input.request.amount > 100
} else := {"action": "RETRY", "reason": "medium"} if {
	input.request.amount > 10
} else := {"action": "APPROVE"}
"#,
    );
    write(
        &dir.join("policies/cc.rego"),
        "package cosigner.config_change\nimport rego.v1\ndecision := {\"action\": \"IGNORE\"} if {\n\tinput.request.type\n}\n",
    );
    let cases: String = amounts
        .iter()
        .map(|a| {
            format!(
                "  - name: amount {a}\n    request: {{requestId: r{a}, amount: {a}}}\n    expect: {{action: {}}}\n",
                if *a > 100 {
                    "REJECT"
                } else if *a > 10 {
                    "RETRY"
                } else {
                    "APPROVE"
                }
            )
        })
        .collect();
    write(&dir.join("policies/tx_test.yaml"), &format!("cases:\n{cases}"));
}

#[test]
fn coverage_shows_an_else_branch_no_test_takes_and_counts_unreached_files_the_same() {
    let dir = tempfile::tempdir().unwrap();
    else_chain(dir.path(), &[500, 5]);
    let (code, out, err) = run(&["test", "policies", "--coverage"], dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("policies/tx.rego: 80.0% (4/5), not covered: 6"), "the RETRY branch: {out}");
    // cc.rego is reached by no test: its line counts as it would if one did.
    assert!(out.contains("policies/cc.rego: 0.0% (0/2), not covered: 3-4"), "{out}");

    else_chain(dir.path(), &[500, 50, 5]);
    write(
        &dir.path().join("policies/cc_test.yaml"),
        "kind: config_change\ncases:\n  - name: a change\n    request: {requestId: c1, type: X}\n    expect: {action: IGNORE}\n",
    );
    let (_, out, _) = run(&["test", "policies", "--coverage"], dir.path());
    assert!(out.contains("policies/tx.rego: 100.0% (5/5)") && out.contains("policies/cc.rego: 100.0% (2/2)"), "{out}");
}

#[test]
fn mutate_mutates_a_refused_step_after_the_requests_before_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("policies/tx.rego"),
        r#"package cosigner.transaction
import rego.v1
key := sprintf("vault:%v", [input.request.sourceId])
records contains {"key": key, "amount": "1"} if key
decision := {"action": "REJECT", "reason": "two an hour per vault"} if velocity.count(key, "1h") >= 2
else := {"action": "APPROVE", "record": [r | some r in records]}
"#,
    );
    write(
        &dir.path().join("policies/cc.rego"),
        "package cosigner.config_change\ndecision := {\"action\": \"IGNORE\"}\n",
    );
    write(
        &dir.path().join("policies/tx_test.yaml"),
        r#"cases:
  - name: the third transfer of the hour is refused
    request: {requestId: r, txId: t, sourceId: "0"}
    now: "2026-03-02T12:00:00Z"
    steps:
      - {repeat: 2, expect: {action: APPROVE}}
      - {expect: {action: REJECT}}
"#,
    );
    let (code, out, err) = run(&["test", "policies"], dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["test", "policies", "--mutate"], dir.path());
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains(
            r#""the third transfer of the hour is refused (step 2)" (policies/tx_test.yaml): /sourceId removed"#
        ),
        "{out}"
    );
}

/// `check` warns, at file:line and with the portable form, on a policy written the way OPA
/// decides differently — a negated comparison over a nested call, iteration over a field — and
/// stays quiet on its portable rewrite; warnings do not fail the check.
#[test]
fn check_warns_on_what_opa_would_decide_differently() {
    let dir = tempfile::tempdir().unwrap();
    let old_way = r#"package cosigner.transaction
import rego.v1
default decision := {"action": "APPROVE"}
decision := {"action": "REJECT", "reason": "over"} if {
	sent := velocity.sum("k", "24h")
	not decimal.cmp(decimal.sum([sent, input.request.amountStr]), "10") <= 0
}
decision := {"action": "REJECT", "reason": "blocked"} if {
	some d in input.request.destinations
	d.action == "BLOCK"
}
"#;
    write(&dir.path().join("policies/tx.rego"), old_way);
    write(
        &dir.path().join("policies/cc.rego"),
        "package cosigner.config_change\nimport rego.v1\ndecision := {\"action\": \"REJECT\"}\n",
    );
    let (code, out, err) = run(&["check", "policies"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("tx.rego:6: not over") && out.contains("opa#7558"), "{out}");
    assert!(out.contains("tx.rego:9: iterating `input.request.destinations`"), "{out}");
    let portable = old_way
        .replace(
            "not decimal.cmp(decimal.sum([sent, input.request.amountStr]), \"10\") <= 0",
            "not within(sent, object.get(input.request, \"amountStr\", \"\"))",
        )
        .replace("some d in input.request.destinations", "some d in object.get(input.request, \"destinations\", [])")
        + "within(sent, amount) if decimal.cmp(decimal.sum([sent, amount]), \"10\") <= 0\n";
    write(&dir.path().join("policies/tx.rego"), &portable);
    let (code, out, err) = run(&["check", "policies"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("warning"), "{out}");
}
