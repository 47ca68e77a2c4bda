//! Envelopes: how a request body carries the Co-signer payload (a signed JWT or plain JSON), and how
//! the answer goes back (a JWT signed with the handler's key, or plain JSON).

pub mod json;
pub mod jwt;
mod strict_json;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decision::{Action, Decision};
use crate::keys::{CosignerKeyring, HandlerKey};

/// The two wire formats. `jwt` is Co-signer options 1, 4 and 5 (`/v2/...`), `json` options 2 and 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Jwt,
    Json,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Jwt => "jwt",
            Mode::Json => "json",
        }
    }

    /// The path segment in front of the endpoint name.
    pub fn path_prefix(self) -> &'static str {
        match self {
            Mode::Jwt => "/v2",
            Mode::Json => "",
        }
    }
}

/// A payload taken out of its envelope, with the name of the Co-signer key that vouched for it.
#[derive(Debug)]
pub struct Opened {
    pub payload: Value,
    pub cosigner_key: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("body is empty")]
    Empty,
    #[error("body is not a compact JWT: {0}")]
    MalformedJwt(&'static str),
    #[error("token algorithm {0:?} is refused: only RS256 is accepted")]
    AlgorithmRefused(String),
    #[error("token header has critical extensions this handler does not understand")]
    UnsupportedCritical,
    #[error("signature does not verify with any configured Co-signer key")]
    BadSignature,
    #[error("token has expired (exp)")]
    Expired,
    #[error("token is not yet valid (nbf)")]
    NotYetValid,
    #[error("token claim {0} is not a number")]
    BadTimeClaim(&'static str),
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
}

impl EnvelopeError {
    /// Short machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::Empty => "empty_body",
            EnvelopeError::MalformedJwt(_) => "malformed_jwt",
            EnvelopeError::AlgorithmRefused(_) => "algorithm_refused",
            EnvelopeError::UnsupportedCritical => "unsupported_critical_header",
            EnvelopeError::BadSignature => "invalid_signature",
            EnvelopeError::Expired => "token_expired",
            EnvelopeError::NotYetValid => "token_not_yet_valid",
            EnvelopeError::BadTimeClaim(_) => "invalid_time_claim",
            EnvelopeError::InvalidJson(_) => "invalid_json",
        }
    }

    /// Whether the request failed to authenticate (as opposed to being malformed).
    pub fn is_authentication_failure(&self) -> bool {
        matches!(
            self,
            EnvelopeError::AlgorithmRefused(_)
                | EnvelopeError::UnsupportedCritical
                | EnvelopeError::BadSignature
                | EnvelopeError::Expired
                | EnvelopeError::NotYetValid
        )
    }
}

/// Takes the payload out of a request body.
pub fn open(mode: Mode, body: &[u8], keyring: &CosignerKeyring) -> Result<Opened, EnvelopeError> {
    match mode {
        Mode::Jwt => jwt::verify_request(body, keyring),
        Mode::Json => json::decode_request(body),
    }
}

/// The response object of the protocol.
#[derive(Debug, Serialize)]
pub struct Answer<'a> {
    pub action: Action,
    #[serde(rename = "requestId")]
    pub request_id: &'a str,
    #[serde(rename = "rejectionReason", skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<&'a str>,
}

impl<'a> Answer<'a> {
    pub fn new(request_id: &'a str, decision: &'a Decision) -> Self {
        Self { action: decision.action, request_id, rejection_reason: decision.rejection_reason() }
    }
}

/// An encoded answer, ready for the HTTP body.
#[derive(Debug)]
pub struct Sealed {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("jwt mode is enabled without a handler signing key")]
    NoSigningKey,
    #[error("signing the answer failed: {0}")]
    Signing(String),
    #[error("encoding the answer failed: {0}")]
    Encoding(#[from] serde_json::Error),
}

/// Encodes the answer for the wire.
pub fn seal(mode: Mode, answer: &Answer<'_>, key: Option<&HandlerKey>) -> Result<Sealed, SealError> {
    match mode {
        Mode::Jwt => jwt::sign_answer(answer, key.ok_or(SealError::NoSigningKey)?),
        Mode::Json => json::encode_answer(answer),
    }
}
