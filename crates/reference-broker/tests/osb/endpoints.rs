//! Every endpoint, sync and async, through the client against the reference broker.

use std::time::Duration;

use osb_client::{
    Accepted, BindRequest, BrokerErrorCode, CallOptions, Client, Deleted, Error, KubernetesUser,
    LastOperation, LastOperationRequest, MaintenanceInfo, OperationState, OriginatingIdentity,
    ProvisionRequest, RotateBindingRequest, UpdateRequest,
};
use serde_json::json;

use crate::{
    Broker, DB_HA_PLAN, DB_PLAN, DB_SERVICE, PASSWORD, TestResult, UPS_PLAN, UPS_SERVICE, USERNAME,
    config_for,
};

fn provision_request(service: &str, plan: &str, parameters: serde_json::Value) -> ProvisionRequest {
    ProvisionRequest {
        service_id: service.into(),
        plan_id: plan.into(),
        context: Some(json!({"platform": "kubernetes", "namespace": "test-ns"})),
        parameters: Some(parameters),
        ..Default::default()
    }
}

fn bind_request(service: &str, plan: &str) -> BindRequest {
    BindRequest {
        service_id: service.into(),
        plan_id: plan.into(),
        ..Default::default()
    }
}

fn broker_error(
    result: Result<impl std::fmt::Debug, Error>,
) -> (u16, Option<BrokerErrorCode>, String) {
    match result {
        Err(Error::Broker(e)) => (e.status, e.code.clone(), e.description.unwrap_or_default()),
        other => panic!("expected a broker error, got {other:?}"),
    }
}

/// Polls until the operation leaves `in progress`; checks the broker sent `Retry-After` meanwhile.
async fn wait_done(
    mut poll: impl AsyncFnMut() -> Result<LastOperation, Error>,
) -> Result<LastOperation, Error> {
    for _ in 0..100 {
        let last = poll().await?;
        if last.body.state != OperationState::InProgress {
            return Ok(last);
        }
        assert_eq!(last.retry_after, Some(Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("operation never finished");
}

#[tokio::test]
async fn the_catalog_is_served_whole_and_valid() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let catalog = broker.client.catalog().await?;
    let names: Vec<&str> = catalog.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["user-provided-service", "mariadb"]);
    let db = &catalog.services[1];
    assert_eq!(db.plans.len(), 2);
    assert!(db.plans[0].instance_create_schema().is_some());
    assert_eq!(db.plans[1].maximum_polling_duration, Some(600));
    Ok(())
}

#[tokio::test]
async fn a_user_provided_service_round_trips_synchronously() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let client = &broker.client;
    let credentials = json!({"credentials": {"user": "u1", "token": "t1"}});
    let provisioned = client
        .provision(
            "ups-1",
            &provision_request(UPS_SERVICE, UPS_PLAN, credentials),
            &CallOptions::default(),
        )
        .await?;
    assert_eq!(provisioned.accepted, Accepted::Created);
    assert!(
        provisioned
            .body
            .dashboard_url
            .is_some_and(|u| u.ends_with("/dashboard/ups-1"))
    );

    let fetched = client
        .fetch_instance("ups-1", Some(UPS_SERVICE), Some(UPS_PLAN))
        .await?;
    assert_eq!(fetched.plan_id.as_deref(), Some(UPS_PLAN));

    let bound = client
        .bind(
            "ups-1",
            "b-1",
            &bind_request(UPS_SERVICE, UPS_PLAN),
            &CallOptions::default(),
        )
        .await?;
    assert_eq!(bound.accepted, Accepted::Created);
    let creds = bound.body.credentials.unwrap_or_default();
    assert_eq!(creds.get("user"), Some(&json!("u1")));
    assert_eq!(creds.get("token"), Some(&json!("t1")));
    let fetched = client.fetch_binding("ups-1", "b-1", None, None).await?;
    assert_eq!(
        fetched.credentials.unwrap_or_default().get("token"),
        Some(&json!("t1"))
    );

    let unbound = client
        .unbind(
            "ups-1",
            "b-1",
            UPS_SERVICE,
            UPS_PLAN,
            &CallOptions::default(),
        )
        .await?;
    assert_eq!(unbound, Deleted::Done);
    let again = client
        .unbind(
            "ups-1",
            "b-1",
            UPS_SERVICE,
            UPS_PLAN,
            &CallOptions::default(),
        )
        .await?;
    assert_eq!(again, Deleted::Gone, "410 on a second unbind is success");
    let (status, _, _) = broker_error(client.fetch_binding("ups-1", "b-1", None, None).await);
    assert_eq!(status, 404);

    let deleted = client
        .deprovision("ups-1", UPS_SERVICE, UPS_PLAN, &CallOptions::default())
        .await?;
    assert_eq!(deleted, Deleted::Done);
    let again = client
        .deprovision("ups-1", UPS_SERVICE, UPS_PLAN, &CallOptions::default())
        .await?;
    assert_eq!(again, Deleted::Gone);
    Ok(())
}

