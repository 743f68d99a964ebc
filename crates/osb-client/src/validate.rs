//! Validation of what brokers send (catalogs) and of what platforms send them (parameters).
//!
//! Catalog validation works on the raw JSON, not on [`Catalog`](crate::Catalog), so that it can
//! report every problem at once — a missing field does not hide a duplicate ID elsewhere — each
//! with the JSON path a broker operator needs to find it.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

/// One thing wrong with a catalog, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProblem {
    /// A JSON path such as `services[0].plans[1].id`.
    pub path: String,
    pub message: String,
}

/// Every problem found in a catalog (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProblems(pub Vec<CatalogProblem>);

impl fmt::Display for CatalogProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", problem.path, problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for CatalogProblems {}

#[derive(Default)]
struct Problems(Vec<CatalogProblem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(CatalogProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// A required, non-empty string field; returns it when valid.
    fn required_string<'a>(
        &mut self,
        object: &'a Map<String, Value>,
        path: &str,
        field: &str,
    ) -> Option<&'a str> {
        match object.get(field) {
            None | Some(Value::Null) => {
                self.add(format!("{path}.{field}"), "required field is missing");
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.add(format!("{path}.{field}"), "must be a non-empty string");
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.add(format!("{path}.{field}"), "must be a string");
                None
            }
        }
    }

    fn optional_type(
        &mut self,
        object: &Map<String, Value>,
        path: &str,
        field: &str,
        expected: JsonType,
    ) {
        if let Some(value) = object.get(field)
            && !value.is_null()
            && !expected.matches(value)
        {
            self.add(
                format!("{path}.{field}"),
                format!("must be {}", expected.describe()),
            );
        }
    }

    /// Records `value` as seen at `path`; a second sighting is a duplicate.
    fn unique<'a>(
        &mut self,
        seen: &mut HashMap<&'a str, String>,
        value: Option<&'a str>,
        path: &str,
        field: &str,
        what: &str,
    ) {
        if let Some(value) = value
            && let Some(first) = seen.insert(value, path.to_owned())
        {
            self.add(
                format!("{path}.{field}"),
                format!("duplicate {what} {value:?} (also at {first})"),
            );
        }
    }
}

#[derive(Clone, Copy)]
enum JsonType {
    Bool,
    Object,
    StringArray,
    NonNegativeInteger,
}

