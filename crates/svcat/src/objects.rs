//! Reading the catalog's objects, both scopes through one path: each kind is listed as JSON
//! (cluster-wide and namespaced variants alike) and read through a few accessors, so tables,
//! descriptions and name resolution never care which variant an object is.

use catalog_api::{
    ClusterServiceBroker, ClusterServiceClass, ClusterServicePlan, ServiceBinding, ServiceBroker,
    ServiceClass, ServiceInstance, ServicePlan,
};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::cli::{KindArg, Scope};
use crate::error::{Error, Result};

/// Where svcat looks: the client, the namespace, and whether to look in all namespaces.
pub struct Target {
    pub client: Client,
    pub namespace: String,
    pub all_namespaces: bool,
}

/// One resource of the catalog: its API resource and whether it is namespaced.
#[derive(Clone)]
pub struct Resource {
    pub api: ApiResource,
    pub namespaced: bool,
    /// The word for it in messages: "broker", "class", ...
    pub noun: &'static str,
}

impl Resource {
    fn of<K: kube::Resource<DynamicType = ()>>(noun: &'static str, namespaced: bool) -> Resource {
        Resource {
            api: ApiResource::erase::<K>(&()),
            namespaced,
            noun,
        }
    }
}

/// The resources of a kind within a scope (instances and bindings are always namespaced).
pub fn resources(kind: KindArg, scope: Scope) -> Vec<Resource> {
    let (cluster, namespaced) = match kind {
        KindArg::Brokers => (
            Resource::of::<ClusterServiceBroker>("broker", false),
            Resource::of::<ServiceBroker>("broker", true),
        ),
        KindArg::Classes => (
            Resource::of::<ClusterServiceClass>("class", false),
            Resource::of::<ServiceClass>("class", true),
        ),
        KindArg::Plans => (
            Resource::of::<ClusterServicePlan>("plan", false),
            Resource::of::<ServicePlan>("plan", true),
        ),
        KindArg::Instances => return vec![Resource::of::<ServiceInstance>("instance", true)],
        KindArg::Bindings => return vec![Resource::of::<ServiceBinding>("binding", true)],
    };
    let mut chosen = Vec::new();
    if scope.cluster() {
        chosen.push(cluster);
    }
    if scope.namespaced() {
        chosen.push(namespaced);
    }
    chosen
}

impl Target {
    pub fn api(&self, resource: &Resource) -> Api<DynamicObject> {
        if !resource.namespaced || self.all_namespaces {
            Api::all_with(self.client.clone(), &resource.api)
        } else {
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource.api)
        }
    }

    /// Every object of a kind within the scope, as JSON, sorted by namespace then name.
    pub async fn list(&self, kind: KindArg, scope: Scope) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        for resource in resources(kind, scope) {
            let list = match self.api(&resource).list(&ListParams::default()).await {
                Ok(list) => list,
                // Not served: the catalog is not installed, or (like the original's feature
                // gate) without its namespaced kinds. Looking at both scopes, skip that one.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    if scope == Scope::All && resource.namespaced && kind_has_both_scopes(kind) {
                        continue;
                    }
                    return Err(Error::Local(format!(
                        "the API server does not serve {} ({}): is the Service Catalog installed?",
                        resource.api.plural, resource.api.api_version
                    )));
                }
                Err(e) => {
                    return Err(Error::from_kube(
                        format!("listing {}", resource.api.plural),
                        e,
                    ));
                }
            };
            for item in list.items {
                all.push(plain(&item, &resource)?);
            }
        }
        all.sort_by(|a, b| (namespace(a), kube_name(a)).cmp(&(namespace(b), kube_name(b))));
        Ok(all)
    }

    /// One namespaced object (instance or binding) by name in the target namespace.
    pub async fn get(&self, kind: KindArg, name: &str) -> Result<Value> {
        let resource = resources(kind, Scope::Namespace)
            .into_iter()
            .next()
            .ok_or_else(|| Error::Local("no such resource".into()))?;
        let api = Api::<DynamicObject>::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &resource.api,
        );
        let object = api.get(name).await.map_err(|e| {
            Error::from_kube(format!("{} {}/{name}", resource.noun, self.namespace), e)
        })?;
        plain(&object, &resource)
    }
}

fn kind_has_both_scopes(kind: KindArg) -> bool {
    matches!(kind, KindArg::Brokers | KindArg::Classes | KindArg::Plans)
}

