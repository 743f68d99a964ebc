//! The API server over real HTTP on loopback, side by side on its two stores in one run: the
//! embedded SQLite store (fsync on), then a real etcd (Debian `etcd-server`, started here; left
//! out with a note when it is not installed). Run:
//!
//!     cargo bench -p apiserver --bench api
//!
//! Results go in docs/benchmarks.md. Not a test: nothing here asserts a time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apiserver::{ApiServer, Registry};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use storage::Store;
use storage::sqlite::{SqliteOptions, SqliteStore};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CM: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"app": "bench"}}, "data": {"payload": "x".repeat(512)}})
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len().max(1) - 1) as f64 * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Runs `op(i)` over `concurrency` tasks; returns (ops/s, sorted latencies).
async fn measure<F, Fut>(count: usize, concurrency: usize, op: F) -> Result<(f64, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
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
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    latencies.sort();
    Ok((count as f64 / started.elapsed().as_secs_f64(), latencies))
}

/// Rows of one store's run: (operation, "ops/s | p50 ms | p99 ms").
type Rows = Vec<(String, String)>;

fn row(rows: &mut Rows, name: &str, ops: f64, latencies: &[Duration]) {
    rows.push((
        name.to_string(),
        format!(
            "{ops:.0} | {:.2} | {:.2}",
            percentile(latencies, 0.5),
            percentile(latencies, 0.99)
        ),
    ));
}

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

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteOptions {
        compaction: None,
        ..SqliteOptions::new(dir.path().join("db"))
    })?);
    let sqlite_rows = suite(sqlite, true).await?;
    let etcd_rows = match test_support::EtcdProcess::start().await {
        Ok(etcd) => {
            let store = storage_etcd::EtcdStore::connect(storage_etcd::EtcdOptions::new(
                vec![etcd.endpoint.clone()],
                "/bench/",
            ))
            .await?;
            let rows = suite(Arc::new(store), false).await?;
            drop(etcd);
            Some(rows)
        }
        Err(error) => {
            eprintln!("etcd is not available ({error}); SQLite only");
            None
        }
    };
    println!("\n| operation | SQLite ops/s | p50 ms | p99 ms | etcd ops/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for (i, (name, cells)) in sqlite_rows.iter().enumerate() {
        let etcd = etcd_rows
            .as_ref()
            .and_then(|rows| rows.get(i))
            .map_or("| |".to_string(), |(_, cells)| cells.clone());
        println!("| {name} | {cells} | {etcd} |");
    }
    Ok(())
}

