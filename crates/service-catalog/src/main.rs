//! `service-catalog`: the product's one binary, in roles:
//!
//! - `up`: API server, controller manager and demo broker in one process (the laptop's).
//! - `apiserver`: the Kubernetes-compatible API server. Standalone (SQLite or etcd; the core
//!   slice, RBAC and the catalog; its own tokens, client CA and RBAC), or `--aggregated` behind
//!   kube-apiserver (the catalog only; front proxy, TokenReview, SubjectAccessReview — see
//!   `delegation`).
//! - `controller-manager`: the controllers, against any kubeconfig.
//! - `kubeconfig`: a client certificate from a standalone server's CA, for a user.
//! - `demo`, `catalog --url URL`: the reference broker, and any broker's catalog.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod delegation;
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
    /// Serve the Kubernetes-compatible API: standalone (SQLite or etcd, RBAC of its own) or
    /// `--aggregated` behind kube-apiserver.
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
        #[command(flatten)]
        auth: Box<AuthArgs>,
    },
    /// Print a kubeconfig for a user of a standalone server, with a client certificate issued
    /// by the server's generated CA (in `<data-dir>/tls`).
    Kubeconfig {
        #[arg(long, default_value = ".service-catalog")]
        data_dir: PathBuf,
        /// The user name (the certificate's CN).
        #[arg(long)]
        user: String,
        /// A group the user is in (the certificate's O).
        #[arg(long)]
        group: Option<String>,
        /// The server URL; default: the one in `<data-dir>/kubeconfig`.
        #[arg(long)]
        server: Option<String>,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
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
    /// Serve plain HTTP instead of HTTPS; allowed on loopback addresses only. Like
    /// kube-apiserver's former insecure port, a request without credentials is then an
    /// administrator (kubectl sends none over plain HTTP): for tests and one-user machines.
    #[arg(long)]
    plain_http: bool,
    /// The serving certificate (PEM, chain first); without it a self-signed CA and certificate
    /// are generated into `<data-dir>/tls` on first start and reused.
    #[arg(long, requires = "tls_private_key_file", conflicts_with = "plain_http")]
    tls_cert_file: Option<PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
}

/// Who may talk to the API server.
#[derive(Debug, Clone, clap::Args)]
struct AuthArgs {
    /// Bearer tokens in Kubernetes' CSV format (`token,user,uid,"group1,group2"`), besides the
    /// admin and controller tokens generated into `<data-dir>/tokens.csv`.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// The CA whose client certificates authenticate users (CN = user, O = groups); default:
    /// the generated CA in `<data-dir>/tls`.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Serve requests without credentials as `system:anonymous` (RBAC still decides what it
    /// may do); otherwise they get 401.
    #[arg(long)]
    anonymous_auth: bool,
    /// How long an HTTP/1 client may take to send a request's headers before the connection
    /// is closed (slow clients must not hold connections forever).
    #[arg(long, default_value = "30s", value_parser = go_duration)]
    request_header_timeout: Duration,
    /// Run behind kube-apiserver's aggregation layer: serve only the catalog group, trust
    /// the front proxy, and delegate authentication (TokenReview) and authorization
    /// (SubjectAccessReview) to the cluster.
    #[arg(long)]
    aggregated: bool,
    /// The kubeconfig for the delegated reviews and the front-proxy settings; default:
    /// `KUBECONFIG`, `~/.kube/config` or the in-cluster service account.
    #[arg(long, requires = "aggregated")]
    authentication_kubeconfig: Option<PathBuf>,
    /// The CA of the front proxy's client certificate; default: the cluster's
    /// `kube-system/extension-apiserver-authentication` ConfigMap.
    #[arg(long, requires = "aggregated")]
    requestheader_client_ca_file: Option<PathBuf>,
    /// Common names the front proxy's certificate may have (empty: any the CA issued).
    #[arg(long, value_delimiter = ',', requires = "aggregated")]
    requestheader_allowed_names: Vec<String>,
    #[arg(long, value_delimiter = ',', requires = "aggregated")]
    requestheader_username_headers: Vec<String>,
    #[arg(long, value_delimiter = ',', requires = "aggregated")]
    requestheader_group_headers: Vec<String>,
    #[arg(long, value_delimiter = ',', requires = "aggregated")]
    requestheader_extra_headers_prefix: Vec<String>,
    /// How long a TokenReview answer is reused.
    #[arg(long, default_value = "10s", value_parser = go_duration)]
    authentication_token_webhook_cache_ttl: Duration,
    /// How long an allowing SubjectAccessReview answer is reused.
    #[arg(long, default_value = "10s", value_parser = go_duration)]
    authorization_webhook_cache_authorized_ttl: Duration,
    /// How long a refusing SubjectAccessReview answer is reused.
    #[arg(long, default_value = "10s", value_parser = go_duration)]
    authorization_webhook_cache_unauthorized_ttl: Duration,
}

