//! Finding the class and plan a user means: by the broker's name for it or its Kubernetes name,
//! among cluster classes and the namespace's own. Two brokers offering the same name is reported
//! with the choices, never guessed.

use serde_json::{Map, Value};

use crate::cli::{KindArg, Scope};
use crate::error::{Error, Result};
use crate::objects::{
    Target, broker_name, external_name, is_namespaced, kube_name, namespace, plan_class,
};

/// A class and plan, and how the instance's spec should name them.
pub struct Choice {
    pub class: Value,
    pub plan: Value,
    /// The spec's plan reference fields.
    pub reference: Map<String, Value>,
}

fn usable_here<'a>(target: &'a Target) -> impl Fn(&&Value) -> bool + 'a {
    move |object| !is_namespaced(object) || namespace(object) == target.namespace
}

fn describe_choice(class: &Value) -> String {
    let scope = if is_namespaced(class) {
        format!("namespace {}", namespace(class))
    } else {
        "cluster".to_string()
    };
    format!(
        "{} from broker {} ({scope}, Kubernetes name {})",
        external_name(class),
        broker_name(class),
        kube_name(class)
    )
}

/// Resolves `--class` and `--plan`.
pub async fn class_and_plan(
    target: &Target,
    class_name: &str,
    plan_name: Option<&str>,
    scope: Scope,
) -> Result<Choice> {
    let here = Target {
        client: target.client.clone(),
        namespace: target.namespace.clone(),
        all_namespaces: false,
    };
    let mut classes = here.list(KindArg::Classes, scope).await?;
    // A class its broker no longer offers takes no new instances.
    classes.retain(|c| c.pointer("/status/removedFromBrokerCatalog") != Some(&Value::Bool(true)));
    let by_kube_name: Vec<&Value> = classes
        .iter()
        .filter(usable_here(target))
        .filter(|c| kube_name(c) == class_name)
        .collect();
    let by_external_name: Vec<&Value> = classes
        .iter()
        .filter(usable_here(target))
        .filter(|c| external_name(c) == class_name)
        .collect();
    let (class, named_externally) = match (by_kube_name.as_slice(), by_external_name.as_slice()) {
        ([class], _) => (*class, false),
        ([], [class]) => (*class, true),
        ([], []) => {
            return Err(Error::NotFound(format!(
                "class {class_name:?}: not found (`svcat marketplace` lists the classes)"
            )));
        }
        (kube, external) => {
            let choices: Vec<String> = kube
                .iter()
                .chain(external)
                .map(|c| format!("  {}", describe_choice(c)))
                .collect();
            return Err(Error::Invalid(format!(
                "class {class_name:?} is ambiguous; it could be:\n{}\nNarrow with --scope cluster|namespace, or give the Kubernetes name with --class.",
                choices.join("\n")
            )));
        }
    };
    let plans = here.list(KindArg::Plans, scope).await?;
    let own: Vec<&Value> = plans
        .iter()
        .filter(|p| plan_class(p) == kube_name(class) && namespace(p) == namespace(class))
        .filter(|p| p.pointer("/status/removedFromBrokerCatalog") != Some(&Value::Bool(true)))
        .collect();
    let names = || {
        own.iter()
            .map(|p| external_name(p))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if own.is_empty() {
        return Err(Error::NotFound(format!(
            "class {} has no plans available (its broker offers none, or they were removed)",
            external_name(class)
        )));
    }
    let plan = match plan_name {
        None if own.len() == 1 => own[0],
        None => {
            return Err(Error::Invalid(format!(
                "class {} has plans {}: choose one with --plan",
                external_name(class),
                names()
            )));
        }
        Some(wanted) => own
            .iter()
            .find(|p| kube_name(p) == wanted)
            .or_else(|| own.iter().find(|p| external_name(p) == wanted))
            .copied()
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "plan {wanted:?} of class {}: not found; its plans are {}",
                    external_name(class),
                    names()
                ))
            })?,
    };
    let (class_field, plan_field, class_value, plan_value) =
        match (is_namespaced(class), named_externally) {
            (false, true) => (
                "clusterServiceClassExternalName",
                "clusterServicePlanExternalName",
                external_name(class),
                external_name(plan),
            ),
            (false, false) => (
                "clusterServiceClassName",
                "clusterServicePlanName",
                kube_name(class),
                kube_name(plan),
            ),
            (true, true) => (
                "serviceClassExternalName",
                "servicePlanExternalName",
                external_name(class),
                external_name(plan),
            ),
            (true, false) => (
                "serviceClassName",
                "servicePlanName",
                kube_name(class),
                kube_name(plan),
            ),
        };
    let mut reference = Map::new();
    reference.insert(class_field.into(), class_value.into());
    reference.insert(plan_field.into(), plan_value.into());
    Ok(Choice {
        class: class.clone(),
        plan: plan.clone(),
        reference,
    })
}
