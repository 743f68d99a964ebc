//! The reference OSB broker: a small, correct broker for demos, tests and benchmarks.
//!
//! - Catalog from a YAML/JSON file, or the built-in [`demo_catalog`].
//! - Every endpoint of OSB v2.17 with the spec's idempotency rules, asynchronous operations
//!   (`202` + `last_operation` + `Retry-After`), fetch instance/binding, binding rotation,
//!   `maintenance_info` checks and basic auth.
//! - State in a SQLite file, so a restarted broker remembers what it provisioned.
//! - Fault injection at run time through `/admin/faults` (see [`faults`]), and the last requests
//!   (headers, not bodies) at `/admin/requests` for platforms' tests to check what they sent.
//!
//! [`start`] runs it on a listener inside the caller's tokio runtime (what `service-catalog up`
//! does); the `reference-broker` binary wraps it for the command line.

pub mod api;
pub mod broker;
pub mod catalog;
pub mod faults;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use api::BasicCredentials;
pub use broker::Tuning;
pub use catalog::{BrokerCatalog, CatalogError, demo_catalog};
pub use tls_serve::TlsFiles;

/// Everything the broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub catalog: BrokerCatalog,
    /// The SQLite state file; in memory when `None`.
    pub state_file: Option<PathBuf>,
    pub credentials: Option<BasicCredentials>,
    pub tls: Option<TlsFiles>,
    pub tuning: Tuning,
}

impl BrokerConfig {
    /// The demo catalog, state in memory, no auth, plain HTTP.
    pub fn demo() -> Self {
        Self {
            // The demo catalog is valid; its unit test keeps it so.
            catalog: BrokerCatalog {
                catalog: demo_catalog(),
            },
            state_file: None,
            credentials: None,
            tls: None,
            tuning: Tuning::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("TLS: {0}")]
    Tls(String),
}

/// A broker serving in the background.
pub struct RunningBroker {
    url: String,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningBroker {
    /// The base URL platforms use (`http://127.0.0.1:PORT` or `https://...`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Binds `listen` (port 0 picks a free port) and serves until shut down.
pub async fn start(config: BrokerConfig, listen: SocketAddr) -> Result<RunningBroker, StartError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: listen,
        source,
    })?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}");
    let store = store::Store::open(config.state_file.as_deref())?;
    let broker = broker::Broker::new(config.catalog, store, config.tuning, url.clone())?;
    let state = Arc::new(api::AppState::new(broker, config.credentials));
    let app = api::router(state);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let stop = async {
        let _ = stopped.await;
    };
    let task = match &config.tls {
        None => tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }),
        Some(files) => {
            let config = tls_serve::server_config(files, &[b"http/1.1"])
                .map_err(|e| StartError::Tls(e.to_string()))?;
            let listener = tls_serve::TlsListener::new(listener, config)
                .map_err(|e| StartError::Tls(e.to_string()))?;
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            })
        }
    };
    tracing::info!(%url, "reference broker listening");
    Ok(RunningBroker {
        url,
        addr,
        shutdown: Some(shutdown),
        task,
    })
}
