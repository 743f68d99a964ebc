//! `service-catalog controller-manager` end to end: the real binary against the real API server,
//! with the reference broker (and an `openbrokerapi` peer) over HTTP. Registered brokers become
//! classes and plans that follow the catalog; failures are conditions with reasons and back off;
//! a second replica takes over from a killed leader.

mod common;

use std::time::Duration;

use catalog_api::{ClusterServiceBroker, ServiceBrokerStatus};
use common::{ApiServer, eventually};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use test_support::ServerProcess;

use common::controller_manager as controller;

fn dynamic(client: &Client, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = match kind {
        "ClusterServiceClass" => {
            kube::api::ApiResource::erase::<catalog_api::ClusterServiceClass>(&())
        }
        "ClusterServicePlan" => {
            kube::api::ApiResource::erase::<catalog_api::ClusterServicePlan>(&())
        }
        "ServiceClass" => kube::api::ApiResource::erase::<catalog_api::ServiceClass>(&()),
        "ServicePlan" => kube::api::ApiResource::erase::<catalog_api::ServicePlan>(&()),
        _ => kube::api::ApiResource::erase::<catalog_api::ServiceInstance>(&()),
    };
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Objects of `kind` belonging to `broker`, by name.
async fn owned(
    client: &Client,
    kind: &str,
    namespace: Option<&str>,
    broker: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, Value>> {
    let field = if namespace.is_some() {
        "spec.serviceBrokerName"
    } else {
        "spec.clusterServiceBrokerName"
    };
    let list = dynamic(client, kind, namespace)
        .list(&ListParams::default().fields(&format!("{field}={broker}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .map(|o| {
            let name = o.metadata.name.clone().unwrap_or_default();
            (name, serde_json::to_value(&o).unwrap_or_default())
        })
        .collect())
}

fn status(broker: &ClusterServiceBroker) -> ServiceBrokerStatus {
    broker.status.clone().unwrap_or_default()
}

/// The broker's Ready condition as (status, reason, message).
fn ready(broker: &ClusterServiceBroker) -> Option<(String, String, String)> {
    catalog_api::condition(&status(broker).conditions, "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn register(
    client: &Client,
    name: &str,
    url: &str,
    auth: Option<(&str, &str)>,
) -> anyhow::Result<()> {
    let mut spec = json!({"url": url, "relistBehavior": "Manual"});
    if let Some((namespace, secret)) = auth {
        spec["authInfo"] =
            json!({"basic": {"secretRef": {"namespace": namespace, "name": secret}}});
    }
    let broker: ClusterServiceBroker =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?;
    Api::<ClusterServiceBroker>::all(client.clone())
        .create(&PostParams::default(), &broker)
        .await?;
    Ok(())
}

async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(())
}

async fn basic_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    password: &str,
) -> anyhow::Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"username": "admin", "password": password}}))?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

async fn bump_relist(client: &Client, name: &str, to: i64) -> anyhow::Result<i64> {
    let brokers = Api::<ClusterServiceBroker>::all(client.clone());
    let patched = brokers
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"relistRequests": to}})),
        )
        .await?;
    Ok(patched.metadata.generation.unwrap_or(0))
}

/// Waits until the broker's status reflects generation `generation` with Ready=True.
async fn synced(
    client: &Client,
    name: &str,
    generation: i64,
) -> anyhow::Result<ClusterServiceBroker> {
    let brokers = Api::<ClusterServiceBroker>::all(client.clone());
    eventually("the broker to sync", || {
        let brokers = brokers.clone();
        async move {
            let broker = brokers.get(name).await?;
            let done = status(&broker).reconciled_generation == generation
                && ready(&broker).is_some_and(|(s, _, _)| s == "True");
            Ok(done.then_some(broker))
        }
    })
    .await
}

