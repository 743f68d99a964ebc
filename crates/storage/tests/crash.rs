//! Kill -9 at random moments: a child process writes as fast as it can and is SIGKILLed, many
//! times. After each kill every acknowledged write is present with its revision, revisions are
//! dense and monotonic, and SQLite's integrity check passes.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use storage::sqlite::{OpenError, SqliteOptions, SqliteStore};
use storage::{ListOptions, Store};
use tokio::io::{AsyncBufReadExt as _, BufReader};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crash.db");
    let mut acknowledged: HashMap<String, i64> = HashMap::new();
    let mut seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let runs = 12;
    for run in 0..runs {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let lifetime = Duration::from_millis(100 + (seed >> 33) % 400);
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_storage-crash-writer"))
            .arg(&path)
            .arg(run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // Wait until it has opened the store, then let it write for a random while.
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??;
        assert!(
            first.is_some_and(|l| l.starts_with("listening on")),
            "run {run}: writer did not start"
        );
        let reader = tokio::spawn(async move {
            let mut acks = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                acks.push(line);
            }
            acks
        });
        tokio::time::sleep(lifetime).await;
        child.start_kill()?;
        child.wait().await?;
        for line in reader.await? {
            let mut parts = line.split(' ');
            if let (Some("ack"), Some(key), Some(revision)) =
                (parts.next(), parts.next(), parts.next())
            {
                acknowledged.insert(key.to_owned(), revision.parse()?);
            }
        }

        let store = SqliteStore::open(SqliteOptions {
            compaction: None,
            ..SqliteOptions::new(&path)
        })
        .map_err(|e: OpenError| format!("run {run}: reopening after SIGKILL: {e}"))?;
        assert_eq!(store.integrity_check().await?, "ok", "run {run}");
        let all = store
            .list(&ListOptions {
                prefix: "/crash/".into(),
                ..Default::default()
            })
            .await?;
        let stored: HashMap<&str, i64> = all
            .items
            .iter()
            .map(|kv| (kv.key.as_str(), kv.mod_revision))
            .collect();
        for (key, revision) in &acknowledged {
            assert_eq!(
                stored.get(key.as_str()),
                Some(revision),
                "run {run}: acknowledged {key} lost"
            );
        }
        // Only creates happened, so the revisions present must be exactly 1..=current.
        let mut revisions: Vec<i64> = stored.values().copied().collect();
        revisions.sort_unstable();
        let current = store.current_revision().await?;
        assert_eq!(
            revisions,
            (1..=current).collect::<Vec<_>>(),
            "run {run}: revisions not dense"
        );
    }
    assert!(
        acknowledged.len() > 100,
        "the writer barely wrote: {}",
        acknowledged.len()
    );
    Ok(())
}

/// Runs the writer with its file size limited (as a full disk would), SIGXFSZ ignored so that
/// writes fail with an error instead of killing the process.
fn writer_with_file_limit(path: &std::path::Path, blocks: u32) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_storage-crash-writer"))
        .arg(path)
        .arg("full")
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_clearly_and_loses_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("full.db");
    let mut child = writer_with_file_limit(&path, 512)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut acknowledged: HashMap<String, i64> = HashMap::new();
    let failure = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            let mut parts = line.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("ack"), Some(key), Some(revision)) => {
                    acknowledged.insert(key.to_owned(), revision.parse()?);
                }
                (Some("fail"), Some(first), rest) => {
                    return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(format!(
                        "{first} {}",
                        rest.unwrap_or_default()
                    ));
                }
                _ => {}
            }
        }
        Err("the writer ended without a failure".into())
    })
    .await??;
    child.start_kill()?;
    child.wait().await?;
    assert!(failure.contains("commit failed"), "{failure}");
    assert!(
        !acknowledged.is_empty(),
        "nothing was written before the disk filled"
    );

    // With room again, everything acknowledged is there and the file is sound.
    let store = SqliteStore::open(SqliteOptions {
        compaction: None,
        ..SqliteOptions::new(&path)
    })?;
    assert_eq!(store.integrity_check().await?, "ok");
    for (key, revision) in &acknowledged {
        assert_eq!(
            store.get(key).await?.map(|kv| kv.mod_revision),
            Some(*revision),
            "{key} lost"
        );
    }
    store.create("/after", b"room again".to_vec()).await?;
    drop(store);

    // A store that cannot even be initialised says so at start.
    let output = writer_with_file_limit(&dir.path().join("never.db"), 0)
        .output()
        .await?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("never.db") && stderr.contains("disk full"),
        "{stderr}"
    );
    Ok(())
}
