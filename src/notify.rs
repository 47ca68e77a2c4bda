//! Hold notifications: a JSON summary POSTed to `[holds] notify_url` when a hold is created, when
//! it is decided and when it expires — in the background, with retries and a timeout, never in a
//! decision's way. Each is signed with the handler's key (`Cosigner-Guard-Signature`: a detached
//! JWS over the body, verifiable with the handler's public key), so a receiver can tell ours from
//! anyone's.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::sync::Semaphore;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::holds::{Hold, timestamp};
use crate::http_client::Target;
use crate::keys::HandlerKey;
use crate::metrics::Metrics;

/// Deliveries in progress at once; past this, a notification is dropped (and counted).
const MAX_PENDING: usize = 64;
const ATTEMPTS: u32 = 4;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
use crate::http_client::SYSTEM_CAS;

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    /// PEM certificates to trust for an https URL (default: the system's CAs).
    pub ca: Option<Vec<u8>>,
}

#[derive(Clone)]
pub struct Notifier {
    webhook: Option<Arc<Webhook>>,
    key: Option<Arc<HandlerKey>>,
    pending: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// The header carrying a notification's signature.
pub const SIGNATURE_HEADER: &str = "Cosigner-Guard-Signature";

impl Notifier {
    /// Notifications to `webhook`, signed with `key` (the handler's) when there is one.
    pub fn new(webhook: Option<Webhook>, key: Option<Arc<HandlerKey>>, metrics: Arc<Metrics>) -> Self {
        Self { webhook: webhook.map(Arc::new), key, pending: Arc::new(Semaphore::new(MAX_PENDING)), metrics }
    }

    pub fn is_configured(&self) -> bool {
        self.webhook.is_some()
    }

    /// Sends `event` (`hold_created`, `hold_approved`, `hold_rejected`, `hold_expired`,
    /// `hold_cancelled`) about
    /// `hold`, in the background.
    pub fn hold_event(&self, event: &'static str, hold: &Hold) {
        let Some(webhook) = self.webhook.clone() else { return };
        let now = Utc::now();
        let body = json!({"event": event, "at": timestamp(now), "hold": hold.view(now)}).to_string().into_bytes();
        let signature = match self.key.as_deref().map(|key| sign(key, &body)).transpose() {
            Ok(signature) => signature,
            Err(error) => {
                tracing::error!(%error, event, "a hold notification could not be signed: not sent");
                self.metrics.notified("failed");
                return;
            }
        };
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::warn!(event, hold = hold.id, "hold notification dropped: too many deliveries in progress");
            self.metrics.notified("dropped");
            return;
        };
        let metrics = self.metrics.clone();
        let id = hold.id.clone();
        tokio::spawn(async move {
            let result = deliver(&webhook, &body, signature.as_deref()).await;
            drop(permit);
            match result {
                Ok(()) => metrics.notified("sent"),
                Err(error) => {
                    tracing::error!(event, hold = id, %error, "hold notification failed after {ATTEMPTS} attempts");
                    metrics.notified("failed");
                }
            }
        });
    }
}

/// `<protected header>..<signature>`: a JWS over `body` detached from it (RFC 7515 appendix F), by
/// the handler's key with its own algorithm; `kid` is the key's SHA-256 fingerprint.
pub fn sign(key: &HandlerKey, body: &[u8]) -> Result<String, crate::keys::KeyError> {
    let header = json!({"alg": key.algorithm().as_str(), "kid": key.fingerprint()}).to_string();
    let protected = URL_SAFE_NO_PAD.encode(header);
    let signature = key.sign(format!("{protected}.{}", URL_SAFE_NO_PAD.encode(body)).as_bytes())?;
    Ok(format!("{protected}..{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// POSTs `body`, retrying with 1 s, 2 s, 4 s pauses until a 2xx.
async fn deliver(webhook: &Webhook, body: &[u8], signature: Option<&str>) -> anyhow::Result<()> {
    let mut last = anyhow::anyhow!("not attempted");
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
        match tokio::time::timeout(ATTEMPT_TIMEOUT, post(webhook, body, signature)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => last = error,
            Err(_) => last = anyhow::anyhow!("no answer within {ATTEMPT_TIMEOUT:?}"),
        }
    }
    Err(last)
}

async fn post(webhook: &Webhook, body: &[u8], signature: Option<&str>) -> anyhow::Result<()> {
    let system;
    let ca = match (&webhook.ca, webhook.url.starts_with("https://")) {
        (Some(ca), _) => Some(ca.as_slice()),
        (None, true) => {
            system = std::fs::read(SYSTEM_CAS)?;
            Some(system.as_slice())
        }
        (None, false) => None,
    };
    let target = Target::new(&webhook.url, ca).await?;
    let headers: Vec<(&str, &str)> = signature.map(|s| (SIGNATURE_HEADER, s)).into_iter().collect();
    let (status, answer) = target.connect().await?.post_with("", &headers, body.to_vec()).await?;
    anyhow::ensure!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&answer[..answer.len().min(200)]));
    Ok(())
}
