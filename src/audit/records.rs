//! Every record the decision log holds, defined once: what the server writes and what replay,
//! shadow evaluation and `fixture --from-log` read back. The chain's own records (checkpoints,
//! cuts) are in [`super::chain`] and [`super`].

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decision::{Action, Decision, Record};
use crate::envelope::Mode;
use crate::holds::{HoldTrace, Status, Verdict};
use crate::policy::{RequestContext, VelocityRead};
use crate::request::{CosignerRequest, RequestKind};

/// What the decision log records of a decided request.
#[derive(Serialize)]
pub struct DecisionRecord<'a> {
    pub decision_id: &'a str,
    pub timestamp: String,
    pub kind: &'static str,
    pub mode: &'static str,
    #[serde(rename = "requestId")]
    pub request_id: &'a str,
    #[serde(rename = "txId", skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<&'a str>,
    #[serde(rename = "signerId", skip_serializing_if = "Option::is_none")]
    pub signer_id: Option<&'a str>,
    pub cosigner_key: Option<&'a str>,
    pub action: &'static str,
    pub reason: Option<&'a str>,
    pub source: String,
    pub policy_revision: &'a str,
    pub latency_us: u64,
    pub input: Cow<'a, Value>,
    /// What the policy read from the state store and what the approval recorded.
    #[serde(skip_serializing_if = "StateTrace::is_empty")]
    pub state: &'a StateTrace,
    /// The transaction's hold: created by this decision, still pending, or released (with who).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<&'a HoldTrace>,
}

/// What the decision log records of a refused request.
#[derive(Serialize)]
pub struct RefusalRecord<'a> {
    pub decision_id: &'a str,
    pub timestamp: String,
    pub kind: &'static str,
    pub mode: &'static str,
    pub refused: &'static str,
    pub error: String,
    pub status: u16,
    pub latency_us: u64,
}

/// What the decision log records of an accepted verdict.
#[derive(Serialize)]
pub struct VerdictRecord<'a> {
    pub event: &'static str,
    pub timestamp: String,
    pub hold: &'a str,
    pub approver: &'a str,
    pub verdict: Verdict,
    /// The time the approver signed.
    pub signed_at: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'a str,
    /// A key-signed verdict: its signature (base64).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub signature: &'a str,
    /// A passkey verdict: the credential, its public key and the assertion (`console::reverify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passkey: Option<serde_json::Value>,
    pub digest: &'a str,
    pub status: Status,
    pub approvals: usize,
    pub required: u32,
}

/// What the decision log records of a disagreement (the decision's own record has the input).
#[derive(Serialize)]
pub struct Disagreement<'a> {
    pub event: &'static str,
    pub decision_id: &'a str,
    #[serde(rename = "requestId")]
    pub request_id: &'a str,
    pub active: &'a Answered,
    pub candidate: &'a Answered,
    pub candidate_revision: &'a str,
}

/// What the decision read from and wrote to the state store: enough to re-run it exactly.
#[derive(Debug, Default, Serialize)]
pub struct StateTrace {
    /// The transaction its records are kept under (`txId`, else `requestId`).
    pub id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<VelocityRead>,
    /// What the approved decision recorded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Record>,
    /// The keys recorded by this decision (the others already held this transaction).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new: Vec<String>,
    /// Evaluations it took: more than one when a concurrent decision changed a key it read.
    pub evaluations: u32,
    /// A re-decision read state its record does not hold: it is not an exact replay.
    #[serde(skip)]
    pub unrecorded: bool,
    /// The deciding evaluation read the replica's copy of a key (Redis), not the store.
    #[serde(skip)]
    pub copied: bool,
    /// The handler builtins' calls, when the pipeline records them (the OPA portability check).
    #[serde(skip)]
    pub calls: Vec<crate::policy::velocity::BuiltinCall>,
}

impl StateTrace {
    /// Whether the log shows anything of it.
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.records.is_empty()
    }
}

/// An action and its reason: what a decision answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    pub action: Action,
    pub reason: Option<String>,
}

impl From<&Decision> for Answered {
    fn from(decision: &Decision) -> Self {
        Self { action: decision.action, reason: decision.reason.clone() }
    }
}

/// A decision record of the log, as replay needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct Logged {
    pub decision_id: String,
    #[serde(rename = "requestId")]
    pub request_id: String,
    pub kind: RequestKind,
    #[serde(flatten)]
    pub answered: Answered,
    pub source: String,
    pub input: Value,
    #[serde(default)]
    pub state: LoggedState,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LoggedState {
    #[serde(default)]
    pub reads: Vec<VelocityRead>,
}

