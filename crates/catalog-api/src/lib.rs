//! The `servicecatalog.k8s.io/v1beta1` API: the eight kinds of the original Service Catalog
//! (tag v0.2.3 of kubernetes-retired/service-catalog), field for field and with the same JSON
//! names, so manifests written for the original read and write unchanged.
//!
//! The types derive kube's [`kube::CustomResource`], so `kube::Api<ServiceInstance>` works in the
//! controller and in svcat, and their schemas (from the doc comments below) are what the API
//! server publishes as OpenAPI and checks `fieldValidation` against ([`schema_properties`]).
//!
//! Go's inlined "common" structs are `#[serde(flatten)]`ed here; Go's `RawExtension` fields are
//! [`serde_json::Value`]s whose schema keeps unknown fields.

mod binding;
mod broker;
mod class;
mod instance;

pub use binding::*;
pub use broker::*;
pub use class::*;
pub use instance::*;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API group.
pub const GROUP: &str = "servicecatalog.k8s.io";
/// The API version.
pub const VERSION: &str = "v1beta1";
/// `group/version`.
pub const API_VERSION: &str = "servicecatalog.k8s.io/v1beta1";
/// The finalizer the controller puts on instances and bindings (the original's name, so objects
/// written by the original are still finalized by us).
pub const FINALIZER: &str = "kubernetes-incubator/service-catalog";

/// Condition status: `True`, `False` or `Unknown`.
pub type ConditionStatus = String;

/// The status of a condition.
pub const CONDITION_TRUE: &str = "True";
pub const CONDITION_FALSE: &str = "False";
pub const CONDITION_UNKNOWN: &str = "Unknown";

/// A reference to an object in a given namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// Namespace of the referent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name of the referent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A reference to an object in the same namespace as the referrer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A reference to a cluster-scoped object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ClusterObjectReference {
    /// Name of the referent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Who made a request, as the API server authenticated them (the OSB originating identity).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// Where a parameter value comes from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParametersFromSource {
    /// A key of a Secret in the object's namespace whose value is a JSON object of parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyReference>,
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretKeyReference {
    /// The name of the Secret.
    pub name: String,
    /// The key in the Secret whose value holds the parameters.
    pub key: String,
}

/// A condition as the catalog's objects report them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Failed`, or (instances) `OrphanMitigation`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// When the condition last changed status.
    pub last_transition_time: Time,
    /// A brief, machine-readable reason for the last transition.
    pub reason: String,
    /// A human-readable description of the last transition.
    pub message: String,
}

/// A plan's maintenance version, as the broker's catalog gives it (OSB `maintenance_info`).
/// Not in the original API: an instance records the version it runs, and an update brings it to
/// the plan's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceInfo {
    /// A semantic version.
    pub version: String,
    /// What this version brings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Condition types.
pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_FAILED: &str = "Failed";
pub const CONDITION_ORPHAN_MITIGATION: &str = "OrphanMitigation";

/// The schema of a Go `runtime.RawExtension` holding a JSON object: any fields are kept.
pub(crate) fn raw_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// The schema of Go `[]byte`: base64 in JSON.
pub(crate) fn bytes(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "byte"})
}

/// The schema of a Go `runtime.RawExtension` holding any JSON value.
pub(crate) fn raw_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-preserve-unknown-fields": true})
}

/// The top-level properties of a kind's schema (`spec`, `status`), as its CustomResource
/// definition describes them: what the API server serves as OpenAPI for the kind.
pub fn schema_properties<K: kube::CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    let mut properties = schema.get("properties").cloned().unwrap_or(Value::Null);
    if let Some(map) = properties.as_object_mut() {
        for generic in ["apiVersion", "kind", "metadata"] {
            map.remove(generic);
        }
    }
    properties
}

/// The newest condition of a type, if any.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_carry_flattened_fields_and_descriptions() {
        let instance = schema_properties::<ServiceInstance>();
        let spec = &instance["spec"]["properties"];
        assert!(
            spec["clusterServiceClassExternalName"].is_object(),
            "{instance:#}"
        );
        assert_eq!(spec["externalID"]["type"], "string");
        assert_eq!(
            spec["parameters"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert!(
            spec["updateRequests"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("increments"))
        );
        let broker = schema_properties::<ClusterServiceBroker>();
        assert!(
            broker["spec"]["properties"]["url"].is_object(),
            "{broker:#}"
        );
        assert!(broker["status"]["properties"]["conditions"].is_object());
    }

    #[test]
    fn an_instance_reads_and_writes_the_original_json_names() {
        let json = serde_json::json!({
            "apiVersion": API_VERSION, "kind": "ServiceInstance",
            "metadata": {"name": "i", "namespace": "n"},
            "spec": {"clusterServiceClassExternalID": "c", "clusterServicePlanExternalID": "p",
                     "externalID": "e", "updateRequests": 2, "parameters": {"a": 1},
                     "parametersFrom": [{"secretKeyRef": {"name": "s", "key": "k"}}]},
            "status": {"conditions": [], "asyncOpInProgress": false,
                       "orphanMitigationInProgress": false, "dashboardURL": "http://d",
                       "reconciledGeneration": 1, "observedGeneration": 1,
                       "provisionStatus": "Provisioned", "deprovisionStatus": "Required"}
        });
        let instance: ServiceInstance = match serde_json::from_value(json.clone()) {
            Ok(instance) => instance,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(
            instance
                .spec
                .plan_reference
                .cluster_service_plan_external_id,
            "p"
        );
        assert_eq!(instance.spec.update_requests, 2);
        let back = serde_json::to_value(&instance).unwrap_or_default();
        let status = instance.status.unwrap_or_default();
        assert_eq!(status.dashboard_url.as_deref(), Some("http://d"));
        assert_eq!(back["spec"], json["spec"]);
        assert_eq!(back["status"], json["status"]);
        assert_eq!(status.deprovision_status, STATUS_REQUIRED);
    }
}