impl Default for AuthArgs {
    fn default() -> Self {
        Self {
            token_auth_file: None,
            client_ca_file: None,
            anonymous_auth: false,
            request_header_timeout: Duration::from_secs(30),
            aggregated: false,
            authentication_kubeconfig: None,
            requestheader_client_ca_file: None,
            requestheader_allowed_names: Vec::new(),
            requestheader_username_headers: Vec::new(),
            requestheader_group_headers: Vec::new(),
            requestheader_extra_headers_prefix: Vec::new(),
            authentication_token_webhook_cache_ttl: Duration::from_secs(10),
            authorization_webhook_cache_authorized_ttl: Duration::from_secs(10),
            authorization_webhook_cache_unauthorized_ttl: Duration::from_secs(10),
        }
    }
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
            auth,
        } => apiserver(data_dir, listen, storage, tls, *auth).await,
        Command::Kubeconfig {
            data_dir,
            user,
            group,
            server,
            days,
        } => user_kubeconfig(&data_dir, &user, group.as_deref(), server, days),
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
    auth: AuthArgs,
) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let prepared = prepare_apiserver(&data_dir, listen, &storage, tls, &auth).await?;
    announce(&prepared.url, prepared.kubeconfig.as_deref());
    prepared.serve(shutdown).await
}

/// An API server with its store open, its port bound and its kubeconfig written: ready to serve.
struct PreparedApiServer {
    server: Arc<apiserver::ApiServer>,
    listener: tokio::net::TcpListener,
    url: String,
    /// The admin's kubeconfig (standalone mode).
    kubeconfig: Option<PathBuf>,
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
    auth: &AuthArgs,
) -> anyhow::Result<PreparedApiServer> {
    let plain_http = tls.plain_http;
    if tls.plain_http && !listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve plain HTTP on {listen}: --plain-http is for loopback addresses only"
        );
    }
    if tls.plain_http && auth.aggregated {
        anyhow::bail!(
            "--aggregated needs TLS: kube-apiserver's front proxy authenticates with a client certificate"
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    // TLS material first: the generated CA is also the default client CA.
    let serving = if tls.plain_http {
        None
    } else {
        Some(serving_files(data_dir, listen, tls)?)
    };
    let mut access = if auth.aggregated {
        aggregated_access(auth).await?
    } else {
        standalone_access(data_dir, auth, serving.as_ref())?
    };
    access.authenticator.set_anonymous(auth.anonymous_auth);
    if plain_http {
        // kube-apiserver's former insecure port: kubectl sends no credentials over plain
        // HTTP, so on this loopback-only port a request without them is an administrator.
        access
            .authenticator
            .set_user_without_credentials(apiserver::UserIdentity::new(
                "system:insecure-loopback",
                &["system:masters"],
            ));
    }
    let store = storage.open(data_dir).await?;
    let mut server = apiserver::ApiServer::new(store, access.registry)?;
    if plain_http {
        server = server.with_loopback_hosts_only();
    }
    let server = Arc::new(
        server
            .with_authenticator(access.authenticator)
            .with_authorization(access.authorization)
            .with_bootstrap_objects(access.bootstrap_objects)
            .with_client_roots(access.client_roots)
            .with_limits(tls_serve::ServeLimits {
                header_read_timeout: auth.request_header_timeout,
                ..Default::default()
            }),
    );
    server.bootstrap().await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let mut address = listener.local_addr()?;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scheme = if serving.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{address}");
    let ca = serving.as_ref().and_then(|(_, ca)| ca.as_deref());
    let kubeconfig = match access.identities {
        Some(identities) => {
            write_kubeconfig(
                &data_dir.join("controller.kubeconfig"),
                &url,
                ca,
                "controller-manager",
                &identities.controller_token,
            )?;
            Some(write_kubeconfig(
                &data_dir.join("kubeconfig"),
                &url,
                ca,
                "admin",
                &identities.admin_token,
            )?)
        }
        None => None,
    };
    Ok(PreparedApiServer {
        server,
        listener,
        url,
        kubeconfig,
        tls: serving.map(|(files, _)| files),
    })
}

/// The serving certificate: the given files, or a CA and certificate generated into
/// `<data-dir>/tls` (returned with the CA's PEM, which clients must trust).
fn serving_files(
    data_dir: &std::path::Path,
    listen: SocketAddr,
    tls: TlsArgs,
) -> anyhow::Result<(tls_serve::TlsFiles, Option<String>)> {
    if let (Some(cert_chain), Some(private_key)) = (tls.tls_cert_file, tls.tls_private_key_file) {
        return Ok((
            tls_serve::TlsFiles {
                cert_chain,
                private_key,
            },
            None,
        ));
    }
    let mut hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
        hosts.push(listen.ip().to_string());
    }
    let (files, ca) = tls_serve::self_signed(&data_dir.join("tls"), &hosts)?;
    Ok((files, Some(ca)))
}

