//! `svcat describe`: one object in full, as a person reads it — where it stands and why, its
//! operations, parameters (Secret values never shown), the plan's parameter schema, related
//! objects, and recent events.

use std::fmt::Write as _;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

use crate::cli::{KindArg, Output, Scope};
use crate::error::{Error, Result};
use crate::get::{Names, find};
use crate::objects::{
    Target, broker_name, external_name, is_namespaced, kube_name, namespace, plan_class,
    status_message, status_word, text,
};
use crate::output::{self, Table};

/// `svcat describe KIND NAME`.
pub async fn describe(
    target: &Target,
    kind: KindArg,
    name: &str,
    scope: Scope,
    output: Output,
) -> Result<String> {
    let objects = find(target, kind, Some(name), scope).await?;
    if matches!(output, Output::Json | Output::Yaml) {
        return output::objects(objects, true, output);
    }
    let mut out = String::new();
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&match kind {
            KindArg::Brokers => broker(target, object).await?,
            KindArg::Classes => class(target, object).await?,
            KindArg::Plans => plan(target, object).await?,
            KindArg::Instances => instance(target, object).await?,
            KindArg::Bindings => binding(target, object).await?,
        });
    }
    Ok(out)
}

/// `Label:` lines aligned as kubectl describe aligns them.
struct Fields(String);

impl Fields {
    fn new() -> Fields {
        Fields(String::new())
    }
    fn field(&mut self, label: &str, value: impl AsRef<str>) -> &mut Fields {
        let value = value.as_ref();
        let value = if value.is_empty() { "<none>" } else { value };
        let _ = writeln!(self.0, "{:<18}{value}", format!("{label}:"));
        self
    }
    fn optional(&mut self, label: &str, value: impl AsRef<str>) -> &mut Fields {
        if !value.as_ref().is_empty() {
            self.field(label, value);
        }
        self
    }
    fn section(&mut self, title: &str, body: &str) -> &mut Fields {
        let _ = writeln!(self.0, "{title}:");
        if body.trim().is_empty() {
            self.0.push_str("  <none>\n");
        } else {
            for line in body.lines() {
                let _ = writeln!(self.0, "  {line}");
            }
        }
        self
    }
    fn done(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

fn status_line(object: &Value) -> String {
    let message = status_message(object);
    if message.is_empty() {
        status_word(object)
    } else {
        format!("{} - {message}", status_word(object))
    }
}

fn conditions(object: &Value) -> String {
    let mut table = Table::new(vec![
        "TYPE",
        "STATUS",
        "REASON",
        "LAST TRANSITION",
        "MESSAGE",
    ]);
    for c in object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        table.row(
            ["type", "status", "reason", "lastTransitionTime", "message"]
                .iter()
                .map(|k| c.get(*k).and_then(Value::as_str).unwrap_or("").to_string())
                .collect(),
        );
    }
    if table.is_empty() {
        String::new()
    } else {
        table.render(false)
    }
}

/// YAML of a JSON value, for parameters and schemas.
fn yaml(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_else(|_| value.to_string())
}

fn parameters_from(object: &Value) -> String {
    object
        .pointer("/spec/parametersFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|source| {
            format!(
                "Secret {} key {} (values not shown)\n",
                text(source, "/secretKeyRef/name"),
                text(source, "/secretKeyRef/key")
            )
        })
        .collect()
}

/// Recent events about an object, oldest first; a line saying why when they cannot be read (no
/// right to list events, say) — the rest of the description is still worth showing.
async fn events(target: &Target, object: &Value) -> Result<String> {
    match object_events(target, object).await {
        Ok(table) => Ok(table),
        Err(error) => Ok(format!("<cannot list events: {error}>\n")),
    }
}

async fn object_events(target: &Target, object: &Value) -> Result<String> {
    let kind = text(object, "/kind");
    let name = kube_name(object);
    let selector = format!("regarding.name={name},regarding.kind={kind}");
    let list = if is_namespaced(object) {
        Api::<Event>::namespaced(target.client.clone(), namespace(object))
    } else {
        Api::<Event>::all(target.client.clone())
    }
    .list(&ListParams::default().fields(&selector))
    .await
    .map_err(|e| Error::from_kube(format!("events of {name}"), e))?;
    // Only this object's: an earlier object of the same name had another UID.
    let uid = text(object, "/metadata/uid");
    let mut events: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            let theirs = e.regarding.as_ref().and_then(|r| r.uid.as_deref());
            uid.is_empty() || theirs.is_none_or(|theirs| theirs == uid)
        })
        .collect();
    events.sort_by_key(event_time);
    let mut table = Table::new(vec!["TYPE", "REASON", "LAST SEEN", "MESSAGE"]);
    for event in events.iter().rev().take(10).rev() {
        table.row(vec![
            event.type_.clone().unwrap_or_default(),
            event.reason.clone().unwrap_or_default(),
            event_time(event),
            event.note.clone().unwrap_or_default(),
        ]);
    }
    Ok(if table.is_empty() {
        String::new()
    } else {
        table.render(false)
    })
}

