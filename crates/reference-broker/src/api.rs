//! The HTTP face of the broker: OSB routes, basic auth, the API-version check, fault injection
//! and the `/admin/faults` endpoint. Behaviour lives in [`crate::broker`]; this module only
//! translates between HTTP and [`Reply`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use osb_client::{
    API_VERSION_HEADER, ORIGINATING_IDENTITY_HEADER, OriginatingIdentity, REQUEST_IDENTITY_HEADER,
};
use serde_json::{Value, json};

use crate::broker::{Broker, Reply};
use crate::faults::{Fault, Faults, classify};

/// The credentials the broker requires, if any.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicCredentials({}, <redacted>)", self.username)
    }
}

pub struct AppState {
    pub broker: Mutex<Broker>,
    pub faults: Faults,
    pub credentials: Option<BasicCredentials>,
    /// The last OSB requests, newest last, for platforms' tests to inspect what they sent.
    pub requests: Mutex<VecDeque<RecordedRequest>>,
}

impl AppState {
    pub fn new(broker: Broker, credentials: Option<BasicCredentials>) -> Self {
        Self {
            broker: Mutex::new(broker),
            faults: Faults::default(),
            credentials,
            requests: Mutex::new(VecDeque::new()),
        }
    }
}

/// How many requests `/admin/requests` remembers.
const RECORDED_REQUESTS: usize = 256;

/// What a platform sent, minus the body and credentials.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub api_version: Option<String>,
    pub request_identity: Option<String>,
    pub originating_identity: Option<Value>,
}

type Shared = Arc<AppState>;
type Ids = Query<HashMap<String, String>>;

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub fn router(state: Shared) -> Router {
    let osb = Router::new()
        .route("/v2/catalog", get(catalog))
        .route(
            "/v2/service_instances/{instance_id}",
            get(fetch_instance)
                .put(provision)
                .patch(update)
                .delete(deprovision),
        )
        .route(
            "/v2/service_instances/{instance_id}/last_operation",
            get(instance_last_operation),
        )
        .route(
            "/v2/service_instances/{instance_id}/service_bindings/{binding_id}",
            get(fetch_binding).put(bind).delete(unbind),
        )
        .route(
            "/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation",
            get(binding_last_operation),
        )
        .layer(middleware::from_fn_with_state(state.clone(), osb_checks));
    let admin = Router::new()
        .route(
            "/admin/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/admin/requests", get(list_requests).delete(clear_requests));
    Router::new()
        .merge(osb)
        .merge(admin)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/dashboard/{instance_id}", get(dashboard))
        .fallback(|| async { Reply::error(StatusCode::NOT_FOUND, None, "no such endpoint") })
        .with_state(state)
}

fn lock(state: &AppState) -> std::sync::MutexGuard<'_, Broker> {
    // Every mutation persists first and updates memory after, so a panicked holder cannot
    // have left memory ahead of disk.
    state.broker.lock().unwrap_or_else(|e| e.into_inner())
}

async fn authenticate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.credentials else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v.trim()).ok())
        .and_then(|v| String::from_utf8(v).ok());
    let valid = given.as_deref().and_then(|v| v.split_once(':'))
        == Some((expected.username.as_str(), expected.password.as_str()));
    if valid {
        return next.run(request).await;
    }
    let mut response = Reply::error(
        StatusCode::UNAUTHORIZED,
        None,
        if given.is_some() {
            "invalid credentials"
        } else {
            "basic authentication is required"
        },
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"reference-broker\""),
    );
    response
}

/// The spec's platform-facing checks, then any injected fault.
async fn osb_checks(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let version = header_text(API_VERSION_HEADER);
    let recorded = RecordedRequest {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        api_version: version.clone(),
        request_identity: header_text(REQUEST_IDENTITY_HEADER),
        originating_identity: header_text(ORIGINATING_IDENTITY_HEADER)
            .and_then(|v| OriginatingIdentity::parse(&v).ok())
            .map(|i| json!({"platform": i.platform, "value": i.value})),
    };
    {
        let mut requests = state.requests.lock().unwrap_or_else(|e| e.into_inner());
        if requests.len() == RECORDED_REQUESTS {
            requests.pop_front();
        }
        requests.push_back(recorded);
    }
    match version.as_deref().map(|v| v.split('.').next()) {
        Some(Some("2")) => {}
        Some(_) => {
            return Reply::error(
                StatusCode::PRECONDITION_FAILED,
                None,
                format!(
                    "unsupported {API_VERSION_HEADER} {:?}: this broker speaks 2.x",
                    version.unwrap_or_default()
                ),
            )
            .into_response();
        }
        None => {
            return Reply::error(
                StatusCode::PRECONDITION_FAILED,
                None,
                format!("the {API_VERSION_HEADER} header is required"),
            )
            .into_response();
        }
    }
    if let Some(identity) = headers.get(ORIGINATING_IDENTITY_HEADER) {
        let parsed = identity
            .to_str()
            .map_err(|_| "not ASCII".to_owned())
            .and_then(|v| OriginatingIdentity::parse(v).map_err(|e| e.to_string()));
        match parsed {
            Ok(identity) => {
                let user = identity.value.get("username").and_then(|u| u.as_str());
                tracing::info!(platform = %identity.platform, user = user.unwrap_or("?"), "originating identity");
            }
            Err(reason) => {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    None,
                    format!("invalid {ORIGINATING_IDENTITY_HEADER}: {reason}"),
                )
                .into_response();
            }
        }
    }
    if let Some(endpoint) = classify(request.method(), request.uri().path()) {
        let decision = state.faults.decide(endpoint);
        if let Some(latency) = decision.latency {
            tokio::time::sleep(latency).await;
        }
        if let Some(response) = decision.response {
            tracing::info!(?endpoint, ?response, "injecting fault");
            return response.into_response();
        }
    }
    next.run(request).await
}

