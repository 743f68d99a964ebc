//! svcat end to end, as a user drives it: against `service-catalog up` and reference brokers
//! over HTTP — register, marketplace, provision with parameters and `--wait`, bind, describe,
//! unbind, deprovision — and every kind of mistake, each a short error with its own exit code.

mod common;

use common::{Catalog, demo_broker};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;
use test_support::broker_fault as fault;

#[tokio::test(flavor = "multi_thread")]
async fn a_user_registers_provisions_binds_and_cleans_up() -> anyhow::Result<()> {
    let catalog = Catalog::start(&["--no-demo-broker"]).await?;
    let broker = demo_broker().await?;

    let run = catalog
        .svcat(&[
            "register",
            "mine",
            "--url",
            broker.url(),
            "--wait",
            "--timeout",
            "30s",
        ])
        .await?
        .ok()?;
    assert!(run.stdout.contains("Status:      Ready"), "{run:?}");

    let run = catalog.svcat(&["marketplace"]).await?.ok()?;
    assert!(
        run.stdout.contains("mariadb") && run.stdout.contains("10-1-26-ha"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("mine"),
        "the broker column names the broker: {run:?}"
    );

    // Async plan, typed parameters, --wait: progress on stderr (plain lines, not a TTY).
    let run = catalog
        .svcat(&[
            "provision",
            "db",
            "--class",
            "mariadb",
            "--plan",
            "10-1-26-ha",
            "-p",
            "storageGB=20",
            "--param",
            "engine=aria",
            "--wait",
        ])
        .await?
        .ok()?;
    assert!(run.stdout.contains("Status:      Ready"), "{run:?}");
    assert!(
        run.stderr
            .contains("instance default/db: Provisioning [Provision]"),
        "{run:?}"
    );
    assert!(
        run.stderr.ends_with("instance default/db: Ready\n"),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains('\r'),
        "no live line when stderr is not a terminal"
    );

    let run = catalog
        .svcat(&[
            "bind",
            "db",
            "--secret-name",
            "db-creds",
            "--params-json",
            r#"{"readOnly": true}"#,
            "--wait",
        ])
        .await?
        .ok()?;
    assert!(run.stdout.contains("Secret:      db-creds"), "{run:?}");

    let secrets: Api<Secret> = Api::namespaced(catalog.client().await?, "default");
    let secret = secrets.get("db-creds").await?;
    let password = secret
        .data
        .unwrap_or_default()
        .get("password")
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .unwrap_or_default();
    assert!(!password.is_empty());

    let run = catalog.svcat(&["describe", "instance", "db"]).await?.ok()?;
    for expected in [
        "Status:           Ready",
        "Plan:             10-1-26-ha",
        "storageGB: 20",
        "engine: aria",
        "db     Ready    db-creds",
        "ProvisionedSuccessfully",
    ] {
        assert!(
            run.stdout.contains(expected),
            "{expected:?} in {}",
            run.stdout
        );
    }
    let run = catalog.svcat(&["describe", "binding", "db"]).await?.ok()?;
    assert!(run.stdout.contains("readOnly: true"), "{}", run.stdout);
    assert!(run.stdout.contains("Secret Keys:\n") && run.stdout.contains("  password\n"));
    assert!(
        !run.stdout.contains(&password),
        "describe never shows a credential"
    );

    let run = catalog
        .svcat(&["get", "bindings", "-o", "wide"])
        .await?
        .ok()?;
    assert!(run.stdout.contains("db-creds"), "{run:?}");

    // Touch: the controller updates the instance at the broker, and svcat can wait for it.
    catalog.svcat(&["touch", "instance", "db"]).await?.ok()?;
    catalog
        .svcat(&["wait", "instance", "db", "--timeout", "60s"])
        .await?
        .ok()?;
    let run = catalog
        .svcat(&["get", "instance", "db", "-o", "json"])
        .await?
        .ok()?;
    let instance: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(instance["spec"]["updateRequests"], 1);
    assert_eq!(
        instance["status"]["reconciledGeneration"],
        instance["metadata"]["generation"]
    );

    let run = catalog.svcat(&["unbind", "db", "--wait"]).await?.ok()?;
    assert_eq!(run.stdout, "binding default/db unbound and deleted\n");
    assert!(
        secrets.get_opt("db-creds").await?.is_none(),
        "the Secret goes with the binding"
    );

    let run = catalog
        .svcat(&["deprovision", "db", "--wait"])
        .await?
        .ok()?;
    assert_eq!(
        run.stdout,
        "instance default/db deprovisioned and deleted\n"
    );
    let run = catalog.svcat(&["get", "instances"]).await?.ok()?;
    assert_eq!(run.stdout, "No instances in namespace default.\n");

    catalog.svcat(&["sync", "broker", "mine"]).await?.ok()?;
    let run = catalog
        .svcat(&["get", "broker", "mine", "-o", "json"])
        .await?
        .ok()?;
    assert!(run.stdout.contains("\"relistRequests\": 1"), "{run:?}");
    catalog.svcat(&["deregister", "mine"]).await?.ok()?;
    catalog
        .until(
            "the broker to go",
            |run| run.stdout == "No brokers found.\n",
            &["get", "brokers"],
        )
        .await?;
    Ok(())
}

/// Expects a failure with this exit code and an error of one or two lines mentioning `words`.
fn refused(run: &common::Run, code: i32, words: &[&str]) {
    assert_eq!(run.code, code, "{run:?}");
    // Progress lines (from --wait) may come first; the error is what follows them.
    let error = run
        .stderr
        .find("error: ")
        .map(|at| &run.stderr[at..])
        .unwrap_or_default();
    assert!(!error.is_empty(), "{run:?}");
    assert!(error.lines().count() <= 2, "short errors: {run:?}");
    for word in words {
        assert!(error.contains(word), "{word:?} in {run:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_are_short_errors_with_distinct_exit_codes() -> anyhow::Result<()> {
    let catalog = Catalog::start(&["--no-demo-broker"]).await?;
    let broker = demo_broker().await?;
    catalog
        .svcat(&["register", "demo", "--url", broker.url(), "--wait"])
        .await?
        .ok()?;

    // A parameter breaking the plan's schema: named, with what the schema wanted; nothing made.
    let run = catalog
        .svcat(&[
            "provision",
            "db",
            "--class",
            "mariadb",
            "--plan",
            "10-1-26",
            "-p",
            "storageGB=5000",
        ])
        .await?;
    refused(&run, 2, &["storageGB", "maximum of 1024"]);
    let run = catalog
        .svcat(&[
            "provision",
            "db",
            "--class",
            "mariadb",
            "--plan",
            "10-1-26",
            "-p",
            "engine=ntfs",
        ])
        .await?;
    refused(&run, 2, &["/engine", "\"ntfs\""]);
    let run = catalog.svcat(&["bind", "db"]).await?;
    refused(&run, 3, &["instance default/db: not found"]);
    assert_eq!(
        catalog.svcat(&["get", "instances"]).await?.stdout,
        "No instances in namespace default.\n"
    );

    // Malformed flags.
    let run = catalog
        .svcat(&[
            "provision",
            "db",
            "--class",
            "mariadb",
            "--plan",
            "10-1-26",
            "--params-json",
            "[1]",
        ])
        .await?;
    refused(&run, 2, &["--params-json", "JSON object"]);
    let run = catalog
        .svcat(&[
            "provision",
            "db",
            "--class",
            "mariadb",
            "--plan",
            "10-1-26",
            "--secret",
            "nokey",
        ])
        .await?;
    refused(&run, 2, &["SECRET[KEY]"]);
    let run = catalog
        .svcat(&["provision", "db", "--class", "mariadb"])
        .await?;
    refused(&run, 2, &["10-1-26, 10-1-26-ha", "--plan"]);

    // Not found, everywhere.
    refused(
        &catalog
            .svcat(&["provision", "x", "--class", "oracle"])
            .await?,
        3,
        &["\"oracle\""],
    );
    refused(
        &catalog
            .svcat(&["provision", "x", "--class", "mariadb", "--plan", "huge"])
            .await?,
        3,
        &["\"huge\"", "10-1-26, 10-1-26-ha"],
    );
    refused(
        &catalog.svcat(&["describe", "instance", "nope"]).await?,
        3,
        &["nope"],
    );
    refused(
        &catalog.svcat(&["get", "class", "nope"]).await?,
        3,
        &["class \"nope\": not found"],
    );
    refused(
        &catalog.svcat(&["deprovision", "nope"]).await?,
        3,
        &["instance default/nope"],
    );
    refused(
        &catalog.svcat(&["wait", "binding", "nope"]).await?,
        3,
        &["binding default/nope"],
    );

    // The broker refuses: the instance is Failed, svcat says why and exits 4.
    fault(
        broker.url(),
        json!({"endpoint": "provision", "response":
        {"kind": "error", "status": 400, "error": "BadSize", "description": "no disk that small"}}),
    )
    .await?;
    let run = catalog
        .svcat(&[
            "provision",
            "bad",
            "--class",
            "mariadb",
            "--plan",
            "10-1-26",
            "--wait",
        ])
        .await?;
    refused(
        &run,
        4,
        &["instance default/bad failed", "no disk that small"],
    );
    let run = catalog.svcat(&["get", "instances"]).await?.ok()?;
    assert!(
        run.stdout
            .contains("bad    default     mariadb   10-1-26   Failed"),
        "{run:?}"
    );

    // `unbind INSTANCE --name B` deletes B only if it is INSTANCE's binding.
    catalog
        .svcat(&["bind", "bad", "--name", "b1"])
        .await?
        .ok()?;
    let run = catalog.svcat(&["unbind", "other", "--name", "b1"]).await?;
    refused(
        &run,
        2,
        &["binding default/b1 belongs to instance bad, not other"],
    );
    catalog.svcat(&["get", "binding", "b1"]).await?.ok()?;

    // Waiting runs out: exit 5, saying where things stand.
    let run = catalog
        .svcat(&[
            "register",
            "down",
            "--url",
            "http://127.0.0.1:9",
            "--wait",
            "--timeout",
            "2s",
        ])
        .await?;
    refused(
        &run,
        5,
        &["timed out", "broker down", "ErrorFetchingCatalog"],
    );

    // The API refuses: a duplicate name, in the server's words, exit 1.
    let run = catalog
        .svcat(&["register", "demo", "--url", broker.url()])
        .await?;
    refused(&run, 1, &["already exists"]);

    // No usable kubeconfig.
    let missing = catalog.dir.path().join("nowhere");
    let run = common::run_with(common::SVCAT, &missing, &["get", "brokers"]).await?;
    refused(&run, 1, &["kubeconfig"]);
    // An API server that is not there.
    let kubeconfig = std::fs::read_to_string(catalog.kubeconfig())?;
    let port = catalog.server.url.rsplit(':').next().unwrap_or_default();
    let elsewhere = catalog.dir.path().join("elsewhere");
    std::fs::write(&elsewhere, kubeconfig.replace(&format!(":{port}"), ":9"))?;
    let run = common::run_with(common::SVCAT, &elsewhere, &["get", "brokers"]).await?;
    refused(&run, 1, &["cannot reach the API server"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_class_from_two_brokers_is_ambiguous_until_narrowed() -> anyhow::Result<()> {
    let catalog = Catalog::with_demo_broker().await?;
    let broker = demo_broker().await?;
    catalog
        .svcat(&[
            "register",
            "team",
            "--url",
            broker.url(),
            "--scope",
            "namespace",
            "--wait",
        ])
        .await?
        .ok()?;
    let run = catalog.svcat(&["marketplace"]).await?.ok()?;
    assert!(
        run.stdout.contains("NAMESPACE"),
        "namespaced offerings show their namespace: {run:?}"
    );
    let run = catalog.svcat(&["get", "brokers"]).await?.ok()?;
    assert!(run.stdout.contains("team   default"), "{run:?}");

    let run = catalog
        .svcat(&["provision", "db", "--class", "mariadb", "--plan", "10-1-26"])
        .await?;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: class \"mariadb\" is ambiguous"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("mariadb from broker demo (cluster"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("mariadb from broker team (namespace default"),
        "{run:?}"
    );

    let run = catalog
        .svcat(&[
            "provision",
            "db",
            "--class",
            "mariadb",
            "--plan",
            "10-1-26",
            "--scope",
            "namespace",
            "--wait",
            "-o",
            "json",
        ])
        .await?
        .ok()?;
    let instance: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(instance["spec"]["serviceClassExternalName"], "mariadb");
    assert_eq!(instance["spec"]["servicePlanExternalName"], "10-1-26");
    assert_eq!(
        instance["spec"]["servicePlanRef"]["name"],
        "b3e7a9c4-1d2f-4e5a-8b6c-7d8e9f0a1b2c"
    );

    // By Kubernetes name, within one scope.
    let run = catalog
        .svcat(&[
            "provision",
            "db2",
            "--class",
            "3f1b6a2e-6c5d-4b8e-9a55-0d1f7e6f3a10",
            "--plan",
            "10-1-26",
            "--scope",
            "cluster",
            "-o",
            "yaml",
        ])
        .await?
        .ok()?;
    assert!(
        run.stdout
            .contains("clusterServiceClassName: 3f1b6a2e-6c5d-4b8e-9a55-0d1f7e6f3a10"),
        "{run:?}"
    );
    assert!(
        !run.stdout.contains("managedFields"),
        "hidden, as kubectl does"
    );

    // Another namespace: listed with -A, not without.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(catalog.client().await?);
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "elsewhere"}}))?,
        )
        .await?;
    catalog
        .svcat(&[
            "provision",
            "far",
            "-n",
            "elsewhere",
            "--class",
            "user-provided-service",
            "--scope",
            "cluster",
        ])
        .await?
        .ok()?;
    let here = catalog.svcat(&["get", "instances"]).await?.ok()?;
    assert!(!here.stdout.contains("far"), "{here:?}");
    let everywhere = catalog.svcat(&["get", "instances", "-A"]).await?.ok()?;
    assert!(
        everywhere.stdout.contains("far    elsewhere")
            && everywhere.stdout.contains("db     default"),
        "{everywhere:?}"
    );

    // A broker is cluster-wide or namespaced; `all` makes no sense for one broker.
    let run = catalog
        .svcat(&["deregister", "team", "--scope", "all"])
        .await?;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("either `cluster` or `namespace`"),
        "{run:?}"
    );
    catalog
        .svcat(&["deregister", "team", "--scope", "namespace"])
        .await?
        .ok()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_runs_svcat_as_a_plugin() -> anyhow::Result<()> {
    let catalog = Catalog::with_demo_broker().await?;
    let kubectl = test_support::kubectl_current()?;
    let bin = std::path::Path::new(common::SVCAT)
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    assert!(
        bin.join("kubectl-svcat").is_file(),
        "the plugin binary is built beside svcat"
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::process::Command::new(kubectl)
        .args(["svcat", "marketplace", "--kubeconfig"])
        .arg(catalog.kubeconfig())
        .env("PATH", path)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("user-provided-service"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn completion_scripts_are_valid_for_each_shell() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for shell in ["bash", "zsh", "fish"] {
        let run = common::run_with(
            common::SVCAT,
            &dir.path().join("unused"),
            &["completion", shell],
        )
        .await?
        .ok()?;
        assert!(
            run.stdout.contains("svcat") && run.stdout.contains("provision"),
            "{shell}"
        );
        if shell == "bash" {
            let script = dir.path().join("svcat.bash");
            std::fs::write(&script, &run.stdout)?;
            let check = tokio::process::Command::new("bash")
                .arg("-n")
                .arg(&script)
                .output()
                .await?;
            assert!(
                check.status.success(),
                "{}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    let run = common::run_with(
        common::SVCAT,
        &dir.path().join("unused"),
        &["version", "--client"],
    )
    .await?
    .ok()?;
    assert_eq!(
        run.stdout,
        format!("Client Version: v{}\n", env!("CARGO_PKG_VERSION"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn register_takes_basic_auth_from_a_secret_and_trusts_a_ca_bundle() -> anyhow::Result<()> {
    let catalog = Catalog::start(&["--no-demo-broker"]).await?;
    let ca = test_support::TestCa::new("broker-ca")?;
    let cert = ca.issue_server_cert()?;
    let mut config = reference_broker::BrokerConfig::demo();
    config.credentials = Some(reference_broker::BasicCredentials {
        username: "catalog".into(),
        password: "s3cret".into(),
    });
    config.tls = Some(reference_broker::TlsFiles {
        cert_chain: cert.cert_file.clone(),
        private_key: cert.key_file.clone(),
    });
    let broker = reference_broker::start(config, "127.0.0.1:0".parse()?).await?;
    assert!(broker.url().starts_with("https://"));
    let ca_file = catalog.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem)?;
    let ca_arg = ca_file.display().to_string();

    let secrets: Api<Secret> = Api::namespaced(catalog.client().await?, "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "broker-auth"},
        "stringData": {"username": "catalog", "password": "s3cret"}}))?;
    secrets.create(&Default::default(), &secret).await?;

    // Without the credentials the broker refuses; without the CA the certificate is not trusted.
    let run = catalog
        .svcat(&[
            "register",
            "noauth",
            "--url",
            broker.url(),
            "--ca",
            &ca_arg,
            "--wait",
            "--timeout",
            "3s",
        ])
        .await?;
    refused(&run, 5, &["ErrorFetchingCatalog"]);
    let run = catalog
        .svcat(&[
            "register",
            "noca",
            "--url",
            broker.url(),
            "--basic-secret",
            "broker-auth",
            "--wait",
            "--timeout",
            "3s",
        ])
        .await?;
    refused(&run, 5, &["ErrorFetchingCatalog"]);

    let run = catalog
        .svcat(&[
            "register",
            "secure",
            "--url",
            broker.url(),
            "--basic-secret",
            "broker-auth",
            "--ca",
            &ca_arg,
            "--wait",
            "--timeout",
            "30s",
            "-o",
            "json",
        ])
        .await?
        .ok()?;
    let registered: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(
        registered["spec"]["authInfo"]["basic"]["secretRef"],
        json!({"namespace": "default", "name": "broker-auth"})
    );
    let run = catalog
        .svcat(&["describe", "broker", "secure"])
        .await?
        .ok()?;
    assert!(
        run.stdout.contains("basic, from Secret broker-auth"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("  mariadb\n"), "{}", run.stdout);
    assert!(!run.stdout.contains("s3cret"));

    // A file that is not a PEM bundle is refused before anything is created.
    let not_pem = catalog.dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello")?;
    let not_pem = not_pem.display().to_string();
    let run = catalog
        .svcat(&["register", "bad", "--url", broker.url(), "--ca", &not_pem])
        .await?;
    refused(&run, 2, &["--ca", "not a PEM certificate bundle"]);
    // An unknown kubeconfig context.
    let run = catalog
        .svcat(&["get", "brokers", "--context", "elsewhere"])
        .await?;
    refused(&run, 1, &["elsewhere"]);
    Ok(())
}