impl Logged {
    /// A decision record, or `None` for the log's other records (refusals, events, verdicts).
    pub fn parse(line: &str) -> Result<Option<Self>, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        if value.get("input").is_none() || value.get("action").is_none() {
            return Ok(None);
        }
        Self::deserialize(value).map(Some).map_err(|e| format!("not a decision record: {e}"))
    }

    /// The request and its context, rebuilt from the input document.
    pub fn request(&self) -> Result<(CosignerRequest, RequestContext), String> {
        let context = &self.input["context"];
        let received_ns = context["received_at_ns"].as_i64().ok_or("input.context.received_at_ns is missing")?;
        let mode = Mode::deserialize(&context["mode"]).map_err(|e| format!("input.context.mode: {e}"))?;
        let request =
            CosignerRequest::from_payload(self.kind, self.input["request"].clone()).map_err(|e| e.to_string())?;
        let context = RequestContext {
            received_at: DateTime::<Utc>::from_timestamp_nanos(received_ns),
            mode,
            cosigner_key: context["cosigner_key"].as_str().map(Into::into),
            origin: context.get("origin").and_then(|o| serde_json::from_value(o.clone()).ok()),
        };
        Ok((request, context))
    }

    /// The hold the request saw, if any.
    pub fn hold(&self) -> Option<crate::holds::Hold> {
        self.input["context"].get("hold").and_then(crate::holds::from_view)
    }

    /// Whether the decision log replaced values of the input (`decision_log.redact`): replay sees
    /// the placeholder where the policy saw the value.
    pub fn is_redacted(&self) -> bool {
        fn redacted(value: &Value) -> bool {
            match value {
                Value::String(s) => s == crate::audit::REDACTED,
                Value::Array(items) => items.iter().any(redacted),
                Value::Object(map) => map.values().any(redacted),
                _ => false,
            }
        }
        redacted(&self.input["request"])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decision_record<'a>(input: &'a Value, state: &'a StateTrace) -> DecisionRecord<'a> {
        DecisionRecord {
            decision_id: "d-1",
            timestamp: "2026-01-05T10:00:00.000000Z".into(),
            kind: "transaction",
            mode: "jwt",
            request_id: "r-1",
            tx_id: Some("t-1"),
            signer_id: None,
            cosigner_key: Some("primary"),
            action: "REJECT",
            reason: Some("too big"),
            source: "policy".into(),
            policy_revision: "abc",
            latency_us: 7,
            input: Cow::Borrowed(input),
            state,
            hold: None,
        }
    }

    /// A decision record as written reads back as replay reads it: the same answer, input and reads.
    #[test]
    fn a_decision_record_round_trips_through_the_reader() {
        let input = json!({"kind": "transaction", "request": {"requestId": "r-1", "txId": "t-1"},
            "context": {"received_at_ns": 1_767_607_200_000_000_000_i64, "mode": "jwt", "cosigner_key": "primary"}});
        let read = VelocityRead { function: "sum".into(), key: "k".into(), window: "24h".into(), value: json!("3") };
        let state = StateTrace { id: "t-1".into(), reads: vec![read.clone()], evaluations: 1, ..StateTrace::default() };
        let line = serde_json::to_string(&decision_record(&input, &state)).unwrap();
        let logged = Logged::parse(&line).unwrap().expect("a decision record");
        assert_eq!((logged.decision_id.as_str(), logged.request_id.as_str()), ("d-1", "r-1"));
        assert_eq!(logged.kind, RequestKind::Transaction);
        assert_eq!(logged.answered, Answered { action: Action::Reject, reason: Some("too big".into()) });
        assert_eq!((logged.source.as_str(), &logged.input), ("policy", &input));
        assert_eq!(logged.state.reads, vec![read]);
        let (request, context) = logged.request().unwrap();
        assert_eq!((request.request_id.as_str(), context.mode), ("r-1", Mode::Jwt));
    }

    /// The log's other records are recognised as such by the reader, not misread as decisions.
    #[test]
    fn refusal_verdict_and_disagreement_records_are_not_decisions() {
        let answered = Answered { action: Action::Approve, reason: None };
        let records = [
            serde_json::to_string(&RefusalRecord {
                decision_id: "d-2",
                timestamp: "t".into(),
                kind: "transaction",
                mode: "jwt",
                refused: "invalid_signature",
                error: "bad".into(),
                status: 401,
                latency_us: 1,
            }),
            serde_json::to_string(&VerdictRecord {
                event: "hold_verdict",
                timestamp: "t".into(),
                hold: "t-1",
                approver: "alice",
                verdict: Verdict::Approve,
                signed_at: "t",
                reason: "",
                signature: "c2ln",
                passkey: None,
                digest: "ab",
                status: Status::Pending,
                approvals: 1,
                required: 2,
            }),
            serde_json::to_string(&Disagreement {
                event: "shadow_disagreement",
                decision_id: "d-1",
                request_id: "r-1",
                active: &answered,
                candidate: &answered,
                candidate_revision: "x",
            }),
        ];
        for line in records {
            let line = line.unwrap();
            assert!(Logged::parse(&line).unwrap().is_none(), "{line}");
            let value: Value = serde_json::from_str(&line).unwrap();
            assert!(value.is_object(), "one JSON object per line");
        }
    }
}