/// The plan an instance is on, looked up in the instance's own scope (a namespaced instance's
/// plan is a ServicePlan in its namespace, even when a cluster plan has the same name).
pub async fn instance_plan(target: &Target, instance: &Value) -> Result<Option<Value>> {
    let (scope, name) = match text(instance, "/spec/clusterServicePlanRef/name") {
        "" => (
            Scope::Namespace,
            text(instance, "/spec/servicePlanRef/name"),
        ),
        cluster => (Scope::Cluster, cluster),
    };
    if name.is_empty() {
        return Ok(None);
    }
    let here = Target {
        client: target.client.clone(),
        namespace: namespace(instance).to_string(),
        all_namespaces: false,
    };
    Ok(here
        .list(KindArg::Plans, scope)
        .await?
        .into_iter()
        .find(|p| kube_name(p) == name))
}

/// An object as svcat shows it: with apiVersion and kind (lists leave them off their items), and
/// without managedFields, which kubectl hides too.
fn plain(object: &DynamicObject, resource: &Resource) -> Result<Value> {
    let value = serde_json::to_value(object)
        .map_err(|e| Error::Local(format!("reading a {}: {e}", resource.noun)))?;
    Ok(shown(value, resource))
}

/// What `plain` does, for any object as JSON.
fn shown(mut value: Value, resource: &Resource) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), resource.api.api_version.clone().into());
        map.insert("kind".into(), resource.api.kind.clone().into());
    }
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    value
}

/// A string field by JSON pointer, or "".
pub fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn kube_name(object: &Value) -> &str {
    text(object, "/metadata/name")
}

pub fn namespace(object: &Value) -> &str {
    text(object, "/metadata/namespace")
}

/// The name users know a class or plan by: the broker's name for it.
pub fn external_name(object: &Value) -> &str {
    let name = text(object, "/spec/externalName");
    if name.is_empty() {
        kube_name(object)
    } else {
        name
    }
}

/// The broker a class or plan came from.
pub fn broker_name(object: &Value) -> &str {
    let cluster = text(object, "/spec/clusterServiceBrokerName");
    if cluster.is_empty() {
        text(object, "/spec/serviceBrokerName")
    } else {
        cluster
    }
}

/// The Kubernetes name of the class a plan belongs to.
pub fn plan_class(plan: &Value) -> &str {
    let cluster = text(plan, "/spec/clusterServiceClassRef/name");
    if cluster.is_empty() {
        text(plan, "/spec/serviceClassRef/name")
    } else {
        cluster
    }
}

pub fn is_namespaced(object: &Value) -> bool {
    !namespace(object).is_empty()
}

/// A condition of an object's status by type.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn condition_true(object: &Value, type_: &str) -> bool {
    condition(object, type_)
        .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

/// The one word that says where an object stands: `Failed`, `Ready`, `Deleting`, or the reason
/// the controller gave last (`Provisioning`, `ErrorFetchingCatalog`, ...), else `Pending`.
pub fn status_word(object: &Value) -> String {
    if condition_true(object, catalog_api::CONDITION_FAILED) {
        return "Failed".into();
    }
    let deleting = object.pointer("/metadata/deletionTimestamp").is_some();
    let ready = condition(object, catalog_api::CONDITION_READY);
    if deleting {
        return match ready.and_then(|c| c.get("reason")).and_then(Value::as_str) {
            Some(reason) if !condition_true(object, catalog_api::CONDITION_READY) => {
                reason.to_string()
            }
            _ => "Deleting".into(),
        };
    }
    match ready {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => "Ready".into(),
        Some(c) => c
            .get("reason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .unwrap_or("Pending")
            .to_string(),
        None => "Pending".into(),
    }
}

/// The message behind [`status_word`]: the Failed condition's, else the Ready condition's.
pub fn status_message(object: &Value) -> String {
    let failed = condition(object, catalog_api::CONDITION_FAILED)
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"));
    failed
        .or_else(|| condition(object, catalog_api::CONDITION_READY))
        .and_then(|c| c.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_word_prefers_failed_then_ready_then_the_reason() {
        let failed = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "ProvisionCallFailed"},
            {"type": "Failed", "status": "True", "reason": "ProvisionCallFailed"}]}});
        assert_eq!(status_word(&failed), "Failed");
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(status_word(&ready), "Ready");
        let working = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "Provisioning"}]}});
        assert_eq!(status_word(&working), "Provisioning");
        assert_eq!(status_word(&json!({})), "Pending");
        let deleting = json!({"metadata": {"deletionTimestamp": "x"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(status_word(&deleting), "Deleting");
    }
}
