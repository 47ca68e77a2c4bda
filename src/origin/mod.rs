//! Proof of origin: a token signed by the customer's own backend, carried in the transaction
//! (its note, `externalTxId` or an `extraParameters` field), that states what it authorises —
//! asset, exact amount, source, destination — and is good for one transaction.
//!
//! [`Origin::inspect`] gives policies `input.context.origin`: whether a token is present, whether
//! it verified (a configured key, its own algorithm, inside its time window), its claims, which
//! claims do not match the transaction's canonical view, and why not if it failed. A bad token
//! never fails the request: it is a fact the policy judges. Whether the token's `jti` was already
//! used by another transaction is read from the state store at evaluation (see [`Binding`]).

mod token;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::decimal::Amount;
use crate::transfer::{Transfer, same_address};

pub use token::{Alg, MAX_CARRIER_BYTES, OriginKey, OriginSigner, TokenError, find, generate_ed25519, verify};

/// Clock difference tolerated between the backend that signs and this handler.
pub const LEEWAY: Duration = Duration::from_secs(60);
/// The longest `max_age` accepted: a token's one use is remembered at most this long.
pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(30 * 86_400);
/// The longest `jti` accepted (it becomes a state-store key).
pub const MAX_JTI_BYTES: usize = 128;
/// The state-store keys that remember which transaction used a `jti`.
pub const JTI_KEY_PREFIX: &str = "origin.jti/";

/// Where the token travels in the create-transaction call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carrier {
    Note,
    ExternalTxId,
    /// `extraParameters.KEY`.
    ExtraParameter(String),
}

impl Carrier {
    /// `"note"`, `"externalTxId"` or `"extraParameters.KEY"`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "note" => Some(Self::Note),
            "externalTxId" => Some(Self::ExternalTxId),
            _ => {
                text.strip_prefix("extraParameters.").filter(|k| !k.is_empty()).map(|k| Self::ExtraParameter(k.into()))
            }
        }
    }

    fn text<'a>(&self, request: &'a Map<String, Value>) -> Option<&'a Value> {
        match self {
            Self::Note => request.get("note"),
            Self::ExternalTxId => request.get("externalTxId"),
            Self::ExtraParameter(key) => request.get("extraParameters")?.get(key),
        }
    }
}

/// `[origin]`: where tokens travel, how old they may be, the backends' keys.
#[derive(Debug)]
pub struct Origin {
    pub carrier: Carrier,
    pub max_age: Duration,
    pub keys: Vec<OriginKey>,
}

/// `input.context.origin`, as policies see it and the decision log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginView {
    /// The carrier holds a token (well-formed or not).
    pub present: bool,
    /// A configured key signed it with its own algorithm, its claims are complete, and it is
    /// inside its time window.
    pub verified: bool,
    /// The name of the key that signed it.
    pub key: Option<String>,
    /// The claims, once the signature verified.
    pub claims: Option<Map<String, Value>>,
    /// The claims that do not match the transaction.
    pub mismatches: Vec<String>,
    /// Another transaction was approved with this `jti`.
    pub reused: bool,
    pub error: Option<String>,
}

/// What remembers a verified token's one use: a state-store key counting the transactions
/// approved with it, read over a window that covers the token's whole validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub key: String,
    pub window: String,
}

impl OriginView {
    /// The binding of a verified token's `jti`; `None` for any other view.
    pub fn binding(&self) -> Option<Binding> {
        let claims = self.claims.as_ref().filter(|_| self.verified)?;
        let jti = claims.get("jti")?.as_str()?;
        let (iat, exp) = (claims.get("iat")?.as_f64()?, claims.get("exp")?.as_f64()?);
        // A reuse comes at most `max_age` (≤ MAX_AGE_LIMIT) after `iat`, and before `exp`.
        let life = (exp - iat).clamp(1.0, MAX_AGE_LIMIT.as_secs_f64()) as u64;
        Some(Binding { key: format!("{JTI_KEY_PREFIX}{jti}"), window: format!("{}s", life + 2 * LEEWAY.as_secs()) })
    }
}

impl Origin {
    /// The origin view of a transaction request, judged against its canonical `transfer` at `now`.
    pub fn inspect(&self, request: &Map<String, Value>, transfer: &Transfer, now: DateTime<Utc>) -> OriginView {
        let failed = |present, error: String| OriginView { present, error: Some(error), ..OriginView::default() };
        let text = match self.carrier.text(request) {
            None | Some(Value::Null) => return failed(false, "no origin token: the carrier is empty".into()),
            Some(Value::String(text)) => text.as_str(),
            Some(_) => return failed(false, "the carrier is not a string".into()),
        };
        let token = match find(text) {
            Ok(Some(token)) => token,
            Ok(None) => return failed(false, "no origin token in the carrier".into()),
            Err(e) => return failed(matches!(e, TokenError::SeveralTokens), e.to_string()),
        };
        let verified = match verify(token, &self.keys) {
            Ok(verified) => verified,
            Err(e) => return failed(true, e.to_string()),
        };
        let mut view = OriginView { present: true, key: Some(verified.key.to_string()), ..OriginView::default() };
        view.error = self.judge_claims(&verified.claims, now).err();
        view.verified = view.error.is_none();
        view.mismatches = mismatches(&verified.claims, request, transfer);
        view.claims = Some(verified.claims);
        view
    }

