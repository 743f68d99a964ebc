//! `service-catalog up`: the whole product in one process — the API server on an embedded SQLite
//! store, the controller manager, and (unless `--no-demo-broker`) the reference broker on a free
//! loopback port, registered as the ClusterServiceBroker `demo`. Everything lives in the data
//! dir, so a second `up` carries on where the first stopped; the store's lock refuses a second
//! concurrent one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::{PreparedApiServer, StorageArgs, TlsArgs};

/// The name of the demo broker's registration.
pub const DEMO_BROKER: &str = "demo";

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where the data lives: the store, the TLS files, the kubeconfig, the demo broker's state.
    #[arg(long, default_value = ".service-catalog")]
    pub data_dir: PathBuf,
    /// The API server's address; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddrArg,
    /// Do not start and register the reference broker.
    #[arg(long)]
    pub no_demo_broker: bool,
}

pub type SocketAddrArg = std::net::SocketAddr;

/// Registers the demo broker at `url`, or points the existing registration there (the broker's
/// port changes from one `up` to the next; its state does not).
async fn register_demo(client: &Client, url: &str) -> anyhow::Result<()> {
    let brokers: Api<catalog_api::ClusterServiceBroker> = Api::all(client.clone());
    match brokers.get_opt(DEMO_BROKER).await? {
        Some(existing) if existing.spec.common.url == url => {}
        Some(_) => {
            brokers
                .patch(
                    DEMO_BROKER,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"url": url}})),
                )
                .await?;
        }
        None => {
            let broker: catalog_api::ClusterServiceBroker = serde_json::from_value(json!({
                "metadata": {"name": DEMO_BROKER},
                "spec": {"url": url, "relistBehavior": "Duration", "relistDuration": "15m"}}))?;
            brokers.create(&PostParams::default(), &broker).await?;
        }
    }
    Ok(())
}

pub async fn up(
    args: UpArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let storage = StorageArgs::sqlite();
    let prepared: PreparedApiServer = crate::prepare_apiserver(
        &args.data_dir,
        args.listen,
        &storage,
        TlsArgs::default(),
        &crate::AuthArgs::default(),
    )
    .await
    .context("starting the API server")?;
    let url = prepared.url.clone();
    let kubeconfig = prepared
        .kubeconfig
        .clone()
        .context("a standalone server writes its admin kubeconfig")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(prepared.serve(async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|s| *s).await;
    }));
    // The first line a supervisor (or a test) reads.
    println!("listening on {url}");
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "API server up"
    );
    let client = crate::kube_client(Some(&kubeconfig)).await?;
    // The controller runs as itself, with only the permissions its role grants.
    let controller_client =
        crate::kube_client(Some(&args.data_dir.join("controller.kubeconfig"))).await?;

    let broker = if args.no_demo_broker {
        None
    } else {
        let config = reference_broker::BrokerConfig {
            state_file: Some(args.data_dir.join("demo-broker.db")),
            ..reference_broker::BrokerConfig::demo()
        };
        let broker = reference_broker::start(config, "127.0.0.1:0".parse()?)
            .await
            .context("starting the demo broker")?;
        register_demo(&client, broker.url()).await?;
        Some(broker)
    };
    let settings = controller::Settings {
        broker: controller::BrokerSettings {
            default_relist: Duration::from_secs(24 * 3600),
            osb_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        },
        operations: controller::OperationSettings {
            osb_timeout: Duration::from_secs(60),
            poll_min: Duration::from_millis(500),
            poll_max: Duration::from_secs(60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            retry_duration: Duration::from_secs(7 * 24 * 3600),
        },
        workers: 5,
        metrics_listen: "127.0.0.1:0".parse()?,
        // One process owns the data dir (the store's lock says so): no election needed.
        leader_election: None,
        identity: "service-catalog-up".into(),
        announce: false,
    };
    let controllers = tokio::spawn(controller::run(controller_client, settings, async {
        std::future::pending::<()>().await
    }));

    let data = args.data_dir.display();
    println!();
    println!(
        "Service Catalog is up (API server, controller manager{}).",
        if broker.is_some() {
            ", demo broker"
        } else {
            ""
        }
    );
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  svcat marketplace        # svcat: cargo install --path crates/svcat");
    println!("  kubectl get clusterserviceclasses,clusterserviceplans");
    println!("Data lives in {data}; Ctrl-C stops, and `up` again carries on from there.");

    shutdown.await;
    tracing::info!("shutting down");
    controllers.abort();
    let _ = stop.send(true);
    match tokio::time::timeout(Duration::from_secs(30), server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(join)) => return Err(join.into()),
        Err(_) => tracing::warn!("the API server did not stop within 30 s"),
    }
    if let Some(broker) = broker {
        broker.shutdown().await?;
    }
    Ok(())
}
