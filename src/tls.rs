//! The server's TLS certificate and key, reloadable: handshakes use whatever pair is current, and a
//! pair that fails to load or match never replaces the current one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::keys::env_material;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug)]
pub struct CertificateStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// The bytes behind `current`, so an unchanged pair is not reloaded.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
    fingerprint: ArcSwap<String>,
}

/// Why a TLS certificate and key pair cannot be used; the message names the file at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

impl From<String> for TlsError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl CertificateStore {
    /// Loads the pair; the error names the file at fault.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
        let (key, fingerprint) = certified_key(&cert_pem, &key_pem, cert_path, key_path, &provider)?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: ArcSwap::from_pointee(key),
            loaded: Mutex::new((cert_pem, key_pem)),
            fingerprint: ArcSwap::from_pointee(fingerprint),
        })
    }

    /// Re-reads the pair; returns whether a new pair is now in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = read_pair(&self.cert_path, &self.key_path)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(false);
        }
        let (key, fingerprint) = certified_key(&cert_pem, &key_pem, &self.cert_path, &self.key_path, &self.provider)?;
        self.current.store(Arc::new(key));
        self.fingerprint.store(Arc::new(fingerprint));
        *loaded = (cert_pem, key_pem);
        Ok(true)
    }

    /// SHA-256 of the leaf certificate's DER.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.load().as_ref().clone()
    }

    /// The files the pair is read from (not the `env:` ones), to watch for changes.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        [self.cert_path.as_path(), self.key_path.as_path()].into_iter().filter(|p| env_material(p).is_none())
    }

    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |p: &Path| match env_material(p) {
        Some(var) => {
            std::env::var(var).map(String::into_bytes).map_err(|_| format!("environment variable {var} is not set"))
        }
        None => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())),
    };
    Ok((read(cert)?, read(key)?))
}

fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, String), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let leaf = chain.first().ok_or_else(|| format!("{}: no certificate found", cert_path.display()))?;
    let fingerprint = crate::keys::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.as_ref()).as_ref());
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let certified = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| format!("{}: does not match the certificate or is unusable: {e}", key_path.display()))?;
    Ok((certified, fingerprint))
}
