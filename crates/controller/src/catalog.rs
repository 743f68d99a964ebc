//! From a broker's OSB catalog to the class and plan objects it should produce: one class per
//! offering and one plan per plan, named by external ID as the original did, every field carried
//! over, filtered by the broker's catalog restrictions.

use std::collections::BTreeMap;

use apiserver::selectors::LabelSelector;
use catalog_api::CatalogRestrictions;
use osb_client::Catalog;
use serde_json::{Map, Value, json};

/// Where a broker's objects live and which field names tie them to it.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub cluster: bool,
}

impl Scope {
    pub fn broker_field(self) -> &'static str {
        if self.cluster {
            "clusterServiceBrokerName"
        } else {
            "serviceBrokerName"
        }
    }

    pub fn class_ref_field(self) -> &'static str {
        if self.cluster {
            "clusterServiceClassRef"
        } else {
            "serviceClassRef"
        }
    }

    pub fn broker_kind(self) -> &'static str {
        if self.cluster {
            "ClusterServiceBroker"
        } else {
            "ServiceBroker"
        }
    }
}

/// The class and plan objects (`metadata.name` and `spec`) a catalog yields, keyed by name.
#[derive(Debug, Default, PartialEq)]
pub struct Desired {
    pub classes: BTreeMap<String, Value>,
    pub plans: BTreeMap<String, Value>,
}

/// Problems with the broker's catalog restrictions (they are validated by the API server too).
#[derive(Debug, thiserror::Error)]
#[error("invalid catalog restriction: {0}")]
pub struct RestrictionError(String);

fn selector(rules: &[String]) -> Result<Option<LabelSelector>, RestrictionError> {
    if rules.is_empty() {
        return Ok(None);
    }
    LabelSelector::parse(&rules.join(","))
        .map(Some)
        .map_err(RestrictionError)
}

fn accepted(selector: &Option<LabelSelector>, properties: &[(&str, String)]) -> bool {
    selector.as_ref().is_none_or(|s| {
        let map: BTreeMap<String, String> = properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        s.matches(&map)
    })
}

fn insert_some(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value);
    }
}

