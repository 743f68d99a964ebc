//! The registry of kinds: adding a kind to the server is declaring it here, not writing handlers.
//!
//! A [`ResourceKind`] says where the kind lives (group, version, plural, scope), how clients
//! name it (singular, short names, categories), what it has (a `status` subresource), which
//! field selectors it supports, and its [`Strategy`] (defaulting and validation).

use std::sync::Arc;

use serde_json::Value;

use crate::auth::UserIdentity;
use crate::status::{ApiError, Cause};

/// What a strategy's admission step may consult: who is asking, and the stored objects of
/// any served kind (the original Service Catalog's admission plugins needed both).
pub struct Admission<'a> {
    /// The requester.
    pub user: &'a UserIdentity,
    /// `None` for the main resource; `Some("status")`, `Some("reference")`, ...
    pub subresource: Option<&'a str>,
    /// The namespace of the request, for namespaced kinds.
    pub namespace: Option<&'a str>,
    pub(crate) rest: &'a crate::rest::Rest,
}

impl Admission<'_> {
    /// A stored object of the kind `group`/`plural`, if it exists.
    pub async fn get(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        self.rest.lookup(group, plural, namespace, name).await
    }

    /// The stored objects of the kind `group`/`plural` (in `namespace`, for namespaced kinds)
    /// that `matches` accepts; from the watch cache when it has caught up.
    pub async fn list(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        matches: impl Fn(&Value) -> bool + Send + Sync,
    ) -> Result<Vec<Value>, ApiError> {
        self.rest
            .lookup_all(group, plural, namespace, matches)
            .await
    }
}

impl Admission<'_> {
    /// The RBAC policy as of now, when RBAC decides (`None` otherwise).
    pub async fn rbac_policy(&self) -> Option<Arc<crate::authz::Policy>> {
        if !self.rest.rbac_enforced() {
            return None;
        }
        Some(self.rest.rbac_policy(true).await)
    }
}

/// Defaulting, validation and admission of one kind. The defaults do nothing.
#[async_trait::async_trait]
pub trait Strategy: Send + Sync {
    /// Whether the strategy checks `metadata.name` itself instead of the generic DNS-1123
    /// subdomain rule (the catalog's classes and plans are named by broker IDs).
    fn checks_names(&self) -> bool {
        false
    }

    /// The status a new object starts with (a create cannot set status); `None`: no status.
    fn initial_status(&self) -> Option<Value> {
        None
    }

    /// Changes and checks that need the requester or other stored objects; runs before
    /// [`Strategy::default`] on create and on update of the main resource or a spec
    /// subresource (`old` is the stored object on update).
    async fn admit(
        &self,
        _admission: &Admission<'_>,
        _object: &mut Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// Fills in defaults on create and update (before validation).
    fn default(&self, _object: &mut Value) {}

    /// Problems with the object; `old` is the stored object on update.
    fn validate(&self, _object: &Value, _old: Option<&Value>) -> Vec<Cause> {
        Vec::new()
    }
}

/// A strategy with no defaults and no extra validation.
pub struct Plain;

impl Strategy for Plain {}

/// How a table column's value is read from an object.
#[derive(Debug, Clone, Copy)]
pub enum ColumnValue {
    /// The value at a JSON pointer.
    Path(&'static str),
    /// How many entries the map at a JSON pointer has.
    Count(&'static str),
    /// `kind/name` of the object reference at a JSON pointer.
    KindName(&'static str),
    /// Computed from the whole object.
    Computed(fn(&Value) -> Value),
}

/// A column of `kubectl get` (between NAME, which comes first, and AGE, which comes last).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `date`, ...
    pub kind: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: u8,
    pub value: ColumnValue,
}

impl Column {
    pub const fn string(name: &'static str, pointer: &'static str) -> Self {
        Self {
            name,
            kind: "string",
            description: "",
            priority: 0,
            value: ColumnValue::Path(pointer),
        }
    }
}

/// A subresource that changes only some spec fields.
#[derive(Debug, Clone, Copy)]
pub struct SpecSubresource {
    pub name: &'static str,
    /// JSON pointers of the fields it changes.
    pub fields: &'static [&'static str],
}

#[derive(Clone)]
pub struct ResourceKind {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    /// Has a `/status` subresource: the main resource ignores status, `/status` ignores the rest.
    pub has_status: bool,
    /// Field selectors beyond `metadata.name`/`metadata.namespace`: (selector, JSON pointer).
    pub field_selectors: &'static [(&'static str, &'static str)],
    /// Subresources through which a few spec fields (JSON pointers) change, and nothing else
    /// (the instance's `/reference`); the main resource keeps those fields as stored.
    pub spec_subresources: &'static [SpecSubresource],
    /// `kubectl get` columns beyond NAME and AGE.
    pub columns: &'static [Column],
    /// What `kubectl explain` says about the kind.
    pub description: &'static str,
    /// The kind's own top-level properties (besides apiVersion, kind, metadata), as OpenAPI
    /// schemas: drives the OpenAPI documents and `fieldValidation`.
    pub schema: fn() -> Value,
    /// Built-in Kubernetes kinds accept strategic merge patch; CRD-like kinds (the catalog's)
    /// answer 415, as CRDs do.
    pub strategic_merge: bool,
    pub strategy: Arc<dyn Strategy>,
}

impl std::fmt::Debug for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.api_version())?;
        write!(f, "/{}", self.kind)
    }
}

