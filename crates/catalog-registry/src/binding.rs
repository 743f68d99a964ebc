//! ServiceBinding: the secret name default, the transforms' shape, no binding to an instance
//! being deleted, and a spec that does not change once written (the original silently kept the
//! old spec; here a change is refused, naming the field).

use apiserver::status::Cause;
use apiserver::{Admission, ApiError, Strategy};
use catalog_api::{SecretTransform, ServiceBinding};
use serde_json::{Value, json};

use crate::common::{self, SchemaCheck};

pub struct BindingStrategy {
    schema: SchemaCheck,
}

impl BindingStrategy {
    pub fn new() -> Self {
        Self {
            schema: SchemaCheck::new(catalog_api::schema_properties::<ServiceBinding>()),
        }
    }
}

impl Default for BindingStrategy {
    fn default() -> Self {
        Self::new()
    }
}

fn check_transform(
    causes: &mut Vec<Cause>,
    i: usize,
    transform: &SecretTransform,
    binding_namespace: &str,
) {
    let path = format!("spec.secretTransforms[{i}]");
    let given = [
        transform.rename_key.is_some(),
        transform.add_key.is_some(),
        transform.add_keys_from.is_some(),
        transform.remove_key.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        causes.push(Cause::invalid(
            &path,
            &format!("{given} transforms"),
            "exactly one of renameKey, addKey, addKeysFrom or removeKey must be given",
        ));
        return;
    }
    let mut empty: Vec<String> = Vec::new();
    let mut required = |field: &str, value: &str| {
        if value.is_empty() {
            empty.push(format!("{path}.{field}"));
        }
    };
    if let Some(rename) = &transform.rename_key {
        required("renameKey.from", &rename.from);
        required("renameKey.to", &rename.to);
    }
    if let Some(add) = &transform.add_key {
        required("addKey.key", &add.key);
        if add.value.is_none() && add.string_value.is_none() && add.json_path_expression.is_none() {
            required("addKey.value", "");
        }
    }
    if let Some(from) = &transform.add_keys_from {
        match &from.secret_ref {
            Some(reference) => {
                required("addKeysFrom.secretRef.name", &reference.name);
                // The controller reads the Secret with its own rights: another namespace's
                // would leak into a Secret the binding's owner can read.
                if !reference.namespace.is_empty() && reference.namespace != binding_namespace {
                    causes.push(Cause::forbidden(
                        &format!("{path}.addKeysFrom.secretRef.namespace"),
                        &format!(
                            "keys may only be added from Secrets in the binding's own namespace {binding_namespace:?}, not {:?}",
                            reference.namespace
                        ),
                    ));
                }
            }
            None => required("addKeysFrom.secretRef", ""),
        }
    }
    if let Some(remove) = &transform.remove_key {
        required("removeKey.key", &remove.key);
    }
    for field in empty {
        causes.push(Cause::required_because(&field, "must not be empty"));
    }
}

#[async_trait::async_trait]
impl Strategy for BindingStrategy {
    fn initial_status(&self) -> Option<Value> {
        Some(json!({
            "conditions": [], "asyncOpInProgress": false, "orphanMitigationInProgress": false,
            "reconciledGeneration": 0, "unbindStatus": catalog_api::STATUS_NOT_REQUIRED,
        }))
    }

    async fn admit(
        &self,
        admission: &Admission<'_>,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        match old {
            Some(old) => {
                common::keep_user(old, object);
                Ok(())
            }
            None => {
                common::default_external_id(object);
                common::record_user(admission, object);
                common::add_finalizer(object);
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let Some(instance) = object
                    .pointer("/spec/instanceRef/name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                else {
                    return Ok(()); // validation reports it
                };
                let namespace = admission.namespace.unwrap_or_default();
                let stored = admission
                    .get(
                        catalog_api::GROUP,
                        "serviceinstances",
                        admission.namespace,
                        instance,
                    )
                    .await?;
                if stored.is_some_and(|i| i.pointer("/metadata/deletionTimestamp").is_some()) {
                    return Err(common::forbidden(
                        "ServiceBinding",
                        &name,
                        &format!(
                            "ServiceBinding {namespace}/{name} references a ServiceInstance that is being deleted: {namespace}/{instance}"
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    fn default(&self, object: &mut Value) {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let (Some(name), Some(spec)) = (name, common::spec_mut(object)) {
            let missing = spec
                .get("secretName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if missing {
                spec.insert("secretName".into(), json!(name));
            }
        }
    }

    fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = self.schema.check(object);
        if !causes.is_empty() {
            return causes;
        }
        let binding: ServiceBinding = match common::parse(object) {
            Ok(binding) => binding,
            Err(causes) => return causes,
        };
        let spec = &binding.spec;
        if spec.instance_ref.name.is_empty() {
            causes.push(Cause::required_because(
                "spec.instanceRef.name",
                "the instance to bind to is required",
            ));
        } else {
            common::check_subdomain(
                &mut causes,
                "spec.instanceRef.name",
                &spec.instance_ref.name,
            );
        }
        common::check_subdomain(&mut causes, "spec.secretName", &spec.secret_name);
        common::check_parameters(&mut causes, spec.parameters.as_ref());
        common::check_parameters_from(&mut causes, &spec.parameters_from);
        let namespace = binding.metadata.namespace.clone().unwrap_or_default();
        for (i, transform) in spec.secret_transforms.iter().enumerate() {
            check_transform(&mut causes, i, transform, &namespace);
        }
        let status = binding.status.clone().unwrap_or_default();
        let operations = [catalog_api::OPERATION_BIND, catalog_api::OPERATION_UNBIND];
        if !status.current_operation.is_empty()
            && !operations.contains(&status.current_operation.as_str())
        {
            causes.push(Cause::unsupported(
                "status.currentOperation",
                &status.current_operation,
                &operations,
            ));
        }
        if status.current_operation.is_empty() && status.async_op_in_progress {
            causes.push(Cause::forbidden(
                "status.asyncOpInProgress",
                "asyncOpInProgress cannot be true when there is no currentOperation",
            ));
        }
        let unbind = [
            catalog_api::STATUS_NOT_REQUIRED,
            catalog_api::STATUS_REQUIRED,
            catalog_api::STATUS_SUCCEEDED,
            catalog_api::STATUS_FAILED,
        ];
        if !unbind.contains(&status.unbind_status.as_str()) {
            causes.push(Cause::unsupported(
                "status.unbindStatus",
                &status.unbind_status,
                &unbind,
            ));
        }
        if let Some(old) = old {
            // The spec is written once: a changed field is refused, by name.
            let before = common::user_spec(old);
            let after = common::user_spec(object);
            let fields: std::collections::BTreeSet<&String> = before
                .as_object()
                .into_iter()
                .chain(after.as_object())
                .flat_map(|m| m.keys())
                .collect();
            for field in fields {
                if before.get(field) != after.get(field) {
                    let value = after.get(field).map(Value::to_string).unwrap_or_default();
                    causes.push(Cause::invalid(
                        &format!("spec.{field}"),
                        &value,
                        "field is immutable",
                    ));
                }
            }
        }
        causes
    }
}
