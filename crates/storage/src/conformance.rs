//! The behaviour every [`Store`] backend must show, written once.
//!
//! A backend's test file instantiates it with [`conformance_tests!`](crate::conformance_tests),
//! giving a factory that makes a fresh, empty store; each check becomes its own test. The checks
//! panic (assert) on a violation, as tests do.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::{EventKind, KeyValue, ListOptions, Revision, StorageError, Store, Watch};

pub type Outcome = Result<(), Box<dyn std::error::Error + Send + Sync>>;
pub type SharedStore = Arc<dyn Store>;

/// Instantiates every conformance check as a `#[tokio::test]` for the backend `factory` makes.
///
/// `factory` is an async closure returning `Result<(Arc<dyn Store>, Guard), _>`; the guard (a
/// temporary directory, a server process, ...) lives as long as the test.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            writes_get_dense_increasing_revisions,
            create_refuses_an_existing_key,
            conditional_writes_refuse_a_stale_revision,
            racing_writers_on_one_key_have_one_winner_per_revision,
            lists_page_through_one_snapshot_under_concurrent_writes,
            old_revisions_read_old_values_until_compacted,
            watch_replays_history_then_follows_live_without_gap_or_duplicate,
            watch_filters_by_prefix_and_carries_previous_values,
            compaction_forgets_history_but_keeps_the_present,
            a_slow_watcher_is_closed_without_stalling_writers,
            watch_progress_never_runs_ahead_of_undelivered_events,
            large_values_round_trip,
            many_keys_are_counted_and_listed);
    };
    (@each $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() -> $crate::conformance::Outcome {
                let (store, _guard) = ($factory)().await?;
                $crate::conformance::$check(store).await
            }
        )*
    };
}

async fn next_event(
    watch: &mut Watch,
) -> Result<crate::Event, Box<dyn std::error::Error + Send + Sync>> {
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        Ok(Some(Err(error))) => Err(error.into()),
        Ok(None) => Err("the watch ended".into()),
        Err(_) => Err("no event within 10 s".into()),
    }
}

pub async fn writes_get_dense_increasing_revisions(store: SharedStore) -> Outcome {
    assert_eq!(store.current_revision().await?, 0);
    let a = store.create("/a", b"1".to_vec()).await?;
    assert_eq!((a.create_revision, a.mod_revision), (1, 1));
    let b = store.create("/b", b"2".to_vec()).await?;
    assert_eq!(b.mod_revision, 2);
    let a2 = store.update("/a", b"3".to_vec(), a.mod_revision).await?;
    assert_eq!((a2.create_revision, a2.mod_revision), (1, 3));
    let deleted = store.delete("/b", b.mod_revision).await?;
    assert_eq!(
        (deleted.revision, deleted.prev.value.as_slice()),
        (4, &b"2"[..])
    );
    assert_eq!(store.current_revision().await?, 4);
    assert_eq!(
        store.get("/a").await?.map(|kv| kv.value),
        Some(b"3".to_vec())
    );
    assert_eq!(store.get("/b").await?, None);
    // A key created again starts a new life.
    let b2 = store.create("/b", b"5".to_vec()).await?;
    assert_eq!((b2.create_revision, b2.mod_revision), (5, 5));
    Ok(())
}

pub async fn create_refuses_an_existing_key(store: SharedStore) -> Outcome {
    let first = store.create("/k", b"v".to_vec()).await?;
    match store.create("/k", b"w".to_vec()).await {
        Err(StorageError::KeyExists { key, current }) => {
            assert_eq!(key, "/k");
            assert_eq!(*current, first);
        }
        other => panic!("expected KeyExists, got {other:?}"),
    }
    assert_eq!(
        store.current_revision().await?,
        1,
        "a refused write takes no revision"
    );
    Ok(())
}

pub async fn conditional_writes_refuse_a_stale_revision(store: SharedStore) -> Outcome {
    let v1 = store.create("/k", b"1".to_vec()).await?;
    let v2 = store.update("/k", b"2".to_vec(), v1.mod_revision).await?;
    match store.update("/k", b"x".to_vec(), v1.mod_revision).await {
        Err(StorageError::RevisionMismatch {
            expected, current, ..
        }) => {
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(current.map(|c| *c), Some(v2.clone()));
        }
        other => panic!("expected RevisionMismatch, got {other:?}"),
    }
    assert!(matches!(
        store.delete("/k", v1.mod_revision).await,
        Err(StorageError::RevisionMismatch { .. })
    ));
    assert!(matches!(
        store.update("/missing", b"x".to_vec(), 1).await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("/missing", 1).await,
        Err(StorageError::NotFound { .. })
    ));
    assert_eq!(store.get("/k").await?, Some(v2));
    assert_eq!(store.current_revision().await?, 2);
    Ok(())
}

