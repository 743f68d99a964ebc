//! The broker's catalog: the built-in demo catalog, loading one from a YAML or JSON file, and the
//! per-plan behaviour a catalog can ask of this broker.
//!
//! Behaviour lives in the catalog itself, under the vendor-extension key `x-reference-broker` on
//! a service or a plan, so that one file describes both what a platform sees and how the broker
//! acts (a platform keeps such unknown fields as opaque extras).

use std::path::Path;

use osb_client::{Catalog, Plan, Service, validate_catalog};
use serde::Deserialize;
use serde_json::{Value, json};

/// The extension key read from services and plans.
pub const BEHAVIOUR_KEY: &str = "x-reference-broker";

/// How long an asynchronous operation takes unless the plan says otherwise.
pub const DEFAULT_OPERATION_MS: u64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("catalog file {path} is not valid {format}: {message}")]
    Parse {
        path: String,
        format: &'static str,
        message: String,
    },
    #[error("catalog is invalid: {0}")]
    Invalid(#[from] osb_client::CatalogProblems),
    #[error("{path}: {message}")]
    Behaviour { path: String, message: String },
}

/// What the broker does for a plan (from the plan's `x-reference-broker`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct PlanBehaviour {
    /// Provision, update and deprovision asynchronously (`202` + `last_operation`).
    #[serde(default, rename = "async")]
    pub asynchronous: bool,
    /// Bind and unbind asynchronously.
    #[serde(default)]
    pub async_bindings: bool,
    /// How long an asynchronous operation takes.
    #[serde(default)]
    pub operation_ms: Option<u64>,
    /// The `Retry-After` sent while an operation is in progress.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// Provisioning fails with this description (asynchronously: the operation ends `failed`).
    #[serde(default)]
    pub fail_provision: Option<String>,
}

/// What the broker does for a service (from the service's `x-reference-broker`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServiceBehaviour {
    /// Credentials are what the user gave when provisioning (the "user-provided service"):
    /// the `credentials` parameter if present, else all parameters.
    #[serde(default)]
    pub user_provided: bool,
}

/// A validated catalog with each plan's behaviour resolved.
#[derive(Debug, Clone)]
pub struct BrokerCatalog {
    pub catalog: Catalog,
}

impl BrokerCatalog {
    /// Validates the catalog as a platform would, and checks every behaviour block.
    pub fn new(catalog: Catalog) -> Result<Self, CatalogError> {
        let value = serde_json::to_value(&catalog).map_err(|e| CatalogError::Parse {
            path: "<catalog>".into(),
            format: "JSON",
            message: e.to_string(),
        })?;
        validate_catalog(&value)?;
        for (s, service) in catalog.services.iter().enumerate() {
            behaviour::<ServiceBehaviour>(&service.extra).map_err(|message| {
                CatalogError::Behaviour {
                    path: format!("services[{s}].{BEHAVIOUR_KEY}"),
                    message,
                }
            })?;
            for (p, plan) in service.plans.iter().enumerate() {
                behaviour::<PlanBehaviour>(&plan.extra).map_err(|message| {
                    CatalogError::Behaviour {
                        path: format!("services[{s}].plans[{p}].{BEHAVIOUR_KEY}"),
                        message,
                    }
                })?;
            }
        }
        Ok(Self { catalog })
    }

    /// Loads a catalog file: YAML when it ends in `.yaml`/`.yml`, JSON otherwise.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: display.clone(),
            source,
        })?;
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let value: Value = if is_yaml {
            serde_yaml::from_str(&text).map_err(|e| CatalogError::Parse {
                path: display.clone(),
                format: "YAML",
                message: e.to_string(),
            })?
        } else {
            serde_json::from_str(&text).map_err(|e| CatalogError::Parse {
                path: display.clone(),
                format: "JSON",
                message: e.to_string(),
            })?
        };
        // Validate the raw document first: it reports every problem with its path, where a
        // typed parse would stop at the first missing field.
        validate_catalog(&value)?;
        let catalog: Catalog = serde_json::from_value(value).map_err(|e| CatalogError::Parse {
            path: display,
            format: "OSB catalog",
            message: e.to_string(),
        })?;
        Self::new(catalog)
    }

    /// The service and plan for these IDs, if the plan belongs to the service.
    pub fn find(&self, service_id: &str, plan_id: &str) -> Option<(&Service, &Plan)> {
        let service = self.catalog.services.iter().find(|s| s.id == service_id)?;
        Some((service, service.plan(plan_id)?))
    }

    pub fn service(&self, service_id: &str) -> Option<&Service> {
        self.catalog.services.iter().find(|s| s.id == service_id)
    }
}

/// A plan's behaviour; checked valid when the catalog was built.
pub fn plan_behaviour(plan: &Plan) -> PlanBehaviour {
    behaviour(&plan.extra).unwrap_or_default()
}

/// A service's behaviour; checked valid when the catalog was built.
pub fn service_behaviour(service: &Service) -> ServiceBehaviour {
    behaviour(&service.extra).unwrap_or_default()
}

fn behaviour<T: Default + for<'de> Deserialize<'de>>(
    extra: &osb_client::types::Extra,
) -> Result<T, String> {
    match extra.get(BEHAVIOUR_KEY) {
        None => Ok(T::default()),
        Some(value) => serde_json::from_value(value.clone()).map_err(|e| e.to_string()),
    }
}

