//! The HTTPS front end: the Co-signer listener, the admin listener, and the reload watchers.

mod admin;
mod console_api;
mod holds_api;
mod listener;
mod reload;
mod routes;
mod state_api;
mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::audit::DecisionLog;
use crate::config::{AdminSettings, PolicySettings, Settings, WebhookSettings};
use crate::console::Console;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::pipeline::Pipeline;
use crate::policy::watch::Watch;
use crate::policy::{ActivationGate, CompileOptions, Evaluator, Fallbacks, PolicyStore};
use crate::shadow::Shadow;
use crate::state::StateStore;
use admin::{Admin, AdminState};
use listener::Connections;
use webhooks::WebhookListener;

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
    jwks_refresh: tokio::task::JoinHandle<()>,
    expiries: tokio::task::JoinHandle<()>,
    webhooks: Option<WebhookListener>,
    _watches: Vec<Watch>,
}

impl Server {
    /// Starts the admin listener (not ready yet), loads the policies, opens the decision log, binds
    /// the Co-signer listener and starts the reload watchers. With `reload.require_tests`, a set
    /// goes live only if `tests` passes it (the policy test runner; see [`crate::app`]). Needs a
    /// Tokio runtime. (Longer than most: the composition of the server, in start-up order.)
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
            origin,
            webhooks,
            console,
            warnings,
        } = settings;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        let metrics = Arc::new(Metrics::new());
        let notifier = Notifier::new(hold_webhook, protocol.handler_key.clone(), metrics.clone());
        let admin_state = AdminState::new(&protocol.modes, server.tls.clone(), metrics.clone(), notifier.clone());
        let admin_certs = admin.as_ref().and_then(|settings| settings.tls.clone());
        let admin_tls = admin_certs.is_some();
        let admin = match admin {
            Some(settings) => Some(start_admin(settings, admin_state.clone()).await?),
            None => None,
        };

        let store = open_policies(&policy, reload.require_tests.then_some(tests), &metrics).await?;

        let log = DecisionLog::open(&decision_log, metrics.clone()).context("decision_log: cannot open the sink")?;
        let log = Arc::new(log);
        let fallbacks = Fallbacks { error: policy.on_error, timeout: policy.on_timeout, state: state.on_error };
        let state = Arc::new(StateStore::open(state).context("state: cannot open the store")?);
        tracing::info!(backend = state.backend_name(), "state store open");
        let reported = metrics.clone();
        let upkeep = tokio::spawn(state.clone().upkeep(move |up| reported.set_state_up(up)));
        let evaluator = Arc::new(Evaluator::new(policy.eval_threads, policy.compile.eval_timeout, fallbacks)?);
        let (lifecycle, webhooks, jwks_refresh) = start_lifecycle(
            webhooks,
            &server,
            Lifecycle::new(state.clone(), holds.clone(), log.clone(), metrics.clone()).on_cancelled({
                let notifier = notifier.clone();
                move |hold| notifier.hold_event("hold_cancelled", hold)
            }),
        )
        .await?;
        admin_state.set_lifecycle(lifecycle, webhooks.as_ref().map(WebhookListener::addr));
        if let (Some(config), Some(admin)) = (console, &admin) {
            let settings = console_api::settings(config, admin.addr(), admin_tls).map_err(anyhow::Error::msg)?;
            tracing::info!(origin = %settings.origin, rp_id = settings.rp_id, "approval console at /console/");
            let console = Console::new(settings, state.clone()).map_err(anyhow::Error::msg)?;
            admin_state.set_console(Arc::new(console));
        }
        let pipeline = Arc::new(
            Pipeline::new(protocol.cosigner_keys, protocol.handler_key, store.clone(), evaluator, state.clone(), holds)
                .with_origin(origin),
        );
        // A candidate that does not load must never keep the active set from serving.
        let shadow = match &policy.candidate_dir {
            Some(dir) => match start_shadow(dir, &policy, fallbacks, &state, &log, &metrics).await {
                Ok(shadow) => Some(shadow),
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "the candidate set does not load: serving WITHOUT the shadow until a restart"
                    );
                    admin_state.set_shadow_error(format!("{error:#}"));
                    None
                }
            },
            None => None,
        };
        let callback = routes::Callback {
            answerer: crate::answer::Answerer {
                pipeline: pipeline.clone(),
                shadow: shadow.clone(),
                log: log.clone(),
                metrics: metrics.clone(),
                notifier: notifier.clone(),
            },
            limits: routes::Limits {
                max_body_bytes: server.max_body_bytes,
                read_timeout: server.read_timeout,
                request_timeout: server.request_timeout,
            },
            in_flight: Semaphore::new(server.max_in_flight),
        };
        let expiries = tokio::spawn(announce_expiries(pipeline.clone(), notifier));
        let app = routes::router(Arc::new(callback), &protocol.modes, &server.path_prefix);

        let listener = bind(server.listen, "server.listen").await?;
        let tls = match &server.tls {
            Some(certs) => Some(TlsAcceptor::from(certs.server_config().map_err(anyhow::Error::msg)?)),
            None => {
                tracing::warn!("serving plain HTTP (insecure_http = true): for development only, never in production");
                None
            }
        };

        let candidate = shadow.as_ref().map(|shadow| shadow.policy().clone());
        let watches = reload::triggers(
            &reload,
            &decision_log.sink,
            reload::Reloadable {
                store: &store,
                candidate,
                server_certs: &server.tls,
                admin_certs,
                log: &log,
                metrics: &metrics,
            },
        )?;
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
            jwks_refresh,
            expiries,
            webhooks,
            _watches: watches,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::addr)
    }

    /// The Fireblocks webhook listener's address, when `[fireblocks_webhooks]` is configured.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.webhooks.as_ref().map(WebhookListener::addr)
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
        if let Some(webhooks) = self.webhooks {
            webhooks.stop().await;
        }
        self.log.close(Duration::from_secs(5)).await;
        self.upkeep.abort();
        self.jwks_refresh.abort();
        self.expiries.abort();
        self.state_store.close().await;
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
    }
}

