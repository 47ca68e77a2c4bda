//! The rest of a transaction's life, after our answer: Fireblocks' webhooks say what became of it.
//! A verified status is applied once (an event id seen before changes nothing) and in order (a
//! status older than the last applied changes nothing): a transaction that FAILED, was
//! CANCELLED, BLOCKED or REJECTED has its records released — they stop counting against limits
//! over time — and its pending hold cancelled; every applied status is kept with its records and
//! written to the decision log. `release` does the same by hand, for workspaces without webhooks.

mod events;
mod verify;

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use crate::audit::DecisionLog;
use crate::holds::{HoldSettings, Holds, timestamp};
use crate::metrics::Metrics;
use crate::state::{StateError, StateStore, StatusApplied, StatusUpdate};

pub use events::{Event, EventError, RELEASING, StatusEvent, parse};
pub use verify::{JwksSource, Unverified, WebhookKeys};

/// What the decision log keeps of an applied status, chained like every record.
#[derive(Serialize)]
struct StatusRecord<'a> {
    event: &'static str,
    timestamp: String,
    #[serde(rename = "txId")]
    tx_id: &'a str,
    status: &'a str,
    #[serde(rename = "subStatus")]
    sub_status: Option<&'a str>,
    #[serde(rename = "txHash")]
    tx_hash: Option<&'a str>,
    fee: Option<&'a Value>,
    #[serde(rename = "netAmount")]
    net_amount: Option<&'a Value>,
    #[serde(rename = "lastUpdated")]
    last_updated: u64,
    #[serde(rename = "eventId")]
    event_id: &'a str,
    #[serde(rename = "webhookVersion")]
    version: u8,
    /// The keys whose records of the transaction no longer count.
    released: &'a [String],
    #[serde(rename = "holdCancelled")]
    hold_cancelled: bool,
}

/// What the decision log keeps of a release by hand.
#[derive(Serialize)]
struct ReleaseRecord<'a> {
    event: &'static str,
    timestamp: String,
    #[serde(rename = "txId")]
    tx_id: &'a str,
    reason: &'a str,
    by: &'a str,
    released: &'a [String],
    #[serde(rename = "holdCancelled")]
    hold_cancelled: bool,
}

/// A release by hand as it travels to the admin API; from anywhere but loopback it must be signed
/// by an approver (releasing a transaction gives its amount back to every limit it counted in).
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    #[serde(default)]
    pub reason: String,
    /// RFC 3339: when it was signed (within 10 minutes of the server's clock).
    #[serde(default)]
    pub at: Option<String>,
    /// Base64 of an approver's signature over [`ReleaseRequest::message`].
    #[serde(default)]
    pub signature: Option<String>,
}

impl ReleaseRequest {
    /// The exact bytes an approver signs.
    pub fn message(tx_id: &str, at: &str, reason: &str) -> Vec<u8> {
        format!("cosigner-guard release v1\ntxId: {tx_id}\nat: {at}\nreason: {reason}\n").into_bytes()
    }

    /// A release of `tx_id` signed with an approver's private key.
    pub fn signed(tx_id: &str, reason: &str, key: &crate::holds::ApproverSigningKey) -> Self {
        use base64::Engine as _;
        let at = timestamp(Utc::now());
        let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&Self::message(tx_id, &at, reason)));
        Self { reason: reason.to_string(), at: Some(at), signature: Some(signature) }
    }

    /// The approver who signed it for `tx_id`, recently; `None` if nobody did.
    pub fn approver(&self, tx_id: &str, approvers: &[Arc<crate::holds::ApproverKey>]) -> Option<String> {
        use base64::Engine as _;
        let (at, signature) = (self.at.as_deref()?, self.signature.as_deref()?);
        let when = chrono::DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
        if (Utc::now() - when).abs() > chrono::Duration::minutes(10) {
            return None;
        }
        let signature = base64::engine::general_purpose::STANDARD.decode(signature).ok()?;
        crate::holds::signed_by(approvers, &Self::message(tx_id, at, &self.reason), &signature)
    }
}

/// Why a delivery changed nothing and was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Unverified(#[from] Unverified),
    #[error(transparent)]
    Event(#[from] EventError),
    /// The store did not answer: Fireblocks delivers again later.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What became of a verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Applied { released: usize, hold_cancelled: bool },
    Duplicate,
    Stale,
    Ignored,
}

impl Received {
    pub fn result(&self) -> &'static str {
        match self {
            Received::Applied { .. } => "applied",
            Received::Duplicate => "duplicate",
            Received::Stale => "stale",
            Received::Ignored => "ignored",
        }
    }
}

/// Hears of each hold the lifecycle cancels.
type CancellationNotice = Box<dyn Fn(&crate::holds::Hold) + Send + Sync>;

pub struct Lifecycle {
    keys: Option<WebhookKeys>,
    state: Arc<StateStore>,
    holds: Holds,
    log: Arc<DecisionLog>,
    metrics: Arc<Metrics>,
    /// Told of each hold cancelled (the hold webhook's `hold_cancelled`), when set.
    on_cancelled: Option<CancellationNotice>,
}

impl Lifecycle {
    /// Without keys ([`Lifecycle::with_keys`]) only releases by hand are possible.
    pub fn new(state: Arc<StateStore>, holds: HoldSettings, log: Arc<DecisionLog>, metrics: Arc<Metrics>) -> Self {
        let holds = Holds::new(state.clone(), holds);
        Self { keys: None, state, holds, log, metrics, on_cancelled: None }
    }

