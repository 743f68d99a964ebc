//! A Kubernetes-compatible API server, generic over a [`Registry`] of kinds and a revisioned
//! [`storage::Store`]: discovery, CRUD, list/watch with Kubernetes semantics, and `Status` errors
//! (`../shared/reference/k8s-api-compat.md` is the spec).
//!
//! - [`kinds`]: declaring a kind (the only thing a new kind needs).
//! - [`rest`]: the verbs, generic over kinds.
//! - [`discovery`]: `/api`, `/apis`, per group-version lists, aggregated discovery, `/version`.
//! - [`selectors`], [`objects`], [`status`]: label/field selectors, object metadata, errors.

// `ApiError` is ~150 bytes and only travels on the error path of an HTTP request: boxing it
// would cost more code than the copies it saves.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod auth;
pub mod authz;
pub mod cache;
pub mod discovery;
pub mod kinds;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod openapi_pb;
pub mod protobuf;
pub mod rbac;
pub mod rest;
pub mod selectors;
pub mod smp;
pub mod status;
pub mod tables;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::json;
use storage::{StorageError, Store};

pub use auth::{Authentication, Authenticator, UserIdentity};
pub use authz::{Attributes, Authorization, Authorizer, Decision};
pub use kinds::{
    Admission, Column, ColumnValue, Registry, ResourceKind, SpecSubresource, Strategy,
};
pub use status::ApiError;

/// How often terminating namespaces are re-examined.
const NAMESPACE_REAP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Namespaces every cluster has.
const BUILT_IN_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] tls_serve::TlsError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct ApiServer {
    rest: rest::Rest,
    authenticator: Authenticator,
    /// Objects created at start when missing (and kept current when they say so).
    bootstrap_objects: Vec<serde_json::Value>,
    /// CAs whose client certificates the TLS handshake accepts.
    client_roots: Vec<tls_serve::rustls::pki_types::CertificateDer<'static>>,
    limits: tls_serve::ServeLimits,
    /// Requests must name a loopback host (the insecure plain-HTTP port).
    loopback_hosts_only: bool,
}

impl ApiServer {
    pub fn new(store: Arc<dyn Store>, registry: Registry) -> Result<Self, prometheus::Error> {
        let metrics = metrics::Metrics::new()?;
        let store: Arc<dyn Store> = Arc::new(metrics::MeteredStore::new(store, &metrics));
        Ok(Self {
            rest: rest::Rest::new(store, registry, metrics),
            authenticator: Authenticator::default(),
            bootstrap_objects: Vec::new(),
            client_roots: Vec::new(),
            limits: tls_serve::ServeLimits::default(),
            loopback_hosts_only: false,
        })
    }

    /// Who requests are (the default: everyone is anonymous).
    pub fn with_authenticator(mut self, authenticator: Authenticator) -> Self {
        self.authenticator = authenticator;
        self
    }

    /// How requests are authorized (the default: everything is allowed). RBAC also creates
    /// [`authz::default_policy`] at bootstrap.
    pub fn with_authorization(mut self, authorization: Authorization) -> Self {
        if matches!(authorization, Authorization::Rbac) {
            self.bootstrap_objects.splice(0..0, authz::default_policy());
        }
        self.rest.authorization = authorization;
        self
    }

    /// More objects to create at bootstrap (the product's default roles and bindings).
    pub fn with_bootstrap_objects(mut self, objects: Vec<serde_json::Value>) -> Self {
        self.bootstrap_objects.extend(objects);
        self
    }

    /// CAs whose client certificates the TLS handshake accepts (the client CA and the
    /// front proxy's); which one issued a certificate is the authenticator's business.
    pub fn with_client_roots(
        mut self,
        roots: Vec<tls_serve::rustls::pki_types::CertificateDer<'static>>,
    ) -> Self {
        self.client_roots = roots;
        self
    }

    /// Refuse requests whose `Host` is not a loopback name (for the insecure port, where a
    /// request without credentials is an administrator).
    pub fn with_loopback_hosts_only(mut self) -> Self {
        self.loopback_hosts_only = true;
        self
    }