#[tokio::test]
async fn an_async_plan_is_provisioned_bound_and_deleted_through_last_operation() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let client = &broker.client;
    let request = provision_request(DB_SERVICE, DB_HA_PLAN, json!({"storageGB": 20}));

    let sync_only = client
        .provision("ha-1", &request, &CallOptions::default())
        .await;
    assert!(
        sync_only.as_ref().is_err_and(Error::is_async_required),
        "{sync_only:?}"
    );

    let started = client
        .provision("ha-1", &request, &CallOptions::asynchronous())
        .await?;
    assert_eq!(started.accepted, Accepted::Async);
    let operation = started.body.operation.clone();
    assert!(
        operation
            .as_deref()
            .is_some_and(|o| o.starts_with("provision-"))
    );
    // The same request while it runs is answered with the same operation.
    let repeated = client
        .provision("ha-1", &request, &CallOptions::asynchronous())
        .await?;
    assert_eq!(
        (repeated.accepted, repeated.body.operation),
        (Accepted::Async, operation.clone())
    );
    // Binding before the instance is ready is a concurrency error (retriable).
    let early = client
        .bind(
            "ha-1",
            "b-1",
            &bind_request(DB_SERVICE, DB_HA_PLAN),
            &CallOptions::asynchronous(),
        )
        .await;
    assert!(
        early
            .as_ref()
            .is_err_and(|e| e.is_concurrency_error() && e.is_retriable())
    );

    let poll = LastOperationRequest {
        service_id: Some(DB_SERVICE.into()),
        plan_id: Some(DB_HA_PLAN.into()),
        operation,
    };
    let done = wait_done(async || client.instance_last_operation("ha-1", &poll).await).await?;
    assert_eq!(done.body.state, OperationState::Succeeded);
    assert_eq!(done.retry_after, None);

    let bound = client
        .bind(
            "ha-1",
            "b-1",
            &bind_request(DB_SERVICE, DB_HA_PLAN),
            &CallOptions::asynchronous(),
        )
        .await?;
    assert_eq!(bound.accepted, Accepted::Async);
    let poll_binding = LastOperationRequest {
        operation: bound.body.operation.clone(),
        ..Default::default()
    };
    let done = wait_done(async || {
        client
            .binding_last_operation("ha-1", "b-1", &poll_binding)
            .await
    })
    .await?;
    assert_eq!(done.body.state, OperationState::Succeeded);
    let binding = client
        .fetch_binding("ha-1", "b-1", Some(DB_SERVICE), Some(DB_HA_PLAN))
        .await?;
    let creds = binding.credentials.unwrap_or_default();
    assert!(
        creds
            .get("uri")
            .and_then(|u| u.as_str())
            .is_some_and(|u| u.starts_with("mysql://"))
    );
    assert_eq!(
        binding.endpoints.map(|e| e[0].ports.clone()),
        Some(vec!["3306".to_owned()])
    );

    let unbinding = client
        .unbind(
            "ha-1",
            "b-1",
            DB_SERVICE,
            DB_HA_PLAN,
            &CallOptions::asynchronous(),
        )
        .await?;
    let Deleted::Async { operation } = unbinding else {
        panic!("expected an async unbind, got {unbinding:?}");
    };
    let poll_unbind = LastOperationRequest {
        operation,
        ..Default::default()
    };
    let gone = wait_done(async || {
        client
            .binding_last_operation("ha-1", "b-1", &poll_unbind)
            .await
    })
    .await;
    assert!(
        gone.as_ref().is_err_and(Error::is_gone),
        "a finished unbind is 410: {gone:?}"
    );

    let deleting = client
        .deprovision("ha-1", DB_SERVICE, DB_HA_PLAN, &CallOptions::asynchronous())
        .await?;
    let Deleted::Async { operation } = deleting else {
        panic!("expected an async deprovision, got {deleting:?}");
    };
    let poll_delete = LastOperationRequest {
        operation,
        ..Default::default()
    };
    let gone = wait_done(async || client.instance_last_operation("ha-1", &poll_delete).await).await;
    assert!(
        gone.as_ref().is_err_and(Error::is_gone),
        "a finished deprovision is 410: {gone:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_same_provision_is_200_and_a_conflicting_one_409() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let client = &broker.client;
    let request = provision_request(DB_SERVICE, DB_PLAN, json!({"storageGB": 5}));
    assert_eq!(
        client
            .provision("i", &request, &CallOptions::default())
            .await?
            .accepted,
        Accepted::Created
    );
    assert_eq!(
        client
            .provision("i", &request, &CallOptions::default())
            .await?
            .accepted,
        Accepted::Ok
    );

    let conflicting = provision_request(DB_SERVICE, DB_PLAN, json!({"storageGB": 6}));
    let result = client
        .provision("i", &conflicting, &CallOptions::default())
        .await;
    let error = result.as_ref().err();
    assert_eq!(error.and_then(Error::status), Some(409));
    assert!(error.is_some_and(|e| !e.is_retriable() && !e.requires_orphan_mitigation()));

    let bind = bind_request(DB_SERVICE, DB_PLAN);
    client
        .bind("i", "b", &bind, &CallOptions::default())
        .await?;
    let again = client
        .bind("i", "b", &bind, &CallOptions::default())
        .await?;
    assert_eq!(again.accepted, Accepted::Ok);
    let other = BindRequest {
        parameters: Some(json!({"readOnly": true})),
        ..bind
    };
    let (status, _, _) = broker_error(client.bind("i", "b", &other, &CallOptions::default()).await);
    assert_eq!(status, 409);
    Ok(())
}

