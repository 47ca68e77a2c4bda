//! The accept loop: TLS handshakes and HTTP/1.1 connections with timeouts, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max: usize,
    /// A client that has not finished its TLS handshake or sent its headers by then is dropped.
    pub read_timeout: Duration,
    /// In-flight requests get this long to finish after shutdown starts.
    pub shutdown_timeout: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Self { max: 64, read_timeout: Duration::from_secs(10), shutdown_timeout: Duration::from_secs(5) }
    }
}

/// A listener serving on a task of its own until stopped: the admin API, the Fireblocks webhooks.
pub struct Background {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    pub fn start(listener: TcpListener, tls: Option<TlsAcceptor>, app: axum::Router, limits: Connections) -> Self {
        let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (stop, mut stopped) = tokio::sync::watch::channel(());
        let task = tokio::spawn(serve(listener, tls, app, limits, async move {
            let _ = stopped.changed().await;
        }));
        Self { addr, stop, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    limits: Connections,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        // Who connected, for handlers that care (`ConnectInfo<SocketAddr>`).
        let app = app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let (tls, watcher) = (tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_connection(tcp, app, watcher, limits.read_timeout).await,
                Some(acceptor) => match tokio::time::timeout(limits.read_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => serve_connection(stream, app, watcher, limits.read_timeout).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown deadline passed with requests still in flight");
    }
}

async fn serve_connection<S>(stream: S, app: axum::Router, watcher: Watcher, read_timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
