//! Several `service-catalog apiserver` processes on one etcd serve the same data: a write
//! through one is read and watched through another, resourceVersions are comparable, and
//! optimistic concurrency holds across them. And the faults: a three-member etcd losing one
//! member, then quorum (writes are a clear 503, watches resume when it returns); an API server
//! killed mid-write; controller managers electing a leader across API server replicas.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::json;
use test_support::{EtcdCluster, EtcdProcess, ServerProcess};

async fn replica(
    etcd: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(ServerProcess, Api<ConfigMap>)> {
    replica_with(etcd, dir, &[]).await
}

/// An API server on etcd, plain HTTP on loopback, its kubeconfig in `dir`.
async fn replica_with(
    etcd: &str,
    dir: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<(ServerProcess, Api<ConfigMap>)> {
    let data = dir.to_string_lossy().into_owned();
    let mut args = vec![
        "apiserver",
        "--data-dir",
        &data,
        "--listen",
        "127.0.0.1:0",
        "--plain-http",
        "--storage",
        "etcd",
        "--etcd-servers",
        etcd,
    ];
    args.extend_from_slice(extra);
    let process = ServerProcess::start(env!("CARGO_BIN_EXE_service-catalog"), &args).await?;
    // The admin kubeconfig this server wrote (its token; plain HTTP on loopback).
    let kubeconfig = kube::config::Kubeconfig::read_from(dir.join("kubeconfig"))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    // kube-rs retries 503s by itself; these tests look at what the server answers.
    config.default_retry = false;
    let client = Client::try_from(config)?;
    Ok((process, Api::namespaced(client, "default")))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_api_servers_on_one_etcd_serve_the_same_data() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start().await?;
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (_a, api_a) = replica(&etcd.endpoint, dir_a.path()).await?;
    let (_b, api_b) = replica(&etcd.endpoint, dir_b.path()).await?;

    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "shared"}, "data": {"v": "1"}}))?;
    let created = api_a.create(&PostParams::default(), &cm).await?;
    let seen = api_b.get("shared").await?;
    assert_eq!(
        seen.metadata.resource_version,
        created.metadata.resource_version
    );

    // A watch through B from A's version sees A's next write.
    let version = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let mut events = api_b
        .watch(&WatchParams::default().timeout(20), &version)
        .await?
        .boxed();
    let updated = api_a
        .patch(
            "shared",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await?;
    let event = tokio::time::timeout(Duration::from_secs(20), events.try_next()).await??;
    match event {
        Some(WatchEvent::Modified(object)) => {
            assert_eq!(
                object.metadata.resource_version,
                updated.metadata.resource_version
            )
        }
        other => panic!("expected MODIFIED through the other replica, got {other:?}"),
    }

    // B still holds the old object: replacing it there is a conflict.
    match api_b.replace("shared", &PostParams::default(), &seen).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("expected a conflict across replicas, got {other:?}"),
    }
    let listed = api_b.list(&Default::default()).await?;
    let list_version: i64 = listed
        .metadata
        .resource_version
        .unwrap_or_default()
        .parse()?;
    let write_version: i64 = updated
        .metadata
        .resource_version
        .unwrap_or_default()
        .parse()?;
    assert!(
        list_version >= write_version,
        "versions are comparable across replicas"
    );
    Ok(())
}

#[test]
fn etcd_storage_without_servers_is_a_clear_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_service-catalog"))
        .args([
            "apiserver",
            "--listen",
            "127.0.0.1:0",
            "--storage",
            "etcd",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--etcd-servers"));
    Ok(())
}

fn configmap(name: &str) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name}, "data": {"v": name}}),
    )?)
}