#[tokio::test]
async fn updates_change_plan_and_parameters_and_check_maintenance_info() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let client = &broker.client;
    client
        .provision(
            "i",
            &provision_request(DB_SERVICE, DB_PLAN, json!({"storageGB": 5})),
            &CallOptions::default(),
        )
        .await?;

    let stale = UpdateRequest {
        service_id: DB_SERVICE.into(),
        maintenance_info: Some(MaintenanceInfo {
            version: "9.0.0".into(),
            description: None,
        }),
        ..Default::default()
    };
    let (status, code, description) =
        broker_error(client.update("i", &stale, &CallOptions::default()).await);
    assert_eq!(
        (status, code),
        (422, Some(BrokerErrorCode::MaintenanceInfoConflict))
    );
    assert!(description.contains("10.1.26"), "{description}");

    let bad_parameters = UpdateRequest {
        service_id: DB_SERVICE.into(),
        parameters: Some(json!({"storageGB": "lots"})),
        ..Default::default()
    };
    let (status, _, description) = broker_error(
        client
            .update("i", &bad_parameters, &CallOptions::default())
            .await,
    );
    assert_eq!(status, 400);
    assert!(description.contains("/storageGB"), "{description}");

    let update = UpdateRequest {
        service_id: DB_SERVICE.into(),
        plan_id: Some(DB_HA_PLAN.into()),
        parameters: Some(json!({"storageGB": 50})),
        previous_values: Some(osb_client::PreviousValues {
            plan_id: Some(DB_PLAN.into()),
            ..Default::default()
        }),
        maintenance_info: Some(MaintenanceInfo {
            version: "10.1.26".into(),
            description: None,
        }),
        ..Default::default()
    };
    let updated = client.update("i", &update, &CallOptions::default()).await?;
    assert_eq!(updated.accepted, Accepted::Ok);
    let fetched = client.fetch_instance("i", None, None).await?;
    assert_eq!(fetched.plan_id.as_deref(), Some(DB_HA_PLAN));
    assert_eq!(fetched.parameters, Some(json!({"storageGB": 50})));
    Ok(())
}