impl ResourceKind {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage prefix of all objects of this kind.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The storage prefix of the objects in one namespace (or of all, for cluster kinds).
    pub fn scope_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.scope_prefix(namespace))
    }

    /// Reads a field for a field selector; `None` for a field the kind does not support.
    pub fn field(&self, object: &Value, field: &str) -> Option<Option<String>> {
        let pointer = match field {
            "metadata.name" => "/metadata/name",
            "metadata.namespace" => "/metadata/namespace",
            _ => {
                self.field_selectors
                    .iter()
                    .find(|(name, _)| *name == field)?
                    .1
            }
        };
        Some(object.pointer(pointer).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
    }
}

/// All kinds the server serves.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: Vec<ResourceKind>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, kind: ResourceKind) -> &mut Self {
        self.kinds.push(kind);
        self
    }

    pub fn kinds(&self) -> &[ResourceKind] {
        &self.kinds
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceKind> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// Group → its versions, in registration order.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for kind in &self.kinds {
            match groups.iter_mut().find(|(g, _)| *g == kind.group) {
                Some((_, versions)) if !versions.contains(&kind.version) => {
                    versions.push(kind.version)
                }
                Some(_) => {}
                None => groups.push((kind.group, vec![kind.version])),
            }
        }
        groups
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceKind> + 'a {
        self.kinds
            .iter()
            .filter(move |k| k.group == group && k.version == version)
    }

    /// The slice of the core API standalone mode serves (`ARCHITECTURE.md`): Namespaces,
    /// Secrets, ConfigMaps, Events (both groups) and Leases.
    pub fn standalone_core() -> Self {
        let plain: Arc<dyn Strategy> = Arc::new(Plain);
        let mut registry = Self::new();
        registry
            .add(ResourceKind {
                group: "",
                version: "v1",
                kind: "Namespace",
                plural: "namespaces",
                singular: "namespace",
                short_names: &["ns"],
                categories: &[],
                namespaced: false,
                has_status: true,
                field_selectors: &[("status.phase", "/status/phase")],
                spec_subresources: &[],
                columns: NAMESPACE_COLUMNS,
                description: "Namespace provides a scope for Names.",
                schema: namespace_schema,
                strategic_merge: true,
                strategy: Arc::new(NamespaceStrategy),
            })
            .add(ResourceKind {
                group: "",
                version: "v1",
                kind: "Secret",
                plural: "secrets",
                singular: "secret",
                short_names: &[],
                categories: &[],
                namespaced: true,
                has_status: false,
                field_selectors: &[("type", "/type")],
                spec_subresources: &[],
                columns: SECRET_COLUMNS,
                description: "Secret holds secret data of a certain type.",
                schema: secret_schema,
                strategic_merge: true,
                strategy: Arc::new(SecretStrategy),
            })
            .add(ResourceKind {
                group: "",
                version: "v1",
                kind: "ConfigMap",
                plural: "configmaps",
                singular: "configmap",
                short_names: &["cm"],
                categories: &[],
                namespaced: true,
                has_status: false,
                field_selectors: &[],
                spec_subresources: &[],
                columns: CONFIGMAP_COLUMNS,
                description: "ConfigMap holds configuration data for pods to consume.",
                schema: configmap_schema,
                strategic_merge: true,
                strategy: plain.clone(),
            })
            .add(ResourceKind {
                group: "",
                version: "v1",
                kind: "Event",
                plural: "events",
                singular: "event",
                short_names: &["ev"],
                categories: &[],
                namespaced: true,
                has_status: false,
                field_selectors: &[
                    ("involvedObject.name", "/involvedObject/name"),
                    ("involvedObject.namespace", "/involvedObject/namespace"),
                    ("involvedObject.kind", "/involvedObject/kind"),
                    ("involvedObject.uid", "/involvedObject/uid"),
                    ("reason", "/reason"),
                    ("type", "/type"),
                ],
                spec_subresources: &[],
                columns: CORE_EVENT_COLUMNS,
                description: "Event is a report of an event somewhere in the cluster.",
                schema: core_event_schema,
                strategic_merge: true,
                strategy: plain.clone(),
            })
            .add(ResourceKind {
                group: "events.k8s.io",
                version: "v1",
                kind: "Event",
                plural: "events",
                singular: "event",
                short_names: &["ev"],
                categories: &[],
                namespaced: true,
                has_status: false,
                field_selectors: &[
                    ("regarding.name", "/regarding/name"),
                    ("regarding.kind", "/regarding/kind"),
                    ("reason", "/reason"),
                    ("type", "/type"),
                ],
                spec_subresources: &[],
                columns: EVENT_COLUMNS,
                description: "Event is a report of an event somewhere in the cluster (events.k8s.io).",
                schema: event_schema,
                strategic_merge: true,
                strategy: plain.clone(),
            })
            .add(ResourceKind {
                group: "coordination.k8s.io",
                version: "v1",
                kind: "Lease",
                plural: "leases",
                singular: "lease",
                short_names: &[],
                categories: &[],
                namespaced: true,
                has_status: false,
                field_selectors: &[],
                spec_subresources: &[],
                columns: LEASE_COLUMNS,
                description: "Lease defines a lease concept.",
                schema: lease_schema,
                strategic_merge: true,
                strategy: plain,
            });
        registry
    }
}