fn json_body(bytes: &Bytes) -> Result<Value, Reply> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            None,
            "a JSON request body is required",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            None,
            format!("the request body is not valid JSON: {e}"),
        )
    })
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query.get(name).is_some_and(|v| v == "true")
}

fn either(answer: Result<Reply, Reply>) -> Reply {
    answer.unwrap_or_else(|error| error)
}

async fn catalog(State(state): State<Shared>) -> Reply {
    Reply::new(StatusCode::OK, json!(lock(&state).catalog().catalog))
}

async fn provision(
    State(state): State<Shared>,
    Path(instance_id): Path<String>,
    Query(query): Ids,
    body: Bytes,
) -> Reply {
    either(json_body(&body).and_then(|body| {
        lock(&state).provision(&instance_id, &body, flag(&query, "accepts_incomplete"))
    }))
}

async fn update(
    State(state): State<Shared>,
    Path(instance_id): Path<String>,
    Query(query): Ids,
    body: Bytes,
) -> Reply {
    either(json_body(&body).and_then(|body| {
        lock(&state).update(&instance_id, &body, flag(&query, "accepts_incomplete"))
    }))
}

async fn deprovision(
    State(state): State<Shared>,
    Path(instance_id): Path<String>,
    Query(query): Ids,
) -> Reply {
    either(lock(&state).deprovision(
        &instance_id,
        query.get("service_id").map(String::as_str),
        query.get("plan_id").map(String::as_str),
        flag(&query, "accepts_incomplete"),
    ))
}

async fn fetch_instance(State(state): State<Shared>, Path(instance_id): Path<String>) -> Reply {
    either(lock(&state).fetch_instance(&instance_id))
}

async fn instance_last_operation(
    State(state): State<Shared>,
    Path(instance_id): Path<String>,
    Query(query): Ids,
) -> Reply {
    either(
        lock(&state)
            .instance_last_operation(&instance_id, query.get("operation").map(String::as_str)),
    )
}

async fn bind(
    State(state): State<Shared>,
    Path((instance_id, binding_id)): Path<(String, String)>,
    Query(query): Ids,
    body: Bytes,
) -> Reply {
    either(json_body(&body).and_then(|body| {
        lock(&state).bind(
            &instance_id,
            &binding_id,
            &body,
            flag(&query, "accepts_incomplete"),
        )
    }))
}

async fn unbind(
    State(state): State<Shared>,
    Path((instance_id, binding_id)): Path<(String, String)>,
    Query(query): Ids,
) -> Reply {
    either(lock(&state).unbind(
        &instance_id,
        &binding_id,
        query.get("service_id").map(String::as_str),
        query.get("plan_id").map(String::as_str),
        flag(&query, "accepts_incomplete"),
    ))
}

async fn fetch_binding(
    State(state): State<Shared>,
    Path((instance_id, binding_id)): Path<(String, String)>,
) -> Reply {
    either(lock(&state).fetch_binding(&instance_id, &binding_id))
}

async fn binding_last_operation(
    State(state): State<Shared>,
    Path((instance_id, binding_id)): Path<(String, String)>,
    Query(query): Ids,
) -> Reply {
    either(lock(&state).binding_last_operation(
        &instance_id,
        &binding_id,
        query.get("operation").map(String::as_str),
    ))
}

async fn list_faults(State(state): State<Shared>) -> Reply {
    Reply::new(StatusCode::OK, json!(state.faults.list()))
}

async fn add_fault(State(state): State<Shared>, body: Bytes) -> Reply {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(fault) => fault,
        Err(e) => {
            return Reply::error(StatusCode::BAD_REQUEST, None, format!("invalid fault: {e}"));
        }
    };
    if let Err(reason) = fault.check() {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            None,
            format!("invalid fault: {reason}"),
        );
    }
    state.faults.add(fault.clone());
    Reply::new(StatusCode::CREATED, json!(fault))
}

async fn clear_faults(State(state): State<Shared>) -> StatusCode {
    state.faults.clear();
    StatusCode::NO_CONTENT
}

async fn list_requests(State(state): State<Shared>) -> Reply {
    let requests = state.requests.lock().unwrap_or_else(|e| e.into_inner());
    Reply::new(StatusCode::OK, json!(*requests))
}

async fn clear_requests(State(state): State<Shared>) -> StatusCode {
    state
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    StatusCode::NO_CONTENT
}

async fn dashboard(Path(instance_id): Path<String>) -> String {
    format!("Reference broker dashboard for instance {instance_id}\n")
}
