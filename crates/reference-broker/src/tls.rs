//! HTTPS for the broker: a listener that hands axum connections whose TLS handshake is done.
//!
//! Handshakes run in their own tasks (with a deadline), so one slow or hostile client cannot
//! hold up the accept loop.

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

use crate::StartError;

const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// PEM files for the serving certificate (chain first) and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_chain: PathBuf,
    pub private_key: PathBuf,
}

pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, StartError> {
    let open = |path: &PathBuf| {
        std::fs::File::open(path)
            .map(BufReader::new)
            .map_err(|e| StartError::Tls(format!("{}: {e}", path.display())))
    };
    let certs = rustls_pemfile::certs(&mut open(&files.cert_chain)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Tls(format!("{}: {e}", files.cert_chain.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "{}: no PEM certificate found",
            files.cert_chain.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut open(&files.private_key)?)
        .map_err(|e| StartError::Tls(format!("{}: {e}", files.private_key.display())))?
        .ok_or_else(|| {
            StartError::Tls(format!(
                "{}: no PEM private key found",
                files.private_key.display()
            ))
        })?;
    // An explicit provider: the process may link more than one, and the implicit default
    // would then be ambiguous.
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))
}

impl TlsListener {
    pub fn new(listener: TcpListener, files: &TlsFiles) -> Result<Self, StartError> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(files)?));
        let local = listener
            .local_addr()
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let (sender, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if sender.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when we are dropped; never resolve.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
