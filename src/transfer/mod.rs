//! One truth per transaction: what a transaction request moves, derived once from every field that
//! describes it, and every disagreement between those fields listed as a *conflict*.
//!
//! A request describes a transfer several times over — `amountStr`, `destAddress`, each
//! `destinations[]` entry (`dstAddress`, `displayDstAddress`, `amountNativeStr`), the vault in
//! `sourceId` and the one in each `rawTx[].keyDerivationPath`, and the raw transaction itself.
//! Checks that each read their own field let value out through the gaps between them, so every
//! policy reads this one view instead (`input.context.transfer`), the starter refuses any conflict,
//! and the identity that binds a `txId`, a `requestId` and a hold's approvals is this view's.

mod raw;

pub use raw::{AssetKind, Assets};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::decimal::Amount;

/// What a transaction moves, as `input.context.transfer`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Transfer {
    pub operation: Option<String>,
    pub asset: Option<String>,
    /// `amountStr` in its shortest exact form; `null` when it is not a decimal.
    pub amount: Option<String>,
    pub source: Source,
    pub destinations: Vec<Destination>,
    /// What the raw transaction pays, when the request carries one whose asset is in the table.
    pub raw: Option<raw::Paid>,
    /// Every disagreement between the fields above, the raw transaction and the signing keys.
    pub conflicts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
    /// The vault account named by the `rawTx[].keyDerivationPath`s (BIP-44's account element),
    /// when every entry names the same one.
    pub account: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Destination {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
    pub address: Option<String>,
    pub amount: Option<String>,
}

impl Transfer {
    /// Derives the view of a transaction request; `assets` says how to read its raw transaction.
    pub fn derive(request: &Map<String, Value>, assets: &Assets) -> Self {
        let mut transfer = Self::describe(request);
        raw::check(&mut transfer, request, assets);
        transfer
    }

    /// The view of the description alone, without reading a raw transaction.
    pub fn describe(request: &Map<String, Value>) -> Self {
        let mut conflicts = Vec::new();
        let text = |name: &str| request.get(name).and_then(Value::as_str).map(str::to_owned);
        let amount = match request.get("amountStr") {
            Some(Value::String(s)) => match Amount::parse(s) {
                Some(a) => Some(a),
                None => {
                    conflicts.push(format!("amountStr {s:?} is not a decimal amount"));
                    None
                }
            },
            _ => {
                conflicts.push("amountStr is missing: the amount is unknown".to_owned());
                None
            }
        };
        // The txId is what binds a transaction's decisions together (its records, its hold, its
        // identity): a transaction request without one cannot be held to anything.
        if !matches!(request.get("txId"), Some(Value::String(id)) if !id.is_empty()) {
            conflicts.push("the request has no txId string: nothing binds its decisions to one transaction".to_owned());
        }
        for name in ["operation", "asset", "sourceType", "sourceId", "destType", "destId", "destAddress"] {
            not_a_string(request, name, name, &mut conflicts);
        }
        let destinations = destinations(request, amount, &mut conflicts);
        Transfer {
            operation: text("operation"),
            asset: text("asset"),
            amount: amount.map(|a| a.to_string()),
            source: Source { kind: text("sourceType"), id: text("sourceId"), account: None },
            destinations,
            raw: None,
            conflicts,
        }
    }

