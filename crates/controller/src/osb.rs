//! What the instance and binding reconcilers share: resolving an instance's class, plan and
//! broker; parameters (inline, from Secrets, defaults) checked against the plan's schema; the
//! OSB context and originating identity; conditions; and the per-object backoff.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use catalog_api::{Condition, ParametersFromSource, ServiceInstance, UserInfo};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client, ResourceExt as _};
use osb_client::{KubernetesUser, OriginatingIdentity};
use serde_json::{Map, Value, json};

use crate::broker;
use crate::catalog::Scope;

/// A failure the reconcilers report as a condition: the original's reason and a message.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
    /// Worth retrying (with backoff) rather than a final failure.
    pub retriable: bool,
}

impl Problem {
    pub fn retry(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retriable: true,
        }
    }

    pub fn fail(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retriable: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error("malformed object: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl From<broker::Error> for Error {
    fn from(error: broker::Error) -> Self {
        match error {
            broker::Error::Broker { reason, message } => Problem::retry(reason, message).into(),
            broker::Error::Kube(error) => Self::Kube(error),
            broker::Error::Malformed(error) => Self::Malformed(error),
        }
    }
}

/// Sets a condition, keeping its transition time when its status does not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) {
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: transition,
        reason: reason.into(),
        message: message.into(),
    });
}

pub fn now() -> Time {
    Time(Timestamp::now())
}

