//! `service-catalog`: the product's one binary. Its roles grow with the project; today:
//!
//! - `service-catalog demo`: start the reference broker on a free loopback port and show its
//!   catalog through the OSB client — the first thing to run on a fresh machine.
//! - `service-catalog catalog --url URL`: show any broker's catalog.
//! - `service-catalog apiserver`: the Kubernetes-compatible API server on an embedded SQLite
//!   store (standalone mode; today it serves the core slice: Namespaces, Secrets, ConfigMaps,
//!   Events, Leases).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod up;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use osb_client::{Auth, Catalog, Client, ClientConfig};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(version, about = "Kubernetes Service Catalog, in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the reference broker on a free loopback port and show its catalog.
    Demo {
        /// Keep the broker serving until Ctrl-C instead of exiting after the catalog.
        #[arg(long)]
        serve: bool,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Serve the Kubernetes-compatible API on an embedded SQLite store.
    Apiserver {
        /// Where the data lives (created on first start).
        #[arg(long, default_value = ".service-catalog")]
        data_dir: PathBuf,
        /// Address to listen on; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// The whole product in one process: API server, controller manager and a demo broker.
    Up(up::UpArgs),
    /// Run the controllers (brokers → classes and plans) against an API server.
    ControllerManager(ControllerArgs),
    /// Fetch, validate and show a broker's catalog.
    Catalog {
        #[arg(long)]
        url: String,
        #[arg(long, requires = "password")]
        username: Option<String>,
        #[arg(
            long,
            env = "BROKER_PASSWORD",
            hide_env_values = true,
            requires = "username"
        )]
        password: Option<String>,
        /// Print the catalog as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// A Go-style duration (`90s`, `15m`, `24h`), as Kubernetes flags take them.
fn go_duration(text: &str) -> Result<Duration, String> {
    let parsed: kube::core::Duration = text.parse().map_err(|e| format!("{e}"))?;
    if parsed.is_negative() {
        return Err("must not be negative".into());
    }
    Ok(parsed.into())
}

#[derive(Debug, clap::Args)]
struct ControllerArgs {
    /// The kubeconfig to use; default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster
    /// service account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "127.0.0.1:8089")]
    metrics_listen: SocketAddr,
    /// How often a broker with `relistBehavior: Duration` and no `relistDuration` is relisted.
    #[arg(long, default_value = "24h", value_parser = go_duration)]
    broker_relist_interval: Duration,
    /// How long one OSB request may take.
    #[arg(long, default_value = "60s", value_parser = go_duration)]
    osb_timeout: Duration,
    /// The first retry delay after a broker error (it doubles per failure).
    #[arg(long, default_value = "1s", value_parser = go_duration)]
    retry_min: Duration,
    /// The longest retry delay after repeated broker errors.
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    retry_max: Duration,
    /// The shortest wait between polls of an asynchronous operation (a broker's Retry-After
    /// is honoured above it).
    #[arg(long, default_value = "1s", value_parser = go_duration)]
    polling_interval: Duration,
    /// The longest wait between polls of an asynchronous operation.
    #[arg(long, default_value = "1m", value_parser = go_duration)]
    max_polling_interval: Duration,
    /// How long a failing provision or update is retried before it is `Failed` (the original's
    /// default: a week).
    #[arg(long, default_value = "168h", value_parser = go_duration)]
    reconciliation_retry_duration: Duration,
    /// Reconciles running at once, per kind.
    #[arg(long, default_value_t = 5)]
    workers: u16,
    /// Elect a leader on a Lease, so that several replicas can run and exactly one acts.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    #[arg(long, default_value = "kube-system")]
    leader_elect_namespace: String,
    #[arg(long, default_value = "service-catalog-controller-manager")]
    leader_elect_name: String,
    /// How long a lease lasts without renewal before another replica may take it.
    #[arg(long, default_value = "15s", value_parser = go_duration)]
    leader_elect_lease_duration: Duration,
    /// How often the leader renews (and candidates retry).
    #[arg(long, default_value = "2s", value_parser = go_duration)]
    leader_elect_renew_interval: Duration,
}

#[derive(Debug, Default, clap::Args)]
struct TlsArgs {
    /// Serve plain HTTP instead of HTTPS; allowed on loopback addresses only.
    #[arg(long)]
    plain_http: bool,
    /// The serving certificate (PEM, chain first); without it a self-signed CA and certificate
    /// are generated into `<data-dir>/tls` on first start and reused.
    #[arg(long, requires = "tls_private_key_file", conflicts_with = "plain_http")]
    tls_cert_file: Option<PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StorageKind {
    /// An embedded SQLite file under the data dir (one API server).
    Sqlite,
    /// etcd v3 (several API servers on the same data).
    Etcd,
}

#[derive(Debug, clap::Args)]
// Without the `etcd` feature the etcd settings are parsed (so the error can say what to do) but
// not used.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
struct StorageArgs {
    #[arg(long, value_enum, default_value = "sqlite")]
    storage: StorageKind,
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',', required_if_eq("storage", "etcd"))]
    etcd_servers: Vec<String>,
    /// Every key lives under this prefix, so several catalogs can share one etcd.
    #[arg(long, default_value = "/service-catalog/")]
    etcd_prefix: String,
    /// CA certificate for https etcd endpoints.
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    /// Client certificate and key, for etcd's client certificate authentication.
    #[arg(long, requires = "etcd_keyfile")]
    etcd_certfile: Option<PathBuf>,
    #[arg(long, requires = "etcd_certfile")]
    etcd_keyfile: Option<PathBuf>,
    /// How long one storage request may wait for etcd (e.g. while it has no quorum) before the
    /// API answers 503.
    #[arg(long, default_value = "30s", value_parser = go_duration)]
    etcd_request_timeout: Duration,
}

