//! The raw transaction's side of the view: what the bytes the Co-signer signs actually pay, which
//! keys sign them, and where that disagrees with the description.
//!
//! The asset table is the policy set's `data.rawtx.assets` (see `policies/lib/rawtx.rego`, the
//! readable specification of the same checks): an asset missing from it is not decoded, and the
//! policy's `rawtx.unchecked` says so.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Transfer, same_address};
use crate::decimal::{Amount, SCALE};
use crate::rawtx::{self, btc, eth};

/// How an asset's raw transaction is read.
#[derive(Debug, Clone, PartialEq)]
pub enum AssetKind {
    Eth { chain_id: String },
    Erc20 { chain_id: String, contract: String, decimals: u32 },
    Btc { network: btc::Network },
}

#[derive(Debug, Clone, PartialEq)]
struct Asset {
    kind: AssetKind,
    /// BIP-44 coin type its key paths must name, when the table says.
    coin_type: Option<u64>,
}

/// `data.rawtx.assets`, parsed once per policy snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assets(HashMap<String, Asset>);

impl Assets {
    /// Reads the table; an entry it cannot read is left out (its transactions stay unchecked).
    pub fn from_data(table: &Value) -> Self {
        let Some(entries) = table.as_object() else { return Self::default() };
        let parse = |entry: &Value| -> Option<Asset> {
            let text = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_owned);
            let kind = match entry.get("kind")?.as_str()? {
                "eth" => AssetKind::Eth { chain_id: text("chain_id")? },
                "erc20" => AssetKind::Erc20 {
                    chain_id: text("chain_id")?,
                    contract: text("contract")?,
                    decimals: u32::try_from(entry.get("decimals")?.as_u64()?).ok().filter(|d| *d <= SCALE)?,
                },
                "btc" => AssetKind::Btc { network: btc::Network::parse(entry.get("network")?.as_str()?)? },
                _ => return None,
            };
            Some(Asset { kind, coin_type: entry.get("coin_type").and_then(Value::as_u64) })
        };
        Self(entries.iter().filter_map(|(name, entry)| Some((name.clone(), parse(entry)?))).collect())
    }

    fn get(&self, asset: Option<&str>) -> Option<&Asset> {
        self.0.get(asset?)
    }
}

/// What the raw transaction pays: its recipients (change left out) and its change.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Paid {
    pub kind: &'static str,
    pub pays: Vec<Payment>,
    pub change: Vec<Payment>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Payment {
    pub address: String,
    pub amount: String,
}

/// One `rawTx[]` entry, read as far as it goes.
struct Entry<'a> {
    hex: &'a str,
    payload: &'a str,
    path: Result<Vec<u64>, String>,
}

pub(super) fn check(transfer: &mut Transfer, request: &Map<String, Value>, assets: &Assets) {
    let entries = match request.get("rawTx") {
        None | Some(Value::Null) => return,
        Some(Value::Array(list)) => list,
        Some(_) => return transfer.conflicts.push("rawTx is not a list".to_owned()),
    };
    let mut read = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        match (field("rawTx"), field("payload")) {
            (Some(hex), Some(payload)) => read.push(Entry { hex, payload, path: path(entry.get("keyDerivationPath")) }),
            _ => transfer.conflicts.push(format!("rawTx[{i}] is not an object with rawTx and payload strings")),
        }
    }
    if entries.is_empty() {
        return transfer.conflicts.push("rawTx is an empty list: nothing to sign was described".to_owned());
    }
    if read.len() != entries.len() {
        return; // a malformed entry is a conflict already; the rest cannot be compared
    }
    let asset = assets.get(transfer.asset.as_deref());
    check_paths(transfer, &read, asset.and_then(|a| a.coin_type));
    let Some(asset) = asset else { return };
    let conflicts = &mut transfer.conflicts;
    let hash: fn(&[u8]) -> [u8; 32] = match asset.kind {
        AssetKind::Btc { .. } => rawtx::sha256d,
        _ => rawtx::keccak256,
    };
    let mut bytes = Vec::with_capacity(read.len());
    for (i, entry) in read.iter().enumerate() {
        match rawtx::from_hex(entry.hex) {
            Ok(b) => {
                let payload = entry.payload.strip_prefix("0x").unwrap_or(entry.payload);
                if !payload.eq_ignore_ascii_case(&rawtx::to_hex(&hash(&b))) {
                    conflicts.push(format!("rawTx[{i}]: payload is not the hash of its rawTx"));
                }
                bytes.push(b);
            }
            Err(e) => return conflicts.push(format!("rawTx[{i}] is not hex: {e}")),
        }
    }
    if transfer.operation.as_deref() != Some("TRANSFER") {
        // Only a transfer's raw transaction is compared with a description of payments.
        return;
    }
    let paid = match &asset.kind {
        AssetKind::Eth { chain_id } => ethereum(&bytes, chain_id, None, conflicts),
        AssetKind::Erc20 { chain_id, contract, decimals } => {
            ethereum(&bytes, chain_id, Some((contract, *decimals)), conflicts)
        }
        AssetKind::Btc { network } => bitcoin(&bytes, &read, *network, transfer.source.id.as_deref(), conflicts),
    };
    if let Some(paid) = paid {
        compare(&transfer.destinations, &paid.pays, &mut transfer.conflicts);
        transfer.raw = Some(paid);
    }
}

