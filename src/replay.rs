//! Request-id memory. On RETRY the Co-signer sends the identical request again, and a transaction
//! comes once at its approval stage and again at its signing stage (with `fee`, `rawTx`,
//! `displayDstAddress` added): both are decided again as usual. The same `requestId` moving
//! something else — another asset, amount, source or destination — is a replayed or forged request
//! (or a bug upstream) and is never approved.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use crate::request::RequestKind;

/// What a transaction *is*: the fields that say what moves where. Fields that differ between the
/// approval and the signing stage of the same transaction are left out.
const TRANSACTION_FIELDS: [&str; 9] = [
    "operation",
    "asset",
    "amountStr",
    "sourceType",
    "sourceId",
    "destType",
    "destId",
    "destAddress",
    "destAddressType",
];
const DESTINATION_FIELDS: [&str; 5] = ["dstAddress", "dstType", "dstId", "dstAddressType", "amountNativeStr"];
const CONFIG_CHANGE_FIELDS: [&str; 2] = ["type", "extraInfo"];

fn pick(object: &Map<String, Value>, fields: &[&str]) -> Value {
    Value::Object(fields.iter().map(|f| (f.to_string(), object.get(*f).cloned().unwrap_or(Value::Null))).collect())
}

/// The stage-independent identity of a request.
fn identity(kind: RequestKind, payload: &Map<String, Value>) -> Value {
    match kind {
        RequestKind::ConfigChange => pick(payload, &CONFIG_CHANGE_FIELDS),
        RequestKind::Transaction => {
            let destinations: Vec<Value> = payload
                .get("destinations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|d| d.as_object().map_or(Value::Null, |d| pick(d, &DESTINATION_FIELDS)))
                .collect();
            json!({"transaction": pick(payload, &TRANSACTION_FIELDS), "destinations": destinations})
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    First,
    /// The same payload again: a legitimate retry.
    Same,
    /// This `requestId` came before with another payload.
    Different,
}

/// The payload digests of the last `capacity` request ids; the oldest are forgotten first, so
/// memory stays bounded.
pub struct RequestIdMemory {
    capacity: usize,
    inner: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    digests: HashMap<String, [u8; 32]>,
    /// Oldest first, for eviction.
    order: VecDeque<String>,
}

impl RequestIdMemory {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, inner: Mutex::new(Remembered::default()) }
    }

    pub fn remember(&self, request_id: &str, kind: RequestKind, payload: &Map<String, Value>) -> Seen {
        if self.capacity == 0 {
            return Seen::First;
        }
        // serde_json's map is ordered by key, so equal identities serialize equally.
        let bytes = serde_json::to_vec(&identity(kind, payload)).unwrap_or_default();
        let mut digest = [0; 32];
        digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref());
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Remembered { digests, order } = &mut *inner;
        match digests.get(request_id) {
            Some(known) if *known == digest => Seen::Same,
            Some(_) => Seen::Different,
            None => {
                digests.insert(request_id.to_string(), digest);
                order.push_back(request_id.to_string());
                while order.len() > self.capacity {
                    if let Some(oldest) = order.pop_front() {
                        digests.remove(&oldest);
                    }
                }
                Seen::First
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TX: RequestKind = RequestKind::Transaction;

    fn payload(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_reused_request_id_with_another_payload_is_told_apart_from_a_retry() {
        let memory = RequestIdMemory::new(2);
        let a = payload(json!({"requestId": "r1", "amountStr": "1"}));
        let b = payload(json!({"requestId": "r1", "amountStr": "1000"}));
        assert_eq!(memory.remember("r1", TX, &a), Seen::First);
        assert_eq!(memory.remember("r1", TX, &a), Seen::Same);
        assert_eq!(memory.remember("r1", TX, &b), Seen::Different);
        assert_eq!(memory.remember("r1", TX, &a), Seen::Same, "the first payload stays the reference");
    }

    #[test]
    fn the_signing_stage_of_the_same_transaction_is_not_a_reuse() {
        let memory = RequestIdMemory::new(10);
        let approval = payload(json!({"requestId": "t", "asset": "ETH", "amountStr": "1", "destAddress": "0xa",
            "destinations": [{"dstAddress": "0xa", "amountNativeStr": "1", "action": "ALLOW"}]}));
        let signing = payload(json!({"requestId": "t", "asset": "ETH", "amountStr": "1", "destAddress": "0xa",
            "fee": "0.0001", "rawTx": [{"payload": "ab"}], "players": ["p"],
            "destinations": [{"dstAddress": "0xa", "amountNativeStr": "1", "displayDstAddress": "0xa", "action": "ALLOW"}]}));
        let elsewhere = payload(json!({"requestId": "t", "asset": "ETH", "amountStr": "1", "destAddress": "0xa",
            "destinations": [{"dstAddress": "0xEVIL", "amountNativeStr": "1"}]}));
        assert_eq!(memory.remember("t", TX, &approval), Seen::First);
        assert_eq!(memory.remember("t", TX, &signing), Seen::Same);
        assert_eq!(memory.remember("t", TX, &elsewhere), Seen::Different, "another destination is a reuse");
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let memory = RequestIdMemory::new(2);
        for id in ["a", "b", "c"] {
            memory.remember(id, TX, &payload(json!({"requestId": id})));
        }
        assert_eq!(
            memory.remember("a", TX, &payload(json!({"requestId": "a", "asset": "X"}))),
            Seen::First,
            "a was forgotten"
        );
        assert_eq!(memory.remember("c", TX, &payload(json!({"requestId": "c", "asset": "X"}))), Seen::Different);
    }
}
