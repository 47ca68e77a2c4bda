//! The decision path for one request, as small steps in order:
//! body → [`Pipeline::open`] (envelope, Co-signer request) → [`Pipeline::decide`] (request-id
//! guard, input document with the transaction's hold, read state → evaluate → hold gate →
//! commit → hold creation) → [`Pipeline::seal`] (the answer for the wire). The server composes the steps with the decision log (and [`Pipeline::withdraw`]
//! when the log refuses an approval) and the metrics.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::audit::records::StateTrace;
use crate::decision::{Action, Decision, FailureClass};
use crate::envelope::{self, Answer, EnvelopeError, Mode, SealError, Sealed};
use crate::holds::{self, Hold, HoldSettings, HoldTrace, Holds};
use crate::keys::{CosignerKeyring, HandlerKey};
use crate::origin::{Binding, Origin, OriginView};
use crate::policy::{Evaluation, Evaluator, Ledger, PolicyStore, RequestContext, VelocityRead, input_document};
use crate::request::{CosignerRequest, RequestError, RequestKind};
use crate::state::{Commit, Committed, Seen, StateError, StateStore};
use crate::transfer::Transfer;

/// A decision whose reads keep changing under it this many times falls back (RETRY by default:
/// the Co-signer asks again later). Each round commits at least one competing decision, so this
/// is only reached by more than this many concurrent requests on one key.
const MAX_EVALUATIONS: u32 = 64;

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

/// The outcome of a decision, with what the decision log records of it.
#[derive(Debug)]
pub struct Decided {
    pub decision: Decision,
    pub policy_revision: String,
    /// The input document the policy saw.
    pub input: Value,
    /// What the policy printed.
    pub prints: Vec<String>,
    pub eval_seconds: f64,
    pub state: StateTrace,
    /// The transaction's hold, as this decision left it.
    pub hold: Option<HoldTrace>,
    /// The hold this decision created, for the notifier.
    pub created_hold: Option<Hold>,
}

/// The input document as the policy saw it: `context.origin.reused` is read at evaluation.
fn log_reuse(input: &mut Value, binding: Option<&Binding>, reads: &[crate::policy::VelocityRead]) {
    if let Some(reused) = binding.and_then(|binding| crate::policy::velocity::reused(binding, reads)) {
        input["context"]["origin"]["reused"] = Value::Bool(reused);
    }
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
    Ok((request, RequestContext { received_at, mode, cosigner_key: opened.cosigner_key, origin: None }))
}

/// What settling a decision needs besides its evaluation.
struct Settling<'a> {
    kind: RequestKind,
    input: &'a regorus::Value,
    hold: Option<&'a Hold>,
    digest: &'a str,
    conflicts: &'a [String],
    binding: Option<&'a Binding>,
    now: DateTime<Utc>,
    at_us: u64,
    deadline: Instant,
}

pub struct Pipeline {
    keyring: CosignerKeyring,
    handler_key: Option<Arc<HandlerKey>>,
    policy: Arc<PolicyStore>,
    evaluator: Arc<Evaluator>,
    state: Arc<StateStore>,
    holds: Holds,
    origin: Option<Arc<Origin>>,
    /// Keep every handler builtin call of each decision (`test --export-decisions`).
    record_calls: bool,
}

impl Pipeline {
    pub fn new(
        keyring: CosignerKeyring,
        handler_key: Option<Arc<HandlerKey>>,
        policy: Arc<PolicyStore>,
        evaluator: Arc<Evaluator>,
        state: Arc<StateStore>,
        holds: HoldSettings,
    ) -> Self {
        let holds = Holds::new(state.clone(), holds);
        Self { keyring, handler_key, policy, evaluator, state, holds, origin: None, record_calls: false }
    }

    /// Every decision keeps its handler builtin calls in its trace (`StateTrace::calls`).
    pub fn recording_calls(mut self) -> Self {
        self.record_calls = true;
        self
    }

    /// Transaction requests are inspected for an origin token signed by these backends.
    pub fn with_origin(mut self, origin: Option<Arc<Origin>>) -> Self {
        self.origin = origin;
        self
    }

