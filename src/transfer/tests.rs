//! Each test takes a real payload, changes what one attack changes, and checks the view names it.

use serde_json::{Value, json};

use super::raw::Payment;
use super::*;
use crate::rawtx::{from_hex, keccak256, sha256d, to_hex};

fn payload(text: &str) -> Map<String, Value> {
    serde_json::from_str::<Value>(text).unwrap().as_object().unwrap().clone()
}

fn eth() -> Map<String, Value> {
    payload(include_str!("../../policies/payloads/eth_transfer.json"))
}

fn btc() -> Map<String, Value> {
    payload(include_str!("../../policies/payloads/btc_one_time_address.json"))
}

fn usdc() -> Map<String, Value> {
    payload(include_str!("../../policies/payloads/usdc_transfer.json"))
}

fn assets() -> Assets {
    let data: Value = serde_json::from_str(include_str!("../../policies/rawtx/data.json")).unwrap();
    Assets::from_data(&data["assets"])
}

fn view(request: &Map<String, Value>) -> Transfer {
    Transfer::derive(request, &assets())
}

fn conflicts_of(request: &Map<String, Value>) -> String {
    view(request).conflicts.join("; ")
}

/// A raw entry whose payload is the right hash of `hex`.
fn entry(path: &str, hex: &str, btc: bool) -> Value {
    let bytes = from_hex(hex).unwrap();
    let hash = if btc { sha256d(&bytes) } else { keccak256(&bytes) };
    json!({"keyDerivationPath": path, "rawTx": hex, "payload": to_hex(&hash)})
}

#[test]
fn the_documented_payloads_agree_with_themselves() {
    for request in [eth(), btc(), usdc()] {
        let transfer = view(&request);
        assert_eq!(transfer.conflicts, Vec::<String>::new(), "{:?}", request["asset"]);
        assert_eq!(transfer.source.account.as_deref(), Some("0"), "the keys of vault 0 sign");
        assert!(transfer.raw.is_some(), "the raw transaction was read");
    }
    let btc = view(&btc());
    let raw = btc.raw.unwrap();
    assert_eq!(
        raw.pays,
        vec![Payment { address: "1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC".into(), amount: "0.000876".into() }]
    );
    assert_eq!(raw.change.len(), 1, "the P2WPKH output pays the signing key back");
}

#[test]
fn both_stages_of_a_transaction_have_one_identity() {
    let signing = eth();
    let mut approval = signing.clone();
    for field in ["rawTx", "fee", "players"] {
        approval.remove(field);
    }
    approval["destinations"][0].as_object_mut().unwrap().remove("displayDstAddress");
    assert_eq!(Transfer::describe(&approval).identity(), Transfer::describe(&signing).identity());
    let mut more = signing.clone();
    more["amountStr"] = json!("10");
    assert_ne!(Transfer::describe(&more).identity(), Transfer::describe(&signing).identity());
}

#[test]
fn an_amount_str_that_is_not_what_the_destinations_and_the_raw_transaction_move_is_a_conflict() {
    // H2: 10 BTC described per destination (and paid) while amountStr says 0.000876.
    let mut request = btc();
    request["destinations"][0]["amountNativeStr"] = json!("10");
    let found = conflicts_of(&request);
    assert!(found.contains("the destinations add up to 10, not amountStr 0.000876"), "{found}");
    assert!(
        found.contains("the raw transaction pays 1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC 0.000876, described as 10"),
        "{found}"
    );
}

#[test]
fn a_second_destination_or_a_strangers_address_is_a_conflict() {
    let mut extra = btc();
    let mut second = extra["destinations"][0].clone();
    second["dstAddress"] = json!("bc1qstranger");
    second["amountNativeStr"] = json!("5");
    extra["destinations"].as_array_mut().unwrap().push(second);
    let found = conflicts_of(&extra);
    assert!(found.contains("add up to 5.000876, not amountStr 0.000876"), "{found}");

    let mut stranger = eth();
    stranger["destinations"][0]["dstAddress"] = json!("0x1111111111111111111111111111111111111111");
    let found = conflicts_of(&stranger);
    assert!(found.contains("where destAddress says"), "{found}");
}

