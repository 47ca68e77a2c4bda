//! The state part of the admin API: `POST /state/release/{txId}` releases a transaction's records
//! by hand (a workspace without webhooks, or a webhook that never came). From a loopback peer it
//! may be unsigned; from anywhere else an approver must sign it — a release gives the
//! transaction's amount back to every limit it counted in.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::admin::AdminState;
use crate::lifecycle::ReleaseRequest;

pub fn router() -> Router<Arc<AdminState>> {
    Router::new().route("/state/release/{tx_id}", post(release).layer(DefaultBodyLimit::max(16 * 1024)))
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({"error": code, "message": message.to_string()}))).into_response()
}

async fn release(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tx_id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(lifecycle) = state.lifecycle() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the state store is not open yet");
    };
    let request: ReleaseRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_release", format!("not a release request: {e}")),
    };
    if request.reason.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "no_reason", "a release needs a reason");
    }
    let by = match lifecycle.approver_of(&tx_id, &request) {
        Some(approver) => approver,
        None if request.signature.is_none() && super::admin::from_operator(peer, &headers) => "loopback".to_string(),
        None => {
            return error(
                StatusCode::FORBIDDEN,
                "not_an_approver",
                "a release from off this host (or from a web page) must be signed by an approver (--key), within 10 \
                 minutes",
            );
        }
    };
    match lifecycle.release(&tx_id, &request.reason, &by).await {
        Ok((released, hold_cancelled)) => {
            axum::Json(json!({"txId": tx_id, "released": released, "hold_cancelled": hold_cancelled, "by": by}))
                .into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "state_unavailable", e),
    }
}
