//! The Co-signer endpoints of each enabled mode: the body read within its limits, handed to the
//! [`Answerer`], and the one place where outcomes become HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use http_body_util::BodyExt;
use serde_json::json;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::answer::{Answerer, Exchange};
use crate::envelope::{Mode, Sealed};
use crate::pipeline::Refusal;
use crate::request::RequestKind;

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
    pub answerer: Answerer,
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

impl Callback {
    async fn answer(&self, decision_id: String, mode: Mode, kind: RequestKind, request: Request) -> Response {
        let started = Instant::now();
        let at = Exchange {
            decision_id: &decision_id,
            mode,
            kind,
            received_at: Utc::now(),
            started,
            deadline: started + self.limits.request_timeout,
        };
        let _in_flight = self.answerer.metrics.in_flight();
        match self.decide(&at, request).await {
            Ok(sealed) => ([(header::CONTENT_TYPE, sealed.content_type)], sealed.body).into_response(),
            Err(refusal) => {
                self.answerer.refused(&at, &refusal, status_of(&refusal).as_u16()).await;
                refusal.into_response()
            }
        }
    }

    async fn decide(&self, at: &Exchange<'_>, request: Request) -> Result<Sealed, Refusal> {
        let _permit = self.in_flight.try_acquire().map_err(|_| Refusal::Overloaded)?;
        let body = tokio::time::timeout(self.limits.read_timeout, read_body(request, self.limits.max_body_bytes))
            .await
            .map_err(|_| Refusal::BodyTimeout)??;
        self.answerer.answer(at, &body).await
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