fn reference_broker_config(catalog: osb_client::Catalog) -> reference_broker::BrokerConfig {
    reference_broker::BrokerConfig {
        catalog: reference_broker::BrokerCatalog { catalog },
        credentials: Some(reference_broker::BasicCredentials {
            username: "admin".into(),
            password: "secret".into(),
        }),
        ..reference_broker::BrokerConfig::demo()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_broker_becomes_classes_and_plans_that_follow_its_catalog()
-> anyhow::Result<()> {
    let api = ApiServer::start().await?;
    let client = api.client().await?;
    let catalog = reference_broker::demo_catalog();
    let broker = reference_broker::start(
        reference_broker_config(catalog.clone()),
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let address: std::net::SocketAddr = broker
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()?;
    let _controller = controller(&api, &["--leader-elect=false"]).await?;
    create_namespace(&client, "ops").await?;
    basic_secret(&client, "ops", "broker-auth", "secret").await?;
    register(&client, "ref", broker.url(), Some(("ops", "broker-auth"))).await?;

    let registered = synced(&client, "ref", 1).await?;
    let (_, reason, message) = ready(&registered).unwrap_or_default();
    assert_eq!(reason, "FetchedCatalog");
    assert_eq!(message, "Successfully fetched catalog entries from broker.");
    assert!(status(&registered).last_catalog_retrieval_time.is_some());
    let classes = owned(&client, "ClusterServiceClass", None, "ref").await?;
    let plans = owned(&client, "ClusterServicePlan", None, "ref").await?;
    assert_eq!(classes.len(), catalog.services.len());
    assert_eq!(
        plans.len(),
        catalog
            .services
            .iter()
            .map(|s| s.plans.len())
            .sum::<usize>()
    );
    for service in &catalog.services {
        let class = &classes[&service.id]["spec"];
        assert_eq!(class["externalName"], service.name.as_str());
        assert_eq!(class["externalID"], service.id.as_str());
        assert_eq!(class["description"], service.description.as_str());
        assert_eq!(class["bindable"], service.bindable);
        assert_eq!(
            class["planUpdatable"],
            service.plan_updateable.unwrap_or(false)
        );
        for plan in &service.plans {
            let object = &plans[&plan.id]["spec"];
            assert_eq!(object["externalName"], plan.name.as_str());
            assert_eq!(
                object["clusterServiceClassRef"]["name"],
                service.id.as_str()
            );
            assert_eq!(object["free"], plan.free.unwrap_or(true));
            assert_eq!(
                object.get("instanceCreateParameterSchema"),
                plan.instance_create_schema(),
                "plan {}",
                plan.name
            );
        }
    }

    // An instance uses the HA plan (the controller of instances records that in /reference).
    let mariadb = catalog
        .services
        .iter()
        .find(|s| s.name == "mariadb")
        .ok_or_else(|| anyhow::anyhow!("no mariadb in the demo catalog"))?;
    let ha = mariadb
        .plans
        .iter()
        .find(|p| p.name == "10-1-26-ha")
        .ok_or_else(|| anyhow::anyhow!("no HA plan"))?;
    let instances = dynamic(&client, "ServiceInstance", Some("default"));
    let instance: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ServiceInstance",
        "metadata": {"name": "uses-ha"},
        "spec": {"clusterServiceClassExternalName": "mariadb", "clusterServicePlanExternalName": "10-1-26-ha"}}))?;
    instances.create(&PostParams::default(), &instance).await?;
    instances
        .patch_subresource(
            "reference",
            "uses-ha",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"clusterServiceClassRef": {"name": mariadb.id},
                                          "clusterServicePlanRef": {"name": ha.id}}}),
            ),
        )
        .await?;

    // The broker's catalog changes: the HA plan and the user-provided service go, mariadb's
    // description changes.
    let mut changed = catalog.clone();
    changed
        .services
        .retain(|s| s.name != "user-provided-service");
    for service in &mut changed.services {
        if service.name == "mariadb" {
            service.description = "MariaDB, now better".into();
            service.plans.retain(|p| p.name != "10-1-26-ha");
        }
    }
    broker.shutdown().await?;
    let broker = reference_broker::start(reference_broker_config(changed), address).await?;
    let generation = bump_relist(&client, "ref", 1).await?;
    synced(&client, "ref", generation).await?;
    let classes = owned(&client, "ClusterServiceClass", None, "ref").await?;
    let plans = owned(&client, "ClusterServicePlan", None, "ref").await?;
    assert_eq!(
        classes[&mariadb.id]["spec"]["description"],
        "MariaDB, now better"
    );
    assert_eq!(
        classes.len(),
        catalog.services.len() - 1,
        "the unused service is gone"
    );
    assert_eq!(
        plans[&ha.id]["status"]["removedFromBrokerCatalog"], true,
        "the plan in use is flagged, not deleted"
    );
    assert_eq!(
        plans[&mariadb.plans[0].id]["status"]["removedFromBrokerCatalog"],
        false
    );

    // Once no instance uses it, the next relist deletes it.
    instances
        .delete("uses-ha", &DeleteParams::default())
        .await?;
    // Its finalizer is dropped by hand (the broker no longer knows the plan); the controller may
    // have finished with it first, so it may be gone already.
    match instances
        .patch(
            "uses-ha",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => return Err(error.into()),
    }
    let generation = bump_relist(&client, "ref", 2).await?;
    synced(&client, "ref", generation).await?;
    let plans = owned(&client, "ClusterServicePlan", None, "ref").await?;
    assert!(
        !plans.contains_key(&ha.id),
        "the unused removed plan is deleted"
    );

    // A relist with no change writes no class or plan.
    let versions = |objects: &std::collections::BTreeMap<String, Value>| -> Vec<Value> {
        objects
            .values()
            .map(|o| o["metadata"]["resourceVersion"].clone())
            .collect()
    };
    let before = (
        versions(&owned(&client, "ClusterServiceClass", None, "ref").await?),
        versions(&plans),
    );
    let generation = bump_relist(&client, "ref", 3).await?;
    synced(&client, "ref", generation).await?;
    let after = (
        versions(&owned(&client, "ClusterServiceClass", None, "ref").await?),
        versions(&owned(&client, "ClusterServicePlan", None, "ref").await?),
    );
    assert_eq!(before, after);

    // Deleting the broker removes its classes and plans, then the broker.
    Api::<ClusterServiceBroker>::all(client.clone())
        .delete("ref", &DeleteParams::default())
        .await?;
    eventually("the broker and its catalog to go", || {
        let client = client.clone();
        async move {
            let gone = Api::<ClusterServiceBroker>::all(client.clone())
                .get_opt("ref")
                .await?
                .is_none()
                && owned(&client, "ClusterServiceClass", None, "ref")
                    .await?
                    .is_empty()
                && owned(&client, "ClusterServicePlan", None, "ref")
                    .await?
                    .is_empty();
            Ok(gone.then_some(()))
        }
    })
    .await?;

    // Catalog restrictions: only what the broker's filters let through becomes objects (the
    // full demo catalog again: two offerings, a free and a paid mariadb plan).
    let full = reference_broker::start(
        reference_broker_config(catalog.clone()),
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let picky: ClusterServiceBroker = serde_json::from_value(json!({
        "metadata": {"name": "picky"},
        "spec": {"url": full.url(), "relistBehavior": "Manual",
                 "authInfo": {"basic": {"secretRef": {"namespace": "ops", "name": "broker-auth"}}},
                 "catalogRestrictions": {"serviceClass": ["spec.externalName in (mariadb, redis)"],
                                         "servicePlan": ["spec.free=true"]}}}))?;
    Api::<ClusterServiceBroker>::all(client.clone())
        .create(&PostParams::default(), &picky)
        .await?;
    synced(&client, "picky", 1).await?;
    let classes = owned(&client, "ClusterServiceClass", None, "picky").await?;
    let plans = owned(&client, "ClusterServicePlan", None, "picky").await?;
    let names = |objects: &std::collections::BTreeMap<String, Value>| -> Vec<String> {
        objects
            .values()
            .map(|o| {
                o["spec"]["externalName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(names(&classes), ["mariadb"]);
    assert_eq!(
        names(&plans),
        ["10-1-26"],
        "the non-free plan is filtered out"
    );
    full.shutdown().await?;
    broker.shutdown().await?;
    Ok(())
}

async fn metric(url: &str, name: &str, label: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn failing(client: &Client, name: &str, reason: &str) -> anyhow::Result<String> {
    let brokers = Api::<ClusterServiceBroker>::all(client.clone());
    eventually(&format!("{name} to fail with {reason}"), || {
        let brokers = brokers.clone();
        async move {
            let broker = brokers.get(name).await?;
            Ok(ready(&broker)
                .filter(|(s, r, _)| s == "False" && r == reason)
                .map(|(_, _, message)| message))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_failures_are_conditions_with_reasons_and_retries_back_off() -> anyhow::Result<()> {
    let api = ApiServer::start().await?;
    let client = api.client().await?;
    let broker = reference_broker::start(
        reference_broker_config(reference_broker::demo_catalog()),
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let manager = controller(&api, &["--leader-elect=false"]).await?;
    create_namespace(&client, "ops").await?;
    basic_secret(&client, "ops", "wrong", "not-the-password").await?;

    register(
        &client,
        "wrong-password",
        broker.url(),
        Some(("ops", "wrong")),
    )
    .await?;
    let message = failing(&client, "wrong-password", "ErrorFetchingCatalog").await?;
    assert!(message.contains("401"), "{message}");

    register(&client, "no-secret", broker.url(), Some(("ops", "missing"))).await?;
    let message = failing(&client, "no-secret", "ErrorGettingAuthCredentials").await?;
    assert!(message.contains("ops/missing"), "{message}");

    let down = test_support::refused_url()?;
    register(&client, "down", &down, None).await?;
    failing(&client, "down", "ErrorFetchingCatalog").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = metric(
        &manager.url,
        "servicecatalog_osb_requests_total",
        "broker=\"down\"",
    )
    .await?;
    // 200 ms doubling: about five attempts in three seconds; a hot loop would make hundreds.
    assert!(
        (2.0..=8.0).contains(&attempts),
        "{attempts} attempts in 3 s"
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await?;
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ErrorFetchingCatalog")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("down")),
        "a warning event names the broker"
    );

    // relistBehavior: Duration fetches the catalog again every relistDuration.
    basic_secret(&client, "ops", "good", "secret").await?;
    let periodic: ClusterServiceBroker = serde_json::from_value(json!({
        "metadata": {"name": "periodic"},
        "spec": {"url": broker.url(), "relistBehavior": "Duration", "relistDuration": "1s",
                 "authInfo": {"basic": {"secretRef": {"namespace": "ops", "name": "good"}}}}}))?;
    Api::<ClusterServiceBroker>::all(client.clone())
        .create(&PostParams::default(), &periodic)
        .await?;
    let first = synced(&client, "periodic", 1).await?;
    let first_time = status(&first).last_catalog_retrieval_time;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let fetches = metric(
        &manager.url,
        "servicecatalog_osb_requests_total",
        "broker=\"periodic\"",
    )
    .await?;
    assert!(
        fetches >= 3.0,
        "{fetches} fetches in 3.5 s with relistDuration 1s"
    );
    let later = Api::<ClusterServiceBroker>::all(client.clone())
        .get("periodic")
        .await?;
    assert_ne!(status(&later).last_catalog_retrieval_time, first_time);

    // A namespaced broker fills its own namespace.
    create_namespace(&client, "team").await?;
    let namespaced: catalog_api::ServiceBroker = serde_json::from_value(json!({
        "metadata": {"name": "local", "namespace": "team"},
        "spec": {"url": broker.url(), "authInfo": {"basic": {"secretRef": {"name": "creds"}}}}}))?;
    basic_secret(&client, "team", "creds", "secret").await?;
    Api::<catalog_api::ServiceBroker>::namespaced(client.clone(), "team")
        .create(&PostParams::default(), &namespaced)
        .await?;
    let classes = eventually("namespaced classes", || {
        let client = client.clone();
        async move {
            let classes = owned(&client, "ServiceClass", Some("team"), "local").await?;
            Ok((classes.len() == 2).then_some(classes))
        }
    })
    .await?;
    assert!(
        classes
            .values()
            .any(|c| c["spec"]["externalName"] == "mariadb")
    );
    let plans = eventually("namespaced plans", || {
        let client = client.clone();
        async move {
            let plans = owned(&client, "ServicePlan", Some("team"), "local").await?;
            Ok((plans.len() == 3).then_some(plans))
        }
    })
    .await?;
    assert!(
        plans
            .values()
            .all(|p| p["spec"]["serviceClassRef"]["name"].is_string())
    );

    // A real peer: a broker built on PyPI openbrokerapi.
    let script = test_support::workspace_root().join("tests/interop/openbrokerapi_broker.py");
    let mut command = tokio::process::Command::new(test_support::python()?);
    command.arg(&script).args([
        "--port",
        "0",
        "--username",
        "admin",
        "--password",
        "secret",
        "--quiet",
        "--exit-on-stdin-eof",
    ]);
    let peer = ServerProcess::spawn(command).await?;
    basic_secret(&client, "ops", "peer", "secret").await?;
    register(&client, "peer", &peer.url, Some(("ops", "peer"))).await?;
    synced(&client, "peer", 1).await?;
    let classes = owned(&client, "ClusterServiceClass", None, "peer").await?;
    assert!(classes.contains_key("interop-service-id"), "{classes:?}");
    let plans = owned(&client, "ClusterServicePlan", None, "peer").await?;
    assert!(plans.contains_key("interop-plan-id"), "{plans:?}");

    // The whole cycle against the peer: provision (it answers asynchronously), bind, unbind,
    // deprovision.
    let instances: Api<catalog_api::ServiceInstance> = Api::namespaced(client.clone(), "default");
    let bindings: Api<catalog_api::ServiceBinding> = Api::namespaced(client.clone(), "default");
    let instance: catalog_api::ServiceInstance = serde_json::from_value(json!({
        "metadata": {"name": "peer-db"},
        "spec": {"clusterServiceClassExternalName": "interop-db", "clusterServicePlanExternalName": "small"}}))?;
    instances.create(&PostParams::default(), &instance).await?;
    eventually("the peer's instance", || {
        let instances = instances.clone();
        async move {
            let instance = instances.get("peer-db").await?;
            let status = instance.status.unwrap_or_default();
            Ok(catalog_api::condition(&status.conditions, "Ready")
                .filter(|c| c.status == "True")
                .map(|_| ()))
        }
    })
    .await?;
    let binding: catalog_api::ServiceBinding = serde_json::from_value(json!({
        "metadata": {"name": "peer-binding"}, "spec": {"instanceRef": {"name": "peer-db"}}}))?;
    let binding = bindings.create(&PostParams::default(), &binding).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret = eventually("the peer's credentials", || {
        let secrets = secrets.clone();
        async move { Ok(secrets.get_opt("peer-binding").await?) }
    })
    .await?;
    let uri = secret
        .data
        .unwrap_or_default()
        .get("uri")
        .map(|v| v.0.clone())
        .unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&uri),
        format!("interop://{}", binding.spec.external_id)
    );
    bindings
        .delete("peer-binding", &DeleteParams::default())
        .await?;
    instances
        .delete("peer-db", &DeleteParams::default())
        .await?;
    eventually("the peer's instance to go", || {
        let (instances, bindings, secrets) = (instances.clone(), bindings.clone(), secrets.clone());
        async move {
            let gone = instances.get_opt("peer-db").await?.is_none()
                && bindings.get_opt("peer-binding").await?.is_none()
                && secrets.get_opt("peer-binding").await?.is_none();
            Ok(gone.then_some(()))
        }
    })
    .await?;
    broker.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_controller_takes_over_when_the_leader_is_killed() -> anyhow::Result<()> {
    let api = ApiServer::start().await?;
    let client = api.client().await?;
    let broker = reference_broker::start(
        reference_broker::BrokerConfig::demo(),
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let election = [
        "--leader-elect-lease-duration",
        "3s",
        "--leader-elect-renew-interval",
        "500ms",
    ];
    let first = controller(&api, &election).await?;
    let second = controller(&api, &election).await?;
    let leader_gauge = "servicecatalog_controller_leader ";
    let (leader, follower) = eventually("one leader", || {
        let (a, b) = (first.url.clone(), second.url.clone());
        async move {
            let (x, y) = (
                metric(&a, leader_gauge, "").await?,
                metric(&b, leader_gauge, "").await?,
            );
            Ok(match (x as i64, y as i64) {
                (1, 0) => Some((0, 1)),
                (0, 1) => Some((1, 0)),
                _ => None,
            })
        }
    })
    .await?;
    let mut processes = [Some(first), Some(second)];
    register(&client, "before", broker.url(), None).await?;
    synced(&client, "before", 1).await?;
    // Exactly one acts: the follower still waits.
    let follower_url = processes[follower]
        .as_ref()
        .map(|p| p.url.clone())
        .unwrap_or_default();
    assert_eq!(metric(&follower_url, leader_gauge, "").await?, 0.0);

    // The same offerings from a second broker are a conflict, said as such.
    register(&client, "same-ids", broker.url(), None).await?;
    let message = failing(&client, "same-ids", "ErrorSyncingCatalog").await?;
    assert!(
        message.contains("already offered by another broker"),
        "{message}"
    );

    if let Some(process) = processes[leader].take() {
        process.kill().await?;
    }
    let mut other = reference_broker::demo_catalog();
    for service in &mut other.services {
        service.id = format!("other-{}", service.id);
        for plan in &mut service.plans {
            plan.id = format!("other-{}", plan.id);
        }
    }
    let other_broker = reference_broker::start(
        reference_broker::BrokerConfig {
            catalog: reference_broker::BrokerCatalog { catalog: other },
            ..reference_broker::BrokerConfig::demo()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    register(&client, "after", other_broker.url(), None).await?;
    synced(&client, "after", 1).await?;
    assert_eq!(
        owned(&client, "ClusterServiceClass", None, "after")
            .await?
            .len(),
        2
    );
    assert_eq!(metric(&follower_url, leader_gauge, "").await?, 1.0);
    broker.shutdown().await?;
    other_broker.shutdown().await?;
    Ok(())
}
