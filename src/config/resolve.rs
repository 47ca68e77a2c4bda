//! Resolution: every raw key validated and turned into settings, paths resolved against the
//! config file's directory, keys and certificates loaded once, every error naming its key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{Checkpoints, DecisionLogSettings, Sink};
use crate::envelope::Mode;
use crate::holds::{ApproverKey, HoldSettings};
use crate::keys::env_material;
use crate::keys::{CosignerKey, CosignerKeyring, HandlerKey, SigningAlgorithm};
use crate::lifecycle::{JwksSource, WebhookKeys};
use crate::notify::Webhook;
use crate::origin::{Carrier, Origin, OriginKey};
use crate::policy::{CompileOptions, Entrypoints};
use crate::state::{Backend, StateSettings, parse_window};
use crate::tls::CertificateStore;

use super::raw::*;
use super::*;

pub(super) fn resolve_admin(
    raw: RawAdmin,
    at: &impl Fn(&Path) -> PathBuf,
    warnings: &mut Vec<String>,
) -> Result<Option<AdminSettings>, ConfigError> {
    if !raw.enabled.unwrap_or(true) {
        return Ok(None);
    }
    let listen = raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    let listen = listen.parse().map_err(|e| key_error("admin.listen", format!("{listen:?}: {e}")))?;
    let tls = match (raw.tls_cert, raw.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            warn_if_exposed("admin.tls_key", &at(&key), warnings);
            let certs = CertificateStore::load(&at(&cert), &at(&key));
            Some(Arc::new(certs.map_err(|e| key_error("admin.tls_cert / admin.tls_key", e))?))
        }
        _ => return Err(key_error("admin.tls_cert", "tls_cert and tls_key go together")),
    };
    // Approvals, holds and the state travel through the admin API: off loopback, anyone on the
    // path could read them or change what an approver's tool shows before it signs.
    let listen: std::net::SocketAddr = listen;
    if tls.is_none() && !listen.ip().is_loopback() {
        if !raw.allow_plaintext.unwrap_or(false) {
            return Err(key_error(
                "admin.listen",
                format!(
                    "{listen} is not a loopback address and the admin API has no TLS: set admin.tls_cert and \
                     admin.tls_key (or admin.allow_plaintext = true on a private network you trust)"
                ),
            ));
        }
        warnings.push(format!(
            "admin.allow_plaintext: the admin API on {listen} is served without TLS; anyone on the path can read \
             holds and alter what approvers are shown"
        ));
    }
    Ok(Some(AdminSettings { listen, tls }))
}

/// The console needs the admin listener, TLS off loopback (passkeys and session cookies cross
/// the network), and an origin a browser treats as secure.
pub(super) fn resolve_console(
    raw: RawConsole,
    admin: Option<&AdminSettings>,
) -> Result<Option<ConsoleConfig>, ConfigError> {
    if !raw.enabled.unwrap_or(false) {
        return Ok(None);
    }
    let admin = admin.ok_or_else(|| {
        key_error("console.enabled", "the console is served by the admin listener, and admin.enabled is false")
    })?;
    if admin.tls.is_none() && !admin.listen.ip().is_loopback() {
        return Err(key_error(
            "console.enabled",
            format!(
                "the admin listener {} is not loopback and has no TLS: approvers' sessions and passkey \
                 ceremonies would cross the network in clear; set admin.tls_cert and admin.tls_key",
                admin.listen
            ),
        ));
    }
    let origin = raw
        .origin
        .map(|text| {
            let url = webauthn_rs::prelude::Url::parse(&text)
                .map_err(|e| key_error("console.origin", format!("{text:?}: {e}")))?;
            let local = url.host_str() == Some("localhost");
            if url.scheme() != "https" && !(local && url.scheme() == "http") {
                return Err(key_error(
                    "console.origin",
                    "browsers allow passkeys on https:// origins (or http://localhost)",
                ));
            }
            if url.path() != "/" || url.query().is_some() {
                return Err(key_error("console.origin", format!("{text:?}: scheme, host and port only")));
            }
            Ok(url)
        })
        .transpose()?;
    if origin.is_none() && !admin.listen.ip().is_loopback() {
        return Err(key_error(
            "console.origin",
            "the admin listener is not loopback: set console.origin to the https:// address approvers open",
        ));
    }
    let session_ttl = match raw.session_ttl {
        None => Duration::from_secs(15 * 60),
        Some(text) => parse_window(&text).map_err(|e| key_error("console.session_ttl", e))?,
    };
    if session_ttl.is_zero() || session_ttl > Duration::from_secs(12 * 3600) {
        return Err(key_error("console.session_ttl", "between 1s and 12h"));
    }
    Ok(Some(ConsoleConfig { rp_id: raw.rp_id, origin, session_ttl }))
}

