//! 1,000 instances, each with one binding, from creation until every binding is Ready, against
//! an instant broker (the reference broker's synchronous plan). In one process: the API server
//! on SQLite (fsync on), the reference broker and the controller manager. Run:
//!
//!     cargo bench -p controller --bench instances
//!
//! Results go in docs/benchmarks.md. Not a test: nothing here asserts a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::ApiServer;
use catalog_api::{ServiceBinding, ServiceInstance};
use futures_util::StreamExt as _;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use storage::sqlite::{SqliteOptions, SqliteStore};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const COUNT: usize = 1_000;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn ready(conditions: &[catalog_api::Condition]) -> bool {
    catalog_api::condition(conditions, "Ready").is_some_and(|c| c.status == "True")
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(SqliteOptions {
        compaction: None,
        ..SqliteOptions::new(dir.path().join("db"))
    })?);
    let server = Arc::new(ApiServer::new(store, catalog_registry::standalone())?);
    server.bootstrap().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = apiserver::url_of(listener.local_addr()?);
    tokio::spawn(server.serve(listener, std::future::pending()));
    let client = Client::try_from(kube::Config::new(url.parse()?))?;
    let broker = reference_broker::start(
        reference_broker::BrokerConfig::demo(),
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let settings = controller::Settings {
        broker: controller::BrokerSettings {
            default_relist: Duration::from_secs(86_400),
            osb_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        },
        operations: controller::OperationSettings {
            osb_timeout: Duration::from_secs(60),
            poll_min: Duration::from_millis(200),
            poll_max: Duration::from_secs(5),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            retry_duration: Duration::from_secs(7 * 24 * 3600),
        },
        workers: 16,
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
    let registration: catalog_api::ClusterServiceBroker = serde_json::from_value(
        json!({"metadata": {"name": "ref"}, "spec": {"url": broker.url()}}),
    )?;
    brokers
        .create(&PostParams::default(), &registration)
        .await?;
    let plans: Api<catalog_api::ClusterServicePlan> = Api::all(client.clone());
    while plans.list(&ListParams::default()).await?.items.len() < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_before = rss_mib();

    let instances: Api<ServiceInstance> = Api::namespaced(client.clone(), "default");
    let bindings: Api<ServiceBinding> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    futures_util::stream::iter(0..COUNT)
        .map(|i| {
            let (instances, bindings) = (instances.clone(), bindings.clone());
            async move {
                let instance: ServiceInstance = serde_json::from_value(json!({
                    "metadata": {"name": format!("db-{i}")},
                    "spec": {"clusterServiceClassExternalName": "mariadb",
                             "clusterServicePlanExternalName": "10-1-26",
                             "parameters": {"storageGB": 10}}}))?;
                instances.create(&PostParams::default(), &instance).await?;
                let binding: ServiceBinding = serde_json::from_value(json!({
                    "metadata": {"name": format!("db-{i}")},
                    "spec": {"instanceRef": {"name": format!("db-{i}")}}}))?;
                bindings.create(&PostParams::default(), &binding).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let created = started.elapsed();
    let mut peak = rss_mib();
    let (instances_ready, bindings_ready) = loop {
        let ready_instances = instances
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|i| ready(&i.status.clone().unwrap_or_default().conditions))
            .count();
        let ready_bindings = bindings
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|b| ready(&b.status.clone().unwrap_or_default().conditions))
            .count();
        peak = peak.max(rss_mib());
        eprintln!(
            "{:.1}s: {ready_instances} instances, {ready_bindings} bindings ready",
            started.elapsed().as_secs_f64()
        );
        if ready_bindings == COUNT {
            break (ready_instances, ready_bindings);
        }
        // Checking lists 2,000 objects: not so often that the check is the load.
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let all_ready = started.elapsed();
    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| create {COUNT} instances + {COUNT} bindings (32 clients) | {:.1} s |",
        created.as_secs_f64()
    );
    println!(
        "| creation → all {instances_ready} instances and {bindings_ready} bindings Ready | {:.1} s ({:.0} instance+binding pairs/s) |",
        all_ready.as_secs_f64(),
        COUNT as f64 / all_ready.as_secs_f64()
    );
    println!(
        "| RSS of the whole process (server, broker, controller): before → peak | {rss_before:.0} → {peak:.0} MiB |"
    );
    broker.shutdown().await?;
    Ok(())
}