/// The tokens of the identities a standalone server makes for itself.
struct BootstrapIdentities {
    admin_token: String,
    controller_token: String,
}

/// What a mode serves and who may use it.
struct Access {
    registry: apiserver::Registry,
    authenticator: apiserver::Authenticator,
    authorization: apiserver::Authorization,
    /// Objects created at start (the default roles).
    bootstrap_objects: Vec<serde_json::Value>,
    /// CAs whose client certificates the TLS handshake accepts.
    client_roots: Vec<tls_serve::rustls::pki_types::CertificateDer<'static>>,
    /// The server's own users (standalone mode), for the kubeconfigs it writes.
    identities: Option<BootstrapIdentities>,
}

/// Standalone mode: the core slice, RBAC and the catalog; the generated tokens (admin,
/// controller manager), the operator's token file, and client certificates of the client CA;
/// RBAC with the default roles.
fn standalone_access(
    data_dir: &std::path::Path,
    auth: &AuthArgs,
    serving: Option<&(tls_serve::TlsFiles, Option<String>)>,
) -> anyhow::Result<Access> {
    let identities = bootstrap_tokens(data_dir)?;
    let mut authenticator = apiserver::Authenticator::default();
    authenticator.add_token_file(&data_dir.join("tokens.csv"))?;
    if let Some(file) = &auth.token_auth_file {
        authenticator.add_token_file(file)?;
    }
    let client_ca = match (&auth.client_ca_file, serving) {
        (Some(file), _) => Some(file.clone()),
        // The generated CA, only while this run uses the generated serving files (a CA left
        // over from an earlier run is not trusted once the operator gives their own).
        (None, Some((_, Some(_)))) => Some(data_dir.join("tls/ca.crt")),
        (None, _) => None,
    };
    let mut roots = Vec::new();
    if let Some(file) = client_ca {
        if serving.is_none() {
            anyhow::bail!(
                "--client-ca-file needs TLS (client certificates travel in the handshake)"
            );
        }
        roots = tls_serve::read_certificates(&file)?;
        authenticator.set_client_ca(tls_serve::client_verifier(&roots)?);
    }
    Ok(Access {
        registry: catalog_registry::standalone(),
        authenticator,
        authorization: apiserver::Authorization::Rbac,
        bootstrap_objects: catalog_registry::roles::default_policy(),
        client_roots: roots,
        identities: Some(identities),
    })
}

