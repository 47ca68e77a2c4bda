//! Key material: the handler's signing key (RSA-2048 or P-256), the Co-signers' RSA verifying keys,
//! fingerprints, key generation.
//!
//! Keys are parsed and checked once, at start-up. Private key bytes never appear in `Debug` output.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};

/// The only handler key size the Co-signer accepts for RS256 answers.
pub const HANDLER_KEY_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// How answers are signed: RS256 with an RSA-2048 key (every Co-signer), or ES256 with a P-256 key
/// (recent SGX Co-signers; a small fraction of the CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
pub enum SigningAlgorithm {
    #[default]
    #[serde(rename = "RS256")]
    #[value(name = "rs256")]
    Rs256,
    #[serde(rename = "ES256")]
    #[value(name = "es256")]
    Es256,
}

impl SigningAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Es256 => "ES256",
        }
    }
}

enum Signer {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

/// The handler's private key, which signs every answer in `jwt` mode. Parsed once: parsing (with
/// its key check) costs more than a signature.
pub struct HandlerKey {
    signer: Signer,
    public_spki_der: Vec<u8>,
    fingerprint: String,
}

impl fmt::Debug for HandlerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerKey").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl HandlerKey {
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_pem(&read(path)?)
    }

    /// An RS256 key (RSA-2048).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        Self::from_pem_for(pem, SigningAlgorithm::Rs256)
    }

    /// A key for `algorithm`: RSA-2048 for RS256, P-256 (PKCS#8) for ES256.
    pub fn from_pem_for(pem: &[u8], algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        if algorithm == SigningAlgorithm::Es256 {
            return Self::es256_from_pem(pem);
        }
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| not_a_private_key(pem))?;
        const USE_ES256: &str =
            "this is an EC key: RS256 needs RSA-2048; for a P-256 key set protocol.signing_algorithm = \"ES256\"";
        let pair = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err(KeyError::Invalid(USE_ES256.into())),
        }
        .map_err(|_| match &der {
            PrivateKeyDer::Pkcs8(k)
                if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, k.secret_pkcs8_der()).is_ok() =>
            {
                KeyError::Invalid(USE_ES256.into())
            }
            _ => KeyError::Invalid("not a usable RSA private key".into()),
        })?;
        let bits = pair.public_modulus_len() * 8;
        if bits != HANDLER_KEY_BITS {
            return Err(KeyError::Invalid(format!(
                "the handler key must be RSA-{HANDLER_KEY_BITS}, this one has {bits} bits"
            )));
        }
        let public_spki_der = spki_der(pair.public_key())?;
        Ok(Self { signer: Signer::Rs256(pair), fingerprint: fingerprint(&public_spki_der), public_spki_der })
    }

    fn es256_from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| not_a_private_key(pem))?;
        let PrivateKeyDer::Pkcs8(der) = der else {
            return Err(KeyError::Invalid("an ES256 key must be a PKCS#8 P-256 key (\"BEGIN PRIVATE KEY\")".into()));
        };
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der()).map_err(|_| {
                KeyError::Invalid("not a P-256 private key, as ES256 needs (an RSA key signs RS256)".into())
            })?;
        let public_spki_der = spki_der(pair.public_key())?;
        Ok(Self { signer: Signer::Es256(pair), fingerprint: fingerprint(&public_spki_der), public_spki_der })
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        match self.signer {
            Signer::Rs256(_) => SigningAlgorithm::Rs256,
            Signer::Es256(_) => SigningAlgorithm::Es256,
        }
    }

    /// The JWS signature of `message` with this key's algorithm (ES256: the fixed r‖s form).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let failed = |_| KeyError::Invalid(format!("{} signing failed", self.algorithm().as_str()));
        match &self.signer {
            Signer::Rs256(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, message, &mut signature).map_err(failed)?;
                Ok(signature)
            }
            Signer::Es256(pair) => Ok(pair.sign(&rng, message).map_err(failed)?.as_ref().to_vec()),
        }
    }

    /// The public key in PEM, to give to the Co-signer.
    pub fn public_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.public_spki_der.clone()))
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// One configured Co-signer public key, known by the operator's name for it. Parsed once.
pub struct CosignerKey {
    pub name: Arc<str>,
    pub fingerprint: String,
    key: ParsedPublicKey,
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosignerKey")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl CosignerKey {
    pub fn from_pem_file(name: &str, path: &Path) -> Result<Self, KeyError> {
        Self::from_pem(name, &read(path)?)
    }

