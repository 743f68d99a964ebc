//! ServiceInstance: the plan reference rules, the default plan, the plan-change check, the
//! `/reference` subresource, `userInfo`, and the status invariants the controller must keep.

use apiserver::status::Cause;
use apiserver::{Admission, ApiError, Strategy};
use catalog_api::{
    OPERATION_DEPROVISION, OPERATION_PROVISION, OPERATION_UPDATE, PlanReference, ServiceInstance,
    ServiceInstanceStatus,
};
use serde_json::{Value, json};

use crate::common::{self, SchemaCheck};

const GROUP: &str = catalog_api::GROUP;

/// The four references the controller resolves and sets through `/reference`.
pub const REFERENCE_FIELDS: &[&str] = &[
    "/spec/clusterServiceClassRef",
    "/spec/clusterServicePlanRef",
    "/spec/serviceClassRef",
    "/spec/servicePlanRef",
];

/// One scope's three ways of naming a class or a plan, as (JSON field, value).
struct Names<'a> {
    external_name: (&'static str, &'a str),
    external_id: (&'static str, &'a str),
    name: (&'static str, &'a str),
}

impl<'a> Names<'a> {
    fn given(&self) -> Vec<(&'static str, &'a str)> {
        [self.external_name, self.external_id, self.name]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }

    fn fields(&self) -> [&'static str; 3] {
        [self.external_name.0, self.external_id.0, self.name.0]
    }
}

fn cluster_class(r: &PlanReference) -> Names<'_> {
    Names {
        external_name: (
            "clusterServiceClassExternalName",
            &r.cluster_service_class_external_name,
        ),
        external_id: (
            "clusterServiceClassExternalID",
            &r.cluster_service_class_external_id,
        ),
        name: ("clusterServiceClassName", &r.cluster_service_class_name),
    }
}

fn cluster_plan(r: &PlanReference) -> Names<'_> {
    Names {
        external_name: (
            "clusterServicePlanExternalName",
            &r.cluster_service_plan_external_name,
        ),
        external_id: (
            "clusterServicePlanExternalID",
            &r.cluster_service_plan_external_id,
        ),
        name: ("clusterServicePlanName", &r.cluster_service_plan_name),
    }
}

fn class(r: &PlanReference) -> Names<'_> {
    Names {
        external_name: ("serviceClassExternalName", &r.service_class_external_name),
        external_id: ("serviceClassExternalID", &r.service_class_external_id),
        name: ("serviceClassName", &r.service_class_name),
    }
}

fn plan(r: &PlanReference) -> Names<'_> {
    Names {
        external_name: ("servicePlanExternalName", &r.service_plan_external_name),
        external_id: ("servicePlanExternalID", &r.service_plan_external_id),
        name: ("servicePlanName", &r.service_plan_name),
    }
}

