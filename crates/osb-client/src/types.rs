//! OSB v2.17 wire types: every request and response body of the spec.
//!
//! Each object keeps the fields it does not know in `extra` (flattened), so vendor extensions
//! survive a parse/serialize round trip. Optional fields are `Option` and omitted when `None`, so
//! what we send is exactly what the caller set.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Fields a type does not model, kept verbatim.
pub type Extra = Map<String, Value>;

/// `GET /v2/catalog` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Catalog {
    pub services: Vec<Service>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A Service Offering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Service {
    pub name: String,
    pub id: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    pub bindable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_retrievable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindings_retrievable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_context_updates: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_client: Option<DashboardClient>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_updateable: Option<bool>,
    pub plans: Vec<Plan>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Service {
    /// The plan with this ID, if the service has it.
    pub fn plan(&self, plan_id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == plan_id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DashboardClient {
    pub id: String,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A Service Plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_rotatable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_updateable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Schemas>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_polling_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Plan {
    /// Whether instances of this plan can be bound: the plan's own flag wins over the service's.
    pub fn is_bindable(&self, service: &Service) -> bool {
        self.bindable.unwrap_or(service.bindable)
    }

    /// Whether instances may move to another plan: the plan's flag wins over the service's.
    pub fn is_updateable(&self, service: &Service) -> bool {
        self.plan_updateable
            .or(service.plan_updateable)
            .unwrap_or(false)
    }

    /// The JSON schema for provision parameters, if the plan declares one.
    pub fn instance_create_schema(&self) -> Option<&Value> {
        self.schemas
            .as_ref()?
            .service_instance
            .as_ref()?
            .create
            .as_ref()?
            .parameters
            .as_ref()
    }

    /// The JSON schema for update parameters, if the plan declares one.
    pub fn instance_update_schema(&self) -> Option<&Value> {
        self.schemas
            .as_ref()?
            .service_instance
            .as_ref()?
            .update
            .as_ref()?
            .parameters
            .as_ref()
    }

    /// The JSON schema for binding parameters, if the plan declares one.
    pub fn binding_create_schema(&self) -> Option<&Value> {
        self.schemas
            .as_ref()?
            .service_binding
            .as_ref()?
            .create
            .as_ref()?
            .parameters
            .as_ref()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Schemas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_instance: Option<ServiceInstanceSchema>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_binding: Option<ServiceBindingSchema>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServiceInstanceSchema {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<InputParametersSchema>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<InputParametersSchema>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServiceBindingSchema {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<InputParametersSchema>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InputParametersSchema {
    /// A JSON Schema (draft 4 or later) the parameters must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MaintenanceInfo {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PUT /v2/service_instances/:instance_id` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProvisionRequest {
    pub service_id: String,
    pub plan_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Body of a provision or update response (200, 201 or 202).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InstanceOperationBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<InstanceMetadata>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InstanceMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `PATCH /v2/service_instances/:instance_id` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UpdateRequest {
    pub service_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_values: Option<PreviousValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PreviousValues {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Body of a deprovision or unbind response: empty, or an async operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AsyncOperationBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `GET /v2/service_instances/:instance_id` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FetchInstanceResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<InstanceMetadata>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// State of an asynchronous operation, as `last_operation` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationState {
    #[serde(rename = "in progress")]
    InProgress,
    #[serde(rename = "succeeded")]
    Succeeded,
    #[serde(rename = "failed")]
    Failed,
}

impl OperationState {
    /// The spec's wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in progress",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// `GET .../last_operation` response body (instances and bindings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastOperationBody {
    pub state: OperationState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_usable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_repeatable: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `PUT .../service_bindings/:binding_id` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BindRequest {
    pub service_id: String,
    pub plan_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_resource: Option<BindResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predecessor_binding_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Body of a binding rotation: a new binding that succeeds `predecessor_binding_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RotateBindingRequest {
    pub predecessor_binding_id: String,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BindResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Body of a bind response, and of `GET .../service_bindings/:binding_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BindingBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BindingMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog_drain_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_service_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<Endpoint>>,
    /// Only in fetch-binding responses: the parameters the binding was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BindingMetadata {
    /// ISO 8601, `yyyy-mm-ddThh:mm:ss.sZ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct VolumeMount {
    pub driver: String,
    pub container_dir: String,
    pub mode: String,
    pub device_type: String,
    pub device: Device,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Device {
    pub volume_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_config: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Endpoint {
    pub host: String,
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The error body every non-2xx response may carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_usable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_repeatable: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_survive_a_round_trip() -> Result<(), serde_json::Error> {
        let wire = json!({
            "services": [{
                "name": "db", "id": "s1", "description": "d", "bindable": true,
                "x-vendor": {"tier": "gold"},
                "plans": [{"id": "p1", "name": "small", "description": "d",
                           "binding_rotatable": true, "maximum_polling_duration": 60,
                           "maintenance_info": {"version": "1.0.0"},
                           "x-cost": 3}]
            }],
            "x-catalog-extension": 1
        });
        let catalog: Catalog = serde_json::from_value(wire.clone())?;
        assert_eq!(
            catalog.services[0].extra["x-vendor"],
            json!({"tier": "gold"})
        );
        assert_eq!(catalog.services[0].plans[0].extra["x-cost"], json!(3));
        assert_eq!(serde_json::to_value(&catalog)?, wire);
        Ok(())
    }

    #[test]
    fn operation_state_uses_the_spec_spelling() -> Result<(), serde_json::Error> {
        let body: LastOperationBody = serde_json::from_str(r#"{"state":"in progress"}"#)?;
        assert_eq!(body.state, OperationState::InProgress);
        assert!(serde_json::from_str::<LastOperationBody>(r#"{"state":"running"}"#).is_err());
        Ok(())
    }

    #[test]
    fn plan_flags_fall_back_to_the_service() {
        let service = Service {
            bindable: true,
            plan_updateable: Some(true),
            ..Default::default()
        };
        let inherits = Plan::default();
        let overrides = Plan {
            bindable: Some(false),
            plan_updateable: Some(false),
            ..Default::default()
        };
        assert!(inherits.is_bindable(&service) && inherits.is_updateable(&service));
        assert!(!overrides.is_bindable(&service) && !overrides.is_updateable(&service));
    }
}