/// What `catalog` should become for the broker `broker` in `scope`.
pub fn desired(
    scope: Scope,
    broker: &str,
    catalog: &Catalog,
    restrictions: Option<&CatalogRestrictions>,
) -> Result<Desired, RestrictionError> {
    let class_selector = selector(restrictions.map_or(&[][..], |r| &r.service_class))?;
    let plan_selector = selector(restrictions.map_or(&[][..], |r| &r.service_plan))?;
    let class_name_property = if scope.cluster {
        "spec.clusterServiceClass.name"
    } else {
        "spec.serviceClass.name"
    };
    let mut desired = Desired::default();
    for service in &catalog.services {
        let class_properties = [
            ("name", service.id.clone()),
            ("spec.externalName", service.name.clone()),
            ("spec.externalID", service.id.clone()),
        ];
        if !accepted(&class_selector, &class_properties) {
            continue;
        }
        let mut spec = Map::new();
        spec.insert(scope.broker_field().into(), json!(broker));
        spec.insert("externalName".into(), json!(service.name));
        spec.insert("externalID".into(), json!(service.id));
        spec.insert("description".into(), json!(service.description));
        spec.insert("bindable".into(), json!(service.bindable));
        spec.insert(
            "bindingRetrievable".into(),
            json!(service.bindings_retrievable.unwrap_or(false)),
        );
        spec.insert(
            "planUpdatable".into(),
            json!(service.plan_updateable.unwrap_or(false)),
        );
        insert_some(&mut spec, "externalMetadata", service.metadata.clone());
        if !service.tags.is_empty() {
            spec.insert("tags".into(), json!(service.tags));
        }
        if !service.requires.is_empty() {
            spec.insert("requires".into(), json!(service.requires));
        }
        let mut plans_kept = 0;
        for plan in &service.plans {
            let free = plan.free.unwrap_or(true);
            let plan_properties = [
                ("name", plan.id.clone()),
                ("spec.externalName", plan.name.clone()),
                ("spec.externalID", plan.id.clone()),
                ("spec.free", free.to_string()),
                (class_name_property, service.id.clone()),
            ];
            if !accepted(&plan_selector, &plan_properties) {
                continue;
            }
            plans_kept += 1;
            let mut plan_spec = Map::new();
            plan_spec.insert(scope.broker_field().into(), json!(broker));
            plan_spec.insert("externalName".into(), json!(plan.name));
            plan_spec.insert("externalID".into(), json!(plan.id));
            plan_spec.insert("description".into(), json!(plan.description));
            plan_spec.insert("free".into(), json!(free));
            insert_some(&mut plan_spec, "bindable", plan.bindable.map(Value::Bool));
            insert_some(&mut plan_spec, "externalMetadata", plan.metadata.clone());
            insert_some(
                &mut plan_spec,
                "instanceCreateParameterSchema",
                plan.instance_create_schema().cloned(),
            );
            insert_some(
                &mut plan_spec,
                "instanceUpdateParameterSchema",
                plan.instance_update_schema().cloned(),
            );
            insert_some(
                &mut plan_spec,
                "serviceBindingCreateParameterSchema",
                plan.binding_create_schema().cloned(),
            );
            let response_schema = plan
                .schemas
                .as_ref()
                .and_then(|s| s.service_binding.as_ref())
                .and_then(|b| b.extra.get("create_response"))
                .and_then(|r| r.get("credentials").cloned());
            insert_some(
                &mut plan_spec,
                "serviceBindingCreateResponseSchema",
                response_schema,
            );
            insert_some(
                &mut plan_spec,
                "maximumPollingDuration",
                plan.maximum_polling_duration.map(Value::from),
            );
            insert_some(
                &mut plan_spec,
                "maintenanceInfo",
                plan.maintenance_info
                    .as_ref()
                    .and_then(|m| serde_json::to_value(m).ok()),
            );
            plan_spec.insert(scope.class_ref_field().into(), json!({"name": service.id}));
            desired.plans.insert(
                plan.id.clone(),
                json!({"metadata": {"name": plan.id}, "spec": plan_spec}),
            );
        }
        // An offering whose plans are all filtered out is not offered (the original's rule).
        if plans_kept > 0 || service.plans.is_empty() {
            desired.classes.insert(
                service.id.clone(),
                json!({"metadata": {"name": service.id}, "spec": spec}),
            );
        }
    }
    Ok(desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        serde_json::from_value(json!({"services": [
            {"id": "s1", "name": "db", "description": "a db", "bindable": true, "plan_updateable": true,
             "tags": ["sql"], "metadata": {"displayName": "DB"},
             "plans": [
                {"id": "p1", "name": "small", "description": "small", "free": true,
                 "schemas": {"service_instance": {"create": {"parameters": {"type": "object"}}}}},
                {"id": "p2", "name": "large", "description": "large", "free": false}]},
            {"id": "s2", "name": "cache", "description": "a cache", "bindable": false,
             "plans": [{"id": "p3", "name": "tiny", "description": "tiny"}]}
        ]}))
        .unwrap_or_default()
    }

    #[test]
    fn every_offering_and_plan_becomes_an_object_named_by_its_id() -> Result<(), RestrictionError> {
        let desired = desired(Scope { cluster: true }, "b", &catalog(), None)?;
        assert_eq!(desired.classes.len(), 2);
        assert_eq!(desired.plans.len(), 3);
        let class = &desired.classes["s1"]["spec"];
        assert_eq!(class["externalName"], "db");
        assert_eq!(class["planUpdatable"], true);
        assert_eq!(class["clusterServiceBrokerName"], "b");
        assert_eq!(class["externalMetadata"]["displayName"], "DB");
        let plan = &desired.plans["p1"]["spec"];
        assert_eq!(plan["clusterServiceClassRef"]["name"], "s1");
        assert_eq!(plan["instanceCreateParameterSchema"]["type"], "object");
        assert_eq!(desired.plans["p2"]["spec"]["free"], false);
        Ok(())
    }

    #[test]
    fn restrictions_filter_classes_and_plans() -> Result<(), RestrictionError> {
        let restrictions = CatalogRestrictions {
            service_class: vec!["spec.externalName in (db)".into()],
            service_plan: vec!["spec.free=true".into()],
        };
        let desired = desired(
            Scope { cluster: false },
            "b",
            &catalog(),
            Some(&restrictions),
        )?;
        assert_eq!(desired.classes.keys().collect::<Vec<_>>(), ["s1"]);
        assert_eq!(desired.plans.keys().collect::<Vec<_>>(), ["p1"]);
        assert_eq!(desired.plans["p1"]["spec"]["serviceClassRef"]["name"], "s1");
        Ok(())
    }
}