/// Exactly one way of naming the class, at most one of naming the plan (the default plan
/// may fill it), of the same kind, in one scope.
fn check_plan_reference(causes: &mut Vec<Cause>, reference: &PlanReference) {
    let cluster_given =
        !cluster_class(reference).given().is_empty() || !cluster_plan(reference).given().is_empty();
    let namespaced_given =
        !class(reference).given().is_empty() || !plan(reference).given().is_empty();
    if cluster_given && namespaced_given {
        causes.push(Cause::invalid(
            "spec",
            "<plan reference>",
            "instances can only refer to a cluster or namespaced class or plan type, but not both",
        ));
        return;
    }
    let (classes, plans) = if namespaced_given {
        (class(reference), plan(reference))
    } else {
        (cluster_class(reference), cluster_plan(reference))
    };
    let [by_external_name, by_external_id, by_name] = classes.fields();
    let class_given = classes.given();
    if class_given.len() != 1 {
        let why =
            format!("exactly one of {by_external_name}, {by_external_id}, or {by_name} required");
        if class_given.is_empty() {
            causes.push(Cause::required_because(
                &format!("spec.{by_external_name}"),
                &why,
            ));
        } else {
            for (field, value) in class_given {
                causes.push(Cause::invalid(&format!("spec.{field}"), value, &why));
            }
        }
        return;
    }
    let plan_given = plans.given();
    if plan_given.len() > 1 {
        let [a, b, c] = plans.fields();
        for (field, value) in &plan_given {
            causes.push(Cause::invalid(
                &format!("spec.{field}"),
                value,
                &format!("at most one of {a}, {b}, or {c} may be given"),
            ));
        }
        return;
    }
    // The plan is named the same way as the class.
    let pairs = [
        (classes.external_name, plans.external_name),
        (classes.external_id, plans.external_id),
        (classes.name, plans.name),
    ];
    for ((class_field, class_value), (plan_field, plan_value)) in pairs {
        if class_value.is_empty() {
            continue;
        }
        common::check_catalog_name(causes, &format!("spec.{class_field}"), class_value);
        if plan_value.is_empty() {
            if let Some((other, value)) = plan_given.first() {
                causes.push(Cause::invalid(
                    &format!("spec.{other}"),
                    value,
                    &format!("must specify {plan_field} with {class_field}"),
                ));
            }
        } else {
            common::check_catalog_name(causes, &format!("spec.{plan_field}"), plan_value);
        }
    }
}

/// The status rules the original enforced, so that a controller bug cannot store a status
/// that lies (an operation without its properties, Ready during an operation, ...).
fn check_status(causes: &mut Vec<Cause>, status: &ServiceInstanceStatus, generation: i64) {
    let operation = status.current_operation.as_str();
    let operations = [OPERATION_PROVISION, OPERATION_UPDATE, OPERATION_DEPROVISION];
    if !operation.is_empty() && !operations.contains(&operation) {
        causes.push(Cause::unsupported(
            "status.currentOperation",
            operation,
            &operations,
        ));
    }
    if operation.is_empty() {
        if status.operation_start_time.is_some() {
            causes.push(Cause::forbidden(
                "status.operationStartTime",
                "operationStartTime must not be present when currentOperation is not present",
            ));
        }
        if status.async_op_in_progress {
            causes.push(Cause::forbidden(
                "status.asyncOpInProgress",
                "asyncOpInProgress cannot be true when there is no currentOperation",
            ));
        }
        if status.in_progress_properties.is_some() {
            causes.push(Cause::forbidden(
                "status.inProgressProperties",
                "inProgressProperties must not be present when there is no currentOperation",
            ));
        }
    } else {
        if status.operation_start_time.is_none() && !status.orphan_mitigation_in_progress {
            causes.push(Cause::required_because(
                "status.operationStartTime",
                "operationStartTime is required when currentOperation is present and no orphan mitigation in progress",
            ));
        }
        if status.in_progress_properties.is_none() {
            causes.push(Cause::required_because(
                "status.inProgressProperties",
                &format!("inProgressProperties is required when currentOperation is {operation:?}"),
            ));
        }
        for (i, condition) in status.conditions.iter().enumerate() {
            if condition.type_ == catalog_api::CONDITION_READY
                && condition.status == catalog_api::CONDITION_TRUE
            {
                causes.push(Cause::forbidden(
                    &format!("status.conditions[{i}]"),
                    "Ready cannot be True while an operation is in progress",
                ));
            }
        }
        if status.reconciled_generation == generation {
            causes.push(Cause::forbidden(
                "status.currentOperation",
                "currentOperation must not be present when reconciledGeneration and generation are equal",
            ));
        }
    }
    if status.reconciled_generation > generation {
        causes.push(Cause::invalid(
            "status.reconciledGeneration",
            &status.reconciled_generation.to_string(),
            "reconciledGeneration must not be greater than generation",
        ));
    }
    if !["", catalog_api::PROVISIONED, catalog_api::NOT_PROVISIONED]
        .contains(&status.provision_status.as_str())
    {
        causes.push(Cause::unsupported(
            "status.provisionStatus",
            &status.provision_status,
            &[catalog_api::PROVISIONED, catalog_api::NOT_PROVISIONED],
        ));
    }
    let deprovision = [
        catalog_api::STATUS_NOT_REQUIRED,
        catalog_api::STATUS_REQUIRED,
        catalog_api::STATUS_SUCCEEDED,
        catalog_api::STATUS_FAILED,
    ];
    if !deprovision.contains(&status.deprovision_status.as_str()) {
        causes.push(Cause::unsupported(
            "status.deprovisionStatus",
            &status.deprovision_status,
            &deprovision,
        ));
    }
    for (field, properties) in [
        (
            "status.inProgressProperties",
            &status.in_progress_properties,
        ),
        ("status.externalProperties", &status.external_properties),
    ] {
        let Some(properties) = properties else {
            continue;
        };
        let checksum = &properties.parameter_checksum;
        if properties.parameters.is_some() == checksum.is_empty() {
            causes.push(Cause::forbidden(
                &format!("{field}.parameterChecksum"),
                "parameterChecksum must be given exactly when there are parameters",
            ));
        }
        if !checksum.is_empty()
            && (checksum.len() != 64 || !checksum.chars().all(|c| c.is_ascii_hexdigit()))
        {
            causes.push(Cause::invalid(
                &format!("{field}.parameterChecksum"),
                checksum,
                "parameterChecksum must be 64 hexadecimal digits",
            ));
        }
    }
}

