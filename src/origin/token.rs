//! The origin token: found in the text that carries it, parsed as a compact JWS, its signature
//! verified with the one configured key its header names — and, for the CLI and tests, made.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use serde_json::{Map, Value};

use crate::keys::{GeneratedKeyPair, KeyError};

/// A carrier longer than this is refused unread: a note is short, and the token is in it.
pub const MAX_CARRIER_BYTES: usize = 16 * 1024;
/// A token longer than this is refused before decoding (an RS256 token with full claims is ~1 KB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The algorithms an origin key signs with; each key has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EdDsa,
    Es256,
    Rs256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDsa => "EdDSA",
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

/// One backend's public key, known by the operator's name for it (the token's `kid`).
pub struct OriginKey {
    pub name: Arc<str>,
    pub alg: Alg,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for OriginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginKey").field("name", &self.name).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl OriginKey {
    /// An Ed25519, P-256 or RSA (2048 to 8192 bits) public key in PEM; its type fixes its algorithm.
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<Self, KeyError> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| {
            KeyError::Invalid("not a PEM public key (\"BEGIN PUBLIC KEY\"): configure the backend's public key".into())
        })?;
        let der = spki.as_ref();
        let parsed = [(Alg::EdDsa, &ED25519 as _), (Alg::Es256, &ECDSA_P256_SHA256_FIXED as _)]
            .into_iter()
            .chain(std::iter::once((Alg::Rs256, &RSA_PKCS1_2048_8192_SHA256 as _)))
            .find_map(|(alg, algorithm)| ParsedPublicKey::new(algorithm, der).ok().map(|key| (alg, key)));
        let (alg, key) = parsed
            .ok_or_else(|| KeyError::Invalid("not an Ed25519, P-256 or RSA (2048 to 8192 bits) public key".into()))?;
        Ok(Self { name: name.into(), alg, key })
    }
}

/// Why a token is not one we can trust; the text `input.context.origin.error` shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the carrier is longer than {MAX_CARRIER_BYTES} bytes")]
    CarrierTooLong,
    #[error("the carrier holds more than one token")]
    SeveralTokens,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token's algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("the token names an unknown key {0:?}")]
    UnknownKey(String),
    #[error("no configured key signs with {0}")]
    NoKeyFor(&'static str),
    #[error("the key {key:?} signs with {signs}, not {alg}")]
    WrongAlgorithm { key: String, signs: &'static str, alg: String },
    #[error("the token's signature does not verify")]
    BadSignature,
}

/// The one compact JWS in `text`, if there is one. Its header and payload are JSON objects, so
/// both start with `eyJ` (`{"` in base64url): around it may be any text (`"payroll 42 | <token>"`).
pub fn find(text: &str) -> Result<Option<&str>, TokenError> {
    if text.len() > MAX_CARRIER_BYTES {
        return Err(TokenError::CarrierTooLong);
    }
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let bytes = text.as_bytes();
    let mut found = None;
    let mut at = 0;
    while let Some(offset) = text[at..].find("eyJ") {
        let start = at + offset;
        let mut end = start;
        let mut dots = 0;
        while end < bytes.len() && (is_b64(bytes[end]) || (bytes[end] == b'.' && dots < 2)) {
            dots += usize::from(bytes[end] == b'.');
            end += 1;
        }
        at = end.max(start + 3);
        // A token stands alone: not the tail of a longer base64url word.
        let detached = start == 0 || !is_b64(bytes[start - 1]);
        let candidate = &text[start..end];
        if dots == 2 && detached {
            if found.is_some() {
                return Err(TokenError::SeveralTokens);
            }
            found = Some(candidate);
        }
    }
    Ok(found)
}

/// A token whose signature verified, with the key that made it and its claims (not yet judged).
#[derive(Debug, Clone)]
pub struct Verified {
    pub key: Arc<str>,
    pub claims: Map<String, Value>,
}

/// Verifies `token` against `keys`: the header's `alg` must be the signing key's own (no `none`,
/// no HMAC, no other), its `kid` if present names the key; without a `kid`, any key of that
/// algorithm may have signed.
pub fn verify(token: &str, keys: &[OriginKey]) -> Result<Verified, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("a compact JWS has three parts"));
    };
    let header = json_object(header_b64).ok_or(TokenError::Malformed("the header is not a base64url JSON object"))?;
    if header.contains_key("crit") {
        return Err(TokenError::Malformed("critical header extensions are not supported"));
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        _ => return Err(TokenError::Malformed("the header has no alg")),
    };
    let wanted = match alg {
        "EdDSA" => Alg::EdDsa,
        "ES256" => Alg::Es256,
        "RS256" => Alg::Rs256,
        other => return Err(TokenError::Algorithm(other.to_string())),
    };
    let candidates: Vec<&OriginKey> = match header.get("kid") {
        None => keys.iter().filter(|key| key.alg == wanted).collect(),
        Some(Value::String(kid)) => {
            let key = keys.iter().find(|key| *key.name == **kid).ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
            if key.alg != wanted {
                return Err(TokenError::WrongAlgorithm {
                    key: kid.clone(),
                    signs: key.alg.as_str(),
                    alg: alg.to_string(),
                });
            }
            vec![key]
        }
        Some(_) => return Err(TokenError::Malformed("the header's kid is not a string")),
    };
    if candidates.is_empty() {
        return Err(TokenError::NoKeyFor(wanted.as_str()));
    }
    let signature =
        URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
    let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
    let key = candidates
        .into_iter()
        .find(|key| key.key.verify_sig(signed.as_bytes(), &signature).is_ok())
        .ok_or(TokenError::BadSignature)?;
    let claims = json_object(payload_b64).ok_or(TokenError::Malformed("the claims are not a base64url JSON object"))?;
    Ok(Verified { key: key.name.clone(), claims })
}