    pub fn with_limits(mut self, limits: tls_serve::ServeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether `attributes` may proceed.
    pub async fn authorize(&self, attributes: &Attributes) -> Decision {
        self.rest.authorize(attributes).await
    }

    /// Creates the built-in namespaces if the registry serves namespaces and they are missing.
    pub async fn bootstrap(&self) -> Result<(), StorageError> {
        let Some(kind) = self.rest.registry.find("", "v1", "namespaces") else {
            return Ok(());
        };
        for name in BUILT_IN_NAMESPACES {
            let object = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                             "creationTimestamp": objects::now_rfc3339(), "generation": 1},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            match self
                .rest
                .store
                .create(&kind.key(None, name), objects::encode(&object))
                .await
            {
                Ok(_) | Err(StorageError::KeyExists { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        for object in &self.bootstrap_objects {
            self.bootstrap_object(object).await?;
        }
        Ok(())
    }

    /// Creates a bootstrap object if missing; adds missing default rules and subjects to a
    /// stored one that still carries the autoupdate annotation, as kube-apiserver's RBAC
    /// bootstrap reconciles its defaults.
    async fn bootstrap_object(&self, object: &serde_json::Value) -> Result<(), StorageError> {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
        };
        let (group, version) = match text("/apiVersion").split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", text("/apiVersion")),
        };
        let Some(kind) = self
            .rest
            .registry
            .kinds()
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == text("/kind"))
        else {
            return Ok(());
        };
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(|v| v.as_str());
        let key = kind.key(namespace, text("/metadata/name"));
        let mut fresh = object.clone();
        fresh["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        fresh["metadata"]["creationTimestamp"] = json!(objects::now_rfc3339());
        match self.rest.store.create(&key, objects::encode(&fresh)).await {
            Ok(_) => return Ok(()),
            Err(StorageError::KeyExists { .. }) => {}
            Err(error) => return Err(error),
        }
        let Some(stored) = self.rest.store.get(&key).await? else {
            return Ok(());
        };
        let Ok(mut current) = serde_json::from_slice::<serde_json::Value>(&stored.value) else {
            return Ok(());
        };
        let autoupdate = current
            .pointer(&format!(
                "/metadata/annotations/{}",
                authz::AUTOUPDATE_ANNOTATION.replace('/', "~1")
            ))
            .and_then(|v| v.as_str())
            == Some("true");
        if !autoupdate {
            return Ok(());
        }
        // Missing default rules and subjects are added; what an operator added is kept (as
        // kube-apiserver's reconciliation merges rather than replaces).
        let mut changed = false;
        for field in ["rules", "subjects"] {
            let Some(defaults) = object.get(field).and_then(|v| v.as_array()) else {
                continue;
            };
            if !current.get(field).is_some_and(|v| v.is_array()) {
                current[field] = json!([]);
            }
            if let Some(list) = current.get_mut(field).and_then(|v| v.as_array_mut()) {
                for item in defaults {
                    if !list.contains(item) {
                        list.push(item.clone());
                        changed = true;
                    }
                }
            }
        }
        if let Some(role_ref) = object.get("roleRef")
            && current.get("roleRef") != Some(role_ref)
        {
            current["roleRef"] = role_ref.clone();
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        match self
            .rest
            .store
            .update(&key, objects::encode(&current), stored.mod_revision)
            .await
        {
            // Another replica reconciled it first.
            Ok(_) | Err(StorageError::RevisionMismatch { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/version",
                get(|| async { axum::Json(discovery::version()) }),
            )
            .route("/healthz", get(health))
            .route("/healthz/{*check}", get(health_check))
            .route("/metrics", get(metrics_text))
            .route("/livez", get(health))
            .route("/livez/{*check}", get(health_check))
            .route("/readyz", get(health))
            .route("/readyz/{*check}", get(health_check))
            .route("/openapi/v3", get(openapi_index))
            .route("/openapi/v3/{*path}", get(openapi_document))
            .route("/openapi/v2", get(openapi_v2))
            .route("/api", get(core_versions))
            .route("/api/v1", get(core_resources))
            .route("/api/v1/{*rest}", any(core_rest))
            .route("/apis", get(groups))
            .route("/apis/{group}", get(group))
            .route("/apis/{group}/{version}", get(group_resources))
            .route("/apis/{group}/{version}/{*rest}", any(group_rest))
            .route(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                axum::routing::post(self_subject_access_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                axum::routing::post(self_subject_rules_review),
            )
            .route(
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                axum::routing::post(self_subject_review),
            )
            .fallback(|| async {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            })
            .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BODY))
            // A client sending its body a byte at a time does not hold a handler forever.
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                REQUEST_BODY_TIMEOUT,
            ))
            .layer(axum::middleware::from_fn(too_large_as_status))
            .layer(axum::middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self)
    }

    /// Serves HTTPS (HTTP/2 or HTTP/1.1, by ALPN) on `listener` until `shutdown` resolves.
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        tls: &tls_serve::TlsFiles,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let config = tls_serve::server_config_with_client_roots(
            tls,
            &[b"h2", b"http/1.1"],
            &self.client_roots,
        )?;
        Ok(self.serve_with(listener, Some(config), shutdown).await?)
    }

    async fn serve_with(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        tls: Option<Arc<tls_serve::rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let reaper = self.start_background();
        let result = tls_serve::serve(
            listener,
            tls,
            self.clone().router(),
            self.limits,
            self.end_watches_on(shutdown),
        )
        .await;
        reaper.abort();
        result
    }

    /// `shutdown`, and then open watches are told to end.
    fn end_watches_on(
        self: &Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let server = Arc::downgrade(self);
        async move {
            shutdown.await;
            if let Some(server) = server.upgrade() {
                server.rest.shutting_down.send_replace(true);
            }
        }
    }

    /// The watch caches and the standalone namespace reaper (terminating namespaces are emptied
    /// and removed).
    fn start_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.rest.start_caches();
        let server = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(NAMESPACE_REAP_INTERVAL);
            loop {
                tick.tick().await;
                let Some(server) = server.upgrade() else {
                    return;
                };
                if let Err(error) = server.rest.reap_namespaces().await {
                    tracing::warn!(message = %error.message, "namespace reaper");
                }
            }
        })
    }

    /// Serves plain HTTP on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(listener, None, shutdown).await
    }
}