pub(super) fn resolve_webhooks(
    raw: RawWebhooks,
    at: &impl Fn(&Path) -> PathBuf,
    server: &ServerSettings,
    warnings: &mut Vec<String>,
) -> Result<WebhookSettings, ConfigError> {
    let listen = raw.listen.as_deref().unwrap_or("0.0.0.0:8444");
    let listen: std::net::SocketAddr =
        listen.parse().map_err(|e| key_error("fireblocks_webhooks.listen", format!("{listen:?}: {e}")))?;
    let path = raw.path.unwrap_or_else(|| "/fireblocks/webhook".into());
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        return Err(key_error("fireblocks_webhooks.path", format!("{path:?}: a path starting with /")));
    }
    let tls = match (raw.tls_cert, raw.tls_key) {
        (None, None) => server.tls.clone(),
        (Some(cert), Some(key)) => {
            warn_if_exposed("fireblocks_webhooks.tls_key", &at(&key), warnings);
            let certs = CertificateStore::load(&at(&cert), &at(&key));
            Some(Arc::new(
                certs.map_err(|e| key_error("fireblocks_webhooks.tls_cert / fireblocks_webhooks.tls_key", e))?,
            ))
        }
        _ => return Err(key_error("fireblocks_webhooks.tls_cert", "tls_cert and tls_key go together")),
    };
    // Fireblocks delivers to https URLs only; statuses that release limits must not be forgeable
    // on the way.
    if tls.is_none() && !listen.ip().is_loopback() {
        return Err(key_error(
            "fireblocks_webhooks.listen",
            format!("{listen} is not a loopback address and the webhook listener has no TLS"),
        ));
    }
    let jwks = match raw.jwks {
        None => None,
        Some(url) if url.starts_with("https://") => {
            let ca = match raw.jwks_ca {
                Some(ca) => std::fs::read(at(&ca)),
                None => std::fs::read(crate::http_client::SYSTEM_CAS),
            };
            let ca = ca.map_err(|e| key_error("fireblocks_webhooks.jwks_ca", e))?;
            Some(JwksSource::Url { url, ca })
        }
        Some(url) if url.contains("://") => {
            return Err(key_error("fireblocks_webhooks.jwks", format!("{url:?}: a file or an https URL")));
        }
        Some(file) => Some(JwksSource::File(at(Path::new(&file)))),
    };
    let legacy = match &raw.legacy_public_key {
        Some(path) => Some(read_key_material("fireblocks_webhooks.legacy_public_key", path, at, false, warnings)?),
        None => None,
    };
    if jwks.is_none() && legacy.is_none() {
        return Err(key_error("fireblocks_webhooks.jwks", "a JWKS (v2) or a legacy_public_key (v1) is required"));
    }
    let keys = WebhookKeys::new(jwks, legacy.as_deref()).map_err(|e| {
        let key = if e.contains("JWKS") || e.contains("cannot read") {
            "fireblocks_webhooks.jwks"
        } else {
            "fireblocks_webhooks.legacy_public_key"
        };
        key_error(key, e)
    })?;
    Ok(WebhookSettings { listen, path, keys, tls })
}