impl StorageArgs {
    /// The embedded SQLite store under the data dir.
    fn sqlite() -> Self {
        Self {
            storage: StorageKind::Sqlite,
            etcd_servers: Vec::new(),
            etcd_prefix: "/service-catalog/".into(),
            etcd_cafile: None,
            etcd_certfile: None,
            etcd_keyfile: None,
            etcd_request_timeout: Duration::from_secs(30),
        }
    }

    async fn open(&self, data_dir: &std::path::Path) -> anyhow::Result<Arc<dyn storage::Store>> {
        Ok(match self.storage {
            StorageKind::Sqlite => Arc::new(storage::sqlite::SqliteStore::open(
                storage::sqlite::SqliteOptions::new(data_dir.join("catalog.db")),
            )?),
            #[cfg(feature = "etcd")]
            StorageKind::Etcd => {
                let mut options = storage_etcd::EtcdOptions::new(
                    self.etcd_servers.clone(),
                    self.etcd_prefix.clone(),
                );
                options.request_timeout = self.etcd_request_timeout;
                if let Some(ca_file) = &self.etcd_cafile {
                    options.tls = Some(storage_etcd::EtcdTls {
                        ca_file: ca_file.clone(),
                        client_cert_file: self.etcd_certfile.clone(),
                        client_key_file: self.etcd_keyfile.clone(),
                        server_name: None,
                    });
                }
                Arc::new(
                    storage_etcd::EtcdStore::connect(options)
                        .await
                        .with_context(|| {
                            format!("connecting to etcd at {}", self.etcd_servers.join(","))
                        })?,
                )
            }
            #[cfg(not(feature = "etcd"))]
            StorageKind::Etcd => anyhow::bail!(
                "this build has no etcd support; build with `cargo build -p service-catalog --features etcd` (needs protoc)"
            ),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Servers log their requests by default; the one-shot commands only what went wrong.
    let default_filter = match cli.command {
        Command::Apiserver { .. } | Command::ControllerManager(_) => "info",
        Command::Up(_) => "warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo { serve, listen } => demo(serve, listen).await,
        Command::Apiserver {
            data_dir,
            listen,
            storage,
            tls,
        } => apiserver(data_dir, listen, storage, tls).await,
        Command::ControllerManager(args) => controller_manager(args).await,
        Command::Up(args) => up::up(args, shutdown_signal()).await,
        Command::Catalog {
            url,
            username,
            password,
            json,
        } => {
            let mut config = ClientConfig::new(&url)?;
            if let (Some(username), Some(password)) = (username, password) {
                config = config.with_auth(Auth::Basic { username, password });
            }
            let catalog = Client::new(config)?.catalog().await?;
            print_catalog(&catalog, json)
        }
    }
}

async fn apiserver(
    data_dir: PathBuf,
    listen: SocketAddr,
    storage: StorageArgs,
    tls: TlsArgs,
) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let prepared = prepare_apiserver(&data_dir, listen, &storage, tls).await?;
    announce(&prepared.url, &prepared.kubeconfig);
    prepared.serve(shutdown).await
}

/// An API server with its store open, its port bound and its kubeconfig written: ready to serve.
struct PreparedApiServer {
    server: Arc<apiserver::ApiServer>,
    listener: tokio::net::TcpListener,
    url: String,
    kubeconfig: PathBuf,
    /// `None`: plain HTTP.
    tls: Option<tls_serve::TlsFiles>,
}

impl PreparedApiServer {
    async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        match &self.tls {
            None => self.server.serve(self.listener, shutdown).await?,
            Some(files) => {
                self.server
                    .serve_tls(self.listener, files, shutdown)
                    .await?
            }
        }
        Ok(())
    }
}

async fn prepare_apiserver(
    data_dir: &std::path::Path,
    listen: SocketAddr,
    storage: &StorageArgs,
    tls: TlsArgs,
) -> anyhow::Result<PreparedApiServer> {
    if tls.plain_http && !listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve plain HTTP on {listen}: --plain-http is for loopback addresses only"
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let store = storage.open(data_dir).await?;
    let token = admin_token(data_dir)?;
    let mut authenticator = apiserver::Authenticator::default();
    authenticator.add_token(
        token.clone(),
        apiserver::UserIdentity {
            username: "admin".into(),
            uid: "admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            extra: Default::default(),
        },
    );
    let server = Arc::new(
        apiserver::ApiServer::new(store, catalog_registry::standalone())?
            .with_authenticator(authenticator),
    );
    server.bootstrap().await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let mut address = listener.local_addr()?;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    if tls.plain_http {
        let url = format!("http://{address}");
        let kubeconfig = write_kubeconfig(data_dir, &url, None, &token)?;
        return Ok(PreparedApiServer {
            server,
            listener,
            url,
            kubeconfig,
            tls: None,
        });
    }
    let (files, ca) = match (tls.tls_cert_file, tls.tls_private_key_file) {
        (Some(cert_chain), Some(private_key)) => (
            tls_serve::TlsFiles {
                cert_chain,
                private_key,
            },
            None,
        ),
        _ => {
            let mut hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
            if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
                hosts.push(listen.ip().to_string());
            }
            let (files, ca) = tls_serve::self_signed(&data_dir.join("tls"), &hosts)?;
            (files, Some(ca))
        }
    };
    let url = format!("https://{address}");
    let kubeconfig = write_kubeconfig(data_dir, &url, ca.as_deref(), &token)?;
    Ok(PreparedApiServer {
        server,
        listener,
        url,
        kubeconfig,
        tls: Some(files),
    })
}