    pub fn from_pem(name: &str, pem: &[u8]) -> Result<Self, KeyError> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| {
            KeyError::Invalid(match pem_label(pem) {
                Some(label) if label.contains("PRIVATE KEY") => {
                    "this is a private key: configure the Co-signer's public key (\"BEGIN PUBLIC KEY\")".into()
                }
                Some(label) => format!("this is a {label}, not a public key (\"BEGIN PUBLIC KEY\")"),
                None => "not PEM: expected a public key (\"BEGIN PUBLIC KEY\")".into(),
            })
        })?;
        aws_lc_rs::rsa::PublicKey::from_der(spki.as_ref())
            .map_err(|_| KeyError::Invalid("not an RSA public key: the Co-signer signs with RSA (RS256)".into()))?;
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, spki.as_ref())
            .map_err(|_| KeyError::Invalid("not a usable RSA public key (2048 to 8192 bits)".into()))?;
        Ok(Self { name: name.into(), fingerprint: fingerprint(spki.as_ref()), key })
    }

    /// Whether `signature` is this key's RS256 signature of `message`.
    pub fn verifies_rs256(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

/// The Co-signer keys a request may be signed with (several Co-signers in HA, or a rotation).
#[derive(Debug, Default)]
pub struct CosignerKeyring {
    keys: Vec<CosignerKey>,
}

impl CosignerKeyring {
    pub fn new(keys: Vec<CosignerKey>) -> Self {
        Self { keys }
    }

    pub fn keys(&self) -> &[CosignerKey] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// SHA-256 over the DER SubjectPublicKeyInfo, lowercase hex: the same value as
/// `openssl pkey -pubin -outform DER | sha256sum`.
pub fn fingerprint(spki_der: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The environment variable a key-material setting names (`env:NAME`), if it names one.
pub fn env_material(setting: &Path) -> Option<&str> {
    setting.to_str()?.strip_prefix("env:")
}

/// A freshly generated key pair, both halves in PEM.
pub struct GeneratedKeyPair {
    pub private_pem: String,
    pub public_pem: String,
    pub fingerprint: String,
}

impl GeneratedKeyPair {
    /// From a PKCS#8 private key and a SubjectPublicKeyInfo public key, both DER.
    pub(crate) fn from_der(private_pkcs8: &[u8], public_spki: &[u8]) -> Self {
        Self {
            private_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", private_pkcs8.to_vec())),
            public_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", public_spki.to_vec())),
            fingerprint: fingerprint(public_spki),
        }
    }
}

/// A freshly generated key pair for `algorithm`.
pub fn generate(algorithm: SigningAlgorithm) -> Result<GeneratedKeyPair, KeyError> {
    match algorithm {
        SigningAlgorithm::Rs256 => generate_rsa_2048(),
        SigningAlgorithm::Es256 => generate_p256(),
    }
}

fn generate_p256() -> Result<GeneratedKeyPair, KeyError> {
    let failed = |what: &str| KeyError::Invalid(format!("P-256 key generation failed: {what}"));
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| failed("generate"))?;
    let private = pair.to_pkcs8v1().map_err(|_| failed("encode private key"))?;
    let public = pair.public_key().as_der().map_err(|_| failed("encode public key"))?;
    Ok(GeneratedKeyPair::from_der(private.as_ref(), public.as_ref()))
}

pub fn generate_rsa_2048() -> Result<GeneratedKeyPair, KeyError> {
    let failed = |what: &str| KeyError::Invalid(format!("RSA key generation failed: {what}"));
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| failed("generate"))?;
    let private = pair.as_der().map_err(|_| failed("encode private key"))?;
    let public = pair.public_key().as_der().map_err(|_| failed("encode public key"))?;
    Ok(GeneratedKeyPair::from_der(private.as_ref(), public.as_ref()))
}

/// The DER SubjectPublicKeyInfo of a key pair's public half.
fn spki_der(public: &impl AsDer<PublicKeyX509Der<'static>>) -> Result<Vec<u8>, KeyError> {
    let der = public.as_der().map_err(|_| KeyError::Invalid("cannot encode its public key".into()))?;
    Ok(der.as_ref().to_vec())
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|cause| KeyError::Read { path: path.display().to_string(), cause })
}

/// The label of the first PEM block (`PUBLIC KEY`, `CERTIFICATE`, …), to say what a file is.
fn pem_label(pem: &[u8]) -> Option<String> {
    pem::parse(pem).ok().map(|block| block.tag().to_string())
}

/// Why `pem` is not a private key, in the operator's words.
fn not_a_private_key(pem: &[u8]) -> KeyError {
    KeyError::Invalid(match pem_label(pem) {
        Some(label) if label == "PUBLIC KEY" || label == "RSA PUBLIC KEY" => {
            "this is a public key: the handler signs with its private key (\"BEGIN PRIVATE KEY\")".into()
        }
        Some(label) if label == "CERTIFICATE" => "this is a certificate, not a private key".into(),
        Some(label) => format!("a {label} block is not a private key"),
        None => "not PEM: expected a private key (\"BEGIN PRIVATE KEY\")".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_key_material() {
        let pair = generate_rsa_2048().unwrap();
        let key = HandlerKey::from_pem(pair.private_pem.as_bytes()).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(&pair.fingerprint), "{shown}");
        let body: String = pair.private_pem.lines().nth(1).unwrap().chars().take(16).collect();
        assert!(!shown.contains(&body) && !shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn the_handler_key_must_be_rsa_2048() {
        let pair = RsaKeyPair::generate(KeySize::Rsa3072).unwrap();
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pair.as_der().unwrap().as_ref().to_vec()));
        let error = HandlerKey::from_pem(pem.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("RSA-2048") && error.contains("3072"), "{error}");
    }

    /// A key in the wrong place says what it is and what to do, not the parser's jargon.
    #[test]
    fn key_errors_say_what_the_file_is() {
        let rsa = generate(SigningAlgorithm::Rs256).unwrap();
        let ec = generate(SigningAlgorithm::Es256).unwrap();
        let handler = |pem: &str| HandlerKey::from_pem(pem.as_bytes()).unwrap_err().to_string();
        assert!(handler(&rsa.public_pem).contains("this is a public key"), "{}", handler(&rsa.public_pem));
        assert!(handler(&ec.private_pem).contains("signing_algorithm = \"ES256\""), "{}", handler(&ec.private_pem));
        assert!(handler("hello").contains("not PEM"));
        let es256 = HandlerKey::from_pem_for(rsa.private_pem.as_bytes(), SigningAlgorithm::Es256).unwrap_err();
        assert!(es256.to_string().contains("an RSA key signs RS256"), "{es256}");
        let cosigner = |pem: &str| CosignerKey::from_pem("c", pem.as_bytes()).unwrap_err().to_string();
        assert!(cosigner(&rsa.private_pem).contains("this is a private key"), "{}", cosigner(&rsa.private_pem));
        assert!(cosigner(&ec.public_pem).contains("the Co-signer signs with RSA"), "{}", cosigner(&ec.public_pem));
    }
}
