//! Request-id memory. On RETRY the Co-signer sends the identical request again, which is decided
//! again as usual; the same `requestId` with a *different* payload is a replayed or forged request
//! (or a bug upstream) and is never approved.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::{Map, Value};

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

    pub fn remember(&self, request_id: &str, payload: &Map<String, Value>) -> Seen {
        if self.capacity == 0 {
            return Seen::First;
        }
        // serde_json's map is ordered by key, so equal payloads serialize equally.
        let bytes = serde_json::to_vec(payload).unwrap_or_default();
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

    fn payload(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_reused_request_id_with_another_payload_is_told_apart_from_a_retry() {
        let memory = RequestIdMemory::new(2);
        let a = payload(json!({"requestId": "r1", "amountStr": "1"}));
        let b = payload(json!({"requestId": "r1", "amountStr": "1000"}));
        assert_eq!(memory.remember("r1", &a), Seen::First);
        assert_eq!(memory.remember("r1", &a), Seen::Same);
        assert_eq!(memory.remember("r1", &b), Seen::Different);
        assert_eq!(memory.remember("r1", &a), Seen::Same, "the first payload stays the reference");
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let memory = RequestIdMemory::new(2);
        for id in ["a", "b", "c"] {
            memory.remember(id, &payload(json!({"requestId": id})));
        }
        assert_eq!(memory.remember("a", &payload(json!({"requestId": "a", "x": 1}))), Seen::First, "a was forgotten");
        assert_eq!(memory.remember("c", &payload(json!({"requestId": "c", "x": 1}))), Seen::Different);
    }
}
