//! Classes and plans (cluster and namespaced): what the controller writes from a broker's
//! catalog. Their names are broker IDs, so the name rule is the original's (1–63 characters).

use apiserver::Strategy;
use apiserver::status::Cause;
use catalog_api::{
    ClusterServiceClass, ClusterServicePlan, CommonServiceClassSpec, CommonServicePlanSpec,
    ServiceClass, ServicePlan,
};
use serde_json::{Value, json};

use crate::common::{self, SchemaCheck};

/// Which of the four kinds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    ClusterClass,
    Class,
    ClusterPlan,
    Plan,
}

pub struct CatalogEntryStrategy {
    which: Which,
    schema: SchemaCheck,
}

impl CatalogEntryStrategy {
    pub fn cluster_class() -> Self {
        Self {
            which: Which::ClusterClass,
            schema: SchemaCheck::new(catalog_api::schema_properties::<ClusterServiceClass>()),
        }
    }

    pub fn class() -> Self {
        Self {
            which: Which::Class,
            schema: SchemaCheck::new(catalog_api::schema_properties::<ServiceClass>()),
        }
    }

    pub fn cluster_plan() -> Self {
        Self {
            which: Which::ClusterPlan,
            schema: SchemaCheck::new(catalog_api::schema_properties::<ClusterServicePlan>()),
        }
    }

    pub fn plan() -> Self {
        Self {
            which: Which::Plan,
            schema: SchemaCheck::new(catalog_api::schema_properties::<ServicePlan>()),
        }
    }

    /// (broker field, broker name, class-ref field, class-ref name) — the last two for plans.
    fn owners(&self, object: &Value) -> Result<Owners, Vec<Cause>> {
        Ok(match self.which {
            Which::ClusterClass => {
                let class: ClusterServiceClass = common::parse(object)?;
                Owners::class(
                    "clusterServiceBrokerName",
                    class.spec.cluster_service_broker_name,
                    class.spec.common,
                )
            }
            Which::Class => {
                let class: ServiceClass = common::parse(object)?;
                Owners::class(
                    "serviceBrokerName",
                    class.spec.service_broker_name,
                    class.spec.common,
                )
            }
            Which::ClusterPlan => {
                let plan: ClusterServicePlan = common::parse(object)?;
                Owners::plan(
                    "clusterServiceBrokerName",
                    plan.spec.cluster_service_broker_name,
                    "clusterServiceClassRef",
                    plan.spec.cluster_service_class_ref.name,
                    plan.spec.common,
                )
            }
            Which::Plan => {
                let plan: ServicePlan = common::parse(object)?;
                Owners::plan(
                    "serviceBrokerName",
                    plan.spec.service_broker_name,
                    "serviceClassRef",
                    plan.spec.service_class_ref.name,
                    plan.spec.common,
                )
            }
        })
    }

    fn kind(&self) -> &'static str {
        match self.which {
            Which::ClusterClass => "ClusterServiceClass",
            Which::Class => "ServiceClass",
            Which::ClusterPlan => "ClusterServicePlan",
            Which::Plan => "ServicePlan",
        }
    }
}

/// The fields every class and plan has, and who owns it.
struct Owners {
    broker_field: &'static str,
    broker: String,
    class_ref: Option<(&'static str, String)>,
    external_name: String,
    external_id: String,
    description: String,
}

impl Owners {
    fn class(broker_field: &'static str, broker: String, common: CommonServiceClassSpec) -> Self {
        Self {
            broker_field,
            broker,
            class_ref: None,
            external_name: common.external_name,
            external_id: common.external_id,
            description: common.description,
        }
    }

    fn plan(
        broker_field: &'static str,
        broker: String,
        class_field: &'static str,
        class: String,
        common: CommonServicePlanSpec,
    ) -> Self {
        Self {
            broker_field,
            broker,
            class_ref: Some((class_field, class)),
            external_name: common.external_name,
            external_id: common.external_id,
            description: common.description,
        }
    }
}

#[async_trait::async_trait]
impl Strategy for CatalogEntryStrategy {
    fn checks_names(&self) -> bool {
        true
    }

    fn initial_status(&self) -> Option<Value> {
        Some(json!({"removedFromBrokerCatalog": false}))
    }

    fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !name.is_empty() {
            common::check_catalog_name(&mut causes, "metadata.name", name);
        }
        causes.extend(self.schema.check(object));
        if !causes.is_empty() {
            return causes;
        }
        let owners = match self.owners(object) {
            Ok(owners) => owners,
            Err(causes) => return causes,
        };
        if owners.broker.is_empty() {
            causes.push(Cause::required_because(
                &format!("spec.{}", owners.broker_field),
                &format!("{} is required", owners.broker_field),
            ));
        }
        if let Some((field, class)) = &owners.class_ref {
            if class.is_empty() {
                causes.push(Cause::required_because(
                    &format!("spec.{field}.name"),
                    "an owning serviceclass is required",
                ));
            } else {
                common::check_catalog_name(&mut causes, &format!("spec.{field}.name"), class);
            }
        }
        if owners.external_id.is_empty() {
            causes.push(Cause::required_because(
                "spec.externalID",
                "externalID is required",
            ));
        } else {
            common::check_catalog_name(&mut causes, "spec.externalID", &owners.external_id);
        }
        if owners.description.is_empty() {
            causes.push(Cause::required_because(
                "spec.description",
                "description is required",
            ));
        }
        if owners.external_name.is_empty() {
            causes.push(Cause::required_because(
                "spec.externalName",
                "externalName is required",
            ));
        } else {
            common::check_catalog_name(&mut causes, "spec.externalName", &owners.external_name);
        }
        if let Some(old) = old
            && let Ok(before) = self.owners(old)
        {
            let kind = self.kind();
            if owners.external_id != before.external_id {
                causes.push(Cause::invalid(
                    "spec.externalID",
                    &owners.external_id,
                    &format!("externalID cannot change when updating a {kind}"),
                ));
            }
            common::check_immutable(
                &mut causes,
                &format!("spec.{}", owners.broker_field),
                &owners.broker,
                &before.broker,
            );
            if let (Some((field, class)), Some((_, previous))) =
                (&owners.class_ref, &before.class_ref)
            {
                common::check_immutable(
                    &mut causes,
                    &format!("spec.{field}.name"),
                    class,
                    previous,
                );
            }
        }
        causes
    }
}