/// Creates until the API acknowledges it (a retry that finds it already there counts: the
/// earlier attempt was applied). 30 s at most.
async fn create_acknowledged(api: &Api<ConfigMap>, name: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match api.create(&PostParams::default(), &configmap(name)?).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => return Ok(()),
            Err(error) if tokio::time::Instant::now() > deadline => {
                anyhow::bail!("{name} was never acknowledged: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Follows ConfigMaps from `version` as a client should: a watch that ends is started again
/// from the last version seen, and one that expired (410) is replaced by a list. Every name
/// seen goes into `seen`.
fn follow(api: Api<ConfigMap>, mut version: String, seen: Arc<Mutex<BTreeSet<String>>>) {
    tokio::spawn(async move {
        loop {
            let stream = match api
                .watch(&WatchParams::default().timeout(5), &version)
                .await
            {
                Ok(stream) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut stream = stream.boxed();
            loop {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Added(object) | WatchEvent::Modified(object))) => {
                        if let Ok(mut seen) = seen.lock() {
                            seen.insert(object.metadata.name.clone().unwrap_or_default());
                        }
                        version = object.metadata.resource_version.unwrap_or(version);
                    }
                    Ok(Some(WatchEvent::Bookmark(mark))) => {
                        version = mark.metadata.resource_version
                    }
                    Ok(Some(WatchEvent::Error(status))) if status.code == 410 => {
                        if let Ok(list) = api.list(&Default::default()).await {
                            if let Ok(mut seen) = seen.lock() {
                                for item in &list.items {
                                    seen.insert(item.metadata.name.clone().unwrap_or_default());
                                }
                            }
                            version = list.metadata.resource_version.unwrap_or(version);
                        }
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_quorum_is_a_503_and_watches_resume_without_gaps_when_it_returns()
-> anyhow::Result<()> {
    let mut cluster = EtcdCluster::start(3).await?;
    let dir = tempfile::tempdir()?;
    let (_server, api) = replica_with(
        &cluster.endpoints().join(","),
        dir.path(),
        &["--etcd-request-timeout", "3s"],
    )
    .await?;
    let first = api
        .create(&PostParams::default(), &configmap("before")?)
        .await?;
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    follow(
        api.clone(),
        first.metadata.resource_version.unwrap_or_default(),
        seen.clone(),
    );

    // One member of three down: reads, writes and the watch carry on.
    cluster.members[0].kill()?;
    create_acknowledged(&api, "one-down").await?;
    assert_eq!(api.get("one-down").await?.data, configmap("one-down")?.data);

    // Quorum lost: a write is a 503 with a Kubernetes Status that says why, within the
    // storage request timeout.
    cluster.members[1].kill()?;
    let started = std::time::Instant::now();
    match api
        .create(&PostParams::default(), &configmap("no-quorum")?)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 503, "{status:?}");
            assert_eq!(status.reason, "ServiceUnavailable");
            assert!(status.message.contains("storage unavailable"), "{status:?}");
        }
        other => panic!("expected a 503 without quorum, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 503 took {:?}",
        started.elapsed()
    );

    // Quorum back: writes are acknowledged again, the watch saw everything acknowledged.
    cluster.members[0].restart()?;
    cluster.members[1].restart()?;
    create_acknowledged(&api, "after").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let snapshot = seen.lock().map(|s| s.clone()).unwrap_or_default();
        if snapshot.contains("one-down") && snapshot.contains("after") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watch missed acknowledged writes: saw {snapshot:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: BTreeSet<String> = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    for acknowledged in ["before", "one-down", "after"] {
        assert!(
            names.contains(acknowledged),
            "{acknowledged} lost: {names:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_killed_mid_write_loses_nothing_it_acknowledged() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start().await?;
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (a, api_a) = replica(&etcd.endpoint, dir_a.path()).await?;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let acknowledged = acknowledged.clone();
        tokio::spawn(async move {
            // Several writers at once, so that the kill lands with writes in flight.
            let mut tasks = Vec::new();
            for task in 0..8 {
                let (api, acknowledged) = (api_a.clone(), acknowledged.clone());
                tasks.push(tokio::spawn(async move {
                    for i in 0.. {
                        let name = format!("w{task}-{i}");
                        let Ok(cm) = configmap(&name) else { break };
                        if api.create(&PostParams::default(), &cm).await.is_err() {
                            break;
                        }
                        if let Ok(mut acknowledged) = acknowledged.lock() {
                            acknowledged.push(name);
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.kill().await?;
    writer.await?;
    let acknowledged = acknowledged.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(
        acknowledged.len() > 10,
        "the writers got going: {}",
        acknowledged.len()
    );

    let (_b, api_b) = replica(&etcd.endpoint, dir_b.path()).await?;
    let stored: BTreeSet<String> = api_b
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains(*n))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    Ok(())
}

async fn leader_gauge(url: &str) -> anyhow::Result<i64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with("servicecatalog_controller_leader "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as i64)
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_managers_on_different_api_servers_elect_one_leader() -> anyhow::Result<()> {
    let etcd = EtcdProcess::start().await?;
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (_a, _) = replica(&etcd.endpoint, dir_a.path()).await?;
    let (_b, _) = replica(&etcd.endpoint, dir_b.path()).await?;
    let manager = |dir: &std::path::Path| {
        let kubeconfig = dir.join("kubeconfig").to_string_lossy().into_owned();
        async move {
            ServerProcess::start(
                env!("CARGO_BIN_EXE_service-catalog"),
                &[
                    "controller-manager",
                    "--kubeconfig",
                    &kubeconfig,
                    "--metrics-listen",
                    "127.0.0.1:0",
                    "--leader-elect-lease-duration",
                    "3s",
                    "--leader-elect-renew-interval",
                    "500ms",
                ],
            )
            .await
        }
    };
    let mut managers = [
        Some(manager(dir_a.path()).await?),
        Some(manager(dir_b.path()).await?),
    ];
    let urls: Vec<String> = managers.iter().flatten().map(|m| m.url.clone()).collect();
    // Exactly one leads, though each talks to its own API server.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let gauges = (leader_gauge(&urls[0]).await?, leader_gauge(&urls[1]).await?);
        match gauges {
            (1, 0) => break 0,
            (0, 1) => break 1,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no single leader: {gauges:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        leader_gauge(&urls[1 - leader]).await?,
        0,
        "still one leader"
    );

    // The leader dies: the other, on the other API server, takes over within the lease.
    if let Some(process) = managers[leader].take() {
        process.kill().await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while leader_gauge(&urls[1 - leader]).await? != 1 {
        assert!(tokio::time::Instant::now() < deadline, "no takeover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