impl JsonType {
    fn matches(self, value: &Value) -> bool {
        match self {
            Self::Bool => value.is_boolean(),
            Self::Object => value.is_object(),
            Self::StringArray => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Self::NonNegativeInteger => value.is_u64(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Bool => "a boolean",
            Self::Object => "an object",
            Self::StringArray => "an array of strings",
            Self::NonNegativeInteger => "a non-negative integer",
        }
    }
}

/// Checks a catalog against the spec: required fields and their types, unique service and plan
/// IDs across the catalog, unique service names, unique plan names within a service, at least
/// one plan per service, well-formed `maintenance_info`, and compilable parameter schemas.
pub fn validate_catalog(catalog: &Value) -> Result<(), CatalogProblems> {
    let mut problems = Problems::default();
    let Some(root) = catalog.as_object() else {
        problems.add("$", "the catalog must be a JSON object");
        return Err(CatalogProblems(problems.0));
    };
    let services = match root.get("services") {
        Some(Value::Array(services)) => services.as_slice(),
        None => {
            problems.add("services", "required field is missing");
            &[]
        }
        Some(_) => {
            problems.add("services", "must be an array");
            &[]
        }
    };

    let mut service_ids: HashMap<&str, String> = HashMap::new();
    let mut service_names: HashMap<&str, String> = HashMap::new();
    let mut plan_ids: HashMap<&str, String> = HashMap::new();

    for (s, service) in services.iter().enumerate() {
        let path = format!("services[{s}]");
        let Some(service) = service.as_object() else {
            problems.add(path, "must be an object");
            continue;
        };
        let id = problems.required_string(service, &path, "id");
        problems.unique(&mut service_ids, id, &path, "id", "service id");
        let name = problems.required_string(service, &path, "name");
        problems.unique(&mut service_names, name, &path, "name", "service name");
        problems.required_string(service, &path, "description");
        match service.get("bindable") {
            Some(Value::Bool(_)) => {}
            None => problems.add(format!("{path}.bindable"), "required field is missing"),
            Some(_) => problems.add(format!("{path}.bindable"), "must be a boolean"),
        }
        for field in [
            "instances_retrievable",
            "bindings_retrievable",
            "allow_context_updates",
            "plan_updateable",
        ] {
            problems.optional_type(service, &path, field, JsonType::Bool);
        }
        for field in ["tags", "requires"] {
            problems.optional_type(service, &path, field, JsonType::StringArray);
        }
        problems.optional_type(service, &path, "metadata", JsonType::Object);
        if let Some(client) = service.get("dashboard_client").filter(|v| !v.is_null()) {
            let client_path = format!("{path}.dashboard_client");
            match client.as_object() {
                Some(client) => {
                    problems.required_string(client, &client_path, "id");
                    problems.required_string(client, &client_path, "secret");
                }
                None => problems.add(client_path, "must be an object"),
            }
        }

        let plans = match service.get("plans") {
            Some(Value::Array(plans)) if plans.is_empty() => {
                problems.add(
                    format!("{path}.plans"),
                    "a service must have at least one plan",
                );
                &[][..]
            }
            Some(Value::Array(plans)) => plans.as_slice(),
            None => {
                problems.add(format!("{path}.plans"), "required field is missing");
                &[]
            }
            Some(_) => {
                problems.add(format!("{path}.plans"), "must be an array");
                &[]
            }
        };
        let mut plan_names: HashMap<&str, String> = HashMap::new();
        for (p, plan) in plans.iter().enumerate() {
            let plan_path = format!("{path}.plans[{p}]");
            let Some(plan) = plan.as_object() else {
                problems.add(plan_path, "must be an object");
                continue;
            };
            validate_plan(plan, &plan_path, &mut problems);
            let id = plan.get("id").and_then(Value::as_str);
            problems.unique(&mut plan_ids, id, &plan_path, "id", "plan id");
            let name = plan.get("name").and_then(Value::as_str);
            problems.unique(&mut plan_names, name, &plan_path, "name", "plan name");
        }
    }

    if problems.0.is_empty() {
        Ok(())
    } else {
        Err(CatalogProblems(problems.0))
    }
}

fn validate_plan(plan: &Map<String, Value>, path: &str, problems: &mut Problems) {
    problems.required_string(plan, path, "id");
    problems.required_string(plan, path, "name");
    problems.required_string(plan, path, "description");
    for field in ["free", "bindable", "binding_rotatable", "plan_updateable"] {
        problems.optional_type(plan, path, field, JsonType::Bool);
    }
    problems.optional_type(plan, path, "metadata", JsonType::Object);
    problems.optional_type(
        plan,
        path,
        "maximum_polling_duration",
        JsonType::NonNegativeInteger,
    );
    if let Some(info) = plan.get("maintenance_info").filter(|v| !v.is_null()) {
        let info_path = format!("{path}.maintenance_info");
        match info.as_object() {
            Some(info) => {
                if let Some(version) = info.get("version").and_then(Value::as_str) {
                    if !is_semver(version) {
                        problems.add(
                            format!("{info_path}.version"),
                            format!("{version:?} is not a semantic version (MAJOR.MINOR.PATCH)"),
                        );
                    }
                } else {
                    problems.required_string(info, &info_path, "version");
                }
            }
            None => problems.add(info_path, "must be an object"),
        }
    }
    let Some(schemas) = plan.get("schemas").filter(|v| !v.is_null()) else {
        return;
    };
    let schemas_path = format!("{path}.schemas");
    let Some(schemas) = schemas.as_object() else {
        problems.add(schemas_path, "must be an object");
        return;
    };
    for (resource, actions) in [
        ("service_instance", &["create", "update"][..]),
        ("service_binding", &["create"][..]),
    ] {
        let Some(section) = schemas.get(resource).filter(|v| !v.is_null()) else {
            continue;
        };
        let section_path = format!("{schemas_path}.{resource}");
        let Some(section) = section.as_object() else {
            problems.add(section_path, "must be an object");
            continue;
        };
        for action in actions {
            let Some(input) = section.get(*action).filter(|v| !v.is_null()) else {
                continue;
            };
            let input_path = format!("{section_path}.{action}");
            let Some(parameters) = input.get("parameters").filter(|v| !v.is_null()) else {
                continue;
            };
            if let Err(reason) = compile_schema(parameters) {
                problems.add(
                    format!("{input_path}.parameters"),
                    format!("not a valid JSON schema: {reason}"),
                );
            }
        }
    }
}

/// `MAJOR.MINOR.PATCH` with optional `-pre` and `+build` parts, numbers without leading zeros.
fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("a schema must be an object or a boolean".into());
    }
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