fn json_object(b64: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A backend's private key, to make tokens (`origin sign`, tests).
pub enum OriginSigner {
    EdDsa(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl OriginSigner {
    /// A PKCS#8 Ed25519 or P-256 key, or an RSA key (PKCS#8 or PKCS#1), in PEM.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let invalid = || KeyError::Invalid("not an Ed25519, P-256 or RSA private key in PEM".into());
        match PrivateKeyDer::from_pem_slice(pem).map_err(|_| invalid())? {
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der();
                if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    Ok(Self::EdDsa(pair))
                } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
                    Ok(Self::Es256(pair))
                } else {
                    RsaKeyPair::from_pkcs8(der).map(Self::Rs256).map_err(|_| invalid())
                }
            }
            PrivateKeyDer::Pkcs1(der) => {
                RsaKeyPair::from_der(der.secret_pkcs1_der()).map(Self::Rs256).map_err(|_| invalid())
            }
            _ => Err(invalid()),
        }
    }

    pub fn alg(&self) -> Alg {
        match self {
            Self::EdDsa(_) => Alg::EdDsa,
            Self::Es256(_) => Alg::Es256,
            Self::Rs256(_) => Alg::Rs256,
        }
    }

    /// The compact JWS of `claims`, with `kid` in its header when given.
    pub fn sign(&self, claims: &Value, kid: Option<&str>) -> Result<String, KeyError> {
        let mut header = serde_json::json!({"alg": self.alg().as_str(), "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = Value::from(kid);
        }
        let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let signed = format!("{}.{}", encode(&header), encode(claims));
        let failed = |_| KeyError::Invalid(format!("{} signing failed", self.alg().as_str()));
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = match self {
            Self::EdDsa(pair) => pair.sign(signed.as_bytes()).as_ref().to_vec(),
            Self::Es256(pair) => pair.sign(&rng, signed.as_bytes()).map_err(failed)?.as_ref().to_vec(),
            Self::Rs256(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, signed.as_bytes(), &mut signature)
                    .map_err(failed)?;
                signature
            }
        };
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A fresh Ed25519 pair for a backend (`keygen --origin`).
pub fn generate_ed25519() -> Result<GeneratedKeyPair, KeyError> {
    let failed = |what: &str| KeyError::Invalid(format!("Ed25519 key generation failed: {what}"));
    let pair = Ed25519KeyPair::generate().map_err(|_| failed("generate"))?;
    let private = pair.to_pkcs8v1().map_err(|_| failed("encode private key"))?;
    let public = pair.public_key().as_der().map_err(|_| failed("encode public key"))?;
    Ok(GeneratedKeyPair::from_der(private.as_ref(), public.as_ref()))
}