pub struct InstanceStrategy {
    schema: SchemaCheck,
}

impl InstanceStrategy {
    pub fn new() -> Self {
        Self {
            schema: SchemaCheck::new(catalog_api::schema_properties::<ServiceInstance>()),
        }
    }
}

impl Default for InstanceStrategy {
    fn default() -> Self {
        Self::new()
    }
}

/// The plan-naming fields of the instance's scope changed.
fn plan_changed(new: &PlanReference, old: &PlanReference) -> bool {
    cluster_plan(new).given() != cluster_plan(old).given() || plan(new).given() != plan(old).given()
}

/// Names the instance's single-plan class's plan when no plan is named (the original's
/// DefaultServicePlan admission).
async fn default_plan(
    admission: &Admission<'_>,
    object: &mut Value,
    reference: &PlanReference,
) -> Result<(), ApiError> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let cluster = !cluster_class(reference).given().is_empty();
    let (classes, plans, class_kind, plan_kind, namespace) = if cluster {
        (
            cluster_class(reference),
            cluster_plan(reference),
            "ClusterServiceClass",
            "ClusterServicePlan",
            None,
        )
    } else {
        (
            class(reference),
            plan(reference),
            "ServiceClass",
            "ServicePlan",
            admission.namespace,
        )
    };
    if !plans.given().is_empty() {
        return Ok(());
    }
    let Some(&(class_field, class_value)) = classes.given().first() else {
        return Ok(()); // validation reports the missing class
    };
    let class_plural = format!("{}es", class_kind.to_lowercase());
    let plan_plural = format!("{}s", plan_kind.to_lowercase());
    let pointer = match class_field {
        f if f.ends_with("ExternalName") => "/spec/externalName",
        f if f.ends_with("ExternalID") => "/spec/externalID",
        _ => "/metadata/name",
    };
    let found = admission
        .list(GROUP, &class_plural, namespace, |c| {
            c.pointer(pointer).and_then(Value::as_str) == Some(class_value)
        })
        .await?;
    let [found_class] = found.as_slice() else {
        return Err(common::forbidden(
            "ServiceInstance",
            &name,
            &format!(
                "{class_kind} {{{}:{class_value:?}}} does not exist, can not figure out the default {plan_kind}.",
                upper_first(class_field)
            ),
        ));
    };
    let class_name = found_class
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let class_external_name = found_class
        .pointer("/spec/externalName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let class_ref = if cluster {
        "/spec/clusterServiceClassRef/name"
    } else {
        "/spec/serviceClassRef/name"
    };
    let candidates = admission
        .list(GROUP, &plan_plural, namespace, |p| {
            p.pointer(class_ref).and_then(Value::as_str) == Some(class_name)
        })
        .await?;
    let the_plan = match candidates.as_slice() {
        [one] => one,
        [] => {
            return Err(common::forbidden(
                "ServiceInstance",
                &name,
                &format!("no {plan_kind}s found at all for {class_kind} {class_external_name:?}"),
            ));
        }
        more => {
            let mut names: Vec<&str> = more
                .iter()
                .filter_map(|p| p.pointer("/spec/externalName").and_then(Value::as_str))
                .collect();
            names.sort_unstable();
            return Err(common::forbidden(
                "ServiceInstance",
                &name,
                &format!(
                    "{class_kind} (K8S: {class_name} ExternalName: {class_external_name}) has more than one plan ({}), PlanName must be specified",
                    names.join(", ")
                ),
            ));
        }
    };
    let (plan_field, pointer) = match class_field {
        f if f.ends_with("ExternalName") => (plans.external_name.0, "/spec/externalName"),
        f if f.ends_with("ExternalID") => (plans.external_id.0, "/spec/externalID"),
        _ => (plans.name.0, "/metadata/name"),
    };
    let value = the_plan.pointer(pointer).cloned().unwrap_or(Value::Null);
    if let Some(spec) = common::spec_mut(object) {
        spec.insert(plan_field.into(), value);
    }
    Ok(())
}

