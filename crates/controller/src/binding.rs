//! The binding reconciler: once the instance is ready, bind at the broker and write the
//! credentials (after the binding's secret transforms) into a Secret owned by the binding; on
//! delete, unbind and remove the Secret before letting the binding go.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use catalog_api::{
    CONDITION_FAILED, CONDITION_FALSE, CONDITION_READY, CONDITION_TRUE, OPERATION_BIND,
    OPERATION_UNBIND, PROVISIONED, STATUS_NOT_REQUIRED, STATUS_REQUIRED, STATUS_SUCCEEDED,
    SecretTransform, ServiceBinding, ServiceBindingPropertiesState, ServiceBindingStatus,
    ServiceInstance,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;

use kube::{Api, ResourceExt as _};
use osb_client::{BindRequest, Deleted};
use serde_json::{Map, Value, json};

use crate::instance::Context;
use crate::osb::{self, Error, Problem};

async fn write(
    ctx: &Context,
    binding: &ServiceBinding,
    status: ServiceBindingStatus,
) -> Result<ServiceBinding, Error> {
    osb::write_status(&ctx.client, &ctx.recorder, binding, status).await
}

pub async fn reconcile(binding: Arc<ServiceBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _busy = ctx.metrics.busy("ServiceBinding");
    let key = osb::key(&*binding);
    if let Some(wait) = ctx.backoff.remaining(&key) {
        return Ok(Action::requeue(wait));
    }
    let outcome = if binding.metadata.deletion_timestamp.is_some() {
        delete(&binding, &ctx).await
    } else {
        converge(&binding, &ctx).await
    };
    let label = if outcome.is_ok() { "success" } else { "error" };
    ctx.metrics
        .reconciles
        .with_label_values(&["ServiceBinding", label])
        .inc();
    match outcome {
        Ok(action) => {
            ctx.backoff.succeed(&key);
            Ok(action)
        }
        Err(Error::Problem(problem)) => report(&binding, &ctx, problem).await,
        Err(other) => Err(other),
    }
}

