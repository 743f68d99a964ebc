//! The SQLite store's speed and size, next to raw SQLite on the same disk. Run with:
//!
//!     cargo bench -p storage --bench storage
//!
//! Results go in docs/benchmarks.md. Not a test: nothing here asserts a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use storage::sqlite::{SqliteOptions, SqliteStore};
use storage::{ListOptions, Store};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn open(dir: &tempfile::TempDir, name: &str) -> Result<Arc<SqliteStore>> {
    Ok(Arc::new(SqliteStore::open(SqliteOptions {
        compaction: None,
        ..SqliteOptions::new(dir.path().join(name))
    })?))
}

/// A value shaped like a small Kubernetes object (~1 KiB of JSON).
fn object(i: usize) -> Vec<u8> {
    let mut value = format!(
        r#"{{"apiVersion":"servicecatalog.k8s.io/v1beta1","kind":"ServiceInstance","metadata":{{"name":"instance-{i}","namespace":"default","uid":"{i:032x}"}},"spec":{{"clusterServiceClassExternalName":"mariadb","clusterServicePlanExternalName":"10-1-26","parameters":{{"storageGB":{i}}}}},"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"ProvisionedSuccessfully"}}]}}}}"#
    );
    while value.len() < 1024 {
        value.push(' ');
    }
    value.into_bytes()
}

async fn creates(
    store: &Arc<SqliteStore>,
    prefix: &str,
    total: usize,
    writers: usize,
) -> Result<Duration> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(writers) {
                store.create(&format!("{prefix}{i:07}"), object(i)).await?;
            }
            Ok::<_, storage::StorageError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

fn raw_sqlite(dir: &tempfile::TempDir) -> Result<(f64, f64)> {
    let conn = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, k BLOB, v BLOB)",
        [],
    )?;
    let n = 2000;
    let started = Instant::now();
    for i in 0..n {
        conn.execute(
            "INSERT INTO t (k, v) VALUES (?1, ?2)",
            rusqlite::params![format!("k{i}"), object(i)],
        )?;
    }
    let one_at_a_time = n as f64 / started.elapsed().as_secs_f64();
    let n = 100_000;
    let started = Instant::now();
    for chunk in 0..(n / 1000) {
        let tx = conn.unchecked_transaction()?;
        for i in 0..1000 {
            let i = chunk * 1000 + i;
            tx.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                rusqlite::params![format!("b{i}"), object(i)],
            )?;
        }
        tx.commit()?;
    }
    Ok((one_at_a_time, n as f64 / started.elapsed().as_secs_f64()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (raw_single, raw_batched) = raw_sqlite(&dir)?;
    println!("| measurement | result |");
    println!("|---|---|");
    println!("| raw SQLite, one fsynced INSERT per transaction | {raw_single:.0} rows/s |");
    println!("| raw SQLite, 1000 INSERTs per transaction | {raw_batched:.0} rows/s |");

    let store = open(&dir, "single.db")?;
    let n = 2000;
    let elapsed = creates(&store, "/single/", n, 1).await?;
    println!(
        "| store: acknowledged creates, 1 writer | {:.0} creates/s |",
        n as f64 / elapsed.as_secs_f64()
    );

    let store = open(&dir, "group.db")?;
    let n = 100_000;
    let elapsed = creates(&store, "/group/", n, 64).await?;
    println!(
        "| store: acknowledged creates, 64 writers (group commit) | {:.0} creates/s ({:.1} writes per commit) |",
        n as f64 / elapsed.as_secs_f64(),
        {
            let (commits, writes) = store.commit_stats();
            writes as f64 / commits.max(1) as f64
        }
    );

    let store = open(&dir, "list.db")?;
    creates(&store, "/list/", 10_000, 64).await?;
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        let page = store
            .list(&ListOptions {
                prefix: "/list/".into(),
                ..Default::default()
            })
            .await?;
        assert_eq!(page.items.len(), 10_000);
    }
    println!(
        "| store: list 10,000 objects (~1 KiB each) | {:.1} ms |",
        started.elapsed().as_secs_f64() * 1e3 / rounds as f64
    );
    let started = Instant::now();
    for _ in 0..rounds {
        store
            .list(&ListOptions {
                prefix: "/list/".into(),
                limit: Some(500),
                ..Default::default()
            })
            .await?;
    }
    println!(
        "| store: first page of 500 of those | {:.2} ms |",
        started.elapsed().as_secs_f64() * 1e3 / rounds as f64
    );

    // Fan-out: 100 watchers, 64 writers, until every watcher has every event.
    let store = open(&dir, "watch.db")?;
    let events = 5_000;
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let mut watch = store.watch("/watch/", 0).await?;
        watchers.push(tokio::spawn(async move {
            let mut n = 0;
            while n < events {
                match watch.next().await {
                    Some(Ok(_)) => n += 1,
                    other => return Err(format!("watch ended early: {other:?}")),
                }
            }
            Ok(())
        }));
    }
    let started = Instant::now();
    creates(&store, "/watch/", events, 64).await?;
    for watcher in watchers {
        watcher.await?.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    println!(
        "| store: watch fan-out, {events} writes to 100 watchers | {:.0} ms; {:.0} events delivered/s |",
        elapsed.as_secs_f64() * 1e3,
        (events * 100) as f64 / elapsed.as_secs_f64()
    );

    // Size on disk: 10,000 objects after compaction and a WAL checkpoint.
    let store = open(&dir, "size.db")?;
    creates(&store, "/size/", 10_000, 64).await?;
    store.compact(store.current_revision().await?).await?;
    let files = ["size.db", "size.db-wal", "size.db-shm"];
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "| store: bytes on disk per ~1 KiB object (10,000 objects) | {} |",
        bytes / 10_000
    );
    Ok(())
}