/// The default plan, for a plan reference that is otherwise well-formed (validation reports
/// the others, naming their fields, rather than a lookup failing on them).
async fn default_plan_if_valid(
    admission: &Admission<'_>,
    object: &mut Value,
    reference: &PlanReference,
) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    check_plan_reference(&mut causes, reference);
    if causes.is_empty() {
        default_plan(admission, object, reference).await
    } else {
        Ok(())
    }
}

fn upper_first(field: &str) -> String {
    let mut chars = field.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The original's ServicePlanChangeValidator: a class that is not `planUpdatable` keeps its
/// instances on their plan.
async fn check_plan_change(
    admission: &Admission<'_>,
    new: &ServiceInstance,
    old: &ServiceInstance,
) -> Result<(), ApiError> {
    if !plan_changed(&new.spec.plan_reference, &old.spec.plan_reference) {
        return Ok(());
    }
    let (plural, namespace, class_name) = match (
        &old.spec.cluster_service_class_ref,
        &old.spec.service_class_ref,
    ) {
        (Some(reference), _) => ("clusterserviceclasses", None, &reference.name),
        (None, Some(reference)) => ("serviceclasses", admission.namespace, &reference.name),
        (None, None) => return Ok(()),
    };
    let Some(class) = admission.get(GROUP, plural, namespace, class_name).await? else {
        return Ok(());
    };
    if class
        .pointer("/spec/planUpdatable")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Ok(());
    }
    let name = new.metadata.name.clone().unwrap_or_default();
    Err(common::forbidden(
        "ServiceInstance",
        &name,
        &format!("The Service Class {class_name} does not allow plan changes."),
    ))
}

