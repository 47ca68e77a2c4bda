//! The admin listener: liveness, readiness, status, metrics and the holds API, away from the
//! Co-signer-facing port, over TLS when `[admin] tls_cert/tls_key` are set. It starts before the
//! policies load, so readiness can say "not yet".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::listener::{self, Connections};
use crate::audit::DecisionLog;
use crate::console::Console;
use crate::envelope::Mode;
use crate::holds::Status;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::pipeline::Pipeline;
use crate::shadow::Shadow;
use crate::tls::CertificateStore;

pub struct AdminState {
    modes: Vec<&'static str>,
    tls: Option<Arc<CertificateStore>>,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    /// Set once the policies are loaded and the decision log is open.
    loaded: OnceLock<(Arc<Pipeline>, Arc<DecisionLog>)>,
    /// Set when a candidate set is shadowed.
    shadow: OnceLock<Arc<Shadow>>,
    /// Why the configured candidate set is not shadowed.
    shadow_error: OnceLock<String>,
    /// The transaction lifecycle (releases by hand; webhooks), and the webhook listener's address.
    lifecycle: OnceLock<(Arc<Lifecycle>, Option<SocketAddr>)>,
    listening: AtomicBool,
    /// The approval console (`[console]`), once the state store is open.
    console: OnceLock<Arc<Console>>,
    console_limiter: super::console_api::Limiter,
}

impl AdminState {
    pub fn new(
        modes: &[Mode],
        tls: Option<Arc<CertificateStore>>,
        metrics: Arc<Metrics>,
        notifier: Notifier,
    ) -> Arc<Self> {
        Arc::new(Self {
            modes: modes.iter().map(|m| m.as_str()).collect(),
            tls,
            metrics,
            notifier,
            loaded: OnceLock::new(),
            shadow: OnceLock::new(),
            shadow_error: OnceLock::new(),
            lifecycle: OnceLock::new(),
            listening: AtomicBool::new(false),
            console: OnceLock::new(),
            console_limiter: Default::default(),
        })
    }

    pub fn set_loaded(&self, pipeline: Arc<Pipeline>, log: Arc<DecisionLog>, shadow: Option<Arc<Shadow>>) {
        let _ = self.loaded.set((pipeline, log));
        if let Some(shadow) = shadow {
            let _ = self.shadow.set(shadow);
        }
    }

    pub fn set_shadow_error(&self, error: String) {
        let _ = self.shadow_error.set(error);
    }

    pub fn set_lifecycle(&self, lifecycle: Arc<Lifecycle>, webhooks: Option<SocketAddr>) {
        let _ = self.lifecycle.set((lifecycle, webhooks));
    }

    pub fn set_console(&self, console: Arc<Console>) {
        let _ = self.console.set(console);
    }

    pub fn console(&self) -> Option<&Arc<Console>> {
        self.console.get()
    }

    pub fn console_limiter(&self) -> &super::console_api::Limiter {
        &self.console_limiter
    }

    pub fn lifecycle(&self) -> Option<&Arc<Lifecycle>> {
        self.lifecycle.get().map(|(lifecycle, _)| lifecycle)
    }

    pub fn loaded(&self) -> Option<&(Arc<Pipeline>, Arc<DecisionLog>)> {
        self.loaded.get()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Release);
    }

    /// Why the handler is not ready, if it is not.
    fn not_ready(&self) -> Option<&'static str> {
        let Some((pipeline, log)) = self.loaded.get() else { return Some("policies not loaded yet") };
        if !self.listening.load(Ordering::Acquire) {
            Some("not accepting requests")
        } else if !log.is_healthy() {
            Some("decision log sink is failing")
        } else if !pipeline.state().is_up() {
            Some("state store is unavailable")
        } else {
            None
        }
    }
}

/// Whether a request comes from an operator on this host: a loopback peer, addressed by a
/// loopback name, and not from a web page (a browser adds `Origin` or `Sec-Fetch-*` to what a
/// page sends; the CLI never does). A page open in an operator's browser can reach a loopback
/// listener — by a cross-site form, or by DNS rebinding — so the peer address alone is not enough
/// for what trusts it (unsigned releases, managing approvers).
pub(super) fn from_operator(peer: SocketAddr, headers: &axum::http::HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let loopback_name =
        matches!(name, "localhost" | "[::1]") || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
    let from_page =
        headers.contains_key(header::ORIGIN) || headers.keys().any(|name| name.as_str().starts_with("sec-fetch-"));
    peer.ip().is_loopback() && loopback_name && !from_page
}

/// The running admin listener.
pub struct Admin(listener::Background);

impl Admin {
    pub fn start(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<AdminState>) -> Self {
        let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        tracing::info!(%addr, tls = tls.is_some(), "admin listening");
        Self(listener::Background::start(listener, tls, router(state), Connections::default()))
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .merge(super::holds_api::router())
        .merge(super::state_api::router())
        .merge(super::console_api::router())
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match state.not_ready() {
        None => axum::Json(json!({"ready": true})).into_response(),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"ready": false, "reason": reason}))).into_response()
        }
    }
}

/// Never key material: names and fingerprints only.
async fn status(State(state): State<Arc<AdminState>>) -> Response {
    let Some((pipeline, log)) = state.loaded.get() else {
        return axum::Json(json!({"version": env!("CARGO_PKG_VERSION"), "modes": state.modes, "policy": null}))
            .into_response();
    };
    let keys: Vec<_> = pipeline
        .keyring()
        .keys()
        .iter()
        .map(|k| json!({"name": k.name.as_ref(), "fingerprint": k.fingerprint}))
        .collect();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": state.not_ready().is_none(),
        "modes": state.modes,
        "policy": pipeline.policy().status(),
        "decision_log": {"healthy": log.is_healthy(), "durable": log.is_durable()},
        "state": pipeline.state().status(),
        "cosigner_keys": keys,
        "handler_key_fingerprint": pipeline.handler_key().map(|k| k.fingerprint()),
        "holds": {
            "ttl_seconds": pipeline.holds().settings().ttl.as_secs(),
            "approvers": pipeline.holds().settings().approvers.iter()
                .map(|a| json!({"name": a.name, "fingerprint": a.fingerprint}))
                .collect::<Vec<_>>(),
        },
        "tls_certificate_fingerprint": state.tls.as_ref().map(|t| t.fingerprint()),
        "shadow": match (state.shadow.get(), state.shadow_error.get()) {
            (Some(shadow), _) => shadow.status(),
            (None, Some(error)) => json!({"error": error}),
            (None, None) => serde_json::Value::Null,
        },
        "console": state.console.get().map(|console| {
            json!({"origin": console.settings().origin.as_str(), "rp_id": console.settings().rp_id})
        }),
        "fireblocks_webhooks": state.lifecycle.get().and_then(|(lifecycle, addr)| {
            let keys = lifecycle.keys()?;
            let mut status = keys.status();
            status["listen"] = json!(addr.map(|a| a.to_string()));
            Some(status)
        }),
    }))
    .into_response()
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    // Holds live in the (maybe shared) store: counted at each scrape, as every replica sees them.
    if let Some((pipeline, _)) = state.loaded.get()
        && let Ok(holds) = pipeline.holds().list().await
    {
        let now = chrono::Utc::now();
        let statuses = [Status::Pending, Status::Approved, Status::Rejected, Status::Expired, Status::Cancelled];
        let counts = statuses
            .map(|status| (status.as_str(), holds.iter().filter(|hold| hold.status(now) == status).count() as i64));
        state.metrics.set_holds(&counts);
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}
