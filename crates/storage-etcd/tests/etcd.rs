//! The conformance suite against a real etcd (a fresh one per test), and the etcd store's own
//! promises: key prefixes keep catalogs sharing an etcd apart, replicas see each other's writes,
//! compaction is coordinated through the recorded compact revision, TLS with client
//! certificates, a three-member cluster, and clear errors when etcd is gone.

use std::sync::Arc;
use std::time::Duration;

use storage::{EventKind, ListOptions, StorageError, Store, Watch};
use storage_etcd::{ConnectError, EtcdOptions, EtcdStore, EtcdTls};
use test_support::{EtcdCluster, EtcdProcess, TestCa};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A store on `etcd` under `prefix`. A fresh etcd is at revision 1 before its first write;
/// `revision_base: 1` numbers its writes 1, 2, 3, ... as the conformance suite expects of a
/// fresh store.
async fn connect(endpoints: Vec<String>, prefix: &str) -> Result<EtcdStore, ConnectError> {
    EtcdStore::connect(EtcdOptions {
        revision_base: 1,
        ..EtcdOptions::new(endpoints, prefix)
    })
    .await
}

storage::conformance_tests!(|| async {
    let etcd = EtcdProcess::start().await?;
    let store = connect(vec![etcd.endpoint.clone()], "/conformance").await?;
    Ok::<_, Box<dyn std::error::Error + Send + Sync>>((Arc::new(store) as Arc<dyn Store>, etcd))
});

async fn next_event(
    watch: &mut Watch,
) -> Result<storage::Event, Box<dyn std::error::Error + Send + Sync>> {
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        Ok(Some(Err(error))) => Err(error.into()),
        Ok(None) => Err("the watch ended".into()),
        Err(_) => Err("no event within 10 s".into()),
    }
}