pub async fn racing_writers_on_one_key_have_one_winner_per_revision(store: SharedStore) -> Outcome {
    let start = store.create("/counter", b"0".to_vec()).await?;
    let writers = 16;
    let attempts = 40;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins: Vec<(Revision, Revision)> = Vec::new();
            for _ in 0..attempts {
                let Some(current) = store.get("/counter").await? else {
                    return Err::<_, StorageError>(StorageError::NotFound {
                        key: "/counter".into(),
                    });
                };
                match store
                    .update(
                        "/counter",
                        format!("{writer}").into_bytes(),
                        current.mod_revision,
                    )
                    .await
                {
                    Ok(kv) => wins.push((current.mod_revision, kv.mod_revision)),
                    Err(StorageError::RevisionMismatch { .. }) => {}
                    Err(other) => return Err(other),
                }
            }
            Ok(wins)
        }));
    }
    let mut wins = Vec::new();
    for task in tasks {
        wins.extend(task.await??);
    }
    let expected_revisions: HashSet<Revision> = wins.iter().map(|w| w.0).collect();
    assert_eq!(
        expected_revisions.len(),
        wins.len(),
        "two writers won from the same revision"
    );
    let final_kv = store.get("/counter").await?.ok_or("counter vanished")?;
    assert_eq!(
        final_kv.mod_revision,
        start.mod_revision + wins.len() as Revision
    );
    let mut new_revisions: Vec<Revision> = wins.iter().map(|w| w.1).collect();
    new_revisions.sort_unstable();
    let dense: Vec<Revision> = (start.mod_revision + 1..=final_kv.mod_revision).collect();
    assert_eq!(
        new_revisions, dense,
        "revisions are dense and each has one winner"
    );
    Ok(())
}

pub async fn lists_page_through_one_snapshot_under_concurrent_writes(
    store: SharedStore,
) -> Outcome {
    for i in 0..200 {
        store
            .create(&format!("/items/{i:04}"), format!("v{i}").into_bytes())
            .await?;
    }
    store.create("/other/x", b"x".to_vec()).await?;
    let snapshot = store
        .list(&ListOptions {
            prefix: "/items/".into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(snapshot.items.len(), 200);
    assert!(!snapshot.more);

    // Writers change and add items while we page through the snapshot's revision.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let key = format!("/items/{i:04}");
                if let Some(kv) = store.get(&key).await? {
                    store
                        .update(&key, b"changed".to_vec(), kv.mod_revision)
                        .await?;
                }
                store
                    .create(&format!("/items/{i:04}-new"), b"new".to_vec())
                    .await?;
            }
            Ok::<_, StorageError>(())
        })
    };
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(&ListOptions {
                prefix: "/items/".into(),
                limit: Some(17),
                at_revision: Some(snapshot.revision),
                continue_after: after.clone(),
            })
            .await?;
        assert_eq!(page.revision, snapshot.revision);
        assert!(page.items.len() <= 17);
        after = page.items.last().map(|kv| kv.key.clone());
        paged.extend(page.items);
        if !page.more {
            break;
        }
    }
    writer.await??;
    assert_eq!(
        paged, snapshot.items,
        "paging at one revision sees exactly the snapshot"
    );
    let now = store
        .list(&ListOptions {
            prefix: "/items/".into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(now.items.len(), 400);
    assert_eq!(store.count("/items/").await?, 400);
    assert_eq!(store.count("/").await?, 401);
    Ok(())
}

pub async fn old_revisions_read_old_values_until_compacted(store: SharedStore) -> Outcome {
    let v1 = store.create("/k", b"old".to_vec()).await?;
    let v2 = store.update("/k", b"new".to_vec(), v1.mod_revision).await?;
    let at = |revision| ListOptions {
        prefix: "/k".into(),
        at_revision: Some(revision),
        ..Default::default()
    };
    assert_eq!(
        store.list(&at(v1.mod_revision)).await?.items,
        vec![v1.clone()]
    );
    assert_eq!(
        store.list(&at(v2.mod_revision)).await?.items,
        vec![v2.clone()]
    );
    let deleted = store.delete("/k", v2.mod_revision).await?;
    assert!(store.list(&at(deleted.revision)).await?.items.is_empty());
    assert_eq!(store.list(&at(v2.mod_revision)).await?.items, vec![v2]);
    match store.list(&at(deleted.revision + 5)).await {
        Err(StorageError::FutureRevision { current, .. }) => assert_eq!(current, deleted.revision),
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    Ok(())
}

pub async fn watch_replays_history_then_follows_live_without_gap_or_duplicate(
    store: SharedStore,
) -> Outcome {
    for i in 0..50 {
        store.create(&format!("/w/{i}"), vec![i as u8]).await?;
    }
    // Writers keep going while the watch starts from the middle of history.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 50..250 {
                store.create(&format!("/w/{i}"), vec![i as u8]).await?;
            }
            Ok::<_, StorageError>(())
        })
    };
    let mut watch = store.watch("/w/", 20).await?;
    let mut seen = Vec::new();
    while seen.len() < 250 - 19 {
        let event = next_event(&mut watch).await?;
        assert_eq!(event.kind, EventKind::Put);
        seen.push(event.revision());
    }
    writer.await??;
    let expected: Vec<Revision> = (20..=250).collect();
    assert_eq!(seen, expected, "every revision once, in order");
    // From "now" (0): only what comes next.
    let mut from_now = store.watch("/w/", 0).await?;
    let next = store.create("/w/last", b"x".to_vec()).await?;
    assert_eq!(next_event(&mut from_now).await?.kv, next);
    Ok(())
}

