//! ServiceBinding.

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    Condition, LocalObjectReference, ObjectReference, ParametersFromSource, UserInfo, raw_object,
};

/// Credentials for an instance, written into a Secret.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ServiceBinding",
    namespaced,
    status = "ServiceBindingStatus",
    category = "servicecatalog"
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBindingSpec {
    /// The ServiceInstance (in the same namespace) to bind to. Immutable.
    #[serde(default)]
    pub instance_ref: LocalObjectReference,
    /// Parameters for the broker: a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object")]
    pub parameters: Option<Value>,
    /// More parameters, read from Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters_from: Vec<ParametersFromSource>,
    /// The Secret the credentials are written to (defaults to the binding's name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_name: String,
    /// Changes applied, in order, to the credentials before they are written to the Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_transforms: Vec<SecretTransform>,
    /// The binding's OSB ID (a UUID by default). Immutable.
    #[serde(rename = "externalID", default)]
    pub external_id: String,
    /// The user who last changed the spec (set by the API server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<UserInfo>,
}

/// One change to the credentials: exactly one of its fields.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTransform {
    /// Renames a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename_key: Option<RenameKeyTransform>,
    /// Adds a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_key: Option<AddKeyTransform>,
    /// Adds every key of another Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_keys_from: Option<AddKeysFromTransform>,
    /// Removes a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_key: Option<RemoveKeyTransform>,
}

/// Renames a credential key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct RenameKeyTransform {
    /// The key to rename.
    pub from: String,
    /// Its new name.
    pub to: String,
}

/// Adds a credential key, from bytes, a string, or a JSONPath into the credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddKeyTransform {
    /// The key to add.
    pub key: String,
    /// Its value, as bytes (base64 in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::bytes")]
    pub value: Option<ByteString>,
    /// Its value, as a string (wins over `value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// A JSONPath into the credentials whose result is the value (wins over the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path_expression: Option<String>,
}

/// Adds the keys of another Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddKeysFromTransform {
    /// The Secret whose keys are added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectReference>,
}

/// Removes a credential key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct RemoveKeyTransform {
    /// The key to remove.
    pub key: String,
}

/// Operations on a binding.
pub const OPERATION_BIND: &str = "Bind";
pub const OPERATION_UNBIND: &str = "Unbind";

/// What the controller knows of a binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBindingStatus {
    /// `Ready` and `Failed`, with the original's reasons.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// An asynchronous operation is being polled.
    #[serde(default)]
    pub async_op_in_progress: bool,
    /// The broker's `operation` for the asynchronous operation in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<String>,
    /// `Bind` or `Unbind` while one is in progress.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_operation: String,
    /// The `generation` the controller last finished processing.
    #[serde(default)]
    pub reconciled_generation: i64,
    /// When the current operation began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_start_time: Option<Time>,
    /// The parameters the operation in progress is applying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_properties: Option<ServiceBindingPropertiesState>,
    /// The parameters the broker last confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_properties: Option<ServiceBindingPropertiesState>,
    /// The controller is unbinding what a failed bind may have left at the broker.
    #[serde(default)]
    pub orphan_mitigation_in_progress: bool,
    /// `NotRequired`, `Required`, `Succeeded` or `Failed`.
    #[serde(default)]
    pub unbind_status: String,
}

/// The parameters of a binding at the broker.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBindingPropertiesState {
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
}
