//! Holds: a transfer the policy holds for people (`{"action": "RETRY", "hold": {"approvals": 2}}`)
//! is answered RETRY until approvers sign it off, M of N, with their own keys — an independent
//! second factor outside Fireblocks.
//!
//! A hold is created once per transaction (its `txId`; `requestId` for configuration changes),
//! bound to the request's identity digest (what it moves), and lives in the state store, so it
//! survives restarts and is shared by replicas. A verdict is a message signed by an approver's
//! Ed25519 or P-256 key that binds the hold id, the digest, the verdict and a time: the server
//! counts it only if it verifies against a configured approver key, once per approver, and only
//! while the hold is pending. One rejection rejects.

mod approvers;
mod gate;
mod service;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::request::RequestKind;

pub use approvers::*;
pub use gate::gate;
pub use service::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Expired,
    /// Its transaction ended in Fireblocks (failed, cancelled, blocked, rejected) before a verdict:
    /// there is nothing left to approve.
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Approval {
    pub approver: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rejection {
    pub approver: String,
    pub at: String,
    pub reason: String,
}

/// Why a hold was cancelled, and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cancellation {
    pub at: String,
    pub reason: String,
}

/// A hold as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    /// Hex SHA-256 of the request's identity (what it moves).
    pub digest: String,
    pub required: u32,
    pub reason: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    /// `approved` or `rejected` once decided; expiry is computed from `expires_at`.
    pub decided: Option<Status>,
    pub approvals: Vec<Approval>,
    pub rejections: Vec<Rejection>,
    /// What it is about, for the people asked (kind, asset, amount, source, destination).
    pub summary: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<Cancellation>,
    /// Its expiry was announced (`hold_expired`), by one replica.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expiry_announced: bool,
}

impl Hold {
    pub fn status(&self, now: DateTime<Utc>) -> Status {
        match self.decided {
            Some(decided) => decided,
            None if parse_time(&self.expires_at).is_some_and(|expiry| now >= expiry) => Status::Expired,
            None => Status::Pending,
        }
    }

    /// What policies see as `input.context.hold`, and what the admin API shows.
    pub fn view(&self, now: DateTime<Utc>) -> Value {
        json!({
            "id": self.id,
            "status": self.status(now),
            "required": self.required,
            "approvals": self.approvals,
            "rejections": self.rejections,
            "reason": self.reason,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "digest": self.digest,
            "summary": self.summary,
            "cancelled": self.cancelled,
        })
    }
}

