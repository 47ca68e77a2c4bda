//! Who sent a webhook: v2's detached JWS (`Fireblocks-Webhook-Signature: <protected>..<signature>`,
//! RS512, the key by `kid` from Fireblocks' JWKS) or, when configured, v1's `Fireblocks-Signature`
//! (base64 RSA-SHA512 of the body, one published key). Nothing else is believed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA512, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::http_client::Target;

/// An unknown `kid` refreshes a URL JWKS at most this often.
const REFRESH_ON_UNKNOWN_KID: Duration = Duration::from_secs(60);
/// A fetched JWKS larger than this is refused.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const V2_HEADER: &str = "fireblocks-webhook-signature";
const V1_HEADER: &str = "fireblocks-signature";

/// Where the v2 keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    /// An https URL, its server verified with `ca` (PEM; the system's CAs by default).
    Url {
        url: String,
        ca: Vec<u8>,
    },
}

/// Why a delivery is not believed; the 4xx it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("no Fireblocks-Webhook-Signature header (nor an accepted Fireblocks-Signature)")]
    Unsigned,
    #[error("the signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the JWS algorithm {0:?} is not RS512")]
    Algorithm(String),
    #[error("no key {0:?} in the JWKS")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    BadSignature,
}

impl Unverified {
    pub fn code(&self) -> &'static str {
        match self {
            Unverified::Unsigned => "unsigned",
            Unverified::Malformed(_) => "malformed_signature",
            Unverified::Algorithm(_) => "bad_algorithm",
            Unverified::UnknownKey(_) => "unknown_key",
            Unverified::BadSignature => "bad_signature",
        }
    }
}

/// A JWKS as last read: its RSA keys by `kid`.
#[derive(Debug, Default)]
struct Jwks {
    keys: Vec<(String, RsaPublicKeyComponents<Vec<u8>>)>,
    fetched_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

/// The keys that verify deliveries.
pub struct WebhookKeys {
    source: Option<JwksSource>,
    jwks: ArcSwap<Jwks>,
    last_unknown_kid_refresh: Mutex<Option<Instant>>,
    legacy: Option<ParsedPublicKey>,
}

impl std::fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookKeys({})", self.status())
    }
}

