//! kube-runtime's harder paths against the server: a forced compaction under a watcher (an
//! in-stream 410 and a re-list, never a stuck watcher), a Controller using the `finalizer`
//! helper (JSON patch `test` against null), and a metadata-only watcher.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Server;
use futures_util::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use serde_json::json;
use storage::Store;

type TestResult = anyhow::Result<()>;

fn client(server: &Server) -> anyhow::Result<Client> {
    Ok(Client::try_from(kube::Config::new(server.url.parse()?))?)
}

fn configmap(name: &str, app: &str) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": app}}, "data": {}}),
    )?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_relists_after_its_version_is_compacted_away() -> TestResult {
    let server = Server::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(client(&server)?, "default");
    api.create(&PostParams::default(), &configmap("watched", "compaction")?)
        .await?;
    // Short watches without bookmarks: the watcher's version stays at its list's version while
    // unrelated writes move the store on.
    let config = watcher::Config::default()
        .labels("app=compaction")
        .timeout(1)
        .disable_bookmarks();
    let mut events = watcher(api.clone(), config).boxed();
    let mut init_done = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while init_done < 2 {
        match tokio::time::timeout_at(deadline, events.try_next()).await? {
            Ok(Some(watcher::Event::InitDone)) => {
                init_done += 1;
                if init_done == 1 {
                    for i in 0..5 {
                        api.create(
                            &PostParams::default(),
                            &configmap(&format!("other-{i}"), "other")?,
                        )
                        .await?;
                    }
                    let current = server.store.current_revision().await?;
                    server.store.compact(current).await?;
                }
            }
            Ok(Some(_)) => {}
            // The 410 surfaces as a watcher error the stream recovers from.
            Err(watcher::Error::WatchError(status)) => assert_eq!(status.code, 410),
            Err(other) => anyhow::bail!("unexpected watcher error: {other}"),
            Ok(None) => anyhow::bail!("the watcher ended"),
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(String);

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_with_the_finalizer_helper_cleans_up_before_deletion() -> TestResult {
    let server = Server::start().await?;
    let client = client(&server)?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cleaned = Arc::new(tokio::sync::Notify::new());
    let controller = {
        let (api, cleaned) = (api.clone(), cleaned.clone());
        Controller::new(
            api.clone(),
            watcher::Config::default().labels("app=finalized"),
        )
        .run(
            move |cm: Arc<ConfigMap>, _ctx: Arc<()>| {
                let (api, cleaned) = (api.clone(), cleaned.clone());
                async move {
                    finalizer(&api, "example.com/cleanup", cm, |event| async move {
                        if let Finalizer::Cleanup(_) = event {
                            cleaned.notify_one();
                        }
                        Ok::<_, ReconcileError>(Action::await_change())
                    })
                    .await
                    .map_err(|e| ReconcileError(e.to_string()))
                }
            },
            |_cm, _error, _ctx| Action::requeue(Duration::from_millis(200)),
            Arc::new(()),
        )
        .for_each(|_| async {})
    };
    let running = tokio::spawn(controller);

    api.create(&PostParams::default(), &configmap("guarded", "finalized")?)
        .await?;
    let mut finalized = false;
    for _ in 0..100 {
        let cm = api.get("guarded").await?;
        if cm
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"example.com/cleanup".to_owned())
        {
            finalized = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        finalized,
        "the finalizer helper added its finalizer (JSON patch test against null)"
    );
    api.delete("guarded", &DeleteParams::default()).await?;
    tokio::time::timeout(Duration::from_secs(20), cleaned.notified()).await?;
    let mut gone = false;
    for _ in 0..100 {
        if matches!(api.get("guarded").await, Err(kube::Error::Api(s)) if s.code == 404) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.abort();
    assert!(
        gone,
        "after cleanup the finalizer was removed and the object went"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_watcher_gets_partial_objects() -> TestResult {
    let server = Server::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(client(&server)?, "default");
    api.create(&PostParams::default(), &configmap("meta", "metadata")?)
        .await?;
    // `Api<PartialObjectMeta<_>>` sends metadata-only requests (as=PartialObjectMetadata).
    let metadata: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client(&server)?, "default");
    let mut events = watcher(metadata, watcher::Config::default().labels("app=metadata")).boxed();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, events.try_next()).await?? {
            Some(watcher::Event::InitApply(object) | watcher::Event::Apply(object)) => {
                assert_eq!(object.metadata.name.as_deref(), Some("meta"));
                break;
            }
            Some(_) => {}
            None => anyhow::bail!("the metadata watcher ended"),
        }
    }
    Ok(())
}
