//! What every catalog kind's strategy shares: the schema check, typed parsing, field-error
//! helpers, the finalizer and the requester's identity.

use apiserver::status::Cause;
use apiserver::{Admission, ApiError};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Checks an object against its kind's schema (types, enums, required fields), so that the
/// typed checks after it see well-formed JSON; each problem names its field.
pub struct SchemaCheck {
    validator: Option<jsonschema::Validator>,
}

impl SchemaCheck {
    pub fn new(properties: Value) -> Self {
        let schema = json!({"type": "object", "properties": properties});
        Self {
            validator: jsonschema::validator_for(&schema).ok(),
        }
    }

    pub fn check(&self, object: &Value) -> Vec<Cause> {
        let Some(validator) = &self.validator else {
            return Vec::new();
        };
        validator
            .iter_errors(object)
            .map(|error| {
                let pointer = error.instance_path().to_string();
                let field = field_path(&pointer);
                if let jsonschema::error::ValidationErrorKind::Required { property } = error.kind()
                {
                    let property = property.as_str().unwrap_or_default();
                    let field = if field.is_empty() {
                        property.to_owned()
                    } else {
                        format!("{field}.{property}")
                    };
                    return Cause::required(&field);
                }
                let value = object
                    .pointer(&pointer)
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default();
                Cause::invalid(&field, &value, &error.to_string())
            })
            .collect()
    }
}

/// `/spec/parametersFrom/0/secretKeyRef` → `spec.parametersFrom[0].secretKeyRef`.
pub fn field_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        if segment.chars().all(|c| c.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
    }
    path
}

/// The typed form of an object that passed the schema check.
pub fn parse<T: DeserializeOwned>(object: &Value) -> Result<T, Vec<Cause>> {
    serde_json::from_value(object.clone())
        .map_err(|e| vec![Cause::invalid("spec", "<object>", &e.to_string())])
}

/// Adds the catalog's finalizer, so that the controller deprovisions, unbinds or cleans up
/// before the object goes.
pub fn add_finalizer(object: &mut Value) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let finalizers = metadata
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !finalizers.is_array() {
        *finalizers = Value::Array(Vec::new());
    }
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == catalog_api::FINALIZER)
    {
        list.push(json!(catalog_api::FINALIZER));
    }
}

/// Records the requester as `spec.userInfo` (the OSB originating identity).
pub fn record_user(admission: &Admission<'_>, object: &mut Value) {
    if let Some(spec) = spec_mut(object) {
        spec.insert("userInfo".into(), admission.user.to_user_info());
    }
}

/// Keeps the stored `spec.userInfo` (an update that changed nothing of the spec).
pub fn keep_user(old: &Value, object: &mut Value) {
    let previous = old.pointer("/spec/userInfo").cloned();
    if let Some(spec) = spec_mut(object) {
        match previous {
            Some(user) => spec.insert("userInfo".into(), user),
            None => spec.remove("userInfo"),
        };
    }
}

/// A random `spec.externalID` when none is given.
pub fn default_external_id(object: &mut Value) {
    let Some(spec) = spec_mut(object) else {
        return;
    };
    let missing = spec
        .get("externalID")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if missing {
        spec.insert("externalID".into(), json!(uuid::Uuid::new_v4().to_string()));
    }
}

/// `spec`, created when missing (`None` only for a non-object).
pub fn spec_mut(object: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let spec = object
        .as_object_mut()?
        .entry("spec")
        .or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    spec.as_object_mut()
}

/// The spec without `userInfo`: what counts as a user's change.
pub fn user_spec(object: &Value) -> Value {
    let mut spec = object.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        map.remove("userInfo");
    }
    spec
}

/// A 422 from admission, shaped like validation's.
pub fn invalid(kind: &str, object: &Value, causes: Vec<Cause>) -> ApiError {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // `ApiError::invalid` names the kind in the details, as kube-apiserver does.
    let subject = apiserver::status::Subject {
        group: catalog_api::GROUP.into(),
        resource: String::new(),
        name,
    };
    ApiError::invalid(kind, subject, causes)
}