const NAMESPACE_COLUMNS: &[Column] = &[Column::string("Status", "/status/phase")];
const SECRET_COLUMNS: &[Column] = &[
    Column::string("Type", "/type"),
    Column {
        name: "Data",
        kind: "integer",
        description: "Number of keys",
        priority: 0,
        value: ColumnValue::Count("/data"),
    },
];
const CONFIGMAP_COLUMNS: &[Column] = &[Column {
    name: "Data",
    kind: "integer",
    description: "Number of keys",
    priority: 0,
    value: ColumnValue::Count("/data"),
}];
const CORE_EVENT_COLUMNS: &[Column] = &[
    Column::string("Type", "/type"),
    Column::string("Reason", "/reason"),
    Column {
        name: "Object",
        kind: "string",
        description: "The object the event is about",
        priority: 0,
        value: ColumnValue::KindName("/involvedObject"),
    },
    Column::string("Message", "/message"),
];
const EVENT_COLUMNS: &[Column] = &[
    Column::string("Type", "/type"),
    Column::string("Reason", "/reason"),
    Column {
        name: "Object",
        kind: "string",
        description: "The object the event is about",
        priority: 0,
        value: ColumnValue::KindName("/regarding"),
    },
    Column::string("Note", "/note"),
];
const LEASE_COLUMNS: &[Column] = &[Column::string("Holder", "/spec/holderIdentity")];

fn string() -> Value {
    serde_json::json!({"type": "string"})
}

fn string_map() -> Value {
    serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}})
}

fn object_reference() -> Value {
    serde_json::json!({"type": "object", "properties": {
        "apiVersion": string(), "kind": string(), "name": string(), "namespace": string(),
        "uid": string(), "resourceVersion": string(), "fieldPath": string()}})
}