/// Aggregated mode: the catalog only; the front proxy, client certificates of the cluster's
/// client CA, and TokenReview / SubjectAccessReview against the cluster.
async fn aggregated_access(auth: &AuthArgs) -> anyhow::Result<Access> {
    let mut authenticator = apiserver::Authenticator::default();
    let client = kube_client(auth.authentication_kubeconfig.as_deref())
        .await
        .context("the delegated authentication's kubeconfig")?;
    let cluster = delegation::ClusterAuthentication::read(&client)
        .await
        .context("reading kube-system/extension-apiserver-authentication")?;
    let mut roots = Vec::new();
    let pem_roots = |pem: &str| {
        tls_serve::parse_certificates(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("extension-apiserver-authentication: {e}"))
    };
    let requestheader_roots = match (
        &auth.requestheader_client_ca_file,
        &cluster.requestheader_client_ca,
    ) {
        (Some(file), _) => Some(tls_serve::read_certificates(file)?),
        (None, Some(pem)) => Some(pem_roots(pem)?),
        (None, None) => None,
    };
    let or = |flag: &Vec<String>, cluster: &Vec<String>, default: &str| -> Vec<String> {
        if !flag.is_empty() {
            flag.clone()
        } else if !cluster.is_empty() {
            cluster.clone()
        } else {
            vec![default.to_owned()]
        }
    };
    match requestheader_roots {
        Some(ca) => {
            authenticator.set_request_header(apiserver::auth::RequestHeaderConfig {
                verifier: tls_serve::client_verifier(&ca)?,
                allowed_names: if auth.requestheader_allowed_names.is_empty() {
                    cluster.requestheader_allowed_names.clone()
                } else {
                    auth.requestheader_allowed_names.clone()
                },
                username_headers: or(
                    &auth.requestheader_username_headers,
                    &cluster.requestheader_username_headers,
                    "X-Remote-User",
                ),
                group_headers: or(
                    &auth.requestheader_group_headers,
                    &cluster.requestheader_group_headers,
                    "X-Remote-Group",
                ),
                extra_header_prefixes: or(
                    &auth.requestheader_extra_headers_prefix,
                    &cluster.requestheader_extra_headers_prefix,
                    "X-Remote-Extra-",
                ),
            });
            roots.extend(ca);
        }
        None => tracing::warn!(
            "no request-header CA: requests through kube-apiserver's aggregator cannot be authenticated"
        ),
    }
    if let Some(pem) = &cluster.client_ca {
        let ca = pem_roots(pem)?;
        authenticator.set_client_ca(tls_serve::client_verifier(&ca)?);
        roots.extend(ca);
    }
    authenticator.set_token_reviewer(Arc::new(delegation::DelegatedAuthentication::new(
        client.clone(),
        auth.authentication_token_webhook_cache_ttl,
    )));
    let authorizer = delegation::DelegatedAuthorization::new(
        client,
        auth.authorization_webhook_cache_authorized_ttl,
        auth.authorization_webhook_cache_unauthorized_ttl,
    );
    Ok(Access {
        registry: catalog_registry::aggregated(),
        authenticator,
        authorization: apiserver::Authorization::Delegated(Arc::new(authorizer)),
        bootstrap_objects: Vec::new(),
        client_roots: roots,
        identities: None,
    })
}

async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig: pass one, set KUBECONFIG, or run in a cluster")?,
    };
    Ok(kube::Client::try_from(config)?)
}

