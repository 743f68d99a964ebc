//! `service-catalog apiserver --aggregated` without a cluster: the test plays kube-apiserver.
//! It presents the front proxy's client certificate and `X-Remote-*` headers as the
//! aggregator does, and a small stand-in on loopback serves the
//! `extension-apiserver-authentication` ConfigMap and answers TokenReview and
//! SubjectAccessReview, counting what it is asked.

mod common;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::{get, post};
use common::BINARY;
use serde_json::{Value, json};
use test_support::{ServerProcess, TestCa};

const GOOD_TOKEN: &str = "carols-token";

/// What the stand-in was asked.
#[derive(Default)]
struct Asked {
    token_reviews: usize,
    access_reviews: Vec<Value>,
}

/// The stand-in kube-apiserver: its URL.
async fn stand_in(proxy_ca: &str, asked: Arc<Mutex<Asked>>) -> anyhow::Result<String> {
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "requestheader-client-ca-file": proxy_ca,
            "requestheader-allowed-names": "[\"front-proxy-client\"]",
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
        },
    });
    let reviews = asked.clone();
    let access = asked.clone();
    let app = axum::Router::new()
        .route(
            "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
            get(move || {
                let config_map = config_map.clone();
                async move { Json(config_map) }
            }),
        )
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(move |Json(mut review): Json<Value>| {
                let asked = reviews.clone();
                async move {
                    if let Ok(mut asked) = asked.lock() {
                        asked.token_reviews += 1;
                    }
                    review["status"] = if review["spec"]["token"] == GOOD_TOKEN {
                        json!({"authenticated": true, "user": {"username": "carol", "uid": "c-1", "groups": ["team-c"]}})
                    } else {
                        json!({"authenticated": false})
                    };
                    Json(review)
                }
            }),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(move |Json(mut review): Json<Value>| {
                let asked = access.clone();
                async move {
                    let spec = review["spec"].clone();
                    if let Ok(mut asked) = asked.lock() {
                        asked.access_reviews.push(spec.clone());
                    }
                    let user = spec["user"].as_str().unwrap_or_default();
                    let resource = &spec["resourceAttributes"];
                    let allowed = match user {
                        // The aggregator's availability probe: discovery.
                        "system:kube-aggregator" => spec["nonResourceAttributes"]["verb"] == "get",
                        "dave" => resource["group"] == "servicecatalog.k8s.io",
                        "carol" => {
                            resource["namespace"] == "team-c"
                                && resource["resource"] == "serviceinstances"
                                && resource["verb"] == "list"
                        }
                        _ => false,
                    };
                    review["status"] = json!({"allowed": allowed});
                    Json(review)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

struct Aggregated {
    process: ServerProcess,
    asked: Arc<Mutex<Asked>>,
    proxy_ca: TestCa,
    /// Trusts the API server's generated serving certificate.
    server_ca: reqwest::Certificate,
    /// etcd under test runs as long as the server.
    _storage: test_support::TestStorage,
    _dir: tempfile::TempDir,
}

async fn aggregated() -> anyhow::Result<Aggregated> {
    let dir = tempfile::tempdir()?;
    let proxy_ca = TestCa::new("front-proxy-ca")?;
    let asked = Arc::new(Mutex::new(Asked::default()));
    let cluster = stand_in(&proxy_ca.cert_pem, asked.clone()).await?;
    let kubeconfig = dir.path().join("cluster.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {cluster}\nusers:\n- name: u\n  user:\n    token: service-account-token\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
        ),
    )?;
    let data = dir.path().join("data");
    let storage = test_support::TestStorage::from_env().await?;
    let mut args = storage.apiserver_args(&data, false);
    args.extend([
        "--aggregated".into(),
        "--authentication-kubeconfig".into(),
        kubeconfig.to_string_lossy().into_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = ServerProcess::start(BINARY, &args).await?;
    let server_ca = reqwest::Certificate::from_pem(&std::fs::read(data.join("tls/ca.crt"))?)?;
    Ok(Aggregated {
        process,
        _storage: storage,
        asked,
        proxy_ca,
        server_ca,
        _dir: dir,
    })
}

impl Aggregated {
    /// A client presenting a certificate issued by `ca` with common name `cn`.
    fn client_with(&self, ca: &TestCa, cn: &str) -> anyhow::Result<reqwest::Client> {
        let (cert, key) = ca.issue_client_cert(cn, None)?;
        Ok(reqwest::Client::builder()
            .add_root_certificate(self.server_ca.clone())
            .identity(reqwest::Identity::from_pem(
                format!("{cert}{key}").as_bytes(),
            )?)
            .build()?)
    }

    fn anonymous_client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .add_root_certificate(self.server_ca.clone())
            .build()?)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.process.url)
    }
}

async fn status_of(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let response = request.send().await?;
    let code = response.status().as_u16();
    let text = response.text().await?;
    Ok((code, serde_json::from_str(&text).unwrap_or(json!(text))))
}

const INSTANCES: &str = "/apis/servicecatalog.k8s.io/v1beta1/namespaces/team-c/serviceinstances";

#[tokio::test]
async fn the_front_proxy_speaks_for_its_user_and_forged_headers_do_not() -> anyhow::Result<()> {
    let server = aggregated().await?;
    let proxy = server.client_with(&server.proxy_ca, "front-proxy-client")?;
    let (code, list) = status_of(
        proxy
            .get(server.url(INSTANCES))
            .header("X-Remote-User", "dave")
            .header("X-Remote-Group", "team-d")
            .header("X-Remote-Extra-Scopes", "catalog"),
    )
    .await?;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "ServiceInstanceList");
    let review = server
        .asked
        .lock()
        .ok()
        .and_then(|a| a.access_reviews.last().cloned())
        .unwrap_or_default();
    assert_eq!(review["user"], "dave");
    // The proxy's groups, and every authenticated user's.
    assert_eq!(review["groups"], json!(["team-d", "system:authenticated"]));
    assert_eq!(review["extra"], json!({"scopes": ["catalog"]}));
    assert_eq!(
        review["resourceAttributes"],
        json!({"namespace": "team-c", "verb": "list", "group": "servicecatalog.k8s.io",
               "version": "v1beta1", "resource": "serviceinstances"})
    );

    // The same headers without the proxy's certificate, or from a certificate the proxy CA
    // issued to someone else, or from another CA, authenticate nobody.
    let forged = |client: reqwest::Client| {
        client
            .get(server.url(INSTANCES))
            .header("X-Remote-User", "dave")
            .header("X-Remote-Group", "system:masters")
    };
    let (code, status) = status_of(forged(server.anonymous_client()?)).await?;
    assert_eq!(
        (code, status["reason"].as_str()),
        (401, Some("Unauthorized"))
    );
    let impostor = server.client_with(&server.proxy_ca, "impostor")?;
    let (code, _) = status_of(forged(impostor)).await?;
    assert_eq!(code, 401);
    let other_ca = TestCa::new("some other CA")?;
    let outsider = server.client_with(&other_ca, "front-proxy-client")?;
    match status_of(forged(outsider)).await {
        Err(_) => {} // the handshake refuses a certificate from an unknown CA
        Ok((code, _)) => assert_eq!(code, 401),
    }
    Ok(())
}

