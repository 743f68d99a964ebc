//! ServiceInstance.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ClusterObjectReference, Condition, LocalObjectReference, ParametersFromSource, UserInfo,
    raw_object,
};

/// How an instance names its class and plan: by external name, by external ID, or by object
/// name; cluster-scoped (`clusterService...`) or namespaced (`service...`). Exactly one way.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanReference {
    /// The external name of a ClusterServiceClass.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_service_class_external_name: String,
    /// The external name of a ClusterServicePlan.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_service_plan_external_name: String,
    /// The external ID of a ClusterServiceClass.
    #[serde(
        rename = "clusterServiceClassExternalID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_service_class_external_id: String,
    /// The external ID of a ClusterServicePlan.
    #[serde(
        rename = "clusterServicePlanExternalID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_service_plan_external_id: String,
    /// The object name of a ClusterServiceClass.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_service_class_name: String,
    /// The object name of a ClusterServicePlan.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_service_plan_name: String,
    /// The external name of a ServiceClass.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_class_external_name: String,
    /// The external name of a ServicePlan.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_plan_external_name: String,
    /// The external ID of a ServiceClass.
    #[serde(
        rename = "serviceClassExternalID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub service_class_external_id: String,
    /// The external ID of a ServicePlan.
    #[serde(
        rename = "servicePlanExternalID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub service_plan_external_id: String,
    /// The object name of a ServiceClass.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_class_name: String,
    /// The object name of a ServicePlan.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_plan_name: String,
}

/// A provisioned (or to be provisioned) instance of a service.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ServiceInstance",
    namespaced,
    status = "ServiceInstanceStatus",
    category = "servicecatalog"
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstanceSpec {
    #[serde(flatten)]
    pub plan_reference: PlanReference,
    /// The resolved ClusterServiceClass (set by the controller through `/reference`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_service_class_ref: Option<ClusterObjectReference>,
    /// The resolved ClusterServicePlan (set by the controller through `/reference`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_service_plan_ref: Option<ClusterObjectReference>,
    /// The resolved ServiceClass (set by the controller through `/reference`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_class_ref: Option<LocalObjectReference>,
    /// The resolved ServicePlan (set by the controller through `/reference`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_plan_ref: Option<LocalObjectReference>,
    /// Parameters for the broker: a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object")]
    pub parameters: Option<Value>,
    /// More parameters, read from Secrets; merged with `parameters` (a key may appear once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters_from: Vec<ParametersFromSource>,
    /// The instance's OSB ID (a UUID by default). Immutable.
    #[serde(rename = "externalID", default)]
    pub external_id: String,
    /// The user who last changed the spec (set by the API server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<UserInfo>,
    /// A counter a user increments to have the instance updated at the broker again.
    #[serde(default)]
    pub update_requests: i64,
}

/// Operations on an instance.
pub const OPERATION_PROVISION: &str = "Provision";
pub const OPERATION_UPDATE: &str = "Update";
pub const OPERATION_DEPROVISION: &str = "Deprovision";

/// Provision states.
pub const PROVISIONED: &str = "Provisioned";
pub const NOT_PROVISIONED: &str = "NotProvisioned";

/// Deprovision (and unbind) states.
pub const STATUS_NOT_REQUIRED: &str = "NotRequired";
pub const STATUS_REQUIRED: &str = "Required";
pub const STATUS_SUCCEEDED: &str = "Succeeded";
pub const STATUS_FAILED: &str = "Failed";

/// What the controller knows of an instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstanceStatus {
    /// `Ready`, `Failed` and `OrphanMitigation`, with the original's reasons.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// An asynchronous operation is being polled.
    #[serde(default)]
    pub async_op_in_progress: bool,
    /// The controller is deprovisioning what a failed provision may have left at the broker.
    #[serde(default)]
    pub orphan_mitigation_in_progress: bool,
    /// The broker's `operation` for the asynchronous operation in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<String>,
    /// The broker's dashboard URL for the instance.
    #[serde(
        rename = "dashboardURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dashboard_url: Option<String>,
    /// `Provision`, `Update` or `Deprovision` while one is in progress.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_operation: String,
    /// The `generation` the controller last finished processing.
    #[serde(default)]
    pub reconciled_generation: i64,
    /// The `generation` the controller last saw.
    #[serde(default)]
    pub observed_generation: i64,
    /// When the current operation began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_start_time: Option<Time>,
    /// The plan and parameters the operation in progress is applying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_properties: Option<ServiceInstancePropertiesState>,
    /// The plan and parameters the broker last confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_properties: Option<ServiceInstancePropertiesState>,
    /// `Provisioned` or `NotProvisioned`.
    #[serde(default)]
    pub provision_status: String,
    /// `NotRequired`, `Required`, `Succeeded` or `Failed`.
    #[serde(default)]
    pub deprovision_status: String,
    /// The class's and plan's default provision parameters, merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object")]
    pub default_provision_parameters: Option<Value>,
}

/// The plan and parameters of an instance at the broker.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstancePropertiesState {
    /// The external name of the ClusterServicePlan.
    #[serde(default)]
    pub cluster_service_plan_external_name: String,
    /// The external ID of the ClusterServicePlan.
    #[serde(rename = "clusterServicePlanExternalID", default)]
    pub cluster_service_plan_external_id: String,
    /// The external name of the ServicePlan.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_plan_external_name: String,
    /// The external ID of the ServicePlan.
    #[serde(
        rename = "servicePlanExternalID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub service_plan_external_id: String,
    /// The parameters sent, with values from Secrets redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object")]
    pub parameters: Option<Value>,
    /// A SHA-256 of the parameters sent, secret values included.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parameter_checksum: String,
    /// The user whose change caused the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<UserInfo>,
    /// The plan's maintenance version sent to the broker (OSB `maintenance_info`). Not in the
    /// original API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<crate::MaintenanceInfo>,
}