/// The built-in catalog: what `service-catalog up` registers and what the walkthrough uses.
///
/// - `user-provided-service`: one plan (`default`), credentials are what the user provides.
/// - `mariadb`: a database with a parameter schema and two plans — `10-1-26` (synchronous, with
///   rotatable, expiring bindings) and `10-1-26-ha` (asynchronous provisioning and bindings).
pub fn demo_catalog() -> Catalog {
    let parameters_schema = json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {
            "storageGB": {
                "type": "integer", "minimum": 1, "maximum": 1024,
                "description": "Disk size in GiB"
            },
            "engine": {"type": "string", "enum": ["innodb", "aria"]}
        },
        "additionalProperties": true
    });
    let value = json!({"services": [
        {
            "id": "4f6e6cf6-ffdd-425f-a2c7-3c9258ad2468",
            "name": "user-provided-service",
            "description": "Credentials you provide, delivered to your applications as a Secret",
            "bindable": true,
            "instances_retrievable": true,
            "bindings_retrievable": true,
            "tags": ["user-provided"],
            "metadata": {"displayName": "User-Provided Service"},
            BEHAVIOUR_KEY: {"user_provided": true},
            "plans": [{
                "id": "86064792-7ea2-467b-af93-ac9694d96d52",
                "name": "default",
                "description": "Credentials are the parameters given at provisioning",
                "free": true
            }]
        },
        {
            "id": "3f1b6a2e-6c5d-4b8e-9a55-0d1f7e6f3a10",
            "name": "mariadb",
            "description": "A MariaDB database (simulated)",
            "bindable": true,
            "instances_retrievable": true,
            "bindings_retrievable": true,
            "plan_updateable": true,
            "tags": ["database", "sql"],
            "metadata": {"displayName": "MariaDB"},
            "plans": [
                {
                    "id": "b3e7a9c4-1d2f-4e5a-8b6c-7d8e9f0a1b2c",
                    "name": "10-1-26",
                    "description": "Single node, ready at once; bindings rotate and expire",
                    "free": true,
                    "binding_rotatable": true,
                    "maintenance_info": {"version": "10.1.26", "description": "MariaDB 10.1.26"},
                    "schemas": {
                        "service_instance": {
                            "create": {"parameters": parameters_schema.clone()},
                            "update": {"parameters": parameters_schema.clone()}
                        },
                        "service_binding": {"create": {"parameters": {
                            "type": "object",
                            "properties": {"readOnly": {"type": "boolean"}}
                        }}}
                    }
                },
                {
                    "id": "c4f8b0d5-2e3a-4f6b-9c7d-8e9f0a1b2c3d",
                    "name": "10-1-26-ha",
                    "description": "Replicated; provisioning and binding take a few seconds",
                    "free": false,
                    "maximum_polling_duration": 600,
                    "maintenance_info": {"version": "10.1.26", "description": "MariaDB 10.1.26"},
                    "schemas": {"service_instance": {
                        "create": {"parameters": parameters_schema.clone()},
                        "update": {"parameters": parameters_schema}
                    }},
                    BEHAVIOUR_KEY: {"async": true, "async_bindings": true, "retry_after_secs": 1}
                }
            ]
        }
    ]});
    // The literal above is a valid catalog; the unit test below keeps it so.
    serde_json::from_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalog_is_valid_and_has_what_demos_need() -> Result<(), CatalogError> {
        let catalog = BrokerCatalog::new(demo_catalog())?;
        let services = &catalog.catalog.services;
        assert_eq!(services.len(), 2);
        let ups = &services[0];
        assert_eq!(
            ups.plans.len(),
            1,
            "the walkthrough relies on plan defaulting"
        );
        assert!(service_behaviour(ups).user_provided);
        let db = &services[1];
        assert!(
            db.plans
                .iter()
                .all(|p| p.instance_create_schema().is_some())
        );
        assert!(plan_behaviour(&db.plans[1]).asynchronous);
        assert!(!plan_behaviour(&db.plans[0]).asynchronous);
        assert_eq!(db.plans[0].binding_rotatable, Some(true));
        Ok(())
    }

    #[test]
    fn files_load_as_yaml_or_json_and_bad_ones_say_where() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let yaml = dir.path().join("catalog.yaml");
        std::fs::write(
            &yaml,
            "services:\n- id: s1\n  name: svc\n  description: d\n  bindable: true\n  plans:\n  - {id: p1, name: small, description: d}\n",
        )?;
        assert_eq!(
            BrokerCatalog::load(&yaml)?.catalog.services[0].plans[0].id,
            "p1"
        );

        let json = dir.path().join("catalog.json");
        std::fs::write(
            &json,
            r#"{"services":[{"id":"s1","name":"svc","bindable":true,"plans":[{"name":"p"}]}]}"#,
        )?;
        let error = BrokerCatalog::load(&json)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("services[0].description"), "{error}");
        assert!(error.contains("services[0].plans[0].id"), "{error}");

        std::fs::write(
            &json,
            r#"{"services":[{"id":"s1","name":"svc","description":"d","bindable":true,
            "plans":[{"id":"p","name":"p","description":"d","x-reference-broker":{"asinc":true}}]}]}"#,
        )?;
        let error = BrokerCatalog::load(&json)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("plans[0].x-reference-broker") && error.contains("asinc"),
            "{error}"
        );

        std::fs::write(&json, "{not json")?;
        assert!(matches!(
            BrokerCatalog::load(&json),
            Err(CatalogError::Parse { .. })
        ));
        assert!(matches!(
            BrokerCatalog::load(&dir.path().join("missing.json")),
            Err(CatalogError::Read { .. })
        ));
        Ok(())
    }
}
