//! Every failure of the policy gives the configured fallback, never APPROVE.

use crate::common::{Spec, decide, payload, spawn};

/// Each class of failure, as a policy body that approves when it works at all.
const FAILURES: [(&str, &str); 4] = [
    ("undefined", r#"decision := {"action": "APPROVE"} if input.request.noSuchField == 1"#),
    ("invalid_decision", r#"decision := {"action": "APPROVE", "extra": "not part of a decision"}"#),
    // Two complete-rule values for one request: an evaluation error, not undefined.
    (
        "eval_error",
        "decision := {\"action\": \"APPROVE\"}\ndecision := {\"action\": \"APPROVE\", \"reason\": \"twice\"}",
    ),
    (
        "timeout",
        r#"decision := {"action": "APPROVE"} if {
            count({i | some i in numbers.range(1, 4000); some j in numbers.range(1, 4000); i * j < 0}) == 0
        }"#,
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn each_failure_class_gives_the_reject_fallback_naming_the_class() {
    for (class, rego) in FAILURES {
        let server = spawn(Spec::both(rego).policy("eval_timeout_ms = 300")).await;
        for mode in ["jwt", "json"] {
            let answer = decide(&server, mode, "tx_sign_request", &payload("eth_transfer.json")).await;
            assert_eq!(answer["action"], "REJECT", "{class} in {mode} mode");
            assert_eq!(
                answer["rejectionReason"],
                format!("cosigner-guard fallback: {class}"),
                "{class} in {mode} mode: the reason names the class"
            );
            assert_eq!(answer["requestId"], "9c794cee-7e27-46c9-9e9a-ed68295ff06b");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fallback_can_be_retry_instead() {
    for (class, rego) in FAILURES {
        let server = spawn(Spec::both(rego).policy("eval_timeout_ms = 300\non_error = \"RETRY\"")).await;
        let answer = decide(&server, "jwt", "config_change_sign_request", &payload("whitelist_wallet.json")).await;
        assert_eq!(answer["action"], "RETRY", "{class}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_deeper_than_a_default_thread_stack_evaluates_without_crashing() {
    // A chain of 1000 rules overflows a 2 MiB thread stack (measured: from about 300 in a debug
    // build, 1000 in release), which would abort the whole process.
    let mut rego = String::from("r0 := input.request.amountStr\n");
    for i in 1..1000 {
        rego.push_str(&format!("r{i} := r{}\n", i - 1));
    }
    rego.push_str(r#"decision := {"action": "REJECT", "reason": r999}"#);
    let server = spawn(Spec::both(&rego)).await;
    let answer = decide(&server, "jwt", "tx_sign_request", &payload("eth_transfer.json")).await;
    assert_eq!(answer["action"], "REJECT");
    assert_eq!(answer["rejectionReason"], "0.010000000000000000", "the policy itself decided");
    let again = decide(&server, "json", "tx_sign_request", &payload("eth_transfer.json")).await;
    assert_eq!(again["rejectionReason"], "0.010000000000000000", "the process still answers");
}
