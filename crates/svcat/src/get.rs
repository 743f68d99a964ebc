//! `svcat get` and `svcat marketplace`: what exists, as tables or as the objects themselves.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cli::{KindArg, Output, Scope};
use crate::error::{Error, Result};
use crate::objects::{
    Target, broker_name, external_name, is_namespaced, kube_name, namespace, plan_class,
    status_word, text,
};
use crate::output::{self, Table};

/// Names of classes and plans by Kubernetes name, to show the broker's names for them.
pub struct Names {
    names: BTreeMap<String, String>,
}

impl Names {
    pub async fn load(target: &Target, kinds: &[KindArg]) -> Result<Names> {
        let mut names = BTreeMap::new();
        for kind in kinds {
            for object in target.list(*kind, Scope::All).await? {
                names.insert(
                    kube_name(&object).to_string(),
                    external_name(&object).to_string(),
                );
            }
        }
        Ok(Names { names })
    }

    fn of<'a>(&'a self, kube_name: &'a str) -> &'a str {
        self.names
            .get(kube_name)
            .map(String::as_str)
            .unwrap_or(kube_name)
    }

    /// The class an instance is of, by the name users know.
    pub fn instance_class<'a>(&'a self, instance: &'a Value) -> &'a str {
        first_of(
            instance,
            &[
                "/spec/clusterServiceClassExternalName",
                "/spec/serviceClassExternalName",
            ],
        )
        .unwrap_or_else(|| {
            self.of(first_of(
                instance,
                &[
                    "/spec/clusterServiceClassRef/name",
                    "/spec/serviceClassRef/name",
                    "/spec/clusterServiceClassName",
                    "/spec/serviceClassName",
                    "/spec/clusterServiceClassExternalID",
                    "/spec/serviceClassExternalID",
                ],
            )
            .unwrap_or(""))
        })
    }

    /// The plan an instance is on, by the name users know.
    pub fn instance_plan<'a>(&'a self, instance: &'a Value) -> &'a str {
        first_of(
            instance,
            &[
                "/spec/clusterServicePlanExternalName",
                "/spec/servicePlanExternalName",
            ],
        )
        .unwrap_or_else(|| {
            self.of(first_of(
                instance,
                &[
                    "/spec/clusterServicePlanRef/name",
                    "/spec/servicePlanRef/name",
                    "/spec/clusterServicePlanName",
                    "/spec/servicePlanName",
                    "/spec/clusterServicePlanExternalID",
                    "/spec/servicePlanExternalID",
                ],
            )
            .unwrap_or(""))
        })
    }

    pub fn plan_class<'a>(&'a self, plan: &'a Value) -> &'a str {
        self.of(plan_class(plan))
    }
}

fn first_of<'a>(object: &'a Value, pointers: &[&str]) -> Option<&'a str> {
    pointers
        .iter()
        .map(|p| text(object, p))
        .find(|v| !v.is_empty())
}

/// Objects of a kind, narrowed to `name` when given: classes and plans match the broker's name
/// or the Kubernetes name, everything else the Kubernetes name.
pub async fn find(
    target: &Target,
    kind: KindArg,
    name: Option<&str>,
    scope: Scope,
) -> Result<Vec<Value>> {
    let mut objects = target.list(kind, scope).await?;
    if let Some(name) = name {
        objects.retain(|o| {
            kube_name(o) == name
                || (matches!(kind, KindArg::Classes | KindArg::Plans) && external_name(o) == name)
        });
        if objects.is_empty() {
            let noun = crate::objects::resources(kind, scope)
                .first()
                .map(|r| r.noun)
                .unwrap_or("object");
            return Err(Error::NotFound(match kind {
                KindArg::Instances | KindArg::Bindings if !target.all_namespaces => {
                    format!("{noun} {}/{name}: not found", target.namespace)
                }
                _ => format!("{noun} {name:?}: not found"),
            }));
        }
    }
    Ok(objects)
}

