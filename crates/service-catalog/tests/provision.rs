//! Instances and bindings end to end: the real API server and controller manager with the
//! reference broker over HTTP. Provision sync and async, parameters from a Secret (redacted in
//! the status) checked against the plan's schema before any broker call, update, bind into a
//! Secret with transforms, deletion blocked by bindings, unbind, deprovision.

mod common;

use std::time::Duration;

use catalog_api::{ServiceBinding, ServiceInstance};
use common::{ApiServer, eventually};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use test_support::{ServerProcess, broker_fault as fault};

/// The reason of a condition of `type_` that has `status`.
fn condition(
    conditions: &[catalog_api::Condition],
    type_: &str,
    status: &str,
) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| (c.reason.clone(), c.message.clone()))
}

async fn instance_with(
    api: &Api<ServiceInstance>,
    name: &str,
    type_: &str,
    status: &str,
) -> anyhow::Result<(ServiceInstance, String, String)> {
    eventually(&format!("{name} {type_}={status}"), || async {
        let instance = api.get(name).await?;
        let found = condition(
            &instance.status.clone().unwrap_or_default().conditions,
            type_,
            status,
        );
        Ok(found.map(|(reason, message)| (instance, reason, message)))
    })
    .await
}

async fn gone<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let waited = eventually(&format!("{name} to go"), || async {
        Ok(api.get_opt(name).await?.is_none().then_some(()))
    })
    .await;
    if waited.is_err() {
        // Say what it is stuck on.
        let stuck = serde_json::to_value(api.get_opt(name).await?)?;
        anyhow::bail!(
            "{name} did not go: finalizers {} deletion {} status {:#}",
            stuck["metadata"]["finalizers"],
            stuck["metadata"]["deletionTimestamp"],
            stuck["status"]
        );
    }
    Ok(())
}

struct Setup {
    api: ApiServer,
    controller: Option<ServerProcess>,
    broker: reference_broker::RunningBroker,
    client: Client,
}

/// The controller manager, as its own process (so that a test can kill it).
async fn start_controller(api: &ApiServer) -> anyhow::Result<ServerProcess> {
    start_controller_with(api, &[]).await
}

async fn start_controller_with(api: &ApiServer, extra: &[&str]) -> anyhow::Result<ServerProcess> {
    let mut args = vec!["--leader-elect=false", "--polling-interval", "200ms"];
    args.extend_from_slice(extra);
    common::controller_manager(api, &args).await
}

async fn setup() -> anyhow::Result<Setup> {
    setup_with(reference_broker::BrokerConfig {
        tuning: reference_broker::Tuning {
            operation_ms: Some(1500),
        },
        ..reference_broker::BrokerConfig::demo()
    })
    .await
}

/// The demo catalog with changes made to its JSON.
fn demo_catalog_with(
    change: impl FnOnce(&mut Value),
) -> anyhow::Result<reference_broker::BrokerCatalog> {
    let mut catalog = serde_json::to_value(reference_broker::demo_catalog())?;
    change(&mut catalog);
    Ok(reference_broker::BrokerCatalog::new(
        serde_json::from_value(catalog)?,
    )?)
}

async fn setup_with(config: reference_broker::BrokerConfig) -> anyhow::Result<Setup> {
    let api = ApiServer::start().await?;
    let client = api.client().await?;
    let broker = reference_broker::start(config, "127.0.0.1:0".parse()?).await?;
    let controller = start_controller(&api).await?;
    let registration: catalog_api::ClusterServiceBroker = serde_json::from_value(json!({
        "metadata": {"name": "ref"}, "spec": {"url": broker.url()}}))?;
    Api::<catalog_api::ClusterServiceBroker>::all(client.clone())
        .create(&PostParams::default(), &registration)
        .await?;
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "shop"}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(Setup {
        api,
        controller: Some(controller),
        broker,
        client,
    })
}

fn instance(name: &str, plan: &str, spec: Value) -> anyhow::Result<ServiceInstance> {
    let mut full = json!({"clusterServiceClassExternalName": "mariadb", "clusterServicePlanExternalName": plan});
    if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        full.extend(extra.clone());
    }
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name}, "spec": full}),
    )?)
}