pub(super) fn resolve_origin(
    raw: RawOrigin,
    at: &impl Fn(&Path) -> PathBuf,
    hold_ttl: Duration,
    warnings: &mut Vec<String>,
) -> Result<Origin, ConfigError> {
    let carrier = raw.carrier.as_deref().unwrap_or("note");
    let carrier = Carrier::parse(carrier).ok_or_else(|| {
        key_error(
            "origin.carrier",
            format!("{carrier:?}: expected \"note\", \"externalTxId\" or \"extraParameters.KEY\""),
        )
    })?;
    let max_age = match raw.max_age {
        None => Duration::from_secs(3600),
        Some(text) => parse_window(&text).map_err(|e| key_error("origin.max_age", e))?,
    };
    if max_age > crate::origin::MAX_AGE_LIMIT {
        return Err(key_error("origin.max_age", "must be at most 30d"));
    }
    if max_age < hold_ttl {
        warnings.push(format!(
            "origin.max_age ({}s) is shorter than holds.ttl ({}s): a held transfer whose approvers take longer \
             than its token's age is refused when it is released",
            max_age.as_secs(),
            hold_ttl.as_secs()
        ));
    }
    let mut keys = Vec::new();
    for (name, path) in &raw.keys {
        let setting = format!("origin.keys.{name}");
        let pem = read_key_material(&setting, path, at, false, warnings)?;
        keys.push(OriginKey::from_pem(name, &pem).map_err(|e| key_error(&setting, e))?);
    }
    if keys.is_empty() {
        return Err(key_error("origin.keys", "at least one backend public key is required"));
    }
    Ok(Origin { carrier, max_age, keys })
}

pub(super) fn resolve_holds(
    raw: RawHolds,
    at: &impl Fn(&Path) -> PathBuf,
    warnings: &mut Vec<String>,
) -> Result<(HoldSettings, Option<Webhook>), ConfigError> {
    let defaults = HoldSettings::default();
    let ttl = match raw.ttl {
        None => defaults.ttl,
        Some(text) => parse_window(&text).map_err(|e| key_error("holds.ttl", e))?,
    };
    if ttl > Duration::from_secs(7 * 86_400) {
        return Err(key_error("holds.ttl", "must be at most 7d"));
    }
    if ttl > Duration::from_secs(3600) {
        warnings.push(format!(
            "holds.ttl = {}s outlives the Co-signer's retries (about an hour): a hold released after that is \
             never asked about again",
            ttl.as_secs()
        ));
    }
    let mut approvers = Vec::new();
    for (name, path) in &raw.approvers {
        let setting = format!("holds.approvers.{name}");
        if !crate::holds::valid_approver_name(name) {
            return Err(key_error(&setting, "an approver's name is up to 64 letters, digits and . _ - @"));
        }
        let pem = read_key_material(&setting, path, at, false, warnings)?;
        approvers.push(Arc::new(ApproverKey::from_pem(name, &pem).map_err(|e| key_error(&setting, e))?));
    }
    let notify = match raw.notify_url {
        None => None,
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
            let ca = match &raw.notify_ca {
                Some(path) => Some(read_key_material("holds.notify_ca", path, at, false, warnings)?),
                None => None,
            };
            Some(Webhook { url, ca })
        }
        Some(url) => return Err(key_error("holds.notify_url", format!("{url:?}: expected https:// or http://"))),
    };
    Ok((HoldSettings { ttl, approvers }, notify))
}

