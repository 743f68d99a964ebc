//! Who may do what on a standalone API server, through real clients: kubectl (current and
//! 1.20) with a client certificate and with a token, raw HTTP for the exact Status shapes,
//! RBAC objects written by the admin, `kubectl auth can-i`, and a slow-loris client.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use common::{ApiServer, BINARY};
use serde_json::{Value, json};
use test_support::ServerProcess;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const BOB_TOKEN: &str = "bob-token-0123456789";

/// An API server with a token file naming bob (group team-b), and kubeconfigs for the admin,
/// alice (a client certificate from `service-catalog kubeconfig`, group team-a) and bob.
struct Users {
    api: ApiServer,
    /// How the server was started (to start it again on the same data).
    args: Vec<String>,
    admin: PathBuf,
    alice: PathBuf,
    bob: PathBuf,
}

/// `service-catalog kubeconfig` for alice (group team-a) from the server's CA in `data`,
/// written to `<dir>/alice.kubeconfig`.
fn alice_kubeconfig(data: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let output = std::process::Command::new(BINARY)
        .args(["kubeconfig", "--data-dir"])
        .arg(data)
        .args(["--user", "alice", "--group", "team-a"])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "service-catalog kubeconfig: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join("alice.kubeconfig");
    std::fs::write(&path, &output.stdout)?;
    Ok(path)
}

async fn start_users(extra: &[&str]) -> anyhow::Result<Users> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, format!("{BOB_TOKEN},bob,bob-uid,\"team-b\"\n"))?;
    let data = dir.path().join("data");
    let storage = test_support::TestStorage::from_env().await?;
    let mut args = storage.apiserver_args(&data, false);
    args.extend([
        "--token-auth-file".into(),
        tokens.to_string_lossy().into_owned(),
    ]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = ServerProcess::start(BINARY, &arg_refs).await?;
    let admin = data.join("kubeconfig");
    let alice = alice_kubeconfig(&data, dir.path())?;
    // bob: the admin's kubeconfig with bob's token instead.
    let bob = dir.path().join("bob.kubeconfig");
    let admin_text = std::fs::read_to_string(&admin)?;
    let bob_text: String = admin_text
        .lines()
        .map(|line| match line.trim_start().strip_prefix("token: ") {
            Some(_) => format!("    token: {BOB_TOKEN}"),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&bob, bob_text)?;
    Ok(Users {
        args,
        api: ApiServer {
            process,
            config: admin.clone(),
            dir,
            storage,
        },
        admin,
        alice,
        bob,
    })
}

fn kubectl(config: &Path, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    test_support::run_kubectl(&test_support::kubectl_current()?, config, args, None)
}

fn kubectl_1_20(config: &Path, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    test_support::run_kubectl(&test_support::kubectl_1_20()?, config, args, None)
}

fn ok(config: &Path, args: &[&str]) -> anyhow::Result<String> {
    let (success, stdout, stderr) = kubectl(config, args)?;
    anyhow::ensure!(success, "kubectl {} failed: {stderr}", args.join(" "));
    Ok(stdout)
}

/// kubectl fails, saying `expected` on stderr.
fn refused(config: &Path, args: &[&str], expected: &str) -> anyhow::Result<()> {
    let (success, stdout, stderr) = kubectl(config, args)?;
    anyhow::ensure!(
        !success,
        "kubectl {} should have failed: {stdout}",
        args.join(" ")
    );
    anyhow::ensure!(
        stderr.contains(expected),
        "kubectl {}: expected {expected:?} in {stderr:?}",
        args.join(" ")
    );
    Ok(())
}

/// An HTTPS client trusting the server's generated CA, with no credentials.
fn https(users: &Users) -> anyhow::Result<reqwest::Client> {
    let ca = std::fs::read(users.admin.with_file_name("tls").join("ca.crt"))?;
    Ok(reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .build()?)
}

async fn call(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(json!(text))))
}