impl WebhookKeys {
    /// Reads a JWKS file now; a URL is fetched by [`WebhookKeys::refresh`].
    pub fn new(source: Option<JwksSource>, legacy_pem: Option<&[u8]>) -> Result<Self, String> {
        let legacy = legacy_pem
            .map(|pem| {
                let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
                    .map_err(|_| "not a PEM public key (\"BEGIN PUBLIC KEY\")".to_string())?;
                ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA512, spki.as_ref())
                    .map_err(|_| "not an RSA public key of 2048 to 8192 bits".to_string())
            })
            .transpose()?;
        let jwks = match &source {
            Some(JwksSource::File(path)) => {
                let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                parse_jwks(&text)?
            }
            _ => Jwks::default(),
        };
        Ok(Self { source, jwks: ArcSwap::from_pointee(jwks), last_unknown_kid_refresh: Mutex::new(None), legacy })
    }

    /// Reads the JWKS again (a file, or the URL); keeps the keys it had if that fails.
    pub async fn refresh(&self) {
        let fetched = match &self.source {
            None => return,
            Some(JwksSource::File(path)) => std::fs::read(path).map_err(|e| e.to_string()),
            Some(JwksSource::Url { url, ca }) => fetch(url, ca).await.map_err(|e| format!("{e:#}")),
        };
        let jwks = fetched.and_then(|bytes| parse_jwks(&bytes));
        match jwks {
            Ok(jwks) => {
                tracing::info!(keys = jwks.keys.len(), "Fireblocks webhook JWKS read");
                self.jwks.store(Arc::new(jwks));
            }
            Err(error) => {
                tracing::error!(%error, "the Fireblocks webhook JWKS could not be read; keeping the keys known");
                let current = self.jwks.load();
                let keys = current.keys.clone();
                self.jwks.store(Arc::new(Jwks { keys, fetched_at: current.fetched_at, error: Some(error) }));
            }
        }
    }

    /// Whether a URL JWKS should be refreshed now, for an unknown `kid` (once a minute at most).
    fn may_refresh_for_unknown_kid(&self) -> bool {
        if !matches!(self.source, Some(JwksSource::Url { .. })) {
            return false;
        }
        let mut last = self.last_unknown_kid_refresh.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < REFRESH_ON_UNKNOWN_KID) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Verifies a delivery's signature over its raw `body`; the version that signed it.
    pub async fn verify(&self, header: impl Fn(&str) -> Option<String>, body: &[u8]) -> Result<u8, Unverified> {
        // During Fireblocks' migration both headers come: v2 decides, and a v1 signature that
        // verifies (the body is Fireblocks' either way) covers a JWKS that cannot be read.
        let v1 = || match (header(V1_HEADER), &self.legacy) {
            (Some(signature), Some(key)) => {
                let signature = STANDARD.decode(signature.trim()).map_err(|_| Unverified::Malformed("not base64"))?;
                key.verify_sig(body, &signature).map_err(|_| Unverified::BadSignature).map(|()| 1)
            }
            _ => Err(Unverified::Unsigned),
        };
        match header(V2_HEADER) {
            None => v1(),
            Some(signature) => match self.verify_v2(&signature, body).await {
                Ok(()) => Ok(2),
                Err(v2) => v1().map_err(|_| v2),
            },
        }
    }

    async fn verify_v2(&self, signature: &str, body: &[u8]) -> Result<(), Unverified> {
        let (protected, signature) = signature
            .trim()
            .split_once("..")
            .ok_or(Unverified::Malformed("expected <protected header>..<signature>"))?;
        let header: Value = URL_SAFE_NO_PAD
            .decode(protected)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(Unverified::Malformed("the protected header is not base64url JSON"))?;
        match header.get("alg").and_then(Value::as_str) {
            Some("RS512") => {}
            other => return Err(Unverified::Algorithm(other.unwrap_or("none").to_string())),
        }
        let kid = header.get("kid").and_then(Value::as_str).ok_or(Unverified::Malformed("no kid"))?.to_string();
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Unverified::Malformed("not base64url"))?;
        // The detached payload: the raw body, base64url-encoded, after the protected header.
        let signed = format!("{protected}.{}", URL_SAFE_NO_PAD.encode(body));
        let verify = |jwks: &Jwks| {
            jwks.keys.iter().find(|(id, _)| *id == kid).map(|(_, key)| {
                key.verify(&RSA_PKCS1_2048_8192_SHA512, signed.as_bytes(), &signature)
                    .map_err(|_| Unverified::BadSignature)
            })
        };
        if let Some(verdict) = verify(&self.jwks.load()) {
            return verdict;
        }
        if self.may_refresh_for_unknown_kid() {
            self.refresh().await;
            if let Some(verdict) = verify(&self.jwks.load()) {
                return verdict;
            }
        }
        Err(Unverified::UnknownKey(kid))
    }

    /// For `/status`: the key ids known, when they were read, and the last error.
    pub fn status(&self) -> Value {
        let jwks = self.jwks.load();
        serde_json::json!({
            "jwks": match &self.source {
                Some(JwksSource::File(path)) => Value::from(path.display().to_string()),
                Some(JwksSource::Url { url, .. }) => Value::from(url.as_str()),
                None => Value::Null,
            },
            "kids": jwks.keys.iter().map(|(kid, _)| kid.as_str()).collect::<Vec<_>>(),
            "fetched_at": jwks.fetched_at.map(crate::holds::timestamp),
            "error": jwks.error,
            "legacy_v1": self.legacy.is_some(),
        })
    }
}

async fn fetch(url: &str, ca: &[u8]) -> anyhow::Result<Vec<u8>> {
    let target = Target::new(url, Some(ca)).await?;
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(10), async { target.connect().await?.get("").await }).await??;
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    anyhow::ensure!(body.len() <= MAX_JWKS_BYTES, "{url} sent more than {MAX_JWKS_BYTES} bytes");
    Ok(body.to_vec())
}

/// The RSA keys of a JWKS (`{"keys": [{"kty": "RSA", "kid", "n", "e"}, …]}`); other key types are
/// skipped, a JWKS without a usable key is an error.
fn parse_jwks(bytes: &[u8]) -> Result<Jwks, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let entries = value.get("keys").and_then(Value::as_array).ok_or("the JWKS has no keys array")?;
    let mut keys = Vec::new();
    for entry in entries {
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        if field("kty") != Some("RSA") {
            continue;
        }
        let number = |name: &str| field(name).and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok());
        let (Some(kid), Some(n), Some(e)) = (field("kid"), number("n"), number("e")) else {
            return Err("an RSA key of the JWKS lacks kid, n or e".into());
        };
        keys.push((kid.to_string(), RsaPublicKeyComponents { n, e }));
    }
    if keys.is_empty() {
        return Err("the JWKS has no RSA key".into());
    }
    Ok(Jwks { keys, fetched_at: Some(Utc::now()), error: None })
}
