//! Test helper for the crash tests: writes to a store as fast as it can and prints
//! `ack <key> <revision>` for every write the store acknowledged and `fail <error>` for every
//! write it refused, until it is killed.
//!
//!     storage-crash-writer <database file> <run id>

use std::io::Write as _;
use std::sync::Arc;

use storage::Store;
use storage::sqlite::{SqliteOptions, SqliteStore};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(run)) = (args.next(), args.next()) else {
        return Err("usage: storage-crash-writer <database file> <run id>".into());
    };
    let store = match SqliteStore::open(SqliteOptions {
        compaction: None,
        ..SqliteOptions::new(&path)
    }) {
        Ok(store) => Arc::new(store),
        Err(error) => {
            eprintln!("cannot open the store: {error}");
            std::process::exit(1);
        }
    };
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<String>();
    for writer in 0..16 {
        let store = store.clone();
        let acks = acks.clone();
        let run = run.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let key = format!("/crash/{run}/{writer}/{i}");
                match store.create(&key, vec![7; 64]).await {
                    Ok(kv) => {
                        if acks.send(format!("ack {key} {}", kv.mod_revision)).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        if acks.send(format!("fail {error}")).is_err() {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    drop(acks);
    println!("listening on {path}");
    let mut stdout = std::io::stdout().lock();
    while let Some(line) = acked.recv().await {
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
    }
    Ok(())
}