/// What `/reference` may do: set the refs once, while no operation runs.
fn check_reference_update(new: &ServiceInstance, old: &ServiceInstance) -> Vec<Cause> {
    let mut causes = Vec::new();
    let status = old.status.clone().unwrap_or_default();
    if !status.current_operation.is_empty() {
        causes.push(Cause::forbidden(
            "status.currentOperation",
            "cannot update references when currentOperation is present",
        ));
    }
    let spec = &new.spec;
    match (&spec.cluster_service_class_ref, &spec.service_class_ref) {
        (None, None) => causes.push(Cause::required_because(
            "spec.clusterServiceClassRef",
            "clusterServiceClassRef or serviceClassRef is required when updating references",
        )),
        (Some(_), Some(_)) => causes.push(Cause::invalid(
            "spec.serviceClassRef",
            "<both>",
            "clusterServiceClassRef and serviceClassRef cannot both be set",
        )),
        _ => {}
    }
    match (&spec.cluster_service_plan_ref, &spec.service_plan_ref) {
        (None, None) => causes.push(Cause::required_because(
            "spec.clusterServicePlanRef",
            "clusterServicePlanRef or servicePlanRef is required when updating references",
        )),
        (Some(_), Some(_)) => causes.push(Cause::invalid(
            "spec.servicePlanRef",
            "<both>",
            "clusterServicePlanRef and servicePlanRef cannot both be set",
        )),
        _ => {}
    }
    let pairs = [
        (
            "spec.clusterServiceClassRef",
            old.spec.cluster_service_class_ref.as_ref().map(|r| &r.name),
            spec.cluster_service_class_ref.as_ref().map(|r| &r.name),
        ),
        (
            "spec.clusterServicePlanRef",
            old.spec.cluster_service_plan_ref.as_ref().map(|r| &r.name),
            spec.cluster_service_plan_ref.as_ref().map(|r| &r.name),
        ),
        (
            "spec.serviceClassRef",
            old.spec.service_class_ref.as_ref().map(|r| &r.name),
            spec.service_class_ref.as_ref().map(|r| &r.name),
        ),
        (
            "spec.servicePlanRef",
            old.spec.service_plan_ref.as_ref().map(|r| &r.name),
            spec.service_plan_ref.as_ref().map(|r| &r.name),
        ),
    ];
    for (field, before, after) in pairs {
        if let Some(before) = before
            && Some(before) != after
        {
            causes.push(Cause::invalid(
                field,
                after.map(String::as_str).unwrap_or_default(),
                "field is immutable",
            ));
        }
    }
    causes
}

#[async_trait::async_trait]
impl Strategy for InstanceStrategy {
    fn initial_status(&self) -> Option<Value> {
        Some(json!({
            "conditions": [], "asyncOpInProgress": false, "orphanMitigationInProgress": false,
            "reconciledGeneration": 0, "observedGeneration": 0,
            "provisionStatus": "", "deprovisionStatus": catalog_api::STATUS_NOT_REQUIRED,
        }))
    }

    async fn admit(
        &self,
        admission: &Admission<'_>,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let checked = self.schema.check(object);
        if !checked.is_empty() {
            return Err(common::invalid("ServiceInstance", object, checked));
        }
        let new: ServiceInstance = common::parse(object)
            .map_err(|causes| common::invalid("ServiceInstance", object, causes))?;
        match old {
            None => {
                common::default_external_id(object);
                common::record_user(admission, object);
                common::add_finalizer(object);
                // The references are the controller's to resolve.
                if let Some(spec) = common::spec_mut(object) {
                    for field in REFERENCE_FIELDS {
                        spec.remove(field.trim_start_matches("/spec/"));
                    }
                }
                default_plan_if_valid(admission, object, &new.spec.plan_reference).await
            }
            Some(old_object) => {
                let old: ServiceInstance = common::parse(old_object)
                    .map_err(|causes| common::invalid("ServiceInstance", object, causes))?;
                if admission.subresource == Some("reference") {
                    let causes = check_reference_update(&new, &old);
                    if !causes.is_empty() {
                        return Err(common::invalid("ServiceInstance", object, causes));
                    }
                    return Ok(());
                }
                check_plan_change(admission, &new, &old).await?;
                if let Some(spec) = common::spec_mut(object) {
                    // Leaving updateRequests out keeps the counter where it was.
                    if new.spec.update_requests == 0 {
                        spec.insert("updateRequests".into(), json!(old.spec.update_requests));
                    }
                    // A new plan is resolved again by the controller.
                    if plan_changed(&new.spec.plan_reference, &old.spec.plan_reference) {
                        spec.remove("clusterServicePlanRef");
                        spec.remove("servicePlanRef");
                    }
                }
                if common::user_spec(object) != common::user_spec(old_object) {
                    common::record_user(admission, object);
                    default_plan_if_valid(admission, object, &new.spec.plan_reference).await?;
                } else {
                    common::keep_user(old_object, object);
                }
                Ok(())
            }
        }
    }

    fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = self.schema.check(object);
        if !causes.is_empty() {
            return causes;
        }
        let instance: ServiceInstance = match common::parse(object) {
            Ok(instance) => instance,
            Err(causes) => return causes,
        };
        let spec = &instance.spec;
        if spec.cluster_service_class_ref.is_some() && spec.service_class_ref.is_some() {
            causes.push(Cause::invalid(
                "spec.serviceClassRef",
                "<both>",
                "ClusterServiceClassRef and ServiceClassRef should never be set simultaneously",
            ));
        }
        if spec.cluster_service_plan_ref.is_some() && spec.service_plan_ref.is_some() {
            causes.push(Cause::invalid(
                "spec.servicePlanRef",
                "<both>",
                "ClusterServicePlanRef and ServicePlanRef should never be set simultaneously",
            ));
        }
        check_plan_reference(&mut causes, &spec.plan_reference);
        common::check_parameters(&mut causes, spec.parameters.as_ref());
        common::check_parameters_from(&mut causes, &spec.parameters_from);
        if spec.update_requests < 0 {
            causes.push(Cause::invalid(
                "spec.updateRequests",
                &spec.update_requests.to_string(),
                "must be greater than or equal to 0",
            ));
        }
        let generation = instance.metadata.generation.unwrap_or(1);
        if let Some(status) = &instance.status {
            check_status(&mut causes, status, generation);
        }
        if let Some(old) = old
            && let Ok(old) = common::parse::<ServiceInstance>(old)
        {
            common::check_immutable(
                &mut causes,
                "spec.externalID",
                &spec.external_id,
                &old.spec.external_id,
            );
            for (new_names, old_names) in [
                (
                    cluster_class(&spec.plan_reference),
                    cluster_class(&old.spec.plan_reference),
                ),
                (class(&spec.plan_reference), class(&old.spec.plan_reference)),
            ] {
                for ((field, after), (_, before)) in [
                    (new_names.external_name, old_names.external_name),
                    (new_names.external_id, old_names.external_id),
                    (new_names.name, old_names.name),
                ] {
                    common::check_immutable(&mut causes, &format!("spec.{field}"), after, before);
                }
            }
            if spec.update_requests < old.spec.update_requests {
                causes.push(Cause::invalid(
                    "spec.updateRequests",
                    &spec.update_requests.to_string(),
                    "new updateRequests value must not be less than the old one",
                ));
            }
        }
        causes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(json: Value) -> PlanReference {
        serde_json::from_value(json).unwrap_or_default()
    }

    fn problems(json: Value) -> Vec<String> {
        let mut causes = Vec::new();
        check_plan_reference(&mut causes, &reference(json));
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_class_and_plan_named_the_same_way_are_accepted() {
        assert!(problems(json!({"clusterServiceClassExternalName": "c", "clusterServicePlanExternalName": "p"})).is_empty());
        assert!(problems(json!({"serviceClassName": "c"})).is_empty());
    }

    #[test]
    fn plan_references_name_the_offending_fields() {
        let none = problems(json!({}));
        assert_eq!(none.len(), 1);
        assert!(
            none[0].starts_with(
                "spec.clusterServiceClassExternalName: Required value: exactly one of"
            ),
            "{none:?}"
        );
        let both_scopes = problems(json!({"clusterServiceClassName": "c", "servicePlanName": "p"}));
        assert!(both_scopes[0].contains("not both"), "{both_scopes:?}");
        let two_classes = problems(
            json!({"clusterServiceClassName": "c", "clusterServiceClassExternalName": "d"}),
        );
        assert_eq!(two_classes.len(), 2, "{two_classes:?}");
        let mixed = problems(
            json!({"clusterServiceClassName": "c", "clusterServicePlanExternalName": "p"}),
        );
        assert_eq!(
            mixed,
            vec![
                "spec.clusterServicePlanExternalName: Invalid value: \"p\": must specify clusterServicePlanName with clusterServiceClassName"
            ]
        );
    }
}