pub async fn watch_filters_by_prefix_and_carries_previous_values(store: SharedStore) -> Outcome {
    let mut watch = store.watch("/a/", 0).await?;
    store.create("/b/x", b"ignored".to_vec()).await?;
    let created = store.create("/a/x", b"1".to_vec()).await?;
    let updated = store
        .update("/a/x", b"2".to_vec(), created.mod_revision)
        .await?;
    let deleted = store.delete("/a/x", updated.mod_revision).await?;

    let put = next_event(&mut watch).await?;
    assert_eq!(
        (put.kind, &put.kv, &put.prev),
        (EventKind::Put, &created, &None)
    );
    let change = next_event(&mut watch).await?;
    assert_eq!(
        (change.kind, &change.kv, change.prev.as_ref()),
        (EventKind::Put, &updated, Some(&created))
    );
    let gone = next_event(&mut watch).await?;
    assert_eq!(gone.kind, EventKind::Delete);
    assert_eq!(gone.kv.key, "/a/x");
    assert_eq!(gone.revision(), deleted.revision);
    assert_eq!(gone.prev.as_ref(), Some(&updated));

    // The same history, replayed, is the same events.
    let mut replay = store.watch("/a/", created.mod_revision).await?;
    assert_eq!(next_event(&mut replay).await?, put);
    assert_eq!(next_event(&mut replay).await?, change);
    assert_eq!(next_event(&mut replay).await?, gone);
    Ok(())
}

pub async fn compaction_forgets_history_but_keeps_the_present(store: SharedStore) -> Outcome {
    let mut revisions = BTreeMap::new();
    let mut kv = store.create("/c/k", b"0".to_vec()).await?;
    revisions.insert(kv.mod_revision, kv.clone());
    for i in 1..10u8 {
        kv = store.update("/c/k", vec![i], kv.mod_revision).await?;
        revisions.insert(kv.mod_revision, kv.clone());
    }
    let gone = store.create("/c/gone", b"g".to_vec()).await?;
    store.delete("/c/gone", gone.mod_revision).await?;
    let keep = store.create("/c/keep", b"k".to_vec()).await?;
    let target = kv.mod_revision;
    store.compact(target).await?;
    assert_eq!(store.compact_revision().await?, target);

    let at = |revision| ListOptions {
        prefix: "/c/".into(),
        at_revision: Some(revision),
        ..Default::default()
    };
    match store.list(&at(target - 1)).await {
        Err(StorageError::Compacted {
            requested,
            compact_revision,
        }) => {
            assert_eq!((requested, compact_revision), (target - 1, target));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(matches!(
        store.watch("/c/", target - 1).await,
        Err(StorageError::Compacted { .. })
    ));
    assert_eq!(store.list(&at(target)).await?.items, vec![kv.clone()]);
    let now = store
        .list(&ListOptions {
            prefix: "/c/".into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(now.items, vec![kv.clone(), keep.clone()]);
    // Watching from the compact revision still sees everything from there on.
    let mut watch = store.watch("/c/", target).await?;
    assert_eq!(next_event(&mut watch).await?.kv, kv);
    // Compacting again to the same or an older revision is a no-op; the future is refused.
    store.compact(target).await?;
    store.compact(target - 3).await?;
    assert_eq!(store.compact_revision().await?, target);
    let current = store.current_revision().await?;
    assert!(matches!(
        store.compact(current + 1).await,
        Err(StorageError::FutureRevision { .. })
    ));
    // Writes after compaction continue the same revision sequence.
    let after = store
        .update("/c/keep", b"k2".to_vec(), keep.mod_revision)
        .await?;
    assert_eq!(after.mod_revision, current + 1);
    Ok(())
}

pub async fn a_slow_watcher_is_closed_without_stalling_writers(store: SharedStore) -> Outcome {
    let mut slow = store.watch("/s/", 0).await?;
    let mut fast = store.watch("/s/", 0).await?;
    let reader = tokio::spawn(async move {
        let mut count = 0usize;
        while let Some(event) = fast.next().await {
            event?;
            count += 1;
            if count == 10_000 {
                break;
            }
        }
        Ok::<_, StorageError>(count)
    });
    let writes = tokio::time::timeout(Duration::from_secs(120), async {
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..1250 {
                    store.create(&format!("/s/{w}/{i}"), vec![0; 16]).await?;
                }
                Ok::<_, StorageError>(())
            }));
        }
        for task in tasks {
            task.await
                .map_err(|e| StorageError::Unavailable(e.to_string()))??;
        }
        Ok::<_, StorageError>(())
    })
    .await;
    assert!(writes.is_ok(), "writers stalled behind a slow watcher");
    writes.map_err(|e| e.to_string())??;
    assert_eq!(
        reader.await??,
        10_000,
        "a keeping-up watcher saw everything"
    );
    // The slow one gets what fitted in its buffer, then a clear reason to re-list.
    let mut received = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next()).await? {
            Some(Ok(_)) => received += 1,
            Some(Err(StorageError::WatchClosed { reason })) => {
                assert!(reason.contains("re-list"), "{reason}");
                break;
            }
            other => {
                panic!("expected the slow watcher to be closed, got {other:?} after {received}")
            }
        }
    }
    assert!(received < 10_000);
    Ok(())
}

