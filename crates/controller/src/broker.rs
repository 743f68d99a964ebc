//! The broker reconciler (ClusterServiceBroker and ServiceBroker alike): fetch the catalog when
//! the spec changed, a relist is due or the last attempt failed; turn it into classes and plans;
//! flag what disappeared and delete it once no instance uses it; report it all in the broker's
//! status; back off exponentially on failures; on deletion, remove the broker's classes and
//! plans (once its instances are gone) and then its finalizer.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog_api::{
    CONDITION_FALSE, CONDITION_READY, CONDITION_TRUE, CommonServiceBrokerSpec, Condition,
    RELIST_DURATION, ServiceBrokerStatus,
};
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource as _, ResourceExt as _};
use osb_client::{Auth, ClientConfig};
use serde_json::{Value, json};

use crate::catalog::{self, Scope};
use crate::metrics::Metrics;

/// The original's reasons.
pub const REASON_FETCHED: &str = "FetchedCatalog";
pub const REASON_ERROR_FETCHING: &str = "ErrorFetchingCatalog";
pub const REASON_ERROR_SYNCING: &str = "ErrorSyncingCatalog";
pub const REASON_ERROR_AUTH: &str = "ErrorGettingAuthCredentials";
pub const REASON_DELETION_BLOCKED: &str = "DeletionBlockedByInstances";
const MESSAGE_FETCHED: &str = "Successfully fetched catalog entries from broker.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{reason}: {message}")]
    Broker {
        reason: &'static str,
        message: String,
    },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("malformed object: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// The controller's settings that shape broker handling.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Relist interval for `relistBehavior: Duration` without `relistDuration`.
    pub default_relist: Duration,
    pub osb_timeout: Duration,
    /// Backoff after failures: doubling from `min`, at most `max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

pub struct Context {
    pub client: Client,
    pub scope: Scope,
    pub settings: BrokerSettings,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Per broker: consecutive failures and when the next attempt is due.
    backoff: crate::osb::Backoff,
}

pub fn resources(scope: Scope) -> [ApiResource; 3] {
    if scope.cluster {
        [
            ApiResource::erase::<catalog_api::ClusterServiceBroker>(&()),
            ApiResource::erase::<catalog_api::ClusterServiceClass>(&()),
            ApiResource::erase::<catalog_api::ClusterServicePlan>(&()),
        ]
    } else {
        [
            ApiResource::erase::<catalog_api::ServiceBroker>(&()),
            ApiResource::erase::<catalog_api::ServiceClass>(&()),
            ApiResource::erase::<catalog_api::ServicePlan>(&()),
        ]
    }
}

impl Context {
    pub fn new(
        client: Client,
        scope: Scope,
        settings: BrokerSettings,
        metrics: Metrics,
        recorder: Recorder,
    ) -> Self {
        let backoff = crate::osb::Backoff::new(settings.backoff_min, settings.backoff_max);
        Self {
            client,
            scope,
            settings,
            metrics,
            recorder,
            backoff,
        }
    }

    fn api(&self, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        }
    }

    fn key(&self, broker: &DynamicObject) -> String {
        format!(
            "{}/{}",
            broker.namespace().unwrap_or_default(),
            broker.name_any()
        )
    }
}

/// The parts of a broker the reconciler reads.
struct Broker {
    name: String,
    namespace: Option<String>,
    generation: i64,
    spec: CommonServiceBrokerSpec,
    auth: Value,
    status: ServiceBrokerStatus,
}

impl Broker {
    fn read(object: &DynamicObject) -> Result<Self, Error> {
        let spec_value = object.data.get("spec").cloned().unwrap_or(Value::Null);
        let status = match object.data.get("status") {
            Some(status) if !status.is_null() => serde_json::from_value(status.clone())?,
            _ => ServiceBrokerStatus::default(),
        };
        Ok(Self {
            name: object.name_any(),
            namespace: object.namespace(),
            generation: object.metadata.generation.unwrap_or(0),
            auth: spec_value.get("authInfo").cloned().unwrap_or(Value::Null),
            spec: serde_json::from_value(spec_value)?,
            status,
        })
    }

