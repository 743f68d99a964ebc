//! The REST verbs of every registered kind, generic over the [`Registry`]: get, list (label and
//! field selectors, paging at one revision), watch, create (`generateName`, dry run), update
//! (optimistic concurrency, `/status`), patch (merge and JSON patch), delete (finalizers,
//! preconditions) and deletecollection.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use storage::{EventKind, ListOptions, Revision, StorageError, Store};

use crate::apply;
use crate::auth::UserIdentity;
use crate::cache::KindCache;
use crate::kinds::{Admission, Registry, ResourceKind};
use crate::objects::{self, decode, encode};
use crate::openapi;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause, Subject};
use crate::tables::{self, Representation};

/// The longest a watch stays open when the client does not say (kube-apiserver: 30 min).
const MAX_WATCH: Duration = Duration::from_secs(1800);
/// How often an idle watch that asked for bookmarks gets one (kube-apiserver: about a minute).
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// How many internal retries a patch makes when the object changes underneath it.
const PATCH_RETRIES: usize = 8;

pub struct Rest {
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub metrics: crate::metrics::Metrics,
    /// Each kind's object schema, built once (every write is checked against it).
    pub schemas: HashMap<String, Value>,
    /// Each kind's watch cache, by storage prefix, once serving has started.
    caches: OnceLock<HashMap<String, Arc<KindCache>>>,
    /// Becomes `true` when the server shuts down: open watches end so that the graceful
    /// shutdown (which waits for every connection) is not held up by long-running streams.
    pub shutting_down: tokio::sync::watch::Sender<bool>,
    /// How requests are authorized.
    pub authorization: crate::authz::Authorization,
    /// The compiled RBAC policy and the cache revisions it was compiled at.
    policy: std::sync::Mutex<Option<(Vec<Revision>, Arc<crate::authz::Policy>)>>,
}

/// The RBAC kinds whose objects make up the policy.
const POLICY_KINDS: [&str; 4] = [
    "clusterroles",
    "roles",
    "clusterrolebindings",
    "rolebindings",
];

impl Rest {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Registry,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        let schemas = registry
            .kinds()
            .iter()
            .map(|kind| (openapi::schema_name(kind), openapi::object_schema(kind)))
            .collect();
        Self {
            store,
            registry,
            metrics,
            schemas,
            caches: OnceLock::new(),
            shutting_down: tokio::sync::watch::Sender::new(false),
            authorization: crate::authz::Authorization::default(),
            policy: std::sync::Mutex::new(None),
        }
    }
}

/// One request below a group-version: `/api/v1/<path>` or `/apis/<group>/<version>/<path>`.
pub struct Call<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub path: &'a str,
    pub method: Method,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// Who is asking (authenticated before the call).
    pub user: UserIdentity,
}

/// What a request addresses, parsed from its path.
struct Target<'a> {
    kind: &'a ResourceKind,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    /// Who is asking.
    user: UserIdentity,
}

impl Target<'_> {
    fn subject(&self) -> Subject {
        Subject {
            group: self.kind.group.to_owned(),
            resource: self.kind.plural.to_owned(),
            name: self.name.clone().unwrap_or_default(),
        }
    }

    fn key(&self) -> Result<String, ApiError> {
        let name = self
            .name
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("a name is required"))?;
        Ok(self.kind.key(self.namespace.as_deref(), name))
    }
}

type Query = HashMap<String, String>;

pub(crate) fn parse_query(raw: Option<&str>) -> Query {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(crate) fn flag(query: &Query, name: &str) -> bool {
    query.get(name).is_some_and(|v| v == "true" || v == "1")
}

fn dry_run(query: &Query) -> bool {
    query.get("dryRun").is_some_and(|v| v == "All")
}

fn parse_revision(value: &str) -> Result<Revision, ApiError> {
    value
        .parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version {value:?}")))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Adds `Warning: 299 - "..."` headers (kubectl prints them as `Warning: ...`).
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// `fieldValidation`: fields the kind's schema does not know are pruned (as Kubernetes does);
/// `Strict` refuses the request instead, `Warn` (the default) reports them as warnings.
fn check_fields(
    schemas: &HashMap<String, Value>,
    kind: &ResourceKind,
    query: &Query,
    object: &mut Value,
) -> Result<Vec<String>, ApiError> {
    let mode = query.get("fieldValidation").map_or("Warn", String::as_str);
    if !matches!(mode, "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation must be one of Strict, Warn or Ignore, not {mode:?}"
        )));
    }
    let Some(schema) = schemas.get(&openapi::schema_name(kind)) else {
        return Ok(Vec::new());
    };
    let mut unknown = Vec::new();
    openapi::unknown_fields(schema, object, "", &mut unknown);
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let messages: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if mode == "Strict" {
        return Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
            messages.join(", "),
            kind = kind.kind,
            version = kind.version,
        )));
    }
    openapi::prune(schema, object);
    Ok(if mode == "Warn" { messages } else { Vec::new() })
}

/// The continue token: where the next page starts and at which revision (kube-apiserver's shape).
fn encode_continue(revision: Revision, after: &str) -> String {
    URL_SAFE_NO_PAD
        .encode(json!({"v": "meta.k8s.io/v1", "rv": revision, "start": after}).to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let invalid = || ApiError::bad_request("invalid continue token; re-list without it");
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let revision = value
        .get("rv")
        .and_then(Value::as_i64)
        .ok_or_else(invalid)?;
    let start = value
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    Ok((revision, start.to_owned()))
}

struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    fn parse(kind: &ResourceKind, query: &Query) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?;
        let probe = json!({});
        for requirement in &fields.0 {
            if kind.field(&probe, &requirement.field).is_none() {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    requirement.field
                )));
            }
        }
        Ok(Self { labels, fields })
    }

    fn matches(&self, kind: &ResourceKind, object: &Value) -> bool {
        self.labels.matches(&objects::labels(object))
            && self
                .fields
                .matches(|field| kind.field(object, field).flatten())
    }
}