/// Consecutive failures per object and when the next attempt is due (doubling delays).
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn remaining(&self, key: &str) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(key)
            .and_then(|(_, next)| next.checked_duration_since(Instant::now()))
    }

    pub fn fail(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failures
            .entry(key.to_owned())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        let factor = 2u32.saturating_pow(entry.0.saturating_sub(1).min(20));
        let delay = self.min.saturating_mul(factor).min(self.max);
        entry.1 = Instant::now() + delay;
        delay
    }

    pub fn succeed(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

/// An instance's class, plan and broker as stored, in their scope.
pub struct Resolved {
    pub scope: Scope,
    pub class: DynamicObject,
    pub plan: DynamicObject,
    pub broker: DynamicObject,
}

impl Resolved {
    pub fn service_id(&self) -> String {
        text(&self.class.data, "/spec/externalID")
    }

    pub fn plan_id(&self) -> String {
        text(&self.plan.data, "/spec/externalID")
    }

    pub fn plan_name(&self) -> String {
        text(&self.plan.data, "/spec/externalName")
    }

    pub fn class_name(&self) -> String {
        text(&self.class.data, "/spec/externalName")
    }

    /// The OSB client for the broker that offers the plan.
    pub async fn client(
        &self,
        client: &Client,
        timeout: std::time::Duration,
    ) -> Result<osb_client::Client, Error> {
        Ok(broker::client_for(client, self.scope, timeout, &self.broker).await?)
    }
}

pub fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn api_for(client: &Client, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Finds the instance's class and plan (by ref when resolved, else by the names the user gave)
/// and the broker offering them. Lists are served from the API server's watch cache as it is
/// (`resourceVersion=0`, as informers read): a class a moment stale is fine here.
pub async fn resolve(client: &Client, instance: &ServiceInstance) -> Result<Resolved, Error> {
    let namespace = instance.namespace().unwrap_or_default();
    let spec = &instance.spec;
    let names = &spec.plan_reference;
    let namespaced = !names.service_class_external_name.is_empty()
        || !names.service_class_external_id.is_empty()
        || !names.service_class_name.is_empty()
        || spec.service_class_ref.is_some();
    let cluster = !namespaced;
    let scope = Scope { cluster };
    let [broker_resource, class_resource, plan_resource] = broker::resources(scope);
    let ns = (!cluster).then_some(namespace.as_str());
    let classes = api_for(client, &class_resource, ns);
    let plans = api_for(client, &plan_resource, ns);
    let (class_kind, plan_kind) = (class_resource.kind.clone(), plan_resource.kind.clone());
    let (by_ref, external_name, external_id, name) = if cluster {
        (
            spec.cluster_service_class_ref
                .as_ref()
                .map(|r| r.name.clone()),
            &names.cluster_service_class_external_name,
            &names.cluster_service_class_external_id,
            &names.cluster_service_class_name,
        )
    } else {
        (
            spec.service_class_ref.as_ref().map(|r| r.name.clone()),
            &names.service_class_external_name,
            &names.service_class_external_id,
            &names.service_class_name,
        )
    };
    let missing_class = || {
        Problem::retry(
            "ReferencesNonexistentServiceClass",
            format!(
                "The instance references a {class_kind} that does not exist: {}",
                [external_name, external_id, name]
                    .into_iter()
                    .find(|v| !v.is_empty())
                    .cloned()
                    .or_else(|| by_ref.clone())
                    .unwrap_or_default()
            ),
        )
    };
    let class = match (&by_ref, name.is_empty()) {
        (Some(reference), _) => classes.get_opt(reference).await?,
        (None, false) => classes.get_opt(name).await?,
        (None, true) => {
            let (field, value) = if external_name.is_empty() {
                ("spec.externalID", external_id)
            } else {
                ("spec.externalName", external_name)
            };
            let found = classes
                .list(
                    &ListParams::default()
                        .match_any()
                        .fields(&format!("{field}={value}")),
                )
                .await?;
            found.items.into_iter().next()
        }
    }
    .ok_or_else(missing_class)?;
    let class_name = class.name_any();
    let (plan_ref, plan_external_name, plan_external_id, plan_name, class_ref_field) = if cluster {
        (
            spec.cluster_service_plan_ref
                .as_ref()
                .map(|r| r.name.clone()),
            &names.cluster_service_plan_external_name,
            &names.cluster_service_plan_external_id,
            &names.cluster_service_plan_name,
            "spec.clusterServiceClassRef.name",
        )
    } else {
        (
            spec.service_plan_ref.as_ref().map(|r| r.name.clone()),
            &names.service_plan_external_name,
            &names.service_plan_external_id,
            &names.service_plan_name,
            "spec.serviceClassRef.name",
        )
    };
    let plan = match plan_ref {
        Some(reference) => plans.get_opt(&reference).await?,
        None => plans
            .list(
                &ListParams::default()
                    .match_any()
                    .fields(&format!("{class_ref_field}={class_name}")),
            )
            .await?
            .items
            .into_iter()
            .find(|p| {
                (!plan_name.is_empty() && p.name_any() == *plan_name)
                    || (!plan_external_name.is_empty()
                        && text(&p.data, "/spec/externalName") == *plan_external_name)
                    || (!plan_external_id.is_empty()
                        && text(&p.data, "/spec/externalID") == *plan_external_id)
            }),
    }
    .ok_or_else(|| {
        Problem::retry(
            "ReferencesNonexistentServicePlan",
            format!(
                "The instance references a {plan_kind} that does not exist: {}",
                [plan_external_name, plan_external_id, plan_name]
                    .into_iter()
                    .find(|v| !v.is_empty())
                    .cloned()
                    .unwrap_or_default()
            ),
        )
    })?;
    let broker_name = text(&class.data, &format!("/spec/{}", scope.broker_field()));
    let broker = api_for(client, &broker_resource, ns)
        .get_opt(&broker_name)
        .await?
        .ok_or_else(|| {
            Problem::retry(
                "ReferencesNonexistentBroker",
                format!("The {class_kind} {class_name} names a broker that does not exist: {broker_name}"),
            )
        })?;
    Ok(Resolved {
        scope,
        class,
        plan,
        broker,
    })
}

/// The merged parameters (plan defaults, inline, from Secrets) and the same with every value
/// that came from a Secret replaced by `<redacted>` (what the status may show).
pub async fn parameters(
    client: &Client,
    namespace: &str,
    defaults: Option<&Value>,
    inline: Option<&Value>,
    from: &[ParametersFromSource],
) -> Result<Option<(Value, Value)>, Error> {
    let mut merged: Map<String, Value> = defaults
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(inline) = inline.and_then(Value::as_object) {
        merged.extend(inline.clone());
    }
    let mut redacted = merged.clone();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for source in from {
        let Some(reference) = &source.secret_key_ref else {
            continue;
        };
        let secret = secrets.get_opt(&reference.name).await?.ok_or_else(|| {
            Problem::retry(
                "ErrorWithParameters",
                format!(
                    "failed to get parameters from the Secret {namespace}/{}: it does not exist",
                    reference.name
                ),
            )
        })?;
        let raw = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
            .ok_or_else(|| {
                Problem::retry(
                    "ErrorWithParameters",
                    format!(
                        "the Secret {namespace}/{} has no key {:?}",
                        reference.name, reference.key
                    ),
                )
            })?;
        let values: Map<String, Value> = serde_json::from_slice(&raw.0).map_err(|e| {
            Problem::fail(
                "ErrorWithParameters",
                format!(
                    "the key {:?} of the Secret {namespace}/{} is not a JSON object: {e}",
                    reference.key, reference.name
                ),
            )
        })?;
        for (key, value) in values {
            if inline.and_then(|i| i.get(&key)).is_some() {
                return Err(Problem::fail(
                    "ErrorWithParameters",
                    format!(
                        "the parameter {key:?} is given both inline and in the Secret {}",
                        reference.name
                    ),
                )
                .into());
            }
            merged.insert(key.clone(), value);
            redacted.insert(key, json!("<redacted>"));
        }
    }
    if merged.is_empty() {
        return Ok(None);
    }
    Ok(Some((Value::Object(merged), Value::Object(redacted))))
}

/// Checks parameters against a plan's schema before anything is sent.
pub fn check_parameters(schema: Option<&Value>, parameters: Option<&Value>) -> Result<(), Problem> {
    let Some(schema) = schema else {
        return Ok(());
    };
    let empty = json!({});
    osb_client::validate_parameters(schema, parameters.unwrap_or(&empty)).map_err(|error| {
        Problem::fail(
            "ErrorWithParameters",
            format!("The parameters do not match the plan's schema: {error}"),
        )
    })
}

/// `namespace/name`: the key an object's backoff and logs go by.
pub fn key(object: &impl kube::ResourceExt) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// How long ago a status time was (None when unset or in the future).
pub fn elapsed_since(
    time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) -> Option<Duration> {
    let time = time?;
    Duration::try_from(k8s_openapi::jiff::Timestamp::now().duration_since(time.0)).ok()
}

/// The SHA-256 of the parameters as sent, hex (the status's `parameterChecksum`).
pub fn checksum(parameters: &Value) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        parameters.to_string().as_bytes(),
    );
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The OSB context of the Kubernetes profile.
pub async fn context(
    client: &Client,
    cluster_id: &str,
    namespace: &str,
    instance_name: &str,
) -> Result<Value, Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace_uid = namespaces
        .get_opt(namespace)
        .await?
        .and_then(|n| n.metadata.uid)
        .unwrap_or_default();
    Ok(json!({
        "platform": "kubernetes",
        "namespace": namespace,
        "namespace_uid": namespace_uid,
        "clusterid": cluster_id,
        "instance_name": instance_name,
    }))
}

