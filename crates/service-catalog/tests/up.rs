//! `service-catalog up` as a newcomer runs it: one command, then provision and bind with a
//! client; a second `up` on the same data is refused while the first runs, and after a `kill -9`
//! the next `up` carries on with everything that was there.

mod common;

use std::path::Path;

use catalog_api::{ServiceBinding, ServiceInstance};
use common::{BINARY, eventually};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use test_support::ServerProcess;

async fn up(data: &Path) -> anyhow::Result<ServerProcess> {
    let data = data.to_string_lossy().into_owned();
    ServerProcess::start(
        BINARY,
        &["up", "--data-dir", &data, "--listen", "127.0.0.1:0"],
    )
    .await
}

async fn client(data: &Path) -> anyhow::Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(data.join("kubeconfig"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

fn ready(conditions: &[catalog_api::Condition]) -> bool {
    catalog_api::condition(conditions, "Ready").is_some_and(|c| c.status == "True")
}

async fn binding_ready(bindings: &Api<ServiceBinding>, name: &str) -> anyhow::Result<()> {
    eventually(&format!("binding {name}"), || async {
        let binding = bindings.get(name).await?;
        Ok(ready(&binding.status.unwrap_or_default().conditions).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_command_gives_a_working_catalog_that_survives_a_kill() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("catalog");
    let first = up(&data).await?;
    let client = client(&data).await?;

    // The demo broker's offerings appear.
    let plans: Api<catalog_api::ClusterServicePlan> = Api::all(client.clone());
    eventually("the demo broker's plans", || async {
        Ok((plans.list(&Default::default()).await?.items.len() == 3).then_some(()))
    })
    .await?;

    // A second `up` on the same data is refused, clearly, while the first runs.
    let second = tokio::process::Command::new(BINARY)
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .await?;
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("in use by another process"), "{said}");

    // Provision a user-provided service and bind it: its credentials reach a Secret.
    let instances: Api<ServiceInstance> = Api::namespaced(client.clone(), "default");
    let bindings: Api<ServiceBinding> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let instance: ServiceInstance = serde_json::from_value(json!({
        "metadata": {"name": "ups"},
        "spec": {"clusterServiceClassExternalName": "user-provided-service",
                 "parameters": {"credentials": {"token": "s3cret"}}}}))?;
    instances.create(&PostParams::default(), &instance).await?;
    let binding: ServiceBinding = serde_json::from_value(json!({
        "metadata": {"name": "ups"}, "spec": {"instanceRef": {"name": "ups"}}}))?;
    bindings.create(&PostParams::default(), &binding).await?;
    binding_ready(&bindings, "ups").await?;
    let token = secrets.get("ups").await?.data.unwrap_or_default();
    assert_eq!(
        token.get("token").map(|v| v.0.as_slice()),
        Some(&b"s3cret"[..])
    );

    // kill -9, then `up` again: everything is there, and the demo broker (on a new port) still
    // knows the instance, so unbinding and deprovisioning work.
    first.kill().await?;
    let _second = up(&data).await?;
    let client = self::client(&data).await?;
    let instances: Api<ServiceInstance> = Api::namespaced(client.clone(), "default");
    let bindings: Api<ServiceBinding> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let survived = instances.get("ups").await?;
    assert!(ready(&survived.status.unwrap_or_default().conditions));
    binding_ready(&bindings, "ups").await?;
    assert!(secrets.get_opt("ups").await?.is_some());
    let brokers: Api<catalog_api::ClusterServiceBroker> = Api::all(client.clone());
    eventually("the demo broker at its new address, ready", || async {
        let broker = brokers.get("demo").await?;
        let status = broker.status.unwrap_or_default();
        Ok((ready(&status.conditions)
            && status.reconciled_generation == broker.metadata.generation.unwrap_or(0))
        .then_some(()))
    })
    .await?;
    bindings.delete("ups", &DeleteParams::default()).await?;
    instances.delete("ups", &DeleteParams::default()).await?;
    eventually("the instance and binding to go", || async {
        Ok(
            (instances.get_opt("ups").await?.is_none() && bindings.get_opt("ups").await?.is_none())
                .then_some(()),
        )
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_cleanly_and_frees_the_data_dir() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("catalog");
    let first = up(&data).await?;
    let client = client(&data).await?;
    let plans: Api<catalog_api::ClusterServicePlan> = Api::all(client);
    eventually("the demo broker's plans", || async {
        Ok((plans.list(&Default::default()).await?.items.len() == 3).then_some(()))
    })
    .await?;
    let status = first.interrupt().await?;
    assert!(status.success(), "Ctrl-C is a clean exit: {status}");
    // The store's lock went with it: the next `up` starts on the same data at once.
    let second = up(&data).await?;
    let status = second.interrupt().await?;
    assert!(status.success(), "{status}");
    Ok(())
}
