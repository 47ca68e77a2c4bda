//! What a request *is*, for the request-id guard. On RETRY the Co-signer sends the identical
//! request again, and a transaction comes once at its approval stage and again at its signing
//! stage (with `fee`, `rawTx`, `displayDstAddress` added): both are decided again as usual. The
//! same `requestId` moving something else — another asset, amount, source or destination — is a
//! replayed or forged request (or a bug upstream) and is never approved. The digest of the first
//! identity is kept in the state store ([`crate::state::StateStore::remember`]).

use serde_json::{Map, Value};

use crate::request::RequestKind;
use crate::transfer::Transfer;

const CONFIG_CHANGE_FIELDS: [&str; 2] = ["type", "extraInfo"];

/// The stage-independent identity of a request: what a hold shows its approvers. A transaction's
/// is its canonical view ([`Transfer::identity`]).
pub fn identity(kind: RequestKind, payload: &Map<String, Value>) -> Value {
    match kind {
        RequestKind::ConfigChange => Value::Object(
            CONFIG_CHANGE_FIELDS
                .iter()
                .map(|f| (f.to_string(), payload.get(*f).cloned().unwrap_or(Value::Null)))
                .collect(),
        ),
        RequestKind::Transaction => Transfer::describe(payload).identity(),
    }
}

/// SHA-256 of an identity document; the approver's tool recomputes it from the hold it is shown.
pub fn digest_of(identity: &Value) -> [u8; 32] {
    // serde_json's map is ordered by key, so equal identities serialize equally.
    let bytes = serde_json::to_vec(identity).unwrap_or_default();
    let mut digest = [0; 32];
    digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref());
    digest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TX: RequestKind = RequestKind::Transaction;

    fn of(v: Value) -> [u8; 32] {
        digest_of(&identity(TX, v.as_object().unwrap()))
    }

    #[test]
    fn another_amount_is_another_identity() {
        assert_eq!(of(json!({"requestId": "r1", "amountStr": "1"})), of(json!({"requestId": "r1", "amountStr": "1"})));
        assert_ne!(
            of(json!({"requestId": "r1", "amountStr": "1"})),
            of(json!({"requestId": "r1", "amountStr": "1000"}))
        );
    }

    #[test]
    fn the_signing_stage_of_the_same_transaction_has_the_same_identity() {
        let approval = of(json!({"requestId": "t", "asset": "ETH", "amountStr": "1", "destAddress": "0xa",
            "destinations": [{"dstAddress": "0xa", "amountNativeStr": "1", "action": "ALLOW"}]}));
        let signing = of(json!({"requestId": "t", "asset": "ETH", "amountStr": "1", "destAddress": "0xa",
            "fee": "0.0001", "rawTx": [{"payload": "ab"}], "players": ["p"],
            "destinations": [{"dstAddress": "0xa", "amountNativeStr": "1", "displayDstAddress": "0xa", "action": "ALLOW"}]}));
        let elsewhere = of(json!({"requestId": "t", "asset": "ETH", "amountStr": "1", "destAddress": "0xa",
            "destinations": [{"dstAddress": "0xEVIL", "amountNativeStr": "1"}]}));
        assert_eq!(approval, signing);
        assert_ne!(approval, elsewhere, "another destination is another identity");
    }
}