/// `"[ 44, 60, 0, 0, 0 ]"` (as Fireblocks sends it) or `"m/44'/60'/0'/0/0"`: five numbers.
fn path(value: Option<&Value>) -> Result<Vec<u64>, String> {
    let Some(Value::String(text)) = value else {
        return Err("has no keyDerivationPath".to_owned());
    };
    let inner = text.trim();
    let parts: Vec<&str> = if let Some(list) = inner.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        list.split(',').collect()
    } else if let Some(rest) = inner.strip_prefix("m/") {
        rest.split('/').map(|p| p.trim_end_matches(['\'', 'h'])).collect()
    } else {
        Vec::new()
    };
    let numbers: Option<Vec<u64>> = parts.iter().map(|p| p.trim().parse().ok()).collect();
    match numbers {
        Some(n) if n.len() == 5 && n[0] == 44 => Ok(n),
        _ => Err(format!("has a keyDerivationPath {text:?} that is not a BIP-44 path of five numbers")),
    }
}

/// Every entry is signed by a key of the source vault: its path's account is `sourceId`.
fn check_paths(transfer: &mut Transfer, entries: &[Entry], coin_type: Option<u64>) {
    let mut accounts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match &entry.path {
            Err(why) => transfer.conflicts.push(format!("rawTx[{i}] {why}")),
            Ok(path) => {
                if let Some(coin) = coin_type.filter(|c| *c != path[1]) {
                    transfer.conflicts.push(format!(
                        "rawTx[{i}] is signed with a key of coin type {}, not {coin} for {}",
                        path[1],
                        transfer.asset.as_deref().unwrap_or("?")
                    ));
                }
                accounts.push(path[2].to_string());
            }
        }
    }
    accounts.sort_unstable();
    accounts.dedup();
    let source = &transfer.source;
    match (source.kind.as_deref(), source.id.as_deref(), accounts.as_slice()) {
        (_, _, []) => {}
        (Some("VAULT"), Some(id), [account]) if id == account => {}
        (Some("VAULT"), id, accounts) => transfer.conflicts.push(format!(
            "the raw transaction is signed by the keys of vault account {}, not the source vault {}",
            accounts.join(" and "),
            id.unwrap_or("<missing>")
        )),
        (kind, _, _) => transfer.conflicts.push(format!(
            "the raw transaction is signed by vault keys, but the source is a {}",
            kind.unwrap_or("<missing> type")
        )),
    }
    if let [account] = accounts.as_slice() {
        transfer.source.account = Some(account.clone());
    }
}

/// An amount in a currency's smallest unit (`units`, an integer string) with `decimals` places.
fn from_units(units: &str, decimals: u32) -> Option<Amount> {
    let units: u128 = units.parse().ok()?;
    units.checked_mul(10u128.pow(SCALE - decimals)).map(Amount::from_units)
}

