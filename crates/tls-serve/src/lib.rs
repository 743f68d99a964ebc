//! HTTPS for the project's servers (the API server, the reference broker): rustls server
//! configs from PEM files, a self-signed CA and serving certificate generated on first start,
//! and an axum listener that hands out connections whose TLS handshake is done.
//!
//! Handshakes run in their own tasks (with a deadline), so one slow or hostile client cannot
//! hold up the accept loop.

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::server::TlsStream;

pub mod serve;

pub use serve::{PeerCertificates, ServeLimits, serve};
pub use tokio_rustls::rustls;

const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("generating certificates: {0}")]
    Generate(String),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// PEM files for a serving certificate (chain first) and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_chain: PathBuf,
    pub private_key: PathBuf,
}

/// A rustls server config from PEM files, offering `alpn` protocols (e.g. `h2`, `http/1.1`).
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_client_roots(files, alpn, &[])
}

/// The certificates in a PEM file (a CA bundle).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    parse_certificates(&pem).map_err(|message| file_error(path, message))
}

/// The certificates in PEM text; an error if there are none.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

/// The crypto provider every config here uses. Explicit: the process may link more than one,
/// and the implicit default would then be ambiguous.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A verifier of client certificates issued by `roots`, for checking a connection's chain
/// after the handshake (which CA issued it decides what it may claim).
pub fn client_verifier(
    roots: &[CertificateDer<'static>],
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store
            .add(cert.clone())
            .map_err(|e| TlsError::Config(format!("client CA: {e}")))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// Like [`server_config`], and clients may present a certificate issued by one of
/// `client_roots` (optional: a client without one is still served, and authenticates
/// otherwise). A certificate from anyone else fails the handshake.
pub fn server_config_with_client_roots(
    files: &TlsFiles,
    alpn: &[&[u8]],
    client_roots: &[CertificateDer<'static>],
) -> Result<Arc<ServerConfig>, TlsError> {
    let open = |path: &PathBuf| {
        std::fs::File::open(path)
            .map(BufReader::new)
            .map_err(|e| file_error(path, e))
    };
    let certs = rustls_pemfile::certs(&mut open(&files.cert_chain)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(&files.cert_chain, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert_chain, "no PEM certificate found"));
    }
    let key = rustls_pemfile::private_key(&mut open(&files.private_key)?)
        .map_err(|e| file_error(&files.private_key, e))?
        .ok_or_else(|| file_error(&files.private_key, "no PEM private key found"))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if client_roots.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_verifier(client_verifier(client_roots)?)
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A self-signed CA and a serving certificate for `hosts`, kept in `dir`: generated on first
/// use, reused afterwards (so clients trusting the CA keep working across restarts). Returns
/// the serving files and the CA certificate (PEM), which is what clients must trust.
pub fn self_signed(dir: &Path, hosts: &[String]) -> Result<(TlsFiles, String), TlsError> {
    let files = TlsFiles {
        cert_chain: dir.join("serving.crt"),
        private_key: dir.join("serving.key"),
    };
    let ca_file = dir.join("ca.crt");
    if files.cert_chain.is_file() && files.private_key.is_file() && ca_file.is_file() {
        // Keys written by earlier versions with the umask's mode are made private.
        keep_private(dir, &[&files.private_key, &dir.join("ca.key")])?;
        let ca = std::fs::read_to_string(&ca_file).map_err(|e| file_error(&ca_file, e))?;
        return Ok((files, ca));
    }
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    keep_private(dir, &[])?;
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_params = ca_params()?;
    let ca_key = rcgen::KeyPair::generate().map_err(generate)?;
    let ca_pem = ca_params.self_signed(&ca_key).map_err(generate)?.pem();
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(generate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "service-catalog");
    // Serving only: the CA is also the client CA, and this must not log in as a user.
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).map_err(generate)?;
    let write = |path: &Path, contents: String| {
        let private = path.extension().is_some_and(|e| e == "key");
        write_file(path, &contents, private)
    };
    // The key first and the CA last: a crash in between leaves no complete set, so the next
    // start generates a fresh one instead of using half of one.
    write(&files.private_key, key.serialize_pem())?;
    write(&files.cert_chain, cert.pem())?;
    write(&dir.join("ca.key"), ca_key.serialize_pem())?;
    write(&ca_file, ca_pem.clone())?;
    Ok((files, ca_pem))
}

/// Writes `contents` to `path`; owner-only when `private` (keys: whoever reads the CA key can
/// mint client certificates, including administrators').
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let mut file = options.open(path).map_err(|e| file_error(path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| file_error(path, e))?;
    if private {
        keep_private(Path::new(""), &[path])?;
    }
    Ok(())
}

/// The TLS directory owner-only (0700) and `keys` 0600, whatever they were.
fn keep_private(dir: &Path, keys: &[&Path]) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| file_error(path, e))
        };
        if !dir.as_os_str().is_empty() {
            set(dir, 0o700)?;
        }
        for key in keys {
            if key.is_file() {
                set(key, 0o600)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, keys);
    Ok(())
}

/// The generated CA's parameters: the same every time, so that a certificate issued later
/// (see [`issue_client_certificate`]) names exactly the CA's subject as its issuer.
fn ca_params() -> Result<rcgen::CertificateParams, TlsError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "service-catalog CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    Ok(params)
}

/// A client certificate for `user` in `group` (CN and O, as Kubernetes reads them), issued
/// by the CA [`self_signed`] keeps in `dir`, valid for `days`. Returns (certificate, key) PEM.
/// One group at most: rcgen keeps one value per name attribute.
pub fn issue_client_certificate(
    dir: &Path,
    user: &str,
    group: Option<&str>,
    days: u32,
) -> Result<(String, String), TlsError> {
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_key_file = dir.join("ca.key");
    let ca_key_pem =
        std::fs::read_to_string(&ca_key_file).map_err(|e| file_error(&ca_key_file, e))?;
    let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).map_err(generate)?;
    let ca_params = ca_params()?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, user);
    if let Some(group) = group {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, group);
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + Duration::from_secs(u64::from(days) * 86_400)).into();
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = params.signed_by(&key, &issuer).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// An axum listener whose connections have completed their TLS handshake.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let acceptor = TlsAcceptor::from(config);
        let local = listener
            .local_addr()
            .map_err(|e| TlsError::Config(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_material_is_generated_once_and_reused() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let (files, ca) = self_signed(dir.path(), &hosts)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(
                mode(&dir.path().join("ca.key"))?,
                0o600,
                "the CA key is private"
            );
            assert_eq!(mode(&files.private_key)?, 0o600);
            assert_eq!(mode(dir.path())?, 0o700);
        }
        let (_, again) = self_signed(dir.path(), &hosts)?;
        assert_eq!(ca, again, "the CA survives restarts");
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        server_config(&files, &[b"h2", b"http/1.1"])?;
        Ok(())
    }

    #[test]
    fn missing_or_bad_files_name_the_file() {
        let files = TlsFiles {
            cert_chain: "/nonexistent/cert.pem".into(),
            private_key: "/nonexistent/key.pem".into(),
        };
        let error = server_config(&files, &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }
}
