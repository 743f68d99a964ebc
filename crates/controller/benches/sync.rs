//! How long a big catalog takes to become objects, and what a relist with no change costs.
//! Everything real and in one process: the API server on SQLite (fsync on) over loopback HTTP,
//! the reference broker serving a generated catalog, and the controller manager. Run:
//!
//!     cargo bench -p controller --bench sync
//!
//! Results go in docs/benchmarks.md. Not a test: nothing here asserts a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::ApiServer;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use storage::Store as _;
use storage::sqlite::{SqliteOptions, SqliteStore};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const SERVICES: usize = 1_000;
const PLANS: usize = 10;

fn catalog() -> Result<osb_client::Catalog> {
    let services: Vec<_> = (0..SERVICES)
        .map(|s| {
            let plans: Vec<_> = (0..PLANS)
                .map(|p| {
                    json!({"id": format!("plan-{s}-{p}"), "name": format!("plan-{p}"),
                    "description": "a plan", "free": p == 0,
                    "schemas": {"service_instance": {"create": {"parameters": {"type": "object",
                        "properties": {"size": {"type": "integer"}}}}}}})
                })
                .collect();
            json!({"id": format!("service-{s}"), "name": format!("service-{s}"),
                   "description": "a service", "bindable": true, "plans": plans})
        })
        .collect();
    Ok(serde_json::from_value(json!({"services": services}))?)
}

async fn count(client: &Client, plural: &str) -> Result<usize> {
    let resource = if plural == "clusterserviceclasses" {
        kube::api::ApiResource::erase::<catalog_api::ClusterServiceClass>(&())
    } else {
        kube::api::ApiResource::erase::<catalog_api::ClusterServicePlan>(&())
    };
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
    Ok(api.list_metadata(&ListParams::default()).await?.items.len())
}

async fn synced_generation(brokers: &Api<catalog_api::ClusterServiceBroker>) -> Result<i64> {
    let broker = brokers.get("big").await?;
    let status = broker.status.unwrap_or_default();
    let ready =
        catalog_api::condition(&status.conditions, "Ready").is_some_and(|c| c.status == "True");
    Ok(if ready {
        status.reconciled_generation
    } else {
        0
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(SqliteOptions {
        compaction: None,
        ..SqliteOptions::new(dir.path().join("db"))
    })?);
    let server = Arc::new(ApiServer::new(
        store.clone(),
        catalog_registry::standalone(),
    )?);
    server.bootstrap().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = apiserver::url_of(listener.local_addr()?);
    tokio::spawn(server.serve(listener, std::future::pending()));
    let client = Client::try_from(kube::Config::new(url.parse()?))?;

    let catalog = catalog()?;
    let broker = reference_broker::start(
        reference_broker::BrokerConfig {
            catalog: reference_broker::BrokerCatalog { catalog },
            ..reference_broker::BrokerConfig::demo()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let settings = controller::Settings {
        broker: controller::BrokerSettings {
            default_relist: Duration::from_secs(86_400),
            osb_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        },
        operations: controller::OperationSettings {
            osb_timeout: Duration::from_secs(60),
            poll_min: Duration::from_secs(1),
            poll_max: Duration::from_secs(60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            retry_duration: Duration::from_secs(7 * 24 * 3600),
        },
        workers: 5,
        metrics_listen: "127.0.0.1:0".parse()?,
        leader_election: None,
        identity: "bench".into(),
        announce: false,
    };
    tokio::spawn(controller::run(
        client.clone(),
        settings,
        std::future::pending(),
    ));

    let brokers: Api<catalog_api::ClusterServiceBroker> = Api::all(client.clone());
    let started = Instant::now();
    let broker_object: catalog_api::ClusterServiceBroker = serde_json::from_value(json!({
        "metadata": {"name": "big"}, "spec": {"url": broker.url(), "relistBehavior": "Manual"}}))?;
    brokers
        .create(&PostParams::default(), &broker_object)
        .await?;
    while synced_generation(&brokers).await? != 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_sync = started.elapsed();
    let (classes, plans) = (
        count(&client, "clusterserviceclasses").await?,
        count(&client, "clusterserviceplans").await?,
    );

    let before = store.current_revision().await?;
    let started = Instant::now();
    let generation = brokers
        .patch(
            "big",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"relistRequests": 1}})),
        )
        .await?
        .metadata
        .generation
        .unwrap_or(0);
    while synced_generation(&brokers).await? != generation {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let relist = started.elapsed();
    // The relist request and the broker's status are the two writes expected.
    let writes = store.current_revision().await? - before;

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| register → all {} objects present ({classes} classes, {plans} plans) | {:.1} s ({:.0} objects/s) |",
        classes + plans,
        first_sync.as_secs_f64(),
        (classes + plans) as f64 / first_sync.as_secs_f64()
    );
    println!(
        "| relist with no change: time to Ready | {:.0} ms |",
        relist.as_secs_f64() * 1e3
    );
    println!(
        "| relist with no change: store writes (the relist bump and the broker's status) | {writes} |"
    );
    broker.shutdown().await?;
    Ok(())
}
