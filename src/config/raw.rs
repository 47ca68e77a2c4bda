//! The configuration file as written: every section and key, nothing resolved yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::decision::FallbackAction;
use crate::envelope::Mode;
use crate::keys::SigningAlgorithm;
use crate::telemetry::LogFormat;

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) protocol: RawProtocol,
    #[serde(default)]
    pub(super) policy: RawPolicy,
    #[serde(default)]
    pub(super) reload: RawReload,
    #[serde(default)]
    pub(super) admin: RawAdmin,
    #[serde(default)]
    pub(super) decision_log: RawDecisionLog,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) holds: RawHolds,
    pub(super) origin: Option<RawOrigin>,
    pub(super) fireblocks_webhooks: Option<RawWebhooks>,
    pub(super) console: Option<RawConsole>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    pub(super) enabled: Option<bool>,
    pub(super) rp_id: Option<String>,
    pub(super) origin: Option<String>,
    pub(super) session_ttl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhooks {
    pub(super) listen: Option<String>,
    pub(super) path: Option<String>,
    pub(super) jwks: Option<String>,
    pub(super) jwks_ca: Option<PathBuf>,
    pub(super) legacy_public_key: Option<PathBuf>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrigin {
    pub(super) carrier: Option<String>,
    pub(super) max_age: Option<String>,
    #[serde(default)]
    pub(super) keys: BTreeMap<String, PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHolds {
    pub(super) ttl: Option<String>,
    pub(super) notify_url: Option<String>,
    pub(super) notify_ca: Option<PathBuf>,
    #[serde(default)]
    pub(super) approvers: BTreeMap<String, PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) backend: Option<String>,
    pub(super) path: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) key_prefix: Option<String>,
    pub(super) on_error: Option<FallbackAction>,
    pub(super) retention: Option<String>,
    pub(super) request_id_ttl: Option<String>,
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecisionLog {
    pub(super) enabled: Option<bool>,
    pub(super) sink: Option<String>,
    pub(super) path: Option<PathBuf>,
    pub(super) max_bytes: Option<u64>,
    pub(super) keep: Option<usize>,
    #[serde(default)]
    pub(super) durable: bool,
    #[serde(default)]
    pub(super) redact: Vec<String>,
    pub(super) checkpoint_every: Option<u64>,
    pub(super) checkpoint_key: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<LogFormat>,
    pub(super) level: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    pub(super) watch: Option<bool>,
    #[serde(default)]
    pub(super) require_tests: bool,
    pub(super) debounce_ms: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) enabled: Option<bool>,
    pub(super) listen: Option<String>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    /// Serve a non-loopback admin listener without TLS (a private network only).
    pub(super) allow_plaintext: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: String,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    #[serde(default)]
    pub(super) insecure_http: bool,
    #[serde(default)]
    pub(super) path_prefix: String,
    #[serde(default = "default_max_body_bytes")]
    pub(super) max_body_bytes: usize,
    pub(super) read_timeout_ms: Option<u64>,
    pub(super) request_timeout_ms: Option<u64>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) shutdown_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProtocol {
    #[serde(default = "default_modes")]
    pub(super) modes: Vec<Mode>,
    pub(super) signing_key: Option<PathBuf>,
    #[serde(default)]
    pub(super) signing_algorithm: SigningAlgorithm,
    #[serde(default)]
    pub(super) cosigner_keys: BTreeMap<String, PathBuf>,
}

impl Default for RawProtocol {
    fn default() -> Self {
        Self {
            modes: default_modes(),
            signing_key: None,
            signing_algorithm: SigningAlgorithm::default(),
            cosigner_keys: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) dir: Option<PathBuf>,
    pub(super) candidate_dir: Option<PathBuf>,
    pub(super) transaction_entrypoint: Option<String>,
    pub(super) config_change_entrypoint: Option<String>,
    #[serde(default)]
    pub(super) on_error: FallbackAction,
    pub(super) on_timeout: Option<FallbackAction>,
    pub(super) eval_timeout_ms: Option<u64>,
    pub(super) eval_threads: Option<usize>,
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

fn default_modes() -> Vec<Mode> {
    vec![Mode::Jwt]
}
pub(super) fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read { path: path.to_path_buf(), cause })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
}