pub fn error_policy(binding: Arc<ServiceBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.fail(&osb::key(&*binding));
    tracing::warn!(binding = %osb::key(&*binding), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn report(
    binding: &ServiceBinding,
    ctx: &Context,
    problem: Problem,
) -> Result<Action, Error> {
    // The reconcile may have written the object since it was read (/reference, status).
    let api: Api<ServiceBinding> =
        Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
    let Some(latest) = api.get_opt(&binding.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let binding = &latest;
    let mut status = binding.status.clone().unwrap_or_default();
    osb::set_condition(
        &mut status.conditions,
        CONDITION_READY,
        CONDITION_FALSE,
        problem.reason,
        &problem.message,
    );
    tracing::warn!(binding = %osb::key(binding), reason = problem.reason, message = %problem.message, "binding not ready");
    if problem.retriable {
        write(ctx, binding, status).await?;
        return Ok(Action::requeue(ctx.backoff.fail(&osb::key(binding))));
    }
    osb::set_condition(
        &mut status.conditions,
        CONDITION_FAILED,
        CONDITION_TRUE,
        problem.reason,
        &problem.message,
    );
    if status.current_operation == OPERATION_BIND {
        status.unbind_status = STATUS_NOT_REQUIRED.into();
    }
    status.current_operation = String::new();
    status.operation_start_time = None;
    status.in_progress_properties = None;
    status.async_op_in_progress = false;
    status.reconciled_generation = binding.metadata.generation.unwrap_or(1);
    write(ctx, binding, status).await?;
    Ok(Action::await_change())
}

async fn instance_of(
    ctx: &Context,
    binding: &ServiceBinding,
) -> Result<Option<ServiceInstance>, Error> {
    let api: Api<ServiceInstance> =
        Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
    Ok(api.get_opt(&binding.spec.instance_ref.name).await?)
}

async fn converge(binding: &ServiceBinding, ctx: &Context) -> Result<Action, Error> {
    let status = binding.status.clone().unwrap_or_default();
    let generation = binding.metadata.generation.unwrap_or(1);
    if status.reconciled_generation == generation && status.current_operation.is_empty() {
        return Ok(Action::await_change());
    }
    let namespace = binding.namespace().unwrap_or_default();
    let Some(instance) = instance_of(ctx, binding).await? else {
        return Err(Problem::retry(
            "ReferencesNonexistentInstance",
            format!(
                "The binding references a ServiceInstance that does not exist: {namespace}/{}",
                binding.spec.instance_ref.name
            ),
        )
        .into());
    };
    let instance_status = instance.status.clone().unwrap_or_default();
    let instance_ready = catalog_api::condition(&instance_status.conditions, CONDITION_READY)
        .is_some_and(|c| c.status == CONDITION_TRUE);
    if instance_status.provision_status != PROVISIONED
        || !instance_ready
        || instance_status.async_op_in_progress
    {
        let mut status = status;
        osb::set_condition(
            &mut status.conditions,
            CONDITION_READY,
            CONDITION_FALSE,
            "ErrorInstanceNotReady",
            &format!(
                "The binding references a ServiceInstance which is not ready yet: {namespace}/{}",
                instance.name_any()
            ),
        );
        write(ctx, binding, status).await?;
        // The instance's changes wake the binding; this is only a safety net.
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let resolved = osb::resolve(&ctx.client, &instance).await?;
    if status.async_op_in_progress && status.current_operation == OPERATION_BIND {
        return poll(ctx, binding, &instance, &resolved, status).await;
    }
    let bindable = resolved
        .plan
        .data
        .pointer("/spec/bindable")
        .and_then(Value::as_bool)
        .or_else(|| {
            resolved
                .class
                .data
                .pointer("/spec/bindable")
                .and_then(Value::as_bool)
        })
        .unwrap_or(false);
    if !bindable {
        return Err(Problem::fail(
            "ErrorNonbindableServiceClass",
            format!(
                "The plan {} of the class {} is not bindable",
                resolved.plan_name(),
                resolved.class_name()
            ),
        )
        .into());
    }
    let parameters = osb::parameters(
        &ctx.client,
        &namespace,
        None,
        binding.spec.parameters.as_ref(),
        &binding.spec.parameters_from,
    )
    .await?;
    let (sent, redacted) = match &parameters {
        Some((sent, redacted)) => (Some(sent), Some(redacted)),
        None => (None, None),
    };
    osb::check_parameters(
        resolved
            .plan
            .data
            .pointer("/spec/serviceBindingCreateParameterSchema"),
        sent,
    )?;

    let mut status = status;
    let in_progress = ServiceBindingPropertiesState {
        parameters: redacted.cloned(),
        parameter_checksum: sent.map(osb::checksum).unwrap_or_default(),
        user_info: binding.spec.user_info.clone(),
    };
    if status.current_operation != OPERATION_BIND
        || status.in_progress_properties.as_ref() != Some(&in_progress)
    {
        status.current_operation = OPERATION_BIND.into();
        status.operation_start_time = Some(osb::now());
        status.in_progress_properties = Some(in_progress);
        status.unbind_status = STATUS_REQUIRED.into();
        osb::set_condition(
            &mut status.conditions,
            CONDITION_READY,
            CONDITION_FALSE,
            "Binding",
            "The binding is being created",
        );
    }
    let binding = &write(ctx, binding, status.clone()).await?;
    let client = resolved
        .client(&ctx.client, ctx.settings.osb_timeout)
        .await?;
    let options = osb::call_options(true, binding.spec.user_info.as_ref());
    let request = BindRequest {
        service_id: resolved.service_id(),
        plan_id: resolved.plan_id(),
        context: Some(
            osb::context(
                &ctx.client,
                &ctx.cluster_id().await?,
                &namespace,
                &instance.name_any(),
            )
            .await?,
        ),
        parameters: sent.cloned(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let answer = client
        .bind(
            &instance.spec.external_id,
            &binding.spec.external_id,
            &request,
            &options,
        )
        .await;
    let code = osb::code(&answer, |r| osb::accepted_code(r.accepted));
    ctx.metrics.observe_osb(
        &resolved.broker.name_any(),
        "Bind",
        &code,
        started.elapsed(),
    );
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            if error.requires_orphan_mitigation() {
                unbind_orphan(
                    &client,
                    binding,
                    &instance,
                    &resolved,
                    "bind failed ambiguously",
                )
                .await;
            }
            return Err(osb::broker_problem("BindCallFailed", "Bind", &error).into());
        }
    };
    if response.accepted == osb_client::Accepted::Async {
        status.async_op_in_progress = true;
        status.last_operation = response.body.operation.clone();
        osb::set_condition(
            &mut status.conditions,
            CONDITION_READY,
            CONDITION_FALSE,
            "Binding",
            "The binding is being created asynchronously",
        );
        write(ctx, binding, status).await?;
        return Ok(Action::requeue(ctx.poll_after(None)));
    }
    let credentials = response.body.credentials.clone().unwrap_or_default();
    inject(ctx, binding, status, credentials).await
}

/// Orphan mitigation for a bind: the broker may have made what it did not report, so unbind.
async fn unbind_orphan(
    client: &osb_client::Client,
    binding: &ServiceBinding,
    instance: &ServiceInstance,
    resolved: &osb::Resolved,
    why: &str,
) {
    let unbound = client
        .unbind(
            &instance.spec.external_id,
            &binding.spec.external_id,
            &resolved.service_id(),
            &resolved.plan_id(),
            &osb::call_options(true, binding.spec.user_info.as_ref()),
        )
        .await;
    tracing::warn!(binding = %osb::key(binding), ?unbound, why, "unbound to mitigate an orphan");
}

/// Writes the credentials into the Secret and marks the binding ready.
async fn inject(
    ctx: &Context,
    binding: &ServiceBinding,
    mut status: ServiceBindingStatus,
    credentials: Map<String, Value>,
) -> Result<Action, Error> {
    let namespace = binding.namespace().unwrap_or_default();
    let data = transform(
        ctx,
        &namespace,
        credentials,
        &binding.spec.secret_transforms,
    )
    .await?;
    write_secret(ctx, binding, data).await?;
    status.last_operation = None;
    status.external_properties = status.in_progress_properties.take();
    status.current_operation = String::new();
    status.operation_start_time = None;
    status.async_op_in_progress = false;
    status.reconciled_generation = binding.metadata.generation.unwrap_or(1);
    status.conditions.retain(|c| c.type_ != CONDITION_FAILED);
    osb::set_condition(
        &mut status.conditions,
        CONDITION_READY,
        CONDITION_TRUE,
        "InjectedBindResult",
        "Injected bind result",
    );
    write(ctx, binding, status).await?;
    Ok(Action::await_change())
}

/// Polls an asynchronous bind; once it succeeded, fetches the credentials (the spec's way) and
/// injects them.
async fn poll(
    ctx: &Context,
    binding: &ServiceBinding,
    instance: &ServiceInstance,
    resolved: &osb::Resolved,
    mut status: ServiceBindingStatus,
) -> Result<Action, Error> {
    let client = resolved
        .client(&ctx.client, ctx.settings.osb_timeout)
        .await?;
    let limit = resolved
        .plan
        .data
        .pointer("/spec/maximumPollingDuration")
        .and_then(Value::as_u64)
        .map(std::time::Duration::from_secs);
    if let Some(limit) = limit
        && osb::elapsed_since(status.operation_start_time.as_ref()).is_some_and(|e| e > limit)
    {
        // Past the plan's maximum polling duration the bind counts as failed; the broker may
        // still finish it, so unbind (orphan mitigation) before saying so.
        status.async_op_in_progress = false;
        status.last_operation = None;
        write(ctx, binding, status).await?;
        let why = "bind polled past the plan's maximum polling duration";
        unbind_orphan(&client, binding, instance, resolved, why).await;
        return Err(Problem::fail(
            "ErrorMaximumPollingDurationExceeded",
            format!(
                "Bind did not finish within the plan's maximum polling duration ({}s)",
                limit.as_secs()
            ),
        )
        .into());
    }
    let request = osb_client::LastOperationRequest {
        service_id: Some(resolved.service_id()),
        plan_id: Some(resolved.plan_id()),
        operation: status.last_operation.clone(),
    };
    let last = client
        .binding_last_operation(
            &instance.spec.external_id,
            &binding.spec.external_id,
            &request,
        )
        .await
        .map_err(|error| {
            osb::broker_problem("ErrorPollingLastOperation", "last_operation", &error)
        })?;
    let description = last.body.description.clone().unwrap_or_default();
    match last.body.state {
        osb_client::OperationState::InProgress => {
            Ok(Action::requeue(ctx.poll_after(last.retry_after)))
        }
        osb_client::OperationState::Failed => Err(Problem::fail(
            "BindCallFailed",
            format!("Bind failed at the broker: {description}"),
        )
        .into()),
        osb_client::OperationState::Succeeded => {
            let fetched = client
                .fetch_binding(
                    &instance.spec.external_id,
                    &binding.spec.external_id,
                    Some(&resolved.service_id()),
                    Some(&resolved.plan_id()),
                )
                .await
                .map_err(|error| {
                    osb::broker_problem("ErrorFetchingBinding", "FetchBinding", &error)
                })?;
            status.async_op_in_progress = false;
            inject(
                ctx,
                binding,
                status,
                fetched.credentials.unwrap_or_default(),
            )
            .await
        }
    }
}

/// Credentials as Secret data: strings as they are, anything else as JSON.
fn as_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// Applies the binding's secret transforms, in order, to the credentials.
async fn transform(
    ctx: &Context,
    namespace: &str,
    credentials: Map<String, Value>,
    transforms: &[SecretTransform],
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let mut data: BTreeMap<String, Vec<u8>> = credentials
        .iter()
        .map(|(k, v)| (k.clone(), as_bytes(v)))
        .collect();
    let document = Value::Object(credentials);
    for transform in transforms {
        if let Some(rename) = &transform.rename_key
            && let Some(value) = data.remove(&rename.from)
        {
            data.insert(rename.to.clone(), value);
        }
        if let Some(add) = &transform.add_key {
            let value = if let Some(path) = &add.json_path_expression {
                json_path(&document, path).ok_or_else(|| {
                    Problem::fail(
                        "ErrorSecretTransform",
                        format!("the JSONPath {path:?} finds nothing in the credentials"),
                    )
                })?
            } else if let Some(text) = &add.string_value {
                text.clone().into_bytes()
            } else {
                add.value.as_ref().map(|b| b.0.clone()).unwrap_or_default()
            };
            data.insert(add.key.clone(), value);
        }
        if let Some(from) = &transform.add_keys_from
            && let Some(reference) = &from.secret_ref
        {
            // Only the binding's own namespace (the API server refuses others too): the
            // controller's rights must not carry another namespace's Secret to this one.
            if !reference.namespace.is_empty() && reference.namespace != namespace {
                return Err(Problem::fail(
                    "ErrorSecretTransform",
                    format!(
                        "keys may only be added from Secrets in the binding's namespace {namespace}, not {}",
                        reference.namespace
                    ),
                )
                .into());
            }
            let source_namespace = namespace;
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), source_namespace);
            let secret = secrets.get_opt(&reference.name).await?.ok_or_else(|| {
                Problem::retry(
                    "ErrorSecretTransform",
                    format!(
                        "the Secret {source_namespace}/{} to add keys from does not exist",
                        reference.name
                    ),
                )
            })?;
            for (k, v) in secret.data.unwrap_or_default() {
                data.insert(k, v.0);
            }
        }
        if let Some(remove) = &transform.remove_key {
            data.remove(&remove.key);
        }
    }
    Ok(data)
}

/// The subset of JSONPath the original's transforms used: `{.a.b}` pieces joined with literal
/// text, e.g. `{.host}:{.port}`.
fn json_path(document: &Value, expression: &str) -> Option<Vec<u8>> {
    let mut out = String::new();
    let mut rest = expression;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        let path = rest[start + 1..end].trim().trim_start_matches('.');
        let mut node = document;
        for segment in path.split('.').filter(|s| !s.is_empty()) {
            node = node.get(segment)?;
        }
        match node {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out.into_bytes())
}

async fn write_secret(
    ctx: &Context,
    binding: &ServiceBinding,
    data: BTreeMap<String, Vec<u8>>,
) -> Result<(), Error> {
    let namespace = binding.namespace().unwrap_or_default();
    let name = binding.spec.secret_name.clone();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let owner = OwnerReference {
        api_version: catalog_api::API_VERSION.into(),
        kind: "ServiceBinding".into(),
        name: binding.name_any(),
        uid: binding.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let data: BTreeMap<String, ByteString> =
        data.into_iter().map(|(k, v)| (k, ByteString(v))).collect();
    match secrets.get_opt(&name).await? {
        None => {
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
                "type": "Opaque",
            }))?;
            let secret = Secret {
                data: Some(data),
                ..secret
            };
            secrets.create(&PostParams::default(), &secret).await?;
        }
        Some(existing) => {
            let ours = existing
                .owner_references()
                .iter()
                .any(|o| o.uid == owner.uid && o.kind == "ServiceBinding");
            if !ours {
                return Err(Problem::fail("ErrorInjectingBindResult", format!("The Secret {namespace}/{name} already exists and does not belong to this binding")).into());
            }
            let mut updated = existing;
            updated.data = Some(data);
            secrets
                .replace(&name, &PostParams::default(), &updated)
                .await?;
        }
    }
    Ok(())
}

