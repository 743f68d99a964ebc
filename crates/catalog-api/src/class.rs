//! ClusterServiceClass, ServiceClass, ClusterServicePlan and ServicePlan: a broker's catalog.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ClusterObjectReference, LocalObjectReference, raw_object, raw_value};

/// What class specs share.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonServiceClassSpec {
    /// The name the broker gives the offering. Mutable.
    #[serde(default)]
    pub external_name: String,
    /// The offering's OSB ID. Immutable.
    #[serde(rename = "externalID", default)]
    pub external_id: String,
    /// A short description of the offering.
    #[serde(default)]
    pub description: String,
    /// Whether instances of this class can be bound (a plan may override it).
    #[serde(default)]
    pub bindable: bool,
    /// Whether the broker supports fetching a binding (GET) for all plans.
    #[serde(default)]
    pub binding_retrievable: bool,
    /// Whether instances may change plans after they are provisioned.
    #[serde(default)]
    pub plan_updatable: bool,
    /// The broker's metadata about the offering (display names, images, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_value")]
    pub external_metadata: Option<Value>,
    /// The offering's tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Cloud Foundry permissions the offering requires (no meaning in Kubernetes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Parameters every instance of this class is provisioned with unless it says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object")]
    pub default_provision_parameters: Option<Value>,
}

/// An offering of a cluster broker.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ClusterServiceClass",
    status = "ServiceClassStatus",
    category = "servicecatalog"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServiceClassSpec {
    #[serde(flatten)]
    pub common: CommonServiceClassSpec,
    /// The ClusterServiceBroker that offers this class. Immutable.
    #[serde(default)]
    pub cluster_service_broker_name: String,
}

/// An offering of a namespaced broker.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ServiceClass",
    namespaced,
    status = "ServiceClassStatus",
    category = "servicecatalog"
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceClassSpec {
    #[serde(flatten)]
    pub common: CommonServiceClassSpec,
    /// The ServiceBroker that offers this class. Immutable.
    #[serde(default)]
    pub service_broker_name: String,
}

/// The status of a class or plan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceClassStatus {
    /// The broker no longer lists it; it goes once no instance uses it.
    #[serde(default)]
    pub removed_from_broker_catalog: bool,
}

/// The status of a plan.
pub type ServicePlanStatus = ServiceClassStatus;

/// What plan specs share.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonServicePlanSpec {
    /// The name the broker gives the plan. Mutable.
    #[serde(default)]
    pub external_name: String,
    /// The plan's OSB ID. Immutable.
    #[serde(rename = "externalID", default)]
    pub external_id: String,
    /// A short description of the plan.
    #[serde(default)]
    pub description: String,
    /// Whether instances on this plan can be bound; overrides the class when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindable: Option<bool>,
    /// Whether the plan costs nothing.
    #[serde(default)]
    pub free: bool,
    /// The broker's metadata about the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_value")]
    pub external_metadata: Option<Value>,
    /// The JSON schema of the parameters accepted when provisioning on this plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object")]
    pub instance_create_parameter_schema: Option<Value>,
    /// The JSON schema of the parameters accepted when updating an instance on this plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object")]
    pub instance_update_parameter_schema: Option<Value>,
    /// The JSON schema of the parameters accepted when binding to an instance on this plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object")]
    pub service_binding_create_parameter_schema: Option<Value>,
    /// The JSON schema of the credentials a bind returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object")]
    pub service_binding_create_response_schema: Option<Value>,
    /// Parameters every instance on this plan is provisioned with unless it says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object")]
    pub default_provision_parameters: Option<Value>,
    /// How long, in seconds, an asynchronous operation on this plan is polled before it counts as
    /// failed (OSB `maximum_polling_duration`). Not in the original API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_polling_duration: Option<i64>,
    /// The plan's current maintenance version (OSB `maintenance_info`). Not in the original API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<crate::MaintenanceInfo>,
}

/// A plan of a cluster broker's offering.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ClusterServicePlan",
    status = "ServicePlanStatus",
    category = "servicecatalog"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServicePlanSpec {
    #[serde(flatten)]
    pub common: CommonServicePlanSpec,
    /// The ClusterServiceBroker that offers this plan.
    #[serde(default)]
    pub cluster_service_broker_name: String,
    /// The ClusterServiceClass this plan belongs to.
    #[serde(default)]
    pub cluster_service_class_ref: ClusterObjectReference,
}

/// A plan of a namespaced broker's offering.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ServicePlan",
    namespaced,
    status = "ServicePlanStatus",
    category = "servicecatalog"
)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlanSpec {
    #[serde(flatten)]
    pub common: CommonServicePlanSpec,
    /// The ServiceBroker that offers this plan.
    #[serde(default)]
    pub service_broker_name: String,
    /// The ServiceClass this plan belongs to.
    #[serde(default)]
    pub service_class_ref: LocalObjectReference,
}
