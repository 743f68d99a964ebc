//! The commands that change things: provision, deprovision, bind, unbind, register, deregister,
//! sync and touch. Each checks what it can before writing, writes one object, and (with
//! `--wait`) follows the controller until it is done.

use std::fmt::Write as _;

use base64::Engine as _;
use catalog_api::{ClusterServiceBroker, ServiceBinding, ServiceBroker, ServiceInstance};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Map, Value, json};

use crate::cli::{Bind, KindArg, Output, Provision, Register, Scope, WaitArgs, WaitFor};
use crate::error::{Error, Result};
use crate::objects::{Target, external_name, kube_name, namespace, status_word, text};
use crate::output;
use crate::params::Parameters;
use crate::resolve;
use crate::wait::wait;

/// An object the API returned, as svcat shows it (without managedFields, like `get`).
fn to_value(object: &impl serde::Serialize) -> Result<Value> {
    let mut value =
        serde_json::to_value(object).map_err(|e| Error::Local(format!("encoding: {e}")))?;
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    Ok(value)
}

fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Local(format!("encoding: {e}")))
}

/// The short summary printed after a change, or the object for `-o json|yaml`.
fn summary(object: &Value, lines: &[(&str, String)], output: Output) -> Result<String> {
    if matches!(output, Output::Json | Output::Yaml) {
        return output::structured(object, output);
    }
    let mut out = String::new();
    for (label, value) in lines {
        let _ = writeln!(out, "  {:<13}{value}", format!("{label}:"));
    }
    Ok(out)
}

/// The spec fields instances and bindings share: `parameters`, `parametersFrom`, `externalID`.
fn parameters_and_id(spec: &mut Map<String, Value>, parameters: &Parameters, id: Option<&str>) {
    if let Some(inline) = parameters.inline_value() {
        spec.insert("parameters".into(), inline);
    }
    let from = parameters.secret_refs();
    if !from.is_empty() {
        spec.insert("parametersFrom".into(), Value::Array(from));
    }
    if let Some(id) = id {
        spec.insert("externalID".into(), id.into());
    }
}

pub async fn provision(target: &Target, args: &Provision, output: Output) -> Result<String> {
    let choice =
        resolve::class_and_plan(target, &args.class, args.plan.as_deref(), args.scope).await?;
    let mut parameters = Parameters::parse(&args.params)?;
    parameters.check(
        choice.plan.pointer("/spec/instanceCreateParameterSchema"),
        &format!("plan {}", external_name(&choice.plan)),
    )?;
    let mut spec: Map<String, Value> = choice.reference.clone();
    parameters_and_id(&mut spec, &parameters, args.external_id.as_deref());
    let instance: ServiceInstance = from_value(json!({
        "apiVersion": catalog_api::API_VERSION, "kind": "ServiceInstance",
        "metadata": {"name": args.name, "namespace": target.namespace},
        "spec": spec,
    }))?;
    let instances: Api<ServiceInstance> = Api::namespaced(target.client.clone(), &target.namespace);
    let who = format!("instance {}/{}", target.namespace, args.name);
    let created = instances
        .create(&PostParams::default(), &instance)
        .await
        .map_err(|e| Error::from_kube(&who, e))?;
    let mut object = to_value(&created)?;
    if args.wait.wait
        && let Some(ready) = wait(
            target,
            KindArg::Instances,
            &args.name,
            WaitFor::Ready,
            args.wait.timeout,
        )
        .await?
    {
        object = ready;
    }
    let mut lines = vec![
        ("Name", args.name.clone()),
        ("Namespace", target.namespace.clone()),
        ("Status", status_word(&object)),
        ("Class", external_name(&choice.class).to_string()),
        ("Plan", external_name(&choice.plan).to_string()),
    ];
    if let Some(inline) = parameters.inline_value() {
        lines.push(("Parameters", inline.to_string()));
    }
    for (name, key) in &parameters.secrets {
        lines.push(("From Secret", format!("{name} key {key}")));
    }
    summary(&object, &lines, output)
}

