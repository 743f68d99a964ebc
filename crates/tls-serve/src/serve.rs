//! The accept loop the project's API server runs on, plain or TLS, instead of `axum::serve`:
//! axum's loop sets no deadline for reading a request's headers, so a client that sends half a
//! header (slow-loris) held its connection open forever. Here:
//!
//! - TLS handshakes have a deadline; the protocol is the one ALPN chose (HTTP/2 or HTTP/1.1),
//!   never sniffed (sniffing waits for bytes without a deadline); plain HTTP is HTTP/1.1.
//! - HTTP/1 connections get hyper's header read timeout; HTTP/2 ones a ping timeout and a cap
//!   on concurrent streams.
//! - At most [`ServeLimits::max_connections`] connections are served at once; more wait in the
//!   kernel's accept queue.
//! - Every request carries the connection's [`PeerCertificates`] (what client certificate
//!   authentication needs).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tower::ServiceExt as _;

use crate::HANDSHAKE_DEADLINE;

/// How long connections may take to finish their requests after shutdown begins.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// The client certificate chain a TLS connection presented (leaf first; empty for plain HTTP
/// or no certificate), and the peer's address; inserted into every request's extensions.
#[derive(Debug, Clone)]
pub struct PeerCertificates {
    pub chain: Arc<Vec<CertificateDer<'static>>>,
    pub peer: SocketAddr,
}

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// How long an HTTP/1 client may take to send a request's headers (kube-apiserver: 32 s).
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Streams one HTTP/2 connection may have open at once (Go's and kube-apiserver's default).
const MAX_CONCURRENT_STREAMS: u32 = 250;

/// A connection builder for one protocol.
fn builder(limits: ServeLimits, http2: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    if http2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    }
}

/// Serves `router` on `listener` (HTTPS when `tls` is given, offering what its ALPN says)
/// until `shutdown` resolves; then stops accepting and gives open connections
/// [`DRAIN_DEADLINE`] to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let http1 = Arc::new(builder(limits, false));
    let http2 = Arc::new(builder(limits, true));
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (http1, http2, router, acceptor, graceful) = (
            http1.clone(),
            http2.clone(),
            router.clone(),
            acceptor.clone(),
            graceful.watcher(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => {
                    let info = PeerCertificates {
                        chain: Arc::default(),
                        peer,
                    };
                    serve_connection(&http1, graceful, TokioIo::new(stream), router, info).await;
                }
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let negotiated_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    let builder = if negotiated_h2 { &http2 } else { &http1 };
                    let chain = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                        .unwrap_or_default();
                    let info = PeerCertificates {
                        chain: Arc::new(chain),
                        peer,
                    };
                    serve_connection(builder, graceful, TokioIo::new(tls), router, info).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open {DRAIN_DEADLINE:?} after shutdown began");
    }
    Ok(())
}

async fn serve_connection<Io>(
    builder: &auto::Builder<TokioExecutor>,
    graceful: Watcher,
    io: TokioIo<Io>,
    router: Router,
    info: PeerCertificates,
) where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = info.peer;
    let service = router.map_request(move |mut request: axum::http::Request<_>| {
        request.extensions_mut().insert(info.clone());
        request
    });
    let service = hyper_util::service::TowerToHyperService::new(service);
    let connection = builder.serve_connection(io, service).into_owned();
    if let Err(error) = graceful.watch(connection).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