/// `svcat get KIND [NAME]`.
pub async fn get(
    target: &Target,
    kind: KindArg,
    name: Option<&str>,
    scope: Scope,
    output: Output,
) -> Result<String> {
    let objects = find(target, kind, name, scope).await?;
    if matches!(output, Output::Json | Output::Yaml) {
        return output::objects(objects, name.is_some(), output);
    }
    let wide = output == Output::Wide;
    let show_namespace = scope == Scope::Namespace || objects.iter().any(is_namespaced);
    let table = match kind {
        KindArg::Brokers => brokers(&objects, wide, show_namespace),
        KindArg::Classes => {
            let mut objects = objects;
            objects.sort_by(|a, b| {
                (namespace(a), external_name(a)).cmp(&(namespace(b), external_name(b)))
            });
            classes(&objects, wide, show_namespace)
        }
        KindArg::Plans => {
            let names = Names::load(target, &[KindArg::Classes]).await?;
            let mut objects = objects;
            objects.sort_by(|a, b| {
                (namespace(a), names.plan_class(a), external_name(a)).cmp(&(
                    namespace(b),
                    names.plan_class(b),
                    external_name(b),
                ))
            });
            plans(&objects, &names, wide, show_namespace)
        }
        KindArg::Instances => {
            let names = Names::load(target, &[KindArg::Classes, KindArg::Plans]).await?;
            instances(&objects, &names, wide)
        }
        KindArg::Bindings => bindings(&objects, wide),
    };
    if table.is_empty() {
        return Ok(nothing_found(target, kind));
    }
    Ok(table.render(output::stdout_color()))
}

fn nothing_found(target: &Target, kind: KindArg) -> String {
    let noun = format!("{kind:?}").to_lowercase();
    match kind {
        KindArg::Instances | KindArg::Bindings if !target.all_namespaces => {
            format!("No {noun} in namespace {}.\n", target.namespace)
        }
        _ => format!("No {noun} found.\n"),
    }
}

