//! The decision path for one request, as small steps in order:
//! body → envelope → Co-signer request → input document → evaluation → decision → sealed answer.
//!
//! No side effects here beyond evaluation; logging and transport live at the edges (the server).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::decision::Decision;
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
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl Refusal {
    /// Short machine-readable class, for the error body and the logs.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BodyTooLarge(_) => "body_too_large",
            Refusal::BodyUnreadable => "body_unreadable",
            Refusal::Envelope(e) => e.code(),
            Refusal::Request(RequestError::NotAnObject) => "payload_not_object",
            Refusal::Request(RequestError::MissingRequestId) => "missing_request_id",
            Refusal::Seal(_) => "internal_error",
        }
    }
}

/// A request that reached a decision, with everything the edges need to answer and record it.
#[derive(Debug)]
pub struct Decided {
    pub request_id: String,
    pub tx_id: Option<String>,
    pub cosigner_key: Option<Arc<str>>,
    pub policy_revision: String,
    pub decision: Decision,
    pub sealed: Sealed,
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

    /// Runs one request body through the whole path.
    pub async fn decide(
        &self,
        mode: Mode,
        kind: RequestKind,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Decided, Refusal> {
        let opened = envelope::open(mode, body, &self.keyring)?;
        let request = CosignerRequest::from_payload(kind, opened.payload)?;
        let context = RequestContext { received_at, mode, cosigner_key: opened.cosigner_key };
        let request_id = request.request_id.clone();
        let tx_id = request.tx_id().map(str::to_owned);
        let (decision, policy_revision) = self.evaluate(request, &context).await;
        let sealed = envelope::seal(mode, &Answer::new(&request_id, &decision), self.handler_key.as_ref())?;
        Ok(Decided { request_id, tx_id, cosigner_key: context.cosigner_key, policy_revision, decision, sealed })
    }

    /// Decides an already decoded request against the active snapshot; returns the snapshot's revision.
    pub async fn evaluate(&self, request: CosignerRequest, context: &RequestContext) -> (Decision, String) {
        // One snapshot for the whole evaluation, whatever reloads happen meanwhile.
        let snapshot = self.policy.active();
        let revision = snapshot.revision.clone();
        let input = input_document(request.kind, request.payload, context);
        let decision = self.evaluator.decide(snapshot, request.kind, regorus::Value::from(input)).await;
        (decision, revision)
    }
}