fn namespace_schema() -> Value {
    serde_json::json!({
        "spec": {"type": "object", "properties": {"finalizers": {"type": "array", "items": string()}}},
        "status": {"type": "object", "properties": {"phase": string(),
            "conditions": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
    })
}

fn secret_schema() -> Value {
    serde_json::json!({
        "data": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "stringData": string_map(),
        "type": string(),
        "immutable": {"type": "boolean"},
    })
}

fn configmap_schema() -> Value {
    serde_json::json!({
        "data": string_map(),
        "binaryData": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "immutable": {"type": "boolean"},
    })
}

fn core_event_schema() -> Value {
    let time = serde_json::json!({"type": "string", "format": "date-time"});
    serde_json::json!({
        "involvedObject": object_reference(), "related": object_reference(),
        "reason": string(), "message": string(), "type": string(), "action": string(),
        "source": {"type": "object", "properties": {"component": string(), "host": string()}},
        "firstTimestamp": time, "lastTimestamp": time, "eventTime": time,
        "count": {"type": "integer"},
        "series": {"type": "object", "properties": {"count": {"type": "integer"}, "lastObservedTime": time}},
        "reportingComponent": string(), "reportingInstance": string(),
    })
}

fn event_schema() -> Value {
    let time = serde_json::json!({"type": "string", "format": "date-time"});
    serde_json::json!({
        "regarding": object_reference(), "related": object_reference(),
        "reason": string(), "note": string(), "type": string(), "action": string(),
        "eventTime": time, "reportingController": string(), "reportingInstance": string(),
        "series": {"type": "object", "properties": {"count": {"type": "integer"}, "lastObservedTime": time}},
        "deprecatedSource": {"type": "object", "properties": {"component": string(), "host": string()}},
        "deprecatedFirstTimestamp": time, "deprecatedLastTimestamp": time,
        "deprecatedCount": {"type": "integer"},
    })
}

fn lease_schema() -> Value {
    let time = serde_json::json!({"type": "string", "format": "date-time"});
    serde_json::json!({
        "spec": {"type": "object", "properties": {
            "holderIdentity": string(), "leaseDurationSeconds": {"type": "integer"},
            "acquireTime": time, "renewTime": time, "leaseTransitions": {"type": "integer"},
            "preferredHolder": string(), "strategy": string()}},
    })
}

struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn default(&self, object: &mut Value) {
        if object.pointer("/status/phase").is_none()
            && let Some(map) = object.as_object_mut()
        {
            map.insert("status".into(), serde_json::json!({"phase": "Active"}));
        }
    }
}

struct SecretStrategy;

impl Strategy for SecretStrategy {
    /// `type` defaults to `Opaque`; `stringData` is folded into `data` (base64), as Kubernetes
    /// does, so only `data` is ever stored.
    fn default(&self, object: &mut Value) {
        use base64::Engine as _;
        let Some(map) = object.as_object_mut() else {
            return;
        };
        map.entry("type")
            .or_insert_with(|| Value::String("Opaque".into()));
        if let Some(Value::Object(plain)) = map.remove("stringData") {
            let data = map
                .entry("data")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(data) = data.as_object_mut() {
                for (key, value) in plain {
                    let text = value
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| value.to_string());
                    data.insert(
                        key,
                        Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
                    );
                }
            }
        }
    }

    fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(data) = object.get("data") {
            match data.as_object() {
                Some(map) => {
                    for (key, value) in map {
                        let valid = value.as_str().is_some_and(|v| {
                            use base64::Engine as _;
                            base64::engine::general_purpose::STANDARD.decode(v).is_ok()
                        });
                        if !valid {
                            causes.push(Cause::invalid(
                                &format!("data[{key}]"),
                                "<value>",
                                "must be base64-encoded bytes",
                            ));
                        }
                    }
                }
                None => causes.push(Cause::invalid("data", "<value>", "must be a map")),
            }
        }
        if let Some(old) = old
            && old.get("type") != object.get("type")
        {
            causes.push(Cause::invalid(
                "type",
                object
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                "field is immutable",
            ));
        }
        causes
    }
}