/// The cluster's ID: the UID of `kube-system`, stable for the cluster's life (read once per
/// process, see `instance::Context::cluster_id`).
pub async fn cluster_id(client: &Client) -> Result<String, Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    Ok(namespaces
        .get_opt("kube-system")
        .await?
        .and_then(|n| n.metadata.uid)
        .unwrap_or_else(|| "service-catalog".into()))
}

pub fn identity(user: Option<&UserInfo>) -> Option<OriginatingIdentity> {
    let user = user?;
    Some(OriginatingIdentity::kubernetes(&KubernetesUser {
        username: user.username.clone(),
        uid: user.uid.clone(),
        groups: user.groups.clone(),
        extra: user.extra.clone(),
    }))
}

/// The HTTP status an OSB answer stands for, for the request metrics; `ok` names a success's.
pub fn code<T>(
    answer: &Result<T, osb_client::Error>,
    ok: impl FnOnce(&T) -> &'static str,
) -> String {
    match answer {
        Ok(value) => ok(value).to_owned(),
        Err(error) => error
            .status()
            .map_or_else(|| "none".into(), |s| s.to_string()),
    }
}

/// The status behind a create's or update's answer.
pub fn accepted_code(accepted: osb_client::Accepted) -> &'static str {
    match accepted {
        osb_client::Accepted::Ok => "200",
        osb_client::Accepted::Created => "201",
        osb_client::Accepted::Async => "202",
    }
}

