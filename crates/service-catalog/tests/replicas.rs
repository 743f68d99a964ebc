//! Several `service-catalog apiserver` processes on one etcd serve the same data: a write
//! through one is read and watched through another, resourceVersions are comparable, and
//! optimistic concurrency holds across them.

use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::json;
use test_support::{EtcdProcess, ServerProcess};

async fn replica(
    etcd: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(ServerProcess, Api<ConfigMap>)> {
    let data = dir.to_string_lossy().into_owned();
    let process = ServerProcess::start(
        env!("CARGO_BIN_EXE_service-catalog"),
        &[
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
        ],
    )
    .await?;
    let client = Client::try_from(kube::Config::new(process.url.parse()?))?;
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