/// The transaction lifecycle (webhooks and releases by hand), its webhook listener if configured,
/// and the task that keeps its JWKS fresh.
async fn start_lifecycle(
    webhooks: Option<WebhookSettings>,
    server: &crate::config::ServerSettings,
    lifecycle: Lifecycle,
) -> anyhow::Result<(Arc<Lifecycle>, Option<WebhookListener>, tokio::task::JoinHandle<()>)> {
    let Some(WebhookSettings { listen, path, keys, tls }) = webhooks else {
        return Ok((Arc::new(lifecycle), None, tokio::spawn(async {})));
    };
    let lifecycle = Arc::new(lifecycle.with_keys(keys));
    let tls = match &tls {
        Some(certs) => Some(TlsAcceptor::from(certs.server_config().map_err(anyhow::Error::msg)?)),
        None => None,
    };
    let connections = Connections {
        max: server.max_connections,
        read_timeout: server.read_timeout,
        shutdown_timeout: server.shutdown_timeout,
    };
    let listener = bind(listen, "fireblocks_webhooks.listen").await?;
    let webhooks = WebhookListener::start(listener, tls, &path, lifecycle.clone(), connections);
    Ok((lifecycle.clone(), Some(webhooks), tokio::spawn(refresh_jwks(lifecycle))))
}

/// Sends `hold_expired` for each hold that expires, once across replicas, when the hold webhook
/// is configured (expiry is a time passing, not a request: nothing else would say it).
async fn announce_expiries(pipeline: Arc<Pipeline>, notifier: Notifier) {
    if !notifier.is_configured() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        match pipeline.holds().newly_expired(chrono::Utc::now()).await {
            Ok(expired) => expired.iter().for_each(|hold| notifier.hold_event("hold_expired", hold)),
            Err(error) => tracing::warn!(%error, "expired holds could not be read"),
        }
    }
}

/// Reads the webhook JWKS at start-up, then every 10 minutes (an unknown `kid` also does).
async fn refresh_jwks(lifecycle: Arc<Lifecycle>) {
    let Some(keys) = lifecycle.keys() else { return };
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        keys.refresh().await;
    }
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({key})"))
}

/// The admin listener, not ready until the policies are loaded.
async fn start_admin(settings: AdminSettings, state: Arc<AdminState>) -> anyhow::Result<Admin> {
    let tls = match &settings.tls {
        Some(certs) => Some(TlsAcceptor::from(certs.server_config().map_err(anyhow::Error::msg)?)),
        None => None,
    };
    Ok(Admin::start(bind(settings.listen, "admin.listen").await?, tls, state))
}

/// The active policy set, compiled off the runtime; gated by `tests` when given. Its reloads are
/// counted in the metrics.
async fn open_policies(
    policy: &PolicySettings,
    tests: Option<ActivationGate>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<PolicyStore>> {
    let options = CompileOptions { with_tests: tests.is_some(), ..policy.compile.clone() };
    let dir = policy.dir.clone();
    let store = tokio::task::spawn_blocking(move || {
        let store = PolicyStore::open(&dir, options)?;
        match tests {
            Some(tests) => store.with_gate(tests),
            None => Ok(store),
        }
    })
    .await?
    .with_context(|| format!("policy.dir {}", policy.dir.display()))?;
    metrics.set_revision(&store.active().revision);
    let observed = metrics.clone();
    Ok(Arc::new(store.with_observer(Box::new(move |outcome, revision| {
        observed.reloaded(outcome.result());
        observed.set_revision(revision);
    }))))
}

/// The candidate set (`policy.candidate_dir`) shadowing the active one.
async fn start_shadow(
    dir: &Path,
    policy: &PolicySettings,
    fallbacks: Fallbacks,
    state: &Arc<StateStore>,
    log: &Arc<DecisionLog>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<Shadow>> {
    let (path, options) = (dir.to_path_buf(), policy.compile.clone());
    let candidate = tokio::task::spawn_blocking(move || PolicyStore::open(&path, options))
        .await?
        .with_context(|| format!("policy.candidate_dir {}", dir.display()))?;
    let shadow = Shadow::start(Arc::new(candidate), fallbacks, state.clone(), log.clone(), metrics.clone())?;
    tracing::info!(revision = %shadow.policy().active().revision, "shadowing the active policy set with a candidate");
    Ok(Arc::new(shadow))
}