/// One store's run; `fill` goes on to 100,000 objects for the memory figure.
async fn suite(store: Arc<dyn Store>, fill: bool) -> Result<Rows> {
    let mut rows = Rows::new();
    let server = Arc::new(ApiServer::new(store, Registry::standalone_core())?);
    server.bootstrap().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = apiserver::url_of(listener.local_addr()?);
    tokio::spawn(server.serve(listener, std::future::pending()));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;

    for (concurrency, count) in [(1, 2_000), (64, 8_000)] {
        let (http, url) = (http.clone(), url.clone());
        let (ops, latencies) = measure(count, concurrency, move |i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let response = http
                    .post(format!("{url}{CM}"))
                    .json(&configmap(&format!("c{concurrency}-{i}")))
                    .send()
                    .await?;
                if response.status() != 201 {
                    return Err(format!("create: {}", response.status()).into());
                }
                Ok(())
            }
        })
        .await?;
        row(
            &mut rows,
            &format!("create, {concurrency} concurrent"),
            ops,
            &latencies,
        );
    }
    let rss_10k = rss_mib();
    {
        let (http, url) = (http.clone(), url.clone());
        let (ops, latencies) = measure(5_000, 1, move |i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let response = http
                    .get(format!("{url}{CM}/c1-{}", i % 2000))
                    .send()
                    .await?;
                if response.status() != 200 {
                    return Err(format!("get: {}", response.status()).into());
                }
                Ok(())
            }
        })
        .await?;
        row(&mut rows, "get, 1 client", ops, &latencies);
    }
    for (concurrency, count) in [(1, 2_000), (64, 8_000)] {
        let (http, url) = (http.clone(), url.clone());
        let (ops, latencies) = measure(count, concurrency, move |i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                // A merge patch retries server-side on conflict, like a controller's status update.
                let response = http
                    .patch(format!("{url}{CM}/c64-{i}"))
                    .header("content-type", "application/merge-patch+json")
                    .body(json!({"data": {"n": i.to_string()}}).to_string())
                    .send()
                    .await?;
                if response.status() != 200 {
                    return Err(format!("patch: {}", response.status()).into());
                }
                Ok(())
            }
        })
        .await?;
        row(
            &mut rows,
            &format!("update (merge patch), {concurrency} concurrent"),
            ops,
            &latencies,
        );
    }

    // 22,000 objects exist; list a 10,000-object namespace.
    http.post(format!("{url}/api/v1/namespaces"))
        .json(&json!({"metadata": {"name": "list"}}))
        .send()
        .await?;
    let (http2, url2) = (http.clone(), url.clone());
    measure(10_000, 64, move |i| {
        let (http, url) = (http2.clone(), url2.clone());
        async move {
            http.post(format!("{url}/api/v1/namespaces/list/configmaps"))
                .json(&configmap(&format!("l{i}")))
                .send()
                .await?;
            Ok(())
        }
    })
    .await?;
    let started = Instant::now();
    for _ in 0..5 {
        let list: Value = http
            .get(format!("{url}/api/v1/namespaces/list/configmaps"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(list["items"].as_array().map(Vec::len), Some(10_000));
    }
    rows.push((
        "list 10,000 objects (~0.6 KiB each)".into(),
        format!(
            "{:.1} per s | {:.0} ms each |",
            5.0 / started.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64() * 1e3 / 5.0
        ),
    ));

    // Watch fan-out: 100 watchers, event latency from the write's acknowledgement.
    let mut watchers = Vec::new();
    let events = 500;
    for _ in 0..100 {
        let response = http
            .get(format!("{url}{CM}?watch=true&labelSelector=app%3Dwatch"))
            .send()
            .await?;
        watchers.push(tokio::spawn(async move {
            let mut stream = response.bytes_stream();
            let mut buffer = Vec::new();
            let mut latencies = Vec::new();
            while latencies.len() < events {
                let Some(chunk) = stream.next().await else {
                    break;
                };
                let Ok(chunk) = chunk else { break };
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    if let Some(sent) = event
                        .pointer("/object/data/sent")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<u128>().ok())
                    {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_nanos())
                            .unwrap_or_default();
                        latencies.push(Duration::from_nanos(now.saturating_sub(sent) as u64));
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..events {
        let sent = SystemTime::now()
            .duration_since(UNIX_EPOCH)?
            .as_nanos()
            .to_string();
        let body = json!({"metadata": {"name": format!("w{i}"), "labels": {"app": "watch"}}, "data": {"sent": sent}});
        http.post(format!("{url}{CM}")).json(&body).send().await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut all = Vec::new();
    for watcher in watchers {
        all.extend(watcher.await?);
    }
    all.sort();
    rows.push((
        format!("watch fan-out: {events} writes × 100 watchers, delivery latency"),
        format!(
            "{} events | {:.2} | {:.2}",
            all.len(),
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        ),
    ));
    if !fill {
        return Ok(rows);
    }
    // Fill up to 100,000 objects for the memory figure.
    let existing = 10_000 + 10_000 + events;
    let (http2, url2) = (http.clone(), url.clone());
    http.post(format!("{url}/api/v1/namespaces"))
        .json(&json!({"metadata": {"name": "bulk"}}))
        .send()
        .await?;
    measure(100_000 - existing, 64, move |i| {
        let (http, url) = (http2.clone(), url2.clone());
        async move {
            http.post(format!("{url}/api/v1/namespaces/bulk/configmaps"))
                .json(&configmap(&format!("b{i}")))
                .send()
                .await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "RSS of the benchmark process on SQLite (the server with its watch cache, and the client): {rss_10k:.0} MiB with 10,000 objects, {:.0} MiB with 100,000",
        rss_mib()
    );
    Ok(rows)
}
