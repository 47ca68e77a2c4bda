//! The Co-signer endpoints of each enabled mode, and the one place where outcomes become HTTP.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use crate::envelope::Mode;
use crate::pipeline::{Pipeline, Refusal};
use crate::request::RequestKind;

struct Endpoint {
    pipeline: Arc<Pipeline>,
    max_body_bytes: usize,
}

/// Routes `{prefix}/v2/{endpoint}` for jwt and `{prefix}/{endpoint}` for json, only for enabled modes.
pub fn router(pipeline: Arc<Pipeline>, modes: &[Mode], prefix: &str, max_body_bytes: usize) -> Router {
    let state = Arc::new(Endpoint { pipeline, max_body_bytes });
    let mut router = Router::new();
    for &mode in modes {
        for kind in RequestKind::ALL {
            let path = format!("{prefix}{}/{}", mode.path_prefix(), kind.endpoint());
            router = router.route(
                &path,
                post(move |State(state): State<Arc<Endpoint>>, request: Request| answer(state, mode, kind, request)),
            );
        }
    }
    router.fallback(not_found).with_state(state)
}

async fn answer(state: Arc<Endpoint>, mode: Mode, kind: RequestKind, request: Request) -> Response {
    let started = Instant::now();
    let received_at = chrono::Utc::now();
    let outcome = match read_body(request, state.max_body_bytes).await {
        Ok(body) => state.pipeline.decide(mode, kind, &body, received_at).await,
        Err(refusal) => Err(refusal),
    };
    let latency_us = started.elapsed().as_micros() as u64;
    match outcome {
        Ok(decided) => {
            tracing::info!(
                kind = kind.as_str(),
                mode = mode.as_str(),
                request_id = %decided.request_id,
                tx_id = decided.tx_id.as_deref(),
                cosigner_key = decided.cosigner_key.as_deref(),
                action = decided.decision.action.as_str(),
                reason = decided.decision.reason.as_deref(),
                source = %decided.decision.source,
                policy_revision = %decided.policy_revision,
                latency_us,
                "decision"
            );
            ([(header::CONTENT_TYPE, decided.sealed.content_type)], decided.sealed.body).into_response()
        }
        Err(refusal) => {
            tracing::warn!(kind = kind.as_str(), mode = mode.as_str(), class = refusal.code(), error = %refusal, latency_us, "request refused");
            refusal.into_response()
        }
    }
}

/// Reads the raw body whatever the Content-Type, refusing at once what cannot fit the limit.
async fn read_body(request: Request, limit: usize) -> Result<axum::body::Bytes, Refusal> {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Refusal::BodyTooLarge(limit));
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Refusal::BodyTooLarge(limit)),
        Err(_) => Err(Refusal::BodyUnreadable),
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match &self {
            Refusal::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyUnreadable | Refusal::Request(_) => StatusCode::BAD_REQUEST,
            Refusal::Envelope(e) if e.is_authentication_failure() => StatusCode::UNAUTHORIZED,
            Refusal::Envelope(_) => StatusCode::BAD_REQUEST,
            Refusal::Seal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // 5xx bodies say nothing internal; the log has the details.
        let message = if status.is_server_error() { "internal error".to_string() } else { self.to_string() };
        (status, axum::Json(json!({"error": self.code(), "message": message}))).into_response()
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({"error": "not_found", "message": "no such endpoint"}))).into_response()
}