fn with_namespace(mut headers: Vec<&'static str>, show: bool) -> Vec<&'static str> {
    if show {
        headers.insert(1, "NAMESPACE");
    }
    headers
}

fn brokers(objects: &[Value], wide: bool, show_namespace: bool) -> Table {
    let mut headers = with_namespace(vec!["NAME", "URL", "STATUS"], show_namespace);
    if wide {
        headers.extend(["RELIST", "LAST CATALOG"]);
    }
    let mut table = Table::new(headers);
    for broker in objects {
        let mut row = vec![kube_name(broker).to_string()];
        if show_namespace {
            row.push(namespace(broker).to_string());
        }
        row.push(text(broker, "/spec/url").to_string());
        row.push(status_word(broker));
        if wide {
            let behavior = text(broker, "/spec/relistBehavior");
            row.push(match text(broker, "/spec/relistDuration") {
                "" => behavior.to_string(),
                every => format!("{behavior} {every}"),
            });
            row.push(text(broker, "/status/lastCatalogRetrievalTime").to_string());
        }
        table.row(row);
    }
    table
}

fn classes(objects: &[Value], wide: bool, show_namespace: bool) -> Table {
    let mut headers = with_namespace(vec!["NAME", "DESCRIPTION"], show_namespace);
    if wide {
        headers.extend(["KUBERNETES NAME", "BROKER"]);
    }
    let mut table = Table::new(headers);
    for class in objects {
        let mut row = vec![external_name(class).to_string()];
        if show_namespace {
            row.push(namespace(class).to_string());
        }
        row.push(text(class, "/spec/description").to_string());
        if wide {
            row.push(kube_name(class).to_string());
            row.push(broker_name(class).to_string());
        }
        table.row(row);
    }
    table
}

fn plans(objects: &[Value], names: &Names, wide: bool, show_namespace: bool) -> Table {
    let mut headers = with_namespace(vec!["NAME", "CLASS", "DESCRIPTION"], show_namespace);
    if wide {
        headers.extend(["FREE", "KUBERNETES NAME", "BROKER"]);
    }
    let mut table = Table::new(headers);
    for plan in objects {
        let mut row = vec![external_name(plan).to_string()];
        if show_namespace {
            row.push(namespace(plan).to_string());
        }
        row.push(names.plan_class(plan).to_string());
        row.push(text(plan, "/spec/description").to_string());
        if wide {
            let free = plan.pointer("/spec/free").and_then(Value::as_bool) == Some(true);
            row.push(if free { "yes" } else { "no" }.to_string());
            row.push(kube_name(plan).to_string());
            row.push(broker_name(plan).to_string());
        }
        table.row(row);
    }
    table
}

fn instances(objects: &[Value], names: &Names, wide: bool) -> Table {
    let mut headers = vec!["NAME", "NAMESPACE", "CLASS", "PLAN", "STATUS"];
    if wide {
        headers.extend(["OPERATION", "DASHBOARD"]);
    }
    let mut table = Table::new(headers);
    for instance in objects {
        let mut row = vec![
            kube_name(instance).to_string(),
            namespace(instance).to_string(),
            names.instance_class(instance).to_string(),
            names.instance_plan(instance).to_string(),
            status_word(instance),
        ];
        if wide {
            row.push(text(instance, "/status/currentOperation").to_string());
            row.push(text(instance, "/status/dashboardURL").to_string());
        }
        table.row(row);
    }
    table
}

fn bindings(objects: &[Value], wide: bool) -> Table {
    let mut headers = vec!["NAME", "NAMESPACE", "INSTANCE", "STATUS"];
    if wide {
        headers.extend(["SECRET", "OPERATION"]);
    }
    let mut table = Table::new(headers);
    for binding in objects {
        let mut row = vec![
            kube_name(binding).to_string(),
            namespace(binding).to_string(),
            text(binding, "/spec/instanceRef/name").to_string(),
            status_word(binding),
        ];
        if wide {
            row.push(text(binding, "/spec/secretName").to_string());
            row.push(text(binding, "/status/currentOperation").to_string());
        }
        table.row(row);
    }
    table
}

/// `svcat marketplace`: each class with its plans, per broker.
pub async fn marketplace(target: &Target, scope: Scope, output: Output) -> Result<String> {
    let classes = target.list(KindArg::Classes, scope).await?;
    let plans = target.list(KindArg::Plans, scope).await?;
    let offerings: Vec<(&Value, Vec<&Value>)> = {
        let mut offerings: Vec<(&Value, Vec<&Value>)> = classes
            .iter()
            .filter(|c| c.pointer("/status/removedFromBrokerCatalog") != Some(&Value::Bool(true)))
            .map(|class| {
                let mut own: Vec<&Value> = plans
                    .iter()
                    .filter(|p| {
                        plan_class(p) == kube_name(class)
                            && namespace(p) == namespace(class)
                            && p.pointer("/status/removedFromBrokerCatalog")
                                != Some(&Value::Bool(true))
                    })
                    .collect();
                own.sort_by_key(|p| external_name(p));
                (class, own)
            })
            .collect();
        offerings.sort_by(|(a, _), (b, _)| {
            (namespace(a), broker_name(a), external_name(a)).cmp(&(
                namespace(b),
                broker_name(b),
                external_name(b),
            ))
        });
        offerings
    };
    if matches!(output, Output::Json | Output::Yaml) {
        let list: Vec<Value> = offerings
            .iter()
            .map(|(class, plans)| {
                let mut offering = json!({
                    "class": external_name(class),
                    "description": text(class, "/spec/description"),
                    "broker": broker_name(class),
                    "plans": plans.iter().map(|p| json!({
                        "name": external_name(p),
                        "description": text(p, "/spec/description"),
                        "free": p.pointer("/spec/free").and_then(Value::as_bool).unwrap_or(false),
                    })).collect::<Vec<_>>(),
                });
                if is_namespaced(class) {
                    offering["namespace"] = namespace(class).into();
                }
                offering
            })
            .collect();
        return output::structured(&Value::Array(list), output);
    }
    if offerings.is_empty() {
        return Ok("No classes found: register a broker with `svcat register`.\n".into());
    }
    let show_namespace = offerings.iter().any(|(class, _)| is_namespaced(class));
    let wide = output == Output::Wide;
    let mut headers = vec!["CLASS", "PLANS", "DESCRIPTION", "BROKER"];
    if wide {
        headers = vec!["CLASS", "PLAN", "FREE", "DESCRIPTION", "BROKER"];
    }
    if show_namespace {
        headers.push("NAMESPACE");
    }
    let mut table = Table::new(headers);
    for (class, plans) in &offerings {
        if wide {
            for plan in plans {
                let free = plan.pointer("/spec/free").and_then(Value::as_bool) == Some(true);
                let mut row = vec![
                    external_name(class).to_string(),
                    external_name(plan).to_string(),
                    if free { "yes" } else { "no" }.to_string(),
                    text(plan, "/spec/description").to_string(),
                    broker_name(class).to_string(),
                ];
                if show_namespace {
                    row.push(namespace(class).to_string());
                }
                table.row(row);
            }
            continue;
        }
        let mut first = true;
        for plan in plans
            .iter()
            .map(|p| Some(*p))
            .chain(plans.is_empty().then_some(None))
        {
            let mut row = vec![
                if first { external_name(class) } else { "" }.to_string(),
                plan.map(external_name).unwrap_or("").to_string(),
                if first {
                    text(class, "/spec/description")
                } else {
                    ""
                }
                .to_string(),
                if first { broker_name(class) } else { "" }.to_string(),
            ];
            if show_namespace {
                row.push(if first { namespace(class) } else { "" }.to_string());
            }
            table.row(row);
            first = false;
        }
    }
    Ok(table.render(false))
}
