//! The instance reconciler: resolve the class and plan (recorded through `/reference`), check
//! the parameters against the plan's schema, provision (sync or async, polling
//! `last_operation`), update on a spec change, and deprovision on delete through the finalizer
//! once no binding is left. The status is written before every broker call, so a restart
//! resumes from what was stored and the same `instance_id` is always used.

use std::sync::Arc;
use std::time::Duration;

use catalog_api::{
    CONDITION_FAILED, CONDITION_FALSE, CONDITION_READY, CONDITION_TRUE, OPERATION_DEPROVISION,
    OPERATION_PROVISION, OPERATION_UPDATE, PROVISIONED, STATUS_NOT_REQUIRED, STATUS_REQUIRED,
    STATUS_SUCCEEDED, ServiceInstance, ServiceInstancePropertiesState, ServiceInstanceStatus,
};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Api, Client, ResourceExt as _};
use osb_client::{
    Accepted, Deleted, LastOperationRequest, OperationState, PreviousValues, ProvisionRequest,
    UpdateRequest,
};
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::osb::{self, Backoff, Error, Problem, Resolved};

/// How instances (and bindings) are polled and retried.
#[derive(Debug, Clone)]
pub struct OperationSettings {
    pub osb_timeout: Duration,
    /// The shortest and longest wait between `last_operation` polls (a broker's
    /// `Retry-After` is honoured within them).
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a provision or update is retried before it is `Failed`.
    pub retry_duration: Duration,
}