    pub fn holds(&self) -> &Holds {
        &self.holds
    }

    pub fn policy(&self) -> &Arc<PolicyStore> {
        &self.policy
    }

    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    pub fn keyring(&self) -> &CosignerKeyring {
        &self.keyring
    }

    pub fn handler_key(&self) -> Option<&HandlerKey> {
        self.handler_key.as_deref()
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

    /// Decides a request: the request-id guard, then evaluation against the active snapshot with
    /// the transaction's hold in its input and the state store's reads, then the hold's gate, then
    /// — for an approval — the atomic commit of its records, again from the evaluation when a
    /// concurrent decision changed what it read, and last the hold a RETRY asks for. Never fails:
    /// every failure becomes the fallback. Gives up at `deadline`. (Longer than most: the steps of
    /// the decision path, read top to bottom in the order a request takes them.)
    pub async fn decide(&self, request: CosignerRequest, context: &RequestContext, deadline: Instant) -> Decided {
        let kind = request.kind;
        let now = context.received_at;
        let at_us = now.timestamp_micros().max(0) as u64;
        let mut trace = StateTrace { id: request.ledger_id().to_string(), ..StateTrace::default() };
        let (transfer, identity) = self.identify(&request);
        let origin = self.origin_of(&request, context, transfer.as_ref());
        let binding = origin.as_ref().and_then(OriginView::binding);
        let digest = crate::identity::digest_of(&identity);
        let digest_hex = crate::keys::hex(&digest);
        let request_id = request.request_id.clone();
        let tx_id = (kind == RequestKind::Transaction).then(|| request.tx_id().map(str::to_owned)).flatten();
        let conflicts = transfer.as_ref().map_or(&[][..], |t| t.conflicts.as_slice());
        let started = Instant::now();
        let done = |decision, policy_revision, input, prints, trace, hold: Option<(Hold, bool)>| Decided {
            decision,
            policy_revision,
            input,
            prints,
            eval_seconds: started.elapsed().as_secs_f64(),
            state: trace,
            hold: hold.as_ref().map(|(hold, created)| HoldTrace::of(hold, now, *created)),
            created_hold: hold.and_then(|(hold, created)| created.then_some(hold)),
        };
        // The guard's write, the hold's lookup and the first evaluation overlap; nothing is
        // committed before the guard answers. Most transactions have no hold, so the first
        // evaluation does not wait for its lookup (a round trip on Redis): with a hold, the input
        // gets its view and is evaluated again (evaluations have no side effect).
        let evaluate = |input: &Value| {
            let policy_input = regorus::Value::deserialize(input);
            async {
                let policy_input = policy_input?;
                let evaluated =
                    self.evaluate_once(kind, &policy_input, &trace.id, binding.as_ref(), now, deadline).await;
                Ok::<_, serde_json::Error>((policy_input, evaluated))
            }
        };
        let (seen, (hold, input, first)) =
            tokio::join!(self.state.remember(&request_id, tx_id.as_deref(), digest, at_us), async {
                let mut input =
                    input_document(kind, request.payload, context, transfer.as_ref(), origin.as_ref(), None);
                let (hold, mut first) = tokio::join!(self.holds.get(&trace.id), evaluate(&input));
                if let Ok(Some(hold)) = &hold {
                    input["context"]["hold"] = hold.view(now);
                    first = evaluate(&input).await;
                }
                (hold, input, first)
            });
        let (policy_input, (mut evaluation, mut policy_revision)) = match first {
            Ok(first) => first,
            Err(e) => {
                tracing::error!(error = %e, "input document could not be converted for the policy engine");
                let revision = self.policy.active().revision.clone();
                return done(self.fallback(FailureClass::EvalError), revision, input, Vec::new(), trace, None);
            }
        };
        let hold = match hold {
            Ok(hold) => hold,
            Err(error) => {
                tracing::error!(%error, "the transaction's hold could not be read");
                return done(self.fallback(FailureClass::State), policy_revision, input, Vec::new(), trace, None);
            }
        };
        trace.evaluations = 1;
        let (decision, prints) = match self.guard_refusal(&seen, &request_id, tx_id.as_deref()) {
            Some(refusal) => {
                trace.reads = evaluation.ledger.as_ref().map(|l| l.reads().to_vec()).unwrap_or_default();
                trace.calls = evaluation.ledger.as_ref().map(|l| l.calls().to_vec()).unwrap_or_default();
                (refusal, std::mem::take(&mut evaluation.prints))
            }
            None => {
                let settling = Settling {
                    kind,
                    input: &policy_input,
                    hold: hold.as_ref(),
                    digest: &digest_hex,
                    conflicts,
                    binding: binding.as_ref(),
                    now,
                    at_us,
                    deadline,
                };
                self.settle(settling, evaluation, &mut policy_revision, &mut trace).await
            }
        };
        // What the approvers are shown: computed only when a hold is created.
        let summary = || {
            let empty = serde_json::Map::new();
            let payload = input["request"].as_object().unwrap_or(&empty);
            holds::summary(kind, identity, payload, input["context"].get("transfer"))
        };
        let (decision, hold) = self.hold_if_asked(decision, hold, &trace.id, &digest_hex, summary, now).await;
        let mut input = input;
        log_reuse(&mut input, binding.as_ref(), &trace.reads);
        done(decision, policy_revision, input, prints, trace, hold)
    }

    /// The answer when the request-id guard or the txId binding refuses the request.
    fn guard_refusal(
        &self,
        seen: &Result<Seen, StateError>,
        request_id: &str,
        tx_id: Option<&str>,
    ) -> Option<Decision> {
        match seen {
            Err(error) => {
                tracing::error!(%error, "the request-id guard could not use the state store");
                Some(self.fallback(FailureClass::State))
            }
            Ok(Seen::Different) => {
                tracing::error!(
                    request_id,
                    "requestId reused with a different payload: replayed or forged request refused"
                );
                Some(Decision::request_id_reuse())
            }
            Ok(Seen::TxIdReused) => {
                tracing::error!(
                    request_id,
                    tx_id,
                    "txId reused for another transaction: refused whatever its requestId"
                );
                Some(Decision::tx_id_reuse())
            }
            Ok(Seen::TxEnded) => {
                tracing::error!(request_id, tx_id, "a transaction whose records were released asks again: refused");
                Some(Decision::tx_ended())
            }
            Ok(Seen::First | Seen::Same) => None,
        }
    }

    /// The hold's gate, then — for an approval — the atomic commit of its records (for another
    /// decision that read the replica's copy of the state, a check of what it read), evaluated
    /// again while concurrent decisions change what it read. Returns the decision and what the
    /// policy printed; `revision` and `trace` follow the evaluation that decided.
    async fn settle(
        &self,
        at: Settling<'_>,
        mut evaluation: Evaluation,
        revision: &mut String,
        trace: &mut StateTrace,
    ) -> (Decision, Vec<String>) {
        loop {
            let prints = std::mem::take(&mut evaluation.prints);
            let reads = evaluation.ledger.as_ref().map(Ledger::versions).unwrap_or_default();
            trace.reads = evaluation.ledger.as_ref().map(|l| l.reads().to_vec()).unwrap_or_default();
            trace.calls = evaluation.ledger.as_ref().map(|l| l.calls().to_vec()).unwrap_or_default();
            trace.copied = evaluation.ledger.as_ref().is_some_and(Ledger::read_copy);
            // Before the commit: an approval the hold turns into RETRY or REJECT records nothing.
            let mut decision = holds::gate(at.hold, at.digest, at.conflicts, evaluation.decision, at.now);
            // An approval with an origin token no other transaction used binds the token to this one.
            if decision.action == Action::Approve
                && let Some(binding) = evaluation.ledger.as_ref().and_then(Ledger::unused_binding)
            {
                decision.records.push(crate::decision::Record { key: binding.key.clone(), amount: Default::default() });
            }
            // An approval is committed, which checks what it read; a decision that commits
            // nothing but read the replica's copy has the copy checked instead.
            let stands = if decision.action == Action::Approve && !(reads.is_empty() && decision.records.is_empty()) {
                let commit = Commit { id: trace.id.clone(), at_us: at.at_us, reads, records: decision.records.clone() };
                self.state.commit(commit).await.map(|committed| match committed {
                    Committed::Applied { new } => {
                        trace.records = decision.records.clone();
                        trace.new = new;
                        true
                    }
                    Committed::Conflict => false,
                })
            } else if trace.copied {
                self.state.unchanged(&reads).await
            } else {
                Ok(true)
            };
            match stands {
                Ok(true) => return (decision, prints),
                Ok(false) if trace.evaluations < MAX_EVALUATIONS => {
                    (evaluation, *revision) =
                        self.evaluate_once(at.kind, at.input, &trace.id, at.binding, at.now, at.deadline).await;
                    trace.evaluations += 1;
                }
                Ok(false) => {
                    tracing::error!(evaluations = trace.evaluations, "the keys this decision reads kept changing");
                    return (self.fallback(FailureClass::State), prints);
                }
                Err(error) => {
                    tracing::error!(%error, "the state store could not record or check this decision");
                    return (self.fallback(FailureClass::State), prints);
                }
            }
        }
    }

    /// Creates the hold a RETRY asks for, unless the transaction has one; returns the decision
    /// (the `state` fallback if the hold cannot be kept) and the transaction's hold.
    async fn hold_if_asked(
        &self,
        decision: Decision,
        existing: Option<Hold>,
        id: &str,
        digest: &str,
        summary: impl FnOnce() -> Value,
        now: DateTime<Utc>,
    ) -> (Decision, Option<(Hold, bool)>) {
        let required = match (decision.hold, existing) {
            (Some(required), None) if decision.action == Action::Retry => required,
            (_, existing) => return (decision, existing.map(|hold| (hold, false))),
        };
        match self.holds.create(id, digest, required, decision.reason.clone(), summary(), now).await {
            Ok((hold, created)) => {
                let approvers = self.holds.settings().approvers.len();
                if created && approvers < required as usize {
                    tracing::warn!(
                        hold = id,
                        required,
                        approvers,
                        "a hold needs more approvals than [holds.approvers] has approvers: it can only expire"
                    );
                }
                (decision, Some((hold, created)))
            }
            Err(error) => {
                tracing::error!(%error, "the hold could not be created");
                (self.fallback(FailureClass::State), None)
            }
        }
    }

    /// A transaction's canonical view (read with the active set's asset table), and the request's
    /// identity: what the request-id guard, the txId binding and a hold bind.
    fn identify(&self, request: &CosignerRequest) -> (Option<Transfer>, Value) {
        match request.kind {
            RequestKind::Transaction => {
                let transfer = Transfer::derive(&request.payload, &self.policy.active().assets);
                let identity = transfer.identity();
                (Some(transfer), identity)
            }
            RequestKind::ConfigChange => (None, crate::identity::identity(request.kind, &request.payload)),
        }
    }

    /// The origin view of a transaction request: the one its context brings (replay, fixtures),
    /// else the token inspected when `[origin]` is configured.
    fn origin_of(
        &self,
        request: &CosignerRequest,
        context: &RequestContext,
        transfer: Option<&Transfer>,
    ) -> Option<OriginView> {
        let transfer = transfer?;
        context
            .origin
            .clone()
            .or_else(|| Some(self.origin.as_ref()?.inspect(&request.payload, transfer, context.received_at)))
    }

    /// One evaluation against the active snapshot, its state reads served by a fresh ledger.
    async fn evaluate_once(
        &self,
        kind: RequestKind,
        input: &regorus::Value,
        id: &str,
        binding: Option<&Binding>,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> (Evaluation, String) {
        let ledger =
            Ledger::new(self.state.clone(), id, now).with_binding(binding.cloned()).recording_calls(self.record_calls);
        self.evaluate_with(kind, input.clone(), ledger, deadline).await
    }

    async fn evaluate_with(
        &self,
        kind: RequestKind,
        input: regorus::Value,
        ledger: Ledger,
        deadline: Instant,
    ) -> (Evaluation, String) {
        let snapshot = self.policy.active();
        let revision = snapshot.revision.clone();
        (self.evaluator.decide(snapshot, kind, input, deadline, Some(ledger)).await, revision)
    }

    /// Decides a request again as it was first decided, without a side effect: the policy sees
    /// the `recorded` state reads (then `live`, read-only, for any other) and the `hold` the
    /// request saw, and the hold's gate applies; nothing is remembered, committed or held.
    /// Replay, shadow evaluation and fixtures made from a record use it.
    pub async fn redecide(
        &self,
        request: CosignerRequest,
        context: &RequestContext,
        hold: Option<&Hold>,
        recorded: Vec<VelocityRead>,
        live: Option<Arc<StateStore>>,
        deadline: Instant,
    ) -> Decided {
        let started = Instant::now();
        let (kind, now) = (request.kind, context.received_at);
        let (transfer, identity) = self.identify(&request);
        let origin = self.origin_of(&request, context, transfer.as_ref());
        let digest = crate::keys::hex(&crate::identity::digest_of(&identity));
        let id = request.ledger_id().to_string();
        let view = hold.map(|h| h.view(now));
        let input = input_document(kind, request.payload, context, transfer.as_ref(), origin.as_ref(), view);
        let mut trace = StateTrace { id, evaluations: 1, ..StateTrace::default() };
        let (decision, revision, prints) = match regorus::Value::deserialize(&input) {
            Ok(policy_input) => {
                let binding = origin.as_ref().and_then(OriginView::binding);
                let ledger = Ledger::recorded(recorded, live, &trace.id, now)
                    .with_binding(binding)
                    .recording_calls(self.record_calls);
                let (evaluation, revision) = self.evaluate_with(kind, policy_input, ledger, deadline).await;
                if let Some(ledger) = &evaluation.ledger {
                    trace.reads = ledger.reads().to_vec();
                    trace.calls = ledger.calls().to_vec();
                    trace.unrecorded = ledger.read_unrecorded();
                }
                let conflicts = transfer.as_ref().map_or(&[][..], |t| t.conflicts.as_slice());
                (holds::gate(hold, &digest, conflicts, evaluation.decision, now), revision, evaluation.prints)
            }
            Err(e) => {
                tracing::error!(error = %e, "input document could not be converted for the policy engine");
                (self.fallback(FailureClass::EvalError), self.policy.active().revision.clone(), Vec::new())
            }
        };
        let mut input = input;
        log_reuse(&mut input, origin.as_ref().and_then(OriginView::binding).as_ref(), &trace.reads);
        Decided {
            decision,
            policy_revision: revision,
            input,
            prints,
            eval_seconds: started.elapsed().as_secs_f64(),
            state: trace,
            hold: hold.map(|hold| HoldTrace::of(hold, now, false)),
            created_hold: None,
        }
    }

    /// Takes back what `decided` recorded: its approval did not leave (the durable log refused it).
    pub async fn withdraw(&self, decided: &Decided) {
        let trace = &decided.state;
        if let Err(error) = self.state.revert(&trace.id, &trace.records, &trace.new).await {
            // Counted, never under-counted: the limit stays consumed until the events expire.
            tracing::error!(%error, "records of an answer that did not leave could not be taken back");
        }
    }

    /// The decision for a failure outside evaluation.
    pub fn fallback(&self, class: FailureClass) -> Decision {
        self.evaluator.fallback(class)
    }

    /// Encodes the answer for the wire: signed in jwt mode.
    pub fn seal(&self, mode: Mode, request_id: &str, decision: &Decision) -> Result<Sealed, Refusal> {
        Ok(envelope::seal(mode, &Answer::new(request_id, decision), self.handler_key.as_deref())?)
    }
}