#[tokio::test]
async fn tokens_and_decisions_are_delegated_to_the_cluster_and_cached() -> anyhow::Result<()> {
    let server = aggregated().await?;
    let client = server.anonymous_client()?;
    let (code, list) = status_of(client.get(server.url(INSTANCES)).bearer_auth(GOOD_TOKEN)).await?;
    assert_eq!(code, 200, "{list}");
    // Carol may list in team-c only; the cluster's refusal is a 403 Status.
    let (code, status) = status_of(
        client
            .get(
                server
                    .url("/apis/servicecatalog.k8s.io/v1beta1/namespaces/team-x/serviceinstances"),
            )
            .bearer_auth(GOOD_TOKEN),
    )
    .await?;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        "serviceinstances.servicecatalog.k8s.io is forbidden: User \"carol\" cannot list resource \"serviceinstances\" in API group \"servicecatalog.k8s.io\" in the namespace \"team-x\""
    );
    let (code, _) = status_of(
        client
            .get(server.url(INSTANCES))
            .bearer_auth("stolen-token"),
    )
    .await?;
    assert_eq!(code, 401);
    // Asked again: both answers come from the caches.
    let before = server
        .asked
        .lock()
        .map(|a| (a.token_reviews, a.access_reviews.len()))
        .unwrap_or_default();
    for _ in 0..3 {
        let (code, _) =
            status_of(client.get(server.url(INSTANCES)).bearer_auth(GOOD_TOKEN)).await?;
        assert_eq!(code, 200);
    }
    let after = server
        .asked
        .lock()
        .map(|a| (a.token_reviews, a.access_reviews.len()))
        .unwrap_or_default();
    assert_eq!(
        before, after,
        "TokenReview and SubjectAccessReview answers are cached"
    );
    Ok(())
}

#[tokio::test]
async fn the_aggregator_finds_what_it_probes_and_health_needs_no_credentials() -> anyhow::Result<()>
{
    let server = aggregated().await?;
    let proxy = server.client_with(&server.proxy_ca, "front-proxy-client")?;
    let (code, resources) = status_of(
        proxy
            .get(server.url("/apis/servicecatalog.k8s.io/v1beta1"))
            .header("X-Remote-User", "system:kube-aggregator"),
    )
    .await?;
    assert_eq!(code, 200, "{resources}");
    assert_eq!(resources["groupVersion"], "servicecatalog.k8s.io/v1beta1");
    // Only the catalog group is served: Secrets live in the real cluster.
    let (code, _) = status_of(
        proxy
            .get(server.url("/api/v1/namespaces/default/secrets"))
            .header("X-Remote-User", "dave"),
    )
    .await?;
    assert!(code == 403 || code == 404, "{code}");
    let anonymous = server.anonymous_client()?;
    for path in ["/healthz", "/livez", "/readyz"] {
        let (code, _) = status_of(anonymous.get(server.url(path))).await?;
        assert_eq!(code, 200, "{path}");
    }
    Ok(())
}