async fn delete(binding: &ServiceBinding, ctx: &Context) -> Result<Action, Error> {
    if !binding
        .finalizers()
        .iter()
        .any(|f| f == catalog_api::FINALIZER)
    {
        return Ok(Action::await_change());
    }
    let mut status = binding.status.clone().unwrap_or_default();
    if status.unbind_status == STATUS_REQUIRED
        && let Some(instance) = instance_of(ctx, binding).await?
    {
        match osb::resolve(&ctx.client, &instance).await {
            Ok(resolved) => {
                let client = resolved
                    .client(&ctx.client, ctx.settings.osb_timeout)
                    .await?;
                if status.async_op_in_progress && status.current_operation == OPERATION_UNBIND {
                    let request = osb_client::LastOperationRequest {
                        service_id: Some(resolved.service_id()),
                        plan_id: Some(resolved.plan_id()),
                        operation: status.last_operation.clone(),
                    };
                    match client
                        .binding_last_operation(
                            &instance.spec.external_id,
                            &binding.spec.external_id,
                            &request,
                        )
                        .await
                    {
                        Ok(last) if last.body.state == osb_client::OperationState::InProgress => {
                            return Ok(Action::requeue(ctx.poll_after(last.retry_after)));
                        }
                        Ok(last) if last.body.state == osb_client::OperationState::Failed => {
                            status.async_op_in_progress = false;
                            status.last_operation = None;
                            write(ctx, binding, status).await?;
                            return Err(Problem::retry(
                                "UnbindCallFailed",
                                format!(
                                    "Unbind failed at the broker: {}",
                                    last.body.description.unwrap_or_default()
                                ),
                            )
                            .into());
                        }
                        Ok(_) => return cleanup(ctx, binding, status).await,
                        Err(error) if error.is_gone() => {
                            return cleanup(ctx, binding, status).await;
                        }
                        Err(error) => {
                            return Err(osb::broker_problem(
                                "ErrorPollingLastOperation",
                                "last_operation",
                                &error,
                            )
                            .into());
                        }
                    }
                }
                let options = osb::call_options(true, binding.spec.user_info.as_ref());
                let started = std::time::Instant::now();
                let answer = client
                    .unbind(
                        &instance.spec.external_id,
                        &binding.spec.external_id,
                        &resolved.service_id(),
                        &resolved.plan_id(),
                        &options,
                    )
                    .await;
                let code = osb::code(&answer, osb::deleted_code);
                ctx.metrics.observe_osb(
                    &resolved.broker.name_any(),
                    "Unbind",
                    &code,
                    started.elapsed(),
                );
                match answer {
                    Err(error) => {
                        let mut problem = osb::broker_problem("UnbindCallFailed", "Unbind", &error);
                        problem.retriable = true;
                        return Err(problem.into());
                    }
                    Ok(Deleted::Async { operation }) => {
                        status.current_operation = OPERATION_UNBIND.into();
                        status.async_op_in_progress = true;
                        status.last_operation = operation;
                        status.operation_start_time = Some(osb::now());
                        osb::set_condition(
                            &mut status.conditions,
                            CONDITION_READY,
                            CONDITION_FALSE,
                            "Unbinding",
                            "The binding is being deleted asynchronously",
                        );
                        write(ctx, binding, status).await?;
                        return Ok(Action::requeue(ctx.poll_after(None)));
                    }
                    Ok(_) => {}
                }
            }
            Err(Error::Problem(problem)) => {
                tracing::warn!(binding = %osb::key(binding), %problem, "cannot unbind; letting the binding go");
            }
            Err(other) => return Err(other),
        }
    }
    cleanup(ctx, binding, status).await
}

