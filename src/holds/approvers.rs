//! Approvers: their keys, and the signed verdicts that count for them.

use std::path::Path;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    ParsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};

use super::*;
use crate::keys::KeyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Reject,
}

/// What an approver decides: the hold, the request it was made for, the verdict and a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictStatement {
    pub hold: String,
    pub digest: String,
    pub verdict: Verdict,
    pub at: String,
    #[serde(default)]
    pub reason: String,
}

impl VerdictStatement {
    pub fn new(hold: &Hold, verdict: Verdict, reason: &str, now: DateTime<Utc>) -> Self {
        Self {
            hold: hold.id.clone(),
            digest: hold.digest.clone(),
            verdict,
            at: timestamp(now),
            reason: reason.to_string(),
        }
    }

    /// The exact bytes an approver's key signs (a passkey signs their SHA-256).
    pub fn message(&self) -> Vec<u8> {
        SignedVerdict::message(&self.hold, &self.digest, self.verdict, &self.at, &self.reason)
    }
}

/// A signed verdict as it travels to the admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedVerdict {
    pub hold: String,
    pub digest: String,
    pub verdict: Verdict,
    pub at: String,
    #[serde(default)]
    pub reason: String,
    /// Base64 of the signature over [`SignedVerdict::message`].
    pub signature: String,
}

impl SignedVerdict {
    /// The exact bytes an approver signs: every field but the signature, one per line.
    pub fn message(hold: &str, digest: &str, verdict: Verdict, at: &str, reason: &str) -> Vec<u8> {
        let verdict = match verdict {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        };
        format!("cosigner-guard hold verdict v1\nhold: {hold}\ndigest: {digest}\nverdict: {verdict}\nat: {at}\nreason: {reason}\n")
            .into_bytes()
    }

    pub fn statement(&self) -> VerdictStatement {
        VerdictStatement {
            hold: self.hold.clone(),
            digest: self.digest.clone(),
            verdict: self.verdict,
            at: self.at.clone(),
            reason: self.reason.clone(),
        }
    }

    /// Signs a verdict on `hold` with an approver's private key.
    pub fn sign(hold: &Hold, verdict: Verdict, reason: &str, key: &ApproverSigningKey, now: DateTime<Utc>) -> Self {
        let statement = VerdictStatement::new(hold, verdict, reason, now);
        let signature = BASE64.encode(key.sign(&statement.message()));
        let VerdictStatement { hold, digest, verdict, at, reason } = statement;
        SignedVerdict { hold, digest, verdict, at, reason, signature }
    }
}

/// An approver's public key (Ed25519 or ECDSA P-256, PEM SubjectPublicKeyInfo), parsed once.
pub struct ApproverKey {
    pub name: String,
    pub fingerprint: String,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for ApproverKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApproverKey").field("name", &self.name).field("fingerprint", &self.fingerprint).finish()
    }
}

impl ApproverKey {
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<Self, KeyError> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| KeyError::Invalid(format!("not a PEM public key (\"BEGIN PUBLIC KEY\"): {e}")))?;
        let key = ParsedPublicKey::new(&ED25519, spki.as_ref())
            .or_else(|_| ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, spki.as_ref()))
            .map_err(|_| KeyError::Invalid("not an Ed25519 or ECDSA P-256 public key".into()))?;
        Ok(Self { name: name.to_string(), fingerprint: crate::keys::fingerprint(spki.as_ref()), key })
    }

    pub(super) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

/// An approver's private key (PKCS#8 PEM), for the CLI.
pub enum ApproverSigningKey {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl ApproverSigningKey {
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|cause| KeyError::Read { path: path.display().to_string(), cause })?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|e| {
            KeyError::Invalid(format!("{}: not a PEM private key (\"BEGIN PRIVATE KEY\"): {e}", path.display()))
        })?;
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8(der.secret_pkcs8_der()) {
            return Ok(Self::Ed25519(pair));
        }
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der.secret_pkcs8_der())
            .map(Self::P256)
            .map_err(|_| KeyError::Invalid(format!("{}: not an Ed25519 or ECDSA P-256 private key", path.display())))
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            // Signing only fails on a broken RNG; an empty signature then fails verification.
            Self::P256(pair) => pair
                .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
        }
    }
}

/// The name of the approver whose key signed `message`, if one did.
pub fn signed_by(approvers: &[std::sync::Arc<ApproverKey>], message: &[u8], signature: &[u8]) -> Option<String> {
    approvers.iter().find(|key| key.verifies(message, signature)).map(|key| key.name.clone())
}

/// A new Ed25519 approver key pair (PKCS#8 and SubjectPublicKeyInfo PEM).
pub fn generate_approver_key() -> Result<crate::keys::GeneratedKeyPair, KeyError> {
    let pair = Ed25519KeyPair::generate().map_err(|_| KeyError::Invalid("Ed25519 key generation failed".into()))?;
    // PKCS#8 v1: OpenSSL 3 and Python `cryptography` refuse the v2 form (with the public key).
    let private = pair.to_pkcs8v1().map_err(|_| KeyError::Invalid("cannot encode the private key".into()))?;
    let public = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key())
        .map_err(|_| KeyError::Invalid("cannot encode the public key".into()))?;
    Ok(crate::keys::GeneratedKeyPair::from_der(private.as_ref(), public.as_ref()))
}

/// An approver's name, as configured and logged: letters, digits and `. _ - @`.
pub fn valid_approver_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}