/// One way parameters fail their schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterProblem {
    /// JSON pointer into the parameters (`/storageGB`), empty for the whole object.
    pub parameter: String,
    pub message: String,
}

impl fmt::Display for ParameterProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parameter.is_empty() {
            write!(f, "parameters: {}", self.message)
        } else {
            write!(f, "parameter {}: {}", self.parameter, self.message)
        }
    }
}

/// Why parameters could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParametersError {
    #[error("the plan's parameter schema is invalid: {0}")]
    InvalidSchema(String),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ParameterProblem>),
}

/// Validates parameters against a plan's JSON schema, naming each offending parameter.
pub fn validate_parameters(schema: &Value, parameters: &Value) -> Result<(), ParametersError> {
    let validator = compile_schema(schema).map_err(ParametersError::InvalidSchema)?;
    let problems: Vec<ParameterProblem> = validator
        .iter_errors(parameters)
        .map(|error| ParameterProblem {
            parameter: error.instance_path().to_string(),
            message: error.to_string(),
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ParametersError::Invalid(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(result: Result<(), CatalogProblems>) -> Vec<String> {
        match result {
            Ok(()) => Vec::new(),
            Err(problems) => problems.0.into_iter().map(|p| p.path).collect(),
        }
    }

    fn plan(id: &str, name: &str) -> Value {
        json!({"id": id, "name": name, "description": "a plan"})
    }

    #[test]
    fn a_valid_catalog_passes() {
        let catalog = json!({"services": [{
            "id": "s1", "name": "db", "description": "d", "bindable": true,
            "plans": [plan("p1", "small"), {
                "id": "p2", "name": "large", "description": "d",
                "maintenance_info": {"version": "1.2.3-rc.1+build"},
                "schemas": {"service_instance": {"create": {"parameters": {
                    "$schema": "http://json-schema.org/draft-04/schema#",
                    "type": "object", "properties": {"size": {"type": "integer"}}}}}}
            }]
        }]});
        assert_eq!(validate_catalog(&catalog), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let catalog = json!({"services": [
            {"id": "s1", "name": "db", "description": "d", "bindable": true,
             "plans": [plan("p1", "small"), {"name": "small", "description": "no id"}]},
            {"id": "s1", "name": "db", "description": "", "bindable": "yes",
             "plans": [plan("p1", "other"), {
                 "id": "p3", "name": "bad-schema", "description": "d",
                 "maximum_polling_duration": -5,
                 "maintenance_info": {"version": "one"},
                 "schemas": {"service_binding": {"create": {"parameters": {"type": 12}}}}}]},
            {"id": "s3", "name": "empty", "description": "d", "bindable": false, "plans": []}
        ]});
        assert_eq!(
            paths(validate_catalog(&catalog)),
            vec![
                "services[0].plans[1].id",
                "services[0].plans[1].name",
                "services[1].id",
                "services[1].name",
                "services[1].description",
                "services[1].bindable",
                "services[1].plans[0].id",
                "services[1].plans[1].maximum_polling_duration",
                "services[1].plans[1].maintenance_info.version",
                "services[1].plans[1].schemas.service_binding.create.parameters",
                "services[2].plans",
            ]
        );
    }

    #[test]
    fn a_non_object_catalog_is_one_problem() {
        assert_eq!(paths(validate_catalog(&json!([]))), vec!["$"]);
        assert_eq!(paths(validate_catalog(&json!({}))), vec!["services"]);
    }

    #[test]
    fn parameters_are_checked_against_the_schema_and_named() {
        let schema = json!({"type": "object",
            "properties": {"storageGB": {"type": "integer", "minimum": 1}},
            "required": ["storageGB"]});
        assert_eq!(
            validate_parameters(&schema, &json!({"storageGB": 5})),
            Ok(())
        );
        let Err(ParametersError::Invalid(problems)) =
            validate_parameters(&schema, &json!({"storageGB": 0}))
        else {
            panic!("a value under the minimum must be rejected");
        };
        assert_eq!(problems[0].parameter, "/storageGB");
        assert!(
            problems[0].to_string().contains("minimum"),
            "{}",
            problems[0]
        );
        assert!(validate_parameters(&schema, &json!({})).is_err());
        assert!(matches!(
            validate_parameters(&json!({"type": 3}), &json!({})),
            Err(ParametersError::InvalidSchema(_))
        ));
    }
}
