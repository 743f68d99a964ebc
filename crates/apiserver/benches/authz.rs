//! What authentication and RBAC cost per request: the same GET over real HTTP on loopback,
//! in-process on a SQLite store, with authorization off, as a `system:masters` token (RBAC
//! skipped), and as a user whose one RoleBinding sits among 1,000 others; then compiling and
//! evaluating the policy alone. Run:
//!
//!     cargo bench -p apiserver --bench authz
//!
//! Results go in docs/benchmarks.md. Not a test: nothing here asserts a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::authz::{Attributes, Policy};
use apiserver::{ApiServer, Authenticator, Authorization, UserIdentity};
use axum::http::Method;
use serde_json::{Value, json};
use storage::sqlite::{SqliteOptions, SqliteStore};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const REQUESTS: usize = 3_000;
const OTHER_BINDINGS: usize = 1_000;

fn binding(namespace: &str, name: &str, user: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "viewer"},
        "subjects": [{"kind": "User", "name": user}]})
}

fn viewer() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "viewer"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})
}

/// A server with `authorization`; the admin token is `admin`, the user token `user`.
async fn server(authorization: Authorization) -> Result<(String, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(SqliteOptions::new(
        dir.path().join("db"),
    ))?);
    let mut registry = apiserver::Registry::standalone_core();
    apiserver::rbac::add_kinds(&mut registry);
    let mut authenticator = Authenticator::default();
    authenticator.add_token("admin", UserIdentity::new("admin", &["system:masters"]));
    authenticator.add_token("user", UserIdentity::new("user", &[]));
    let mut objects = vec![viewer(), binding("default", "mine", "user")];
    objects.extend((0..OTHER_BINDINGS).map(|i| {
        binding(
            &format!("ns-{}", i % 50),
            &format!("b-{i}"),
            &format!("u-{i}"),
        )
    }));
    let server = Arc::new(
        ApiServer::new(store, registry)?
            .with_authenticator(authenticator)
            .with_authorization(authorization)
            .with_bootstrap_objects(objects),
    );
    server.bootstrap().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = apiserver::url_of(listener.local_addr()?);
    tokio::spawn(server.serve(listener, std::future::pending()));
    Ok((url, dir))
}

/// Sequential GETs of one ConfigMap with `token`: (requests/s, p50 ms).
async fn gets(url: &str, token: Option<&str>) -> Result<(f64, f64)> {
    let client = reqwest::Client::new();
    let path = format!("{url}/api/v1/namespaces/default/configmaps/c");
    let put = client
        .post(format!("{url}/api/v1/namespaces/default/configmaps"))
        .bearer_auth("admin")
        .json(&json!({"metadata": {"name": "c"}, "data": {"k": "v"}}))
        .send()
        .await?;
    if !put.status().is_success() && put.status().as_u16() != 409 {
        return Err(format!("creating the ConfigMap: {}", put.status()).into());
    }
    // Let the watch caches (and so the RBAC policy) load.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::with_capacity(REQUESTS);
    let started = Instant::now();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let mut request = client.get(&path);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            return Err(format!("GET: {}", response.status()).into());
        }
        response.bytes().await?;
        latencies.push(t.elapsed());
    }
    let rate = REQUESTS as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let p50 = latencies[latencies.len() / 2].as_secs_f64() * 1e3;
    Ok((rate, p50))
}

#[tokio::main]
async fn main() -> Result<()> {
    println!("| requests as | authorization | GET/s | p50 ms |");
    println!("|---|---|---|---|");
    let (url, _a) = server(Authorization::AlwaysAllow).await?;
    let (rate, p50) = gets(&url, None).await?;
    println!("| anonymous | none | {rate:.0} | {p50:.2} |");
    let (url, _b) = server(Authorization::Rbac).await?;
    let (rate, p50) = gets(&url, Some("admin")).await?;
    println!("| system:masters token | RBAC (skipped) | {rate:.0} | {p50:.2} |");
    let (rate, p50) = gets(&url, Some("user")).await?;
    println!(
        "| user token, 1 of {} RoleBindings | RBAC | {rate:.0} | {p50:.2} |",
        OTHER_BINDINGS + 1
    );

    // The policy alone.
    // The user's binding last: every other one is looked at first.
    let mut bindings: Vec<Value> = (0..OTHER_BINDINGS)
        .map(|i| binding("default", &format!("b-{i}"), &format!("u-{i}")))
        .collect();
    bindings.push(binding("default", "mine", "user"));
    let started = Instant::now();
    let policy = Policy::compile(&[viewer()], &[], &[], &bindings);
    let compile = started.elapsed();
    let attributes = Attributes::from_request(
        UserIdentity::new("user", &[]),
        &Method::GET,
        "/api/v1/namespaces/default/configmaps/c",
        "",
    );
    let started = Instant::now();
    let mut allowed = 0;
    for _ in 0..10_000 {
        allowed += usize::from(policy.allows(&attributes));
    }
    let per_check = started.elapsed() / 10_000;
    println!(
        "\npolicy of {} bindings: compiled in {:.2} ms; one decision {:.1} µs ({allowed} allowed)",
        bindings.len(),
        compile.as_secs_f64() * 1e3,
        per_check.as_secs_f64() * 1e6
    );
    Ok(())
}