fn ethereum(
    bytes: &[Vec<u8>],
    chain_id: &str,
    token: Option<(&String, u32)>,
    conflicts: &mut Vec<String>,
) -> Option<Paid> {
    let [only] = bytes else {
        conflicts.push(format!("an Ethereum transaction is one rawTx entry, not {}", bytes.len()));
        return None;
    };
    let tx = match eth::decode_transaction(only) {
        Ok(tx) => tx,
        Err(e) => {
            conflicts.push(format!("rawTx[0] is not an unsigned Ethereum transaction: {e}"));
            return None;
        }
    };
    if tx.chain_id.as_deref() != Some(chain_id) {
        conflicts
            .push(format!("rawTx[0] is for chain id {}, not {chain_id}", tx.chain_id.as_deref().unwrap_or("none")));
    }
    if tx.to.is_empty() {
        conflicts.push("rawTx[0] creates a contract: that is not a transfer".to_owned());
        return None;
    }
    let (address, units, decimals) = match token {
        None => {
            if tx.data != "0x" {
                conflicts.push("rawTx[0] carries calldata: a native transfer has none".to_owned());
            }
            (tx.to, tx.value, 18)
        }
        Some((contract, decimals)) => {
            if !same_address(&tx.to, contract) {
                conflicts.push(format!("rawTx[0] calls {}, not the token contract {contract}", tx.to));
            }
            if tx.value != "0" {
                conflicts.push(format!("rawTx[0] sends {} wei along with a token transfer", tx.value));
            }
            let data = rawtx::from_hex(&tx.data).unwrap_or_default();
            match eth::decode_erc20(&data) {
                Ok(eth::Erc20Call::Transfer { to, amount }) => (to, amount, decimals),
                Ok(other) => {
                    let method = serde_json::to_value(&other).ok();
                    let method = method.as_ref().and_then(|m| m["method"].as_str()).unwrap_or("another method");
                    conflicts.push(format!("rawTx[0] calls {method}, not transfer"));
                    return None;
                }
                Err(e) => {
                    conflicts.push(format!("rawTx[0]'s calldata is not an ERC-20 transfer: {e}"));
                    return None;
                }
            }
        }
    };
    let Some(amount) = from_units(&units, decimals) else {
        conflicts.push(format!("rawTx[0] moves {units} units: more than any amount this handler compares"));
        return None;
    };
    Some(Paid {
        kind: if token.is_some() { "erc20" } else { "eth" },
        pays: vec![payment(address, amount)],
        change: vec![],
    })
}

fn payment(address: String, amount: Amount) -> Payment {
    Payment { address, amount: amount.to_string() }
}