/// Health endpoints answer everyone: kubelet probes and the aggregator's carry no
/// credentials.
fn is_health_path(path: &str) -> bool {
    // The bare paths only, as kube-apiserver's `system:public-info-viewer`: the individual
    // checks below them are for authenticated callers.
    ["/healthz", "/livez", "/readyz"].contains(&path)
}

/// Authentication and authorization of every request but the health checks; the user is
/// handed to the handlers as an extension.
async fn guard(
    State(server): Shared,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let raw_path = request.uri().path().to_owned();
    if is_health_path(&raw_path) {
        return next.run(request).await;
    }
    // The handlers see percent-decoded paths; authorization must judge the same path. An
    // encoded `/` would make the two disagree on where segments end, and no Kubernetes name
    // contains one: refused.
    if raw_path.contains("%2F") || raw_path.contains("%2f") {
        return ApiError::bad_request("the request path must not contain an encoded '/' (%2F)")
            .into_response();
    }
    let Ok(path) = percent_encoding::percent_decode_str(&raw_path).decode_utf8() else {
        return ApiError::bad_request("the request path is not valid UTF-8 once decoded")
            .into_response();
    };
    let path = path.into_owned();
    if let Some(refusal) = server.host_refusal(request.headers()) {
        return refusal;
    }
    // Impersonation is not implemented: acting on such a request as the caller would
    // silently do something else than asked.
    if request
        .headers()
        .keys()
        .any(|name| name.as_str().starts_with("impersonate-"))
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "impersonation (Impersonate-* headers) is not supported by this server",
        )
        .into_response();
    }
    let chain = request
        .extensions()
        .get::<tls_serve::PeerCertificates>()
        .map(|p| p.chain.clone())
        .unwrap_or_default();
    let user = match server
        .authenticator
        .authenticate(request.headers(), &chain)
        .await
    {
        Authentication::User(user) => user,
        Authentication::Rejected(why) => {
            tracing::info!(%path, %why, "unauthenticated request refused");
            return unauthorized();
        }
        Authentication::Missing => return unauthorized(),
    };
    let attributes = authz::Attributes::from_request(
        user,
        request.method(),
        &path,
        request.uri().query().unwrap_or_default(),
    );
    if let Decision::Deny(reason) = server.authorize(&attributes).await {
        tracing::info!(user = %attributes.user.username, verb = %attributes.verb, %path, "forbidden");
        return attributes.forbidden(&reason).into_response();
    }
    request.extensions_mut().insert(attributes.user);
    next.run(request).await
}

fn unauthorized() -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized").into_response()
}

impl ApiServer {
    /// With [`ApiServer::with_loopback_hosts_only`]: a request naming another host is refused
    /// (a DNS-rebinding web page reaching a loopback port names its own host).
    fn host_refusal(&self, headers: &HeaderMap) -> Option<Response> {
        if !self.loopback_hosts_only {
            return None;
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let allowed =
            ["localhost", "127.0.0.1", "[::1]", ""].contains(&name) || name.starts_with("127.");
        (!allowed).then(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "host {host:?} is not a loopback name; this port only answers loopback requests"
                ),
            )
            .into_response()
        })
    }
}