#[test]
fn a_display_address_that_is_not_the_destination_is_a_conflict() {
    let mut request = eth();
    request["destinations"][0]["displayDstAddress"] = json!("0x1111111111111111111111111111111111111111");
    assert!(conflicts_of(&request).contains("displayDstAddress"), "{}", conflicts_of(&request));
}

#[test]
fn a_key_path_of_another_vault_or_no_path_is_a_conflict() {
    // H3: the path names the account whose key signs.
    for (path, expected) in [
        (json!("[ 44, 60, 7, 0, 0 ]"), "keys of vault account 7, not the source vault 0"),
        (json!("garbage"), "not a BIP-44 path"),
        (Value::Null, "has no keyDerivationPath"),
        (json!("[ 44, 0, 0, 0, 0 ]"), "coin type 0, not 60"),
    ] {
        let mut request = eth();
        request["rawTx"][0]["keyDerivationPath"] = path;
        let found = conflicts_of(&request);
        assert!(found.contains(expected), "{expected}: {found}");
    }
    let mut other_source = eth();
    other_source["sourceId"] = json!("7");
    assert!(conflicts_of(&other_source).contains("not the source vault 7"));
}

#[test]
fn a_contract_creation_is_not_a_transfer() {
    // A type-2 transaction with an empty `to` (0x80), re-hashed.
    let mut request = eth();
    let hex = "02db0104843b9aca008506a0c1987d82520880872386f26fc1000080c0";
    request["rawTx"] = json!([entry("[ 44, 60, 0, 0, 0 ]", hex, false)]);
    request["destAddress"] = json!("");
    request["destinations"][0]["displayDstAddress"] = json!("");
    let found = conflicts_of(&request);
    assert!(found.contains("creates a contract"), "{found}");
    assert!(found.contains("empty address"), "{found}");
}

#[test]
fn change_to_a_key_the_source_vault_does_not_sign_with_is_a_conflict() {
    // M1: an input whose script code is the attacker's, signed through the vault's own path, and
    // "change" to the attacker's key.
    let attacker = "2222222222222222222222222222222222222222";
    let vault = "95f6fbf9976938f6bffc646adf8b54a8f70620eb";
    let mut request = btc();
    let entries: Vec<Value> = request["rawTx"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut hex = e["rawTx"].as_str().unwrap().replace(&format!("160014{vault}"), &format!("160014{attacker}"));
            if i == 1 {
                hex = hex.replace(&format!("1976a914{vault}88ac"), &format!("1976a914{attacker}88ac"));
            }
            entry("[ 44, 0, 0, 0, 0 ]", &hex, true)
        })
        .collect();
    request["rawTx"] = Value::Array(entries.clone());
    let found = conflicts_of(&request);
    assert!(found.contains("rawTx[1] signs an input of another key than its key path signs elsewhere"), "{found}");

    // The same input signed through another vault's path: its key's "change" is a payment.
    let mut elsewhere = request.clone();
    elsewhere["rawTx"][1] = entry("[ 44, 0, 3, 0, 0 ]", entries[1]["rawTx"].as_str().unwrap(), true);
    let found = conflicts_of(&elsewhere);
    assert!(found.contains("vault account 0 and 3"), "{found}");
}

#[test]
fn destinations_that_are_not_objects_or_amounts_that_are_not_decimals_are_conflicts() {
    let mut request = eth();
    request["destinations"] = json!([5]);
    assert!(conflicts_of(&request).contains("destinations[0] is not an object"));
    let mut request = eth();
    request["amountStr"] = json!("lots");
    assert!(conflicts_of(&request).contains("amountStr \"lots\" is not a decimal amount"));
    let mut request = eth();
    request["destinations"][0].as_object_mut().unwrap().remove("amountNativeStr");
    assert!(conflicts_of(&request).contains("has no decimal amountNativeStr"));
}

#[test]
fn addresses_compare_without_case_only_where_the_encoding_ignores_it() {
    assert!(same_address("0xAbC", "0xabc"));
    assert!(same_address("BC1QXY", "bc1qxy"));
    assert!(!same_address("1DpivPqJ", "1dpivpqj"), "base58 is case-sensitive");
}