fn announce(url: &str, kubeconfig: Option<&std::path::Path>) {
    println!("listening on {url}");
    if let Some(kubeconfig) = kubeconfig {
        println!("kubeconfig: {}", kubeconfig.display());
    }
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

/// Writes a kubeconfig for `user` at this server to `path`. Written to a temporary file and
/// renamed, so a reader never sees half of it; readable by the owner only (it holds a
/// credential).
fn write_kubeconfig(
    path: &std::path::Path,
    url: &str,
    ca_pem: Option<&str>,
    user: &str,
    token: &str,
) -> anyhow::Result<PathBuf> {
    let credentials = format!("    token: {token}\n");
    write_kubeconfig_with(path, url, ca_pem, user, &credentials)?;
    Ok(path.to_owned())
}

fn kubeconfig_text(url: &str, ca_pem: Option<&str>, user: &str, credentials: &str) -> String {
    use base64::Engine as _;
    let ca = ca_pem
        .map(|pem| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: service-catalog\n  cluster:\n    server: {url}\n{ca}users:\n- name: {user}\n  user:\n{credentials}contexts:\n- name: service-catalog\n  context:\n    cluster: service-catalog\n    user: {user}\n    namespace: default\ncurrent-context: service-catalog\n"
    )
}

fn write_kubeconfig_with(
    path: &std::path::Path,
    url: &str,
    ca_pem: Option<&str>,
    user: &str,
    credentials: &str,
) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    write_private(&temporary, &kubeconfig_text(url, ca_pem, user, credentials))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    // `mode` applies only to a new file: an existing one is made private too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

/// `<data-dir>/tokens.csv` (Kubernetes' token file format), made on first start: the admin
/// (`system:masters`) and the controller manager, whose permissions are the
/// `servicecatalog.k8s.io:controller-manager` ClusterRole's. A missing line is added; lines
/// an operator added are kept.
fn bootstrap_tokens(data_dir: &std::path::Path) -> anyhow::Result<BootstrapIdentities> {
    let file = data_dir.join("tokens.csv");
    let new_token = || {
        format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    };
    let token_of = |text: &str, user: &str| {
        text.lines().find_map(|line| {
            let mut fields = line.split(',');
            let token = fields.next()?.trim();
            (fields.next()?.trim() == user).then(|| token.to_owned())
        })
    };
    let mut text = std::fs::read_to_string(&file).unwrap_or_else(|_| {
        "# Generated by service-catalog: token,user,uid,\"groups\"\n".to_owned()
    });
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let controller = catalog_registry::roles::CONTROLLER_USER;
    let admin_token = match token_of(&text, "admin") {
        Some(token) => token,
        None => {
            let token = new_token();
            text.push_str(&format!("{token},admin,admin,\"system:masters\"\n"));
            token
        }
    };
    let controller_token = match token_of(&text, controller) {
        Some(token) => token,
        None => {
            let token = new_token();
            text.push_str(&format!("{token},{controller},controller-manager,\"\"\n"));
            token
        }
    };
    // Rewritten every start: the same text, and owner-only whatever the mode was.
    write_private(&file, &text)?;
    Ok(BootstrapIdentities {
        admin_token,
        controller_token,
    })
}

/// `service-catalog kubeconfig`: a client certificate for `user` from the data dir's CA, in
/// a kubeconfig on stdout.
fn user_kubeconfig(
    data_dir: &std::path::Path,
    user: &str,
    group: Option<&str>,
    server: Option<String>,
    days: u32,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    let tls = data_dir.join("tls");
    let ca = std::fs::read_to_string(tls.join("ca.crt")).with_context(|| {
        format!(
            "no generated CA in {}: start the server once (without --tls-cert-file) first",
            tls.display()
        )
    })?;
    let server = match server {
        Some(server) => server,
        None => {
            let admin = data_dir.join("kubeconfig");
            let config = kube::config::Kubeconfig::read_from(&admin)
                .with_context(|| format!("reading {} (or pass --server)", admin.display()))?;
            config
                .clusters
                .first()
                .and_then(|c| c.cluster.as_ref())
                .and_then(|c| c.server.clone())
                .context("the admin kubeconfig names no server; pass --server")?
        }
    };
    let (cert, key) = tls_serve::issue_client_certificate(&tls, user, group, days)?;
    let encode = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let credentials = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        encode(&cert),
        encode(&key)
    );
    print!(
        "{}",
        kubeconfig_text(&server, Some(&ca), user, &credentials)
    );
    Ok(())
}

async fn controller_manager(args: ControllerArgs) -> anyhow::Result<()> {
    let client = kube_client(args.kubeconfig.as_deref()).await?;
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