pub(super) fn resolve_server(
    raw: RawServer,
    at: &impl Fn(&Path) -> PathBuf,
    warnings: &mut Vec<String>,
) -> Result<ServerSettings, ConfigError> {
    let listen = raw.listen.parse().map_err(|e| key_error("server.listen", format!("{:?}: {e}", raw.listen)))?;
    let tls = match (raw.insecure_http, raw.tls_cert, raw.tls_key) {
        (true, None, None) => None,
        (true, _, _) => {
            return Err(key_error("server.insecure_http", "set either insecure_http or tls_cert/tls_key, not both"));
        }
        (false, Some(cert), Some(key)) => {
            warn_if_exposed("server.tls_key", &at(&key), warnings);
            Some(Arc::new(
                CertificateStore::load(&at(&cert), &at(&key))
                    .map_err(|e| key_error("server.tls_cert / server.tls_key", e))?,
            ))
        }
        (false, _, _) => {
            return Err(key_error(
                "server.tls_cert",
                "tls_cert and tls_key are required (plain HTTP needs insecure_http = true, for development only)",
            ));
        }
    };
    let prefix = raw.path_prefix.trim_end_matches('/');
    if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.contains("//")) {
        return Err(key_error("server.path_prefix", format!("{:?} must start with '/'", raw.path_prefix)));
    }
    if raw.max_body_bytes == 0 {
        return Err(key_error("server.max_body_bytes", "must be greater than 0"));
    }
    let millis = |key: &str, value: Option<u64>, default: u64, max: u64| match value.unwrap_or(default) {
        0 => Err(key_error(key, "must be greater than 0")),
        ms if ms > max => Err(key_error(key, format!("must be at most {max}"))),
        ms => Ok(Duration::from_millis(ms)),
    };
    let count = |key: &str, value: Option<usize>, default: usize| match value.unwrap_or(default) {
        0 => Err(key_error(key, "must be greater than 0")),
        n => Ok(n),
    };
    Ok(ServerSettings {
        listen,
        tls,
        path_prefix: prefix.to_string(),
        max_body_bytes: raw.max_body_bytes,
        read_timeout: millis("server.read_timeout_ms", raw.read_timeout_ms, 10_000, 60_000)?,
        request_timeout: millis("server.request_timeout_ms", raw.request_timeout_ms, 20_000, 29_000)?,
        max_in_flight: count("server.max_in_flight", raw.max_in_flight, 512)?,
        max_connections: count("server.max_connections", raw.max_connections, 4096)?,
        shutdown_timeout: millis("server.shutdown_timeout_ms", raw.shutdown_timeout_ms, 25_000, 600_000)?,
    })
}

pub(super) fn resolve_protocol(
    raw: RawProtocol,
    at: &impl Fn(&Path) -> PathBuf,
    warnings: &mut Vec<String>,
) -> Result<ProtocolSettings, ConfigError> {
    let mut modes = raw.modes;
    modes.dedup();
    if modes.is_empty() {
        return Err(key_error("protocol.modes", "at least one of \"jwt\", \"json\" is required"));
    }
    let jwt = modes.contains(&Mode::Jwt);
    let handler_key = match raw.signing_key {
        Some(path) => {
            let pem = read_key_material("protocol.signing_key", &path, at, true, warnings)?;
            let key = HandlerKey::from_pem_for(&pem, raw.signing_algorithm);
            Some(Arc::new(key.map_err(|e| key_error("protocol.signing_key", e))?))
        }
        None if jwt => {
            return Err(key_error("protocol.signing_key", "required when the jwt mode is enabled"));
        }
        None => None,
    };
    let mut keys = Vec::new();
    for (name, path) in &raw.cosigner_keys {
        let setting = format!("protocol.cosigner_keys.{name}");
        let pem = read_key_material(&setting, path, at, false, warnings)?;
        let key = CosignerKey::from_pem(name, &pem).map_err(|e| key_error(&setting, e))?;
        keys.push(key);
    }
    if jwt && keys.is_empty() {
        return Err(key_error("protocol.cosigner_keys", "at least one Co-signer public key is required in jwt mode"));
    }
    Ok(ProtocolSettings { modes, handler_key, cosigner_keys: CosignerKeyring::new(keys) })
}