/// A 403 as kube-apiserver's admission words it: `<resource> "<name>" is forbidden: <why>`.
pub fn forbidden(kind: &str, name: &str, why: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "{}.{} {name:?} is forbidden: {why}",
            plural_of(kind),
            catalog_api::GROUP
        ),
    )
    .with_subject(apiserver::status::Subject {
        group: catalog_api::GROUP.into(),
        resource: plural_of(kind),
        name: name.into(),
    })
}

fn plural_of(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

/// A DNS-1123 subdomain check with the message Kubernetes gives.
pub fn check_subdomain(causes: &mut Vec<Cause>, field: &str, value: &str) {
    if !apiserver::objects::is_dns_subdomain(value) {
        causes.push(Cause::invalid(
            field,
            value,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
}

/// The original's rule for class and plan names and external names/IDs: non-empty, at most 63
/// characters, anything else goes (broker IDs are often GUIDs with capitals).
pub fn check_catalog_name(causes: &mut Vec<Cause>, field: &str, value: &str) {
    if value.is_empty() {
        causes.push(Cause::invalid(field, value, "must be non-empty"));
    } else if value.len() > 63 {
        causes.push(Cause::invalid(
            field,
            value,
            "must be no more than 63 characters",
        ));
    } else if value == "." || value == ".." || value.contains(['/', '%']) {
        causes.push(Cause::invalid(
            field,
            value,
            "may not be '.' or '..' and may not contain '/' or '%'",
        ));
    }
}

/// `parametersFrom` entries: each names a Secret key.
pub fn check_parameters_from(
    causes: &mut Vec<Cause>,
    sources: &[catalog_api::ParametersFromSource],
) {
    for (i, source) in sources.iter().enumerate() {
        let path = format!("spec.parametersFrom[{i}]");
        match &source.secret_key_ref {
            None => causes.push(Cause::required_because(
                &path,
                "source must not be empty if present",
            )),
            Some(reference) => {
                if reference.name.is_empty() {
                    causes.push(Cause::required_because(
                        &format!("{path}.secretKeyRef.name"),
                        "name is required",
                    ));
                }
                if reference.key.is_empty() {
                    causes.push(Cause::required_because(
                        &format!("{path}.secretKeyRef.key"),
                        "key is required",
                    ));
                }
            }
        }
    }
}

/// Inline `parameters` must be a JSON object.
pub fn check_parameters(causes: &mut Vec<Cause>, parameters: Option<&Value>) {
    if let Some(parameters) = parameters
        && !parameters.is_object()
    {
        causes.push(Cause::invalid(
            "spec.parameters",
            &parameters.to_string(),
            "inline parameters must be a JSON object",
        ));
    }
}

/// A field that may not change once set.
pub fn check_immutable<T: PartialEq + std::fmt::Display>(
    causes: &mut Vec<Cause>,
    field: &str,
    new: T,
    old: T,
) {
    if new != old {
        causes.push(Cause::invalid(
            field,
            &new.to_string(),
            "field is immutable",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointers_become_kubernetes_field_paths() {
        assert_eq!(
            field_path("/spec/parametersFrom/0/secretKeyRef"),
            "spec.parametersFrom[0].secretKeyRef"
        );
        assert_eq!(field_path(""), "");
    }

    #[test]
    fn the_schema_check_names_the_mistyped_field() {
        let check =
            SchemaCheck::new(catalog_api::schema_properties::<catalog_api::ServiceInstance>());
        let causes = check.check(&json!({"spec": {"updateRequests": "many"}}));
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec.updateRequests");
        assert!(
            check
                .check(&json!({"spec": {"updateRequests": 3}}))
                .is_empty()
        );
    }
}