/// Nothing arrives within a short while.
async fn quiet(watch: &mut Watch) -> TestResult {
    match tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
        Err(_) => Ok(()),
        Ok(other) => Err(format!("expected no event, got {other:?}").into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_sharing_a_prefix_see_each_others_writes_and_other_prefixes_see_nothing()
-> TestResult {
    let etcd = EtcdProcess::start().await?;
    let endpoints = vec![etcd.endpoint.clone()];
    // Two replicas of one catalog, and two other catalogs, one with a look-alike prefix (none
    // of the prefixes is a prefix of another).
    let replica_a = connect(endpoints.clone(), "/catalog-a/").await?;
    let replica_b = connect(endpoints.clone(), "/catalog-a/").await?;
    let other = connect(endpoints.clone(), "/catalog-b/").await?;
    let longer = connect(endpoints.clone(), "/catalog-a-staging/").await?;

    let mut a_watch = replica_a.watch("/", 0).await?;
    let mut other_watch = other.watch("/", 0).await?;
    let mut other_all = other.watch("", 0).await?;

    let created = replica_b.create("/things/one", b"1".to_vec()).await?;
    assert_eq!(
        created.key, "/things/one",
        "keys come back without the prefix"
    );
    let updated = replica_b
        .update("/things/one", b"2".to_vec(), created.mod_revision)
        .await?;
    let event = next_event(&mut a_watch).await?;
    assert_eq!((event.kind, &event.kv), (EventKind::Put, &created));
    let event = next_event(&mut a_watch).await?;
    assert_eq!((&event.kv, event.prev.as_ref()), (&updated, Some(&created)));
    // Writes of one replica are compare-and-swap for the other.
    assert!(matches!(
        replica_a
            .update("/things/one", b"x".to_vec(), created.mod_revision)
            .await,
        Err(StorageError::RevisionMismatch { .. })
    ));
    assert_eq!(replica_a.get("/things/one").await?, Some(updated.clone()));

    // The other catalogs see none of it, even for the same key, and their writes stay theirs.
    assert_eq!(other.get("/things/one").await?, None);
    assert_eq!(other.count("").await?, 0);
    assert_eq!(longer.count("").await?, 0);
    quiet(&mut other_watch).await?;
    quiet(&mut other_all).await?;
    let theirs = longer.create("/things/one", b"theirs".to_vec()).await?;
    assert_eq!(longer.get("/things/one").await?, Some(theirs));
    quiet(&mut a_watch).await?;
    let all_a = replica_a.list(&ListOptions::default()).await?;
    assert_eq!(all_a.items, vec![updated.clone()]);
    assert_eq!(replica_a.count("").await?, 1);

    // etcd shows the keys under the prefixes.
    let raw = etcd_client::Client::connect(&endpoints, None)
        .await?
        .get("/catalog-a//things/one", None)
        .await?;
    assert_eq!(raw.kvs().first().map(|kv| kv.value()), Some(&b"2"[..]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_on_the_compact_revision() -> TestResult {
    let etcd = EtcdProcess::start().await?;
    let endpoints = vec![etcd.endpoint.clone()];
    let a = connect(endpoints.clone(), "/catalog/").await?;
    let b = connect(endpoints.clone(), "/catalog/").await?;
    let mut kv = a.create("/k", b"0".to_vec()).await?;
    for i in 1..5u8 {
        kv = a.update("/k", vec![i], kv.mod_revision).await?;
    }
    let target = kv.mod_revision - 1;
    // Both replicas compact to the same revision at once: one records it, etcd compacts once.
    let (first, second) = tokio::join!(a.compact(target), b.compact(target));
    first?;
    second?;
    assert_eq!(a.compact_revision().await?, target);
    assert_eq!(b.compact_revision().await?, target);
    // An older target is a no-op for both.
    b.compact(target - 2).await?;
    assert_eq!(a.compact_revision().await?, target);
    match b
        .list(&ListOptions {
            prefix: "/".into(),
            at_revision: Some(target - 1),
            ..Default::default()
        })
        .await
    {
        Err(StorageError::Compacted {
            requested,
            compact_revision,
        }) => assert_eq!((requested, compact_revision), (target - 1, target)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    // Another catalog's store on the same etcd learns etcd's compact revision from etcd when
    // it reads below it (compaction is etcd-wide).
    let other = connect(endpoints, "/other/").await?;
    assert!(matches!(
        other.watch("/", target - 1).await,
        Err(StorageError::Compacted { compact_revision, .. }) if compact_revision == target
    ));
    // The recorded revision lives in the prefix, outside every range of keys.
    assert_eq!(a.count("").await?, 1);
    assert_eq!(a.compact_key(), b"/catalog/\xffcompact_rev_key");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() -> TestResult {
    let ca = TestCa::new("etcd test CA")?;
    let etcd = EtcdProcess::start_tls(&ca).await?;
    let ca_file = etcd.data_dir().with_file_name("client-ca.crt");
    std::fs::write(&ca_file, &ca.cert_pem)?;
    let client = ca.issue_server_cert()?;
    let tls = EtcdTls {
        ca_file: ca_file.clone(),
        client_cert_file: Some(client.cert_file.clone()),
        client_key_file: Some(client.key_file.clone()),
        server_name: None,
    };
    let store = EtcdStore::connect(EtcdOptions {
        tls: Some(tls.clone()),
        ..EtcdOptions::new(vec![etcd.endpoint.clone()], "/tls")
    })
    .await?;
    let mut watch = store.watch("/", 0).await?;
    let kv = store.create("/secure", b"s".to_vec()).await?;
    assert_eq!(next_event(&mut watch).await?.kv, kv);

    // Without a client certificate etcd refuses the connection, and connect says so.
    let refused = EtcdStore::connect(EtcdOptions {
        tls: Some(EtcdTls {
            client_cert_file: None,
            client_key_file: None,
            ..tls.clone()
        }),
        connect_timeout: Duration::from_secs(3),
        ..EtcdOptions::new(vec![etcd.endpoint.clone()], "/tls")
    })
    .await;
    assert!(
        matches!(refused, Err(ConnectError::Unreachable { .. })),
        "{refused:?}"
    );
    // A missing file is named.
    let missing = EtcdStore::connect(EtcdOptions {
        tls: Some(EtcdTls {
            ca_file: ca_file.with_file_name("nope.crt"),
            ..tls
        }),
        ..EtcdOptions::new(vec![etcd.endpoint.clone()], "/tls")
    })
    .await;
    match missing {
        Err(error @ ConnectError::Tls { .. }) => {
            assert!(error.to_string().contains("nope.crt"), "{error}")
        }
        other => panic!("expected a TLS file error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_cluster_serves_through_any_member_and_survives_losing_its_leader()
-> TestResult {
    let mut cluster = EtcdCluster::start(3).await?;
    let endpoints = cluster.endpoints();
    // Which member leads, and one that follows.
    let mut leader = None;
    for (i, endpoint) in endpoints.iter().enumerate() {
        let status = etcd_client::Client::connect([endpoint], None)
            .await?
            .status()
            .await?;
        if status.header().map(|h| h.member_id()) == Some(status.leader()) {
            leader = Some(i);
        }
    }
    let leader = leader.ok_or("no member leads")?;
    let follower = (leader + 1) % endpoints.len();
    let via_leader = connect(vec![endpoints[leader].clone()], "/ha/").await?;
    let via_follower = connect(vec![endpoints[follower].clone()], "/ha/").await?;
    let via_all = connect(endpoints.clone(), "/ha/").await?;
    let mut watch = via_follower.watch("/", 0).await?;
    let kv = via_leader.create("/k", b"1".to_vec()).await?;
    assert_eq!(next_event(&mut watch).await?.kv, kv);
    assert_eq!(via_follower.get("/k").await?, Some(kv.clone()));

    // Losing the leader of three keeps a quorum. While the others elect a new one, a write may
    // fail as Unavailable (and may still have been applied); the caller retries.
    cluster.members[leader].kill()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let updated = loop {
        match via_all.update("/k", b"2".to_vec(), kv.mod_revision).await {
            Ok(updated) => break updated,
            Err(StorageError::RevisionMismatch {
                current: Some(current),
                ..
            }) if current.value == b"2" => break *current,
            Err(StorageError::Unavailable(message)) if tokio::time::Instant::now() < deadline => {
                eprintln!("retrying during the election: {message}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(other) => return Err(other.into()),
        }
    };
    // The follower's watch carries on — or, if its member was without a leader for long,
    // ends as Unavailable and the client watches again from the next revision.
    let event = match next_event(&mut watch).await {
        Ok(event) => event,
        Err(error) => {
            eprintln!("watching again after: {error}");
            let mut again = via_follower.watch("/", kv.mod_revision + 1).await?;
            next_event(&mut again).await?
        }
    };
    assert_eq!(event.kv, updated);
    assert_eq!(via_follower.get("/k").await?, Some(updated));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_etcd_goes_away_requests_and_watches_fail_clearly() -> TestResult {
    let mut etcd = EtcdProcess::start().await?;
    let store = EtcdStore::connect(EtcdOptions {
        request_timeout: Duration::from_secs(5),
        ..EtcdOptions::new(vec![etcd.endpoint.clone()], "/gone")
    })
    .await?;
    let mut watch = store.watch("/", 0).await?;
    store.create("/k", b"v".to_vec()).await?;
    next_event(&mut watch).await?;
    etcd.kill()?;
    match tokio::time::timeout(Duration::from_secs(15), watch.next()).await? {
        Some(Err(StorageError::Unavailable(message))) => {
            assert!(message.contains(&etcd.endpoint), "{message}");
            assert!(message.contains("re-list"), "{message}");
        }
        other => panic!("expected the watch to fail with Unavailable, got {other:?}"),
    }
    match store.get("/k").await {
        Err(StorageError::Unavailable(message)) => {
            assert!(message.contains(&etcd.endpoint), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn connecting_to_nothing_is_a_clear_error() -> TestResult {
    let url = test_support::refused_url()?;
    let started = std::time::Instant::now();
    let result = EtcdStore::connect(EtcdOptions {
        connect_timeout: Duration::from_secs(3),
        ..EtcdOptions::new(vec![url.clone()], "/x")
    })
    .await;
    match result {
        Err(error @ ConnectError::Unreachable { .. }) => {
            assert!(error.to_string().contains(&url), "{error}")
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        EtcdStore::connect(EtcdOptions::new(Vec::new(), "/x")).await,
        Err(ConnectError::InvalidOptions(_))
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_are_etcds_own_by_default_and_a_watch_may_start_one_past_the_present()
-> TestResult {
    let etcd = EtcdProcess::start().await?;
    // The production default: no revision base, so revisions are the ones etcdctl shows.
    let store = EtcdStore::connect(EtcdOptions::new(vec![etcd.endpoint.clone()], "/raw/")).await?;
    assert_eq!(store.current_revision().await?, 1, "a fresh etcd is at 1");
    let kv = store.create("/k", b"v".to_vec()).await?;
    assert_eq!((kv.create_revision, kv.mod_revision), (2, 2));
    let at = |revision| ListOptions {
        prefix: "/".into(),
        at_revision: Some(revision),
        ..Default::default()
    };
    assert!(store.list(&at(1)).await?.items.is_empty());
    assert_eq!(store.list(&at(2)).await?.items, vec![kv.clone()]);

    // From the next revision (what a client does after a list) is fine; beyond it is not.
    let current = store.current_revision().await?;
    let mut next = store.watch("/", current + 1).await?;
    match store.watch("/", current + 2).await {
        Err(StorageError::FutureRevision {
            requested,
            current: now,
        }) => {
            assert_eq!((requested, now), (current + 2, current))
        }
        other => panic!("expected FutureRevision, got {:?}", other.err()),
    }
    let updated = store.update("/k", b"w".to_vec(), kv.mod_revision).await?;
    let event = next_event(&mut next).await?;
    assert_eq!((&event.kv, event.prev.as_ref()), (&updated, Some(&kv)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_load_progress_never_claims_an_event_not_yet_yielded() -> TestResult {
    let etcd = EtcdProcess::start().await?;
    let store = Arc::new(connect(vec![etcd.endpoint.clone()], "/load/").await?);
    let mut watch = store.watch("/p/", 0).await?;
    let writers = 4;
    let per_writer = 400;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                // Half the writes are outside the watch: progress may jump over them.
                let prefix = if i % 2 == 0 { "/p/" } else { "/q/" };
                store.create(&format!("{prefix}{w}/{i}"), vec![1]).await?;
            }
            Ok::<_, StorageError>(())
        }));
    }
    let mut claims = 0;
    let mut last = 0;
    for seen in 0..writers * per_writer / 2 {
        let claimed = watch.progress();
        let event = next_event(&mut watch).await?;
        if let Some(progress) = claimed {
            claims += 1;
            assert!(
                event.revision() > progress,
                "progress {progress} was claimed before event {} was yielded",
                event.revision()
            );
            assert!(
                progress >= last,
                "progress {progress} went behind event {last}"
            );
        }
        last = event.revision();
        if seen % 100 == 0 {
            // Let events pile up in the buffer now and then.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for task in tasks {
        task.await??;
    }
    assert!(claims > 0, "progress was never known");
    Ok(())
}