/// `input.context.hold` as a policy saw it, read back into a hold (replay, shadow evaluation).
pub fn from_view(view: &Value) -> Option<Hold> {
    #[derive(Deserialize)]
    struct View {
        id: String,
        status: Status,
        required: u32,
        approvals: Vec<Approval>,
        rejections: Vec<Rejection>,
        reason: Option<String>,
        created_at: String,
        expires_at: String,
        digest: String,
        summary: Value,
        #[serde(default)]
        cancelled: Option<Cancellation>,
    }
    let view = View::deserialize(view).ok()?;
    Some(Hold {
        id: view.id,
        digest: view.digest,
        required: view.required,
        reason: view.reason,
        created_at: view.created_at,
        expires_at: view.expires_at,
        decided: matches!(view.status, Status::Approved | Status::Rejected | Status::Cancelled).then_some(view.status),
        approvals: view.approvals,
        rejections: view.rejections,
        summary: view.summary,
        cancelled: view.cancelled,
        expiry_announced: false,
    })
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What a decision saw of its transaction's hold, for the decision log: with the approvers'
/// names, the record of the decision that released a hold says who released it.
#[derive(Debug, Clone, Serialize)]
pub struct HoldTrace {
    pub id: String,
    pub status: Status,
    pub required: u32,
    pub approvals: Vec<String>,
    /// This decision created the hold.
    pub created: bool,
}

impl HoldTrace {
    pub fn of(hold: &Hold, now: DateTime<Utc>, created: bool) -> Self {
        Self {
            id: hold.id.clone(),
            status: hold.status(now),
            required: hold.required,
            approvals: hold.approvals.iter().map(|a| a.approver.clone()).collect(),
            created,
        }
    }
}

/// What the people asked see of a request: the identity document whose digest they sign — for a
/// transaction its canonical view: what moves, from where, to which addresses — and a headline
/// drawn from that same document, so what is shown is what is signed. Beside it, for people:
/// what Fireblocks states (USD value, names) and what the raw-transaction check found (`transfer`
/// is the request's canonical view, `input.context.transfer`).
pub fn summary(
    kind: RequestKind,
    identity: Value,
    payload: &serde_json::Map<String, Value>,
    transfer: Option<&Value>,
) -> Value {
    let mut summary = match kind {
        RequestKind::Transaction => {
            let text = |v: &Value| v.as_str().map(str::to_owned);
            let endpoint = |kind: &Value, id: &Value| match (text(kind), text(id)) {
                (Some(kind), Some(id)) if !id.is_empty() => Some(format!("{kind} {id}")),
                (kind, _) => kind,
            };
            let destinations: Vec<String> = identity["destinations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    text(&d["address"]).filter(|a| !a.is_empty()).or_else(|| endpoint(&d["type"], &d["id"]))
                })
                .collect();
            json!({
                "kind": kind,
                "operation": identity["operation"],
                "asset": identity["asset"],
                "amount": identity["amount"],
                "source": endpoint(&identity["source"]["type"], &identity["source"]["id"]),
                // Every destination, in one line: the identity beside it has each with its amount.
                "destination": destinations.join(", "),
                "note": payload.get("note").cloned().unwrap_or(Value::Null),
                "usd": usd(payload),
                "source_name": payload.get("sourceName").or_else(|| payload.get("source").and_then(|s| s.get("name")))
                    .cloned().unwrap_or(Value::Null),
                "destinations": named_destinations(&identity, payload),
                "raw_check": raw_check(payload, transfer),
            })
        }
        RequestKind::ConfigChange => {
            json!({"kind": kind, "type": identity["type"], "extra_info": identity["extraInfo"]})
        }
    };
    summary["identity"] = identity;
    summary
}

/// The USD value Fireblocks states: the sum of `destinations[].amountUSD` (informative only; the
/// decision binds the exact amount).
fn usd(payload: &serde_json::Map<String, Value>) -> Value {
    let values: Vec<f64> = payload
        .get("destinations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("amountUSD").and_then(Value::as_f64))
        .collect();
    if values.is_empty() { Value::Null } else { json!(format!("{:.2}", values.iter().sum::<f64>())) }
}

/// Each destination of the identity, with the name and sub-type Fireblocks gives it.
fn named_destinations(identity: &Value, payload: &serde_json::Map<String, Value>) -> Value {
    let listed = payload.get("destinations").and_then(Value::as_array);
    let destinations = identity["destinations"].as_array().cloned().unwrap_or_default();
    destinations
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let given = listed.and_then(|l| l.get(i));
            let field = |name: &str| given.and_then(|g| g.get(name)).cloned().unwrap_or(Value::Null);
            json!({"type": d["type"], "id": d["id"], "address": d["address"], "amount": d["amount"],
                "name": field("dstName"), "sub_type": field("dstSubType")})
        })
        .collect()
}

/// What the raw-transaction check found: whether a raw transaction came, whether the check could
/// read it (its asset is in `data.rawtx.assets`), what it pays, and every conflict with the
/// description.
fn raw_check(payload: &serde_json::Map<String, Value>, transfer: Option<&Value>) -> Value {
    let raw = transfer.map_or(Value::Null, |t| t["raw"].clone());
    json!({
        "supplied": !matches!(payload.get("rawTx"), None | Some(Value::Null)),
        "decoded": !raw.is_null(),
        "raw": raw,
        "conflicts": transfer.map_or(Value::Null, |t| t["conflicts"].clone()),
    })
}

#[cfg(test)]
mod tests;