const TEAM_A_USER: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: team-a
---
apiVersion: v1
kind: Namespace
metadata:
  name: team-b
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: catalog-users
  namespace: team-a
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: servicecatalog.k8s.io:user
subjects:
- kind: Group
  apiGroup: rbac.authorization.k8s.io
  name: team-a
---
apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
  namespace: team-b
stringData:
  password: s3cret
";

#[tokio::test]
async fn kubectl_is_who_its_client_certificate_or_token_says() -> anyhow::Result<()> {
    let users = start_users(&[]).await?;
    let whoami = |config: &Path| -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&ok(
            config,
            &["auth", "whoami", "-o", "json"],
        )?)?)
    };
    let alice = whoami(&users.alice)?;
    assert_eq!(alice["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        alice["status"]["userInfo"]["groups"],
        json!(["team-a", "system:authenticated"])
    );
    let bob = whoami(&users.bob)?;
    assert_eq!(bob["status"]["userInfo"]["username"], "bob");
    assert_eq!(bob["status"]["userInfo"]["uid"], "bob-uid");
    let admin = whoami(&users.admin)?;
    assert!(
        admin["status"]["userInfo"]["groups"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("system:masters"))),
        "{admin}"
    );
    // Every authenticated user may browse the marketplace; kubectl 1.20 with the certificate.
    let (success, _, stderr) = kubectl_1_20(&users.alice, &["get", "clusterserviceclasses"])?;
    assert!(success, "kubectl 1.20 with a client certificate: {stderr}");
    let (success, _, stderr) = kubectl_1_20(&users.bob, &["get", "clusterserviceplans"])?;
    assert!(success, "kubectl 1.20 with a token: {stderr}");
    Ok(())
}

#[tokio::test]
async fn a_user_without_rights_gets_403_in_the_kubernetes_status_shape() -> anyhow::Result<()> {
    let users = start_users(&[]).await?;
    let client = https(&users)?;
    let url = &users.api.process.url;
    let (code, status) = call(
        &client,
        &format!("{url}/api/v1/namespaces/team-a/secrets/db"),
        Some(BOB_TOKEN),
    )
    .await?;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "secrets \"db\" is forbidden: User \"bob\" cannot get resource \"secrets\" in API group \"\" in the namespace \"team-a\"",
            "reason": "Forbidden", "details": {"name": "db", "kind": "secrets"}, "code": 403,
        })
    );
    let (code, status) = call(&client, &format!("{url}/metrics"), Some(BOB_TOKEN)).await?;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        "forbidden: User \"bob\" cannot get path \"/metrics\""
    );
    refused(
        &users.bob,
        &["create", "namespace", "intruders"],
        "Error from server (Forbidden): namespaces is forbidden: User \"bob\" cannot create resource \"namespaces\"",
    )?;
    Ok(())
}

#[tokio::test]
async fn requests_without_valid_credentials_get_401_and_anonymous_only_what_rbac_allows()
-> anyhow::Result<()> {
    let users = start_users(&[]).await?;
    let client = https(&users)?;
    let url = users.api.process.url.clone();
    let unauthorized = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    for token in [None, Some("not-a-token")] {
        let (code, status) = call(&client, &format!("{url}/api/v1/namespaces"), token).await?;
        assert_eq!((code, &status), (401, &unauthorized), "token {token:?}");
    }
    // Probes carry no credentials.
    let (code, _) = call(&client, &format!("{url}/readyz"), None).await?;
    assert_eq!(code, 200);
    drop(users);

    let users = start_users(&["--anonymous-auth"]).await?;
    let client = https(&users)?;
    let url = users.api.process.url.clone();
    let (code, version) = call(&client, &format!("{url}/version"), None).await?;
    assert_eq!(
        code, 200,
        "system:public-info-viewer lets anyone read /version: {version}"
    );
    let (code, status) = call(&client, &format!("{url}/api/v1/namespaces"), None).await?;
    assert_eq!(code, 403, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("User \"system:anonymous\" cannot list")),
        "{status}"
    );
    // A wrong token is refused even where anonymous requests are served.
    let (code, _) = call(&client, &format!("{url}/version"), Some("not-a-token")).await?;
    assert_eq!(code, 401);
    Ok(())
}