    /// The claims every token must have, and its time window.
    fn judge_claims(&self, claims: &Map<String, Value>, now: DateTime<Utc>) -> Result<(), String> {
        match claims.get("jti") {
            Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI_BYTES => {}
            Some(Value::String(_)) => return Err(format!("the jti must be 1 to {MAX_JTI_BYTES} bytes")),
            _ => return Err("the token has no jti".into()),
        }
        let time = |name: &str| match claims.get(name).and_then(Value::as_f64) {
            Some(t) if t.is_finite() => Ok(t),
            _ => Err(format!("the token has no numeric {name}")),
        };
        let (iat, exp) = (time("iat")?, time("exp")?);
        let now = now.timestamp_millis() as f64 / 1000.0;
        let leeway = LEEWAY.as_secs_f64();
        if exp <= now - leeway {
            return Err(format!("the token expired {}s ago", (now - exp) as i64));
        }
        if iat > now + leeway {
            return Err("the token is issued in the future".into());
        }
        if now - iat > self.max_age.as_secs_f64() + leeway {
            return Err(format!(
                "the token is {}s old, older than origin.max_age ({}s)",
                (now - iat) as i64,
                self.max_age.as_secs()
            ));
        }
        for name in ["asset", "amount", "source", "destination"] {
            if !claims.contains_key(name) {
                return Err(format!("the token has no {name} claim"));
            }
        }
        Ok(())
    }
}

/// The names of the claims that do not match the transaction: every member a claim states must
/// be the transaction's own, exactly (amounts as numbers, 0x-hex and bech32 addresses in any case).
fn mismatches(claims: &Map<String, Value>, request: &Map<String, Value>, transfer: &Transfer) -> Vec<String> {
    let mut out = Vec::new();
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let mut check = |name: &str, ok: bool| {
        if !ok {
            out.push(name.to_owned());
        }
    };
    check("asset", matches!(claims.get("asset"), Some(Value::String(a)) if transfer.asset.as_deref() == Some(a)));
    let amount = transfer.amount.clone().or_else(|| text(request.get("requestedAmountStr")));
    let same_amount = match (claims.get("amount"), amount) {
        (Some(Value::String(claimed)), Some(actual)) => {
            Amount::parse(claimed).is_some() && Amount::parse(claimed) == Amount::parse(&actual)
        }
        _ => false,
    };
    check("amount", same_amount);
    let source = claims.get("source").and_then(Value::as_object);
    let same_source = source.is_some_and(|s| {
        let kind = text(s.get("type"));
        let id = text(s.get("id"));
        kind.is_some() && id.is_some() && kind == transfer.source.kind && id == transfer.source.id
    });
    check("source", same_source);
    let destination = claims.get("destination").and_then(Value::as_object);
    let same_destination = match (destination, transfer.destinations.as_slice()) {
        (Some(claimed), [actual]) => {
            let member = |name: &str, actual: &Option<String>, same: fn(&str, &str) -> bool| match claimed.get(name) {
                None => true,
                Some(Value::String(c)) => actual.as_deref().is_some_and(|a| same(c, a)),
                Some(_) => false,
            };
            (claimed.contains_key("id") || claimed.contains_key("address"))
                && member("type", &actual.kind, |a, b| a == b)
                && member("id", &actual.id, |a, b| a == b)
                && member("address", &actual.address, same_address)
        }
        // One token authorises one destination: a transaction paying several is not it.
        _ => false,
    };
    check("destination", same_destination);
    if let Some(claimed) = claims.get("operation") {
        check("operation", claimed.as_str().is_some() && text(Some(claimed)) == transfer.operation);
    }
    if let Some(claimed) = claims.get("externalTxId") {
        check(
            "externalTxId",
            claimed.as_str().is_some() && claimed == request.get("externalTxId").unwrap_or(&Value::Null),
        );
    }
    out
}

/// The claims a token for this transfer states (`origin sign`, fixtures, tests).
pub fn claims_for(
    asset: &str,
    amount: &str,
    source: (&str, &str),
    destination: (&str, &str, Option<&str>),
    jti: &str,
    iat: i64,
    ttl: Duration,
) -> Value {
    let mut dest = serde_json::json!({"type": destination.0, "id": destination.1});
    if let Some(address) = destination.2 {
        dest["address"] = Value::from(address);
    }
    serde_json::json!({
        "jti": jti,
        "iat": iat,
        "exp": iat + ttl.as_secs() as i64,
        "asset": asset,
        "amount": amount,
        "source": {"type": source.0, "id": source.1},
        "destination": dest,
    })
}

#[cfg(test)]
mod tests;
