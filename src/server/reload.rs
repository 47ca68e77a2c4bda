//! Reloading without a restart: what SIGHUP and file changes reload, and how.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::audit::{DecisionLog, Sink};
use crate::config::ReloadSettings;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::policy::watch::{self, Watch, WatchedPath};
use crate::tls::CertificateStore;

/// What can be reloaded without a restart.
pub(super) struct Reloadable<'a> {
    pub store: &'a Arc<PolicyStore>,
    pub candidate: Option<Arc<PolicyStore>>,
    pub server_certs: &'a Option<Arc<CertificateStore>>,
    pub admin_certs: Option<Arc<CertificateStore>>,
    pub log: &'a Arc<DecisionLog>,
    pub metrics: &'a Arc<Metrics>,
}

/// Every reload trigger in one place: SIGHUP reloads the policy sets, the certificates and the
/// decision log's file; with `reload.watch`, file changes reload the policy sets and certificates.
pub(super) fn triggers(reload: &ReloadSettings, sink: &Sink, what: Reloadable<'_>) -> anyhow::Result<Vec<Watch>> {
    let Reloadable { store, candidate, server_certs, admin_certs, log, metrics } = what;
    // SIGHUP always reloads; file watching is optional.
    let policy_paths = if reload.watch { policy_watch_paths(store.dir()) } else { Vec::new() };
    let cert_paths = match (reload.watch, server_certs) {
        (true, Some(certs)) => certificate_watch_paths(certs),
        _ => Vec::new(),
    };
    if let Sink::File { path, .. } = sink
        && let Some(dir) = path.parent()
        && policy_paths.iter().chain(&cert_paths).any(|watched| watched.covers(dir))
    {
        tracing::warn!(
            dir = %dir.display(),
            "the decision log is in a directory watched for policy or TLS changes: every record wakes the \
             watcher; move decision_log.path elsewhere"
        );
    }
    let pairs = server_certs.iter().chain(admin_certs.iter()).cloned().collect();
    on_sighup(std::iter::once(store).chain(&candidate).cloned().collect(), pairs, log.clone(), metrics.clone());
    let mut watches = Vec::new();
    if !policy_paths.is_empty() {
        watches.push(watch_policies(store, policy_paths, reload.debounce)?);
    }
    if let Some(candidate) = candidate.as_ref().filter(|_| reload.watch) {
        watches.push(watch_policies(candidate, policy_watch_paths(candidate.dir()), reload.debounce)?);
    }
    if let Some(certs) = server_certs
        && !cert_paths.is_empty()
    {
        watches.push(watch_certificates(certs, cert_paths, reload.debounce, metrics)?);
    }
    if let Some(certs) = admin_certs.as_ref().filter(|_| reload.watch) {
        watches.push(watch_certificates(certs, certificate_watch_paths(certs), reload.debounce, metrics)?);
    }
    Ok(watches)
}

/// The policy directory (changes under it) and its parent (the directory itself being replaced).
pub(super) fn policy_watch_paths(dir: &Path) -> Vec<WatchedPath> {
    let mut paths = vec![WatchedPath { path: dir.to_path_buf(), recursive: true }];
    if let Some(parent) = dir.parent().filter(|p| p.exists()) {
        paths.push(WatchedPath { path: parent.to_path_buf(), recursive: false });
    }
    paths
}

/// Reloads the policy set after changes in `paths`.
pub(super) fn watch_policies(
    store: &Arc<PolicyStore>,
    paths: Vec<WatchedPath>,
    quiet: Duration,
) -> anyhow::Result<Watch> {
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
pub(super) fn certificate_watch_paths(certs: &CertificateStore) -> Vec<WatchedPath> {
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
pub(super) fn on_sighup(
    stores: Vec<Arc<PolicyStore>>,
    pairs: Vec<Arc<CertificateStore>>,
    log: Arc<DecisionLog>,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the policies and certificates, reopening the decision log");
            log.reopen().await;
            let (stores, pairs, metrics) = (stores.clone(), pairs.clone(), metrics.clone());
            let _ = tokio::task::spawn_blocking(move || {
                stores.iter().for_each(|store| drop(store.reload("sighup")));
                pairs.iter().for_each(|pair| reload_certificates(pair, &metrics));
            })
            .await;
        }
    });
}

pub(super) fn reload_certificates(certs: &CertificateStore, metrics: &Metrics) {
    let result = match certs.reload() {
        Ok(true) => {
            tracing::info!(fingerprint = %certs.fingerprint(), "TLS certificate reloaded");
            "reloaded"
        }
        Ok(false) => {
            tracing::debug!(fingerprint = %certs.fingerprint(), "TLS certificate unchanged");
            "unchanged"
        }
        Err(error) => {
            tracing::error!(%error, "TLS certificate reload failed; keeping the current one");
            "failed"
        }
    };
    metrics.tls_reloaded(result);
}

/// Reloads the TLS pair after changes in `paths`.
pub(super) fn watch_certificates(
    certs: &Arc<CertificateStore>,
    paths: Vec<WatchedPath>,
    quiet: Duration,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Watch> {
    let (certs, metrics) = (Arc::clone(certs), Arc::clone(metrics));
    watch::watch("tls", paths, quiet, |_: &Path| true, move || reload_certificates(&certs, &metrics))
        .context("cannot watch the TLS files")
}