/// The per-input preimages of one Bitcoin transaction. Change is an output paying the key of an
/// input that the source vault signs (its script code, or the same key hash in another standard
/// form); every other output is a payment that the description must list.
fn bitcoin(
    bytes: &[Vec<u8>],
    entries: &[Entry],
    network: btc::Network,
    source: Option<&str>,
    conflicts: &mut Vec<String>,
) -> Option<Paid> {
    let mut preimages = Vec::with_capacity(bytes.len());
    for (i, b) in bytes.iter().enumerate() {
        match btc::decode_preimage(b, network) {
            Ok(p) => preimages.push(p),
            Err(e) => {
                conflicts.push(format!("rawTx[{i}] is not a legacy Bitcoin signing preimage: {e}"));
                return None;
            }
        }
    }
    let first = &preimages[0];
    let outpoints =
        |p: &btc::Preimage| p.inputs.iter().map(|x| (x.txid.clone(), x.vout, x.sequence)).collect::<Vec<_>>();
    let mut signed_inputs = Vec::new();
    // The key of each path, as its inputs' key hashes show it: one path is one key.
    let mut keys: BTreeMap<&[u64], &str> = BTreeMap::new();
    for (i, p) in preimages.iter().enumerate() {
        if p.sighash_type != 1 {
            conflicts.push(format!(
                "rawTx[{i}] signs with sighash type {}, not SIGHASH_ALL (1): others could change the transaction",
                p.sighash_type
            ));
        }
        if i > 0
            && (p.version, p.locktime, &p.outputs, outpoints(p))
                != (first.version, first.locktime, &first.outputs, outpoints(first))
        {
            conflicts.push(format!("rawTx[{i}] is not the same transaction as rawTx[0]"));
        }
        let input = &p.inputs[p.signing_input];
        signed_inputs.push(p.signing_input);
        if let (Ok(path), Some(hash)) = (&entries[i].path, input.script.pubkey_hash.as_deref())
            && keys.insert(path, hash).is_some_and(|known| known != hash)
        {
            conflicts.push(format!("rawTx[{i}] signs an input of another key than its key path signs elsewhere"));
        }
    }
    if preimages.len() != first.inputs.len() {
        conflicts.push(format!(
            "{} rawTx entries for a transaction with {} inputs: each input is signed once",
            preimages.len(),
            first.inputs.len()
        ));
    }
    signed_inputs.sort_unstable();
    signed_inputs.dedup();
    if signed_inputs.len() != preimages.len() {
        conflicts.push("two rawTx entries sign the same input".to_owned());
    }
    // Inputs signed through a source-vault path: only their keys can receive change.
    let vault_signed: Vec<&btc::Input> = preimages
        .iter()
        .zip(entries)
        .filter(|(_, e)| e.path.as_ref().is_ok_and(|p| source == Some(p[2].to_string().as_str())))
        .map(|(p, _)| &p.inputs[p.signing_input])
        .collect();
    let is_change = |o: &btc::Output| {
        vault_signed.iter().any(|input| {
            o.script_hex == input.script_code
                || (o.script.pubkey_hash.is_some() && o.script.pubkey_hash == input.script.pubkey_hash)
        })
    };
    let (mut pays, mut change) = (Vec::new(), Vec::new());
    for (j, o) in first.outputs.iter().enumerate() {
        let Some(amount) = from_units(&o.value, 8) else { continue };
        let Some(address) = o.script.address.clone() else {
            conflicts
                .push(format!("output {j} pays {} satoshis to a {} script with no address", o.value, o.script.kind));
            continue;
        };
        if is_change(o) { change.push(payment(address, amount)) } else { pays.push(payment(address, amount)) }
    }
    if change.len() > 1 {
        conflicts.push(format!("{} change outputs: at most one", change.len()));
    }
    Some(Paid { kind: "btc", pays, change })
}

/// The raw transaction pays each described destination exactly its amount, and nothing else.
fn compare(described: &[super::Destination], pays: &[Payment], conflicts: &mut Vec<String>) {
    let mut totals: BTreeMap<String, (Option<Amount>, Option<Amount>)> = BTreeMap::new();
    for d in described {
        let Some(address) = &d.address else {
            conflicts.push("a destination has no address to compare with the raw transaction".to_owned());
            continue;
        };
        let entry = totals.entry(normalise(address)).or_insert((Some(Amount::ZERO), Some(Amount::ZERO)));
        entry.0 = entry.0.zip(d.amount.as_deref().and_then(Amount::parse)).and_then(|(t, a)| t.checked_add(a));
    }
    for p in pays {
        let entry = totals.entry(normalise(&p.address)).or_insert((Some(Amount::ZERO), Some(Amount::ZERO)));
        entry.1 = entry.1.zip(Amount::parse(&p.amount)).and_then(|(t, a)| t.checked_add(a));
    }
    for (address, (described, paid)) in totals {
        if described != paid {
            let show = |a: Option<Amount>| a.map_or_else(|| "an unknown amount".to_owned(), |a| a.to_string());
            conflicts.push(format!(
                "the raw transaction pays {address} {}, described as {}",
                show(paid),
                show(described)
            ));
        }
    }
}

/// One spelling per address, so that case-insensitive encodings add up under one key.
fn normalise(address: &str) -> String {
    if super::case_free(address) { address.to_ascii_lowercase() } else { address.to_owned() }
}
