//! The Fireblocks webhook listener: its own port (Fireblocks' cloud calls it, not the Co-signer),
//! one POST route. A verified delivery is applied before it is acknowledged, within the state
//! store's budget: a 2xx means it is kept; anything unsigned, mis-signed or unparseable gets a
//! 4xx and changes nothing; a store that does not answer gets a 503 and Fireblocks delivers again.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::listener::{self, Connections};
use crate::lifecycle::{Lifecycle, Received, Refused};

/// A webhook event is a few KB.
const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The running webhook listener.
pub struct WebhookListener(listener::Background);

impl WebhookListener {
    pub fn start(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        path: &str,
        lifecycle: Arc<Lifecycle>,
        connections: Connections,
    ) -> Self {
        let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        tracing::info!(%addr, path, tls = tls.is_some(), "Fireblocks webhooks listening");
        let router = Router::new()
            .route(path, post(deliver).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)))
            .with_state(lifecycle);
        Self(listener::Background::start(listener, tls, router, connections))
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

async fn deliver(State(lifecycle): State<Arc<Lifecycle>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match lifecycle.receive(header, &body).await {
        Ok(received) => {
            let (released, hold_cancelled) = match received {
                Received::Applied { released, hold_cancelled } => (released, hold_cancelled),
                _ => (0, false),
            };
            let body = json!({"result": received.result(), "released": released, "hold_cancelled": hold_cancelled});
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(refused) => {
            let (status, code) = match &refused {
                Refused::Unverified(e) => (StatusCode::UNAUTHORIZED, e.code()),
                Refused::Event(_) => (StatusCode::BAD_REQUEST, "malformed_event"),
                Refused::State(_) => (StatusCode::SERVICE_UNAVAILABLE, "state_unavailable"),
            };
            tracing::warn!(code, error = %refused, "Fireblocks webhook delivery refused");
            (status, axum::Json(json!({"error": code, "message": refused.to_string()}))).into_response()
        }
    }
}
