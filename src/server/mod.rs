//! The HTTPS front end: binds the listener, routes the Co-signer endpoints, answers with the pipeline.

mod listener;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Settings;
use crate::pipeline::{Pipeline, PolicyHandle};
use crate::policy::{Evaluator, PolicySnapshot};

/// A bound, ready-to-serve handler.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    policy: PolicyHandle,
}

impl Server {
    /// Binds the configured address and wires the pipeline around an already loaded snapshot.
    pub async fn bind(settings: Settings, snapshot: PolicySnapshot) -> anyhow::Result<Self> {
        let Settings {
            server,
            protocol,
            policy,
        } = settings;
        let evaluator = Evaluator::new(policy.eval_threads, policy.eval_timeout, policy.on_error)?;
        let handle: PolicyHandle = Arc::new(ArcSwap::from_pointee(snapshot));
        let pipeline = Pipeline::new(
            protocol.cosigner_keys,
            protocol.handler_key,
            handle.clone(),
            evaluator,
        );
        let app = routes::router(
            Arc::new(pipeline),
            &protocol.modes,
            &server.path_prefix,
            server.max_body_bytes,
        );
        let listener = TcpListener::bind(server.listen).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {} (server.listen): {e}", server.listen)
        })?;
        if server.tls.is_none() {
            tracing::warn!(
                "serving plain HTTP (insecure_http = true): for development only, never in production"
            );
        }
        Ok(Self {
            listener,
            tls: server.tls.map(TlsAcceptor::from),
            app,
            policy: handle,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn policy(&self) -> &PolicyHandle {
        &self.policy
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        listener::serve(self.listener, self.tls, self.app, shutdown).await;
    }
}
