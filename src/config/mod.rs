//! The configuration file (TOML) and its validation: paths resolved against the file's directory,
//! keys and certificates loaded once, every error naming the key or file at fault.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audit::DecisionLogSettings;
use crate::decision::FallbackAction;
use crate::envelope::Mode;
use crate::holds::HoldSettings;
use crate::keys::env_material;
use crate::keys::{CosignerKeyring, HandlerKey};
use crate::notify::Webhook;
use crate::policy::CompileOptions;
use crate::state::StateSettings;
use crate::telemetry::LogFormat;
use crate::tls::CertificateStore;

mod raw;
mod resolve;

use raw::{RawConfig, RawReload, read_raw};
use resolve::*;

pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub use crate::policy::{DEFAULT_EVAL_TIMEOUT_MS, DEFAULT_RELOAD_TIMEOUT_MS};
/// The Co-signer gives up after 30 s; the policy budget must leave room to answer before that.
pub const MAX_EVAL_TIMEOUT_MS: u64 = 25_000;
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_DEBOUNCE_MS: u64 = 300;
/// A signed checkpoint after this many decision-log records (`decision_log.checkpoint_every`).
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key {key}: {message}")]
    Key { key: String, message: String },
}

/// `reload.timeout_ms`: the budget for reading and compiling a policy set.
fn load_timeout(raw: &RawReload) -> Result<Duration, ConfigError> {
    match raw.timeout_ms.unwrap_or(DEFAULT_RELOAD_TIMEOUT_MS) {
        0 => Err(key_error("reload.timeout_ms", "must be greater than 0")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

fn key_error(key: impl Into<String>, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Key { key: key.into(), message: message.to_string() }
}

/// The validated configuration, with every file already loaded.
#[derive(Debug)]
pub struct Settings {
    pub server: ServerSettings,
    pub protocol: ProtocolSettings,
    pub policy: PolicySettings,
    pub reload: ReloadSettings,
    /// The admin listener (health, status, metrics, holds), if enabled.
    pub admin: Option<AdminSettings>,
    pub decision_log: DecisionLogSettings,
    pub log: LogSettings,
    pub state: StateSettings,
    pub holds: HoldSettings,
    /// Where hold notifications go (`holds.notify_url`), if anywhere.
    pub hold_webhook: Option<Webhook>,
    /// Fireblocks' webhooks (`[fireblocks_webhooks]`): their own listener, if configured.
    pub webhooks: Option<WebhookSettings>,
    /// The backends whose tokens prove a transaction's origin (`[origin]`), if configured.
    pub origin: Option<Arc<crate::origin::Origin>>,
    /// The approval console (`[console]`), served by the admin listener, if enabled.
    pub console: Option<ConsoleConfig>,
    /// Problems that do not stop start-up (e.g. a private key readable by others), logged then.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct WebhookSettings {
    pub listen: SocketAddr,
    pub path: String,
    pub keys: crate::lifecycle::WebhookKeys,
    /// The webhook listener's TLS: its own pair, else the Co-signer listener's.
    pub tls: Option<Arc<CertificateStore>>,
}

/// `[console]` as configured; the origin defaults, once the admin listener is bound, to
/// `http(s)://localhost:<port>`.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub rp_id: Option<String>,
    pub origin: Option<webauthn_rs::prelude::Url>,
    pub session_ttl: Duration,
}

#[derive(Debug)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Serve the admin API over TLS (approvals travel through it).
    pub tls: Option<Arc<CertificateStore>>,
}

#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    pub format: Option<LogFormat>,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ReloadSettings {
    /// Watch the policy directory and the TLS files, and reload on change (SIGHUP always reloads).
    pub watch: bool,
    /// Quiet period that ends a burst of file events.
    pub debounce: Duration,
    /// Activate a policy set (at start-up too) only if its Rego unit tests pass.
    pub require_tests: bool,
}

#[derive(Debug)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// `None` only when `insecure_http = true`.
    pub tls: Option<Arc<CertificateStore>>,
    /// Empty, or `/segment[/segment...]` without a trailing slash.
    pub path_prefix: String,
    pub max_body_bytes: usize,
    /// TLS handshake, request headers, and request body each must arrive within this.
    pub read_timeout: Duration,
    /// From receipt to answer; the fallback answers a request that would run past it.
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

#[derive(Debug)]
pub struct ProtocolSettings {
    pub modes: Vec<Mode>,
    pub handler_key: Option<Arc<HandlerKey>>,
    pub cosigner_keys: CosignerKeyring,
}

#[derive(Debug, Clone)]
pub struct PolicySettings {
    pub dir: PathBuf,
    /// A candidate set decided in the shadow of the active one (see `shadow`).
    pub candidate_dir: Option<PathBuf>,
    pub compile: CompileOptions,
    pub on_error: FallbackAction,
    pub on_timeout: FallbackAction,
    pub eval_threads: usize,
}

impl Settings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::resolve(read_raw(path)?, path.parent().unwrap_or(Path::new(".")))
    }

    /// Only the policy settings, for the policy tools (`test`, `check`, `eval`): they need neither
    /// keys nor certificates.
    pub fn load_policy(path: &Path) -> Result<PolicySettings, ConfigError> {
        let raw = read_raw(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        resolve_policy(raw.policy, &|p: &Path| base.join(p), load_timeout(&raw.reload)?)
    }

    fn resolve(raw: RawConfig, base: &Path) -> Result<Self, ConfigError> {
        // `env:NAME` names an environment variable, not a file: it is not relative to anything.
        let at = |p: &Path| if env_material(p).is_some() { p.to_path_buf() } else { base.join(p) };
        let mut warnings = Vec::new();
        let debounce_ms = raw.reload.debounce_ms.unwrap_or(DEFAULT_DEBOUNCE_MS);
        if debounce_ms == 0 || debounce_ms > 10_000 {
            return Err(key_error("reload.debounce_ms", "must be between 1 and 10000"));
        }
        let admin = resolve_admin(raw.admin, &at, &mut warnings)?;
        let protocol = resolve_protocol(raw.protocol, &at, &mut warnings)?;
        let decision_log = resolve_decision_log(raw.decision_log, protocol.handler_key.as_ref(), &at, &mut warnings)?;
        let (holds, hold_webhook) = resolve_holds(raw.holds, &at, &mut warnings)?;
        let origin = raw.origin.map(|raw| resolve_origin(raw, &at, holds.ttl, &mut warnings)).transpose()?;
        let server = resolve_server(raw.server, &at, &mut warnings)?;
        let console = raw.console.map(|raw| resolve_console(raw, admin.as_ref())).transpose()?.flatten();
        let webhooks =
            raw.fireblocks_webhooks.map(|raw| resolve_webhooks(raw, &at, &server, &mut warnings)).transpose()?;
        Ok(Self {
            console,
            webhooks,
            origin: origin.map(Arc::new),
            server,
            protocol,
            policy: resolve_policy(raw.policy, &at, load_timeout(&raw.reload)?)?,
            decision_log,
            state: resolve_state(raw.state, &at)?,
            holds,
            hold_webhook,
            log: LogSettings { format: raw.log.format, level: raw.log.level },
            warnings,
            reload: ReloadSettings {
                watch: raw.reload.watch.unwrap_or(true),
                debounce: Duration::from_millis(debounce_ms),
                require_tests: raw.reload.require_tests,
            },
            admin,
        })
    }
}

#[cfg(test)]
mod tests;
