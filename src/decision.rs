//! The answer to the Co-signer: an action, its reason, where it came from, and the fail-closed fallback.

use serde::{Deserialize, Serialize};

use crate::decimal::Amount;

/// Why what a policy returned is not a decision (the `invalid_decision` fallback says it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDecision(pub String);

/// At most this many records per decision.
pub const MAX_RECORDS: usize = 32;

/// The longest key a record or a `velocity.*` read may name.
pub const MAX_KEY_BYTES: usize = 512;

/// What one decision asks to record when it is approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub key: String,
    #[serde(serialize_with = "as_string")]
    pub amount: Amount,
}

fn as_string<S: serde::Serializer>(amount: &Amount, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(amount)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Approve,
    Reject,
    Retry,
    Ignore,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "APPROVE",
            Action::Reject => "REJECT",
            Action::Retry => "RETRY",
            Action::Ignore => "IGNORE",
        }
    }
}

/// The only actions allowed when the policy's own answer cannot be used. APPROVE and IGNORE are
/// unrepresentable here, so no configuration can make a failure approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum FallbackAction {
    #[default]
    Reject,
    Retry,
}

impl From<FallbackAction> for Action {
    fn from(fallback: FallbackAction) -> Self {
        match fallback {
            FallbackAction::Reject => Action::Reject,
            FallbackAction::Retry => Action::Retry,
        }
    }
}

/// Why the policy's answer could not be used. The class goes on the wire; details go to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The entrypoint evaluated to undefined.
    Undefined,
    /// The entrypoint's value is not `{"action": ..., "reason"?: string}`.
    InvalidDecision,
    /// Evaluation raised an error.
    EvalError,
    /// Evaluation ran past its time budget, or the request past its deadline.
    Timeout,
    /// Evaluation panicked.
    Panic,
    /// Too many evaluations are already queued.
    Overloaded,
    /// The durable decision log could not record the decision.
    DecisionLog,
    /// The `requestId` was seen before with a different payload.
    RequestIdReuse,
    /// The `txId` was first decided moving something else (whatever the `requestId`).
    TxIdReuse,
    /// The transaction ended in Fireblocks (failed, cancelled…) and its records were released.
    TxEnded,
    /// The state store could not be read or written, or kept changing under the decision.
    State,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Undefined => "undefined",
            FailureClass::InvalidDecision => "invalid_decision",
            FailureClass::EvalError => "eval_error",
            FailureClass::Timeout => "timeout",
            FailureClass::Panic => "panic",
            FailureClass::Overloaded => "overloaded",
            FailureClass::DecisionLog => "decision_log",
            FailureClass::RequestIdReuse => "request_id_reuse",
            FailureClass::TxIdReuse => "tx_id_reuse",
            FailureClass::TxEnded => "tx_ended",
            FailureClass::State => "state",
        }
    }
}

/// Where a decision came from: the policy itself, or the fallback after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Policy,
    Fallback(FailureClass),
    /// A hold overrode the policy: an APPROVE while approvers have not released the transaction,
    /// or a request that is not the one held.
    Hold,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Policy => f.write_str("policy"),
            Source::Fallback(class) => write!(f, "fallback:{}", class.as_str()),
            Source::Hold => f.write_str("hold"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub reason: Option<String>,
    pub source: Source,
    /// What to record if the answer that leaves is APPROVE (`velocity.*` limits).
    pub records: Vec<Record>,
    /// A RETRY that holds the transaction for this many approvers' sign-off.
    pub hold: Option<u32>,
}

