//! What the catalog kinds' strategies cost over the generic server: creates of ServiceInstances
//! (schema check, typed validation, admission with the default-plan lookup) next to ConfigMaps,
//! status writes, and a field-selected list of plans. Real HTTP on loopback, SQLite with fsync.
//! Run:
//!
//!     cargo bench -p catalog-registry --bench catalog
//!
//! Results go in docs/benchmarks.md. Not a test: nothing here asserts a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::ApiServer;
use serde_json::{Value, json};
use storage::sqlite::{SqliteOptions, SqliteStore};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const GROUP: &str = "/apis/servicecatalog.k8s.io/v1beta1";

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len().max(1) - 1) as f64 * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Sends `count` requests made by `request(i)` from `concurrency` tasks, each expecting
/// `expected`; prints a table row.
async fn run<F>(
    name: &str,
    count: usize,
    concurrency: usize,
    expected: u16,
    request: F,
) -> Result<()>
where
    F: Fn(usize) -> reqwest::RequestBuilder + Clone + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in (worker..count).step_by(concurrency) {
                let t = Instant::now();
                let response = request(i).send().await?;
                if response.status().as_u16() != expected {
                    let status = response.status();
                    return Err(format!("{status}: {}", response.text().await?).into());
                }
                latencies.push(t.elapsed());
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    latencies.sort();
    let ops = count as f64 / started.elapsed().as_secs_f64();
    println!(
        "| {name} | {ops:.0} | {:.2} | {:.2} |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok(())
}

fn class(i: usize) -> Value {
    json!({"metadata": {"name": format!("class-{i}")}, "spec": {"clusterServiceBrokerName": "b",
        "externalName": format!("svc-{i}"), "externalID": format!("class-{i}"), "description": "d", "bindable": true}})
}

fn plan(class: usize, i: usize) -> Value {
    json!({"metadata": {"name": format!("plan-{class}-{i}")}, "spec": {"clusterServiceBrokerName": "b",
        "externalName": format!("p{i}"), "externalID": format!("plan-{class}-{i}"), "description": "d",
        "free": true, "clusterServiceClassRef": {"name": format!("class-{class}")},
        "instanceCreateParameterSchema": {"type": "object", "properties": {"size": {"type": "integer"}}}}})
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
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;
    // A catalog the size of a busy broker: 100 classes of 5 plans; class 0 has a single plan.
    for c in 0..100 {
        http.post(format!("{url}{GROUP}/clusterserviceclasses"))
            .json(&class(c))
            .send()
            .await?
            .error_for_status()?;
        for p in 0..if c == 0 { 1 } else { 5 } {
            http.post(format!("{url}{GROUP}/clusterserviceplans"))
                .json(&plan(c, p))
                .send()
                .await?
                .error_for_status()?;
        }
    }

    println!("| operation | ops/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for concurrency in [1, 64] {
        let (h, u) = (http.clone(), url.clone());
        run(&format!("ConfigMap create (baseline), {concurrency} concurrent"), 2_000, concurrency, 201, move |i| {
            h.post(format!("{u}/api/v1/namespaces/default/configmaps"))
                .json(&json!({"metadata": {"name": format!("cm-{concurrency}-{i}")}, "data": {"k": "v"}}))
        })
        .await?;
        let (h, u) = (http.clone(), url.clone());
        run(&format!("ServiceInstance create, plan named, {concurrency} concurrent"), 2_000, concurrency, 201, move |i| {
            h.post(format!("{u}{GROUP}/namespaces/default/serviceinstances")).json(&json!({
                "metadata": {"name": format!("si-{concurrency}-{i}")},
                "spec": {"clusterServiceClassExternalName": "svc-1", "clusterServicePlanExternalName": "p1",
                         "parameters": {"size": 3}}}))
        })
        .await?;
        let (h, u) = (http.clone(), url.clone());
        run(&format!("ServiceInstance create, default plan looked up (600 classes+plans), {concurrency} concurrent"), 500, concurrency, 201, move |i| {
            h.post(format!("{u}{GROUP}/namespaces/default/serviceinstances")).json(&json!({
                "metadata": {"name": format!("sd-{concurrency}-{i}")},
                "spec": {"clusterServiceClassExternalName": "svc-0"}}))
        })
        .await?;
        let (h, u) = (http.clone(), url.clone());
        run(&format!("ServiceInstance status merge patch, {concurrency} concurrent"), 2_000, concurrency, 200, move |i| {
            h.patch(format!("{u}{GROUP}/namespaces/default/serviceinstances/si-{concurrency}-{i}/status"))
                .header("content-type", "application/merge-patch+json")
                .json(&json!({"status": {"observedGeneration": 1, "provisionStatus": "Provisioned",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-25T10:00:00Z",
                                    "reason": "ProvisionedSuccessfully", "message": "The instance was provisioned successfully"}]}}))
        })
        .await?;
    }
    let (h, u) = (http.clone(), url.clone());
    run(
        "list plans of one class by field selector (of 496)",
        500,
        1,
        200,
        move |i| {
            h.get(format!("{u}{GROUP}/clusterserviceplans")).query(&[(
                "fieldSelector",
                format!("spec.clusterServiceClassRef.name=class-{}", i % 100),
            )])
        },
    )
    .await?;
    Ok(())
}
