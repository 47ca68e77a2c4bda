//! The HTTPS front end: the Co-signer listener, the admin listener, and the reload watchers.

mod admin;
mod holds_api;
mod listener;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::audit::{DecisionLog, Sink};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::pipeline::Pipeline;
use crate::policy::watch::{self, Watch, WatchedPath};
use crate::policy::{ActivationGate, CompileOptions, Evaluator, Fallbacks, PolicyStore};
use crate::shadow::Shadow;
use crate::state::StateStore;
use crate::tls::CertificateStore;
use admin::{Admin, AdminState};
use listener::Connections;

/// A bound, ready-to-serve handler.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    connections: Connections,
    admin: Option<Admin>,
    admin_state: Arc<AdminState>,
    log: Arc<DecisionLog>,
    store: Arc<PolicyStore>,
    state_store: Arc<StateStore>,
    upkeep: tokio::task::JoinHandle<()>,
    _watches: Vec<Watch>,
}

impl Server {
    /// Starts the admin listener (not ready yet), loads the policies, opens the decision log, binds
    /// the Co-signer listener and starts the reload watchers. With `reload.require_tests`, a set
    /// goes live only if `tests` passes it (the policy test runner; see [`crate::app`]). Needs a
    /// Tokio runtime.
    pub async fn bind(settings: Settings, tests: ActivationGate) -> anyhow::Result<Self> {
        let Settings {
            server,
            protocol,
            policy,
            reload,
            admin,
            decision_log,
            log: _,
            state,
            holds,
            hold_webhook,
            warnings,
        } = settings;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        let metrics = Arc::new(Metrics::new());
        let notifier = Notifier::new(hold_webhook, metrics.clone());
        let admin_state = AdminState::new(&protocol.modes, server.tls.clone(), metrics.clone(), notifier.clone());
        let admin_certs = admin.as_ref().and_then(|settings| settings.tls.clone());
        let admin = match admin {
            Some(settings) => {
                let tls = match &settings.tls {
                    Some(certs) => Some(TlsAcceptor::from(certs.server_config().map_err(anyhow::Error::msg)?)),
                    None => None,
                };
                Some(Admin::start(bind(settings.listen, "admin.listen").await?, tls, admin_state.clone()))
            }
            None => None,
        };

        let gated = reload.require_tests;
        let (dir, options) = (policy.dir.clone(), CompileOptions { with_tests: gated, ..policy.compile.clone() });
        let store = tokio::task::spawn_blocking(move || {
            let store = PolicyStore::open(&dir, options)?;
            if gated { store.with_gate(tests) } else { Ok(store) }
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
        let fallbacks = Fallbacks { error: policy.on_error, timeout: policy.on_timeout, state: state.on_error };
        let state = Arc::new(StateStore::open(state).context("state: cannot open the store")?);
        tracing::info!(backend = state.backend_name(), "state store open");
        let reported = metrics.clone();
        let upkeep = tokio::spawn(state.clone().upkeep(move |up| reported.set_state_up(up)));
        let evaluator = Arc::new(Evaluator::new(policy.eval_threads, policy.compile.eval_timeout, fallbacks)?);
        let pipeline = Arc::new(Pipeline::new(
            protocol.cosigner_keys,
            protocol.handler_key,
            store.clone(),
            evaluator,
            state.clone(),
            holds,
        ));
        let shadow = match &policy.candidate_dir {
            Some(dir) => {
                let (path, options) = (dir.clone(), policy.compile.clone());
                let candidate = tokio::task::spawn_blocking(move || PolicyStore::open(&path, options))
                    .await?
                    .with_context(|| format!("policy.candidate_dir {}", dir.display()))?;
                let shadow =
                    Shadow::start(Arc::new(candidate), fallbacks, state.clone(), log.clone(), metrics.clone())?;
                tracing::info!(revision = %shadow.policy().active().revision, "shadowing the active policy set with a candidate");
                Some(Arc::new(shadow))
            }
            None => None,
        };
        let callback = routes::Callback {
            answerer: crate::answer::Answerer {
                pipeline: pipeline.clone(),
                shadow: shadow.clone(),
                log: log.clone(),
                metrics,
                notifier,
            },
            limits: routes::Limits {
                max_body_bytes: server.max_body_bytes,
                read_timeout: server.read_timeout,
                request_timeout: server.request_timeout,
            },
            in_flight: Semaphore::new(server.max_in_flight),
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
        let policy_paths = if reload.watch { policy_watch_paths(store.dir()) } else { Vec::new() };
        let cert_paths = match (reload.watch, &server.tls) {
            (true, Some(certs)) => certificate_watch_paths(certs),
            _ => Vec::new(),
        };
        if let Sink::File { path, .. } = &decision_log.sink
            && let Some(dir) = path.parent()
            && policy_paths.iter().chain(&cert_paths).any(|watched| watched.covers(dir))
        {
            tracing::warn!(
                dir = %dir.display(),
                "the decision log is in a directory watched for policy or TLS changes: every record wakes the \
                 watcher; move decision_log.path elsewhere"
            );
        }
        let pairs = server.tls.iter().chain(admin_certs.iter()).cloned().collect();
        let candidate = shadow.as_ref().map(|shadow| shadow.policy().clone());
        on_sighup(std::iter::once(&store).chain(&candidate).cloned().collect(), pairs, log.clone());
        let mut watches = Vec::new();
        if !policy_paths.is_empty() {
            watches.push(watch_policies(&store, policy_paths, reload.debounce)?);
        }
        if let Some(candidate) = candidate.as_ref().filter(|_| reload.watch) {
            watches.push(watch_policies(candidate, policy_watch_paths(candidate.dir()), reload.debounce)?);
        }
        if let Some(certs) = &server.tls
            && !cert_paths.is_empty()
        {
            watches.push(watch_certificates(certs, cert_paths, reload.debounce)?);
        }
        if let Some(certs) = admin_certs.as_ref().filter(|_| reload.watch) {
            watches.push(watch_certificates(certs, certificate_watch_paths(certs), reload.debounce)?);
        }
        admin_state.set_loaded(pipeline, log.clone(), shadow);
        let connections = Connections {
            max: server.max_connections,
            read_timeout: server.read_timeout,
            shutdown_timeout: server.shutdown_timeout,
        };
        Ok(Self {
            listener,
            tls,
            app,
            connections,
            admin,
            admin_state,
            log,
            store,
            state_store: state,
            upkeep,
            _watches: watches,
        })
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
        self.admin_state.set_listening(true);
        let state = self.admin_state.clone();
        listener::serve(self.listener, self.tls, self.app, self.connections, async move {
            shutdown.await;
            state.set_listening(false);
        })
        .await;
        self.log.close(Duration::from_secs(5)).await;
        self.upkeep.abort();
        self.state_store.close().await;
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
    }
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({key})"))
}

/// The policy directory (changes under it) and its parent (the directory itself being replaced).
fn policy_watch_paths(dir: &Path) -> Vec<WatchedPath> {
    let mut paths = vec![WatchedPath { path: dir.to_path_buf(), recursive: true }];
    if let Some(parent) = dir.parent().filter(|p| p.exists()) {
        paths.push(WatchedPath { path: parent.to_path_buf(), recursive: false });
    }
    paths
}

/// Reloads the policy set after changes in `paths`.
fn watch_policies(store: &Arc<PolicyStore>, paths: Vec<WatchedPath>, quiet: Duration) -> anyhow::Result<Watch> {
    let dir = store.dir().to_path_buf();
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

/// The directories holding the TLS pair (renames and symlink swaps happen there).
fn certificate_watch_paths(certs: &CertificateStore) -> Vec<WatchedPath> {
    let mut paths: Vec<WatchedPath> = Vec::new();
    for path in certs.files() {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        if !paths.iter().any(|w| w.path == dir) {
            paths.push(WatchedPath { path: dir, recursive: false });
        }
    }
    paths
}

/// SIGHUP, as operators and logrotate send it: reload the policies and the TLS pairs now, and start
/// a new decision log file at the configured path (logrotate renamed the old one).
fn on_sighup(stores: Vec<Arc<PolicyStore>>, pairs: Vec<Arc<CertificateStore>>, log: Arc<DecisionLog>) {
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the policies and certificates, reopening the decision log");
            log.reopen().await;
            let (stores, pairs) = (stores.clone(), pairs.clone());
            let _ = tokio::task::spawn_blocking(move || {
                stores.iter().for_each(|store| drop(store.reload("sighup")));
                pairs.iter().for_each(|pair| reload_certificates(pair));
            })
            .await;
        }
    });
}

fn reload_certificates(certs: &CertificateStore) {
    match certs.reload() {
        Ok(true) => tracing::info!(fingerprint = %certs.fingerprint(), "TLS certificate reloaded"),
        Ok(false) => tracing::debug!(fingerprint = %certs.fingerprint(), "TLS certificate unchanged"),
        Err(error) => tracing::error!(%error, "TLS certificate reload failed; keeping the current one"),
    }
}

/// Reloads the TLS pair after changes in `paths`.
fn watch_certificates(
    certs: &Arc<CertificateStore>,
    paths: Vec<WatchedPath>,
    quiet: Duration,
) -> anyhow::Result<Watch> {
    let certs = Arc::clone(certs);
    watch::watch("tls", paths, quiet, |_: &Path| true, move || reload_certificates(&certs))
        .context("cannot watch the TLS files")
}
