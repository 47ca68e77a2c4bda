//! Fireblocks webhook events as they arrive: v2 (`{"id", "eventType", "data", "createdAt"}`) and
//! v1 (`{"type", "tenantId", "timestamp", "data"}`), read into what the handler acts on.

use serde_json::{Map, Value};

/// The statuses after which a transaction's amount never left: its records are released.
pub const RELEASING: [&str; 4] = ["FAILED", "CANCELLED", "BLOCKED", "REJECTED"];

/// A transaction's status, from either version.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    /// The delivery's id (v2 `id`; v1 has none: the body's SHA-256).
    pub id: String,
    /// `transaction.status.updated`, `transaction.created` (v1 names are mapped to these).
    pub kind: &'static str,
    pub tx_id: String,
    pub status: String,
    pub sub_status: Option<String>,
    /// Fireblocks' `lastUpdated`, ms: what orders the deliveries of one transaction.
    pub last_updated_ms: u64,
    pub tx_hash: Option<String>,
    pub fee: Option<Value>,
    pub net_amount: Option<Value>,
}

impl StatusEvent {
    pub fn releases(&self) -> bool {
        RELEASING.contains(&self.status.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Status(StatusEvent),
    /// Acknowledged and ignored (vault, wallet, address events and future types).
    Other {
        kind: String,
    },
}

/// Why a verified body is not an event we can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Fireblocks webhook event: {0}")]
pub struct EventError(pub String);

/// Reads a (verified) webhook body.
pub fn parse(body: &[u8]) -> Result<Event, EventError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| EventError(format!("not JSON: {e}")))?;
    let object = value.as_object().ok_or_else(|| EventError("not a JSON object".into()))?;
    let (kind, id) = match (object.get("eventType"), object.get("type")) {
        (Some(Value::String(kind)), _) => {
            let id = text(object, "id").ok_or_else(|| EventError("a v2 event has no id".into()))?;
            match kind.as_str() {
                "transaction.status.updated" => ("transaction.status.updated", id),
                "transaction.created" => ("transaction.created", id),
                _ => return Ok(Event::Other { kind: kind.clone() }),
            }
        }
        (None, Some(Value::String(kind))) => {
            let id = format!(
                "v1:{}",
                crate::keys::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref())
            );
            match kind.as_str() {
                "TRANSACTION_STATUS_UPDATED" => ("transaction.status.updated", id),
                "TRANSACTION_CREATED" => ("transaction.created", id),
                _ => return Ok(Event::Other { kind: kind.clone() }),
            }
        }
        _ => return Err(EventError("neither eventType (v2) nor type (v1)".into())),
    };
    let data = object.get("data").and_then(Value::as_object).ok_or_else(|| EventError("no data object".into()))?;
    let tx_id = text(data, "id").ok_or_else(|| EventError("data.id (the transaction) is missing".into()))?;
    let status = text(data, "status").ok_or_else(|| EventError("data.status is missing".into()))?;
    let last_updated_ms = match data.get("lastUpdated") {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    }
    .ok_or_else(|| EventError("data.lastUpdated (ms) is missing".into()))?;
    if id.is_empty() || id.len() > 256 || tx_id.is_empty() || tx_id.len() > 256 {
        return Err(EventError("an id is empty or longer than 256 bytes".into()));
    }
    Ok(Event::Status(StatusEvent {
        id,
        kind,
        tx_id,
        status,
        sub_status: text(data, "subStatus").filter(|s| !s.is_empty()),
        last_updated_ms,
        tx_hash: text(data, "txHash").filter(|s| !s.is_empty()),
        fee: data.get("feeInfo").or_else(|| data.get("networkFee")).cloned(),
        net_amount: data.get("amountInfo").and_then(|a| a.get("netAmount")).cloned(),
    }))
}

fn text(object: &Map<String, Value>, name: &str) -> Option<String> {
    object.get(name).and_then(Value::as_str).map(str::to_owned)
}
