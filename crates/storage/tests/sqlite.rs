//! The conformance suite and the SQLite backend's own promises: durability across reopen, one
//! process per file, refusing a corrupt or newer file untouched, scheduled compaction.

use std::sync::Arc;
use std::time::Duration;

use storage::sqlite::{CompactionPolicy, OpenError, SqliteOptions, SqliteStore};
use storage::{ListOptions, Store};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn options(dir: &tempfile::TempDir) -> SqliteOptions {
    SqliteOptions {
        compaction: None,
        ..SqliteOptions::new(dir.path().join("data").join("catalog.db"))
    }
}

storage::conformance_tests!(|| async {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(options(&dir))?;
    Ok::<_, Box<dyn std::error::Error + Send + Sync>>((Arc::new(store) as Arc<dyn Store>, dir))
});

#[tokio::test]
async fn acknowledged_writes_are_there_after_reopening() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let store = SqliteStore::open(options(&dir))?;
        let kv = store.create("/k", b"1".to_vec()).await?;
        store.update("/k", b"2".to_vec(), kv.mod_revision).await?;
        store.create("/j", b"3".to_vec()).await?;
    }
    // The writer thread lets go of the file once every handle is gone.
    let store = reopen(&dir).await?;
    assert_eq!(store.current_revision().await?, 3);
    assert_eq!(
        store.get("/k").await?.map(|kv| kv.value),
        Some(b"2".to_vec())
    );
    assert_eq!(
        store.create("/new", vec![]).await?.mod_revision,
        4,
        "revisions continue densely"
    );
    Ok(())
}

async fn reopen(dir: &tempfile::TempDir) -> Result<SqliteStore, OpenError> {
    for _ in 0..50 {
        match SqliteStore::open(options(dir)) {
            Err(OpenError::InUse { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => return other,
        }
    }
    SqliteStore::open(options(dir))
}

#[tokio::test]
async fn a_second_opener_is_refused_while_the_first_holds_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let first = SqliteStore::open(options(&dir))?;
    first.create("/k", b"v".to_vec()).await?;
    match SqliteStore::open(options(&dir)) {
        Err(error @ OpenError::InUse { .. }) => {
            assert!(
                error.to_string().contains("in use by another process"),
                "{error}"
            )
        }
        Ok(_) => panic!("a second store opened the same file"),
        Err(other) => panic!("expected InUse, got {other}"),
    }
    assert_eq!(
        first.get("/k").await?.map(|kv| kv.value),
        Some(b"v".to_vec())
    );
    Ok(())
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = options(&dir).path;
    std::fs::create_dir_all(path.parent().ok_or("no parent")?)?;
    let garbage = b"this is not sqlite, and it must stay exactly like this\n".repeat(200);
    std::fs::write(&path, &garbage)?;
    match SqliteStore::open(options(&dir)) {
        Err(error @ OpenError::Corrupt { .. }) => {
            assert!(
                error.to_string().contains("not a healthy SQLite database"),
                "{error}"
            )
        }
        Ok(_) => panic!("garbage opened as a store"),
        Err(other) => panic!("expected Corrupt, got {other}"),
    }
    assert_eq!(std::fs::read(&path)?, garbage);
    Ok(())
}

#[tokio::test]
async fn a_file_from_a_newer_version_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let store = SqliteStore::open(options(&dir))?;
        store.create("/k", vec![]).await?;
    }
    let path = options(&dir).path;
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "user_version", 99)?;
    drop(conn);
    let mut result = SqliteStore::open(options(&dir));
    for _ in 0..50 {
        if !matches!(result, Err(OpenError::InUse { .. })) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        result = SqliteStore::open(options(&dir));
    }
    assert!(
        matches!(result, Err(OpenError::TooNew { found: 99, .. })),
        "{:?}",
        result.err()
    );
    Ok(())
}

#[tokio::test]
async fn scheduled_compaction_keeps_the_newest_revisions_and_shrinks_history() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(SqliteOptions {
        compaction: Some(CompactionPolicy {
            interval: Duration::from_millis(200),
            min_retain: 10,
        }),
        ..options(&dir)
    })?;
    let mut kv = store.create("/k", vec![0]).await?;
    for i in 0..100u8 {
        kv = store.update("/k", vec![i], kv.mod_revision).await?;
    }
    // Two intervals: the first records the revision, the second compacts to it.
    let mut compacted = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        compacted = store.compact_revision().await?;
        if compacted > 0 {
            break;
        }
    }
    assert_eq!(
        compacted,
        kv.mod_revision - 10,
        "the newest 10 revisions are kept"
    );
    assert_eq!(store.get("/k").await?, Some(kv.clone()));
    let at = ListOptions {
        prefix: "/k".into(),
        at_revision: Some(compacted - 1),
        ..Default::default()
    };
    assert!(store.list(&at).await.is_err());
    assert_eq!(store.integrity_check().await?, "ok");
    Ok(())
}
