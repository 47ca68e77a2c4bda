//! After the body is read: the rest of a decision's life, in order — the pipeline decides, the
//! answer is sealed and recorded (a durable log that refuses the record turns the answer into the
//! fallback and takes the approval's records back), then what follows the answer: the hold
//! webhook, the shadow evaluation, the metrics and the log line. The HTTP layer only reads the
//! body and maps the outcome to a status.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::audit::records::{Answered, DecisionRecord, Logged, LoggedState, RefusalRecord};
use crate::audit::{DecisionLog, LogError};
use crate::decision::{Decision, FailureClass};
use crate::envelope::{Mode, Sealed};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::pipeline::{Decided, Pipeline, Refusal};
use crate::policy::RequestContext;
use crate::request::RequestKind;
use crate::shadow::Shadow;

/// The services a decision needs after its body has arrived.
pub struct Answerer {
    pub pipeline: Arc<Pipeline>,
    /// Decides each decided request again with a candidate set, after the answer.
    pub shadow: Option<Arc<Shadow>>,
    pub log: Arc<DecisionLog>,
    pub metrics: Arc<Metrics>,
    /// Tells the hold webhook about holds decisions create.
    pub notifier: Notifier,
}

/// The ids of a decided request, for its record and its log line.
struct Ids {
    request_id: String,
    tx_id: Option<String>,
    signer_id: Option<String>,
}

/// One request on its way to an answer: what identifies it in the log and the metrics.
pub struct Exchange<'a> {
    pub decision_id: &'a str,
    pub mode: Mode,
    pub kind: RequestKind,
    pub received_at: DateTime<Utc>,
    pub started: Instant,
    /// When the answer must have left (the Co-signer gives up at 30 s).
    pub deadline: Instant,
}

impl Answerer {
    /// Decides `body` and returns the sealed answer, recorded; a request that cannot be decided
    /// is a [`Refusal`] (see [`Answerer::refused`]).
    pub async fn answer(&self, at: &Exchange<'_>, body: &[u8]) -> Result<Sealed, Refusal> {
        let (request, context) = self.pipeline.open(at.mode, at.kind, body, at.received_at)?;
        let ids = Ids {
            request_id: request.request_id.clone(),
            tx_id: request.tx_id().map(str::to_owned),
            signer_id: request.signer_id().map(str::to_owned),
        };
        let decided = self.pipeline.decide(request, &context, at.deadline).await;
        self.metrics.evaluated(decided.eval_seconds, decided.state.evaluations, decided.state.copied);
        let (decision, sealed) = self.record(at, &ids, &context, &decided).await?;
        self.after(at, &ids, &context, decided, &decision);
        Ok(sealed)
    }

    /// Seals the answer and writes its record. A durable log that refuses the record turns the
    /// answer into the fallback, and the approval's records are taken back: nothing is answered
    /// off the record.
    async fn record(
        &self,
        at: &Exchange<'_>,
        ids: &Ids,
        context: &RequestContext,
        decided: &Decided,
    ) -> Result<(Decision, Sealed), Refusal> {
        let decision = decided.decision.clone();
        let sealed = self.pipeline.seal(at.mode, &ids.request_id, &decision)?;
        let input = if self.log.needs_redaction() {
            let mut input = decided.input.clone();
            self.log.redact(&mut input);
            Cow::Owned(input)
        } else {
            Cow::Borrowed(&decided.input)
        };
        let record = DecisionRecord {
            decision_id: at.decision_id,
            timestamp: timestamp(at.received_at),
            kind: at.kind.as_str(),
            mode: at.mode.as_str(),
            request_id: &ids.request_id,
            tx_id: ids.tx_id.as_deref(),
            signer_id: ids.signer_id.as_deref(),
            cosigner_key: context.cosigner_key.as_deref(),
            action: decision.action.as_str(),
            reason: decision.reason.as_deref(),
            source: decision.source.to_string(),
            policy_revision: &decided.policy_revision,
            latency_us: at.started.elapsed().as_micros() as u64,
            input,
            state: &decided.state,
            hold: decided.hold.as_ref(),
        };
        let remaining = at.deadline.saturating_duration_since(Instant::now());
        let logged = tokio::time::timeout(remaining, self.log.append(&record))
            .await
            .unwrap_or_else(|_| Err(LogError::Write("timed out before the request deadline".into())));
        match logged {
            Ok(()) => Ok((decision, sealed)),
            Err(error) => {
                self.log_failed(&error);
                if !self.log.is_durable() {
                    return Ok((decision, sealed));
                }
                let fallback = self.pipeline.fallback(FailureClass::DecisionLog);
                let sealed = self.pipeline.seal(at.mode, &ids.request_id, &fallback)?;
                self.pipeline.withdraw(decided).await;
                Ok((fallback, sealed))
            }
        }
    }

    /// What follows the answer: the hold webhook, the shadow evaluation, the metrics, the log line.
    fn after(&self, at: &Exchange<'_>, ids: &Ids, context: &RequestContext, decided: Decided, decision: &Decision) {
        if let Some(hold) = &decided.created_hold {
            self.notifier.hold_event("hold_created", hold);
        }
        self.metrics.decided(at.kind, decision, at.started.elapsed().as_secs_f64());
        tracing::info!(
            request_id = ids.request_id,
            tx_id = ids.tx_id,
            cosigner_key = context.cosigner_key.as_deref(),
            action = decision.action.as_str(),
            reason = decision.reason.as_deref(),
            source = %decision.source,
            policy_revision = %decided.policy_revision,
            latency_us = at.started.elapsed().as_micros() as u64,
            "decision"
        );
        if let Some(shadow) = &self.shadow {
            shadow.offer(Logged {
                decision_id: at.decision_id.to_string(),
                request_id: ids.request_id.clone(),
                kind: at.kind,
                answered: Answered::from(decision),
                source: decision.source.to_string(),
                state: LoggedState { reads: decided.state.reads },
                input: decided.input,
            });
        }
    }

    /// Records and counts a request that got no decision.
    pub async fn refused(&self, at: &Exchange<'_>, refusal: &Refusal, status: u16) {
        let latency_us = at.started.elapsed().as_micros() as u64;
        let class = refusal.code();
        tracing::warn!(class, error = %refusal, latency_us, "request refused");
        self.metrics.refused(class, at.started.elapsed().as_secs_f64());
        let record = RefusalRecord {
            decision_id: at.decision_id,
            timestamp: timestamp(at.received_at),
            kind: at.kind.as_str(),
            mode: at.mode.as_str(),
            refused: class,
            error: refusal.to_string(),
            status,
            latency_us,
        };
        if let Err(error) = self.log.append(&record).await {
            self.log_failed(&error);
        }
    }

    fn log_failed(&self, error: &LogError) {
        // Write failures are counted by the writer itself, once per failed batch.
        if !matches!(error, LogError::Write(_)) {
            self.metrics.log_error();
        }
        tracing::error!(%error, "decision not recorded");
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}