#[tokio::test]
async fn a_rotated_binding_gets_new_credentials_and_keeps_its_parameters() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let client = &broker.client;
    client
        .provision(
            "i",
            &provision_request(DB_SERVICE, DB_PLAN, json!({})),
            &CallOptions::default(),
        )
        .await?;
    let first = BindRequest {
        parameters: Some(json!({"readOnly": true})),
        ..bind_request(DB_SERVICE, DB_PLAN)
    };
    let old = client
        .bind("i", "b-old", &first, &CallOptions::default())
        .await?
        .body;
    let metadata = old.metadata.clone().unwrap_or_default();
    assert!(metadata.expires_at.is_some() && metadata.renew_before < metadata.expires_at);

    let rotate = RotateBindingRequest {
        predecessor_binding_id: "b-old".into(),
        ..Default::default()
    };
    let new = client
        .rotate_binding("i", "b-new", &rotate, &CallOptions::default())
        .await?;
    assert_eq!(new.accepted, Accepted::Created);
    let (old_creds, new_creds) = (
        old.credentials.unwrap_or_default(),
        new.body.credentials.unwrap_or_default(),
    );
    assert_ne!(old_creds.get("password"), new_creds.get("password"));
    assert!(
        new_creds["username"]
            .as_str()
            .is_some_and(|u| u.starts_with("ro_")),
        "parameters carried over"
    );
    // Both stay valid until deleted.
    client.fetch_binding("i", "b-old", None, None).await?;

    let unknown = RotateBindingRequest {
        predecessor_binding_id: "nope".into(),
        ..Default::default()
    };
    let (status, _, _) = broker_error(
        client
            .rotate_binding("i", "b-x", &unknown, &CallOptions::default())
            .await,
    );
    assert_eq!(status, 400);

    client
        .provision(
            "u",
            &provision_request(UPS_SERVICE, UPS_PLAN, json!({})),
            &CallOptions::default(),
        )
        .await?;
    client
        .bind(
            "u",
            "b",
            &bind_request(UPS_SERVICE, UPS_PLAN),
            &CallOptions::default(),
        )
        .await?;
    let not_rotatable = RotateBindingRequest {
        predecessor_binding_id: "b".into(),
        ..Default::default()
    };
    let (status, _, description) = broker_error(
        client
            .rotate_binding("u", "b2", &not_rotatable, &CallOptions::default())
            .await,
    );
    assert_eq!(status, 400);
    assert!(description.contains("cannot be rotated"), "{description}");
    Ok(())
}

