//! A broker that misbehaves (through the reference broker's fault injection, or not being there
//! at all) gives typed errors — never a panic, never a hang past the timeout — classified for
//! orphan mitigation and retries as the spec says.

use std::time::{Duration, Instant};

use osb_client::{
    BindRequest, CallOptions, Client, Deleted, Error, Operation, ProvisionRequest, UpdateRequest,
};
use serde_json::json;
use test_support::{TestCa, refused_url};

use crate::{Broker, DB_PLAN, DB_SERVICE, TestResult, client_for, config_for};

fn provision() -> ProvisionRequest {
    ProvisionRequest {
        service_id: DB_SERVICE.into(),
        plan_id: DB_PLAN.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn garbage_json_is_malformed_and_only_a_201_needs_orphan_mitigation() -> TestResult {
    let broker = Broker::start(&[]).await?;
    for (status, mitigate) in [(201, true), (202, true), (200, false)] {
        broker
            .inject(json!({"endpoint": "provision", "times": 1, "response": {"kind": "malformed", "status": status}}))
            .await?;
        let result = broker
            .client
            .provision("i", &provision(), &CallOptions::asynchronous())
            .await;
        match &result {
            Err(
                e @ Error::MalformedResponse {
                    status: got,
                    operation: Operation::Provision,
                    ..
                },
            ) => {
                assert_eq!(*got, status);
                assert_eq!(e.requires_orphan_mitigation(), mitigate, "{status}");
            }
            other => panic!("{status}: expected a malformed response, got {other:?}"),
        }
    }
    // The catalog too: garbage is an error, not an empty catalog.
    broker
        .inject(json!({"endpoint": "get_catalog", "times": 1, "response": {"kind": "malformed"}}))
        .await?;
    assert!(matches!(
        broker.client.catalog().await,
        Err(Error::MalformedResponse { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn a_50_mib_body_stops_at_the_size_limit() -> TestResult {
    let broker = Broker::start(&[]).await?;
    broker
        .inject(json!({"endpoint": "get_catalog", "response": {"kind": "raw", "body": "{\"services\": [", "size": 50 * 1024 * 1024}}))
        .await?;
    let result = broker.client.catalog().await;
    assert!(
        matches!(
            result,
            Err(Error::ResponseTooLarge {
                limit: osb_client::DEFAULT_MAX_RESPONSE_BYTES,
                ..
            })
        ),
        "{result:?}"
    );
    // A smaller configured limit applies to ordinary answers too.
    let small = Client::new(config_for(&broker.process.url)?.with_max_response_bytes(64))?;
    broker
        .inject(json!({"endpoint": "fetch_instance", "response": {"kind": "raw", "body": " ", "size": 65}}))
        .await?;
    assert!(matches!(
        small.fetch_instance("i", None, None).await,
        Err(Error::ResponseTooLarge { limit: 64, .. })
    ));
    Ok(())
}

#[tokio::test]
async fn a_body_that_is_not_json_is_malformed() -> TestResult {
    let broker = Broker::start(&[]).await?;
    broker
        .inject(json!({"endpoint": "get_catalog", "times": 1, "response": {"kind": "raw", "content_type": "text/html", "body": "<html>maintenance</html>"}}))
        .await?;
    let result = broker.client.catalog().await;
    match result {
        Err(Error::MalformedResponse { reason, .. }) => {
            assert!(reason.contains("text/html"), "{reason}")
        }
        other => panic!("expected a malformed response, got {other:?}"),
    }
    // An HTML error page still yields a broker error with a readable excerpt.
    broker
        .inject(json!({"endpoint": "provision", "times": 1, "response": {"kind": "raw", "status": 503, "content_type": "text/html", "body": "<h1>Service Unavailable</h1>"}}))
        .await?;
    match broker
        .client
        .provision("i", &provision(), &CallOptions::default())
        .await
    {
        Err(Error::Broker(e)) => {
            assert_eq!(e.status, 503);
            assert_eq!(
                e.description.as_deref(),
                Some("<h1>Service Unavailable</h1>")
            );
        }
        other => panic!("expected a broker error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_hung_broker_times_out_and_a_hung_provision_needs_orphan_mitigation() -> TestResult {
    let broker = Broker::start(&[]).await?;
    broker
        .inject(json!({"endpoint": "*", "latency_ms": 30_000}))
        .await?;
    let client = Client::new(
        config_for(&broker.process.url)?
            .with_timeouts(Duration::from_secs(1), Duration::from_millis(500)),
    )?;
    let started = Instant::now();
    let provision_result = client
        .provision("i", &provision(), &CallOptions::default())
        .await;
    let update_result = client
        .update(
            "i",
            &UpdateRequest {
                service_id: DB_SERVICE.into(),
                ..Default::default()
            },
            &CallOptions::default(),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(
        &provision_result,
        Err(Error::Timeout {
            operation: Operation::Provision,
            ..
        })
    ));
    assert!(
        provision_result
            .as_ref()
            .is_err_and(Error::requires_orphan_mitigation)
    );
    assert!(
        update_result
            .as_ref()
            .is_err_and(|e| matches!(e, Error::Timeout { .. }) && !e.requires_orphan_mitigation())
    );
    Ok(())
}

#[tokio::test]
async fn a_dropped_connection_is_interrupted_and_treated_like_a_timeout() -> TestResult {
    let broker = Broker::start(&[]).await?;
    broker
        .client
        .provision("i", &provision(), &CallOptions::default())
        .await?;
    broker
        .inject(json!({"endpoint": "bind", "times": 1, "response": {"kind": "drop"}}))
        .await?;
    let request = BindRequest {
        service_id: DB_SERVICE.into(),
        plan_id: DB_PLAN.into(),
        ..Default::default()
    };
    let result = broker
        .client
        .bind("i", "b", &request, &CallOptions::default())
        .await;
    assert!(
        matches!(
            &result,
            Err(Error::Interrupted {
                operation: Operation::Bind,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        result
            .as_ref()
            .is_err_and(|e| e.requires_orphan_mitigation() && e.is_retriable())
    );
    // The fault was for one call only.
    broker
        .client
        .bind("i", "b", &request, &CallOptions::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn nobody_listening_is_a_connection_error_without_orphan_mitigation() -> TestResult {
    let client = client_for(&refused_url()?)?;
    let result = client
        .provision("i", &provision(), &CallOptions::default())
        .await;
    assert!(
        matches!(&result, Err(Error::Connection { .. })),
        "{result:?}"
    );
    assert!(
        result
            .as_ref()
            .is_err_and(|e| e.is_retriable() && !e.requires_orphan_mitigation())
    );
    Ok(())
}

#[tokio::test]
async fn error_statuses_are_classified_by_operation() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let client = &broker.client;
    let cases = [
        // (endpoint, status, error code, orphan mitigation, retriable)
        ("provision", 500, None, true, true),
        ("provision", 204, None, true, false),
        ("provision", 408, None, false, true),
        ("provision", 400, None, false, false),
        ("provision", 422, Some("ConcurrencyError"), false, true),
        ("provision", 422, Some("RequiresApp"), false, false),
        ("update", 500, None, false, true),
    ];
    for (endpoint, status, code, mitigate, retriable) in cases {
        broker
            .inject(json!({"endpoint": endpoint, "times": 1,
                "response": {"kind": "error", "status": status, "error": code, "description": "injected"}}))
            .await?;
        let result = if endpoint == "provision" {
            client
                .provision("i", &provision(), &CallOptions::default())
                .await
                .map(|_| ())
        } else {
            client
                .update(
                    "i",
                    &UpdateRequest {
                        service_id: DB_SERVICE.into(),
                        ..Default::default()
                    },
                    &CallOptions::default(),
                )
                .await
                .map(|_| ())
        };
        let error = result.err();
        let what = format!("{endpoint} {status} {code:?}: {error:?}");
        assert_eq!(
            error.as_ref().and_then(Error::status),
            Some(status),
            "{what}"
        );
        assert_eq!(
            error.as_ref().map(Error::requires_orphan_mitigation),
            Some(mitigate),
            "{what}"
        );
        assert_eq!(
            error.as_ref().map(Error::is_retriable),
            Some(retriable),
            "{what}"
        );
        assert_eq!(
            error
                .as_ref()
                .and_then(|e| e.broker_code())
                .map(|c| c.as_str().to_owned()),
            code.map(str::to_owned),
            "{what}"
        );
    }
    // 410 on deprovision is success, whatever the body.
    broker.inject(json!({"endpoint": "deprovision", "times": 1, "response": {"kind": "error", "status": 410}})).await?;
    assert_eq!(
        client
            .deprovision("i", DB_SERVICE, DB_PLAN, &CallOptions::default())
            .await?,
        Deleted::Gone
    );
    Ok(())
}

#[tokio::test]
async fn fail_the_next_n_calls_then_recover() -> TestResult {
    let broker = Broker::start(&[]).await?;
    broker
        .inject(json!({"endpoint": "get_catalog", "times": 2, "response": {"kind": "error", "status": 503}}))
        .await?;
    for _ in 0..2 {
        assert_eq!(
            broker.client.catalog().await.err().and_then(|e| e.status()),
            Some(503)
        );
    }
    broker.client.catalog().await?;
    Ok(())
}

#[tokio::test]
async fn invalid_faults_are_refused_by_the_admin_endpoint() -> TestResult {
    let broker = Broker::start(&[]).await?;
    for fault in [
        json!({"endpoint": "provision", "response": {"kind": "error", "status": 42}}),
        json!({"endpoint": "nowhere"}),
        json!({"endpoint": "bind", "times": 0}),
    ] {
        assert!(
            broker.inject(fault.clone()).await.is_err(),
            "{fault} was accepted"
        );
    }
    Ok(())
}

#[tokio::test]
async fn tls_needs_the_right_ca_unless_verification_is_explicitly_skipped() -> TestResult {
    let ca = TestCa::new("broker CA")?;
    let other_ca = TestCa::new("someone else's CA")?;
    let cert = ca.issue_server_cert()?;
    let (cert_file, key_file) = (
        cert.cert_file.to_string_lossy(),
        cert.key_file.to_string_lossy(),
    );
    let broker = Broker::start(&["--tls-cert", &cert_file, "--tls-key", &key_file]).await?;
    let url = &broker.process.url;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let trusting = Client::new(config_for(url)?.with_ca_bundle(ca.cert_pem.clone()))?;
    assert_eq!(trusting.catalog().await?.services.len(), 2);

    for (name, config) in [
        (
            "wrong CA",
            config_for(url)?.with_ca_bundle(other_ca.cert_pem.clone()),
        ),
        ("system roots", config_for(url)?),
    ] {
        let result = Client::new(config)?.catalog().await;
        match &result {
            Err(Error::Connection { message, .. }) => {
                assert!(
                    message.to_lowercase().contains("certificate"),
                    "{name}: {message}"
                )
            }
            other => panic!("{name}: expected a TLS connection error, got {other:?}"),
        }
    }
    let skipping = Client::new(config_for(url)?.with_insecure_skip_tls_verify(true))?;
    assert_eq!(skipping.catalog().await?.services.len(), 2);
    Ok(())
}

/// A cheap, deterministic stand-in for fuzzing the response parsers end to end: random bytes,
/// truncated and mangled JSON, through real HTTP. Every answer must be `Ok` or a typed error.
#[tokio::test]
async fn random_and_mangled_bodies_never_panic_the_client() -> TestResult {
    let broker = Broker::start(&[]).await?;
    let valid = [
        r#"{"services":[{"id":"s","name":"n","description":"d","bindable":true,"plans":[{"id":"p","name":"p","description":"d"}]}]}"#,
        r#"{"state":"in progress","description":"x"}"#,
        r#"{"credentials":{"a":1},"volume_mounts":[{"driver":"d","container_dir":"/c","mode":"r","device_type":"shared","device":{"volume_id":"v"}}]}"#,
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let poll = osb_client::LastOperationRequest::default();
    for round in 0..120 {
        let base = valid[round % valid.len()];
        let body: String = match round % 4 {
            0 => base[..next() % base.len()].to_owned(),
            1 => base
                .chars()
                .map(|c| {
                    if next() % 9 == 0 {
                        char::from(b'!' + (next() % 90) as u8)
                    } else {
                        c
                    }
                })
                .collect(),
            2 => (0..next() % 64)
                .map(|_| char::from(b' ' + (next() % 95) as u8))
                .collect(),
            _ => base.replace("true", "\"yes\"").replace('1', "-1e999"),
        };
        let status = [200, 201, 202, 410, 500][next() % 5];
        broker
            .inject(json!({"endpoint": "*", "times": 3, "response": {"kind": "raw", "status": status, "body": body}}))
            .await?;
        // Each call either parses or fails with a typed error; a panic fails the test.
        let _ = broker.client.catalog().await;
        let _ = broker.client.instance_last_operation("i", &poll).await;
        let _ = broker
            .client
            .bind(
                "i",
                "b",
                &BindRequest {
                    service_id: "s".into(),
                    plan_id: "p".into(),
                    ..Default::default()
                },
                &CallOptions::default(),
            )
            .await;
    }
    Ok(())
}