fn event_time(event: &Event) -> String {
    let value = serde_json::to_value(event).unwrap_or(Value::Null);
    [
        "/series/lastObservedTime",
        "/deprecatedLastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .map(|p| text(&value, p))
    .find(|t| !t.is_empty())
    .map(to_the_second)
    .unwrap_or_default()
}

/// `2026-11-26T00:35:14.149275Z` → `2026-11-26T00:35:14Z`: what a person needs, fixed width.
fn to_the_second(time: &str) -> String {
    match time.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => time.to_string(),
    }
}

async fn broker(target: &Target, broker: &Value) -> Result<String> {
    let mut fields = Fields::new();
    fields
        .field("Name", kube_name(broker))
        .optional("Namespace", namespace(broker))
        .field("URL", text(broker, "/spec/url"))
        .field("Status", status_line(broker));
    let auth = ["basic", "bearer"]
        .iter()
        .find_map(|kind| {
            let name = text(broker, &format!("/spec/authInfo/{kind}/secretRef/name"));
            (!name.is_empty()).then(|| format!("{kind}, from Secret {name}"))
        })
        .unwrap_or_default();
    fields.field("Auth", auth);
    let behavior = text(broker, "/spec/relistBehavior");
    let duration = text(broker, "/spec/relistDuration");
    fields
        .field("Relist", format!("{behavior} {duration}").trim())
        .field(
            "Last Catalog",
            text(broker, "/status/lastCatalogRetrievalTime"),
        );
    let classes = target.list(KindArg::Classes, scope_of(broker)).await?;
    let own: String = classes
        .iter()
        .filter(|c| broker_name(c) == kube_name(broker) && namespace(c) == namespace(broker))
        .map(|c| format!("{}\n", external_name(c)))
        .collect();
    fields
        .section("Classes", &own)
        .section("Conditions", &conditions(broker))
        .section("Events", &events(target, broker).await?);
    Ok(fields.done())
}

fn scope_of(object: &Value) -> Scope {
    if is_namespaced(object) {
        Scope::Namespace
    } else {
        Scope::Cluster
    }
}

fn yes_no(object: &Value, pointer: &str) -> &'static str {
    if object.pointer(pointer).and_then(Value::as_bool) == Some(true) {
        "yes"
    } else {
        "no"
    }
}