fn announce(url: &str, kubeconfig: &std::path::Path) {
    println!("listening on {url}");
    println!("kubeconfig: {}", kubeconfig.display());
}

/// Ctrl-C or SIGTERM: stop accepting, let requests in flight finish, end watches cleanly.
///
/// The handlers are registered when this is called, not when the future is first polled, so a
/// signal that arrives while the server is still starting stops it cleanly too (instead of the
/// default action killing it).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            match (interrupt, terminate) {
                (Some(mut interrupt), Some(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Writes `<data-dir>/kubeconfig` pointing at this server, so `kubectl --kubeconfig` works at
/// once. Written to a temporary file and renamed, so a reader never sees half of it.
fn write_kubeconfig(
    data_dir: &std::path::Path,
    url: &str,
    ca_pem: Option<&str>,
    token: &str,
) -> anyhow::Result<PathBuf> {
    use base64::Engine as _;
    let path = data_dir.join("kubeconfig");
    let ca = ca_pem
        .map(|pem| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        })
        .unwrap_or_default();
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: service-catalog\n  cluster:\n    server: {url}\n{ca}users:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: service-catalog\n  context:\n    cluster: service-catalog\n    user: admin\n    namespace: default\ncurrent-context: service-catalog\n"
    );
    let temporary = data_dir.join(".kubeconfig.tmp");
    std::fs::write(&temporary, config)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The admin user's bearer token, kept in the data dir (made on first start). kubectl prompts
/// for a password when an https cluster's user has no credentials; the server knows the token
/// as the user `admin` (authorization is not enforced yet: that is the RBAC work).
fn admin_token(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let token_file = data_dir.join("admin.token");
    let token = match std::fs::read_to_string(&token_file) {
        Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
        _ => {
            let token = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            std::fs::write(&token_file, &token)
                .with_context(|| format!("writing {}", token_file.display()))?;
            token
        }
    };
    Ok(token)
}

async fn controller_manager(args: ControllerArgs) -> anyhow::Result<()> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig: pass --kubeconfig, set KUBECONFIG, or run in a cluster")?,
    };
    let client = kube::Client::try_from(config)?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let identity = format!("{host}_{}", uuid::Uuid::new_v4().simple());
    let settings = controller::Settings {
        broker: controller::BrokerSettings {
            default_relist: args.broker_relist_interval,
            osb_timeout: args.osb_timeout,
            backoff_min: args.retry_min,
            backoff_max: args.retry_max,
        },
        operations: controller::OperationSettings {
            osb_timeout: args.osb_timeout,
            poll_min: args.polling_interval,
            poll_max: args.max_polling_interval.max(args.polling_interval),
            backoff_min: args.retry_min,
            backoff_max: args.retry_max,
            retry_duration: args.reconciliation_retry_duration,
        },
        workers: args.workers,
        metrics_listen: args.metrics_listen,
        leader_election: args.leader_elect.then(|| controller::LeaseSettings {
            namespace: args.leader_elect_namespace,
            name: args.leader_elect_name,
            identity: identity.clone(),
            lease_duration: args.leader_elect_lease_duration,
            renew_interval: args.leader_elect_renew_interval,
        }),
        identity,
        announce: true,
    };
    controller::run(client, settings, shutdown_signal()).await?;
    Ok(())
}

