//! The Co-signer's request: its kind, its `requestId`, and the payload kept verbatim.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Transaction,
    ConfigChange,
}

impl RequestKind {
    pub const ALL: [RequestKind; 2] = [RequestKind::Transaction, RequestKind::ConfigChange];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Transaction => "transaction",
            RequestKind::ConfigChange => "config_change",
        }
    }

    /// The endpoint name the Co-signer appends to the base URL (after `/v2` in jwt mode).
    pub fn endpoint(self) -> &'static str {
        match self {
            RequestKind::Transaction => "tx_sign_request",
            RequestKind::ConfigChange => "config_change_sign_request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("payload is not a JSON object")]
    NotAnObject,
    #[error("payload has no string requestId")]
    MissingRequestId,
}

/// A decoded request. Every field of the payload stays available to policies, unknown ones included.
#[derive(Debug, Clone)]
pub struct CosignerRequest {
    pub kind: RequestKind,
    pub request_id: String,
    pub payload: Map<String, Value>,
}

impl CosignerRequest {
    pub fn from_payload(kind: RequestKind, payload: Value) -> Result<Self, RequestError> {
        let Value::Object(payload) = payload else {
            return Err(RequestError::NotAnObject);
        };
        let request_id = match payload.get("requestId") {
            Some(Value::String(id)) => id.clone(),
            _ => return Err(RequestError::MissingRequestId),
        };
        Ok(Self { kind, request_id, payload })
    }

    /// `txId` of a transaction request, for logs.
    pub fn tx_id(&self) -> Option<&str> {
        self.payload.get("txId").and_then(Value::as_str)
    }

    /// What the state store keys this request's records by: the transaction (`txId`, shared by
    /// its approval and signing stages and by every retry), `requestId` when there is none
    /// (configuration changes).
    pub fn ledger_id(&self) -> &str {
        match self.kind {
            RequestKind::Transaction => self.tx_id().unwrap_or(&self.request_id),
            RequestKind::ConfigChange => &self.request_id,
        }
    }

    /// `signerId`: the API user of the Co-signer that sent the request, when present.
    pub fn signer_id(&self) -> Option<&str> {
        self.payload.get("signerId").and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_id_must_be_a_string() {
        let cases = [
            (json!({"requestId": "abc"}), Ok("abc"), "string id"),
            (json!({"requestId": 5}), Err(RequestError::MissingRequestId), "numeric id"),
            (json!({"txId": "x"}), Err(RequestError::MissingRequestId), "no id"),
            (json!([1]), Err(RequestError::NotAnObject), "array payload"),
        ];
        for (payload, want, msg) in cases {
            let got = CosignerRequest::from_payload(RequestKind::Transaction, payload);
            assert_eq!(got.as_ref().map(|r| r.request_id.as_str()).map_err(|e| *e), want, "{msg}");
        }
    }
}