async fn class(target: &Target, class: &Value) -> Result<String> {
    let mut fields = Fields::new();
    fields
        .field("Name", external_name(class))
        .field("Kubernetes Name", kube_name(class))
        .optional("Namespace", namespace(class))
        .field("Description", text(class, "/spec/description"))
        .field("Broker", broker_name(class))
        .field("Bindable", yes_no(class, "/spec/bindable"))
        .field("Plan Updatable", yes_no(class, "/spec/planUpdatable"));
    let list = |pointer: &str| {
        class
            .pointer(pointer)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    fields.field("Tags", list("/spec/tags"));
    if class.pointer("/status/removedFromBrokerCatalog") == Some(&Value::Bool(true)) {
        fields.field("Removed", "the broker no longer offers this class");
    }
    let plans = target.list(KindArg::Plans, scope_of(class)).await?;
    let mut table = Table::new(vec!["NAME", "FREE", "DESCRIPTION"]);
    for plan in plans
        .iter()
        .filter(|p| plan_class(p) == kube_name(class) && namespace(p) == namespace(class))
    {
        table.row(vec![
            external_name(plan).to_string(),
            yes_no(plan, "/spec/free").to_string(),
            text(plan, "/spec/description").to_string(),
        ]);
    }
    fields.section("Plans", &table.render(false));
    Ok(fields.done())
}

async fn plan(target: &Target, plan: &Value) -> Result<String> {
    let names = Names::load(target, &[KindArg::Classes]).await?;
    let mut fields = Fields::new();
    fields
        .field("Name", external_name(plan))
        .field("Kubernetes Name", kube_name(plan))
        .optional("Namespace", namespace(plan))
        .field("Description", text(plan, "/spec/description"))
        .field("Class", names.plan_class(plan))
        .field("Broker", broker_name(plan))
        .field("Free", yes_no(plan, "/spec/free"))
        .optional("Maintenance", text(plan, "/spec/maintenanceInfo/version"));
    if let Some(seconds) = plan
        .pointer("/spec/maximumPollingDuration")
        .and_then(Value::as_i64)
    {
        fields.field("Max Polling", format!("{seconds}s"));
    }
    for (title, pointer) in [
        (
            "Instance Create Parameter Schema",
            "/spec/instanceCreateParameterSchema",
        ),
        (
            "Instance Update Parameter Schema",
            "/spec/instanceUpdateParameterSchema",
        ),
        (
            "Binding Create Parameter Schema",
            "/spec/serviceBindingCreateParameterSchema",
        ),
    ] {
        let body = plan.pointer(pointer).map(yaml).unwrap_or_default();
        fields.section(title, &body);
    }
    Ok(fields.done())
}

async fn instance(target: &Target, instance: &Value) -> Result<String> {
    let names = Names::load(target, &[KindArg::Classes, KindArg::Plans]).await?;
    let mut fields = Fields::new();
    fields
        .field("Name", kube_name(instance))
        .field("Namespace", namespace(instance))
        .field("Status", status_line(instance))
        .field("Class", names.instance_class(instance))
        .field("Plan", names.instance_plan(instance))
        .optional("Dashboard URL", text(instance, "/status/dashboardURL"))
        .field("Operation", text(instance, "/status/currentOperation"))
        .optional("Last Operation", text(instance, "/status/lastOperation"))
        .field("Provisioned", text(instance, "/status/provisionStatus"))
        .optional("Maintenance", maintenance(target, instance).await?);
    if text(instance, "/status/deprovisionStatus") != "Required" {
        fields.field("Deprovision", text(instance, "/status/deprovisionStatus"));
    }
    // What the broker was last sent (secret values redacted by the controller), else the spec's.
    let parameters = instance
        .pointer("/status/externalProperties/parameters")
        .or_else(|| instance.pointer("/spec/parameters"))
        .map(yaml)
        .unwrap_or_default();
    fields
        .section("Parameters", &parameters)
        .section("Parameters From", &parameters_from(instance))
        .section("Conditions", &conditions(instance));
    let bindings = target.list(KindArg::Bindings, Scope::Namespace).await?;
    let mut table = Table::new(vec!["NAME", "STATUS", "SECRET"]);
    for binding in bindings.iter().filter(|b| {
        namespace(b) == namespace(instance)
            && text(b, "/spec/instanceRef/name") == kube_name(instance)
    }) {
        table.row(vec![
            kube_name(binding).to_string(),
            status_word(binding),
            text(binding, "/spec/secretName").to_string(),
        ]);
    }
    let bindings = if table.is_empty() {
        String::new()
    } else {
        table.render(false)
    };
    fields
        .section("Bindings", &bindings)
        .section("Events", &events(target, instance).await?);
    Ok(fields.done())
}

/// The maintenance version an instance runs, and the plan's when it is newer (an update — e.g.
/// `svcat touch instance` — brings the instance to it).
async fn maintenance(target: &Target, instance: &Value) -> Result<String> {
    let running = text(
        instance,
        "/status/externalProperties/maintenanceInfo/version",
    );
    let plan_name = [
        "/spec/clusterServicePlanRef/name",
        "/spec/servicePlanRef/name",
    ]
    .iter()
    .map(|p| text(instance, p))
    .find(|n| !n.is_empty())
    .unwrap_or_default();
    if running.is_empty() || plan_name.is_empty() {
        return Ok(running.to_string());
    }
    let plan = crate::objects::instance_plan(target, instance).await?;
    let offered = plan
        .as_ref()
        .map(|p| text(p, "/spec/maintenanceInfo/version"))
        .unwrap_or_default();
    Ok(if offered.is_empty() || offered == running {
        running.to_string()
    } else {
        format!(
            "{running} (the plan offers {offered}: `svcat touch instance {}` upgrades)",
            kube_name(instance)
        )
    })
}

async fn binding(target: &Target, binding: &Value) -> Result<String> {
    let mut fields = Fields::new();
    fields
        .field("Name", kube_name(binding))
        .field("Namespace", namespace(binding))
        .field("Status", status_line(binding))
        .field("Instance", text(binding, "/spec/instanceRef/name"))
        .field("Secret", text(binding, "/spec/secretName"))
        .field("Operation", text(binding, "/status/currentOperation"));
    let parameters = binding
        .pointer("/status/externalProperties/parameters")
        .or_else(|| binding.pointer("/spec/parameters"))
        .map(yaml)
        .unwrap_or_default();
    fields
        .section("Parameters", &parameters)
        .section("Parameters From", &parameters_from(binding))
        .section("Secret Keys", &secret_keys(target, binding).await)
        .section("Conditions", &conditions(binding))
        .section("Events", &events(target, binding).await?);
    Ok(fields.done())
}

/// The keys of a binding's Secret — never the values. Empty when it does not exist yet or the
/// user may not read it.
async fn secret_keys(target: &Target, binding: &Value) -> String {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(target.client.clone(), namespace(binding));
    match secrets.get_opt(text(binding, "/spec/secretName")).await {
        Ok(Some(secret)) => secret
            .data
            .unwrap_or_default()
            .keys()
            .map(|k| format!("{k}\n"))
            .collect(),
        _ => String::new(),
    }
}
