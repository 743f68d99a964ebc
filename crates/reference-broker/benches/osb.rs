//! Throughput and latency of the OSB client against the reference broker over real HTTP on
//! loopback, and the process's peak memory. Run with:
//!
//!     cargo bench -p reference-broker --bench osb
//!
//! Results go in docs/benchmarks.md. Not a test: nothing here asserts a time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use osb_client::{BindRequest, CallOptions, Client, ClientConfig, ProvisionRequest};
use reference_broker::{BrokerConfig, RunningBroker};
use serde_json::json;

const UPS_SERVICE: &str = "4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468";
const UPS_PLAN: &str = "86064792-7ea2-467b-af93-ac9694d96d52";

struct Stats {
    name: String,
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn print(mut self) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies.get(i).copied().unwrap_or_default()
        };
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            self.name,
            self.count,
            self.count as f64 / self.elapsed.as_secs_f64(),
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            pct(1.0).as_secs_f64() * 1e3,
        );
    }
}

async fn broker(state_file: Option<std::path::PathBuf>) -> anyhow::Result<(RunningBroker, Client)> {
    let mut config = BrokerConfig::demo();
    config.state_file = state_file;
    let broker = reference_broker::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let client = Client::new(ClientConfig::new(broker.url())?)?;
    Ok((broker, client))
}

/// Runs `op(i)` for i in 0..count over `concurrency` tasks; records each call's latency.
async fn measure<F, Fut>(
    name: &str,
    count: usize,
    concurrency: usize,
    op: F,
) -> anyhow::Result<Stats>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in (worker..count).step_by(concurrency) {
                let t = Instant::now();
                op(i).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Stats {
        name: name.to_owned(),
        count,
        elapsed: started.elapsed(),
        latencies,
    })
}

/// provision + bind + unbind + deprovision of the synchronous user-provided plan.
async fn lifecycle(client: Client, i: usize) -> anyhow::Result<()> {
    let (instance, binding) = (format!("i-{i}"), format!("b-{i}"));
    let options = CallOptions::default();
    let provision = ProvisionRequest {
        service_id: UPS_SERVICE.into(),
        plan_id: UPS_PLAN.into(),
        parameters: Some(json!({"credentials": {"user": "u", "password": "p"}})),
        ..Default::default()
    };
    client.provision(&instance, &provision, &options).await?;
    let bind = BindRequest {
        service_id: UPS_SERVICE.into(),
        plan_id: UPS_PLAN.into(),
        ..Default::default()
    };
    client.bind(&instance, &binding, &bind, &options).await?;
    client
        .unbind(&instance, &binding, UPS_SERVICE, UPS_PLAN, &options)
        .await?;
    client
        .deprovision(&instance, UPS_SERVICE, UPS_PLAN, &options)
        .await?;
    Ok(())
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("| benchmark | operations | ops/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");

    let (memory_broker, client) = broker(None).await?;
    for concurrency in [1, 16] {
        let c = client.clone();
        measure(
            &format!("GET catalog, {concurrency} concurrent"),
            5_000,
            concurrency,
            move |_| {
                let c = c.clone();
                async move { c.catalog().await.map(|_| ()).map_err(Into::into) }
            },
        )
        .await?
        .print();
    }
    for concurrency in [1, 16] {
        let c = client.clone();
        measure(
            &format!("lifecycle (4 calls), in-memory state, {concurrency} concurrent"),
            2_000,
            concurrency,
            move |i| lifecycle(c.clone(), i + concurrency * 100_000),
        )
        .await?
        .print();
    }
    memory_broker.shutdown().await?;

    let dir = tempfile::tempdir()?;
    let (file_broker, client) = broker(Some(dir.path().join("state.db"))).await?;
    for concurrency in [1, 16] {
        let c = client.clone();
        measure(
            &format!("lifecycle (4 calls), SQLite state (fsync), {concurrency} concurrent"),
            500,
            concurrency,
            move |i| lifecycle(c.clone(), i + concurrency * 100_000),
        )
        .await?
        .print();
    }
    file_broker.shutdown().await?;

    if let Some(kib) = peak_rss_kib() {
        println!(
            "\npeak RSS of the benchmark process (broker + client): {} MiB",
            kib / 1024
        );
    }
    Ok(())
}