/// The user [`guard`] authenticated (anonymous for a router used without it).
fn requester(request_user: Option<axum::Extension<UserIdentity>>) -> UserIdentity {
    request_user
        .map(|axum::Extension(user)| user)
        .unwrap_or_else(UserIdentity::anonymous)
}

/// `kubectl auth can-i`: may the requester do this?
async fn self_subject_access_review(
    State(server): Shared,
    user: Option<axum::Extension<UserIdentity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = requester(user);
    let result = async {
        let review = review_body(&headers, &body, "SelfSubjectAccessReview")?;
        let spec = review.get("spec").cloned().unwrap_or_default();
        let attributes = authz::review_attributes(&spec, user)?;
        let status = match server.authorize(&attributes).await {
            Decision::Allow => json!({"allowed": true}),
            Decision::Deny(reason) if reason.is_empty() => json!({"allowed": false}),
            Decision::Deny(reason) => json!({"allowed": false, "reason": reason}),
        };
        Ok::<_, ApiError>(review_answer(review, "SelfSubjectAccessReview", status))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The review as asked, with its answer (201, as kube-apiserver).
fn review_answer(mut review: serde_json::Value, kind: &str, status: serde_json::Value) -> Response {
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!(kind);
    review["status"] = status;
    if review.get("metadata").is_none() {
        review["metadata"] = json!({});
    }
    (StatusCode::CREATED, axum::Json(review)).into_response()
}

/// A self review's body, JSON or (kubectl's) protobuf.
fn review_body(
    headers: &HeaderMap,
    body: &[u8],
    kind: &str,
) -> Result<serde_json::Value, ApiError> {
    let is_protobuf = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("protobuf"));
    let decoded = if is_protobuf {
        protobuf::decode(body)
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    match decoded {
        Ok(review @ serde_json::Value::Object(_)) => Ok(review),
        Ok(_) => Err(ApiError::bad_request(format!(
            "the body is not a {kind}: not an object"
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not a {kind}: {e}"
        ))),
    }
}

/// `kubectl auth can-i --list`: what may the requester do in a namespace? Answered from RBAC;
/// under another authorizer the answer is empty and marked incomplete.
async fn self_subject_rules_review(
    State(server): Shared,
    user: Option<axum::Extension<UserIdentity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = requester(user);
    let result = async {
        let review = review_body(&headers, &body, "SelfSubjectRulesReview")?;
        let namespace = review
            .pointer("/spec/namespace")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let status = if server.rest.rbac_enforced() {
            let policy = server.rest.rbac_policy(false).await;
            let (resource_rules, non_resource_rules) = policy.rules_for(&user, &namespace);
            json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
        } else {
            json!({"resourceRules": [], "nonResourceRules": [], "incomplete": true,
                   "evaluationError": "this server does not authorize with RBAC"})
        };
        Ok::<_, ApiError>(review_answer(review, "SelfSubjectRulesReview", status))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `kubectl auth whoami`.
async fn self_subject_review(user: Option<axum::Extension<UserIdentity>>) -> Response {
    let user = requester(user);
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {}, "status": {"userInfo": user.to_user_info()},
        })),
    )
        .into_response()
}

type Shared = State<Arc<ApiServer>>;

async fn core_versions(State(server): Shared, headers: HeaderMap) -> Response {
    discovery::core_versions(&server.rest.registry, &headers)
}

async fn core_resources(State(server): Shared) -> Response {
    match discovery::resources(&server.rest.registry, "", "v1") {
        Some(list) => axum::Json(list).into_response(),
        None => not_found(),
    }
}

async fn groups(State(server): Shared, headers: HeaderMap) -> Response {
    discovery::groups(&server.rest.registry, &headers)
}

async fn group(State(server): Shared, Path(name): Path<String>) -> Response {
    match discovery::group(&server.rest.registry, &name) {
        Some(group) => axum::Json(group).into_response(),
        None => not_found(),
    }
}

async fn group_resources(
    State(server): Shared,
    Path((group, version)): Path<(String, String)>,
) -> Response {
    match discovery::resources(&server.rest.registry, &group, &version) {
        Some(list) => axum::Json(list).into_response(),
        None => not_found(),
    }
}

/// The checks `/healthz`, `/livez` and `/readyz` report (kube-apiserver's names where they
/// apply): `ping` always, `storage` when the store answers.
const HEALTH_CHECKS: [&str; 2] = ["ping", "storage"];