/// What the broker holds for an instance (its parameters), or `None` when it has none.
async fn at_broker(broker_url: &str, instance_id: &str) -> anyhow::Result<Option<Value>> {
    let client = osb_client::Client::new(osb_client::ClientConfig::new(broker_url)?)?;
    match client.fetch_instance(instance_id, None, None).await {
        Ok(fetched) => Ok(Some(fetched.parameters.unwrap_or(Value::Null))),
        Err(error) if error.status() == Some(404) || error.is_gone() => Ok(None),
        Err(error) => Err(error.into()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_provision_update_bind_and_go_away_in_order() -> anyhow::Result<()> {
    let setup = setup().await?;
    let client = &setup.client;
    let instances: Api<ServiceInstance> = Api::namespaced(client.clone(), "shop");
    let bindings: Api<ServiceBinding> = Api::namespaced(client.clone(), "shop");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "shop");
    let params: Secret = serde_json::from_value(json!({"metadata": {"name": "db-params"},
        "stringData": {"extra": "{\"engine\": \"aria\"}"}}))?;
    secrets.create(&PostParams::default(), &params).await?;

    // Sync provision, parameters inline and from a Secret.
    let db = instance(
        "db",
        "10-1-26",
        json!({"parameters": {"storageGB": 10},
               "parametersFrom": [{"secretKeyRef": {"name": "db-params", "key": "extra"}}]}),
    )?;
    instances.create(&PostParams::default(), &db).await?;
    let (db, reason, _) = instance_with(&instances, "db", "Ready", "True").await?;
    assert_eq!(reason, "ProvisionedSuccessfully");
    let status = db.status.clone().unwrap_or_default();
    assert_eq!(status.provision_status, "Provisioned");
    assert_eq!(status.deprovision_status, "Required");
    assert_eq!(status.reconciled_generation, 1);
    assert!(status.current_operation.is_empty());
    let external = status.external_properties.clone().unwrap_or_default();
    assert_eq!(external.cluster_service_plan_external_name, "10-1-26");
    assert_eq!(
        external.parameters,
        Some(json!({"storageGB": 10, "engine": "<redacted>"})),
        "values from Secrets are redacted in the status"
    );
    assert_eq!(external.parameter_checksum.len(), 64);
    assert_eq!(
        db.spec
            .cluster_service_class_ref
            .as_ref()
            .map(|r| r.name.as_str()),
        Some("3f1b6a2e-6c5d-4b8e-9a55-0d1f7e6f3a10")
    );
    let held = at_broker(setup.broker.url(), &db.spec.external_id).await?;
    assert_eq!(
        held,
        Some(json!({"storageGB": 10, "engine": "aria"})),
        "the broker got the secret values"
    );

    // Parameters that break the plan's schema fail before any broker call.
    let bad = instance("bad", "10-1-26", json!({"parameters": {"storageGB": 5000}}))?;
    let bad = instances.create(&PostParams::default(), &bad).await?;
    let (_, reason, message) = instance_with(&instances, "bad", "Failed", "True").await?;
    assert_eq!(reason, "ErrorWithParameters");
    assert!(message.contains("storageGB"), "{message}");
    assert_eq!(
        at_broker(setup.broker.url(), &bad.spec.external_id).await?,
        None
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "shop")
        .list(&Default::default())
        .await?;
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ErrorWithParameters")
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bad")),
        "a warning event says why"
    );

    // Async provision, polled to the end.
    let ha = instance("ha", "10-1-26-ha", json!({}))?;
    instances.create(&PostParams::default(), &ha).await?;
    let (ha, reason, _) = instance_with(&instances, "ha", "Ready", "True").await?;
    assert_eq!(reason, "ProvisionedSuccessfully");
    let ha_status = ha.status.clone().unwrap_or_default();
    assert!(!ha_status.async_op_in_progress && ha_status.last_operation.is_none());

    // Bumping updateRequests sends an update (asynchronous for this plan) without a spec change.
    instances
        .patch(
            "ha",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"updateRequests": 1}})),
        )
        .await?;
    let ha = eventually("the requested update", || async {
        let ha = instances.get("ha").await?;
        let status = ha.status.clone().unwrap_or_default();
        Ok(
            (status.reconciled_generation == 2 && status.current_operation.is_empty())
                .then_some(ha),
        )
    })
    .await?;
    let (reason, _) = condition(
        &ha.status.clone().unwrap_or_default().conditions,
        "Ready",
        "True",
    )
    .unwrap_or_default();
    assert_eq!(reason, "InstanceUpdatedSuccessfully");

    // An update on a spec change.
    instances
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"parameters": {"storageGB": 20}}})),
        )
        .await?;
    let db = eventually("the update", || async {
        let db = instances.get("db").await?;
        let status = db.status.clone().unwrap_or_default();
        Ok((status.reconciled_generation == 2).then_some(db))
    })
    .await?;
    let (reason, _) = condition(
        &db.status.clone().unwrap_or_default().conditions,
        "Ready",
        "True",
    )
    .unwrap_or_default();
    assert_eq!(reason, "InstanceUpdatedSuccessfully");
    let held = at_broker(setup.broker.url(), &db.spec.external_id).await?;
    assert_eq!(
        held.as_ref().and_then(|p| p.get("storageGB")),
        Some(&json!(20))
    );

    // Bind, with transforms, into a Secret the binding owns.
    let binding: ServiceBinding = serde_json::from_value(json!({
        "metadata": {"name": "db-binding"},
        "spec": {"instanceRef": {"name": "db"}, "parameters": {"readOnly": true},
                 "secretTransforms": [
                     {"renameKey": {"from": "uri", "to": "DATABASE_URL"}},
                     {"addKey": {"key": "endpoint", "jsonPathExpression": "{.host}:{.port}"}},
                     {"removeKey": {"key": "database"}}]}}))?;
    bindings.create(&PostParams::default(), &binding).await?;
    let bound = eventually("the binding", || async {
        let binding = bindings.get("db-binding").await?;
        let ready = condition(
            &binding.status.clone().unwrap_or_default().conditions,
            "Ready",
            "True",
        );
        Ok(ready.map(|(reason, _)| (binding, reason)))
    })
    .await?;
    assert_eq!(bound.1, "InjectedBindResult");
    let secret = secrets.get("db-binding").await?;
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    };
    assert!(text("DATABASE_URL").starts_with("mysql://ro_"), "{data:?}");
    assert!(text("username").starts_with("ro_"));
    assert!(text("endpoint").ends_with(":3306"));
    assert!(!data.contains_key("uri") && !data.contains_key("database"));
    assert_eq!(
        secret.metadata.owner_references.map(|o| o[0].name.clone()),
        Some("db-binding".into())
    );

    // The instance waits for its bindings before it deprovisions.
    instances.delete("db", &DeleteParams::default()).await?;
    let (_, reason, _) = instance_with(&instances, "db", "Ready", "False").await?;
    assert_eq!(reason, "DeprovisionBlockedByExistingCredentials");
    assert!(
        at_broker(setup.broker.url(), &db.spec.external_id)
            .await?
            .is_some()
    );
    bindings
        .delete("db-binding", &DeleteParams::default())
        .await?;
    gone(&bindings, "db-binding").await?;
    assert!(
        secrets.get_opt("db-binding").await?.is_none(),
        "the credentials Secret went with the binding"
    );
    gone(&instances, "db").await?;
    assert_eq!(
        at_broker(setup.broker.url(), &db.spec.external_id).await?,
        None,
        "deprovisioned at the broker"
    );

    // Asynchronous bindings: polled, then the credentials fetched; unbind polled too.
    let ha_binding: ServiceBinding = serde_json::from_value(json!({
        "metadata": {"name": "ha-binding"}, "spec": {"instanceRef": {"name": "ha"}}}))?;
    bindings.create(&PostParams::default(), &ha_binding).await?;
    eventually("the asynchronous binding", || async {
        let binding = bindings.get("ha-binding").await?;
        Ok(condition(
            &binding.status.clone().unwrap_or_default().conditions,
            "Ready",
            "True",
        ))
    })
    .await?;
    let secret = secrets.get("ha-binding").await?;
    assert!(secret.data.unwrap_or_default().contains_key("password"));
    bindings
        .delete("ha-binding", &DeleteParams::default())
        .await?;
    gone(&bindings, "ha-binding").await?;
    assert!(secrets.get_opt("ha-binding").await?.is_none());

    // Async deprovision; and a failed instance the broker never had just goes.
    instances.delete("ha", &DeleteParams::default()).await?;
    instances.delete("bad", &DeleteParams::default()).await?;
    gone(&instances, "ha").await?;
    gone(&instances, "bad").await?;
    assert_eq!(
        at_broker(setup.broker.url(), &ha.spec.external_id).await?,
        None
    );
    Ok(())
}

