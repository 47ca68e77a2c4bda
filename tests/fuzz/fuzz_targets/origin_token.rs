//! The origin token's parser: arbitrary carrier text is searched for a token, its header and
//! claims decoded and its signature checked; nothing may panic, and nothing but the one validly
//! signed seed token may ever verify.
#![no_main]

use std::sync::LazyLock;

use cosigner_guard::origin::{Carrier, Origin, OriginKey, find, verify};
use cosigner_guard::transfer::Transfer;
use libfuzzer_sys::fuzz_target;

static ORIGIN: LazyLock<Origin> = LazyLock::new(|| {
    let key = OriginKey::from_pem("fuzz", include_bytes!("origin_public.pem")).expect("key");
    Origin { carrier: Carrier::Note, max_age: std::time::Duration::from_secs(3600), keys: vec![key] }
});
const SEED: &str = include_str!("../corpus/origin_token/seed");

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(Some(token)) = find(&text)
        && verify(token, &ORIGIN.keys).is_ok()
    {
        assert!(SEED.contains(token), "a token that is not the seed verified: {token}");
    }
    let mut request = serde_json::json!({"txId": "t", "asset": "ETH", "amountStr": "0.01", "sourceType": "VAULT",
        "sourceId": "0", "destType": "VAULT", "destId": "1"});
    request["note"] = serde_json::Value::from(text.as_ref());
    let request = request.as_object().expect("object").clone();
    let view = ORIGIN.inspect(&request, &Transfer::describe(&request), chrono::Utc::now());
    let _ = view.binding();
});