async fn run_health_check(server: &ApiServer, check: &str) -> Option<bool> {
    match check {
        "ping" => Some(true),
        "storage" => Some(server.rest.store.current_revision().await.is_ok()),
        _ => None,
    }
}

/// `ok`, or with `?verbose` one `[+]check ok` line per check, as kube-apiserver prints them.
async fn health(State(server): Shared, OriginalUri(uri): OriginalUri) -> Response {
    let verbose = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    });
    let mut report = String::new();
    let mut healthy = true;
    for check in HEALTH_CHECKS {
        let ok = run_health_check(&server, check).await.unwrap_or(false);
        healthy &= ok;
        report.push_str(&format!(
            "[{}]{check} {}\n",
            if ok { "+" } else { "-" },
            if ok { "ok" } else { "failed" }
        ));
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if verbose {
        report.push_str(if healthy {
            "check passed\n"
        } else {
            "check failed\n"
        });
        (status, report).into_response()
    } else {
        (status, if healthy { "ok" } else { "unhealthy" }).into_response()
    }
}

/// `/readyz/<check>` and friends: one check.
async fn health_check(State(server): Shared, Path(check): Path<String>) -> Response {
    match run_health_check(&server, &check).await {
        Some(true) => (StatusCode::OK, "ok").into_response(),
        Some(false) => (StatusCode::INTERNAL_SERVER_ERROR, "failed").into_response(),
        None => not_found(),
    }
}

async fn metrics_text(State(server): Shared) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        server.rest.metrics.render(),
    )
        .into_response()
}

async fn openapi_index(State(server): Shared) -> Response {
    axum::Json(openapi::v3_index(&server.rest.registry)).into_response()
}

async fn openapi_document(State(server): Shared, Path(path): Path<String>) -> Response {
    let segments: Vec<&str> = path.split('/').collect();
    let document = match segments.as_slice() {
        ["api", version] => openapi::v3_document(&server.rest.registry, "", version),
        ["apis", group, version] => openapi::v3_document(&server.rest.registry, group, version),
        _ => None,
    };
    match document {
        Some(document) => axum::Json(document).into_response(),
        None => not_found(),
    }
}

/// kubectl 1.20 asks for protobuf only (gnostic's `Document`); everyone else gets JSON.
async fn openapi_v2(State(server): Shared, headers: HeaderMap) -> Response {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let wants_json =
        accept.contains("json") && !accept.starts_with("application/com.github.proto-openapi");
    if wants_json || accept.contains("*/*") && !accept.contains("protobuf") {
        return axum::Json(openapi::v2_document(&server.rest.registry)).into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        )],
        openapi_pb::encode_document(&openapi::v2_document(&server.rest.registry)),
    )
        .into_response()
}

fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
    .into_response()
}

/// How long a client may take to send a request body.
const REQUEST_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The largest request body accepted, as kube-apiserver's (3 MiB).
pub const MAX_REQUEST_BODY: usize = 3 * 1024 * 1024;

/// A body over the limit is refused by axum's extractor with plain text; clients expect a
/// Kubernetes `Status`, worded as kube-apiserver words it.
async fn too_large_as_status(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let http1 = request.version() < axum::http::Version::HTTP_2;
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return response;
    }
    let mut refusal = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        format!("Request entity too large: limit is {MAX_REQUEST_BODY}"),
    )
    .into_response();
    // The rest of an HTTP/1 body is never read, so the connection cannot carry another
    // request; saying so keeps a client from sending its next request down a connection that
    // is about to close (reqwest did, and lost that request). HTTP/2 resets only the stream.
    if http1 {
        refusal.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    refusal
}

async fn core_rest(
    State(server): Shared,
    user: Option<axum::Extension<UserIdentity>>,
    Path(rest): Path<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    server
        .rest
        .handle(rest::Call {
            group: "",
            version: "v1",
            path: &rest,
            method,
            query: uri.query(),
            headers: &headers,
            body,
            user: requester(user),
        })
        .await
}

async fn group_rest(
    State(server): Shared,
    user: Option<axum::Extension<UserIdentity>>,
    Path((group, version, rest)): Path<(String, String, String)>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    server
        .rest
        .handle(rest::Call {
            group: &group,
            version: &version,
            path: &rest,
            method,
            query: uri.query(),
            headers: &headers,
            body,
            user: requester(user),
        })
        .await
}

/// The address a server is listening on, as a URL.
pub fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