/// How many requests the broker saw with this method for paths containing `id`.
async fn requests(broker: &str, method: &str, id: &str) -> anyhow::Result<usize> {
    let text = reqwest::get(format!("{broker}/admin/requests"))
        .await?
        .text()
        .await?;
    let recorded: Vec<Value> = serde_json::from_str(&text)?;
    Ok(recorded
        .iter()
        .filter(|r| r["method"] == method && r["path"].as_str().is_some_and(|p| p.ends_with(id)))
        .count())
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_failures_take_the_paths_the_spec_sets() -> anyhow::Result<()> {
    let setup = setup().await?;
    let url = setup.broker.url().trim_end_matches('/').to_owned();
    let instances: Api<ServiceInstance> = Api::namespaced(setup.client.clone(), "shop");
    let bindings: Api<ServiceBinding> = Api::namespaced(setup.client.clone(), "shop");

    // 500 twice: each time the broker may have created it, so it is deprovisioned (orphan
    // mitigation), then provisioning is retried with the same ID until it works.
    fault(
        &url,
        json!({"endpoint": "provision", "times": 2,
        "response": {"kind": "error", "status": 500, "description": "boom"}}),
    )
    .await?;
    instances
        .create(
            &PostParams::default(),
            &instance("flaky", "10-1-26", json!({}))?,
        )
        .await?;
    let (flaky, _, _) = instance_with(&instances, "flaky", "Ready", "True").await?;
    let id = flaky.spec.external_id.clone();
    assert_eq!(
        requests(&url, "PUT", &id).await?,
        3,
        "two failures, one success, one ID"
    );
    assert_eq!(
        requests(&url, "DELETE", &id).await?,
        2,
        "each 500 was mitigated"
    );
    let conditions = flaky.status.clone().unwrap_or_default().conditions;
    assert_eq!(
        condition(&conditions, "OrphanMitigation", "False").map(|c| c.0),
        Some("OrphanMitigationSuccessful".into())
    );

    // 400: the broker refused; Failed with its description, and no retry.
    fault(
        &url,
        json!({"endpoint": "provision", "times": 1,
        "response": {"kind": "error", "status": 400, "description": "no such region"}}),
    )
    .await?;
    let refused = instances
        .create(
            &PostParams::default(),
            &instance("refused", "10-1-26", json!({}))?,
        )
        .await?;
    let (_, reason, message) = instance_with(&instances, "refused", "Failed", "True").await?;
    assert_eq!(reason, "ProvisionCallFailed");
    assert!(message.contains("no such region"), "{message}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        requests(&url, "PUT", &refused.spec.external_id).await?,
        1,
        "a 400 is not retried"
    );

    // An asynchronous operation that fails at the broker.
    fault(&url, json!({"endpoint": "instance_last_operation", "times": 1,
        "response": {"kind": "raw", "body": "{\"state\": \"failed\", \"description\": \"disk on fire\"}"}})).await?;
    instances
        .create(
            &PostParams::default(),
            &instance("burns", "10-1-26-ha", json!({}))?,
        )
        .await?;
    let (_, reason, message) = instance_with(&instances, "burns", "Failed", "True").await?;
    assert_eq!(reason, "ProvisionCallFailed");
    assert!(message.contains("disk on fire"), "{message}");

    // A bind that fails once is retried; the credentials arrive.
    fault(
        &url,
        json!({"endpoint": "bind", "times": 1,
        "response": {"kind": "error", "status": 500, "description": "try again"}}),
    )
    .await?;
    let binding: ServiceBinding = serde_json::from_value(json!({
        "metadata": {"name": "flaky-binding"}, "spec": {"instanceRef": {"name": "flaky"}}}))?;
    bindings.create(&PostParams::default(), &binding).await?;
    eventually("the binding after a failed bind", || async {
        let binding = bindings.get("flaky-binding").await?;
        Ok(condition(
            &binding.status.clone().unwrap_or_default().conditions,
            "Ready",
            "True",
        ))
    })
    .await?;
    bindings
        .delete("flaky-binding", &DeleteParams::default())
        .await?;
    gone(&bindings, "flaky-binding").await?;

    // Deprovision failing twice, then working: the instance goes only when the broker agrees.
    fault(
        &url,
        json!({"endpoint": "deprovision", "times": 2,
        "response": {"kind": "error", "status": 500, "description": "busy"}}),
    )
    .await?;
    instances.delete("flaky", &DeleteParams::default()).await?;
    gone(&instances, "flaky").await?;
    assert_eq!(
        requests(&url, "DELETE", &id).await?,
        5,
        "two mitigations, two failures, one success"
    );

    // 410 Gone on deprovision counts as success.
    instances
        .create(
            &PostParams::default(),
            &instance("vanished", "10-1-26", json!({}))?,
        )
        .await?;
    instance_with(&instances, "vanished", "Ready", "True").await?;
    fault(
        &url,
        json!({"endpoint": "deprovision", "times": 1,
        "response": {"kind": "error", "status": 410, "description": "already gone"}}),
    )
    .await?;
    instances
        .delete("vanished", &DeleteParams::default())
        .await?;
    gone(&instances, "vanished").await?;
    Ok(())
}

/// A pseudo-random number of milliseconds in `range` (the clock's nanoseconds are enough here).
fn jitter(range: std::ops::Range<u64>) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_millis(range.start + nanos % (range.end - range.start))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_again_and_again_still_converges_without_duplicates()
-> anyhow::Result<()> {
    let mut setup = setup().await?;
    let url = setup.broker.url().trim_end_matches('/').to_owned();
    let instances: Api<ServiceInstance> = Api::namespaced(setup.client.clone(), "shop");
    let bindings: Api<ServiceBinding> = Api::namespaced(setup.client.clone(), "shop");
    let names: Vec<String> = (0..6).map(|i| format!("crash-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        // Half synchronous, half asynchronous (1.5 s operations at the broker).
        let plan = if i % 2 == 0 { "10-1-26" } else { "10-1-26-ha" };
        instances
            .create(&PostParams::default(), &instance(name, plan, json!({}))?)
            .await?;
        // Bindings of the HA plan are asynchronous too.
        let binding: ServiceBinding = serde_json::from_value(json!({
            "metadata": {"name": name}, "spec": {"instanceRef": {"name": name}}}))?;
        bindings.create(&PostParams::default(), &binding).await?;
    }
    // SIGKILL the controller at random moments while it provisions, polls and binds.
    for _ in 0..6 {
        tokio::time::sleep(jitter(150..700)).await;
        if let Some(controller) = setup.controller.take() {
            controller.kill().await?;
        }
        setup.controller = Some(start_controller(&setup.api).await?);
    }
    for name in &names {
        instance_with(&instances, name, "Ready", "True").await?;
    }
    for name in &names {
        eventually("a binding after the crashes", || async {
            let binding = bindings.get(name).await?;
            Ok(condition(
                &binding.status.clone().unwrap_or_default().conditions,
                "Ready",
                "True",
            ))
        })
        .await?;
    }
    // Every instance was provisioned under its one ID: the broker holds exactly these.
    let mut ids = Vec::new();
    for name in &names {
        let id = instances.get(name).await?.spec.external_id;
        assert!(
            at_broker(&url, &id).await?.is_some(),
            "{name} is at the broker"
        );
        ids.push(id);
    }
    // Updates (new parameters), with kills in between: each instance ends up reconciled at its
    // latest generation, and the broker holds the new parameters.
    for (i, name) in names.iter().enumerate() {
        instances
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"parameters": {"storageGB": 10 + i}}})),
            )
            .await?;
    }
    for _ in 0..4 {
        tokio::time::sleep(jitter(100..600)).await;
        if let Some(controller) = setup.controller.take() {
            controller.kill().await?;
        }
        setup.controller = Some(start_controller(&setup.api).await?);
    }
    for (i, name) in names.iter().enumerate() {
        eventually("an update after the crashes", || async {
            let instance = instances.get(name).await?;
            let status = instance.status.clone().unwrap_or_default();
            let settled = status.reconciled_generation == instance.metadata.generation.unwrap_or(0)
                && status.current_operation.is_empty()
                && condition(&status.conditions, "Ready", "True").is_some();
            Ok(settled.then_some(()))
        })
        .await?;
        let id = instances.get(name).await?.spec.external_id;
        assert_eq!(
            at_broker(&url, &id).await?,
            Some(json!({"storageGB": 10 + i})),
            "{name} was updated at the broker"
        );
    }
    // Deleting, with more kills in between, leaves no finalizer stuck and nothing at the broker.
    for name in &names {
        if bindings.get_opt(name).await?.is_some() {
            bindings.delete(name, &DeleteParams::default()).await?;
        }
        instances.delete(name, &DeleteParams::default()).await?;
    }
    for _ in 0..3 {
        tokio::time::sleep(jitter(100..400)).await;
        if let Some(controller) = setup.controller.take() {
            controller.kill().await?;
        }
        setup.controller = Some(start_controller(&setup.api).await?);
    }
    for name in &names {
        gone(&bindings, name).await?;
        gone(&instances, name).await?;
    }
    for id in &ids {
        assert_eq!(
            at_broker(&url, id).await?,
            None,
            "deprovisioned at the broker"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_stop_after_the_reconciliation_retry_duration() -> anyhow::Result<()> {
    let mut setup = setup().await?;
    if let Some(controller) = setup.controller.take() {
        controller.kill().await?;
    }
    setup.controller =
        Some(start_controller_with(&setup.api, &["--reconciliation-retry-duration", "2s"]).await?);
    let url = setup.broker.url().trim_end_matches('/').to_owned();
    fault(
        &url,
        json!({"endpoint": "provision",
        "response": {"kind": "error", "status": 503, "description": "down for maintenance"}}),
    )
    .await?;
    let instances: Api<ServiceInstance> = Api::namespaced(setup.client.clone(), "shop");
    instances
        .create(
            &PostParams::default(),
            &instance("patient", "10-1-26", json!({}))?,
        )
        .await?;
    let (_, reason, message) = instance_with(&instances, "patient", "Failed", "True").await?;
    assert_eq!(reason, "ErrorReconciliationRetryTimeout");
    assert!(message.contains("down for maintenance"), "{message}");
    let id = instances.get("patient").await?.spec.external_id;
    let attempts = requests(&url, "PUT", &id).await?;
    assert!(
        attempts >= 2,
        "it was retried before giving up ({attempts})"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(requests(&url, "PUT", &id).await?, attempts, "and not after");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operation_polled_past_the_plans_maximum_polling_duration_fails_and_is_mitigated()
-> anyhow::Result<()> {
    // The HA plan allows one second of polling; the broker takes three.
    let catalog = demo_catalog_with(|catalog| {
        catalog["services"][1]["plans"][1]["maximum_polling_duration"] = json!(1);
    })?;
    let setup = setup_with(reference_broker::BrokerConfig {
        catalog,
        tuning: reference_broker::Tuning {
            operation_ms: Some(3000),
        },
        ..reference_broker::BrokerConfig::demo()
    })
    .await?;
    let url = setup.broker.url().trim_end_matches('/').to_owned();
    let plans: Api<catalog_api::ClusterServicePlan> = Api::all(setup.client.clone());
    eventually("the plan's maximum polling duration", || async {
        let plan = plans
            .get_opt("c4f8b0d5-2e3a-4f6b-9c7d-8e9f0a1b2c3d")
            .await?;
        Ok(plan.and_then(|p| p.spec.common.maximum_polling_duration))
    })
    .await?;
    let instances: Api<ServiceInstance> = Api::namespaced(setup.client.clone(), "shop");
    let slow = instances
        .create(
            &PostParams::default(),
            &instance("slow", "10-1-26-ha", json!({}))?,
        )
        .await?;
    let (_, reason, message) = instance_with(&instances, "slow", "Failed", "True").await?;
    assert_eq!(reason, "ErrorMaximumPollingDurationExceeded");
    assert!(
        message.contains("maximum polling duration (1s)"),
        "{message}"
    );
    // The broker was still busy, so orphan mitigation is retried until it confirms; the
    // resource is gone from the broker in the end, without anyone deleting the instance.
    eventually("the orphan mitigation to be confirmed", || async {
        let status = instances.get("slow").await?.status.unwrap_or_default();
        Ok(condition(&status.conditions, "OrphanMitigation", "False")
            .filter(|(reason, _)| reason == "OrphanMitigationSuccessful"))
    })
    .await?;
    eventually("the orphan to go from the broker", || async {
        // While the broker deprovisions, it answers 422 ConcurrencyError: not gone yet.
        let gone = matches!(at_broker(&url, &slow.spec.external_id).await, Ok(None));
        Ok(gone.then_some(()))
    })
    .await?;
    instances.delete("slow", &DeleteParams::default()).await?;
    gone(&instances, "slow").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_info_goes_with_each_provision_and_an_update_upgrades_the_instance()
-> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let config = |version: &str| -> anyhow::Result<reference_broker::BrokerConfig> {
        let version = version.to_owned();
        Ok(reference_broker::BrokerConfig {
            catalog: demo_catalog_with(move |catalog| {
                catalog["services"][1]["plans"][0]["maintenance_info"] =
                    json!({"version": version, "description": format!("MariaDB {version}")});
            })?,
            state_file: Some(state.path().join("broker.db")),
            ..reference_broker::BrokerConfig::demo()
        })
    };
    let mut setup = setup_with(config("10.1.26")?).await?;
    let url = setup.broker.url().trim_end_matches('/').to_owned();
    let instances: Api<ServiceInstance> = Api::namespaced(setup.client.clone(), "shop");
    let db = instances
        .create(
            &PostParams::default(),
            &instance("db", "10-1-26", json!({}))?,
        )
        .await?;
    let (ready, _, _) = instance_with(&instances, "db", "Ready", "True").await?;
    let version = |instance: &ServiceInstance| {
        instance
            .status
            .as_ref()
            .and_then(|s| s.external_properties.as_ref())
            .and_then(|p| p.maintenance_info.as_ref())
            .map(|m| m.version.clone())
    };
    assert_eq!(version(&ready).as_deref(), Some("10.1.26"));
    let broker_client = osb_client::Client::new(osb_client::ClientConfig::new(&url)?)?;
    let at_broker = broker_client
        .fetch_instance(&db.spec.external_id, None, None)
        .await?;
    assert_eq!(
        at_broker.maintenance_info.map(|m| m.version).as_deref(),
        Some("10.1.26"),
        "provision sent the plan's maintenance_info"
    );

    // The broker moves to 10.1.27 (same state, same address); the catalog is fetched again.
    let address = setup.broker.local_addr();
    setup.broker.shutdown().await?;
    setup.broker = reference_broker::start(config("10.1.27")?, address).await?;
    let brokers: Api<catalog_api::ClusterServiceBroker> = Api::all(setup.client.clone());
    brokers
        .patch(
            "ref",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"relistRequests": 1}})),
        )
        .await?;
    let plans: Api<catalog_api::ClusterServicePlan> = Api::all(setup.client.clone());
    eventually("the plan's new maintenance version", || async {
        let plan = plans.get("b3e7a9c4-1d2f-4e5a-8b6c-7d8e9f0a1b2c").await?;
        Ok((plan
            .spec
            .common
            .maintenance_info
            .map(|m| m.version)
            .as_deref()
            == Some("10.1.27"))
        .then_some(()))
    })
    .await?;
    // Nothing changes until the user asks for an update; then the instance is upgraded.
    assert_eq!(
        version(&instances.get("db").await?).as_deref(),
        Some("10.1.26")
    );
    instances
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"updateRequests": 1}})),
        )
        .await?;
    eventually("the upgrade", || async {
        let instance = instances.get("db").await?;
        Ok((version(&instance).as_deref() == Some("10.1.27")).then_some(()))
    })
    .await?;
    let at_broker = broker_client
        .fetch_instance(&db.spec.external_id, None, None)
        .await?;
    assert_eq!(
        at_broker.maintenance_info.map(|m| m.version).as_deref(),
        Some("10.1.27")
    );
    Ok(())
}
