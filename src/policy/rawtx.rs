//! The raw-transaction builtins: hashes and decoders over [`crate::rawtx`], for
//! `policies/lib/rawtx.rego`.
//!
//! - `eth.keccak256(hex)`, `btc.sha256d(hex)`: the hash as lowercase hex; undefined unless `hex` is
//!   a hex string.
//! - `eth.decode_tx(hex)`, `eth.decode_erc20(hex)`, `btc.decode_preimage(hex, network)`: the
//!   decoded object, or `{"error": "…"}` saying why the bytes are not one — so a policy can name the
//!   problem, and cannot mistake a bad transaction for an absent one.
//! - `eth.valid_address(a)`, `btc.valid_address(a, network)`: whether `a` is an address of that
//!   network, checksum included (for whitelisting).
//! - `transfer.view(request, assets)`: the canonical view of a transaction request
//!   ([`crate::transfer`]) with `assets` as the raw-transaction table, as `input.context.transfer`.
//! - `transfer.request(request, view)`: the request as every rule reads it, its descriptive fields
//!   replaced by the view's (`lib/transfer_spec.rego` spells it out in Rego).

use std::collections::BTreeMap;

use regorus::{Engine, Value};
use serde::Serialize;

use crate::rawtx::{self, DecodeError, btc, eth};
use crate::transfer::{Assets, Transfer};

pub fn register(engine: &mut Engine) -> anyhow::Result<()> {
    engine.add_extension(
        "eth.keccak256".into(),
        1,
        Box::new(super::velocity::recorded("eth.keccak256", |args: Vec<Value>| Ok(hash(&args[0], rawtx::keccak256)))),
    )?;
    engine.add_extension(
        "btc.sha256d".into(),
        1,
        Box::new(super::velocity::recorded("btc.sha256d", |args: Vec<Value>| Ok(hash(&args[0], rawtx::sha256d)))),
    )?;
    engine.add_extension(
        "eth.decode_tx".into(),
        1,
        Box::new(super::velocity::recorded("eth.decode_tx", |args: Vec<Value>| {
            Ok(decoded(bytes(&args[0]).and_then(|b| eth::decode_transaction(&b))))
        })),
    )?;
    engine.add_extension(
        "eth.decode_erc20".into(),
        1,
        Box::new(super::velocity::recorded("eth.decode_erc20", |args: Vec<Value>| {
            Ok(decoded(bytes(&args[0]).and_then(|b| eth::decode_erc20(&b))))
        })),
    )?;
    engine.add_extension(
        "btc.decode_preimage".into(),
        2,
        Box::new(super::velocity::recorded("btc.decode_preimage", |args: Vec<Value>| {
            let network = match &args[1] {
                Value::String(name) => btc::Network::parse(name),
                _ => None,
            };
            let Some(network) = network else {
                return Ok(error("the network must be \"mainnet\" or \"testnet\""));
            };
            Ok(decoded(bytes(&args[0]).and_then(|b| btc::decode_preimage(&b, network))))
        })),
    )?;
    engine.add_extension(
        "eth.valid_address".into(),
        1,
        Box::new(super::velocity::recorded("eth.valid_address", |args: Vec<Value>| {
            Ok(Value::Bool(matches!(&args[0], Value::String(a) if eth::valid_address(a))))
        })),
    )?;
    engine.add_extension(
        "btc.valid_address".into(),
        2,
        Box::new(super::velocity::recorded("btc.valid_address", |args: Vec<Value>| {
            let valid = match (&args[0], &args[1]) {
                (Value::String(address), Value::String(network)) => {
                    btc::Network::parse(network).is_some_and(|n| btc::valid_address(address, n))
                }
                _ => false,
            };
            Ok(Value::Bool(valid))
        })),
    )?;
    // The server gives every transaction this view as `input.context.transfer`; the builtin is
    // for tests that build an input document by hand (`lib/transfer.rego` falls back to it).
    engine.add_extension(
        "transfer.view".into(),
        2,
        Box::new(super::velocity::recorded("transfer.view", |args: Vec<Value>| {
            let request = serde_json::to_value(&args[0])?;
            let assets = Assets::from_data(&serde_json::to_value(&args[1])?);
            Ok(request.as_object().map_or(Value::Undefined, |r| Value::from(Transfer::derive(r, &assets).to_value())))
        })),
    )?;
    // Once per request, natively: the same derivation in Rego was a quarter of the starter's
    // evaluation. Unchanged parts of the request are shared, not copied.
    engine.add_extension(
        "transfer.request".into(),
        2,
        Box::new(super::velocity::recorded("transfer.request", |args: Vec<Value>| {
            Ok(canonical_request(&args[0], &args[1]))
        })),
    )?;
    Ok(())
}