/// After unbinding (or when there was nothing to unbind): the Secret, then the finalizer.
async fn cleanup(
    ctx: &Context,
    binding: &ServiceBinding,
    mut status: ServiceBindingStatus,
) -> Result<Action, Error> {
    let namespace = binding.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Some(secret) = secrets.get_opt(&binding.spec.secret_name).await?
        && secret
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == binding.uid().as_ref())
    {
        match secrets
            .delete(&binding.spec.secret_name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    status.unbind_status = STATUS_SUCCEEDED.into();
    status.async_op_in_progress = false;
    status.last_operation = None;
    status.current_operation = String::new();
    status.operation_start_time = None;
    status.in_progress_properties = None;
    status.external_properties = None;
    osb::set_condition(
        &mut status.conditions,
        CONDITION_READY,
        CONDITION_FALSE,
        "UnboundSuccessfully",
        "The binding was deleted successfully",
    );
    let binding = write(ctx, binding, status).await?;
    let remaining: Vec<String> = binding
        .finalizers()
        .iter()
        .filter(|f| *f != catalog_api::FINALIZER)
        .cloned()
        .collect();
    let api: Api<ServiceBinding> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch(
        &binding.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": remaining, "resourceVersion": binding.resource_version()}})),
    )
    .await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_templates_join_credential_fields() {
        let credentials = json!({"host": "db", "port": 3306, "nested": {"user": "u"}});
        assert_eq!(
            json_path(&credentials, "{.host}:{.port}"),
            Some(b"db:3306".to_vec())
        );
        assert_eq!(
            json_path(&credentials, "{.nested.user}"),
            Some(b"u".to_vec())
        );
        assert_eq!(json_path(&credentials, "{.missing}"), None);
    }
}