/// Deletes an object and, with `--wait`, waits for the controller to finish with it.
async fn delete_and_wait(
    target: &Target,
    kind: KindArg,
    name: &str,
    wait_args: &WaitArgs,
) -> Result<String> {
    let noun = if kind == KindArg::Instances {
        "instance"
    } else {
        "binding"
    };
    let who = format!("{noun} {}/{name}", target.namespace);
    let resource = crate::objects::resources(kind, Scope::Namespace)
        .into_iter()
        .next()
        .ok_or_else(|| Error::Local("no such resource".into()))?;
    Api::<kube::api::DynamicObject>::namespaced_with(
        target.client.clone(),
        &target.namespace,
        &resource.api,
    )
    .delete(name, &DeleteParams::default())
    .await
    .map_err(|e| Error::from_kube(&who, e))?;
    if wait_args.wait {
        wait(target, kind, name, WaitFor::Deleted, wait_args.timeout).await?;
        let done = if kind == KindArg::Instances {
            "deprovisioned"
        } else {
            "unbound"
        };
        return Ok(format!("{who} {done} and deleted\n"));
    }
    Ok(format!("{who} marked for deletion\n"))
}

pub async fn deprovision(target: &Target, name: &str, wait_args: &WaitArgs) -> Result<String> {
    delete_and_wait(target, KindArg::Instances, name, wait_args).await
}

pub async fn bind(target: &Target, args: &Bind, output: Output) -> Result<String> {
    let instance = target.get(KindArg::Instances, &args.instance).await?;
    let name = args.name.clone().unwrap_or_else(|| args.instance.clone());
    let secret_name = args.secret_name.clone().unwrap_or_else(|| name.clone());
    let mut parameters = Parameters::parse(&args.params)?;
    // The plan's binding schema, when the instance's plan is known.
    if let Some(plan) = crate::objects::instance_plan(target, &instance).await? {
        parameters.check(
            plan.pointer("/spec/serviceBindingCreateParameterSchema"),
            &format!("plan {}", external_name(&plan)),
        )?;
    }
    let mut spec = Map::new();
    spec.insert("instanceRef".into(), json!({"name": args.instance}));
    spec.insert("secretName".into(), secret_name.clone().into());
    parameters_and_id(&mut spec, &parameters, args.external_id.as_deref());
    let binding: ServiceBinding = from_value(json!({
        "apiVersion": catalog_api::API_VERSION, "kind": "ServiceBinding",
        "metadata": {"name": name, "namespace": target.namespace},
        "spec": spec,
    }))?;
    let bindings: Api<ServiceBinding> = Api::namespaced(target.client.clone(), &target.namespace);
    let who = format!("binding {}/{name}", target.namespace);
    let created = bindings
        .create(&PostParams::default(), &binding)
        .await
        .map_err(|e| Error::from_kube(&who, e))?;
    let mut object = to_value(&created)?;
    if args.wait.wait
        && let Some(ready) = wait(
            target,
            KindArg::Bindings,
            &name,
            WaitFor::Ready,
            args.wait.timeout,
        )
        .await?
    {
        object = ready;
    }
    let lines = vec![
        ("Name", name.clone()),
        ("Namespace", target.namespace.clone()),
        ("Status", status_word(&object)),
        ("Instance", args.instance.clone()),
        ("Secret", secret_name),
    ];
    summary(&object, &lines, output)
}

pub async fn unbind(
    target: &Target,
    instance: Option<&str>,
    name: Option<&str>,
    wait_args: &WaitArgs,
) -> Result<String> {
    let names: Vec<String> = match (name, instance) {
        (Some(name), Some(instance)) => {
            // Both given: the binding must be the instance's, or nothing is deleted.
            let binding = target.get(KindArg::Bindings, name).await?;
            let bound_to = text(&binding, "/spec/instanceRef/name");
            if bound_to != instance {
                return Err(Error::Invalid(format!(
                    "binding {}/{name} belongs to instance {bound_to}, not {instance}",
                    target.namespace
                )));
            }
            vec![name.to_string()]
        }
        (Some(name), None) => vec![name.to_string()],
        (None, Some(instance)) => {
            // The instance must exist, so a typo is "not found" rather than "nothing to do".
            target.get(KindArg::Instances, instance).await?;
            let bindings: Api<ServiceBinding> =
                Api::namespaced(target.client.clone(), &target.namespace);
            let list = bindings
                .list(&ListParams::default())
                .await
                .map_err(|e| Error::from_kube("listing bindings", e))?;
            list.items
                .into_iter()
                .filter(|b| b.spec.instance_ref.name == instance)
                .filter_map(|b| b.metadata.name)
                .collect()
        }
        (None, None) => return Err(Error::Invalid("give an instance or --name".into())),
    };
    if names.is_empty() {
        return Ok(format!(
            "instance {}/{} has no bindings\n",
            target.namespace,
            instance.unwrap_or_default()
        ));
    }
    let mut out = String::new();
    for name in names {
        out.push_str(&delete_and_wait(target, KindArg::Bindings, &name, wait_args).await?);
    }
    Ok(out)
}

