//! ClusterServiceBroker and ServiceBroker.

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Condition, LocalObjectReference, ObjectReference, is_false};

/// `relistBehavior: Duration`: the catalog is fetched again every `relistDuration`.
pub const RELIST_DURATION: &str = "Duration";
/// `relistBehavior: Manual`: the catalog is fetched again when `relistRequests` grows.
pub const RELIST_MANUAL: &str = "Manual";
/// The original's default `relistDuration`.
pub const DEFAULT_RELIST_DURATION: &str = "15m0s";

/// What ClusterServiceBroker and ServiceBroker specs share.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonServiceBrokerSpec {
    /// The address of the broker's OSB API.
    pub url: String,
    /// Disables TLS certificate verification when talking to the broker. Strongly discouraged:
    /// use `caBundle` instead.
    #[serde(
        rename = "insecureSkipTLSVerify",
        default,
        skip_serializing_if = "is_false"
    )]
    pub insecure_skip_tls_verify: bool,
    /// A PEM-encoded CA bundle that signs the broker's serving certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::bytes")]
    pub ca_bundle: Option<ByteString>,
    /// How the catalog is fetched again: `Duration` (every `relistDuration`) or `Manual` (when
    /// `relistRequests` grows).
    #[serde(default)]
    #[schemars(extend("enum" = ["Duration", "Manual"]))]
    pub relist_behavior: String,
    /// How often the catalog is fetched again with `relistBehavior: Duration` (a Go duration,
    /// such as `15m0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relist_duration: Option<String>,
    /// A counter a user increments to have the catalog fetched again now.
    #[serde(default)]
    pub relist_requests: i64,
    /// Which of the broker's classes and plans become objects (label-selector-like rules on
    /// `spec.externalName`, `spec.externalID`, `name`, `spec.free`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_restrictions: Option<CatalogRestrictions>,
}

/// Filters on the classes and plans taken from a broker's catalog.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogRestrictions {
    /// Requirements a class must meet, such as `spec.externalName in (mariadb, redis)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_class: Vec<String>,
    /// Requirements a plan must meet, such as `spec.free=true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_plan: Vec<String>,
}

/// A broker that offers its classes and plans to the whole cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ClusterServiceBroker",
    status = "ServiceBrokerStatus",
    category = "servicecatalog"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServiceBrokerSpec {
    #[serde(flatten)]
    pub common: CommonServiceBrokerSpec,
    /// How the catalog authenticates to the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_info: Option<ClusterServiceBrokerAuthInfo>,
}

/// A broker that offers its classes and plans to one namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ServiceBroker",
    namespaced,
    status = "ServiceBrokerStatus",
    category = "servicecatalog"
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBrokerSpec {
    #[serde(flatten)]
    pub common: CommonServiceBrokerSpec,
    /// How the catalog authenticates to the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_info: Option<ServiceBrokerAuthInfo>,
}

/// Authentication to a cluster broker: exactly one of `basic` or `bearer`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ClusterServiceBrokerAuthInfo {
    /// Basic authentication from a Secret's `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<ClusterSecretRef>,
    /// A bearer token from a Secret's `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<ClusterSecretRef>,
}

/// A Secret in a given namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecretRef {
    /// The Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectReference>,
}

/// Authentication to a namespaced broker: exactly one of `basic` or `bearer`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ServiceBrokerAuthInfo {
    /// Basic authentication from a Secret's `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<LocalSecretRef>,
    /// A bearer token from a Secret's `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<LocalSecretRef>,
}

/// A Secret in the broker's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretRef {
    /// The Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}

/// The keys of a broker's auth Secret.
pub const BASIC_AUTH_USERNAME_KEY: &str = "username";
pub const BASIC_AUTH_PASSWORD_KEY: &str = "password";
pub const BEARER_TOKEN_KEY: &str = "token";

/// What the controller last did with a broker.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBrokerStatus {
    /// `Ready` (and `Failed` for a failure that will not be retried).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `generation` of the spec the controller last processed, successfully or not.
    #[serde(default)]
    pub reconciled_generation: i64,
    /// When the current operation began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_start_time: Option<Time>,
    /// When the catalog was last fetched from the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_catalog_retrieval_time: Option<Time>,
}
