//! The HTTPS front end: the Co-signer listener, the admin listener, and the reload watchers.

mod admin;
mod listener;
mod routes;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Settings;
use crate::pipeline::Pipeline;
use crate::policy::watch::{self, Watch, WatchedPath};
use crate::policy::{Evaluator, PolicyStore};
use tls::CertificateStore;

/// A bound, ready-to-serve handler.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    admin: Option<(TcpListener, axum::Router)>,
    ready: Arc<AtomicBool>,
    store: Arc<PolicyStore>,
    _watches: Vec<Watch>,
}

impl Server {
    /// Loads the policies, binds the listeners and starts the reload watchers. Needs a Tokio runtime.
    pub async fn bind(settings: Settings) -> anyhow::Result<Self> {
        let Settings { server, protocol, policy, reload, admin } = settings;
        let store = PolicyStore::open(&policy.dir, policy.compile.clone())
            .with_context(|| format!("policy.dir {}", policy.dir.display()))?;
        let store = Arc::new(store);
        let evaluator = Evaluator::new(policy.eval_threads, policy.compile.eval_timeout, policy.on_error)?;
        let pipeline = Arc::new(Pipeline::new(protocol.cosigner_keys, protocol.handler_key, store.clone(), evaluator));
        let app = routes::router(pipeline.clone(), &protocol.modes, &server.path_prefix, server.max_body_bytes);

        let listener = bind(server.listen, "server.listen").await?;
        let tls = match &server.tls {
            Some(certs) => Some(TlsAcceptor::from(certs.server_config().map_err(anyhow::Error::msg)?)),
            None => {
                tracing::warn!("serving plain HTTP (insecure_http = true): for development only, never in production");
                None
            }
        };
        let ready = Arc::new(AtomicBool::new(false));
        let admin = match admin {
            Some(addr) => {
                let status = admin::AdminState::new(&pipeline, &protocol.modes, server.tls.clone(), ready.clone());
                Some((bind(addr, "admin.listen").await?, admin::router(status)))
            }
            None => None,
        };

        // SIGHUP always reloads; file watching is optional.
        let (policy_watch, trigger) = watch_policies(&store, reload.debounce, reload.watch)?;
        watch::on_sighup(trigger);
        let mut watches = vec![policy_watch];
        if let (true, Some(certs)) = (reload.watch, &server.tls) {
            watches.push(watch_certificates(certs, reload.debounce)?);
        }
        Ok(Self { listener, tls, app, admin, ready, store, _watches: watches })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(listener, _)| listener.local_addr().ok())
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn policy(&self) -> &Arc<PolicyStore> {
        &self.store
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        let (stop, stopped) = tokio::sync::watch::channel(());
        let admin = self.admin.map(|(listener, app)| {
            let mut stopped = stopped.clone();
            tokio::spawn(listener::serve(listener, None, app, async move {
                let _ = stopped.changed().await;
            }))
        });
        self.ready.store(true, Ordering::Release);
        let ready = self.ready.clone();
        listener::serve(self.listener, self.tls, self.app, async move {
            shutdown.await;
            ready.store(false, Ordering::Release);
            let _ = stop.send(());
        })
        .await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
    }
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({key})"))
}

/// Reloads the policy set on a trigger: SIGHUP, and with `files`, changes under its directory or
/// the directory itself being replaced (its parent is watched for that).
fn watch_policies(
    store: &Arc<PolicyStore>,
    quiet: std::time::Duration,
    files: bool,
) -> anyhow::Result<(Watch, tokio::sync::mpsc::Sender<()>)> {
    let dir = store.dir().to_path_buf();
    let mut paths = Vec::new();
    if files {
        paths.push(WatchedPath { path: dir.clone(), recursive: true });
        if let Some(parent) = dir.parent().filter(|p| p.exists()) {
            paths.push(WatchedPath { path: parent.to_path_buf(), recursive: false });
        }
    }
    let store = Arc::clone(store);
    let watched = dir.clone();
    watch::watch(
        "policies",
        paths,
        quiet,
        move |p: &Path| p.starts_with(&watched),
        move || {
            store.reload("change");
        },
    )
    .with_context(|| format!("cannot watch {}", dir.display()))
}

/// Reloads the TLS pair after changes in the directories holding it (renames and symlink swaps).
fn watch_certificates(certs: &Arc<CertificateStore>, quiet: std::time::Duration) -> anyhow::Result<Watch> {
    let mut paths: Vec<WatchedPath> = Vec::new();
    for path in certs.paths() {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        if !paths.iter().any(|w| w.path == dir) {
            paths.push(WatchedPath { path: dir, recursive: false });
        }
    }
    let certs = Arc::clone(certs);
    let (watch, _) = watch::watch(
        "tls",
        paths,
        quiet,
        |_: &Path| true,
        move || match certs.reload() {
            Ok(true) => {
                tracing::info!(fingerprint = %certs.fingerprint(), "TLS certificate reloaded")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%error, "TLS certificate reload failed; keeping the current one")
            }
        },
    )
    .context("cannot watch the TLS files")?;
    Ok(watch)
}
