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
pub mod cache;
pub mod discovery;
pub mod kinds;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod openapi_pb;
pub mod protobuf;
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

pub use auth::{Authenticator, UserIdentity};
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
}

impl ApiServer {
    pub fn new(store: Arc<dyn Store>, registry: Registry) -> Result<Self, prometheus::Error> {
        let metrics = metrics::Metrics::new()?;
        let store: Arc<dyn Store> = Arc::new(metrics::MeteredStore::new(store, &metrics));
        Ok(Self {
            rest: rest::Rest::new(store, registry, metrics),
        })
    }

    /// Who bearer tokens stand for (requests without a known token are anonymous).
    pub fn with_authenticator(mut self, authenticator: Authenticator) -> Self {
        self.rest.authenticator = authenticator;
        self
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
        Ok(())
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
            .fallback(|| async {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            })
            .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BODY))
            .layer(axum::middleware::map_response(too_large_as_status))
            .with_state(self)
    }

    /// Serves HTTPS (HTTP/2 or HTTP/1.1, by ALPN) on `listener` until `shutdown` resolves.
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        tls: &tls_serve::TlsFiles,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let config = tls_serve::server_config(tls, &[b"h2", b"http/1.1"])?;
        let listener = tls_serve::TlsListener::new(listener, config)?;
        let reaper = self.start_background();
        let result = axum::serve(listener, self.clone().router())
            .with_graceful_shutdown(self.end_watches_on(shutdown))
            .await;
        reaper.abort();
        Ok(result?)
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
        let reaper = self.start_background();
        let result = axum::serve(listener, self.clone().router())
            .with_graceful_shutdown(self.end_watches_on(shutdown))
            .await;
        reaper.abort();
        result
    }
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

/// The largest request body accepted, as kube-apiserver's (3 MiB).
pub const MAX_REQUEST_BODY: usize = 3 * 1024 * 1024;

/// A body over the limit is refused by axum's extractor with plain text; clients expect a
/// Kubernetes `Status`, worded as kube-apiserver words it.
async fn too_large_as_status(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return response;
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        format!("Request entity too large: limit is {MAX_REQUEST_BODY}"),
    )
    .into_response()
}

async fn core_rest(
    State(server): Shared,
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
        })
        .await
}

async fn group_rest(
    State(server): Shared,
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
        })
        .await
}

/// The address a server is listening on, as a URL.
pub fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
