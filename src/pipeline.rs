//! The decision path for one request, as small steps in order:
//! body → [`Pipeline::open`] (envelope, Co-signer request) → [`Pipeline::evaluate`] (input document,
//! policy, decision) → [`Pipeline::seal`] (the answer for the wire).
//!
//! No side effects here beyond evaluation: the server composes the steps with logging and metrics.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::decision::{Decision, FailureClass};
use crate::envelope::{self, Answer, EnvelopeError, Mode, SealError, Sealed};
use crate::keys::{CosignerKeyring, HandlerKey};
use crate::policy::{Evaluator, PolicyStore, RequestContext, input_document};
use crate::request::{CosignerRequest, RequestError, RequestKind};

/// Why a request got no decision. Each variant maps to exactly one HTTP status at the server.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("body could not be read")]
    BodyUnreadable,
    #[error("body was not received in time")]
    BodyTimeout,
    #[error("too many requests in flight")]
    Overloaded,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl Refusal {
    /// Short machine-readable class, for the error body, the log and the metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BodyTooLarge(_) => "body_too_large",
            Refusal::BodyUnreadable => "body_unreadable",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::Overloaded => "overloaded",
            Refusal::Envelope(e) => e.code(),
            Refusal::Request(RequestError::NotAnObject) => "payload_not_object",
            Refusal::Request(RequestError::MissingRequestId) => "missing_request_id",
            Refusal::Seal(_) => "internal_error",
        }
    }
}

/// The outcome of evaluation, with what the decision log records of it.
#[derive(Debug)]
pub struct Evaluated {
    pub decision: Decision,
    pub policy_revision: String,
    /// The input document the policy saw.
    pub input: Value,
    /// What the policy printed.
    pub prints: Vec<String>,
    pub eval_seconds: f64,
}

/// Verifies or decodes the envelope against `keyring` and extracts the Co-signer request.
pub fn open(
    mode: Mode,
    kind: RequestKind,
    body: &[u8],
    received_at: DateTime<Utc>,
    keyring: &CosignerKeyring,
) -> Result<(CosignerRequest, RequestContext), Refusal> {
    let opened = envelope::open(mode, body, keyring)?;
    let request = CosignerRequest::from_payload(kind, opened.payload)?;
    Ok((request, RequestContext { received_at, mode, cosigner_key: opened.cosigner_key }))
}

pub struct Pipeline {
    keyring: CosignerKeyring,
    handler_key: Option<HandlerKey>,
    policy: Arc<PolicyStore>,
    evaluator: Evaluator,
}

impl Pipeline {
    pub fn new(
        keyring: CosignerKeyring,
        handler_key: Option<HandlerKey>,
        policy: Arc<PolicyStore>,
        evaluator: Evaluator,
    ) -> Self {
        Self { keyring, handler_key, policy, evaluator }
    }

    pub fn policy(&self) -> &Arc<PolicyStore> {
        &self.policy
    }

    pub fn keyring(&self) -> &CosignerKeyring {
        &self.keyring
    }

    pub fn handler_key(&self) -> Option<&HandlerKey> {
        self.handler_key.as_ref()
    }

    /// Verifies or decodes the envelope and extracts the Co-signer request.
    pub fn open(
        &self,
        mode: Mode,
        kind: RequestKind,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<(CosignerRequest, RequestContext), Refusal> {
        open(mode, kind, body, received_at, &self.keyring)
    }

    /// Decides a request against the active snapshot, which it holds until the decision is made.
    /// Never fails: every failure becomes the fallback. Gives up at `deadline`.
    pub async fn evaluate(&self, request: CosignerRequest, context: &RequestContext, deadline: Instant) -> Evaluated {
        let snapshot = self.policy.active();
        let policy_revision = snapshot.revision.clone();
        let kind = request.kind;
        let input = input_document(kind, request.payload, context);
        let started = Instant::now();
        let (decision, prints) = match regorus::Value::deserialize(&input) {
            Ok(policy_input) => self.evaluator.decide(snapshot, kind, policy_input, deadline).await,
            Err(e) => {
                tracing::error!(error = %e, "input document could not be converted for the policy engine");
                (self.evaluator.fallback(FailureClass::EvalError), Vec::new())
            }
        };
        Evaluated { decision, policy_revision, input, prints, eval_seconds: started.elapsed().as_secs_f64() }
    }

    /// The decision for a failure outside evaluation.
    pub fn fallback(&self, class: FailureClass) -> Decision {
        self.evaluator.fallback(class)
    }

    /// Encodes the answer for the wire: signed in jwt mode.
    pub fn seal(&self, mode: Mode, request_id: &str, decision: &Decision) -> Result<Sealed, Refusal> {
        Ok(envelope::seal(mode, &Answer::new(request_id, decision), self.handler_key.as_ref())?)
    }
}
