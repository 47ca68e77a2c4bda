//! The Co-signer endpoints of each enabled mode: the pipeline's steps composed with the decision
//! log and the metrics, and the one place where outcomes become HTTP.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::audit::records::{Answered, DecisionRecord, Logged, LoggedState, RefusalRecord};
use crate::audit::{DecisionLog, LogError};
use crate::decision::FailureClass;
use crate::envelope::Mode;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::pipeline::{Pipeline, Refusal};
use crate::request::RequestKind;
use crate::shadow::Shadow;

/// Bounds on one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// For the body to arrive.
    pub read_timeout: Duration,
    /// For the whole decision, from receipt to answer (the Co-signer gives up at 30 s).
    pub request_timeout: Duration,
}

pub struct Callback {
    pub pipeline: Arc<Pipeline>,
    /// Decides each decided request again with a candidate set, after the answer.
    pub shadow: Option<Arc<Shadow>>,
    pub log: Arc<DecisionLog>,
    pub metrics: Arc<Metrics>,
    /// Tells the hold webhook about holds decisions create.
    pub notifier: Notifier,
    pub limits: Limits,
    /// Requests past this many at once are shed with 503 instead of queueing without bound.
    pub in_flight: Semaphore,
}

/// Routes `{prefix}/v2/{endpoint}` for jwt and `{prefix}/{endpoint}` for json, only for enabled modes.
pub fn router(callback: Arc<Callback>, modes: &[Mode], prefix: &str) -> Router {
    let mut router = Router::new();
    for &mode in modes {
        for kind in RequestKind::ALL {
            let path = format!("{prefix}{}/{}", mode.path_prefix(), kind.endpoint());
            router = router.route(
                &path,
                post(move |State(callback): State<Arc<Callback>>, request: Request| async move {
                    let decision_id = uuid::Uuid::now_v7().to_string();
                    let span = tracing::info_span!("request", %decision_id, kind = kind.as_str(), mode = mode.as_str());
                    callback.answer(decision_id, mode, kind, request).instrument(span).await
                }),
            );
        }
    }
    router.fallback(not_found).with_state(callback)
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Callback {
    async fn answer(&self, decision_id: String, mode: Mode, kind: RequestKind, request: Request) -> Response {
        let started = Instant::now();
        let received_at = Utc::now();
        let _in_flight = self.metrics.in_flight();
        match self.decide(&decision_id, mode, kind, request, received_at, started).await {
            Ok(response) => response,
            Err(refusal) => {
                let latency_us = started.elapsed().as_micros() as u64;
                let class = refusal.code();
                tracing::warn!(class, error = %refusal, latency_us, "request refused");
                self.metrics.refused(class, started.elapsed().as_secs_f64());
                let record = RefusalRecord {
                    decision_id: &decision_id,
                    timestamp: timestamp(received_at),
                    kind: kind.as_str(),
                    mode: mode.as_str(),
                    refused: class,
                    error: refusal.to_string(),
                    status: status_of(&refusal).as_u16(),
                    latency_us,
                };
                if let Err(error) = self.log.append(&record).await {
                    self.log_failed(&error);
                }
                refusal.into_response()
            }
        }
    }

    async fn decide(
        &self,
        decision_id: &str,
        mode: Mode,
        kind: RequestKind,
        request: Request,
        received_at: DateTime<Utc>,
        started: Instant,
    ) -> Result<Response, Refusal> {
        let deadline = started + self.limits.request_timeout;
        let _permit = self.in_flight.try_acquire().map_err(|_| Refusal::Overloaded)?;
        let body = tokio::time::timeout(self.limits.read_timeout, read_body(request, self.limits.max_body_bytes))
            .await
            .map_err(|_| Refusal::BodyTimeout)??;

        let (request, context) = self.pipeline.open(mode, kind, &body, received_at)?;
        let request_id = request.request_id.clone();
        let tx_id = request.tx_id().map(str::to_owned);
        let signer_id = request.signer_id().map(str::to_owned);
        let evaluated = self.pipeline.decide(request, &context, deadline).await;
        self.metrics.evaluated(evaluated.eval_seconds, evaluated.state.evaluations);
        let mut decision = evaluated.decision.clone();
        let mut sealed = self.pipeline.seal(mode, &request_id, &decision)?;
        let latency_us = started.elapsed().as_micros() as u64;

        let input = if self.log.needs_redaction() {
            let mut input = evaluated.input.clone();
            self.log.redact(&mut input);
            Cow::Owned(input)
        } else {
            Cow::Borrowed(&evaluated.input)
        };
        let record = DecisionRecord {
            decision_id,
            timestamp: timestamp(received_at),
            kind: kind.as_str(),
            mode: mode.as_str(),
            request_id: &request_id,
            tx_id: tx_id.as_deref(),
            signer_id: signer_id.as_deref(),
            cosigner_key: context.cosigner_key.as_deref(),
            action: decision.action.as_str(),
            reason: decision.reason.as_deref(),
            source: decision.source.to_string(),
            policy_revision: &evaluated.policy_revision,
            latency_us,
            input,
            state: &evaluated.state,
            hold: evaluated.hold.as_ref(),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let logged = tokio::time::timeout(remaining, self.log.append(&record))
            .await
            .unwrap_or_else(|_| Err(LogError::Write("timed out before the request deadline".into())));
        if let Err(error) = logged {
            self.log_failed(&error);
            if self.log.is_durable() {
                // Never answer off the record: a decision that is not on disk becomes the fallback.
                decision = self.pipeline.fallback(FailureClass::DecisionLog);
                sealed = self.pipeline.seal(mode, &request_id, &decision)?;
                self.pipeline.withdraw(&evaluated).await;
            }
        }

        if let Some(hold) = &evaluated.created_hold {
            self.notifier.hold_event("hold_created", hold);
        }
        if let Some(shadow) = &self.shadow {
            shadow.offer(Logged {
                decision_id: decision_id.to_string(),
                request_id: request_id.clone(),
                kind,
                answered: Answered::from(&decision),
                source: decision.source.to_string(),
                state: LoggedState { reads: evaluated.state.reads },
                input: evaluated.input,
            });
        }
        self.metrics.decided(kind, &decision, started.elapsed().as_secs_f64());
        tracing::info!(
            request_id,
            tx_id,
            cosigner_key = context.cosigner_key.as_deref(),
            action = decision.action.as_str(),
            reason = decision.reason.as_deref(),
            source = %decision.source,
            policy_revision = %evaluated.policy_revision,
            latency_us,
            "decision"
        );
        Ok(([(header::CONTENT_TYPE, sealed.content_type)], sealed.body).into_response())
    }

    fn log_failed(&self, error: &LogError) {
        // Write failures are counted by the writer itself, once per failed batch.
        if !matches!(error, LogError::Write(_)) {
            self.metrics.log_error();
        }
        tracing::error!(%error, "decision not recorded");
    }
}

/// Reads the raw body whatever the Content-Type, refusing at once what cannot fit the limit.
async fn read_body(request: Request, limit: usize) -> Result<axum::body::Bytes, Refusal> {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut body = request.into_body();
    if declared.is_some_and(|len| len > limit as u64) {
        linger(body);
        return Err(Refusal::BodyTooLarge(limit));
    }
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| Refusal::BodyUnreadable)?.into_data() else { continue };
        if bytes.len() + data.len() > limit {
            linger(body);
            return Err(Refusal::BodyTooLarge(limit));
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes.into())
}

/// What an oversized request may still send after its 413, read and discarded — like nginx's
/// lingering close: a connection closed while the client is sending is reset, and a plain client
/// (one that sends its whole body before reading) sees the reset, never the 413.
const LINGER_BYTES: usize = 16 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(5);

/// Drains `body` in the background, up to [`LINGER_BYTES`] or [`LINGER_TIME`]; the 413 leaves first.
fn linger(mut body: axum::body::Body) {
    tokio::spawn(tokio::time::timeout(LINGER_TIME, async move {
        let mut left = LINGER_BYTES;
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else { continue };
            match left.checked_sub(data.len()) {
                Some(rest) => left = rest,
                None => return,
            }
        }
    }));
}

/// The one place a refusal gets its HTTP status.
fn status_of(refusal: &Refusal) -> StatusCode {
    match refusal {
        Refusal::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        Refusal::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::BodyUnreadable | Refusal::Request(_) => StatusCode::BAD_REQUEST,
        Refusal::Envelope(e) if e.is_authentication_failure() => StatusCode::UNAUTHORIZED,
        Refusal::Envelope(_) => StatusCode::BAD_REQUEST,
        Refusal::Seal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        // A 500 body says nothing internal; the log has the details.
        let message =
            if status == StatusCode::INTERNAL_SERVER_ERROR { "internal error".to_string() } else { self.to_string() };
        (status, axum::Json(json!({"error": self.code(), "message": message}))).into_response()
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({"error": "not_found", "message": "no such endpoint"}))).into_response()
}
