//! Hold notifications: a JSON summary POSTed to `[holds] notify_url` when a hold is created and
//! when it is decided — in the background, with retries and a timeout, never in a decision's way.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::holds::{Hold, timestamp};
use crate::http_client::Target;
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
    pending: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn new(webhook: Option<Webhook>, metrics: Arc<Metrics>) -> Self {
        Self { webhook: webhook.map(Arc::new), pending: Arc::new(Semaphore::new(MAX_PENDING)), metrics }
    }

    /// Sends `event` (`hold_created`, `hold_approved`, `hold_rejected`) about `hold`, in the background.
    pub fn hold_event(&self, event: &'static str, hold: &Hold) {
        let Some(webhook) = self.webhook.clone() else { return };
        let now = Utc::now();
        let body = json!({"event": event, "at": timestamp(now), "hold": hold.view(now)});
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::warn!(event, hold = hold.id, "hold notification dropped: too many deliveries in progress");
            self.metrics.notified("dropped");
            return;
        };
        let metrics = self.metrics.clone();
        let id = hold.id.clone();
        tokio::spawn(async move {
            let result = deliver(&webhook, &body).await;
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

/// POSTs `body`, retrying with 1 s, 2 s, 4 s pauses until a 2xx.
async fn deliver(webhook: &Webhook, body: &Value) -> anyhow::Result<()> {
    let mut last = anyhow::anyhow!("not attempted");
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
        match tokio::time::timeout(ATTEMPT_TIMEOUT, post(webhook, body)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => last = error,
            Err(_) => last = anyhow::anyhow!("no answer within {ATTEMPT_TIMEOUT:?}"),
        }
    }
    Err(last)
}

async fn post(webhook: &Webhook, body: &Value) -> anyhow::Result<()> {
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
    let (status, answer) = target.connect().await?.post_json("", body).await?;
    anyhow::ensure!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&answer[..answer.len().min(200)]));
    Ok(())
}