    fn ready(&self) -> bool {
        catalog_api::condition(&self.status.conditions, CONDITION_READY)
            .is_some_and(|c| c.status == CONDITION_TRUE)
    }

    fn relist_interval(&self, default: Duration) -> Option<Duration> {
        if self.spec.relist_behavior != RELIST_DURATION {
            return None;
        }
        Some(
            self.spec
                .relist_duration
                .as_deref()
                .and_then(|d| d.parse::<kube::core::Duration>().ok())
                .map(Duration::from)
                .unwrap_or(default),
        )
    }

    /// How long until the catalog is due again; zero when it is due now.
    fn due_in(&self, default_relist: Duration) -> Option<Duration> {
        if self.generation != self.status.reconciled_generation || !self.ready() {
            return Some(Duration::ZERO);
        }
        let interval = self.relist_interval(default_relist)?;
        let Some(last) = &self.status.last_catalog_retrieval_time else {
            return Some(Duration::ZERO);
        };
        let elapsed = Timestamp::now().duration_since(last.0);
        let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
        Some(interval.saturating_sub(elapsed))
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// The OSB client for a stored broker object (used by the instance and binding reconcilers).
pub async fn client_for(
    client: &Client,
    scope: Scope,
    timeout: Duration,
    object: &DynamicObject,
) -> Result<osb_client::Client, Error> {
    let broker = Broker::read(object)?;
    build_client(client, scope, timeout, &broker).await
}

async fn osb_client(ctx: &Context, broker: &Broker) -> Result<osb_client::Client, Error> {
    build_client(&ctx.client, ctx.scope, ctx.settings.osb_timeout, broker).await
}

/// The OSB client for a broker, with credentials from its auth Secret.
async fn build_client(
    client: &Client,
    scope: Scope,
    timeout: Duration,
    broker: &Broker,
) -> Result<osb_client::Client, Error> {
    let auth_error = |message: String| Error::Broker {
        reason: REASON_ERROR_AUTH,
        message,
    };
    let mut config = ClientConfig::new(&broker.spec.url)
        .map_err(|e| auth_error(format!("the broker URL is unusable: {e}")))?
        .with_timeouts(Duration::from_secs(10), timeout)
        .with_insecure_skip_tls_verify(broker.spec.insecure_skip_tls_verify);
    if let Some(ca) = &broker.spec.ca_bundle {
        config = config.with_ca_bundle(ca.0.clone());
    }
    for method in ["basic", "bearer"] {
        let Some(reference) = broker.auth.get(method).and_then(|m| m.get("secretRef")) else {
            continue;
        };
        let name = reference
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let namespace = if scope.cluster {
            reference
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        } else {
            broker.namespace.clone().unwrap_or_default()
        };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let secret = secrets.get_opt(name).await?.ok_or_else(|| {
            auth_error(format!(
                "Error getting broker auth credentials: the secret {namespace}/{name} does not exist"
            ))
        })?;
        let missing = |key: &str| {
            auth_error(format!(
                "Error getting broker auth credentials: the secret {namespace}/{name} has no {key:?} key"
            ))
        };
        let auth = if method == "basic" {
            Auth::Basic {
                username: secret_value(&secret, "username").ok_or_else(|| missing("username"))?,
                password: secret_value(&secret, "password").ok_or_else(|| missing("password"))?,
            }
        } else {
            Auth::Bearer {
                token: secret_value(&secret, "token").ok_or_else(|| missing("token"))?,
            }
        };
        config = config.with_auth(auth);
    }
    osb_client::Client::new(config).map_err(|e| auth_error(e.to_string()))
}

/// Sets the Ready condition (keeping its transition time when its status does not change) and
/// writes the status if anything changed.
async fn write_status(
    ctx: &Context,
    object: &DynamicObject,
    broker: &Broker,
    ready: bool,
    reason: &str,
    message: &str,
    fetched: bool,
) -> Result<(), Error> {
    let mut status = broker.status.clone();
    let status_text = if ready {
        CONDITION_TRUE
    } else {
        CONDITION_FALSE
    };
    let previous = catalog_api::condition(&status.conditions, CONDITION_READY).cloned();
    let transition = match &previous {
        Some(p) if p.status == status_text => p.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    status.conditions.retain(|c| c.type_ != CONDITION_READY);
    status.conditions.push(Condition {
        type_: CONDITION_READY.into(),
        status: status_text.into(),
        last_transition_time: transition,
        reason: reason.into(),
        message: message.into(),
    });
    status.reconciled_generation = broker.generation;
    if fetched {
        status.last_catalog_retrieval_time = Some(Time(Timestamp::now()));
        status.operation_start_time = None;
    } else if status.operation_start_time.is_none() {
        status.operation_start_time = Some(Time(Timestamp::now()));
    }
    if status == broker.status {
        return Ok(());
    }
    let [brokers, _, _] = resources(ctx.scope);
    ctx.api(&brokers, broker.namespace.as_deref())
        .patch_status(
            &broker.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    let changed = previous.is_none_or(|p| p.reason != reason || p.status != status_text);
    if changed {
        let event = Event {
            type_: if ready {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: reason.into(),
            note: Some(message.chars().take(1000).collect()),
            action: "FetchCatalog".into(),
            secondary: None,
        };
        let reference = object.object_ref(&resources(ctx.scope)[0]);
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, broker = %broker.name, "could not record an event");
        }
    }
    Ok(())
}

/// The field selector for objects that belong to `broker`.
fn owned_by(scope: Scope, broker: &str) -> ListParams {
    ListParams::default().fields(&format!("spec.{}={broker}", scope.broker_field()))
}

/// Names of the classes and plans instances refer to (in the broker's scope).
async fn used(ctx: &Context, namespace: Option<&str>) -> Result<BTreeSet<String>, Error> {
    let instances = ApiResource::erase::<catalog_api::ServiceInstance>(&());
    let api = ctx.api(&instances, namespace);
    let (class_ref, plan_ref) = if ctx.scope.cluster {
        ("clusterServiceClassRef", "clusterServicePlanRef")
    } else {
        ("serviceClassRef", "servicePlanRef")
    };
    let mut names = BTreeSet::new();
    for instance in api.list(&ListParams::default()).await? {
        for field in [class_ref, plan_ref] {
            if let Some(name) = instance
                .data
                .pointer(&format!("/spec/{field}/name"))
                .and_then(Value::as_str)
            {
                names.insert(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// How many class or plan writes one sync has in flight.
const CREATE_CONCURRENCY: usize = 16;

/// Creates or updates one class or plan to match `object`; (writes, a conflicting name).
async fn write_one(
    api: &Api<DynamicObject>,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    object: &Value,
    current: Option<&DynamicObject>,
) -> Result<(usize, Option<String>), Error> {
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    let Some(current) = current else {
        let mut new: DynamicObject = serde_json::from_value(json!({
            "apiVersion": catalog_api::API_VERSION,
            "kind": kind,
            "metadata": object["metadata"], "spec": spec,
        }))?;
        new.metadata.namespace = namespace.map(str::to_owned);
        return match api.create(&PostParams::default(), &new).await {
            Ok(_) => Ok((1, None)),
            // Another broker already offers this ID: not ours to change.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok((0, Some(format!("{kind} {name}"))))
            }
            Err(error) => Err(error.into()),
        };
    };
    let mut writes = 0;
    if current.data.get("spec") != Some(&spec) {
        let mut updated = current.clone();
        updated.data["spec"] = spec;
        api.replace(name, &PostParams::default(), &updated).await?;
        writes += 1;
    }
    let removed = current
        .data
        .pointer("/status/removedFromBrokerCatalog")
        .and_then(Value::as_bool);
    if removed == Some(true) {
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"removedFromBrokerCatalog": false}})),
        )
        .await?;
        writes += 1;
    }
    Ok((writes, None))
}

/// Makes the stored classes and plans of the broker match `desired`; returns what it wrote.
async fn sync(ctx: &Context, broker: &Broker, desired: &catalog::Desired) -> Result<usize, Error> {
    let [_, class_resource, plan_resource] = resources(ctx.scope);
    let namespace = broker.namespace.as_deref();
    let classes = ctx.api(&class_resource, namespace);
    let plans = ctx.api(&plan_resource, namespace);
    let mut writes = 0;
    let mut in_use: Option<BTreeSet<String>> = None;
    let mut conflicts = Vec::new();
    // Classes before plans when adding; plans before classes when removing.
    for (api, kind, wanted) in [
        (&classes, &class_resource.kind, &desired.classes),
        (&plans, &plan_resource.kind, &desired.plans),
    ] {
        let existing: HashMap<String, DynamicObject> = api
            .list(&owned_by(ctx.scope, &broker.name))
            .await?
            .into_iter()
            .map(|o| (o.name_any(), o))
            .collect();
        // Independent objects: written CREATE_CONCURRENCY at a time (each job owns its data,
        // so the stream's futures are 'static).
        let jobs: Vec<_> = wanted
            .iter()
            .map(|(name, object)| {
                let (api, kind, namespace) = (api.clone(), kind.clone(), broker.namespace.clone());
                let (name, object) = (name.clone(), object.clone());
                let current = existing.get(&name).cloned();
                async move {
                    write_one(
                        &api,
                        &kind,
                        namespace.as_deref(),
                        &name,
                        &object,
                        current.as_ref(),
                    )
                    .await
                }
            })
            .collect();
        let outcomes: Vec<Result<(usize, Option<String>), Error>> =
            futures_util::stream::iter(jobs)
                .buffer_unordered(CREATE_CONCURRENCY)
                .collect()
                .await;
        for outcome in outcomes {
            let (written, conflict) = outcome?;
            writes += written;
            conflicts.extend(conflict);
        }
    }
    for (api, wanted) in [(&plans, &desired.plans), (&classes, &desired.classes)] {
        let gone: Vec<DynamicObject> = api
            .list(&owned_by(ctx.scope, &broker.name))
            .await?
            .into_iter()
            .filter(|o| !wanted.contains_key(&o.name_any()))
            .collect();
        for object in gone {
            let name = object.name_any();
            if object
                .data
                .pointer("/status/removedFromBrokerCatalog")
                .and_then(Value::as_bool)
                != Some(true)
            {
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": {"removedFromBrokerCatalog": true}})),
                )
                .await?;
                writes += 1;
            }
            let used = match &in_use {
                Some(used) => used,
                None => in_use.insert(used(ctx, namespace).await?),
            };
            if !used.contains(&name) {
                api.delete(&name, &DeleteParams::default()).await?;
                writes += 1;
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(Error::Broker {
            reason: REASON_ERROR_SYNCING,
            message: format!(
                "Error syncing catalog from broker: these IDs are already offered by another broker: {}",
                conflicts.join(", ")
            ),
        });
    }
    Ok(writes)
}

/// Deleting the broker: its classes and plans go once no instance uses them, then the broker.
async fn finalize(ctx: &Context, object: &DynamicObject, broker: &Broker) -> Result<Action, Error> {
    let finalizers = object.finalizers();
    if !finalizers.iter().any(|f| f == catalog_api::FINALIZER) {
        return Ok(Action::await_change());
    }
    let [brokers, class_resource, plan_resource] = resources(ctx.scope);
    let namespace = broker.namespace.as_deref();
    let used = used(ctx, namespace).await?;
    let mut blocked = Vec::new();
    for resource in [&plan_resource, &class_resource] {
        let api = ctx.api(resource, namespace);
        for owned in api.list(&owned_by(ctx.scope, &broker.name)).await? {
            let name = owned.name_any();
            if used.contains(&name) {
                blocked.push(name);
            } else {
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    if !blocked.is_empty() {
        let message = format!(
            "The broker is being deleted; instances still use its classes and plans ({})",
            blocked.join(", ")
        );
        write_status(
            ctx,
            object,
            broker,
            false,
            REASON_DELETION_BLOCKED,
            &message,
            false,
        )
        .await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let remaining: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != catalog_api::FINALIZER)
        .collect();
    ctx.api(&brokers, namespace)
        .patch(
            &broker.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {
                "finalizers": remaining,
                "resourceVersion": object.resource_version(),
            }})),
        )
        .await?;
    ctx.metrics.forget_broker(&broker.name);
    Ok(Action::await_change())
}

pub async fn reconcile(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let kind = ctx.scope.broker_kind();
    let _busy = ctx.metrics.busy(kind);
    let result = reconcile_broker(&object, &ctx).await;
    let outcome = if result.is_ok() { "success" } else { "error" };
    ctx.metrics
        .reconciles
        .with_label_values(&[kind, outcome])
        .inc();
    result
}

async fn reconcile_broker(object: &DynamicObject, ctx: &Context) -> Result<Action, Error> {
    let broker = Broker::read(object)?;
    if object.metadata.deletion_timestamp.is_some() {
        return finalize(ctx, object, &broker).await;
    }
    let key = ctx.key(object);
    if let Some(wait) = ctx.backoff.remaining(&key) {
        return Ok(Action::requeue(wait));
    }
    match broker.due_in(ctx.settings.default_relist) {
        None => return Ok(Action::await_change()),
        Some(wait) if !wait.is_zero() => return Ok(Action::requeue(wait)),
        Some(_) => {}
    }
    let span = tracing::info_span!("broker", broker = %broker.name, namespace = broker.namespace.as_deref().unwrap_or(""));
    let _entered = span.enter();
    let attempt = fetch_and_sync(ctx, &broker).await;
    match attempt {
        Ok((classes, plans)) => {
            ctx.backoff.succeed(&key);
            ctx.metrics.set_catalog_size(&broker.name, classes, plans);
            write_status(
                ctx,
                object,
                &broker,
                true,
                REASON_FETCHED,
                MESSAGE_FETCHED,
                true,
            )
            .await?;
            tracing::info!(classes, plans, "catalog synced");
            Ok(match broker.relist_interval(ctx.settings.default_relist) {
                Some(interval) => Action::requeue(interval),
                None => Action::await_change(),
            })
        }
        Err(Error::Broker { reason, message }) => {
            let delay = ctx.backoff.fail(&key);
            tracing::warn!(reason, %message, retry_in = ?delay, "catalog not synced");
            write_status(ctx, object, &broker, false, reason, &message, false).await?;
            Ok(Action::requeue(delay))
        }
        Err(other) => Err(other),
    }
}

/// Fetches, filters and syncs; (classes, plans) offered.
async fn fetch_and_sync(ctx: &Context, broker: &Broker) -> Result<(usize, usize), Error> {
    let client = osb_client(ctx, broker).await?;
    let started = Instant::now();
    let fetched = client.catalog().await;
    let code = crate::osb::code(&fetched, |_| "200");
    ctx.metrics
        .observe_osb(&broker.name, "GetCatalog", &code, started.elapsed());
    let catalog = fetched.map_err(|error| Error::Broker {
        reason: REASON_ERROR_FETCHING,
        message: format!("Error getting broker catalog: {error}"),
    })?;
    let desired = catalog::desired(
        ctx.scope,
        &broker.name,
        &catalog,
        broker.spec.catalog_restrictions.as_ref(),
    )
    .map_err(|error| Error::Broker {
        reason: REASON_ERROR_SYNCING,
        message: error.to_string(),
    })?;
    let writes = sync(ctx, broker, &desired)
        .await
        .map_err(|error| match error {
            Error::Broker { .. } => error,
            other => Error::Broker {
                reason: REASON_ERROR_SYNCING,
                message: format!("Error syncing catalog from broker: {other}"),
            },
        })?;
    tracing::debug!(writes, "catalog objects written");
    Ok((desired.classes.len(), desired.plans.len()))
}

/// Unexpected errors (the API server, not the broker): retried with the same backoff.
pub fn error_policy(object: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.fail(&ctx.key(&object));
    tracing::warn!(broker = %object.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