pub async fn register(target: &Target, args: &Register, output: Output) -> Result<String> {
    let mut spec = Map::new();
    spec.insert("url".into(), args.url.clone().into());
    let cluster = args.scope == Scope::Cluster;
    let secret_ref = |name: &str| {
        if cluster {
            json!({"secretRef": {"namespace": target.namespace, "name": name}})
        } else {
            json!({"secretRef": {"name": name}})
        }
    };
    if let Some(secret) = &args.basic_secret {
        spec.insert("authInfo".into(), json!({"basic": secret_ref(secret)}));
    }
    if let Some(secret) = &args.bearer_secret {
        spec.insert("authInfo".into(), json!({"bearer": secret_ref(secret)}));
    }
    if let Some(path) = &args.ca {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Invalid(format!("--ca {}: {e}", path.display())))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::Invalid(format!(
                "--ca {}: not a PEM certificate bundle",
                path.display()
            )));
        }
        spec.insert(
            "caBundle".into(),
            base64::engine::general_purpose::STANDARD.encode(pem).into(),
        );
    }
    if args.skip_tls {
        spec.insert("insecureSkipTLSVerify".into(), true.into());
    }
    if let Some(behavior) = &args.relist_behavior {
        spec.insert("relistBehavior".into(), behavior.clone().into());
    }
    if let Some(duration) = &args.relist_duration {
        spec.insert("relistDuration".into(), duration.clone().into());
    }
    if !args.class_restrictions.is_empty() || !args.plan_restrictions.is_empty() {
        spec.insert(
            "catalogRestrictions".into(),
            json!({"serviceClass": args.class_restrictions, "servicePlan": args.plan_restrictions}),
        );
    }
    let created = if cluster {
        let broker: ClusterServiceBroker = from_value(json!({
            "apiVersion": catalog_api::API_VERSION, "kind": "ClusterServiceBroker",
            "metadata": {"name": args.name}, "spec": spec}))?;
        let api: Api<ClusterServiceBroker> = Api::all(target.client.clone());
        to_value(
            &api.create(&PostParams::default(), &broker)
                .await
                .map_err(|e| Error::from_kube(format!("broker {}", args.name), e))?,
        )?
    } else {
        let broker: ServiceBroker = from_value(json!({
            "apiVersion": catalog_api::API_VERSION, "kind": "ServiceBroker",
            "metadata": {"name": args.name, "namespace": target.namespace}, "spec": spec}))?;
        let api: Api<ServiceBroker> = Api::namespaced(target.client.clone(), &target.namespace);
        to_value(
            &api.create(&PostParams::default(), &broker)
                .await
                .map_err(|e| {
                    Error::from_kube(format!("broker {}/{}", target.namespace, args.name), e)
                })?,
        )?
    };
    let mut object = created;
    if args.wait.wait {
        object = wait_for_broker(target, &args.name, args.scope, args.wait.timeout).await?;
    }
    let mut lines = vec![("Name", args.name.clone())];
    if !cluster {
        lines.push(("Namespace", target.namespace.clone()));
    }
    lines.push(("URL", args.url.clone()));
    lines.push(("Status", status_word(&object)));
    summary(&object, &lines, output)
}

