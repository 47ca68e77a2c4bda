//! The starter policy set in `policies/` decides the documented requests as its data says.

use crate::common::{Spec, decide, payload, spawn};
use serde_json::{Value, json};

const TX: &str = "tx_sign_request";
const CC: &str = "config_change_sign_request";

/// A variant of a payload: another transaction, so it has its own requestId and txId.
fn with(mut base: Value, changes: Value) -> Value {
    base.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
    base["requestId"] = Value::from(format!("variant-{}", changes));
    base["txId"] = base["requestId"].clone();
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn starter_policies_decide_the_documented_requests() {
    let server = spawn(Spec::starter()).await;
    let eth = payload("eth_transfer.json");
    let btc = payload("btc_one_time_address.json");
    let wallet = payload("whitelist_wallet.json");
    let mut ten_eth = eth["destinations"].clone();
    ten_eth[0]["amountNativeStr"] = json!("10");
    let cases: Vec<(&str, &str, Value, &str, Option<&str>)> = vec![
        ("documented ETH transfer between vaults", TX, eth.clone(), "APPROVE", None),
        ("documented BTC transfer to a one-time address under the cap", TX, btc.clone(), "APPROVE", None),
        ("documented whitelisting request", CC, wallet.clone(), "APPROVE", None),
        (
            "ETH exactly at the limit (no rawTx: an approval-stage request)",
            TX,
            with(eth.clone(), json!({"amountStr": "10.000000000000000000", "rawTx": null, "destinations": ten_eth})),
            "APPROVE",
            None,
        ),
        (
            "ETH one wei over the limit",
            TX,
            with(eth.clone(), json!({"amountStr": "10.000000000000000001"})),
            "REJECT",
            Some("exceeds the per-transaction limit of 10"),
        ),
        (
            "an asset off the allow-list",
            TX,
            with(eth.clone(), json!({"asset": "DOGE"})),
            "REJECT",
            Some("asset DOGE is not on the allow-list"),
        ),
        (
            "a contract call",
            TX,
            with(eth.clone(), json!({"operation": "CONTRACT_CALL"})),
            "REJECT",
            Some("operation CONTRACT_CALL is not allowed"),
        ),
        ("no amountStr", TX, with(eth.clone(), json!({"amountStr": null})), "REJECT", Some("amountStr")),
        (
            "a source vault not allowed to send",
            TX,
            with(eth.clone(), json!({"sourceId": "42"})),
            "REJECT",
            Some("source vault 42"),
        ),
        (
            "BTC to a one-time address over the cap",
            TX,
            with(btc.clone(), json!({"amountStr": "0.05000001"})),
            "REJECT",
            Some("one-time cap of 0.05"),
        ),
        (
            "a contract address whitelisting",
            CC,
            with(
                wallet.clone(),
                json!({"extraInfo": {"subType": "CONTRACT", "asset": "ETH", "address": "0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8"}}),
            ),
            "REJECT",
            Some("whitelisting a CONTRACT address is not allowed"),
        ),
        ("adding a user", CC, json!({"requestId": "r-1", "type": "ADD_USER"}), "IGNORE", Some("human approvers")),
        (
            "an unknown change type",
            CC,
            json!({"requestId": "r-2", "type": "SOMETHING_NEW"}),
            "REJECT",
            Some("not approved automatically"),
        ),
    ];
    for (name, endpoint, request, action, reason) in cases {
        let answer = decide(&server, "jwt", endpoint, &request).await;
        assert_eq!(answer["action"], action, "{name}: {answer}");
        if let Some(reason) = reason {
            let got = answer["rejectionReason"].as_str().unwrap_or_default();
            assert!(got.contains(reason), "{name}: reason {got:?} should contain {reason:?}");
        }
    }
}

#[test]
fn the_example_configuration_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let keys = crate::common::keys();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let conf = dir.path().join("conf");
    crate::common::write(
        &conf.join("config.toml"),
        &std::fs::read_to_string(root.join("examples/config.toml")).unwrap(),
    );
    crate::common::write(&conf.join("tls/fullchain.pem"), &keys.tls_cert_pem);
    crate::common::write(&conf.join("tls/privkey.pem"), &keys.tls_key_pem);
    crate::common::write(&conf.join("keys/callback_private.pem"), &keys.handler.private_pem);
    crate::common::write(&conf.join("keys/cosigner_public.pem"), &keys.primary.public_pem);
    std::os::unix::fs::symlink(root.join("policies"), dir.path().join("policies")).unwrap();
    let settings = cosigner_guard::config::Settings::load(&conf.join("config.toml")).expect("example config loads");
    assert_eq!(settings.server.path_prefix, "/fireblocks/callback");
    let policy = &settings.policy;
    cosigner_guard::policy::PolicySnapshot::load(&policy.dir, &policy.compile)
        .expect("the starter policies load under the example config");
}
