//! The HTTPS front end: the Co-signer listener, the admin listener, and the reload watchers.

mod admin;
mod listener;
mod routes;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::Settings;
use crate::decision_log::{DecisionLog, Sink};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::policy::watch::{self, Watch, WatchedPath};
use crate::policy::{CompileOptions, Evaluator, PolicyStore};
use crate::replay::RequestIdMemory;
use admin::{Admin, AdminState};
use listener::Connections;
use tls::CertificateStore;

/// A bound, ready-to-serve handler.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    connections: Connections,
    admin: Option<Admin>,
    state: Arc<AdminState>,
    log: Arc<DecisionLog>,
    store: Arc<PolicyStore>,
    _watches: Vec<Watch>,
}

impl Server {
    /// Starts the admin listener (not ready yet), loads the policies, opens the decision log, binds
    /// the Co-signer listener and starts the reload watchers. Needs a Tokio runtime.
    pub async fn bind(settings: Settings) -> anyhow::Result<Self> {
        let Settings { server, protocol, policy, reload, admin, decision_log, log: _, warnings } = settings;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        let metrics = Arc::new(Metrics::new());
        let state = AdminState::new(&protocol.modes, server.tls.clone(), metrics.clone());
        let admin = match admin {
            Some(addr) => Some(Admin::start(bind(addr, "admin.listen").await?, state.clone())),
            None => None,
        };

        let gated = reload.require_tests;
        let (dir, options) = (policy.dir.clone(), CompileOptions { with_tests: gated, ..policy.compile.clone() });
        let store = tokio::task::spawn_blocking(move || {
            let store = PolicyStore::open(&dir, options)?;
            if gated { store.with_gate(Box::new(crate::testing::require_passing_tests)) } else { Ok(store) }
        })
        .await?
        .with_context(|| format!("policy.dir {}", policy.dir.display()))?;
        metrics.set_revision(&store.active().revision);
        let observed = metrics.clone();
        let store = Arc::new(store.with_observer(Box::new(move |outcome, revision| {
            observed.reloaded(outcome.result());
            observed.set_revision(revision);
        })));

        let log = DecisionLog::open(&decision_log, metrics.clone()).context("decision_log: cannot open the sink")?;
        let log = Arc::new(log);
        let evaluator =
            Evaluator::new(policy.eval_threads, policy.compile.eval_timeout, policy.on_error, policy.on_timeout)?;
        let pipeline = Arc::new(Pipeline::new(protocol.cosigner_keys, protocol.handler_key, store.clone(), evaluator));
        let callback = routes::Callback {
            pipeline: pipeline.clone(),
            log: log.clone(),
            metrics,
            limits: routes::Limits {
                max_body_bytes: server.max_body_bytes,
                read_timeout: server.read_timeout,
                request_timeout: server.request_timeout,
            },
            in_flight: Semaphore::new(server.max_in_flight),
            request_ids: RequestIdMemory::new(protocol.remembered_request_ids),
        };
        let app = routes::router(Arc::new(callback), &protocol.modes, &server.path_prefix);

        let listener = bind(server.listen, "server.listen").await?;
        let tls = match &server.tls {
            Some(certs) => Some(TlsAcceptor::from(certs.server_config().map_err(anyhow::Error::msg)?)),
            None => {
                tracing::warn!("serving plain HTTP (insecure_http = true): for development only, never in production");
                None
            }
        };

        // SIGHUP always reloads; file watching is optional.
        let (policy_watch, trigger) = watch_policies(&store, reload.debounce, reload.watch)?;
        watch::on_sighup(trigger);
        let mut watches = vec![policy_watch];
        if let (true, Some(certs)) = (reload.watch, &server.tls) {
            watches.push(watch_certificates(certs, reload.debounce)?);
        }
        if let (true, Sink::File { path, .. }) = (reload.watch, &decision_log.sink)
            && let Some(dir) = watched_log_dir(path, store.dir(), server.tls.as_deref())
        {
            tracing::warn!(
                dir = %dir.display(),
                "the decision log is in a directory watched for policy or TLS changes: every record wakes the \
                 watcher; move decision_log.path elsewhere"
            );
        }
        state.loaded(pipeline, log.clone());
        let connections = Connections {
            max: server.max_connections,
            read_timeout: server.read_timeout,
            shutdown_timeout: server.shutdown_timeout,
        };
        Ok(Self { listener, tls, app, connections, admin, state, log, store, _watches: watches })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::addr)
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn policy(&self) -> &Arc<PolicyStore> {
        &self.store
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests finish
    /// (within `server.shutdown_timeout_ms`), flushes the decision log and stops the admin listener.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        self.state.set_listening(true);
        let state = self.state.clone();
        listener::serve(self.listener, self.tls, self.app, self.connections, async move {
            shutdown.await;
            state.set_listening(false);
        })
        .await;
        self.log.close(Duration::from_secs(5)).await;
        if let Some(admin) = self.admin {
            admin.stop().await;
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
    quiet: Duration,
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

/// The directory of the decision log file, if the policy or TLS watchers watch it.
fn watched_log_dir(log: &Path, policy_dir: &Path, certs: Option<&CertificateStore>) -> Option<PathBuf> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let dir = absolute(log.parent()?);
    let policy_dir = absolute(policy_dir);
    let cert_dirs: Vec<PathBuf> =
        certs.map_or(Vec::new(), |c| c.paths().into_iter().filter_map(|p| p.parent()).map(absolute).collect());
    let watched = dir.starts_with(&policy_dir) || policy_dir.parent() == Some(&dir) || cert_dirs.contains(&dir);
    watched.then_some(dir)
}

/// Reloads the TLS pair after changes in the directories holding it (renames and symlink swaps).
fn watch_certificates(certs: &Arc<CertificateStore>, quiet: Duration) -> anyhow::Result<Watch> {
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
            Ok(true) => tracing::info!(fingerprint = %certs.fingerprint(), "TLS certificate reloaded"),
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "TLS certificate reload failed; keeping the current one"),
        },
    )
    .context("cannot watch the TLS files")?;
    Ok(watch)
}