pub(super) fn resolve_policy(
    raw: RawPolicy,
    at: &impl Fn(&Path) -> PathBuf,
    load_timeout: Duration,
) -> Result<PolicySettings, ConfigError> {
    let defaults = Entrypoints::default();
    let timeout_ms = raw.eval_timeout_ms.unwrap_or(DEFAULT_EVAL_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_EVAL_TIMEOUT_MS {
        return Err(key_error("policy.eval_timeout_ms", format!("must be between 1 and {MAX_EVAL_TIMEOUT_MS}")));
    }
    let threads =
        raw.eval_threads.unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(2));
    if threads == 0 {
        return Err(key_error("policy.eval_threads", "must be greater than 0"));
    }
    for (key, entrypoint) in [
        ("policy.transaction_entrypoint", &raw.transaction_entrypoint),
        ("policy.config_change_entrypoint", &raw.config_change_entrypoint),
    ] {
        if let Some(e) = entrypoint
            && !e.starts_with("data.")
        {
            return Err(key_error(key, format!("{e:?} must be a rule path starting with \"data.\"")));
        }
    }
    Ok(PolicySettings {
        dir: std::path::absolute(at(raw.dir.as_deref().unwrap_or(Path::new("policies"))))
            .map_err(|e| key_error("policy.dir", e))?,
        candidate_dir: match &raw.candidate_dir {
            Some(dir) => Some(std::path::absolute(at(dir)).map_err(|e| key_error("policy.candidate_dir", e))?),
            None => None,
        },
        compile: CompileOptions {
            entrypoints: Entrypoints {
                transaction: raw.transaction_entrypoint.unwrap_or(defaults.transaction),
                config_change: raw.config_change_entrypoint.unwrap_or(defaults.config_change),
            },
            eval_timeout: Duration::from_millis(timeout_ms),
            load_timeout,
            coverage: false,
            with_tests: false,
        },
        on_error: raw.on_error,
        on_timeout: raw.on_timeout.unwrap_or(raw.on_error),
        eval_threads: threads,
    })
}

pub(super) fn resolve_decision_log(
    raw: RawDecisionLog,
    handler_key: Option<&Arc<HandlerKey>>,
    at: &impl Fn(&Path) -> PathBuf,
    warnings: &mut Vec<String>,
) -> Result<DecisionLogSettings, ConfigError> {
    let sink = match (raw.sink.as_deref().unwrap_or("stdout"), raw.path) {
        _ if !raw.enabled.unwrap_or(true) => Sink::Off,
        ("stdout", None) => Sink::Stdout,
        ("file", Some(path)) => Sink::File {
            path: at(&path),
            max_bytes: raw.max_bytes.unwrap_or(100 * 1024 * 1024).max(1),
            keep: raw.keep.unwrap_or(5),
        },
        ("file", None) => return Err(key_error("decision_log.path", "required with sink = \"file\"")),
        ("stdout", Some(_)) => return Err(key_error("decision_log.path", "only with sink = \"file\"")),
        (other, _) => {
            return Err(key_error("decision_log.sink", format!("{other:?}: expected \"stdout\" or \"file\"")));
        }
    };
    for pointer in &raw.redact {
        if !pointer.starts_with('/') {
            return Err(key_error(
                "decision_log.redact",
                format!("{pointer:?} is not a JSON pointer (\"/request/...\")"),
            ));
        }
    }
    // Signed checkpoints, by the handler's key unless another is named.
    let every = raw.checkpoint_every.unwrap_or(DEFAULT_CHECKPOINT_EVERY);
    let key = match &raw.checkpoint_key {
        Some(path) => {
            let setting = "decision_log.checkpoint_key";
            let pem = read_key_material(setting, path, at, true, warnings)?;
            let key = HandlerKey::from_pem_for(&pem, SigningAlgorithm::Rs256)
                .or_else(|_| HandlerKey::from_pem_for(&pem, SigningAlgorithm::Es256))
                .map_err(|e| key_error(setting, e))?;
            Some(Arc::new(key))
        }
        None => handler_key.cloned(),
    };
    let checkpoints = match (&sink, key) {
        (Sink::File { .. } | Sink::Stdout, Some(key)) if every > 0 => Some(Checkpoints { key, every }),
        (Sink::File { .. } | Sink::Stdout, None) if raw.checkpoint_every.is_some_and(|n| n > 0) => {
            return Err(key_error(
                "decision_log.checkpoint_every",
                "needs a key to sign with: decision_log.checkpoint_key or protocol.signing_key",
            ));
        }
        _ => None,
    };
    Ok(DecisionLogSettings { sink, durable: raw.durable, redact: raw.redact, checkpoints })
}

