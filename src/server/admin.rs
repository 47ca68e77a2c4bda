//! The admin listener: liveness, readiness and status, away from the Co-signer-facing port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::tls::CertificateStore;
use crate::envelope::Mode;
use crate::pipeline::Pipeline;

pub struct AdminState {
    pipeline: Arc<Pipeline>,
    modes: Vec<&'static str>,
    tls: Option<Arc<CertificateStore>>,
    ready: Arc<AtomicBool>,
}

impl AdminState {
    pub fn new(
        pipeline: &Arc<Pipeline>,
        modes: &[Mode],
        tls: Option<Arc<CertificateStore>>,
        ready: Arc<AtomicBool>,
    ) -> Arc<Self> {
        Arc::new(Self { pipeline: Arc::clone(pipeline), modes: modes.iter().map(|m| m.as_str()).collect(), tls, ready })
    }
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    // A snapshot is always loaded once the server exists; readiness is the listener being up.
    if state.ready.load(Ordering::Acquire) {
        axum::Json(json!({"ready": true})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"ready": false}))).into_response()
    }
}

/// Never key material: names and fingerprints only.
async fn status(State(state): State<Arc<AdminState>>) -> Response {
    let keys: Vec<_> = state
        .pipeline
        .keyring()
        .keys()
        .iter()
        .map(|k| json!({"name": k.name.as_ref(), "fingerprint": k.fingerprint}))
        .collect();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "modes": state.modes,
        "policy": state.pipeline.policy().status(),
        "cosigner_keys": keys,
        "handler_key_fingerprint": state.pipeline.handler_key().map(|k| k.fingerprint()),
        "tls_certificate_fingerprint": state.tls.as_ref().map(|t| t.fingerprint()),
    }))
    .into_response()
}
