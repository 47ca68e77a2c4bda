//! The plain-JSON envelope of the certificate-pinning modes: TLS alone protects these requests.

use super::{Answer, EnvelopeError, Opened, SealError, Sealed};

pub fn decode_request(body: &[u8]) -> Result<Opened, EnvelopeError> {
    if body.trim_ascii().is_empty() {
        return Err(EnvelopeError::Empty);
    }
    let payload = super::strict_json::parse(body).map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
    Ok(Opened { payload, cosigner_key: None })
}

pub fn encode_answer(answer: &Answer<'_>) -> Result<Sealed, SealError> {
    Ok(Sealed { content_type: "application/json", body: serde_json::to_vec(answer)? })
}