pub(super) fn resolve_state(raw: RawState, at: &impl Fn(&Path) -> PathBuf) -> Result<StateSettings, ConfigError> {
    let defaults = StateSettings::default();
    let backend = match (raw.backend.as_deref().unwrap_or("embedded"), raw.url) {
        ("embedded", None) => Backend::Embedded { dir: at(raw.path.as_deref().unwrap_or(Path::new("state"))) },
        ("embedded", Some(_)) => return Err(key_error("state.url", "only with backend = \"redis\"")),
        ("redis", None) => return Err(key_error("state.url", "required with backend = \"redis\"")),
        ("redis", Some(url)) => {
            if raw.path.is_some() {
                return Err(key_error("state.path", "only with backend = \"embedded\""));
            }
            let url = match url.strip_prefix("env:") {
                Some(var) => std::env::var(var)
                    .map_err(|_| key_error("state.url", format!("environment variable {var} is not set")))?,
                None => url,
            };
            if !["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|s| url.starts_with(s)) {
                return Err(key_error("state.url", "expected redis://, rediss:// or unix:// (or env:NAME)"));
            }
            let prefix = raw.key_prefix.unwrap_or_else(|| "cosigner-guard".into());
            if prefix.is_empty() || prefix.contains(['{', '}']) {
                return Err(key_error("state.key_prefix", "must be non-empty, without braces"));
            }
            Backend::Redis { url, prefix }
        }
        (other, _) => {
            return Err(key_error("state.backend", format!("{other:?}: expected \"embedded\" or \"redis\"")));
        }
    };
    let duration = |key: &str, value: Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(text) => parse_window(&text).map_err(|e| key_error(key, e)),
    };
    let timeout_ms = raw.timeout_ms.unwrap_or(defaults.timeout.as_millis() as u64);
    if timeout_ms == 0 || timeout_ms > 10_000 {
        return Err(key_error("state.timeout_ms", "must be between 1 and 10000"));
    }
    Ok(StateSettings {
        backend,
        retention: duration("state.retention", raw.retention, defaults.retention)?,
        request_id_ttl: duration("state.request_id_ttl", raw.request_id_ttl, defaults.request_id_ttl)?,
        on_error: raw.on_error.unwrap_or(defaults.on_error),
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// Key material named by a config value: a file path (relative to the config file), or
/// `env:NAME` for PEM text in an environment variable. A private key file readable by group or
/// others gets a warning.
pub(super) fn read_key_material(
    setting: &str,
    value: &Path,
    at: &impl Fn(&Path) -> PathBuf,
    private: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<u8>, ConfigError> {
    if let Some(var) = env_material(value) {
        return std::env::var(var)
            .map(String::into_bytes)
            .map_err(|_| key_error(setting, format!("environment variable {var} is not set")));
    }
    let path = at(value);
    if private {
        warn_if_exposed(setting, &path, warnings);
    }
    std::fs::read(&path).map_err(|e| key_error(setting, format!("cannot read {}: {e}", path.display())))
}

pub(super) fn warn_if_exposed(setting: &str, path: &Path, warnings: &mut Vec<String>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            warnings.push(format!(
                "{setting}: private key file {} is readable by group or others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
    }
}
