//! `reference-broker`: run the reference OSB broker from the command line.
//!
//! Prints `listening on <URL>` on stdout once it serves (tests read that line to learn the
//! port), and shuts down cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use reference_broker::{
    BasicCredentials, BrokerCatalog, BrokerConfig, TlsFiles, Tuning, demo_catalog,
};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(version, about = "A reference Open Service Broker API v2.17 broker")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Catalog file (YAML or JSON); the built-in demo catalog when absent.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// SQLite file keeping instances and bindings across restarts; in memory when absent.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Require basic auth with this username (and --password).
    #[arg(long, requires = "password")]
    username: Option<String>,
    #[arg(
        long,
        env = "REFERENCE_BROKER_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    password: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (and --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Make every asynchronous operation take this many milliseconds.
    #[arg(long)]
    operation_ms: Option<u64>,
    /// Print the catalog as JSON and exit (after validating it).
    #[arg(long)]
    print_catalog: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let catalog = match &args.catalog {
        Some(path) => BrokerCatalog::load(path)?,
        None => BrokerCatalog::new(demo_catalog())?,
    };
    if args.print_catalog {
        println!("{}", serde_json::to_string_pretty(&catalog.catalog)?);
        return Ok(());
    }
    let config = BrokerConfig {
        catalog,
        state_file: args.state,
        credentials: args
            .username
            .zip(args.password)
            .map(|(username, password)| BasicCredentials { username, password }),
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert_chain, private_key)| TlsFiles {
                cert_chain,
                private_key,
            }),
        tuning: Tuning {
            operation_ms: args.operation_ms,
        },
    };
    let broker = reference_broker::start(config, args.listen)
        .await
        .context("starting the broker")?;
    println!("listening on {}", broker.url());
    shutdown_signal().await;
    tracing::info!("shutting down");
    broker.shutdown().await.context("serving")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
