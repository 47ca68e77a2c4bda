//! A Co-signer stand-in for demos, tests and load generation: signs payloads as the Co-signer does
//! and verifies the signed answer; [`crate::http_client`] posts them over TLS.

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

/// Signs a payload as the Co-signer does: RS256, header `{"typ":"JWT","alg":"RS256"}`, no time claims.
pub fn sign_request(payload: &Value, cosigner_private_key: &EncodingKey) -> anyhow::Result<String> {
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::RS256), payload, cosigner_private_key)?)
}

/// Verifies a signed answer with the handler's public key and returns its claims.
pub fn verify_answer(token: &[u8], handler_public_key: &DecodingKey) -> anyhow::Result<Value> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let token = std::str::from_utf8(token).context("answer is not UTF-8")?;
    Ok(jsonwebtoken::decode::<Value>(token, handler_public_key, &validation)?.claims)
}