/// The status behind a delete's answer.
pub fn deleted_code(deleted: &osb_client::Deleted) -> &'static str {
    match deleted {
        osb_client::Deleted::Done => "200",
        osb_client::Deleted::Gone => "410",
        osb_client::Deleted::Async { .. } => "202",
    }
}

/// Per-call options: asynchronous answers accepted or not, on behalf of the spec's user.
pub fn call_options(accepts_incomplete: bool, user: Option<&UserInfo>) -> osb_client::CallOptions {
    osb_client::CallOptions {
        accepts_incomplete,
        originating_identity: identity(user),
    }
}

/// A broker error as the original worded it.
pub fn broker_problem(reason: &'static str, operation: &str, error: &osb_client::Error) -> Problem {
    let message = format!("{operation} call failed: {error}");
    if error.is_retriable() {
        Problem::retry(reason, message)
    } else {
        Problem::fail(reason, message)
    }
}

/// A catalog object whose status carries conditions: instances and bindings.
pub trait WithStatus:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
    type Status: Clone + Default + PartialEq;
    fn status_mut(&mut self) -> &mut Option<Self::Status>;
    fn current(&self) -> Self::Status;
    fn conditions(status: &Self::Status) -> &[Condition];
}

impl WithStatus for ServiceInstance {
    type Status = catalog_api::ServiceInstanceStatus;
    fn status_mut(&mut self) -> &mut Option<Self::Status> {
        &mut self.status
    }
    fn current(&self) -> Self::Status {
        self.status.clone().unwrap_or_default()
    }
    fn conditions(status: &Self::Status) -> &[Condition] {
        &status.conditions
    }
}

impl WithStatus for catalog_api::ServiceBinding {
    type Status = catalog_api::ServiceBindingStatus;
    fn status_mut(&mut self) -> &mut Option<Self::Status> {
        &mut self.status
    }
    fn current(&self) -> Self::Status {
        self.status.clone().unwrap_or_default()
    }
    fn conditions(status: &Self::Status) -> &[Condition] {
        &status.conditions
    }
}

/// The condition that says what the object is doing: `Failed` when true, else `Ready`.
fn headline(conditions: &[Condition]) -> Option<&Condition> {
    conditions
        .iter()
        .find(|c| {
            c.type_ == catalog_api::CONDITION_FAILED && c.status == catalog_api::CONDITION_TRUE
        })
        .or_else(|| catalog_api::condition(conditions, catalog_api::CONDITION_READY))
}

/// Writes an object's status (conditional on its resourceVersion; nothing when unchanged) and
/// records an event when the headline condition's reason changed. Conditions never carry
/// credentials, so events do not either.
pub async fn write_status<K: WithStatus>(
    client: &Client,
    recorder: &kube::runtime::events::Recorder,
    object: &K,
    status: K::Status,
) -> Result<K, Error> {
    let before = object.current();
    if before == status {
        return Ok(object.clone());
    }
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let mut updated = object.clone();
    *updated.status_mut() = Some(status.clone());
    let written = api
        .replace_status(
            &object.name_any(),
            &kube::api::PostParams::default(),
            &updated,
        )
        .await?;
    let previous = headline(K::conditions(&before)).map(|c| c.reason.clone());
    if let Some(now) = headline(K::conditions(&status))
        && previous.as_deref() != Some(now.reason.as_str())
    {
        let warning = now.type_ == catalog_api::CONDITION_FAILED
            || now.reason.contains("Error")
            || now.reason.contains("Failed");
        let event = kube::runtime::events::Event {
            type_: if warning {
                kube::runtime::events::EventType::Warning
            } else {
                kube::runtime::events::EventType::Normal
            },
            reason: now.reason.clone(),
            note: Some(now.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, "could not record an event");
        }
    }
    Ok(written)
}