#[tokio::test]
async fn bad_requests_are_rejected_with_a_reason() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let client = &broker.client;
    let invalid = provision_request(DB_SERVICE, DB_PLAN, json!({"storageGB": 0}));
    let (status, _, description) = broker_error(
        client
            .provision("i", &invalid, &CallOptions::default())
            .await,
    );
    assert_eq!(status, 400);
    assert!(
        description.contains("/storageGB") && description.contains("minimum"),
        "{description}"
    );

    let unknown_plan = provision_request(DB_SERVICE, UPS_PLAN, json!({}));
    let (status, _, description) = broker_error(
        client
            .provision("i", &unknown_plan, &CallOptions::default())
            .await,
    );
    assert_eq!(status, 400);
    assert!(description.contains("not in the catalog"), "{description}");

    let (status, _, _) = broker_error(client.fetch_instance("missing", None, None).await);
    assert_eq!(status, 404);
    let (status, _, _) = broker_error(
        client
            .bind(
                "missing",
                "b",
                &bind_request(DB_SERVICE, DB_PLAN),
                &CallOptions::default(),
            )
            .await,
    );
    assert_eq!(status, 404);
    // Nothing was created by the rejected requests.
    let (status, _, _) = broker_error(client.fetch_instance("i", None, None).await);
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn state_survives_a_killed_broker() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("broker.db");
    let state_arg = state.to_string_lossy().into_owned();
    let broker = Broker::start(&["--state", &state_arg]).await?;
    let request = provision_request(DB_SERVICE, DB_PLAN, json!({"storageGB": 8}));
    broker
        .client
        .provision("kept", &request, &CallOptions::default())
        .await?;
    let bound = broker
        .client
        .bind(
            "kept",
            "b",
            &bind_request(DB_SERVICE, DB_PLAN),
            &CallOptions::default(),
        )
        .await?;
    broker.process.kill().await?;

    let restarted = Broker::start(&["--state", &state_arg]).await?;
    let client = &restarted.client;
    assert_eq!(
        client
            .provision("kept", &request, &CallOptions::default())
            .await?
            .accepted,
        Accepted::Ok
    );
    let binding = client.fetch_binding("kept", "b", None, None).await?;
    assert_eq!(binding.credentials, bound.body.credentials);
    Ok(())
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let url = &broker.process.url;
    let anonymous = Client::new(osb_client::ClientConfig::new(url)?)?;
    let wrong = Client::new(config_for(url)?.with_auth(osb_client::Auth::Basic {
        username: USERNAME.into(),
        password: format!("{PASSWORD}-not"),
    }))?;
    let bearer =
        Client::new(config_for(url)?.with_auth(osb_client::Auth::Bearer { token: "t".into() }))?;
    for client in [anonymous, wrong, bearer] {
        let result = client.catalog().await;
        let error = result.as_ref().err();
        assert_eq!(error.and_then(Error::status), Some(401), "{result:?}");
        assert!(error.is_some_and(|e| !e.is_retriable()));
    }
    Ok(())
}

#[tokio::test]
async fn the_spec_headers_are_sent_on_every_request() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let user = KubernetesUser {
        username: "alice".into(),
        uid: "u-1".into(),
        groups: vec!["devs".into()],
        ..Default::default()
    };
    let options = CallOptions::default().with_identity(OriginatingIdentity::kubernetes(&user));
    broker.client.catalog().await?;
    broker
        .client
        .provision(
            "i",
            &provision_request(UPS_SERVICE, UPS_PLAN, json!({})),
            &options,
        )
        .await?;
    let requests = broker.recorded_requests().await?;
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request["api_version"], "2.17");
        assert!(
            request["request_identity"]
                .as_str()
                .is_some_and(|id| id.len() == 36)
        );
    }
    assert_ne!(
        requests[0]["request_identity"],
        requests[1]["request_identity"]
    );
    assert!(
        requests[0]["originating_identity"].is_null(),
        "catalog fetches carry no identity"
    );
    assert_eq!(
        requests[1]["originating_identity"]["platform"],
        "kubernetes"
    );
    assert_eq!(
        requests[1]["originating_identity"]["value"]["username"],
        "alice"
    );
    assert_eq!(
        requests[1]["originating_identity"]["value"]["groups"],
        json!(["devs"])
    );

    // An older API version is configurable; a major version the broker does not speak is 412.
    let old = Client::new(config_for(&broker.process.url)?.with_api_version("2.13"))?;
    old.catalog().await?;
    assert_eq!(
        broker
            .recorded_requests()
            .await?
            .last()
            .map(|r| r["api_version"].clone()),
        Some(json!("2.13"))
    );
    let future = Client::new(config_for(&broker.process.url)?.with_api_version("3.0"))?;
    assert_eq!(
        future.catalog().await.err().and_then(|e| e.status()),
        Some(412)
    );
    Ok(())
}