#[tokio::test]
async fn a_namespace_user_works_in_their_namespace_and_cannot_read_anothers() -> anyhow::Result<()>
{
    let users = start_users(&[]).await?;
    let manifests = users.api.dir.path().join("team-a.yaml");
    std::fs::write(&manifests, TEAM_A_USER)?;
    ok(&users.admin, &["apply", "-f", &manifests.to_string_lossy()])?;
    let alice = &users.alice;
    // Their own namespace: Secrets, instances, bindings and their own brokers.
    ok(
        alice,
        &[
            "create",
            "secret",
            "generic",
            "params",
            "-n",
            "team-a",
            "--from-literal=size=2",
        ],
    )?;
    ok(alice, &["get", "secrets", "-n", "team-a"])?;
    ok(
        alice,
        &["get", "serviceinstances,servicebindings", "-n", "team-a"],
    )?;
    // Someone else's namespace.
    refused(
        alice,
        &["get", "secret", "db-credentials", "-n", "team-b"],
        "secrets \"db-credentials\" is forbidden: User \"alice\" cannot get resource \"secrets\" in API group \"\" in the namespace \"team-b\"",
    )?;
    refused(
        alice,
        &["get", "servicebindings", "-n", "team-b"],
        "servicebindings.servicecatalog.k8s.io is forbidden: User \"alice\" cannot list resource \"servicebindings\" in API group \"servicecatalog.k8s.io\" in the namespace \"team-b\"",
    )?;

    // No cluster brokers, no status writes, no RBAC changes.
    let broker = users.api.dir.path().join("broker.yaml");
    std::fs::write(
        &broker,
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ClusterServiceBroker\nmetadata:\n  name: mine\nspec:\n  url: http://127.0.0.1:1\n",
    )?;
    refused(
        alice,
        &["create", "-f", &broker.to_string_lossy()],
        "cannot create resource \"clusterservicebrokers\" in API group \"servicecatalog.k8s.io\" at the cluster scope",
    )?;
    refused(
        alice,
        &["delete", "rolebinding", "catalog-users", "-n", "team-a"],
        "cannot delete resource \"rolebindings\"",
    )?;
    // Keys from another namespace's Secret cannot be copied into a binding's Secret (the
    // controller would read it with its own rights).
    let binding = users.api.dir.path().join("binding.yaml");
    std::fs::write(
        &binding,
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceBinding\nmetadata:\n  name: b\n  namespace: team-a\nspec:\n  instanceRef:\n    name: db\n  secretTransforms:\n  - addKeysFrom:\n      secretRef:\n        namespace: team-b\n        name: db-credentials\n",
    )?;
    refused(
        alice,
        &["create", "-f", &binding.to_string_lossy()],
        "spec.secretTransforms[0].addKeysFrom.secretRef.namespace: Forbidden: keys may only be added from Secrets in the binding's own namespace",
    )?;
    // Nor can a path with an encoded '/' be authorized as one thing and run as another.
    let (code, status) = call(
        &https(&users)?,
        &format!(
            "{}/apis/servicecatalog.k8s.io/v1beta1/namespaces/team-a/serviceinstances/db%2Fstatus",
            users.api.process.url
        ),
        Some(BOB_TOKEN),
    )
    .await?;
    assert_eq!(code, 400, "{status}");
    // Impersonation is refused, not ignored.
    refused(
        alice,
        &["get", "secrets", "-n", "team-a", "--as=bob"],
        "impersonation (Impersonate-* headers) is not supported",
    )?;
    // Nothing they tried changed anything.
    let bindings = ok(
        &users.admin,
        &["get", "rolebindings", "-n", "team-a", "-o", "name"],
    )?;
    assert_eq!(
        bindings.trim(),
        "rolebinding.rbac.authorization.k8s.io/catalog-users"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_auth_can_i_answers_from_the_stored_rbac() -> anyhow::Result<()> {
    let users = start_users(&[]).await?;
    let manifests = users.api.dir.path().join("team-a.yaml");
    std::fs::write(&manifests, TEAM_A_USER)?;
    ok(&users.admin, &["apply", "-f", &manifests.to_string_lossy()])?;
    let cases: &[(&[&str], &str)] = &[
        (&["create", "serviceinstances", "-n", "team-a"], "yes"),
        (&["delete", "servicebindings", "-n", "team-a"], "yes"),
        (&["get", "secrets", "-n", "team-a"], "yes"),
        (&["get", "secrets", "-n", "team-b"], "no"),
        (&["create", "serviceinstances", "-n", "team-b"], "no"),
        (&["list", "clusterserviceclasses"], "yes"),
        (&["create", "clusterservicebrokers"], "no"),
        (
            &[
                "update",
                "serviceinstances",
                "--subresource=status",
                "-n",
                "team-a",
            ],
            "no",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["auth", "can-i"];
        full.extend_from_slice(args);
        for (name, runner) in [
            ("current", kubectl as fn(&Path, &[&str]) -> _),
            ("1.20", kubectl_1_20),
        ] {
            if name == "1.20" && args.iter().any(|a| a.starts_with("--subresource")) {
                continue; // kubectl 1.20 has no --subresource
            }
            let (_, stdout, stderr) = runner(&users.alice, &full)?;
            assert_eq!(
                stdout.trim(),
                *expected,
                "kubectl {name} {}: {stderr}",
                full.join(" ")
            );
        }
    }
    // The admin may do anything; a binding written now counts at once.
    assert_eq!(
        ok(&users.admin, &["auth", "can-i", "*", "*"])?.trim(),
        "yes"
    );
    let (_, stdout, _) = kubectl(
        &users.bob,
        &["auth", "can-i", "get", "secrets", "-n", "team-b"],
    )?;
    assert_eq!(stdout.trim(), "no");
    ok(
        &users.admin,
        &[
            "create",
            "rolebinding",
            "bob-views",
            "-n",
            "team-b",
            "--clusterrole=servicecatalog.k8s.io:user",
            "--user=bob",
        ],
    )?;
    let (_, stdout, stderr) = kubectl(
        &users.bob,
        &["auth", "can-i", "get", "secrets", "-n", "team-b"],
    )?;
    assert_eq!(stdout.trim(), "yes", "{stderr}");
    Ok(())
}

#[tokio::test]
async fn rbac_objects_are_validated_like_kube_apiserver() -> anyhow::Result<()> {
    let users = start_users(&[]).await?;
    let admin = &users.admin.clone();
    ok(admin, &["create", "namespace", "team-a"])?;
    ok(
        admin,
        &[
            "create",
            "rolebinding",
            "b",
            "-n",
            "team-a",
            "--clusterrole=servicecatalog.k8s.io:viewer",
            "--user=alice",
        ],
    )?;
    refused(
        admin,
        &[
            "patch",
            "rolebinding",
            "b",
            "-n",
            "team-a",
            "--type=merge",
            "-p",
            r#"{"roleRef":{"name":"cluster-admin"}}"#,
        ],
        "roleRef: Invalid value",
    )?;
    let role = users.api.dir.path().join("role.yaml");
    std::fs::write(
        &role,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: r\n  namespace: team-a\nrules:\n- apiGroups: [\"\"]\n  resources: [secrets]\n- nonResourceURLs: [\"/metrics\"]\n  verbs: [get]\n",
    )?;
    let (success, _, stderr) = kubectl(admin, &["create", "-f", &role.to_string_lossy()])?;
    assert!(!success);
    assert!(
        stderr.contains("rules[0].verbs: Required value"),
        "{stderr}"
    );
    assert!(
        stderr.contains("namespaced rules cannot apply to non-resource URLs"),
        "{stderr}"
    );
    // Defaults are restored at the next start, unless someone opted out of updates.
    let rules = |role: &str| {
        ok(
            admin,
            &["get", "clusterrole", role, "-o", "jsonpath={.rules}"],
        )
    };
    let emptied = r#"[{"op":"replace","path":"/rules","value":[]}]"#;
    for role in ["servicecatalog.k8s.io:viewer", "servicecatalog.k8s.io:user"] {
        ok(
            admin,
            &["patch", "clusterrole", role, "--type=json", "-p", emptied],
        )?;
        assert_eq!(rules(role)?.trim(), "[]");
    }
    ok(
        admin,
        &[
            "annotate",
            "--overwrite",
            "clusterrole",
            "servicecatalog.k8s.io:user",
            "rbac.authorization.kubernetes.io/autoupdate=false",
        ],
    )?;
    let Users { api, args, .. } = users;
    let ApiServer {
        process,
        dir: _dir,
        storage: _storage,
        ..
    } = api;
    process.terminate().await?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _restarted = ServerProcess::start(BINARY, &args).await?;
    let restored = rules("servicecatalog.k8s.io:viewer")?;
    assert!(
        restored.contains("serviceinstances"),
        "the default is restored: {restored}"
    );
    assert_eq!(
        rules("servicecatalog.k8s.io:user")?.trim(),
        "[]",
        "an opted-out default keeps its changes"
    );
    Ok(())
}

/// `service-catalog apiserver --plain-http` on a throwaway data dir, with `extra` flags.
async fn plain_http_server(extra: &[&str]) -> anyhow::Result<(ServerProcess, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().into_owned();
    let mut args = vec![
        "apiserver",
        "--data-dir",
        &data,
        "--listen",
        "127.0.0.1:0",
        "--plain-http",
    ];
    args.extend_from_slice(extra);
    let process = ServerProcess::start(BINARY, &args).await?;
    Ok((process, dir))
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off_and_others_are_served()
-> anyhow::Result<()> {
    let (process, _dir) = plain_http_server(&["--request-header-timeout", "1s"]).await?;
    let address = process
        .url
        .strip_prefix("http://")
        .context("a plain HTTP URL")?
        .to_owned();
    // A dozen slow-loris connections: a request line and one header, then nothing; and a few
    // that never send a byte.
    let mut slow = Vec::new();
    for _ in 0..12 {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        stream
            .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await?;
        slow.push(stream);
    }
    for _ in 0..3 {
        slow.push(tokio::net::TcpStream::connect(&address).await?);
    }
    // The server still answers others.
    let (code, _) = call(
        &reqwest::Client::new(),
        &format!("{}/version", process.url),
        None,
    )
    .await?;
    assert_eq!(code, 200);
    // And closes the slow ones (an error response or EOF, never a hang).
    for mut stream in slow {
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buffer))
            .await
            .context("the server kept a connection with unfinished headers open")?;
        let text = String::from_utf8_lossy(&buffer);
        assert!(
            read.is_err() || buffer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "unexpected answer to half a request: {text}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn plain_http_on_loopback_is_the_insecure_port_and_still_refuses_bad_tokens()
-> anyhow::Result<()> {
    let (process, _dir) = plain_http_server(&[]).await?;
    let client = reqwest::Client::new();
    let review = client
        .post(format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            process.url
        ))
        .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "system:insecure-loopback"
    );
    let (code, _) = call(&client, &format!("{}/api/v1/namespaces", process.url), None).await?;
    assert_eq!(code, 200);
    let (code, _) = call(
        &client,
        &format!("{}/api/v1/namespaces", process.url),
        Some("not-a-token"),
    )
    .await?;
    assert_eq!(code, 401);
    // A page that rebinds its own host name to 127.0.0.1 names that host: refused.
    let response = client
        .get(format!("{}/api/v1/namespaces", process.url))
        .header("host", "attacker.example:80")
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 403);
    Ok(())
}

#[tokio::test]
async fn nobody_grants_permissions_they_do_not_hold() -> anyhow::Result<()> {
    let users = start_users(&[]).await?;
    let manifests = users.api.dir.path().join("team-a.yaml");
    std::fs::write(&manifests, TEAM_A_USER)?;
    ok(&users.admin, &["apply", "-f", &manifests.to_string_lossy()])?;
    // alice may also manage Roles and RoleBindings in team-a.
    ok(
        &users.admin,
        &[
            "create",
            "clusterrole",
            "rbac-manager",
            "--verb=get,list,create,update,patch,delete",
            "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
        ],
    )?;
    ok(
        &users.admin,
        &[
            "create",
            "rolebinding",
            "alice-rbac",
            "-n",
            "team-a",
            "--clusterrole=rbac-manager",
            "--user=alice",
        ],
    )?;
    let alice = &users.alice;
    // What she holds she may hand on.
    ok(
        alice,
        &[
            "create",
            "rolebinding",
            "bob-user",
            "-n",
            "team-a",
            "--clusterrole=servicecatalog.k8s.io:user",
            "--user=bob",
        ],
    )?;
    ok(
        alice,
        &[
            "create",
            "role",
            "secret-reader",
            "-n",
            "team-a",
            "--verb=get",
            "--resource=secrets",
        ],
    )?;
    // More than she holds, she may not.
    refused(
        alice,
        &[
            "create",
            "rolebinding",
            "alice-admin",
            "-n",
            "team-a",
            "--clusterrole=cluster-admin",
            "--user=alice",
        ],
        "is attempting to grant RBAC permissions not currently held",
    )?;
    refused(
        alice,
        &[
            "create",
            "role",
            "brokers",
            "-n",
            "team-a",
            "--verb=create",
            "--resource=clusterservicebrokers.servicecatalog.k8s.io",
        ],
        "{APIGroups:[\"servicecatalog.k8s.io\"], Resources:[\"clusterservicebrokers\"], Verbs:[\"create\"]}",
    )?;
    refused(
        alice,
        &[
            "create",
            "rolebinding",
            "later",
            "-n",
            "team-a",
            "--clusterrole=appears-later",
            "--user=alice",
        ],
        "ClusterRole \"appears-later\" not found",
    )?;
    // Nor can she widen a Role she may edit.
    refused(
        alice,
        &[
            "patch",
            "role",
            "secret-reader",
            "-n",
            "team-a",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/0/verbs/-","value":"escalate"}]"#,
        ],
        "not currently held",
    )?;
    // bob got exactly what alice granted.
    let (_, stdout, _) = kubectl(
        &users.bob,
        &[
            "auth",
            "can-i",
            "create",
            "serviceinstances",
            "-n",
            "team-a",
        ],
    )?;
    assert_eq!(stdout.trim(), "yes");
    let (_, stdout, _) = kubectl(alice, &["auth", "can-i", "create", "clusterservicebrokers"])?;
    assert_eq!(stdout.trim(), "no");
    Ok(())
}

#[tokio::test]
async fn kubectl_auth_can_i_list_shows_what_a_namespace_user_may_do() -> anyhow::Result<()> {
    let users = start_users(&[]).await?;
    let manifests = users.api.dir.path().join("team-a.yaml");
    std::fs::write(&manifests, TEAM_A_USER)?;
    ok(&users.admin, &["apply", "-f", &manifests.to_string_lossy()])?;
    let in_team_a = ok(&users.alice, &["auth", "can-i", "--list", "-n", "team-a"])?;
    for expected in [
        "serviceinstances.servicecatalog.k8s.io",
        "secrets",
        "clusterserviceclasses.servicecatalog.k8s.io",
        "selfsubjectaccessreviews.authorization.k8s.io",
        "/version",
    ] {
        assert!(
            in_team_a.contains(expected),
            "{expected} missing from:\n{in_team_a}"
        );
    }
    let in_team_b = ok(&users.alice, &["auth", "can-i", "--list", "-n", "team-b"])?;
    assert!(!in_team_b.contains("secrets"), "{in_team_b}");
    assert!(!in_team_b.contains("serviceinstances"), "{in_team_b}");
    Ok(())
}

#[tokio::test]
async fn applying_an_object_that_does_not_exist_needs_the_right_to_create_it() -> anyhow::Result<()>
{
    let users = start_users(&[]).await?;
    // The controller may patch cluster brokers (finalizers), not create them.
    let controller = users.admin.with_file_name("controller.kubeconfig");
    let broker = users.api.dir.path().join("broker.yaml");
    std::fs::write(
        &broker,
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ClusterServiceBroker\nmetadata:\n  name: sneaky\nspec:\n  url: http://127.0.0.1:1\n",
    )?;
    refused(
        &controller,
        &["apply", "--server-side", "-f", &broker.to_string_lossy()],
        "cannot create resource \"clusterservicebrokers\"",
    )?;
    let listed = ok(
        &users.admin,
        &["get", "clusterservicebrokers", "-o", "name"],
    )?;
    assert!(!listed.contains("sneaky"), "{listed}");
    // A review whose body is not an object is a 400, not a dropped connection.
    let response = https(&users)?
        .post(format!(
            "{}/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            users.api.process.url
        ))
        .bearer_auth(BOB_TOKEN)
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 400);
    Ok(())
}

#[tokio::test]
async fn the_requesters_identity_reaches_the_broker_as_the_originating_identity()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let _up = test_support::service_catalog_up(&data, &[]).await?;
    let admin = data.join("kubeconfig");
    let alice = alice_kubeconfig(&data, dir.path())?;
    ok(&admin, &["create", "namespace", "team-a"])?;
    ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "users",
            "-n",
            "team-a",
            "--clusterrole=servicecatalog.k8s.io:user",
            "--group=team-a",
        ],
    )?;
    let instance = dir.path().join("instance.yaml");
    std::fs::write(
        &instance,
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceInstance\nmetadata:\n  name: db\n  namespace: team-a\nspec:\n  clusterServiceClassExternalName: user-provided-service\n  clusterServicePlanExternalName: default\n",
    )?;
    // The user's own kubectl, with only the user role.
    ok(&alice, &["create", "-f", &instance.to_string_lossy()])?;
    ok(
        &alice,
        &[
            "wait",
            "--for=condition=Ready",
            "serviceinstance/db",
            "-n",
            "team-a",
            "--timeout=60s",
        ],
    )?;
    let recorded = ok(
        &alice,
        &[
            "get",
            "serviceinstance",
            "db",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.userInfo.username} {.spec.userInfo.groups}",
        ],
    )?;
    assert_eq!(
        recorded.trim(),
        r#"alice ["team-a","system:authenticated"]"#
    );
    // What the controller (as itself) sent the broker names alice, not the controller.
    let broker = ok(
        &admin,
        &[
            "get",
            "clusterservicebroker",
            "demo",
            "-o",
            "jsonpath={.spec.url}",
        ],
    )?;
    let requests: Value = reqwest::get(format!("{}/admin/requests", broker.trim_end_matches('/')))
        .await?
        .json()
        .await?;
    let provision = requests
        .as_array()
        .and_then(|r| {
            r.iter().find(|r| {
                r["method"] == "PUT"
                    && r["path"]
                        .as_str()
                        .is_some_and(|p| p.contains("/v2/service_instances/"))
            })
        })
        .context("the broker saw no provision")?;
    assert_eq!(provision["originating_identity"]["platform"], "kubernetes");
    assert_eq!(
        provision["originating_identity"]["value"]["username"],
        "alice"
    );
    assert_eq!(
        provision["originating_identity"]["value"]["groups"],
        json!(["team-a", "system:authenticated"])
    );
    Ok(())
}

#[test]
fn bad_credential_files_stop_the_server_naming_the_problem() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "good-token,carol,c1\nshort,line\n")?;
    let data = dir.path().join("data");
    let output = std::process::Command::new(BINARY)
        .args(["apiserver", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--token-auth-file")
        .arg(&tokens)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("tokens.csv: line 2: expected token,user,uid"),
        "{stderr}"
    );
    // A user's kubeconfig needs the server's generated CA.
    let output = std::process::Command::new(BINARY)
        .args(["kubeconfig", "--user", "alice", "--data-dir"])
        .arg(dir.path().join("nowhere"))
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no generated CA in"), "{stderr}");
    Ok(())
}
