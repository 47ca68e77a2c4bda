//! Fireblocks webhook deliveries: arbitrary bytes as the body (the event parser) and as the v2
//! signature header (its parser and verification against a fixed JWKS); nothing may panic, and a
//! signature made of arbitrary bytes never verifies.
#![no_main]

use std::sync::LazyLock;

use cosigner_guard::lifecycle::{JwksSource, WebhookKeys, parse};
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<WebhookKeys> = LazyLock::new(|| {
    let path = std::env::temp_dir().join("cosigner-guard-fuzz-jwks.json");
    std::fs::write(&path, include_str!("webhook_jwks.json")).expect("jwks");
    WebhookKeys::new(Some(JwksSource::File(path)), None).expect("keys")
});
static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"));

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    let (header, body) = data.split_at(data.len() / 2);
    let header = String::from_utf8_lossy(header).into_owned();
    let verified = RUNTIME.block_on(KEYS.verify(|name| (name == "fireblocks-webhook-signature").then(|| header.clone()), body));
    assert!(verified.is_err(), "arbitrary bytes verified as a Fireblocks signature");
});
