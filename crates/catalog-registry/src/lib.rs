//! The `servicecatalog.k8s.io/v1beta1` kinds as the API server serves them: where they live,
//! how `kubectl get` shows them, which field selectors they take, and their strategies
//! (defaulting, validation, admission) — the original's registry strategies and admission
//! plugins (tag v0.2.3), with its silent quirks turned into clear errors.
//!
//! - [`broker`] — ClusterServiceBroker, ServiceBroker.
//! - [`class`] — ClusterServiceClass, ServiceClass, ClusterServicePlan, ServicePlan.
//! - [`instance`] — ServiceInstance (and its `/reference` subresource).
//! - [`binding`] — ServiceBinding.

pub mod binding;
pub mod broker;
pub mod class;
mod common;
pub mod instance;
pub mod roles;

use std::sync::Arc;

use apiserver::{Column, ColumnValue, Registry, ResourceKind, SpecSubresource};
use catalog_api::{GROUP, VERSION};
use serde_json::{Value, json};

const CATEGORIES: &[&str] = &["servicecatalog"];
/// Instances and bindings are what users make: `kubectl get all` shows them too.
const USER_CATEGORIES: &[&str] = &["servicecatalog", "all"];

/// The Status column of brokers, instances and bindings: the last condition's type when it is
/// true, else its reason (the original's rule).
fn status_cell(object: &Value) -> Value {
    let last = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.last());
    let text = match last {
        Some(condition) if condition.get("status").and_then(Value::as_str) == Some("True") => {
            condition.get("type")
        }
        Some(condition) => condition.get("reason"),
        None => None,
    };
    json!(text.and_then(Value::as_str).unwrap_or_default())
}

