//! The JWT envelope: requests verified RS256 against the configured Co-signer keys, answers signed
//! RS256 with the handler's key. Keys are parsed once at start-up (a JWT library that re-parses a
//! key per operation spends more on the parse than on the signature).
//!
//! The algorithm is pinned, never read from the token: the header's `alg` must say RS256 and the
//! signature is checked with RS256 whatever else the header says.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::{Answer, EnvelopeError, Opened, SealError, Sealed};
use crate::keys::{CosignerKeyring, HandlerKey, SigningAlgorithm};

/// Clock skew tolerated on `exp` and `nbf`, when a token carries them.
const LEEWAY_SECS: i64 = 60;

pub fn verify_request(body: &[u8], keyring: &CosignerKeyring) -> Result<Opened, EnvelopeError> {
    let token = trim_token(body)?;
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(EnvelopeError::MalformedJwt("expected three dot-separated segments"));
    };
    if header.is_empty() || claims.is_empty() || signature.is_empty() {
        return Err(EnvelopeError::MalformedJwt("empty segment"));
    }
    check_header(header)?;

    let signed = &token[..header.len() + 1 + claims.len()];
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| EnvelopeError::BadSignature)?;
    let key = keyring
        .keys()
        .iter()
        .find(|key| key.verifies_rs256(signed.as_bytes(), &signature))
        .ok_or(EnvelopeError::BadSignature)?;

    let payload =
        super::strict_json::parse(&decode_segment(claims)?).map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
    check_time_claims(&payload)?;
    Ok(Opened { payload, cosigner_key: Some(key.name.clone()) })
}

/// `{"typ":"JWT","alg":"RS256"}` and `{"typ":"JWT","alg":"ES256"}`, base64url: the same for every answer.
const RS256_HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9";
const ES256_HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9";

pub fn sign_answer(answer: &Answer<'_>, key: &HandlerKey) -> Result<Sealed, SealError> {
    Ok(Sealed { content_type: "application/jwt", body: sign_compact(answer, key)?.into_bytes() })
}

/// `claims` as a compact JWS signed with `key` (the answers; the decision log's checkpoints).
pub fn sign_compact(claims: &impl serde::Serialize, key: &HandlerKey) -> Result<String, SealError> {
    let mut token = String::with_capacity(512);
    token.push_str(match key.algorithm() {
        SigningAlgorithm::Rs256 => RS256_HEADER,
        SigningAlgorithm::Es256 => ES256_HEADER,
    });
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut token);
    let signature = key.sign(token.as_bytes()).map_err(|e| SealError::Signing(e.to_string()))?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// The bare token, tolerating surrounding whitespace and a JSON-string wrapping.
fn trim_token(body: &[u8]) -> Result<&str, EnvelopeError> {
    let body = body.trim_ascii();
    if body.is_empty() {
        return Err(EnvelopeError::Empty);
    }
    let body = body.strip_prefix(b"\"").and_then(|b| b.strip_suffix(b"\"")).unwrap_or(body);
    if !body.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(EnvelopeError::MalformedJwt("characters outside base64url"));
    }
    std::str::from_utf8(body).map_err(|_| EnvelopeError::MalformedJwt("not UTF-8"))
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, EnvelopeError> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| EnvelopeError::MalformedJwt("segment is not base64url"))
}

fn check_header(segment: &str) -> Result<(), EnvelopeError> {
    let header = super::strict_json::parse(&decode_segment(segment)?)
        .map_err(|_| EnvelopeError::MalformedJwt("header is not JSON without duplicate keys"))?;
    let Value::Object(header) = header else {
        return Err(EnvelopeError::MalformedJwt("header is not a JSON object"));
    };
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        Some(Value::String(alg)) => return Err(EnvelopeError::AlgorithmRefused(alg.clone())),
        Some(other) => return Err(EnvelopeError::AlgorithmRefused(other.to_string())),
        None => return Err(EnvelopeError::AlgorithmRefused(String::new())),
    }
    // RFC 7515 §4.1.11: a token naming critical extensions we do not implement must be refused.
    if header.contains_key("crit") {
        return Err(EnvelopeError::UnsupportedCritical);
    }
    Ok(())
}

/// `exp` and `nbf` are honoured when present; real Co-signer tokens carry neither.
fn check_time_claims(payload: &Value) -> Result<(), EnvelopeError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let claim = |name: &'static str| match payload.get(name) {
        None => Ok(None),
        Some(v) => v.as_f64().map(|t| Some(t as i64)).ok_or(EnvelopeError::BadTimeClaim(name)),
    };
    if let Some(exp) = claim("exp")?
        && now > exp.saturating_add(LEEWAY_SECS)
    {
        return Err(EnvelopeError::Expired);
    }
    if let Some(nbf) = claim("nbf")?
        && nbf > now.saturating_add(LEEWAY_SECS)
    {
        return Err(EnvelopeError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constant_headers_say_typ_jwt_and_their_algorithm() {
        for (header, alg) in [(RS256_HEADER, "RS256"), (ES256_HEADER, "ES256")] {
            let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
            assert_eq!(header, serde_json::json!({"typ": "JWT", "alg": alg}));
        }
    }
}