    /// What the transaction *is*, the same at its approval and its signing stage and for every
    /// retry: what the request-id guard, the txId binding and a hold's approvers sign bind.
    pub fn identity(&self) -> Value {
        json!({
            "operation": self.operation,
            "asset": self.asset,
            "amount": self.amount,
            "source": {"type": self.source.kind, "id": self.source.id},
            "destinations": self.destinations,
        })
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The destinations: `destinations[]`, or the top-level fields when the request lists none. A
/// destination's address is `dstAddress`, else `destAddress` when it is the only one;
/// `displayDstAddress` (signing stage only) must agree with it and never replaces it, so the
/// identity is the same at both stages.
fn destinations(request: &Map<String, Value>, amount: Option<Amount>, conflicts: &mut Vec<String>) -> Vec<Destination> {
    let top = |name: &str| request.get(name).and_then(Value::as_str);
    let listed: Vec<&Map<String, Value>> = match request.get("destinations") {
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let object = d.as_object();
                if object.is_none() {
                    conflicts.push(format!("destinations[{i}] is not an object"));
                }
                object
            })
            .collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            conflicts.push("destinations is not a list".to_owned());
            Vec::new()
        }
    };
    if listed.is_empty() {
        return vec![Destination {
            kind: top("destType").map(str::to_owned),
            id: top("destId").map(str::to_owned),
            address: top("destAddress").map(str::to_owned),
            amount: amount.map(|a| a.to_string()),
        }];
    }
    let single = listed.len() == 1;
    let mut total = Some(Amount::ZERO);
    let mut out = Vec::with_capacity(listed.len());
    for (i, d) in listed.iter().enumerate() {
        for name in ["dstAddress", "displayDstAddress", "dstType", "dstId"] {
            not_a_string(d, name, &format!("destinations[{i}].{name}"), conflicts);
        }
        let field = |name: &str| d.get(name).and_then(Value::as_str);
        let agreed = |own: Option<&str>, top_name: &str, conflicts: &mut Vec<String>| -> Option<String> {
            match (own, single.then(|| top(top_name)).flatten()) {
                (Some(own), Some(top)) if !same_address(own, top) => {
                    conflicts.push(format!("destinations[{i}] says {own:?} where {top_name} says {top:?}"));
                    Some(own.to_owned())
                }
                (own, top) => own.or(top).map(str::to_owned),
            }
        };
        let address = agreed(field("dstAddress"), "destAddress", conflicts);
        let kind = agreed(field("dstType"), "destType", conflicts);
        let id = agreed(field("dstId"), "destId", conflicts);
        match (field("displayDstAddress"), &address) {
            (Some(shown), Some(address)) if !same_address(shown, address) => conflicts.push(format!(
                "destinations[{i}].displayDstAddress {shown:?} is not the destination's address {address:?}"
            )),
            (Some(shown), None) => conflicts.push(format!(
                "destinations[{i}].displayDstAddress {shown:?} names an address the description does not"
            )),
            _ => {}
        }
        if address.as_deref() == Some("") {
            conflicts.push(format!("destinations[{i}] has an empty address: a transfer names where it goes"));
        }
        let own_amount = match d.get("amountNativeStr") {
            Some(Value::String(s)) => Amount::parse(s),
            _ => None,
        };
        if own_amount.is_none() {
            conflicts.push(format!("destinations[{i}] has no decimal amountNativeStr: the amounts cannot be added up"));
        }
        total = total.zip(own_amount).and_then(|(t, a)| t.checked_add(a));
        out.push(Destination { kind, id, address, amount: own_amount.map(|a| a.to_string()) });
    }
    if let Some(destination) = top("destAddress").filter(|a| !single && !a.is_empty())
        && !out.iter().any(|d| d.address.as_deref().is_some_and(|a| same_address(a, destination)))
    {
        conflicts.push(format!("destAddress {destination:?} is none of the destinations"));
    }
    if let (Some(total), Some(amount)) = (total, amount)
        && total != amount
    {
        conflicts.push(format!("the destinations add up to {total}, not amountStr {amount}"));
    }
    out
}

/// A field that is there but not a string says nothing the view can use: a conflict, not a gap.
fn not_a_string(object: &Map<String, Value>, name: &str, shown: &str, conflicts: &mut Vec<String>) {
    if let Some(value) = object.get(name).filter(|v| !v.is_string() && !v.is_null()) {
        conflicts.push(format!("{shown} is {value}, not a string"));
    }
}

/// Addresses compare exactly, except where their encoding ignores case: Ethereum's hex (EIP-55
/// only mixes case as a checksum) and Bitcoin's bech32.
pub fn same_address(a: &str, b: &str) -> bool {
    if case_free(a) && case_free(b) { a.eq_ignore_ascii_case(b) } else { a == b }
}

fn case_free(address: &str) -> bool {
    let prefix = address.get(..3).unwrap_or(address).to_ascii_lowercase();
    prefix.starts_with("0x") || prefix == "bc1" || prefix == "tb1"
}

#[cfg(test)]
mod tests;