/// Brokers are not waited on by `svcat wait`; `register --wait` polls until the catalog is in.
async fn wait_for_broker(
    target: &Target,
    name: &str,
    scope: Scope,
    timeout: std::time::Duration,
) -> Result<Value> {
    let started = std::time::Instant::now();
    loop {
        let brokers = target.list(KindArg::Brokers, scope).await?;
        let found = brokers.into_iter().find(|b| {
            kube_name(b) == name && (scope == Scope::Cluster || namespace(b) == target.namespace)
        });
        if let Some(broker) = &found {
            match status_word(broker).as_str() {
                "Ready" => return Ok(broker.clone()),
                "Failed" => {
                    return Err(Error::Failed(format!(
                        "broker {name} failed: {}",
                        crate::objects::status_message(broker)
                    )));
                }
                _ => {}
            }
        }
        if started.elapsed() >= timeout {
            return Err(match &found {
                Some(broker) => Error::TimedOut(format!(
                    "timed out waiting for broker {name}; it is {}: {}",
                    status_word(broker),
                    crate::objects::status_message(broker)
                )),
                None => Error::NotFound(format!("broker {name}: gone while waiting")),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

fn broker_api(target: &Target, scope: Scope) -> Api<kube::api::DynamicObject> {
    let resource = crate::objects::resources(KindArg::Brokers, scope)
        .into_iter()
        .next()
        .map(|r| r.api)
        .unwrap_or_else(|| kube::api::ApiResource::erase::<ClusterServiceBroker>(&()));
    if scope == Scope::Cluster {
        Api::all_with(target.client.clone(), &resource)
    } else {
        Api::namespaced_with(target.client.clone(), &target.namespace, &resource)
    }
}

pub async fn deregister(target: &Target, name: &str, scope: Scope) -> Result<String> {
    let who = if scope == Scope::Cluster {
        format!("broker {name}")
    } else {
        format!("broker {}/{name}", target.namespace)
    };
    broker_api(target, scope)
        .delete(name, &DeleteParams::default())
        .await
        .map_err(|e| Error::from_kube(&who, e))?;
    Ok(format!("{who} deregistered\n"))
}

/// Adds one to an integer field of a spec, with optimistic concurrency (retried on conflict).
async fn bump(
    api: &Api<kube::api::DynamicObject>,
    name: &str,
    field: &str,
    who: &str,
) -> Result<i64> {
    for _ in 0..5 {
        let object = api.get(name).await.map_err(|e| Error::from_kube(who, e))?;
        let mut value = to_value(&object)?;
        let next = value
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert(field.into(), next.into());
        }
        let updated: kube::api::DynamicObject = from_value(value)?;
        match api.replace(name, &PostParams::default(), &updated).await {
            Ok(_) => return Ok(next),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => return Err(Error::from_kube(who, e)),
        }
    }
    Err(Error::Local(format!(
        "{who}: changed by others five times while we tried; try again"
    )))
}

pub async fn sync_broker(target: &Target, name: &str, scope: Scope) -> Result<String> {
    let who = if scope == Scope::Cluster {
        format!("broker {name}")
    } else {
        format!("broker {}/{name}", target.namespace)
    };
    bump(&broker_api(target, scope), name, "relistRequests", &who).await?;
    Ok(format!("{who}: asked to fetch its catalog again\n"))
}

pub async fn touch_instance(target: &Target, name: &str) -> Result<String> {
    let who = format!("instance {}/{name}", target.namespace);
    let resource = kube::api::ApiResource::erase::<ServiceInstance>(&());
    let api = Api::namespaced_with(target.client.clone(), &target.namespace, &resource);
    let requests = bump(&api, name, "updateRequests", &who).await?;
    Ok(format!(
        "{who}: update requested (updateRequests {requests})\n"
    ))
}

/// `svcat version`: the client's version, and the server's unless `--client`.
pub async fn version(target: Option<&Target>) -> Result<String> {
    let mut out = format!("Client Version: v{}\n", env!("CARGO_PKG_VERSION"));
    if let Some(target) = target {
        let info = target
            .client
            .apiserver_version()
            .await
            .map_err(|e| Error::from_kube("server version", e))?;
        let _ = writeln!(out, "Server Version: {}", info.git_version);
    }
    Ok(out)
}