pub struct Context {
    pub client: Client,
    pub settings: OperationSettings,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub backoff: Backoff,
    /// The cluster's ID, read once (it does not change).
    cluster: tokio::sync::OnceCell<String>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: OperationSettings,
        metrics: Metrics,
        recorder: Recorder,
    ) -> Self {
        let backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
        Self {
            client,
            settings,
            metrics,
            recorder,
            backoff,
            cluster: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn cluster_id(&self) -> Result<String, Error> {
        self.cluster
            .get_or_try_init(|| osb::cluster_id(&self.client))
            .await
            .cloned()
    }

    pub fn poll_after(&self, retry_after: Option<Duration>) -> Duration {
        retry_after
            .unwrap_or(self.settings.poll_min)
            .clamp(self.settings.poll_min, self.settings.poll_max)
    }
}

/// Writes the status (conditionally on the object's resourceVersion) and records an event
/// when the Ready condition's reason changed.
async fn write(
    ctx: &Context,
    instance: &ServiceInstance,
    status: ServiceInstanceStatus,
) -> Result<ServiceInstance, Error> {
    osb::write_status(&ctx.client, &ctx.recorder, instance, status).await
}

fn properties(
    resolved: &Resolved,
    redacted: Option<&Value>,
    sent: Option<&Value>,
    instance: &ServiceInstance,
) -> ServiceInstancePropertiesState {
    let (cluster_name, cluster_id, name, id) = if resolved.scope.cluster {
        (
            resolved.plan_name(),
            resolved.plan_id(),
            String::new(),
            String::new(),
        )
    } else {
        (
            String::new(),
            String::new(),
            resolved.plan_name(),
            resolved.plan_id(),
        )
    };
    ServiceInstancePropertiesState {
        cluster_service_plan_external_name: cluster_name,
        cluster_service_plan_external_id: cluster_id,
        service_plan_external_name: name,
        service_plan_external_id: id,
        parameters: redacted.cloned(),
        parameter_checksum: sent.map(osb::checksum).unwrap_or_default(),
        user_info: instance.spec.user_info.clone(),
        maintenance_info: plan_maintenance_info(resolved),
    }
}

/// The plan's maintenance version, sent with every provision and update: an update (of any
/// kind, or a bare `updateRequests` bump) brings the instance to the plan's current version.
fn plan_maintenance_info(resolved: &Resolved) -> Option<catalog_api::MaintenanceInfo> {
    resolved
        .plan
        .data
        .pointer("/spec/maintenanceInfo")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
}

fn to_osb(info: &catalog_api::MaintenanceInfo) -> osb_client::MaintenanceInfo {
    osb_client::MaintenanceInfo {
        version: info.version.clone(),
        description: info.description.clone(),
    }
}

/// How long the plan lets an asynchronous operation be polled (`maximum_polling_duration`).
fn maximum_polling_duration(resolved: &Resolved) -> Option<Duration> {
    resolved
        .plan
        .data
        .pointer("/spec/maximumPollingDuration")
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
}

/// Ready=False while a provision (or, for a provisioned instance, an update) is under way.
fn in_progress_condition(status: &mut ServiceInstanceStatus, update: bool, manner: &str) {
    let (reason, verb) = if update {
        ("UpdatingInstance", "updated")
    } else {
        ("Provisioning", "provisioned")
    };
    osb::set_condition(
        &mut status.conditions,
        CONDITION_READY,
        CONDITION_FALSE,
        reason,
        &format!("The instance is being {verb}{manner}"),
    );
}

/// Ends the current operation in the status.
fn finish(status: &mut ServiceInstanceStatus) {
    status.current_operation = String::new();
    status.async_op_in_progress = false;
    status.last_operation = None;
    status.operation_start_time = None;
    status.in_progress_properties = None;
}

pub async fn reconcile(instance: Arc<ServiceInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _busy = ctx.metrics.busy("ServiceInstance");
    let result = reconcile_instance(&instance, &ctx).await;
    let outcome = if result.is_ok() { "success" } else { "error" };
    ctx.metrics
        .reconciles
        .with_label_values(&["ServiceInstance", outcome])
        .inc();
    result
}

pub fn error_policy(instance: Arc<ServiceInstance>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.fail(&osb::key(&*instance));
    tracing::warn!(instance = %osb::key(&*instance), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_instance(instance: &ServiceInstance, ctx: &Context) -> Result<Action, Error> {
    let key = osb::key(instance);
    if let Some(wait) = ctx.backoff.remaining(&key) {
        return Ok(Action::requeue(wait));
    }
    let outcome = if instance.metadata.deletion_timestamp.is_some() {
        delete(instance, ctx).await
    } else {
        converge(instance, ctx).await
    };
    match outcome {
        Ok(action) => {
            ctx.backoff.succeed(&key);
            Ok(action)
        }
        Err(Error::Problem(problem)) => report(instance, ctx, problem).await,
        Err(other) => Err(other),
    }
}

/// A problem becomes the status: retriable ones keep Ready false and retry with backoff; the
/// others are a `Failed` condition for this generation.
async fn report(
    instance: &ServiceInstance,
    ctx: &Context,
    problem: Problem,
) -> Result<Action, Error> {
    // The reconcile may have written the object since it was read (/reference, status).
    let api: Api<ServiceInstance> = Api::namespaced(
        ctx.client.clone(),
        &instance.namespace().unwrap_or_default(),
    );
    let Some(latest) = api.get_opt(&instance.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let instance = &latest;
    let mut status = instance.status.clone().unwrap_or_default();
    let generation = instance.metadata.generation.unwrap_or(1);
    osb::set_condition(
        &mut status.conditions,
        CONDITION_READY,
        CONDITION_FALSE,
        problem.reason,
        &problem.message,
    );
    tracing::warn!(instance = %osb::key(instance), reason = problem.reason, message = %problem.message, "instance not ready");
    // Retries of a provision or update stop once the operation is older than the
    // reconciliation retry duration (the original's rule); a deprovision never gives up.
    let started = osb::elapsed_since(status.operation_start_time.as_ref());
    let timed_out = status.current_operation != OPERATION_DEPROVISION
        && started.is_some_and(|elapsed| elapsed > ctx.settings.retry_duration);
    let problem = if problem.retriable && timed_out {
        let message = format!(
            "Stopped retrying after {:?}: {}",
            ctx.settings.retry_duration, problem.message
        );
        osb::set_condition(
            &mut status.conditions,
            CONDITION_READY,
            CONDITION_FALSE,
            "ErrorReconciliationRetryTimeout",
            &message,
        );
        Problem::fail("ErrorReconciliationRetryTimeout", message)
    } else {
        problem
    };
    if problem.retriable {
        write(ctx, instance, status).await?;
        return Ok(Action::requeue(ctx.backoff.fail(&osb::key(instance))));
    }
    osb::set_condition(
        &mut status.conditions,
        CONDITION_FAILED,
        CONDITION_TRUE,
        problem.reason,
        &problem.message,
    );
    if status.current_operation == OPERATION_PROVISION && !orphan_left(&status) {
        status.deprovision_status = STATUS_NOT_REQUIRED.into();
    }
    finish(&mut status);
    status.reconciled_generation = generation;
    status.observed_generation = generation;
    write(ctx, instance, status).await?;
    Ok(Action::await_change())
}

async fn set_references(
    ctx: &Context,
    instance: &ServiceInstance,
    resolved: &Resolved,
) -> Result<ServiceInstance, Error> {
    let spec = &instance.spec;
    let already = if resolved.scope.cluster {
        spec.cluster_service_class_ref.is_some() && spec.cluster_service_plan_ref.is_some()
    } else {
        spec.service_class_ref.is_some() && spec.service_plan_ref.is_some()
    };
    if already {
        return Ok(instance.clone());
    }
    let (class_field, plan_field) = if resolved.scope.cluster {
        ("clusterServiceClassRef", "clusterServicePlanRef")
    } else {
        ("serviceClassRef", "servicePlanRef")
    };
    let api: Api<ServiceInstance> = Api::namespaced(
        ctx.client.clone(),
        &instance.namespace().unwrap_or_default(),
    );
    let patch = json!({"spec": {class_field: {"name": resolved.class.name_any()},
                                plan_field: {"name": resolved.plan.name_any()}}});
    Ok(api
        .patch_subresource(
            "reference",
            &instance.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?)
}

async fn converge(instance: &ServiceInstance, ctx: &Context) -> Result<Action, Error> {
    let status = instance.status.clone().unwrap_or_default();
    let generation = instance.metadata.generation.unwrap_or(1);
    if status.async_op_in_progress {
        let resolved = osb::resolve(&ctx.client, instance).await?;
        return poll(instance, ctx, &resolved).await;
    }
    if orphan_left(&status) && status.current_operation.is_empty() {
        // A failed provision whose orphan mitigation the broker has not confirmed yet, retried
        // with its own backoff (recording each attempt must not trigger the next at once).
        let orphan_key = format!("{}/orphan", osb::key(instance));
        if let Some(wait) = ctx.backoff.remaining(&orphan_key) {
            return Ok(Action::requeue(wait));
        }
        let resolved = osb::resolve(&ctx.client, instance).await?;
        let client = resolved
            .client(&ctx.client, ctx.settings.osb_timeout)
            .await?;
        let why = "Orphan mitigation is retried until the broker confirms";
        if mitigate_orphan(ctx, instance, &resolved, &client, why).await {
            ctx.backoff.succeed(&orphan_key);
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(ctx.backoff.fail(&orphan_key)));
    }
    if status.reconciled_generation == generation && status.current_operation.is_empty() {
        return Ok(Action::await_change());
    }
    let resolved = osb::resolve(&ctx.client, instance).await?;
    let instance = &set_references(ctx, instance, &resolved).await?;
    let provisioned = status.provision_status == PROVISIONED;
    if !provisioned
        && resolved
            .plan
            .data
            .pointer("/status/removedFromBrokerCatalog")
            .and_then(Value::as_bool)
            == Some(true)
    {
        return Err(Problem::fail(
            "ReferencesRemovedServicePlan",
            format!(
                "The plan {} was removed from the broker's catalog; new instances cannot use it",
                resolved.plan_name()
            ),
        )
        .into());
    }
    let namespace = instance.namespace().unwrap_or_default();
    let defaults = resolved
        .plan
        .data
        .pointer("/spec/defaultProvisionParameters")
        .or_else(|| {
            resolved
                .class
                .data
                .pointer("/spec/defaultProvisionParameters")
        });
    let parameters = osb::parameters(
        &ctx.client,
        &namespace,
        defaults,
        instance.spec.parameters.as_ref(),
        &instance.spec.parameters_from,
    )
    .await?;
    let (sent, redacted) = match &parameters {
        Some((sent, redacted)) => (Some(sent), Some(redacted)),
        None => (None, None),
    };
    let schema_pointer = if provisioned {
        "/spec/instanceUpdateParameterSchema"
    } else {
        "/spec/instanceCreateParameterSchema"
    };
    osb::check_parameters(resolved.plan.data.pointer(schema_pointer), sent)?;
    let client = resolved
        .client(&ctx.client, ctx.settings.osb_timeout)
        .await?;
    let operation = if provisioned {
        OPERATION_UPDATE
    } else {
        OPERATION_PROVISION
    };

    // The intent goes into the status first: a crash after the call resumes from it.
    let mut status = status;
    let in_progress = properties(&resolved, redacted, sent, instance);
    if status.current_operation != operation
        || status.in_progress_properties.as_ref() != Some(&in_progress)
    {
        status.current_operation = operation.into();
        status.operation_start_time = Some(osb::now());
        status.in_progress_properties = Some(in_progress);
        status.observed_generation = generation;
        if !provisioned {
            status.deprovision_status = STATUS_REQUIRED.into();
        }
        in_progress_condition(&mut status, provisioned, "");
    }
    let instance = &write(ctx, instance, status.clone()).await?;
    let options = osb::call_options(true, instance.spec.user_info.as_ref());
    let context = osb::context(
        &ctx.client,
        &ctx.cluster_id().await?,
        &namespace,
        &instance.name_any(),
    )
    .await?;
    let external_id = &instance.spec.external_id;
    let started = std::time::Instant::now();
    let answer = if provisioned {
        let previous_plan = status.external_properties.as_ref().map(|p| {
            if resolved.scope.cluster {
                p.cluster_service_plan_external_id.clone()
            } else {
                p.service_plan_external_id.clone()
            }
        });
        let request = UpdateRequest {
            service_id: resolved.service_id(),
            plan_id: Some(resolved.plan_id()),
            context: Some(context),
            parameters: sent.cloned(),
            previous_values: Some(PreviousValues {
                service_id: Some(resolved.service_id()),
                plan_id: previous_plan,
                maintenance_info: status
                    .external_properties
                    .as_ref()
                    .and_then(|p| p.maintenance_info.as_ref())
                    .map(to_osb),
                ..Default::default()
            }),
            maintenance_info: plan_maintenance_info(&resolved).as_ref().map(to_osb),
            ..Default::default()
        };
        client.update(external_id, &request, &options).await
    } else {
        let request = ProvisionRequest {
            service_id: resolved.service_id(),
            plan_id: resolved.plan_id(),
            organization_guid: Some(ctx.cluster_id().await?),
            space_guid: Some(namespace.clone()),
            context: Some(context),
            parameters: sent.cloned(),
            maintenance_info: plan_maintenance_info(&resolved).as_ref().map(to_osb),
            ..Default::default()
        };
        client.provision(external_id, &request, &options).await
    };
    let code = osb::code(&answer, |r| osb::accepted_code(r.accepted));
    ctx.metrics.observe_osb(
        &resolved.broker.name_any(),
        operation,
        &code,
        started.elapsed(),
    );
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            if !provisioned && error.requires_orphan_mitigation() {
                mitigate_orphan(
                    ctx,
                    instance,
                    &resolved,
                    &client,
                    "The instance provision call failed with an ambiguous error",
                )
                .await;
            }
            let reason = if provisioned {
                "UpdateInstanceCallFailed"
            } else {
                "ProvisionCallFailed"
            };
            return Err(osb::broker_problem(reason, operation, &error).into());
        }
    };
    if let Some(url) = &response.body.dashboard_url {
        status.dashboard_url = Some(url.clone());
    }
    if response.accepted == Accepted::Async {
        status.async_op_in_progress = true;
        status.last_operation = response.body.operation.clone();
        in_progress_condition(&mut status, provisioned, " asynchronously");
        write(ctx, instance, status).await?;
        return Ok(Action::requeue(ctx.poll_after(None)));
    }
    succeed(ctx, instance, status, provisioned).await?;
    Ok(Action::await_change())
}

async fn succeed(
    ctx: &Context,
    instance: &ServiceInstance,
    mut status: ServiceInstanceStatus,
    update: bool,
) -> Result<(), Error> {
    let generation = instance.metadata.generation.unwrap_or(1);
    status.external_properties = status.in_progress_properties.clone();
    finish(&mut status);
    status.provision_status = PROVISIONED.into();
    status.reconciled_generation = generation;
    status.observed_generation = generation;
    status.orphan_mitigation_in_progress = false;
    status.conditions.retain(|c| c.type_ != CONDITION_FAILED);
    let (reason, message) = if update {
        (
            "InstanceUpdatedSuccessfully",
            "The instance was updated successfully",
        )
    } else {
        (
            "ProvisionedSuccessfully",
            "The instance was provisioned successfully",
        )
    };
    osb::set_condition(
        &mut status.conditions,
        CONDITION_READY,
        CONDITION_TRUE,
        reason,
        message,
    );
    write(ctx, instance, status).await?;
    Ok(())
}

/// The broker may have created what it failed to report: deprovision it (the spec's orphan
/// mitigation), recording that in the status.
///
/// Returns whether the broker confirmed. Until it does, the instance keeps its `OrphanMitigation`
/// condition, deprovisioning stays required, and the mitigation is retried with backoff.
async fn mitigate_orphan(
    ctx: &Context,
    instance: &ServiceInstance,
    resolved: &Resolved,
    client: &osb_client::Client,
    why: &str,
) -> bool {
    tracing::warn!(instance = %osb::key(instance), why, "deprovisioning to mitigate an orphan");
    let mut status = instance.status.clone().unwrap_or_default();
    status.orphan_mitigation_in_progress = true;
    osb::set_condition(
        &mut status.conditions,
        catalog_api::CONDITION_ORPHAN_MITIGATION,
        CONDITION_TRUE,
        "StartingInstanceOrphanMitigation",
        &format!(
            "{why}; attempting to deprovision the instance in order to mitigate an orphaned resource"
        ),
    );
    let written = write(ctx, instance, status).await;
    let result = client
        .deprovision(
            &instance.spec.external_id,
            &resolved.service_id(),
            &resolved.plan_id(),
            // An asynchronous plan deprovisions asynchronously: accepted (202) is enough here,
            // the broker owns finishing it.
            &osb::call_options(true, instance.spec.user_info.as_ref()),
        )
        .await;
    if let Ok(instance) = written {
        let mut status = instance.status.clone().unwrap_or_default();
        status.orphan_mitigation_in_progress = false;
        let (state, reason, message) = match &result {
            Ok(_) => (
                CONDITION_FALSE,
                "OrphanMitigationSuccessful",
                "Orphan mitigation was completed successfully".to_owned(),
            ),
            Err(error) => (
                CONDITION_TRUE,
                "OrphanMitigationFailed",
                format!("Orphan mitigation failed: {error}"),
            ),
        };
        osb::set_condition(
            &mut status.conditions,
            catalog_api::CONDITION_ORPHAN_MITIGATION,
            state,
            reason,
            &message,
        );
        if let Err(error) = write(ctx, &instance, status).await {
            tracing::warn!(%error, "could not record orphan mitigation");
        }
    }
    result.is_ok()
}

/// Whether an orphan mitigation is still owed: started or failed, for an instance that was
/// never provisioned.
fn orphan_left(status: &ServiceInstanceStatus) -> bool {
    status.provision_status != PROVISIONED
        && catalog_api::condition(&status.conditions, catalog_api::CONDITION_ORPHAN_MITIGATION)
            .is_some_and(|c| c.status == CONDITION_TRUE)
}

/// Polls the broker's `last_operation` for the operation in progress.
async fn poll(
    instance: &ServiceInstance,
    ctx: &Context,
    resolved: &Resolved,
) -> Result<Action, Error> {
    let mut status = instance.status.clone().unwrap_or_default();
    let client = resolved
        .client(&ctx.client, ctx.settings.osb_timeout)
        .await?;
    let request = LastOperationRequest {
        service_id: Some(resolved.service_id()),
        plan_id: Some(resolved.plan_id()),
        operation: status.last_operation.clone(),
    };
    let operation = status.current_operation.clone();
    if let Some(limit) = maximum_polling_duration(resolved)
        && osb::elapsed_since(status.operation_start_time.as_ref()).is_some_and(|e| e > limit)
    {
        return polled_too_long(instance, ctx, resolved, &client, status, limit).await;
    }
    let started = std::time::Instant::now();
    let answer = client
        .instance_last_operation(&instance.spec.external_id, &request)
        .await;
    let code = osb::code(&answer, |_| "200");
    ctx.metrics.observe_osb(
        &resolved.broker.name_any(),
        "LastOperation",
        &code,
        started.elapsed(),
    );
    let last = match answer {
        Ok(last) => last,
        // Gone while deprovisioning: done.
        Err(error) if error.is_gone() && operation == OPERATION_DEPROVISION => {
            return deprovisioned(instance, ctx, status).await;
        }
        Err(error) => {
            return Err(
                osb::broker_problem("ErrorPollingLastOperation", "last_operation", &error).into(),
            );
        }
    };
    let description = last.body.description.clone().unwrap_or_default();
    match last.body.state {
        OperationState::InProgress => {
            let message = if description.is_empty() {
                format!("{operation} is in progress at the broker")
            } else {
                format!("{operation} is in progress at the broker: {description}")
            };
            let reason = match operation.as_str() {
                OPERATION_DEPROVISION => "Deprovisioning",
                OPERATION_UPDATE => "UpdatingInstance",
                _ => "Provisioning",
            };
            osb::set_condition(
                &mut status.conditions,
                CONDITION_READY,
                CONDITION_FALSE,
                reason,
                &message,
            );
            write(ctx, instance, status).await?;
            Ok(Action::requeue(ctx.poll_after(last.retry_after)))
        }
        OperationState::Succeeded => match operation.as_str() {
            OPERATION_DEPROVISION => deprovisioned(instance, ctx, status).await,
            other => {
                succeed(ctx, instance, status, other == OPERATION_UPDATE).await?;
                Ok(Action::await_change())
            }
        },
        OperationState::Failed => {
            let reason = match operation.as_str() {
                OPERATION_DEPROVISION => "DeprovisionCallFailed",
                OPERATION_UPDATE => "UpdateInstanceCallFailed",
                _ => "ProvisionCallFailed",
            };
            if operation == OPERATION_DEPROVISION {
                // Deprovision is retried: the instance must not be forgotten while it exists.
                status.async_op_in_progress = false;
                status.last_operation = None;
                write(ctx, instance, status).await?;
                return Err(Problem::retry(
                    reason,
                    format!("Deprovision failed at the broker: {description}"),
                )
                .into());
            }
            Err(Problem::fail(
                reason,
                format!("{operation} failed at the broker: {description}"),
            )
            .into())
        }
    }
}

/// The plan's `maximum_polling_duration` ran out: the operation counts as failed. A provision
/// may have left something at the broker, so it is deprovisioned (orphan mitigation); a
/// deprovision is sent again, since the instance must not be forgotten while it may exist.
async fn polled_too_long(
    instance: &ServiceInstance,
    ctx: &Context,
    resolved: &Resolved,
    client: &osb_client::Client,
    mut status: ServiceInstanceStatus,
    limit: Duration,
) -> Result<Action, Error> {
    let operation = status.current_operation.clone();
    let message = format!(
        "{operation} did not finish within the plan's maximum polling duration ({}s)",
        limit.as_secs()
    );
    tracing::warn!(instance = %osb::key(instance), %message);
    status.async_op_in_progress = false;
    status.last_operation = None;
    if operation == OPERATION_DEPROVISION {
        // A fresh start time: the next deprovision gets the whole duration again.
        status.operation_start_time = Some(osb::now());
        write(ctx, instance, status).await?;
        return Err(Problem::retry("ErrorMaximumPollingDurationExceeded", message).into());
    }
    let instance = write(ctx, instance, status).await?;
    if operation == OPERATION_PROVISION {
        mitigate_orphan(ctx, &instance, resolved, client, &message).await;
    }
    Err(Problem::fail("ErrorMaximumPollingDurationExceeded", message).into())
}

async fn deprovisioned(
    instance: &ServiceInstance,
    ctx: &Context,
    mut status: ServiceInstanceStatus,
) -> Result<Action, Error> {
    finish(&mut status);
    status.deprovision_status = STATUS_SUCCEEDED.into();
    status.provision_status = catalog_api::NOT_PROVISIONED.into();
    osb::set_condition(
        &mut status.conditions,
        CONDITION_READY,
        CONDITION_FALSE,
        "DeprovisionedSuccessfully",
        "The instance was deprovisioned successfully",
    );
    let instance = write(ctx, instance, status).await?;
    remove_finalizer(ctx, &instance).await?;
    Ok(Action::await_change())
}

async fn remove_finalizer(ctx: &Context, instance: &ServiceInstance) -> Result<(), Error> {
    let remaining: Vec<String> = instance
        .finalizers()
        .iter()
        .filter(|f| *f != catalog_api::FINALIZER)
        .cloned()
        .collect();
    let api: Api<ServiceInstance> = Api::namespaced(
        ctx.client.clone(),
        &instance.namespace().unwrap_or_default(),
    );
    api.patch(
        &instance.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": remaining, "resourceVersion": instance.resource_version()}})),
    )
    .await?;
    Ok(())
}

/// Deletion: wait for bindings to go, deprovision if the broker may hold the instance, then
/// let the object go.
async fn delete(instance: &ServiceInstance, ctx: &Context) -> Result<Action, Error> {
    if !instance
        .finalizers()
        .iter()
        .any(|f| f == catalog_api::FINALIZER)
    {
        return Ok(Action::await_change());
    }
    let namespace = instance.namespace().unwrap_or_default();
    let bindings: Api<catalog_api::ServiceBinding> =
        Api::namespaced(ctx.client.clone(), &namespace);
    let left: Vec<String> = bindings
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|b| b.spec.instance_ref.name == instance.name_any())
        .map(|b| b.name_any())
        .collect();
    if !left.is_empty() {
        let mut status = instance.status.clone().unwrap_or_default();
        osb::set_condition(
            &mut status.conditions,
            CONDITION_READY,
            CONDITION_FALSE,
            "DeprovisionBlockedByExistingCredentials",
            &format!(
                "All associated ServiceBindings must be removed before this ServiceInstance can be deleted: {}",
                left.join(", ")
            ),
        );
        write(ctx, instance, status).await?;
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let mut status = instance.status.clone().unwrap_or_default();
    let required =
        status.deprovision_status == STATUS_REQUIRED || status.provision_status == PROVISIONED;
    if !required {
        remove_finalizer(ctx, instance).await?;
        return Ok(Action::await_change());
    }
    let resolved = match osb::resolve(&ctx.client, instance).await {
        Ok(resolved) => resolved,
        Err(Error::Problem(problem)) => {
            // Nothing to call: the class, plan or broker is gone.
            tracing::warn!(instance = %osb::key(instance), %problem, "cannot deprovision; letting the instance go");
            remove_finalizer(ctx, instance).await?;
            return Ok(Action::await_change());
        }
        Err(other) => return Err(other),
    };
    if status.async_op_in_progress && status.current_operation == OPERATION_DEPROVISION {
        return poll(instance, ctx, &resolved).await;
    }
    status.current_operation = OPERATION_DEPROVISION.into();
    status.async_op_in_progress = false;
    status.last_operation = None;
    status.operation_start_time = Some(osb::now());
    status.in_progress_properties = Some(properties(&resolved, None, None, instance));
    osb::set_condition(
        &mut status.conditions,
        CONDITION_READY,
        CONDITION_FALSE,
        "Deprovisioning",
        "The instance is being deprovisioned",
    );
    let instance = &write(ctx, instance, status.clone()).await?;
    let client = resolved
        .client(&ctx.client, ctx.settings.osb_timeout)
        .await?;
    let options = osb::call_options(true, instance.spec.user_info.as_ref());
    let started = std::time::Instant::now();
    let answer = client
        .deprovision(
            &instance.spec.external_id,
            &resolved.service_id(),
            &resolved.plan_id(),
            &options,
        )
        .await;
    let code = osb::code(&answer, osb::deleted_code);
    ctx.metrics.observe_osb(
        &resolved.broker.name_any(),
        OPERATION_DEPROVISION,
        &code,
        started.elapsed(),
    );
    match answer {
        Ok(Deleted::Done | Deleted::Gone) => deprovisioned(instance, ctx, status).await,
        Ok(Deleted::Async { operation }) => {
            status.async_op_in_progress = true;
            status.last_operation = operation;
            osb::set_condition(
                &mut status.conditions,
                CONDITION_READY,
                CONDITION_FALSE,
                "Deprovisioning",
                "The instance is being deprovisioned asynchronously",
            );
            write(ctx, instance, status).await?;
            Ok(Action::requeue(ctx.poll_after(None)))
        }
        Err(error) => {
            // Deprovision is always retried: giving up would orphan the instance.
            let mut problem =
                osb::broker_problem("DeprovisionCallFailed", OPERATION_DEPROVISION, &error);
            problem.retriable = true;
            Err(problem.into())
        }
    }
}
