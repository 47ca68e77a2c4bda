//! Request decoding in jwt mode: arbitrary bytes must never panic, and never verify unless they are
//! the one validly signed seed token (modulo the tolerated whitespace and quotes).
#![no_main]

use cosigner_guard::envelope::{Mode, open};
use cosigner_guard::keys::{CosignerKey, CosignerKeyring};
use cosigner_guard::policy::{RequestContext, input_document};
use cosigner_guard::request::{CosignerRequest, RequestKind};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

const PUBLIC_KEY: &[u8] = include_bytes!("cosigner_public.pem");
const SEED: &[u8] = include_bytes!("../corpus/decode_jwt/valid_token");

fuzz_target!(|data: &[u8]| {
    let keyring = CosignerKeyring::new(vec![CosignerKey::from_pem("fuzz", PUBLIC_KEY).expect("key")]);
    let Ok(opened) = open(Mode::Jwt, data, &keyring) else { return };
    let trimmed = data.trim_ascii();
    let bare = trimmed.strip_prefix(b"\"").and_then(|t| t.strip_suffix(b"\"")).unwrap_or(trimmed);
    assert_eq!(bare, SEED, "only the signed seed token verifies");
    let Ok(request) = CosignerRequest::from_payload(RequestKind::ConfigChange, opened.payload) else { return };
    let context =
        RequestContext { received_at: chrono::Utc::now(), mode: Mode::Jwt, cosigner_key: opened.cosigner_key, origin: None };
    let input = input_document(request.kind, request.payload, &context, None, None, None);
    let _ = regorus::Value::deserialize(&input);
});