/// The request's fields the view replaces, and the view's fields that replace them.
const DESCRIBED: [&str; 9] =
    ["operation", "asset", "amountStr", "sourceType", "sourceId", "destType", "destId", "destAddress", "destinations"];
const PER_DESTINATION: [(&str, &str); 4] =
    [("dstAddress", "address"), ("dstType", "type"), ("dstId", "id"), ("amountNativeStr", "amount")];

/// `request` with its descriptive fields replaced by `view`'s, exactly as `lib/transfer_spec.rego`
/// says (tests/rawtx.rs checks both agree): a field the view leaves `null` is left out, and a view
/// missing a field replaces none of that group.
pub fn canonical_request(request: &Value, view: &Value) -> Value {
    let Value::Object(fields) = request else { return Value::Undefined };
    // Built afresh rather than edited: an edit would thaw the interpreter's compact object.
    let mut out: BTreeMap<Value, Value> =
        fields.iter().filter(|(name, _)| !is_described(name)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let first = &view["destinations"][0];
    let described = [
        ("operation", &view["operation"]),
        ("asset", &view["asset"]),
        ("amountStr", &view["amount"]),
        ("sourceType", &view["source"]["type"]),
        ("sourceId", &view["source"]["id"]),
        ("destType", &first["type"]),
        ("destId", &first["id"]),
        ("destAddress", &first["address"]),
    ];
    insert_defined(&mut out, &described);
    if let Value::Array(list) = &request["destinations"] {
        let listed = list.iter().filter_map(|d| match d {
            Value::Object(entry) => Some(entry),
            _ => None,
        });
        let destinations: Vec<Value> = listed
            .enumerate()
            .map(|(i, entry)| {
                let mut d: BTreeMap<Value, Value> = entry
                    .iter()
                    .filter(|(name, _)| !matches!(name, Value::String(n) if PER_DESTINATION.iter().any(|(f, _)| *f == n.as_ref())))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let own = &view["destinations"][i];
                insert_defined(&mut d, &PER_DESTINATION.map(|(name, field)| (name, &own[field])));
                Value::from(d)
            })
            .collect();
        if !destinations.is_empty() {
            out.insert(Value::from("destinations"), Value::from(destinations));
        }
    }
    Value::from(out)
}

fn is_described(name: &Value) -> bool {
    matches!(name, Value::String(name) if DESCRIBED.contains(&name.as_ref()))
}

/// Rego's object literal: all of its values are defined or it is none; then the nulls are dropped.
fn insert_defined(into: &mut BTreeMap<Value, Value>, pairs: &[(&str, &Value)]) {
    if pairs.iter().any(|(_, v)| **v == Value::Undefined) {
        return;
    }
    for (name, value) in pairs.iter().filter(|(_, v)| **v != Value::Null) {
        into.insert(Value::from(*name), (*value).clone());
    }
}

fn bytes(value: &Value) -> Result<Vec<u8>, DecodeError> {
    match value {
        Value::String(text) => rawtx::from_hex(text),
        _ => Err(DecodeError::Hex("not a string")),
    }
}

fn hash(value: &Value, function: fn(&[u8]) -> [u8; 32]) -> Value {
    bytes(value).map_or(Value::Undefined, |b| Value::from(rawtx::to_hex(&function(&b))))
}

fn decoded<T: Serialize>(result: Result<T, DecodeError>) -> Value {
    match result.map(|decoded| serde_json::to_value(decoded)) {
        Ok(Ok(json)) => Value::from(json),
        Ok(Err(e)) => error(&e.to_string()),
        Err(e) => error(&e.to_string()),
    }
}

fn error(message: &str) -> Value {
    Value::from(serde_json::json!({ "error": message }))
}
