//! The holds part of the admin API: list and show holds, and receive approvers' signed verdicts.
//! A verdict is authenticated by its signature, not by who posts it; every accepted one is
//! written to the decision log (with its signature, so the audit trail can be re-verified).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;

use super::admin::AdminState;
use crate::audit::DecisionLog;
use crate::audit::records::VerdictRecord;
use crate::holds::{Hold, Refused, SignedVerdict, Status, Verdict, VerdictStatement, timestamp};

/// A verdict is a few hundred bytes.
const MAX_VERDICT_BYTES: usize = 16 * 1024;

pub fn router() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/holds", get(list))
        .route("/holds/{id}", get(show))
        .route("/holds/{id}/verdicts", post(verdict).layer(DefaultBodyLimit::max(MAX_VERDICT_BYTES)))
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({"error": code, "message": message.to_string()}))).into_response()
}

fn not_ready() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "policies not loaded yet")
}

/// `GET /holds[?status=pending|approved|rejected|expired]`: oldest first.
async fn list(State(state): State<Arc<AdminState>>, uri: Uri) -> Response {
    let Some((pipeline, _)) = state.loaded() else { return not_ready() };
    let wanted = uri.query().and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("status=")));
    let now = Utc::now();
    match pipeline.holds().list().await {
        Ok(holds) => {
            let holds: Vec<_> = holds
                .iter()
                .map(|hold| hold.view(now))
                .filter(|view| wanted.is_none_or(|status| view["status"] == status))
                .collect();
            axum::Json(json!({"holds": holds})).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "state_unavailable", e),
    }
}

async fn show(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let Some((pipeline, _)) = state.loaded() else { return not_ready() };
    match pipeline.holds().get(&id).await {
        Ok(Some(hold)) => axum::Json(hold.view(Utc::now())).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no_such_hold", format!("no hold {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "state_unavailable", e),
    }
}

/// `POST /holds/{id}/verdicts` with a [`SignedVerdict`].
async fn verdict(State(state): State<Arc<AdminState>>, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let Some((pipeline, log)) = state.loaded() else { return not_ready() };
    let signed: SignedVerdict = match serde_json::from_slice(&body) {
        Ok(signed) => signed,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_verdict", format!("not a signed verdict: {e}")),
    };
    let now = Utc::now();
    let (hold, approver) = match pipeline.holds().verdict(&id, &signed, now).await {
        Ok(counted) => counted,
        Err(refused) => {
            let (status, code) = refusal_status(&refused);
            tracing::warn!(hold = id, code, error = %refused, "hold verdict refused");
            state.metrics().verdict(code);
            return error(status, code, refused);
        }
    };
    counted(&state, log, &hold, &approver, &signed.statement(), &signed.signature, None, now).await;
    axum::Json(json!({"approver": approver, "hold": hold.view(now)})).into_response()
}

/// After a verdict is counted, however it was proven: the decision log's `hold_verdict` record
/// (with the proof, so the audit trail can be re-verified), the metrics, the hold webhook.
#[allow(clippy::too_many_arguments)]
pub(super) async fn counted(
    state: &AdminState,
    log: &DecisionLog,
    hold: &Hold,
    approver: &str,
    statement: &VerdictStatement,
    signature: &str,
    passkey: Option<serde_json::Value>,
    now: chrono::DateTime<Utc>,
) {
    let status = hold.status(now);
    let record = VerdictRecord {
        event: "hold_verdict",
        timestamp: timestamp(now),
        hold: &hold.id,
        approver,
        verdict: statement.verdict,
        signed_at: &statement.at,
        reason: &statement.reason,
        signature,
        passkey,
        digest: &hold.digest,
        status,
        approvals: hold.approvals.len(),
        required: hold.required,
    };
    // The verdict is counted already: a log failure is reported, not undone.
    if let Err(e) = log.append(&record).await {
        tracing::error!(error = %e, hold = hold.id, approver, "hold verdict not recorded in the decision log");
    }
    tracing::info!(hold = hold.id, approver, verdict = ?statement.verdict, status = ?status, "hold verdict counted");
    state.metrics().verdict(match statement.verdict {
        Verdict::Approve => "approve",
        Verdict::Reject => "reject",
    });
    match status {
        Status::Approved => state.notifier().hold_event("hold_approved", hold),
        Status::Rejected => state.notifier().hold_event("hold_rejected", hold),
        Status::Pending | Status::Expired | Status::Cancelled => {}
    }
}

/// The one place a refused verdict gets its HTTP status and code.
pub(super) fn refusal_status(refused: &Refused) -> (StatusCode, &'static str) {
    match refused {
        Refused::NoSuchHold(_) => (StatusCode::NOT_FOUND, "no_such_hold"),
        Refused::NotAnApprover => (StatusCode::FORBIDDEN, "not_an_approver"),
        Refused::AnotherHold { .. } => (StatusCode::BAD_REQUEST, "another_hold"),
        Refused::Stale(_) => (StatusCode::BAD_REQUEST, "stale"),
        Refused::NoReason => (StatusCode::BAD_REQUEST, "no_reason"),
        Refused::NotPending(_) => (StatusCode::CONFLICT, "not_pending"),
        Refused::AlreadyCounted(_) => (StatusCode::CONFLICT, "already_counted"),
        Refused::State(_) => (StatusCode::SERVICE_UNAVAILABLE, "state_unavailable"),
    }
}