pub async fn watch_progress_never_runs_ahead_of_undelivered_events(store: SharedStore) -> Outcome {
    let mut watch = store.watch("/p/", 0).await?;
    let first = store.create("/p/a", b"1".to_vec()).await?;
    let second = store.create("/p/b", b"2".to_vec()).await?;
    // Writes elsewhere move the store on; once caught up, progress follows them.
    let elsewhere = store.create("/q/x", b"3".to_vec()).await?;
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        if let Some(progress) = watch.progress() {
            let last = delivered.last().copied().unwrap_or(0);
            assert!(
                progress >= last,
                "progress {progress} is behind a delivered event {last}"
            );
            assert!(
                delivered.contains(&first.mod_revision) || progress < first.mod_revision,
                "progress {progress} claims {} before it was delivered",
                first.mod_revision
            );
        }
        delivered.push(next_event(&mut watch).await?.revision());
    }
    assert_eq!(delivered, [first.mod_revision, second.mod_revision]);
    let mut caught_up = None;
    for _ in 0..100 {
        caught_up = watch.progress();
        if caught_up == Some(elsewhere.mod_revision) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(caught_up, Some(elsewhere.mod_revision));
    Ok(())
}

pub async fn large_values_round_trip(store: SharedStore) -> Outcome {
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let kv = store.create("/big", big.clone()).await?;
    assert_eq!(
        store.get("/big").await?.map(|kv| kv.value),
        Some(big.clone())
    );
    let mut reversed = big.clone();
    reversed.reverse();
    let updated = store
        .update("/big", reversed.clone(), kv.mod_revision)
        .await?;
    let mut watch = store.watch("/big", kv.mod_revision).await?;
    let _ = next_event(&mut watch).await?;
    let event = next_event(&mut watch).await?;
    assert_eq!(event.kv, updated);
    assert_eq!(event.prev.map(|p| p.value), Some(big));
    Ok(())
}

pub async fn many_keys_are_counted_and_listed(store: SharedStore) -> Outcome {
    let total = 100_000usize;
    let writers = 64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(writers) {
                store
                    .create(&format!("/many/{i:06}"), format!("{i}").into_bytes())
                    .await?;
            }
            Ok::<_, StorageError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    assert_eq!(store.count("/many/").await?, total as u64);
    assert_eq!(store.current_revision().await?, total as Revision);
    let mut seen = 0usize;
    let mut after: Option<String> = None;
    let mut previous_key = String::new();
    loop {
        let page = store
            .list(&ListOptions {
                prefix: "/many/".into(),
                limit: Some(5000),
                continue_after: after.clone(),
                ..Default::default()
            })
            .await?;
        for KeyValue { key, .. } in &page.items {
            assert!(*key > previous_key, "keys come in order");
            previous_key.clone_from(key);
        }
        seen += page.items.len();
        after = page.items.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, total);
    Ok(())
}