/// The first of an instance's class (or plan) naming fields that is set, in one scope.
fn first_given(object: &Value, fields: &[&str]) -> Option<String> {
    fields
        .iter()
        .filter_map(|f| {
            object
                .pointer(&format!("/spec/{f}"))
                .and_then(Value::as_str)
        })
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

const CLUSTER_CLASS_FIELDS: &[&str] = &[
    "clusterServiceClassExternalName",
    "clusterServiceClassExternalID",
    "clusterServiceClassName",
];
const CLASS_FIELDS: &[&str] = &[
    "serviceClassExternalName",
    "serviceClassExternalID",
    "serviceClassName",
];
const CLUSTER_PLAN_FIELDS: &[&str] = &[
    "clusterServicePlanExternalName",
    "clusterServicePlanExternalID",
    "clusterServicePlanName",
];
const PLAN_FIELDS: &[&str] = &[
    "servicePlanExternalName",
    "servicePlanExternalID",
    "servicePlanName",
];

fn instance_class_cell(object: &Value) -> Value {
    match first_given(object, CLUSTER_CLASS_FIELDS) {
        Some(class) => json!(format!("ClusterServiceClass/{class}")),
        None => json!(format!(
            "ServiceClass/{}",
            first_given(object, CLASS_FIELDS).unwrap_or_default()
        )),
    }
}

fn instance_plan_cell(object: &Value) -> Value {
    json!(
        first_given(object, CLUSTER_PLAN_FIELDS)
            .or_else(|| first_given(object, PLAN_FIELDS))
            .unwrap_or_default()
    )
}

const fn column(name: &'static str, value: ColumnValue, priority: u8) -> Column {
    Column {
        name,
        kind: "string",
        description: "",
        priority,
        value,
    }
}

const STATUS: Column = column("Status", ColumnValue::Computed(status_cell), 0);

const BROKER_COLUMNS: &[Column] = &[
    column("URL", ColumnValue::Path("/spec/url"), 0),
    STATUS,
    column("Relist", ColumnValue::Path("/spec/relistBehavior"), 1),
];
const CLUSTER_CLASS_COLUMNS: &[Column] = &[
    column("External-Name", ColumnValue::Path("/spec/externalName"), 0),
    column(
        "Broker",
        ColumnValue::Path("/spec/clusterServiceBrokerName"),
        0,
    ),
    column("Bindable", ColumnValue::Path("/spec/bindable"), 1),
    column("Description", ColumnValue::Path("/spec/description"), 1),
];
const CLASS_COLUMNS: &[Column] = &[
    column("External-Name", ColumnValue::Path("/spec/externalName"), 0),
    column("Broker", ColumnValue::Path("/spec/serviceBrokerName"), 0),
    column("Bindable", ColumnValue::Path("/spec/bindable"), 1),
    column("Description", ColumnValue::Path("/spec/description"), 1),
];
const CLUSTER_PLAN_COLUMNS: &[Column] = &[
    column("External-Name", ColumnValue::Path("/spec/externalName"), 0),
    column(
        "Broker",
        ColumnValue::Path("/spec/clusterServiceBrokerName"),
        0,
    ),
    column(
        "Class",
        ColumnValue::Path("/spec/clusterServiceClassRef/name"),
        0,
    ),
    column("Free", ColumnValue::Path("/spec/free"), 1),
    column("Description", ColumnValue::Path("/spec/description"), 1),
];
const PLAN_COLUMNS: &[Column] = &[
    column("External-Name", ColumnValue::Path("/spec/externalName"), 0),
    column("Broker", ColumnValue::Path("/spec/serviceBrokerName"), 0),
    column("Class", ColumnValue::Path("/spec/serviceClassRef/name"), 0),
    column("Free", ColumnValue::Path("/spec/free"), 1),
    column("Description", ColumnValue::Path("/spec/description"), 1),
];
const INSTANCE_COLUMNS: &[Column] = &[
    column("Class", ColumnValue::Computed(instance_class_cell), 0),
    column("Plan", ColumnValue::Computed(instance_plan_cell), 0),
    STATUS,
    column("External-ID", ColumnValue::Path("/spec/externalID"), 1),
    column("Dashboard", ColumnValue::Path("/status/dashboardURL"), 1),
];
const BINDING_COLUMNS: &[Column] = &[
    column(
        "Service-Instance",
        ColumnValue::Path("/spec/instanceRef/name"),
        0,
    ),
    column("Secret-Name", ColumnValue::Path("/spec/secretName"), 0),
    STATUS,
    column("External-ID", ColumnValue::Path("/spec/externalID"), 1),
];

/// The `/reference` subresource: the controller records the class and plan it resolved.
const INSTANCE_SUBRESOURCES: &[SpecSubresource] = &[SpecSubresource {
    name: "reference",
    fields: instance::REFERENCE_FIELDS,
}];

fn cluster_broker_schema() -> Value {
    catalog_api::schema_properties::<catalog_api::ClusterServiceBroker>()
}
fn broker_schema() -> Value {
    catalog_api::schema_properties::<catalog_api::ServiceBroker>()
}
fn cluster_class_schema() -> Value {
    catalog_api::schema_properties::<catalog_api::ClusterServiceClass>()
}
fn class_schema() -> Value {
    catalog_api::schema_properties::<catalog_api::ServiceClass>()
}
fn cluster_plan_schema() -> Value {
    catalog_api::schema_properties::<catalog_api::ClusterServicePlan>()
}
fn plan_schema() -> Value {
    catalog_api::schema_properties::<catalog_api::ServicePlan>()
}
fn instance_schema() -> Value {
    catalog_api::schema_properties::<catalog_api::ServiceInstance>()
}
fn binding_schema() -> Value {
    catalog_api::schema_properties::<catalog_api::ServiceBinding>()
}

/// A catalog kind with the parts every one of them shares.
#[allow(clippy::too_many_arguments)]
fn catalog_kind(
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    field_selectors: &'static [(&'static str, &'static str)],
    columns: &'static [Column],
    description: &'static str,
    schema: fn() -> Value,
    strategy: Arc<dyn apiserver::Strategy>,
) -> ResourceKind {
    ResourceKind {
        group: GROUP,
        version: VERSION,
        kind,
        plural,
        singular: "",
        short_names,
        categories: CATEGORIES,
        namespaced,
        has_status: true,
        field_selectors,
        spec_subresources: &[],
        columns,
        description,
        schema,
        // Like the CRDs a catalog would otherwise be: JSON merge and JSON patch, not SMP.
        strategic_merge: false,
        strategy,
    }
}

/// Adds the eight catalog kinds to a registry.
pub fn register(registry: &mut Registry) {
    let with_singular = |mut kind: ResourceKind, singular: &'static str| {
        kind.singular = singular;
        kind
    };
    registry
        .add(with_singular(
            catalog_kind(
                "ClusterServiceBroker",
                "clusterservicebrokers",
                &["csb"],
                false,
                &[],
                BROKER_COLUMNS,
                "ClusterServiceBroker registers an Open Service Broker whose classes and plans every namespace can use.",
                cluster_broker_schema,
                Arc::new(broker::BrokerStrategy::cluster()),
            ),
            "clusterservicebroker",
        ))
        .add(with_singular(
            catalog_kind(
                "ServiceBroker",
                "servicebrokers",
                &["sb"],
                true,
                &[],
                BROKER_COLUMNS,
                "ServiceBroker registers an Open Service Broker whose classes and plans its namespace can use.",
                broker_schema,
                Arc::new(broker::BrokerStrategy::namespaced()),
            ),
            "servicebroker",
        ))
        .add(with_singular(
            catalog_kind(
                "ClusterServiceClass",
                "clusterserviceclasses",
                &["csc"],
                false,
                &[
                    ("spec.externalName", "/spec/externalName"),
                    ("spec.externalID", "/spec/externalID"),
                    ("spec.clusterServiceBrokerName", "/spec/clusterServiceBrokerName"),
                ],
                CLUSTER_CLASS_COLUMNS,
                "ClusterServiceClass is an offering of a ClusterServiceBroker.",
                cluster_class_schema,
                Arc::new(class::CatalogEntryStrategy::cluster_class()),
            ),
            "clusterserviceclass",
        ))
        .add(with_singular(
            catalog_kind(
                "ServiceClass",
                "serviceclasses",
                &["scl"],
                true,
                &[
                    ("spec.externalName", "/spec/externalName"),
                    ("spec.externalID", "/spec/externalID"),
                    ("spec.serviceBrokerName", "/spec/serviceBrokerName"),
                ],
                CLASS_COLUMNS,
                "ServiceClass is an offering of a namespaced ServiceBroker.",
                class_schema,
                Arc::new(class::CatalogEntryStrategy::class()),
            ),
            "serviceclass",
        ))
        .add(with_singular(
            catalog_kind(
                "ClusterServicePlan",
                "clusterserviceplans",
                &["csp"],
                false,
                &[
                    ("spec.externalName", "/spec/externalName"),
                    ("spec.externalID", "/spec/externalID"),
                    ("spec.clusterServiceBrokerName", "/spec/clusterServiceBrokerName"),
                    ("spec.clusterServiceClassRef.name", "/spec/clusterServiceClassRef/name"),
                ],
                CLUSTER_PLAN_COLUMNS,
                "ClusterServicePlan is a tier of a ClusterServiceClass.",
                cluster_plan_schema,
                Arc::new(class::CatalogEntryStrategy::cluster_plan()),
            ),
            "clusterserviceplan",
        ))
        .add(with_singular(
            catalog_kind(
                "ServicePlan",
                "serviceplans",
                &["spl"],
                true,
                &[
                    ("spec.externalName", "/spec/externalName"),
                    ("spec.externalID", "/spec/externalID"),
                    ("spec.serviceBrokerName", "/spec/serviceBrokerName"),
                    ("spec.serviceClassRef.name", "/spec/serviceClassRef/name"),
                ],
                PLAN_COLUMNS,
                "ServicePlan is a tier of a ServiceClass.",
                plan_schema,
                Arc::new(class::CatalogEntryStrategy::plan()),
            ),
            "serviceplan",
        ))
        .add({
            let mut kind = with_singular(
                catalog_kind(
                    "ServiceInstance",
                    "serviceinstances",
                    &["si"],
                    true,
                    &[
                        ("spec.externalID", "/spec/externalID"),
                        ("spec.clusterServiceClassRef.name", "/spec/clusterServiceClassRef/name"),
                        ("spec.clusterServicePlanRef.name", "/spec/clusterServicePlanRef/name"),
                        ("spec.serviceClassRef.name", "/spec/serviceClassRef/name"),
                        ("spec.servicePlanRef.name", "/spec/servicePlanRef/name"),
                    ],
                    INSTANCE_COLUMNS,
                    "ServiceInstance is a provisioned instance of a service plan.",
                    instance_schema,
                    Arc::new(instance::InstanceStrategy::new()),
                ),
                "serviceinstance",
            );
            kind.categories = USER_CATEGORIES;
            kind.spec_subresources = INSTANCE_SUBRESOURCES;
            kind
        })
        .add({
            let mut kind = with_singular(
                catalog_kind(
                    "ServiceBinding",
                    "servicebindings",
                    &["sbd"],
                    true,
                    &[("spec.externalID", "/spec/externalID")],
                    BINDING_COLUMNS,
                    "ServiceBinding is a set of credentials for a ServiceInstance, written into a Secret.",
                    binding_schema,
                    Arc::new(binding::BindingStrategy::new()),
                ),
                "servicebinding",
            );
            kind.categories = USER_CATEGORIES;
            kind
        });
}

/// The standalone server's kinds: the core slice, RBAC and the catalog.
pub fn standalone() -> Registry {
    let mut registry = Registry::standalone_core();
    apiserver::rbac::add_kinds(&mut registry);
    register(&mut registry);
    registry
}

/// The aggregated server's kinds: the catalog only (kube-apiserver serves the rest).
pub fn aggregated() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry);
    registry
}