async fn demo(serve: bool, listen: SocketAddr) -> anyhow::Result<()> {
    let broker = reference_broker::start(reference_broker::BrokerConfig::demo(), listen)
        .await
        .context("starting the reference broker")?;
    println!("reference broker listening on {}\n", broker.url());
    let client = Client::new(
        ClientConfig::new(broker.url())?
            .with_timeouts(Duration::from_secs(5), Duration::from_secs(10)),
    )?;
    let catalog = client.catalog().await.context("fetching the catalog")?;
    print_catalog(&catalog, false)?;
    if serve {
        println!("\nserving until Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    broker.shutdown().await?;
    Ok(())
}

fn print_catalog(catalog: &Catalog, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(catalog)?);
        return Ok(());
    }
    let yes_no = |flag: bool| if flag { "yes" } else { "no" };
    println!(
        "{:<24} {:<12} {:<6} {:<9} DESCRIPTION",
        "CLASS", "PLAN", "FREE", "BINDABLE"
    );
    for service in &catalog.services {
        for plan in &service.plans {
            println!(
                "{:<24} {:<12} {:<6} {:<9} {}",
                service.name,
                plan.name,
                yes_no(plan.free.unwrap_or(true)),
                yes_no(plan.is_bindable(service)),
                plan.description
            );
        }
    }
    Ok(())
}
