//! Our client against a broker we did not write: one built on PyPI's `openbrokerapi`, run from
//! the project's virtualenv (`scripts/python-env`).

use std::time::Duration;

use osb_client::{
    Accepted, BindRequest, CallOptions, Deleted, KubernetesUser, LastOperationRequest,
    OperationState, OriginatingIdentity, ProvisionRequest,
};
use serde_json::json;
use test_support::{ServerProcess, python, workspace_root};

use crate::{PASSWORD, TestResult, USERNAME, client_for};

const SERVICE: &str = "interop-service-id";
const PLAN: &str = "interop-plan-id";

#[tokio::test]
async fn provision_poll_bind_unbind_deprovision_against_openbrokerapi() -> TestResult {
    let script = workspace_root().join("tests/interop/openbrokerapi_broker.py");
    let mut command = tokio::process::Command::new(python()?);
    command.arg(&script).args([
        "--port",
        "0",
        "--username",
        USERNAME,
        "--password",
        PASSWORD,
        "--quiet",
        "--exit-on-stdin-eof",
    ]);
    let broker = ServerProcess::spawn(command).await?;
    let client = client_for(&broker.url)?;

    let catalog = client.catalog().await?;
    assert_eq!(catalog.services[0].id, SERVICE);
    assert_eq!(catalog.services[0].plans[0].id, PLAN);

    // openbrokerapi insists on the deprecated org/space GUIDs; the original Kubernetes catalog
    // sent the cluster ID and namespace in them, and so can we.
    let request = ProvisionRequest {
        service_id: SERVICE.into(),
        plan_id: PLAN.into(),
        organization_guid: Some("cluster-1".into()),
        space_guid: Some("test-ns".into()),
        context: Some(
            json!({"platform": "kubernetes", "namespace": "test-ns", "clusterid": "cluster-1"}),
        ),
        parameters: Some(json!({"size": "small"})),
        ..Default::default()
    };
    let user = KubernetesUser {
        username: "alice".into(),
        ..Default::default()
    };
    let options = CallOptions::asynchronous().with_identity(OriginatingIdentity::kubernetes(&user));
    let started = client.provision("i-1", &request, &options).await?;
    assert_eq!(started.accepted, Accepted::Async);

    let poll = LastOperationRequest {
        service_id: Some(SERVICE.into()),
        plan_id: Some(PLAN.into()),
        operation: started.body.operation.clone(),
    };
    let mut states = Vec::new();
    loop {
        let last = client.instance_last_operation("i-1", &poll).await?;
        states.push(last.body.state);
        if last.body.state != OperationState::InProgress || states.len() > 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        states,
        [OperationState::InProgress, OperationState::Succeeded]
    );

    // Asking again for the same, now provisioned, instance is idempotent there too.
    assert_eq!(
        client.provision("i-1", &request, &options).await?.accepted,
        Accepted::Ok
    );

    let bind = BindRequest {
        service_id: SERVICE.into(),
        plan_id: PLAN.into(),
        ..Default::default()
    };
    let bound = client.bind("i-1", "b-1", &bind, &options).await?;
    assert_eq!(bound.accepted, Accepted::Created);
    assert_eq!(
        bound.body.credentials.and_then(|c| c.get("uri").cloned()),
        Some(json!("interop://b-1"))
    );
    let fetched = client
        .fetch_binding("i-1", "b-1", Some(SERVICE), Some(PLAN))
        .await?;
    assert_eq!(
        fetched.credentials.and_then(|c| c.get("username").cloned()),
        Some(json!("u-b-1"))
    );

    assert_eq!(
        client.unbind("i-1", "b-1", SERVICE, PLAN, &options).await?,
        Deleted::Done
    );
    assert_eq!(
        client.unbind("i-1", "b-1", SERVICE, PLAN, &options).await?,
        Deleted::Gone
    );
    assert_eq!(
        client.deprovision("i-1", SERVICE, PLAN, &options).await?,
        Deleted::Done
    );
    assert_eq!(
        client.deprovision("i-1", SERVICE, PLAN, &options).await?,
        Deleted::Gone
    );

    // Its error bodies come through typed: a conflicting provision is 409.
    client
        .provision("i-2", &request, &CallOptions::default())
        .await?;
    let conflicting = ProvisionRequest {
        parameters: Some(json!({"size": "large"})),
        ..request
    };
    let result = client
        .provision("i-2", &conflicting, &CallOptions::default())
        .await;
    assert_eq!(result.err().and_then(|e| e.status()), Some(409));
    Ok(())
}