impl Rest {
    /// Resolves `/api/v1/...` or `/apis/<g>/<v>/...` below the group-version.
    fn target<'a>(
        &'a self,
        group: &str,
        version: &str,
        rest: &str,
    ) -> Result<Target<'a>, ApiError> {
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            )
        };
        let kind_of = |plural: &str| self.registry.find(group, version, plural);
        // `namespaces/<ns>/<plural>...` when <plural> is a namespaced kind of this group-version.
        if let ["namespaces", namespace, plural, tail @ ..] = segments.as_slice()
            && let Some(kind) = kind_of(plural).filter(|k| k.namespaced)
        {
            return match tail {
                [] => Ok(Target {
                    kind,
                    namespace: Some((*namespace).to_owned()),
                    name: None,
                    subresource: None,
                    user: UserIdentity::anonymous(),
                }),
                [name] => Ok(Target {
                    kind,
                    namespace: Some((*namespace).to_owned()),
                    name: Some((*name).to_owned()),
                    subresource: None,
                    user: UserIdentity::anonymous(),
                }),
                [name, sub] => Ok(Target {
                    kind,
                    namespace: Some((*namespace).to_owned()),
                    name: Some((*name).to_owned()),
                    subresource: Some((*sub).to_owned()),
                    user: UserIdentity::anonymous(),
                }),
                _ => Err(not_found()),
            };
        }
        match segments.as_slice() {
            [plural] => {
                let kind = kind_of(plural).ok_or_else(not_found)?;
                Ok(Target {
                    kind,
                    namespace: None,
                    name: None,
                    subresource: None,
                    user: UserIdentity::anonymous(),
                })
            }
            // A namespaced kind by name needs its namespace in the path.
            [plural, name] => {
                let kind = kind_of(plural)
                    .filter(|k| !k.namespaced)
                    .ok_or_else(not_found)?;
                Ok(Target {
                    kind,
                    namespace: None,
                    name: Some((*name).to_owned()),
                    subresource: None,
                    user: UserIdentity::anonymous(),
                })
            }
            [plural, name, sub] => {
                let kind = kind_of(plural)
                    .filter(|k| !k.namespaced)
                    .ok_or_else(not_found)?;
                Ok(Target {
                    kind,
                    namespace: None,
                    name: Some((*name).to_owned()),
                    subresource: Some((*sub).to_owned()),
                    user: UserIdentity::anonymous(),
                })
            }
            _ => Err(not_found()),
        }
    }

    pub async fn handle(&self, call: Call<'_>) -> Response {
        let Call {
            group,
            version,
            path,
            method,
            query,
            headers,
            body,
            user,
        } = call;
        let mut warnings = Vec::new();
        let started = std::time::Instant::now();
        let mut verb = verb_of(&method, query);
        let mut resource = String::from("unknown");
        let result = async {
            let mut target = self.target(group, version, path)?;
            target.user = user;
            resource = match &target.subresource {
                Some(sub) => format!("{}/{sub}", target.kind.plural),
                None => target.kind.plural.to_owned(),
            };
            if target.name.is_some() {
                verb = match verb {
                    "list" => "get",
                    "deletecollection" => "delete",
                    other => other,
                };
            }
            let mut query = parse_query(query);
            default_field_manager(&mut query, &method, headers);
            let body = if matches!(method, Method::POST | Method::PUT) {
                json_body(headers, target.kind, body)?
            } else {
                body
            };
            match &target.subresource {
                None => {}
                Some(sub) if sub == "status" && target.kind.has_status => {}
                Some(sub)
                    if target.kind.spec_subresources.iter().any(|s| s.name == sub)
                        && target.name.is_some() => {}
                Some(sub) => {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        format!("{} has no subresource {sub:?}", target.kind.plural),
                    ));
                }
            }
            let representation =
                tables::negotiate(headers, query.get("includeObject").map(String::as_str));
            match (method.clone(), target.name.is_some()) {
                (Method::GET, false) if flag(&query, "watch") => {
                    self.watch(&target, &query, representation).await
                }
                (Method::GET, false) => self.list(&target, &query, representation).await,
                (Method::POST, false) => self.create(&target, &query, &body, &mut warnings).await,
                (Method::DELETE, false) => self.delete_collection(&target, &query).await,
                (Method::GET, true) => self.get(&target, representation).await,
                (Method::PUT, true) => self.replace(&target, &query, &body, &mut warnings).await,
                (Method::PATCH, true) => {
                    self.patch(&target, &query, headers, &body, &mut warnings)
                        .await
                }
                (Method::DELETE, true) => self.delete(&target, &query, &body).await,
                (method, _) => Err(ApiError::method_not_allowed(format!(
                    "method {method} is not supported here"
                ))),
            }
        }
        .await;
        let response = match result {
            Ok(response) => with_warnings(response, &warnings),
            Err(error) => error.into_response(),
        };
        let code = response.status().as_u16().to_string();
        self.metrics
            .requests
            .with_label_values(&[verb, group, &resource, &code])
            .inc();
        self.metrics
            .latency
            .with_label_values(&[verb, group, &resource])
            .observe(started.elapsed().as_secs_f64());
        // One line per request; for a watch, when it starts streaming.
        tracing::info!(
            verb,
            group,
            resource = %resource,
            path,
            code = %code,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
        response
    }

    fn served(kind: &ResourceKind, object: Value) -> Value {
        objects::served(kind, object)
    }

    /// Starts one watch cache per kind (needs a tokio runtime; called when serving starts).
    pub fn start_caches(&self) {
        let caches = self
            .registry
            .kinds()
            .iter()
            .map(|kind| {
                (
                    kind.key_prefix(),
                    KindCache::start(self.store.clone(), kind.clone()),
                )
            })
            .collect();
        let _ = self.caches.set(caches);
    }

    async fn read(&self, target: &Target<'_>) -> Result<(Value, Revision), ApiError> {
        let kv = self
            .store
            .get(&target.key()?)
            .await
            .map_err(|e| ApiError::from_storage(e, target.subject()))?
            .ok_or_else(|| ApiError::not_found(target.subject()))?;
        let object = decode(&kv, kv.mod_revision).map_err(ApiError::internal)?;
        Ok((object, kv.mod_revision))
    }

    async fn get(
        &self,
        target: &Target<'_>,
        representation: Representation,
    ) -> Result<Response, ApiError> {
        let (object, _) = self.read(target).await?;
        let object = Self::served(target.kind, object);
        Ok(json_response(
            StatusCode::OK,
            tables::one(target.kind, object, representation),
        ))
    }

    /// Reads matching objects at one revision, paged by `limit`.
    async fn collect(
        &self,
        target: &Target<'_>,
        selectors: &Selectors,
        limit: Option<usize>,
        at_revision: Option<Revision>,
        mut after: Option<String>,
        any_version: bool,
    ) -> Result<(Vec<Value>, Revision, Option<String>), ApiError> {
        let kind = target.kind;
        let prefix = kind.scope_prefix(target.namespace.as_deref());
        // The current state comes from the watch cache when it has caught up.
        if at_revision.is_none()
            && after.is_none()
            && let Some(cache) = self.caches.get().and_then(|c| c.get(&kind.key_prefix()))
        {
            let current = if any_version {
                0
            } else {
                self.store
                    .current_revision()
                    .await
                    .map_err(|e| ApiError::from_storage(e, target.subject()))?
            };
            if let Some((items, revision, last)) = cache
                .list(&prefix, current, limit, |object| {
                    selectors.matches(kind, object)
                })
                .await
            {
                self.metrics.list_source.with_label_values(&["cache"]).inc();
                let token = last.map(|key| encode_continue(revision, &key));
                return Ok((items, revision, token));
            }
        }
        self.metrics.list_source.with_label_values(&["store"]).inc();
        let mut items = Vec::new();
        let mut revision = at_revision;
        loop {
            let page = self
                .store
                .list(&ListOptions {
                    prefix: prefix.clone(),
                    limit: limit.map(|l| (l - items.len()).max(1)),
                    at_revision: revision,
                    continue_after: after.clone(),
                })
                .await
                .map_err(|e| ApiError::from_storage(e, target.subject()))?;
            revision = Some(page.revision);
            for kv in &page.items {
                let object = decode(kv, kv.mod_revision).map_err(ApiError::internal)?;
                if selectors.matches(kind, &object) {
                    items.push(Self::served(kind, object));
                }
            }
            after = page.items.last().map(|kv| kv.key.clone()).or(after);
            let full = limit.is_some_and(|l| items.len() >= l);
            if !page.more {
                return Ok((items, page.revision, None));
            }
            if full {
                let token = after.as_deref().map(|a| encode_continue(page.revision, a));
                return Ok((items, page.revision, token));
            }
        }
    }

    async fn list(
        &self,
        target: &Target<'_>,
        query: &Query,
        representation: Representation,
    ) -> Result<Response, ApiError> {
        let selectors = Selectors::parse(target.kind, query)?;
        if flag(query, "sendInitialEvents") {
            return Err(watch_list_misuse("sendInitialEvents is forbidden for list"));
        }
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let resource_version = query.get("resourceVersion").filter(|v| !v.is_empty());
        let (at_revision, after) = match query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let (revision, after) = decode_continue(token)?;
                (Some(revision), Some(after))
            }
            None => {
                let at = match (
                    query.get("resourceVersionMatch").map(String::as_str),
                    resource_version,
                ) {
                    (Some("Exact"), Some(rv)) => Some(parse_revision(rv)?),
                    (Some("Exact" | "NotOlderThan"), None) => {
                        return Err(watch_list_misuse(
                            "resourceVersionMatch is forbidden unless resourceVersion is provided",
                        ));
                    }
                    (_, Some(rv)) => {
                        // NotOlderThan (or legacy): the current state, if it is not older.
                        let requested = parse_revision(rv)?;
                        let current = self
                            .store
                            .current_revision()
                            .await
                            .map_err(|e| ApiError::from_storage(e, target.subject()))?;
                        if requested > current {
                            return Err(ApiError::from_storage(
                                StorageError::FutureRevision { requested, current },
                                target.subject(),
                            ));
                        }
                        None
                    }
                    (_, None) => None,
                };
                (at, None)
            }
        };
        // `resourceVersion=0`: any version will do, so the watch cache answers at once (as
        // kube-apiserver's does) instead of first catching up with the store.
        let any_version = resource_version.is_some_and(|rv| rv == "0")
            && query.get("resourceVersionMatch").map(String::as_str) != Some("Exact")
            && after.is_none();
        let continuing = after.clone();
        let result = self
            .collect(target, &selectors, limit, at_revision, after, any_version)
            .await;
        let (items, revision, token) = match (result, continuing) {
            // Like kube-apiserver: say so, and offer a token that continues from the same key
            // at the current revision (an inconsistent but complete continuation).
            (Err(error), Some(after)) if error.reason == "Expired" => {
                let current = self
                    .store
                    .current_revision()
                    .await
                    .map_err(|e| ApiError::from_storage(e, target.subject()))?;
                let mut expired = ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                );
                expired.continue_token = Some(encode_continue(current, &after));
                return Err(expired);
            }
            (result, _) => result?,
        };
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if let Some(token) = token {
            metadata["continue"] = json!(token);
        }
        Ok(json_response(
            StatusCode::OK,
            tables::list(target.kind, items, metadata, representation),
        ))
    }

    /// NamespaceLifecycle: new objects need an existing namespace that is not terminating.
    /// A stored object of any served kind, for admission.
    pub(crate) async fn lookup(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let kind = self.kind_by_plural(group, plural)?;
        let key = kind.key(namespace, name);
        let stored = self
            .store
            .get(&key)
            .await
            .map_err(|e| ApiError::from_storage(e, Subject::default()))?;
        stored
            .map(|kv| decode(&kv, kv.mod_revision).map_err(ApiError::internal))
            .transpose()
    }

    /// The compiled RBAC policy: from the watch caches, recompiled only when one of them
    /// moved; with `current`, after the caches caught up with the store's current revision
    /// (or, if they cannot in time, read from the store).
    pub(crate) async fn rbac_policy(&self, current: bool) -> Arc<crate::authz::Policy> {
        let caches: Option<Vec<Arc<KindCache>>> = POLICY_KINDS
            .iter()
            .map(|plural| {
                let kind = self
                    .registry
                    .kinds()
                    .iter()
                    .find(|k| k.group == crate::rbac::GROUP && k.plural == *plural)?;
                self.caches.get()?.get(&kind.key_prefix()).cloned()
            })
            .collect();
        if let Some(caches) = caches {
            let mut ready = caches.iter().all(|c| c.revision() > 0);
            if ready && current {
                match self.store.current_revision().await {
                    Ok(now) => {
                        for cache in &caches {
                            ready &= cache.caught_up(now).await;
                        }
                    }
                    Err(_) => ready = false,
                }
            }
            if ready {
                return self.compiled_policy(&caches);
            }
        }
        let mut lists = Vec::new();
        for plural in POLICY_KINDS {
            match self
                .lookup_all(crate::rbac::GROUP, plural, None, |_| true)
                .await
            {
                Ok(items) => lists.push(items),
                Err(error) => {
                    tracing::warn!(message = %error.message, "reading the RBAC policy");
                    lists.push(Vec::new());
                }
            }
        }
        Arc::new(crate::authz::Policy::compile(
            &lists[0], &lists[1], &lists[2], &lists[3],
        ))
    }

    /// The policy compiled from the caches' current contents, reused while none moved.
    fn compiled_policy(&self, caches: &[Arc<KindCache>]) -> Arc<crate::authz::Policy> {
        let mut compiled = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        let revisions: Vec<Revision> = caches.iter().map(|c| c.revision()).collect();
        if let Some((at, policy)) = compiled.as_ref()
            && *at == revisions
        {
            return policy.clone();
        }
        let snapshots: Vec<Vec<Value>> = caches
            .iter()
            .map(|c| c.snapshot().map(|(_, objects)| objects).unwrap_or_default())
            .collect();
        let policy = Arc::new(crate::authz::Policy::compile(
            &snapshots[0],
            &snapshots[1],
            &snapshots[2],
            &snapshots[3],
        ));
        *compiled = Some((revisions, policy.clone()));
        policy
    }

    /// Whether RBAC decides (the RBAC kinds' admission then also refuses escalation).
    pub fn rbac_enforced(&self) -> bool {
        matches!(self.authorization, crate::authz::Authorization::Rbac)
    }

    /// Whether `attributes` may proceed.
    pub async fn authorize(&self, attributes: &crate::authz::Attributes) -> crate::authz::Decision {
        let superuser = attributes
            .user
            .groups
            .iter()
            .any(|g| g == crate::authz::SUPERUSER_GROUP);
        match &self.authorization {
            crate::authz::Authorization::AlwaysAllow => crate::authz::Decision::Allow,
            _ if superuser => crate::authz::Decision::Allow,
            crate::authz::Authorization::Delegated(authorizer) => {
                authorizer.authorize(attributes).await
            }
            crate::authz::Authorization::Rbac => {
                if self.rbac_policy(false).await.allows(attributes) {
                    return crate::authz::Decision::Allow;
                }
                // The cache may be a moment behind a binding just written: before refusing,
                // read the policy as of now.
                if self.rbac_policy(true).await.allows(attributes) {
                    crate::authz::Decision::Allow
                } else {
                    crate::authz::Decision::Deny(String::new())
                }
            }
        }
    }

    /// Every stored object of a served kind (in one namespace, for namespaced kinds).
    pub(crate) async fn lookup_all(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        matches: impl Fn(&Value) -> bool + Send + Sync,
    ) -> Result<Vec<Value>, ApiError> {
        let kind = self.kind_by_plural(group, plural)?;
        let prefix = kind.scope_prefix(namespace);
        if let Some(cache) = self.caches.get().and_then(|c| c.get(&kind.key_prefix())) {
            let current = self
                .store
                .current_revision()
                .await
                .map_err(|e| ApiError::from_storage(e, Subject::default()))?;
            if let Some((items, _, _)) = cache.list(&prefix, current, None, &matches).await {
                return Ok(items);
            }
        }
        let mut items = Vec::new();
        let (mut after, mut revision) = (None, None);
        loop {
            let page = self
                .store
                .list(&ListOptions {
                    prefix: prefix.clone(),
                    limit: Some(1000),
                    at_revision: revision,
                    continue_after: after.take(),
                })
                .await
                .map_err(|e| ApiError::from_storage(e, Subject::default()))?;
            revision = Some(page.revision);
            let last = page.items.last().map(|kv| kv.key.clone());
            for kv in &page.items {
                let object = decode(kv, kv.mod_revision).map_err(ApiError::internal)?;
                if matches(&object) {
                    items.push(object);
                }
            }
            match last {
                Some(key) if page.more => after = Some(key),
                _ => return Ok(items),
            }
        }
    }

    fn kind_by_plural(&self, group: &str, plural: &str) -> Result<&ResourceKind, ApiError> {
        self.registry
            .kinds()
            .iter()
            .find(|k| k.group == group && k.plural == plural)
            .ok_or_else(|| {
                ApiError::internal(format!("admission asked for unserved {plural}.{group}"))
            })
    }

    fn admission<'a>(&'a self, target: &'a Target<'a>) -> Admission<'a> {
        Admission {
            user: &target.user,
            subresource: target.subresource.as_deref(),
            namespace: target.namespace.as_deref(),
            rest: self,
        }
    }

    async fn admit_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        let Some(kind) = self.registry.find("", "v1", "namespaces") else {
            return Ok(());
        };
        let stored = self
            .store
            .get(&kind.key(None, namespace))
            .await
            .map_err(|e| ApiError::from_storage(e, Subject::default()))?;
        let subject = Subject {
            group: String::new(),
            resource: "namespaces".into(),
            name: namespace.to_owned(),
        };
        let Some(kv) = stored else {
            return Err(ApiError::not_found(subject));
        };
        let object = decode(&kv, kv.mod_revision).map_err(ApiError::internal)?;
        if objects::is_deleting(&object) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("unable to create new content in namespace {namespace} because it is being terminated"),
            )
            .with_subject(subject));
        }
        Ok(())
    }

    fn namespaces(&self) -> Option<&ResourceKind> {
        self.registry.find("", "v1", "namespaces")
    }

    /// Drives terminating namespaces to the end: deletes their objects (finalized objects get
    /// their deletionTimestamp and are waited for), and the namespace once it is empty. Run after
    /// each namespace delete and periodically (standalone mode has no namespace controller).
    pub async fn reap_namespaces(&self) -> Result<(), ApiError> {
        let Some(kind) = self.namespaces() else {
            return Ok(());
        };
        let page = self
            .store
            .list(&ListOptions {
                prefix: kind.key_prefix(),
                ..Default::default()
            })
            .await
            .map_err(|e| ApiError::from_storage(e, Subject::default()))?;
        for kv in page.items {
            let namespace = decode(&kv, kv.mod_revision).map_err(ApiError::internal)?;
            if !objects::is_deleting(&namespace) {
                continue;
            }
            let name = objects::name(&namespace).unwrap_or_default().to_owned();
            if self.delete_namespace_contents(&name).await? {
                match self.store.delete(&kv.key, kv.mod_revision).await {
                    Ok(_)
                    | Err(StorageError::NotFound { .. } | StorageError::RevisionMismatch { .. }) => {
                    }
                    Err(error) => return Err(ApiError::from_storage(error, Subject::default())),
                }
            }
        }
        Ok(())
    }

    fn parse_body(target: &Target<'_>, body: &Bytes) -> Result<Value, ApiError> {
        let object: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version {:?} cannot be handled as a {}: {e}",
                target.kind.kind, target.kind.version, target.kind.kind
            ))
        })?;
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        for (field, expected) in [
            ("apiVersion", target.kind.api_version()),
            ("kind", target.kind.kind.to_owned()),
        ] {
            if let Some(given) = object.get(field).and_then(Value::as_str)
                && given != expected
            {
                return Err(ApiError::bad_request(format!(
                    "the {field} of the object ({given}) does not match the endpoint's ({expected})"
                )));
            }
        }
        Ok(object)
    }

    /// Defaults, then validates (generic and kind checks); 422 with causes on failure.
    fn admit(target: &Target<'_>, object: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        target.kind.strategy.default(object);
        let mut causes = objects::validate_metadata(target.kind, object);
        causes.extend(target.kind.strategy.validate(object, old));
        if let Some(old) = old
            && objects::is_deleting(old)
        {
            let added: Vec<String> = objects::finalizers(object)
                .into_iter()
                .filter(|f| !objects::finalizers(old).contains(f))
                .collect();
            if !added.is_empty() {
                causes.push(Cause::forbidden(
                    "metadata.finalizers",
                    &format!("no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
                ));
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            let mut subject = target.subject();
            if subject.name.is_empty() {
                subject.name = objects::name(object).unwrap_or_default().to_owned();
            }
            Err(ApiError::invalid(target.kind.kind, subject, causes))
        }
    }

    async fn create(
        &self,
        target: &Target<'_>,
        query: &Query,
        body: &Bytes,
        warnings: &mut Vec<String>,
    ) -> Result<Response, ApiError> {
        let mut object = Self::parse_body(target, body)?;
        let kind = target.kind;
        *warnings = check_fields(&self.schemas, kind, query, &mut object)?;
        if let Some(manager) = query.get("fieldManager")
            && object.pointer("/metadata/managedFields").is_none()
        {
            let fields = apply::field_set(&object);
            apply::record(
                &mut object,
                manager,
                "Update",
                &kind.api_version(),
                fields,
                &objects::now_rfc3339(),
            );
        }
        if objects::metadata(&object).is_none() {
            object["metadata"] = json!({});
        }
        let metadata =
            objects::metadata_mut(&mut object).ok_or_else(|| ApiError::internal("metadata"))?;
        if kind.namespaced {
            let namespace = target.namespace.clone().ok_or_else(|| {
                ApiError::bad_request("a namespaced object must be created in a namespace")
            })?;
            match metadata.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    metadata.insert("namespace".into(), json!(namespace));
                }
            }
        } else {
            metadata.remove("namespace");
        }
        for server_set in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            metadata.remove(server_set);
        }
        metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        metadata.insert("creationTimestamp".into(), json!(objects::now_rfc3339()));
        metadata.insert("generation".into(), json!(1));
        let generate = metadata
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .is_none()
            .then(|| {
                metadata
                    .get("generateName")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .flatten();
        if kind.has_status {
            // Status is the controller's: a create cannot set it.
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
                if let Some(initial) = kind.strategy.initial_status() {
                    map.insert("status".into(), initial);
                }
            }
        }
        if let (Some(namespace), true) = (&target.namespace, kind.namespaced) {
            self.admit_namespace(namespace).await?;
        }
        kind.strategy
            .admit(&self.admission(target), &mut object, None)
            .await?;
        for _attempt in 0..8 {
            let mut candidate = object.clone();
            if let (Some(prefix), Some(metadata)) =
                (&generate, objects::metadata_mut(&mut candidate))
            {
                metadata.insert("name".into(), json!(objects::generate_name(prefix)));
            }
            Self::admit(target, &mut candidate, None)?;
            let name = objects::name(&candidate).unwrap_or_default().to_owned();
            let key = kind.key(target.namespace.as_deref(), &name);
            let subject = Subject {
                name: name.clone(),
                ..target.subject()
            };
            if dry_run(query) {
                return Ok(json_response(
                    StatusCode::CREATED,
                    Self::served(kind, candidate),
                ));
            }
            match self.store.create(&key, encode(&candidate)).await {
                Ok(kv) => {
                    objects::set_resource_version(&mut candidate, kv.mod_revision);
                    return Ok(json_response(
                        StatusCode::CREATED,
                        Self::served(kind, candidate),
                    ));
                }
                Err(StorageError::KeyExists { .. }) if generate.is_some() => continue,
                Err(error) => return Err(ApiError::from_storage(error, subject)),
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            "could not find a free generated name; try again",
        ))
    }

    /// Merges an incoming object onto the stored one per the kind's rules, and writes it.
    /// `expected` is the revision the caller based the change on.
    async fn write_update(
        &self,
        target: &Target<'_>,
        query: &Query,
        old: &Value,
        current_revision: Revision,
        mut object: Value,
        record_update: bool,
    ) -> Result<Response, ApiError> {
        let kind = target.kind;
        let status_update = target.subresource.as_deref() == Some("status");
        let spec_subresource = target
            .subresource
            .as_deref()
            .and_then(|name| kind.spec_subresources.iter().find(|s| s.name == name));
        if status_update {
            // /status: the old object with the new status.
            let mut merged = old.clone();
            merged["status"] = object.get("status").cloned().unwrap_or(Value::Null);
            object = merged;
        } else if let Some(subresource) = spec_subresource {
            // A spec subresource: the old object with just its fields new.
            let mut merged = old.clone();
            for field in subresource.fields {
                objects::copy_pointer(&object, &mut merged, field);
            }
            object = merged;
        } else if kind.has_status {
            // Main resource: status is not the caller's to change.
            match old.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        // Immutable, server-set metadata comes from the stored object.
        {
            let old_metadata = objects::metadata(old).cloned().unwrap_or_default();
            if objects::metadata(&object).is_none() {
                object["metadata"] = json!({});
            }
            let metadata =
                objects::metadata_mut(&mut object).ok_or_else(|| ApiError::internal("metadata"))?;
            if let Some(given) = metadata.get("name").and_then(Value::as_str)
                && Some(given) != target.name.as_deref()
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({given}) does not match the name on the URL ({})",
                    target.name.as_deref().unwrap_or_default()
                )));
            }
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_metadata.get(field) {
                    Some(value) => {
                        metadata.insert(field.into(), value.clone());
                    }
                    None => {
                        metadata.remove(field);
                    }
                }
            }
            metadata.remove("resourceVersion");
        }
        if spec_subresource.is_none() && !status_update {
            // The main resource: fields only a spec subresource changes stay as stored.
            for subresource in kind.spec_subresources {
                for field in subresource.fields {
                    objects::copy_pointer(old, &mut object, field);
                }
            }
        }
        if !status_update {
            kind.strategy
                .admit(&self.admission(target), &mut object, Some(old))
                .await?;
        }
        Self::admit(target, &mut object, Some(old))?;
        if spec_subresource.is_none()
            && objects::generation_content(kind, &object) != objects::generation_content(kind, old)
        {
            let generation = objects::metadata(old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if let Some(metadata) = objects::metadata_mut(&mut object) {
                metadata.insert("generation".into(), json!(generation + 1));
            }
        }
        let mut unchanged = old.clone();
        if let Some(metadata) = objects::metadata_mut(&mut unchanged) {
            metadata.remove("resourceVersion");
        }
        if object == unchanged {
            // A no-op keeps the revision and emits no event.
            return Ok(json_response(
                StatusCode::OK,
                Self::served(kind, old.clone()),
            ));
        }
        if record_update && let Some(manager) = query.get("fieldManager") {
            // The manager owns what it changed now, plus what it changed before.
            let changed = apply::changed_fields(old, &object);
            let fields = match apply::owned(old, manager, "Update") {
                Some(before) => apply::union(&before, &changed),
                None => changed,
            };
            apply::record(
                &mut object,
                manager,
                "Update",
                &kind.api_version(),
                fields,
                &objects::now_rfc3339(),
            );
        }
        let key = target.key()?;
        if dry_run(query) {
            objects::set_resource_version(&mut object, current_revision);
            return Ok(json_response(StatusCode::OK, Self::served(kind, object)));
        }
        // The last finalizer gone from an object being deleted: it goes now, in one conditional
        // delete (as kube-apiserver does). Writing the emptied object first and deleting it after
        // could leave it stored without finalizers, for good, when a write came in between.
        if objects::is_deleting(&object) && objects::finalizers(&object).is_empty() {
            let deleted = self
                .store
                .delete(&key, current_revision)
                .await
                .map_err(|e| ApiError::from_storage(e, target.subject()))?;
            objects::set_resource_version(&mut object, deleted.revision);
            return Ok(json_response(StatusCode::OK, Self::served(kind, object)));
        }
        let written = self
            .store
            .update(&key, encode(&object), current_revision)
            .await
            .map_err(|e| ApiError::from_storage(e, target.subject()))?;
        objects::set_resource_version(&mut object, written.mod_revision);
        Ok(json_response(StatusCode::OK, Self::served(kind, object)))
    }

    async fn replace(
        &self,
        target: &Target<'_>,
        query: &Query,
        body: &Bytes,
        warnings: &mut Vec<String>,
    ) -> Result<Response, ApiError> {
        let mut object = Self::parse_body(target, body)?;
        *warnings = check_fields(&self.schemas, target.kind, query, &mut object)?;
        let (old, revision) = self.read(target).await?;
        let expected = match objects::resource_version(&object) {
            Some(rv) => parse_revision(rv)?,
            // Core kinds allow unconditional updates; the others (as CRDs) require a version.
            None if target.kind.group.is_empty() => revision,
            None => {
                return Err(ApiError::invalid(
                    target.kind.kind,
                    target.subject(),
                    vec![Cause::invalid(
                        "metadata.resourceVersion",
                        "0x0",
                        "must be specified for an update",
                    )],
                ));
            }
        };
        if expected != revision {
            return Err(ApiError::conflict(target.subject()));
        }
        self.write_update(target, query, &old, revision, object, true)
            .await
    }

    async fn patch(
        &self,
        target: &Target<'_>,
        query: &Query,
        headers: &HeaderMap,
        body: &Bytes,
        warnings: &mut Vec<String>,
    ) -> Result<Response, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let strategic = target.kind.strategic_merge;
        match content_type.as_str() {
            "application/apply-patch+yaml" => {
                return self.server_side_apply(target, query, body, warnings).await;
            }
            "application/merge-patch+json" | "application/json-patch+json" => {}
            // Core kinds: strategic merge patch (see `smp`).
            "application/strategic-merge-patch+json" if strategic => {}
            _ => {
                return Err(ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
                    if strategic {
                        ", application/strategic-merge-patch+json"
                    } else {
                        ""
                    }
                )));
            }
        }
        let patch: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid patch: {e}")))?;
        // A patch that names a resourceVersion is a precondition: never retried.
        let conditional = patch.pointer("/metadata/resourceVersion").is_some()
            || patch.as_array().is_some_and(|ops| {
                ops.iter().any(|op| {
                    op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")
                })
            });
        for _ in 0..PATCH_RETRIES {
            let (old, revision) = self.read(target).await?;
            let mut patched = old.clone();
            if content_type == "application/json-patch+json" {
                let operations = kubernetes_json_patch(&patched, &patch)?;
                json_patch::patch(&mut patched, &operations).map_err(|e| {
                    let mut error =
                        ApiError::invalid(target.kind.kind, target.subject(), Vec::new());
                    error.message =
                        "the server rejected our request due to an error in our request".into();
                    error.causes.push(Cause {
                        reason: "FieldValueInvalid",
                        message: e.to_string(),
                        field: String::new(),
                    });
                    error
                })?;
            } else if content_type == "application/strategic-merge-patch+json" {
                crate::smp::apply(&mut patched, &patch, "");
            } else {
                json_patch::merge(&mut patched, &patch);
            }
            *warnings = check_fields(&self.schemas, target.kind, query, &mut patched)?;
            // A resourceVersion in the result that differs is a precondition.
            if objects::resource_version(&patched).is_some_and(|rv| rv != revision.to_string()) {
                return Err(ApiError::conflict(target.subject()));
            }
            match self
                .write_update(target, query, &old, revision, patched, true)
                .await
            {
                Err(error) if error.reason == "Conflict" && !conditional => continue,
                other => return other,
            }
        }
        Err(ApiError::conflict(target.subject()))
    }

    /// `PATCH` with `application/apply-patch+yaml`: create, or merge the manager's intent.
    async fn server_side_apply(
        &self,
        target: &Target<'_>,
        query: &Query,
        body: &Bytes,
        warnings: &mut Vec<String>,
    ) -> Result<Response, ApiError> {
        let manager = query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    target.kind.kind,
                    target.subject(),
                    vec![Cause::required("fieldManager")],
                )
            })?
            .clone();
        // YAML is a superset of JSON: one parser for both.
        let mut applied: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid apply patch: {e}")))?;
        if !applied.is_object() {
            return Err(ApiError::bad_request("an apply patch must be an object"));
        }
        for (field, expected) in [
            ("/apiVersion", target.kind.api_version()),
            ("/kind", target.kind.kind.to_owned()),
            ("/metadata/name", target.name.clone().unwrap_or_default()),
        ] {
            let given = applied
                .pointer(field)
                .and_then(Value::as_str)
                .unwrap_or_default();
            if given != expected {
                return Err(ApiError::bad_request(format!(
                    "{} in an apply patch must be {expected:?}, not {given:?}",
                    field.trim_start_matches('/').replace('/', ".")
                )));
            }
        }
        *warnings = check_fields(&self.schemas, target.kind, query, &mut applied)?;
        let now = objects::now_rfc3339();
        let fields = apply::field_set(&applied);
        for _ in 0..PATCH_RETRIES {
            match self.read(target).await {
                Err(error) if error.reason == "NotFound" => {
                    // Applying to a subresource never creates; creating needs `create`, not
                    // only the `patch` the request was authorized for (as kube-apiserver).
                    if target.subresource.is_some() {
                        return Err(error);
                    }
                    let attributes = crate::authz::Attributes {
                        user: target.user.clone(),
                        verb: "create".into(),
                        resource: Some(crate::authz::ResourceAttributes {
                            namespace: target.namespace.clone().unwrap_or_default(),
                            group: target.kind.group.to_owned(),
                            version: target.kind.version.to_owned(),
                            resource: target.kind.plural.to_owned(),
                            subresource: String::new(),
                            name: target.name.clone().unwrap_or_default(),
                        }),
                        path: String::new(),
                    };
                    if let crate::authz::Decision::Deny(reason) = self.authorize(&attributes).await
                    {
                        return Err(attributes.forbidden(&reason));
                    }
                    let mut object = applied.clone();
                    apply::record(
                        &mut object,
                        &manager,
                        "Apply",
                        &target.kind.api_version(),
                        fields.clone(),
                        &now,
                    );
                    let create = Target {
                        kind: target.kind,
                        namespace: target.namespace.clone(),
                        name: None,
                        subresource: None,
                        user: target.user.clone(),
                    };
                    let body = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
                    match self.create(&create, query, &body, &mut Vec::new()).await {
                        Err(error) if error.reason == "AlreadyExists" => continue,
                        other => return other,
                    }
                }
                Err(error) => return Err(error),
                Ok((live, revision)) => {
                    let mut object = apply::apply(&live, &applied, &manager);
                    apply::record(
                        &mut object,
                        &manager,
                        "Apply",
                        &target.kind.api_version(),
                        fields.clone(),
                        &now,
                    );
                    match self
                        .write_update(target, query, &live, revision, object, false)
                        .await
                    {
                        Err(error) if error.reason == "Conflict" => continue,
                        other => return other,
                    }
                }
            }
        }
        Err(ApiError::conflict(target.subject()))
    }

    async fn delete(
        &self,
        target: &Target<'_>,
        query: &Query,
        body: &Bytes,
    ) -> Result<Response, ApiError> {
        let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        let dry = dry_run(query)
            || options
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All"));
        let (mut object, revision) = self.read(target).await?;
        if let Some(preconditions) = options.get("preconditions") {
            let metadata = objects::metadata(&object).cloned().unwrap_or_default();
            for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
                if let Some(expected) = preconditions.get(field).and_then(Value::as_str) {
                    let actual = metadata
                        .get(field)
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if expected != actual {
                        let mut error = ApiError::conflict(target.subject());
                        error.message = format!(
                            "Precondition failed: {label} in precondition: {expected}, {label} in object meta: {actual}"
                        );
                        return Err(error);
                    }
                }
            }
        }
        let key = target.key()?;
        if !objects::finalizers(&object).is_empty() {
            if objects::is_deleting(&object) || dry {
                return Ok(json_response(
                    StatusCode::OK,
                    Self::served(target.kind, object),
                ));
            }
            self.mark_deleting(&key, &mut object, revision)
                .await
                .map_err(|e| ApiError::from_storage(e, target.subject()))?;
            return Ok(json_response(
                StatusCode::OK,
                Self::served(target.kind, object),
            ));
        }
        if dry {
            return Ok(json_response(
                StatusCode::OK,
                Self::served(target.kind, object),
            ));
        }
        if self
            .namespaces()
            .is_some_and(|n| std::ptr::eq(n, target.kind))
        {
            return self.delete_namespace(target, object, revision).await;
        }
        let deleted = self
            .store
            .delete(&key, revision)
            .await
            .map_err(|e| ApiError::from_storage(e, target.subject()))?;
        objects::set_resource_version(&mut object, deleted.revision);
        Ok(json_response(
            StatusCode::OK,
            Self::served(target.kind, object),
        ))
    }

    /// Sets `deletionTimestamp` (and bumps `generation`) on an object held by finalizers.
    async fn mark_deleting(
        &self,
        key: &str,
        object: &mut Value,
        revision: Revision,
    ) -> Result<(), StorageError> {
        let generation = objects::metadata(object)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some(metadata) = objects::metadata_mut(object) {
            metadata.insert("deletionTimestamp".into(), json!(objects::now_rfc3339()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            metadata.insert("generation".into(), json!(generation + 1));
        }
        let written = self.store.update(key, encode(object), revision).await?;
        objects::set_resource_version(object, written.mod_revision);
        Ok(())
    }

    /// A namespace is marked terminating, then emptied; it goes when nothing is left in it.
    async fn delete_namespace(
        &self,
        target: &Target<'_>,
        mut object: Value,
        revision: Revision,
    ) -> Result<Response, ApiError> {
        let name = target.name.clone().unwrap_or_default();
        if let Some(metadata) = objects::metadata_mut(&mut object) {
            metadata.insert("deletionTimestamp".into(), json!(objects::now_rfc3339()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        object["status"] = json!({"phase": "Terminating"});
        let written = self
            .store
            .update(&target.key()?, encode(&object), revision)
            .await
            .map_err(|e| ApiError::from_storage(e, target.subject()))?;
        objects::set_resource_version(&mut object, written.mod_revision);
        if self.delete_namespace_contents(&name).await? {
            let deleted = self
                .store
                .delete(&target.key()?, written.mod_revision)
                .await
                .map_err(|e| ApiError::from_storage(e, target.subject()))?;
            objects::set_resource_version(&mut object, deleted.revision);
        }
        Ok(json_response(
            StatusCode::OK,
            Self::served(target.kind, object),
        ))
    }

    /// Deletes what is in a namespace (objects with finalizers are marked, not removed);
    /// `true` when nothing is left.
    async fn delete_namespace_contents(&self, namespace: &str) -> Result<bool, ApiError> {
        let mut empty = true;
        for kind in self.registry.kinds().iter().filter(|k| k.namespaced) {
            let prefix = kind.scope_prefix(Some(namespace));
            let page = self
                .store
                .list(&ListOptions {
                    prefix,
                    ..Default::default()
                })
                .await
                .map_err(|e| ApiError::from_storage(e, Subject::default()))?;
            for kv in page.items {
                let object = decode(&kv, kv.mod_revision).map_err(ApiError::internal)?;
                let held = !objects::finalizers(&object).is_empty();
                if held {
                    empty = false;
                    if objects::is_deleting(&object) {
                        continue;
                    }
                    let mut object = object;
                    match self
                        .mark_deleting(&kv.key, &mut object, kv.mod_revision)
                        .await
                    {
                        Ok(())
                        | Err(
                            StorageError::NotFound { .. } | StorageError::RevisionMismatch { .. },
                        ) => {}
                        Err(error) => {
                            return Err(ApiError::from_storage(error, Subject::default()));
                        }
                    }
                    continue;
                }
                match self.store.delete(&kv.key, kv.mod_revision).await {
                    Ok(_) | Err(StorageError::NotFound { .. }) => {}
                    Err(StorageError::RevisionMismatch { .. }) => empty = false,
                    Err(error) => return Err(ApiError::from_storage(error, Subject::default())),
                }
            }
        }
        Ok(empty)
    }

    async fn delete_collection(
        &self,
        target: &Target<'_>,
        query: &Query,
    ) -> Result<Response, ApiError> {
        let selectors = Selectors::parse(target.kind, query)?;
        let (items, _, _) = self
            .collect(target, &selectors, None, None, None, false)
            .await?;
        let mut deleted = Vec::new();
        for item in items {
            let one = Target {
                kind: target.kind,
                namespace: item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                name: objects::name(&item).map(str::to_owned),
                subresource: None,
                user: target.user.clone(),
            };
            match self.delete(&one, query, &Bytes::new()).await {
                Ok(_) => deleted.push(item),
                Err(error) if error.reason == "NotFound" => {}
                Err(error) => return Err(error),
            }
        }
        Ok(json_response(
            StatusCode::OK,
            json!({
                "kind": format!("{}List", target.kind.kind),
                "apiVersion": target.kind.api_version(),
                "metadata": {},
                "items": deleted,
            }),
        ))
    }

    async fn watch(
        &self,
        target: &Target<'_>,
        query: &Query,
        representation: Representation,
    ) -> Result<Response, ApiError> {
        let selectors = Selectors::parse(target.kind, query)?;
        let send_initial = flag(query, "sendInitialEvents");
        let rv_match = query.get("resourceVersionMatch").filter(|v| !v.is_empty());
        if send_initial && rv_match.map(String::as_str) != Some("NotOlderThan") {
            return Err(watch_list_misuse(
                "sendInitialEvents requires resourceVersionMatch=NotOlderThan",
            ));
        }
        if !send_initial && rv_match.is_some() {
            return Err(watch_list_misuse(
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(MAX_WATCH)
            .min(MAX_WATCH);
        let resource_version = query
            .get("resourceVersion")
            .filter(|v| !v.is_empty() && v.as_str() != "0")
            .map(|v| parse_revision(v))
            .transpose()?;
        let bookmarks = flag(query, "allowWatchBookmarks");
        let kind = target.kind.clone();
        let prefix = kind.scope_prefix(target.namespace.as_deref());

        // Initial state: synthetic ADDED when no version was given (or streaming list asked).
        let mut initial = Vec::new();
        let from = match resource_version {
            Some(rv) if !send_initial => rv + 1,
            _ => {
                let (items, revision, _) = self
                    .collect(target, &selectors, None, None, None, false)
                    .await?;
                initial.extend(
                    items
                        .into_iter()
                        .map(|object| json!({"type": "ADDED", "object": object})),
                );
                if send_initial {
                    initial.push(json!({"type": "BOOKMARK", "object": {
                        "kind": kind.kind, "apiVersion": kind.api_version(),
                        "metadata": {"resourceVersion": revision.to_string(),
                                     "annotations": {"k8s.io/initial-events-end": "true"}}}}));
                }
                revision + 1
            }
        };
        let watch = match self.store.watch(&prefix, from).await {
            Ok(watch) => Some(watch),
            Err(StorageError::Compacted {
                requested,
                compact_revision,
            }) => {
                initial.push(json!({"type": "ERROR", "object": ApiError::expired(format!(
                    "too old resource version: {} ({compact_revision})", requested - 1
                )).to_status()}));
                None
            }
            Err(error) => return Err(ApiError::from_storage(error, target.subject())),
        };
        self.metrics.watches.inc();
        let guard = crate::metrics::WatchGuard(self.metrics.watches.clone());
        let shutting_down = self.shutting_down.subscribe();
        let stream = async_stream::stream! {
            let _guard = guard;
            for event in initial {
                yield Ok::<_, std::io::Error>(line(&event));
            }
            let Some(mut watch) = watch else { return; };
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut shutdown = shutting_down;
            if *shutdown.borrow() {
                return;
            }
            let mut bookmark_tick = tokio::time::interval_at(
                tokio::time::Instant::now() + BOOKMARK_INTERVAL,
                BOOKMARK_INTERVAL,
            );
            let bookmark = |revision: Revision| line(&json!({"type": "BOOKMARK", "object": {
                "kind": kind.kind, "apiVersion": kind.api_version(),
                "metadata": {"resourceVersion": revision.to_string()}}}));
            loop {
                let event = tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = &mut deadline => {
                        // A last bookmark lets the client resume from where it really is.
                        if let Some(revision) = watch.progress().filter(|_| bookmarks) {
                            yield Ok(bookmark(revision));
                        }
                        return;
                    }
                    _ = bookmark_tick.tick(), if bookmarks => {
                        if let Some(revision) = watch.progress() {
                            yield Ok(bookmark(revision));
                        }
                        continue;
                    }
                    event = watch.next() => event,
                };
                let event = match event {
                    None => return,
                    Some(Err(error)) => {
                        let status = ApiError::from_storage(error, Subject::default()).to_status();
                        yield Ok(line(&json!({"type": "ERROR", "object": status})));
                        return;
                    }
                    Some(Ok(event)) => event,
                };
                if let Some(mut out) = translate(&kind, &selectors, &event) {
                    let object = out["object"].take();
                    out["object"] = tables::one(&kind, object, representation);
                    yield Ok(line(&out));
                }
            }
        };
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(Body::from_stream(stream))
            .map_err(|e| ApiError::internal(e.to_string()))
    }
}

/// Request bodies are JSON; kubectl's protobuf bodies for core and RBAC kinds are decoded;
/// anything else (CBOR, protobuf of other kinds) is refused with 415.
fn json_body(headers: &HeaderMap, kind: &ResourceKind, body: Bytes) -> Result<Bytes, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    match essence {
        "" | "application/json" | "*/*" => Ok(body),
        "application/vnd.kubernetes.protobuf"
            if kind.group.is_empty() || kind.group == crate::rbac::GROUP =>
        {
            let object = crate::protobuf::decode(&body).map_err(ApiError::bad_request)?;
            Ok(Bytes::from(serde_json::to_vec(&object).unwrap_or_default()))
        }
        _ => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({essence}) - accepted media types include: application/json"
        ))),
    }
}

/// The Kubernetes verb of a request (what RBAC and metrics call it).
/// `fieldManager` defaults to the client's User-Agent product (`kubectl`, `kube-rs`, ...) on
/// writes, as in Kubernetes — except for server-side apply, which must name its manager.
fn default_field_manager(query: &mut Query, method: &Method, headers: &HeaderMap) {
    let is_apply = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/apply-patch"));
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        || is_apply
        || query.get("fieldManager").is_some_and(|m| !m.is_empty())
    {
        return;
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|product| !product.trim().is_empty())
        .unwrap_or("unknown");
    query.insert("fieldManager".into(), agent.trim().to_owned());
}

/// Collection verbs (`list`, `deletecollection`) become item verbs once the target is known.
fn verb_of(method: &Method, query: Option<&str>) -> &'static str {
    let watch = parse_query(query)
        .get("watch")
        .is_some_and(|v| v == "true" || v == "1");
    match *method {
        Method::GET if watch => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

fn line(event: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// A storage event as a watch event, with selector transitions: an object that starts matching
/// is ADDED, one that stops matching is DELETED.
fn translate(kind: &ResourceKind, selectors: &Selectors, event: &storage::Event) -> Option<Value> {
    let decode_at =
        |kv: &storage::KeyValue, revision| decode(kv, revision).ok().map(|o| Rest::served(kind, o));
    let previous = event
        .prev
        .as_ref()
        .and_then(|p| decode_at(p, p.mod_revision))
        .filter(|o| selectors.matches(kind, o));
    match event.kind {
        EventKind::Put => {
            let object = decode_at(&event.kv, event.kv.mod_revision)?;
            let now = selectors.matches(kind, &object);
            let kind_of_event = match (previous.is_some(), now) {
                (false, true) => "ADDED",
                (true, true) => "MODIFIED",
                (true, false) => "DELETED",
                (false, false) => return None,
            };
            Some(json!({"type": kind_of_event, "object": object}))
        }
        EventKind::Delete => {
            let mut object = previous?;
            objects::set_resource_version(&mut object, event.kv.mod_revision);
            Some(json!({"type": "DELETED", "object": object}))
        }
    }
}

fn watch_list_misuse(message: &str) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("ListOptions.meta.k8s.io \"\" is invalid: {message}"),
    );
    error.subject = Some(Subject {
        group: "meta.k8s.io".into(),
        resource: "ListOptions".into(),
        name: String::new(),
    });
    error.causes.push(Cause {
        reason: "FieldValueForbidden",
        message: format!("Forbidden: {message}"),
        field: "sendInitialEvents".into(),
    });
    error
}

/// Kubernetes' JSON patch quirk: a `test` of a missing path against `null` succeeds (the
/// kube-runtime finalizer helper relies on it), which RFC 6902 and the `json-patch` crate reject.
fn kubernetes_json_patch(document: &Value, patch: &Value) -> Result<json_patch::Patch, ApiError> {
    let operations = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    let kept: Vec<Value> = operations
        .iter()
        .filter(|op| {
            let is_null_test = op.get("op").and_then(Value::as_str) == Some("test")
                && op.get("value").is_some_and(Value::is_null);
            let path_missing = op
                .get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| document.pointer(p).is_none());
            !(is_null_test && path_missing)
        })
        .cloned()
        .collect();
    serde_json::from_value(Value::Array(kept))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))
}