/// The shape a policy must return; anything else is an invalid decision.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDecision {
    action: Action,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    record: Vec<PolicyRecord>,
    hold: Option<PolicyHold>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyHold {
    approvals: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyRecord {
    key: String,
    amount: String,
}

impl PolicyRecord {
    fn parse(self) -> Result<Record, String> {
        if self.key.is_empty() || self.key.len() > MAX_KEY_BYTES {
            return Err(format!("record key must be 1 to {} bytes", MAX_KEY_BYTES));
        }
        let amount = Amount::parse(&self.amount)
            .ok_or_else(|| format!("record amount {:?} is not a decimal string", self.amount))?;
        Ok(Record { key: self.key, amount })
    }
}

impl Decision {
    pub fn fallback(action: FallbackAction, class: FailureClass) -> Self {
        Self {
            action: action.into(),
            reason: Some(format!("cosigner-guard fallback: {}", class.as_str())),
            source: Source::Fallback(class),
            records: Vec::new(),
            hold: None,
        }
    }

    /// The answer to a `requestId` reused with another payload: REJECT, whatever the fallback.
    pub fn request_id_reuse() -> Self {
        Self {
            action: Action::Reject,
            reason: Some("cosigner-guard: this requestId was already seen with a different payload".into()),
            source: Source::Fallback(FailureClass::RequestIdReuse),
            records: Vec::new(),
            hold: None,
        }
    }

    pub fn tx_id_reuse() -> Self {
        Self {
            action: Action::Reject,
            reason: Some(
                "cosigner-guard: this txId was first decided moving something else: one txId, one transaction".into(),
            ),
            source: Source::Fallback(FailureClass::TxIdReuse),
            records: Vec::new(),
            hold: None,
        }
    }

    /// A transaction whose records were released (it ended in Fireblocks) is never signed after:
    /// it would move an amount no limit counts any more.
    pub fn tx_ended() -> Self {
        Self {
            action: Action::Reject,
            reason: Some(
                "cosigner-guard: this transaction ended in Fireblocks and its records were released: it is not signed"
                    .into(),
            ),
            source: Source::Fallback(FailureClass::TxEnded),
            records: Vec::new(),
            hold: None,
        }
    }

    /// Parses the policy's output; never trusts the map it returns.
    pub fn from_policy_output(value: &serde_json::Value) -> Result<Self, InvalidDecision> {
        let PolicyDecision { action, reason, record, hold } =
            PolicyDecision::deserialize(value).map_err(|e| InvalidDecision(e.to_string()))?;
        if record.len() > MAX_RECORDS {
            return Err(InvalidDecision(format!("more than {MAX_RECORDS} records")));
        }
        let records = record.into_iter().map(PolicyRecord::parse).collect::<Result<_, _>>().map_err(InvalidDecision)?;
        let hold = match hold {
            None => None,
            Some(_) if action != Action::Retry => {
                return Err(InvalidDecision("only a RETRY can hold a transaction".into()));
            }
            Some(PolicyHold { approvals: 0 }) => {
                return Err(InvalidDecision("a hold needs at least 1 approval".into()));
            }
            Some(PolicyHold { approvals }) => Some(approvals),
        };
        Ok(Self { action, reason, source: Source::Policy, records, hold })
    }

    /// The `rejectionReason` sent on the wire: the reason of any decision other than APPROVE.
    pub fn rejection_reason(&self) -> Option<&str> {
        match self.action {
            Action::Approve => None,
            _ => self.reason.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_output_must_be_exactly_a_decision() {
        let cases = [
            (json!({"action": "APPROVE"}), true, "action alone"),
            (json!({"action": "REJECT", "reason": "too big"}), true, "action and reason"),
            (json!({"action": "approve"}), false, "lowercase action"),
            (json!({"action": "ALLOW"}), false, "unknown action"),
            (json!({"action": "REJECT", "reson": "typo"}), false, "unknown key"),
            (json!({"action": "REJECT", "reason": 5}), false, "reason not a string"),
            (json!("APPROVE"), false, "bare string"),
            (json!(true), false, "boolean"),
            (json!({}), false, "empty object"),
            (json!({"action": "APPROVE", "record": [{"key": "k", "amount": "12.5"}]}), true, "a record"),
            (json!({"action": "APPROVE", "record": [{"key": "k", "amount": 12.5}]}), false, "a number amount"),
            (json!({"action": "APPROVE", "record": [{"key": "k", "amount": "-1"}]}), false, "a negative amount"),
            (json!({"action": "APPROVE", "record": [{"key": "", "amount": "1"}]}), false, "an empty key"),
            (json!({"action": "APPROVE", "record": [{"key": "k", "amount": "1", "at": 5}]}), false, "unknown key"),
            (json!({"action": "RETRY", "hold": {"approvals": 2}}), true, "a hold"),
            (json!({"action": "APPROVE", "hold": {"approvals": 2}}), false, "a hold that is not a RETRY"),
            (json!({"action": "RETRY", "hold": {"approvals": 0}}), false, "a hold nobody needs to approve"),
            (json!({"action": "RETRY", "hold": {"approval": 2}}), false, "a misspelt hold"),
        ];
        for (value, ok, msg) in cases {
            assert_eq!(Decision::from_policy_output(&value).is_ok(), ok, "{msg}");
        }
    }

    #[test]
    fn fallback_config_cannot_name_approve_or_ignore() {
        for bad in ["\"APPROVE\"", "\"IGNORE\""] {
            assert!(serde_json::from_str::<FallbackAction>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn approve_never_carries_a_rejection_reason() {
        let d = Decision {
            action: Action::Approve,
            reason: Some("ok".into()),
            source: Source::Policy,
            records: vec![],
            hold: None,
        };
        assert_eq!(d.rejection_reason(), None);
    }
}
