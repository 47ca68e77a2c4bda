//! A small HTTP/1.1 client over TLS (or plain HTTP on loopback) that pins the server's
//! certificate: what carries hold notifications to their webhook, the `holds` commands to the
//! admin API, and the Co-signer stand-in's requests to the handler.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Where Debian keeps the system's trusted CAs, for an https URL without a CA of its own.
pub const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where the handler is: its address, TLS name, pinned certificate and base path.
#[derive(Clone)]
pub struct Target {
    addr: SocketAddr,
    host: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    base_path: String,
}

impl Target {
    /// `url` is the handler's base URL (`https://host:port/optional/path`). For https, `pinned_cert_pem`
    /// is the only certificate trusted, as the Co-signer pins it.
    pub async fn new(url: &str, pinned_cert_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            bail!("{url}: the URL must start with https:// or http://");
        };
        let (authority, base_path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_string();
        let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:443") };
        let addr = tokio::net::lookup_host(&authority)
            .await?
            .next()
            .with_context(|| format!("{authority} does not resolve"))?;
        let tls = if tls {
            let pem = pinned_cert_pem.context("an https URL needs the handler's certificate to pin")?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots.add(cert?)?;
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some((TlsConnector::from(Arc::new(config)), ServerName::try_from(host.clone())?))
        } else {
            None
        };
        let base_path = base_path.trim_end_matches('/');
        let base_path = if base_path.is_empty() { String::new() } else { format!("/{base_path}") };
        Ok(Self { addr, host, tls, base_path })
    }

    /// Opens one keep-alive connection.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let sender = match &self.tls {
            Some(_) => handshake(self.tls_stream().await?).await?,
            None => handshake(self.tcp_stream().await?).await?,
        };
        Ok(Connection { sender, host: self.host.clone(), base_path: self.base_path.clone() })
    }

    /// A raw TLS stream to the handler, for speaking HTTP by hand.
    pub async fn tls_stream(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let (connector, name) = self.tls.as_ref().context("not an https target")?;
        Ok(connector.connect(name.clone(), self.tcp_stream().await?).await?)
    }

    async fn tcp_stream(&self) -> anyhow::Result<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }
}

async fn handshake<S>(stream: S) -> anyhow::Result<SendRequest<Full<Bytes>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One HTTP/1.1 connection to the handler.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    base_path: String,
}

impl Connection {
    /// POSTs `body` to `path` (relative to the base URL) and returns the status and raw body.
    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = hyper::Request::post(format!("{}{path}", self.base_path))
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .body(Full::new(body.into()))?;
        self.send(request).await
    }

    /// POSTs `body` to `path` with extra `headers` (a signature, say).
    pub async fn post_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = hyper::Request::post(format!("{}{path}", self.base_path))
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Full::new(body.into()))?).await
    }

    /// POSTs a JSON document to `path` (relative to the base URL).
    pub async fn post_json(&mut self, path: &str, body: &Value) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = hyper::Request::post(format!("{}{path}", self.base_path))
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(serde_json::to_vec(body)?.into()))?;
        self.send(request).await
    }

    /// GETs `path` (relative to the base URL).
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = hyper::Request::get(format!("{}{path}", self.base_path))
            .header(hyper::header::HOST, &self.host)
            .body(Full::new(Bytes::new()))?;
        self.send(request).await
    }

    /// DELETEs `path` (relative to the base URL).
    pub async fn delete(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = hyper::Request::delete(format!("{}{path}", self.base_path))
            .header(hyper::header::HOST, &self.host)
            .body(Full::new(Bytes::new()))?;
        self.send(request).await
    }

    async fn send(&mut self, request: hyper::Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}