    /// `notice` hears of every hold this cancels (the server sends `hold_cancelled` to the hold
    /// webhook with it: approvers waiting on it learn there is nothing left to approve).
    pub fn on_cancelled(mut self, notice: impl Fn(&crate::holds::Hold) + Send + Sync + 'static) -> Self {
        self.on_cancelled = Some(Box::new(notice));
        self
    }

    /// Webhook deliveries are verified with `keys`.
    pub fn with_keys(mut self, keys: WebhookKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    pub fn keys(&self) -> Option<&WebhookKeys> {
        self.keys.as_ref()
    }

    /// The approver who signed `request` for `tx_id`, if one did.
    pub fn approver_of(&self, tx_id: &str, request: &ReleaseRequest) -> Option<String> {
        request.approver(tx_id, &self.holds.settings().approvers)
    }

    /// A webhook delivery: verified, read, applied. `header` reads a request header by its
    /// lowercase name.
    pub async fn receive(&self, header: impl Fn(&str) -> Option<String>, body: &[u8]) -> Result<Received, Refused> {
        let received = self.apply(header, body).await;
        let (event, result) = match &received {
            Ok((event, received)) => (event.as_str(), received.result()),
            Err(Refused::Unverified(e)) => ("unknown", e.code()),
            Err(Refused::Event(_)) => ("unknown", "malformed"),
            Err(Refused::State(_)) => ("unknown", "state_error"),
        };
        self.metrics.webhook_event(event, result);
        received.map(|(_, received)| received)
    }

    async fn apply(&self, header: impl Fn(&str) -> Option<String>, body: &[u8]) -> Result<(String, Received), Refused> {
        let keys = self.keys.as_ref().ok_or(Unverified::Unsigned)?;
        let version = keys.verify(header, body).await?;
        let event = match parse(body)? {
            Event::Other { kind } => return Ok((other_kind(&kind), Received::Ignored)),
            Event::Status(event) => event,
        };
        let final_state = serde_json::json!({
            "status": event.status, "subStatus": event.sub_status, "txHash": event.tx_hash,
            "fee": event.fee, "netAmount": event.net_amount, "lastUpdated": event.last_updated_ms,
        });
        let update = StatusUpdate {
            event_id: event.id.clone(),
            tx_id: event.tx_id.clone(),
            last_updated_ms: event.last_updated_ms,
            json: final_state.to_string(),
            release: event.releases(),
            at_us: Utc::now().timestamp_micros().max(0) as u64,
        };
        let released = match self.state.apply_status(update).await? {
            StatusApplied::Duplicate => return Ok((event.kind.to_string(), Received::Duplicate)),
            StatusApplied::Stale => return Ok((event.kind.to_string(), Received::Stale)),
            StatusApplied::Applied { released } => released,
        };
        let hold_cancelled = event.releases()
            && self.cancel_hold(&event.tx_id, format!("the transaction is {} in Fireblocks", event.status)).await;
        self.metrics.released_records(released.len());
        tracing::info!(
            tx_id = event.tx_id,
            status = event.status,
            released = released.len(),
            "Fireblocks status applied"
        );
        let record = StatusRecord {
            event: "fireblocks_status",
            timestamp: timestamp(Utc::now()),
            tx_id: &event.tx_id,
            status: &event.status,
            sub_status: event.sub_status.as_deref(),
            tx_hash: event.tx_hash.as_deref(),
            fee: event.fee.as_ref(),
            net_amount: event.net_amount.as_ref(),
            last_updated: event.last_updated_ms,
            event_id: &event.id,
            version,
            released: &released,
            hold_cancelled,
        };
        self.append(&record).await;
        Ok((event.kind.to_string(), Received::Applied { released: released.len(), hold_cancelled }))
    }

    /// Releases transaction `tx_id`'s records by hand and cancels its pending hold; logged with
    /// who asked (an approver, or `loopback`).
    pub async fn release(&self, tx_id: &str, reason: &str, by: &str) -> Result<(Vec<String>, bool), StateError> {
        let released = self.state.release(tx_id).await?;
        let hold_cancelled = self.cancel_hold(tx_id, format!("released by hand: {reason}")).await;
        self.metrics.released_records(released.len());
        tracing::info!(tx_id, reason, released = released.len(), "records released by hand");
        let record = ReleaseRecord {
            event: "state_release",
            timestamp: timestamp(Utc::now()),
            tx_id,
            reason,
            by,
            released: &released,
            hold_cancelled,
        };
        self.append(&record).await;
        Ok((released, hold_cancelled))
    }

    /// Cancels the transaction's pending hold; whether there was one.
    async fn cancel_hold(&self, tx_id: &str, reason: String) -> bool {
        match self.holds.cancel(tx_id, reason, Utc::now()).await {
            Ok(Some(hold)) => {
                if let Some(notice) = &self.on_cancelled {
                    notice(&hold);
                }
                true
            }
            Ok(None) => false,
            Err(error) => {
                // The gate still refuses nothing it should not: a hold left pending only waits.
                tracing::error!(%error, tx_id, "the transaction's hold could not be cancelled");
                false
            }
        }
    }

    async fn append(&self, record: &impl Serialize) {
        if let Err(error) = self.log.append(record).await {
            tracing::error!(%error, "the decision log refused a transaction status record");
        }
    }
}

/// The metric label of an event type we do not act on: a bounded set of values.
fn other_kind(kind: &str) -> String {
    if kind.len() <= 64 && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        kind.to_string()
    } else {
        "other".to_string()
    }
}

#[cfg(test)]
mod tests;
