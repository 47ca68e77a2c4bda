//! The input document every policy sees: the request kind, the payload verbatim, and the context.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::envelope::Mode;
use crate::origin::OriginView;
use crate::request::RequestKind;
use crate::transfer::Transfer;

/// What the handler knows about a request besides its payload.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub received_at: DateTime<Utc>,
    pub mode: Mode,
    /// Name of the configured Co-signer key that verified the request (jwt mode).
    pub cosigner_key: Option<Arc<str>>,
    /// The origin view given with the request (replay, a fixture); otherwise the pipeline
    /// inspects the request's token itself when `[origin]` is configured.
    pub origin: Option<OriginView>,
}

/// Builds `{"kind", "request", "context"}`, once per decision: the payload is moved in unchanged,
/// a transaction's canonical view goes in as `context.transfer`, its origin view as
/// `context.origin`, and the transaction's hold (its view, as policies see it) as `context.hold`.
pub fn input_document(
    kind: RequestKind,
    payload: Map<String, Value>,
    context: &RequestContext,
    transfer: Option<&Transfer>,
    origin: Option<&OriginView>,
    hold: Option<Value>,
) -> Value {
    let mut input = json!({
        "kind": kind,
        "request": Value::Object(payload),
        "context": {
            "received_at": context.received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "received_at_ns": context.received_at.timestamp_nanos_opt(),
            "mode": context.mode,
            "cosigner_key": context.cosigner_key.as_deref(),
        }
    });
    if let Some(transfer) = transfer {
        input["context"]["transfer"] = transfer.to_value();
    }
    if let Some(origin) = origin {
        input["context"]["origin"] = serde_json::to_value(origin).unwrap_or(Value::Null);
    }
    if let Some(hold) = hold {
        input["context"]["hold"] = hold;
    }
    input
}
