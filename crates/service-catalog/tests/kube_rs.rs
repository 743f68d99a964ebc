//! kube-rs against `service-catalog apiserver`, unchanged: discovery (legacy and aggregated),
//! typed CRUD with optimistic concurrency, merge and server-side apply patches, the watcher (list
//! + watch, and streaming lists), and the event Recorder.

use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Discovery, Resource as _};
use serde_json::json;
use test_support::{ServerProcess, TestStorage};

/// The server, a client, and what must live as long as it (its data dir, its storage: SQLite,
/// or etcd with `SERVICE_CATALOG_TEST_STORAGE=etcd`).
async fn server() -> anyhow::Result<(ServerProcess, Client, (tempfile::TempDir, TestStorage))> {
    let dir = tempfile::tempdir()?;
    let storage = TestStorage::from_env().await?;
    let args = storage.apiserver_args(dir.path(), true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = ServerProcess::start(env!("CARGO_BIN_EXE_service-catalog"), &args).await?;
    // The admin kubeconfig the server wrote (its token; plain HTTP on loopback).
    let kubeconfig = kube::config::Kubeconfig::read_from(dir.path().join("kubeconfig"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = Client::try_from(config)?;
    Ok((process, client, (dir, storage)))
}

fn configmap(name: &str) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "kube-rs"}},
        "data": {"k": "v"},
    }))?)
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_finds_the_groups_legacy_and_aggregated() -> anyhow::Result<()> {
    let (_process, client, _dir) = server().await?;
    for discovery in [
        Discovery::new(client.clone()).run().await?,
        Discovery::new(client.clone()).run_aggregated().await?,
    ] {
        let groups: Vec<String> = discovery.groups().map(|g| g.name().to_owned()).collect();
        assert!(
            groups.iter().any(|g| g == "coordination.k8s.io"),
            "{groups:?}"
        );
        assert!(
            groups.iter().any(|g| g.is_empty()),
            "core group: {groups:?}"
        );
    }
    let version = client.apiserver_version().await?;
    assert_eq!(version.major, "1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_crud_with_conflicts_and_both_patch_kinds() -> anyhow::Result<()> {
    let (_process, client, _dir) = server().await?;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &configmap("one")?)
        .await?;
    let fetched = api.get("one").await?;
    assert_eq!(fetched.metadata.uid, created.metadata.uid);

    let mut changed = fetched.clone();
    changed.data = Some([("k".to_owned(), "changed".to_owned())].into());
    api.replace("one", &PostParams::default(), &changed).await?;
    // The same stale object again: 409 Conflict as a typed error.
    match api.replace("one", &PostParams::default(), &changed).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    let merged = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"extra": "1"}})),
        )
        .await?;
    assert_eq!(
        merged
            .data
            .as_ref()
            .and_then(|d| d.get("extra"))
            .map(String::as_str),
        Some("1")
    );
    let applied = api
        .patch(
            "applied",
            &PatchParams::apply("kube-test").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "b"}})),
        )
        .await?;
    assert_eq!(
        applied
            .metadata
            .managed_fields
            .map(|m| m[0].manager.clone()),
        Some(Some("kube-test".to_owned()))
    );

    let listed = api
        .list(&kube::api::ListParams::default().labels("app=kube-rs"))
        .await?;
    assert_eq!(listed.items.len(), 1);
    assert!(
        listed
            .metadata
            .resource_version
            .is_some_and(|rv| !rv.is_empty())
    );
    api.delete("one", &DeleteParams::default()).await?;
    assert!(matches!(api.get("one").await, Err(kube::Error::Api(s)) if s.code == 404));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watcher_sees_changes_with_list_watch_and_streaming_lists() -> anyhow::Result<()> {
    let (_process, client, _dir) = server().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &configmap("before")?)
        .await?;
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let name = format!(
            "w-{}",
            if config.initial_list_strategy == watcher::InitialListStrategy::ListWatch {
                "list"
            } else {
                "stream"
            }
        );
        let mut events = watcher(api.clone(), config).boxed();
        let mut initialized = false;
        let mut created_seen = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !created_seen {
            let event = tokio::time::timeout_at(deadline, events.try_next()).await??;
            match event {
                Some(watcher::Event::InitDone) => {
                    initialized = true;
                    api.create(&PostParams::default(), &configmap(&name)?)
                        .await?;
                }
                Some(watcher::Event::Apply(cm))
                    if cm.metadata.name.as_deref() == Some(name.as_str()) =>
                {
                    created_seen = true;
                }
                Some(_) => {}
                None => anyhow::bail!("the watcher ended"),
            }
        }
        assert!(initialized);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_recorder_publishes_events_k8s_io_events() -> anyhow::Result<()> {
    let (_process, client, _dir) = server().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = api
        .create(&PostParams::default(), &configmap("subject")?)
        .await?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "kube-test".into(),
            instance: None,
        },
    );
    let reference = cm.object_ref(&());
    for _ in 0..2 {
        recorder
            .publish(
                &Event {
                    type_: EventType::Normal,
                    reason: "Tested".into(),
                    note: Some("recorded by kube-rs".into()),
                    action: "Testing".into(),
                    secondary: None,
                },
                &reference,
            )
            .await?;
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, "default");
    let listed = events.list(&Default::default()).await?;
    assert_eq!(
        listed.items.len(),
        1,
        "the second publish patched the series"
    );
    assert_eq!(listed.items[0].reason.as_deref(), Some("Tested"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_open_watches_and_exits_promptly() -> anyhow::Result<()> {
    let (process, client, _dir) = server().await?;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    // A watch that would otherwise stay open for almost five minutes.
    let mut stream = api
        .watch(&kube::api::WatchParams::default().timeout(290), "0")
        .await?
        .boxed();
    let started = std::time::Instant::now();
    let status = process.terminate().await?;
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?}",
        started.elapsed()
    );
    // The stream ends (cleanly or cut off) instead of hanging.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.try_next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch stream was still open");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reflector_keeps_a_store_in_step_with_the_server() -> anyhow::Result<()> {
    let (_process, client, _dir) = server().await?;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let (reader, writer) = kube::runtime::reflector::store::<ConfigMap>();
    let reflector =
        kube::runtime::reflector(writer, watcher(api.clone(), watcher::Config::default()))
            .for_each(|_| async {});
    let running = tokio::spawn(reflector);
    reader.wait_until_ready().await?;
    api.create(&PostParams::default(), &configmap("reflected")?)
        .await?;
    let mut seen = false;
    for _ in 0..100 {
        if reader
            .state()
            .iter()
            .any(|cm| cm.metadata.name.as_deref() == Some("reflected"))
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    assert!(seen, "the reflector's store caught the new object");
    Ok(())
}
