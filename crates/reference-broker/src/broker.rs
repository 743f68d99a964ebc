//! The broker's behaviour, independent of HTTP: the spec's rules for each endpoint, including its
//! idempotency rules (the same request again → `200`, a conflicting one → `409`), asynchronous
//! operations that complete after a delay, binding rotation and `maintenance_info` checks.
//!
//! Every method answers with a [`Reply`] (status, JSON body, optional `Retry-After`); the HTTP
//! layer only translates. Asynchronous operations are settled lazily: whenever a resource is
//! touched, an operation whose time has come is completed first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use osb_client::{
    BindRequest, BindingBody, BindingMetadata, MaintenanceInfo, OperationState, Plan,
    ProvisionRequest, RotateBindingRequest, Service, UpdateRequest, validate_parameters,
};
use serde_json::{Map, Value, json};

use crate::catalog::{
    BrokerCatalog, DEFAULT_OPERATION_MS, PlanBehaviour, plan_behaviour, service_behaviour,
};
use crate::store::{
    BindingRecord, InstanceRecord, OperationKind, OperationRecord, PendingUpdate, Phase, Store,
    StoreError,
};

/// How long a rotatable binding's credentials live, and when to renew them.
const BINDING_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
const BINDING_RENEW_MARGIN: Duration = Duration::from_secs(24 * 3600);

/// One answer of the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after_secs: Option<u64>,
}

impl Reply {
    pub fn new(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            retry_after_secs: None,
        }
    }

    /// An OSB error body: `{"error": code, "description": ...}`.
    pub fn error(status: StatusCode, code: Option<&str>, description: impl Into<String>) -> Self {
        let mut body = Map::new();
        if let Some(code) = code {
            body.insert("error".into(), json!(code));
        }
        body.insert("description".into(), json!(description.into()));
        Self::new(status, Value::Object(body))
    }

    fn bad_request(description: impl Into<String>) -> Self {
        Self::error(StatusCode::BAD_REQUEST, None, description)
    }

    fn empty(status: StatusCode) -> Self {
        Self::new(status, json!({}))
    }

    fn async_required() -> Self {
        Self::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("AsyncRequired"),
            "This plan's operations are asynchronous; retry with accepts_incomplete=true",
        )
    }

    fn concurrency(what: &str) -> Self {
        Self::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("ConcurrencyError"),
            format!("Another operation on {what} is in progress"),
        )
    }
}

impl From<StoreError> for Reply {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "cannot persist broker state");
        Self::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            format!("the broker could not save its state: {error}"),
        )
    }
}

type Answer = Result<Reply, Reply>;

/// Options that change how the broker acts, for tests and demos.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Overrides every plan's asynchronous operation duration.
    pub operation_ms: Option<u64>,
}

pub struct Broker {
    /// Shared so a method can hold a plan while it changes instances.
    catalog: Arc<BrokerCatalog>,
    instances: HashMap<String, InstanceRecord>,
    bindings: HashMap<(String, String), BindingRecord>,
    store: Store,
    tuning: Tuning,
    /// Base URL of this broker, for dashboard URLs.
    public_url: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn short(id: &str) -> String {
    id.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect()
}

fn operation_id(kind: &str) -> String {
    format!("{kind}-{}", uuid::Uuid::new_v4().simple())
}

/// `None` and `{}` both mean "no parameters".
fn normalized(parameters: &Option<Value>) -> Option<&Value> {
    parameters
        .as_ref()
        .filter(|p| !p.is_null() && p.as_object().is_none_or(|o| !o.is_empty()))
}

fn check_parameters(schema: Option<&Value>, parameters: &Option<Value>) -> Result<(), Reply> {
    let (Some(schema), Some(parameters)) = (schema, parameters.as_ref()) else {
        return Ok(());
    };
    validate_parameters(schema, parameters)
        .map_err(|e| Reply::bad_request(format!("invalid parameters: {e}")))
}

fn check_maintenance_info(requested: Option<&MaintenanceInfo>, plan: &Plan) -> Result<(), Reply> {
    let Some(requested) = requested else {
        return Ok(());
    };
    let current = plan.maintenance_info.as_ref().map(|m| m.version.as_str());
    if current == Some(requested.version.as_str()) {
        return Ok(());
    }
    Err(Reply::error(
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("MaintenanceInfoConflict"),
        format!(
            "maintenance_info.version {:?} does not match the plan's {}",
            requested.version,
            current.map_or("(none)".to_owned(), |v| format!("{v:?}"))
        ),
    ))
}

fn parse_body<T: for<'de> serde::Deserialize<'de>>(body: &Value) -> Result<T, Reply> {
    serde_json::from_value(body.clone())
        .map_err(|e| Reply::bad_request(format!("invalid request body: {e}")))
}

fn operation_reply(operation: &OperationRecord) -> Reply {
    let mut reply = Reply::new(StatusCode::ACCEPTED, json!({"operation": operation.id}));
    reply.retry_after_secs = Some(operation.retry_after_secs);
    reply
}

impl Broker {
    /// Loads the persisted state; operations still in progress resume where they were.
    pub fn new(
        catalog: BrokerCatalog,
        store: Store,
        tuning: Tuning,
        public_url: String,
    ) -> Result<Self, StoreError> {
        let instances = store
            .instances()?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        let bindings = store
            .bindings()?
            .into_iter()
            .map(|b| ((b.instance_id.clone(), b.id.clone()), b))
            .collect();
        Ok(Self {
            catalog: Arc::new(catalog),
            instances,
            bindings,
            store,
            tuning,
            public_url,
        })
    }

    pub fn catalog(&self) -> &BrokerCatalog {
        &self.catalog
    }

    fn new_operation(
        &self,
        kind: OperationKind,
        behaviour: &PlanBehaviour,
        asynchronous: bool,
    ) -> OperationRecord {
        let name = match kind {
            OperationKind::Provision => "provision",
            OperationKind::Update => "update",
            OperationKind::Deprovision => "deprovision",
            OperationKind::Bind => "bind",
            OperationKind::Unbind => "unbind",
        };
        OperationRecord {
            id: operation_id(name),
            kind,
            state: if asynchronous {
                OperationState::InProgress
            } else {
                OperationState::Succeeded
            },
            started_ms: now_ms(),
            duration_ms: self
                .tuning
                .operation_ms
                .or(behaviour.operation_ms)
                .unwrap_or(DEFAULT_OPERATION_MS),
            retry_after_secs: behaviour.retry_after_secs.unwrap_or(1),
            failure: None,
            update: None,
        }
    }

    /// Completes the instance's operation if its time has come.
    fn settle_instance(&mut self, instance_id: &str) -> Result<(), Reply> {
        let Some(instance) = self.instances.get(instance_id) else {
            return Ok(());
        };
        let Some(operation) = &instance.operation else {
            return Ok(());
        };
        if !operation.is_due(now_ms()) {
            return Ok(());
        }
        let mut settled = instance.clone();
        let Some(operation) = settled.operation.as_mut() else {
            return Ok(());
        };
        operation.state = if operation.failure.is_some() {
            OperationState::Failed
        } else {
            OperationState::Succeeded
        };
        match operation.kind {
            OperationKind::Provision => {
                settled.phase = if operation.failure.is_some() {
                    Phase::Failed
                } else {
                    Phase::Ready
                };
            }
            OperationKind::Update => {
                if let Some(update) = operation.update.take() {
                    settled.plan_id = update.plan_id;
                    settled.parameters = update.parameters;
                    settled.maintenance_info = update.maintenance_info;
                }
                settled.phase = Phase::Ready;
            }
            OperationKind::Deprovision => settled.phase = Phase::Gone,
            OperationKind::Bind | OperationKind::Unbind => {}
        }
        if settled.phase == Phase::Gone {
            self.store.delete_instance(instance_id, Some(&settled))?;
            self.bindings.retain(|(i, _), _| i != instance_id);
        } else {
            self.store.put_instance(&settled)?;
        }
        self.instances.insert(instance_id.to_owned(), settled);
        Ok(())
    }

    fn settle_binding(&mut self, key: &(String, String)) -> Result<(), Reply> {
        let Some(binding) = self.bindings.get(key) else {
            return Ok(());
        };
        let Some(operation) = &binding.operation else {
            return Ok(());
        };
        if !operation.is_due(now_ms()) {
            return Ok(());
        }
        let mut settled = binding.clone();
        if let Some(operation) = settled.operation.as_mut() {
            operation.state = OperationState::Succeeded;
            settled.phase = match operation.kind {
                OperationKind::Unbind => Phase::Gone,
                _ => Phase::Ready,
            };
        }
        self.store.put_binding(&settled)?;
        self.bindings.insert(key.clone(), settled);
        Ok(())
    }

    pub fn provision(
        &mut self,
        instance_id: &str,
        body: &Value,
        accepts_incomplete: bool,
    ) -> Answer {
        let request: ProvisionRequest = parse_body(body)?;
        let catalog = self.catalog.clone();
        let Some((_, plan)) = catalog.find(&request.service_id, &request.plan_id) else {
            return Err(Reply::bad_request(format!(
                "plan {:?} of service {:?} is not in the catalog",
                request.plan_id, request.service_id
            )));
        };
        check_maintenance_info(request.maintenance_info.as_ref(), plan)?;
        check_parameters(plan.instance_create_schema(), &request.parameters)?;
        let behaviour = plan_behaviour(plan);

        self.settle_instance(instance_id)?;
        if let Some(existing) = self.instances.get(instance_id) {
            let identical = existing.service_id == request.service_id
                && existing.plan_id == request.plan_id
                && normalized(&existing.parameters) == normalized(&request.parameters);
            match (existing.phase, &existing.operation) {
                (Phase::Gone | Phase::Failed, _) => {} // replaced below
                (_, Some(op)) if op.kind != OperationKind::Provision && op.in_progress() => {
                    return Err(Reply::concurrency("this instance"));
                }
                _ if !identical => return Err(Reply::empty(StatusCode::CONFLICT)),
                (Phase::Creating, Some(op)) => return Ok(operation_reply(op)),
                _ => {
                    let mut body = Map::new();
                    if let Some(url) = &existing.dashboard_url {
                        body.insert("dashboard_url".into(), json!(url));
                    }
                    return Ok(Reply::new(StatusCode::OK, Value::Object(body)));
                }
            }
        }
        if behaviour.asynchronous && !accepts_incomplete {
            return Err(Reply::async_required());
        }
        if !behaviour.asynchronous
            && let Some(reason) = &behaviour.fail_provision
        {
            return Err(Reply::error(StatusCode::BAD_REQUEST, None, reason.clone()));
        }
        let mut operation =
            self.new_operation(OperationKind::Provision, &behaviour, behaviour.asynchronous);
        operation.failure = behaviour.fail_provision.clone();
        let record = InstanceRecord {
            id: instance_id.to_owned(),
            service_id: request.service_id,
            plan_id: request.plan_id,
            maintenance_info: request
                .maintenance_info
                .or_else(|| plan.maintenance_info.clone()),
            parameters: request.parameters,
            context: request.context,
            dashboard_url: Some(format!("{}/dashboard/{instance_id}", self.public_url)),
            phase: if behaviour.asynchronous {
                Phase::Creating
            } else {
                Phase::Ready
            },
            operation: Some(operation.clone()),
        };
        // A replaced (failed or gone) instance takes its bindings with it.
        self.store.delete_instance(instance_id, Some(&record))?;
        self.bindings.retain(|(i, _), _| i != instance_id);
        let dashboard_url = record.dashboard_url.clone();
        self.instances.insert(instance_id.to_owned(), record);
        if behaviour.asynchronous {
            let mut reply = operation_reply(&operation);
            if let Some(map) = reply.body.as_object_mut() {
                map.insert("dashboard_url".into(), json!(dashboard_url));
            }
            Ok(reply)
        } else {
            Ok(Reply::new(
                StatusCode::CREATED,
                json!({"dashboard_url": dashboard_url}),
            ))
        }
    }

    pub fn update(&mut self, instance_id: &str, body: &Value, accepts_incomplete: bool) -> Answer {
        let request: UpdateRequest = parse_body(body)?;
        self.settle_instance(instance_id)?;
        let Some(instance) = self
            .instances
            .get(instance_id)
            .filter(|i| i.phase != Phase::Gone)
        else {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                None,
                format!("instance {instance_id:?} does not exist"),
            ));
        };
        match instance.phase {
            Phase::Failed => {
                return Err(Reply::error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    None,
                    "the instance failed to provision; deprovision it",
                ));
            }
            Phase::Creating => return Err(Reply::concurrency("this instance")),
            _ => {}
        }
        if instance
            .operation
            .as_ref()
            .is_some_and(|op| op.in_progress())
        {
            return Err(Reply::concurrency("this instance"));
        }
        if request.service_id != instance.service_id {
            return Err(Reply::bad_request(format!(
                "service_id {:?} is not this instance's service {:?}",
                request.service_id, instance.service_id
            )));
        }
        let target_plan_id = request
            .plan_id
            .clone()
            .unwrap_or_else(|| instance.plan_id.clone());
        let Some((service, target_plan)) = self.catalog.find(&instance.service_id, &target_plan_id)
        else {
            return Err(Reply::bad_request(format!(
                "plan {target_plan_id:?} is not a plan of this instance's service"
            )));
        };
        let current_behaviour = self
            .catalog
            .find(&instance.service_id, &instance.plan_id)
            .map(|(_, plan)| plan_behaviour(plan))
            .unwrap_or_default();
        if target_plan_id != instance.plan_id && !target_plan.is_updateable(service) {
            return Err(Reply::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                format!(
                    "plan changes are not supported for service {:?}",
                    service.name
                ),
            ));
        }
        check_maintenance_info(request.maintenance_info.as_ref(), target_plan)?;
        check_parameters(target_plan.instance_update_schema(), &request.parameters)?;
        let update = PendingUpdate {
            plan_id: target_plan_id,
            parameters: request.parameters.or_else(|| instance.parameters.clone()),
            maintenance_info: request
                .maintenance_info
                .or_else(|| instance.maintenance_info.clone()),
        };
        let asynchronous = current_behaviour.asynchronous;
        if asynchronous && !accepts_incomplete {
            return Err(Reply::async_required());
        }
        let mut record = instance.clone();
        let mut operation =
            self.new_operation(OperationKind::Update, &current_behaviour, asynchronous);
        if asynchronous {
            operation.update = Some(update);
        } else {
            record.plan_id = update.plan_id;
            record.parameters = update.parameters;
            record.maintenance_info = update.maintenance_info;
        }
        record.operation = Some(operation.clone());
        self.store.put_instance(&record)?;
        let dashboard_url = record.dashboard_url.clone();
        self.instances.insert(instance_id.to_owned(), record);
        if asynchronous {
            Ok(operation_reply(&operation))
        } else {
            Ok(Reply::new(
                StatusCode::OK,
                json!({"dashboard_url": dashboard_url}),
            ))
        }
    }

    pub fn deprovision(
        &mut self,
        instance_id: &str,
        service_id: Option<&str>,
        plan_id: Option<&str>,
        accepts_incomplete: bool,
    ) -> Answer {
        if service_id.is_none() || plan_id.is_none() {
            return Err(Reply::bad_request(
                "service_id and plan_id query parameters are required",
            ));
        }
        self.settle_instance(instance_id)?;
        let Some(instance) = self
            .instances
            .get(instance_id)
            .filter(|i| i.phase != Phase::Gone)
        else {
            return Err(Reply::empty(StatusCode::GONE));
        };
        let behaviour = self
            .catalog
            .find(&instance.service_id, &instance.plan_id)
            .map(|(_, plan)| plan_behaviour(plan))
            .unwrap_or_default();
        let in_progress = instance.operation.as_ref().filter(|op| op.in_progress());
        match in_progress {
            // Asking again while our deprovision runs is the same request: same answer.
            Some(op) if op.kind == OperationKind::Deprovision => return Ok(operation_reply(op)),
            Some(_) => return Err(Reply::concurrency("this instance")),
            None => {}
        }
        // A failed instance has nothing to wait for.
        let asynchronous = behaviour.asynchronous && instance.phase != Phase::Failed;
        if asynchronous && !accepts_incomplete {
            return Err(Reply::async_required());
        }
        if !asynchronous {
            self.store.delete_instance(instance_id, None)?;
            self.instances.remove(instance_id);
            self.bindings.retain(|(i, _), _| i != instance_id);
            return Ok(Reply::empty(StatusCode::OK));
        }
        let operation = self.new_operation(OperationKind::Deprovision, &behaviour, true);
        let mut record = instance.clone();
        record.operation = Some(operation.clone());
        self.store.put_instance(&record)?;
        self.instances.insert(instance_id.to_owned(), record);
        Ok(operation_reply(&operation))
    }

    pub fn fetch_instance(&mut self, instance_id: &str) -> Answer {
        self.settle_instance(instance_id)?;
        let not_found = || {
            Reply::error(
                StatusCode::NOT_FOUND,
                None,
                format!("instance {instance_id:?} does not exist"),
            )
        };
        let instance = self.instances.get(instance_id).ok_or_else(not_found)?;
        match instance.phase {
            Phase::Ready => {}
            _ => return Err(not_found()),
        }
        if instance
            .operation
            .as_ref()
            .is_some_and(|op| op.in_progress())
        {
            return Err(Reply::concurrency("this instance"));
        }
        let mut body = json!({
            "service_id": instance.service_id,
            "plan_id": instance.plan_id,
            "dashboard_url": instance.dashboard_url,
        });
        if let Some(parameters) = &instance.parameters {
            body["parameters"] = parameters.clone();
        }
        if let Some(info) = &instance.maintenance_info {
            body["maintenance_info"] = json!(info);
        }
        Ok(Reply::new(StatusCode::OK, body))
    }

    pub fn instance_last_operation(
        &mut self,
        instance_id: &str,
        operation: Option<&str>,
    ) -> Answer {
        self.settle_instance(instance_id)?;
        let Some(instance) = self.instances.get(instance_id) else {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                None,
                format!("instance {instance_id:?} does not exist"),
            ));
        };
        if instance.phase == Phase::Gone {
            return Err(Reply::empty(StatusCode::GONE));
        }
        last_operation_reply(instance.operation.as_ref(), operation)
    }

    pub fn bind(
        &mut self,
        instance_id: &str,
        binding_id: &str,
        body: &Value,
        accepts_incomplete: bool,
    ) -> Answer {
        self.settle_instance(instance_id)?;
        let Some(instance) = self
            .instances
            .get(instance_id)
            .filter(|i| i.phase != Phase::Gone)
            .cloned()
        else {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                None,
                format!("instance {instance_id:?} does not exist"),
            ));
        };
        let catalog = self.catalog.clone();
        match instance.phase {
            Phase::Failed => {
                return Err(Reply::bad_request(
                    "the instance failed to provision and cannot be bound",
                ));
            }
            Phase::Creating => return Err(Reply::concurrency("this instance")),
            _ => {}
        }
        let Some((service, plan)) = catalog.find(&instance.service_id, &instance.plan_id) else {
            return Err(Reply::bad_request("the instance's plan left the catalog"));
        };
        if !plan.is_bindable(service) {
            return Err(Reply::bad_request(format!(
                "plan {:?} is not bindable",
                plan.name
            )));
        }
        let rotation =
            body.get("predecessor_binding_id").is_some() && body.get("service_id").is_none();
        let (parameters, predecessor) = if rotation {
            let request: RotateBindingRequest = parse_body(body)?;
            if plan.binding_rotatable != Some(true) {
                return Err(Reply::bad_request(format!(
                    "bindings of plan {:?} cannot be rotated",
                    plan.name
                )));
            }
            let key = (
                instance_id.to_owned(),
                request.predecessor_binding_id.clone(),
            );
            let Some(predecessor) = self.bindings.get(&key).filter(|b| b.phase == Phase::Ready)
            else {
                return Err(Reply::bad_request(format!(
                    "predecessor binding {:?} is not a live binding of this instance",
                    request.predecessor_binding_id
                )));
            };
            (
                predecessor.parameters.clone(),
                Some(request.predecessor_binding_id),
            )
        } else {
            let request: BindRequest = parse_body(body)?;
            if request.service_id != instance.service_id || request.plan_id != instance.plan_id {
                return Err(Reply::bad_request(format!(
                    "service_id/plan_id {:?}/{:?} do not match the instance's {:?}/{:?}",
                    request.service_id, request.plan_id, instance.service_id, instance.plan_id
                )));
            }
            check_parameters(plan.binding_create_schema(), &request.parameters)?;
            (request.parameters, request.predecessor_binding_id)
        };
        let behaviour = plan_behaviour(plan);
        let key = (instance_id.to_owned(), binding_id.to_owned());
        self.settle_binding(&key)?;
        if let Some(existing) = self.bindings.get(&key).filter(|b| b.phase != Phase::Gone) {
            let identical = normalized(&existing.parameters) == normalized(&parameters)
                && existing.predecessor_binding_id == predecessor;
            let in_progress = existing.operation.as_ref().filter(|op| op.in_progress());
            return match in_progress {
                Some(op) if op.kind == OperationKind::Unbind => {
                    Err(Reply::concurrency("this binding"))
                }
                _ if !identical => Err(Reply::empty(StatusCode::CONFLICT)),
                Some(op) => Ok(operation_reply(op)),
                None => Ok(Reply::new(StatusCode::OK, json!(existing.response))),
            };
        }
        let asynchronous = behaviour.async_bindings;
        if asynchronous && !accepts_incomplete {
            return Err(Reply::async_required());
        }
        let response = self.credentials_for(&instance, service, plan, binding_id, &parameters);
        let operation = self.new_operation(OperationKind::Bind, &behaviour, asynchronous);
        let record = BindingRecord {
            instance_id: instance_id.to_owned(),
            id: binding_id.to_owned(),
            service_id: instance.service_id.clone(),
            plan_id: instance.plan_id.clone(),
            parameters,
            predecessor_binding_id: predecessor,
            response,
            phase: if asynchronous {
                Phase::Creating
            } else {
                Phase::Ready
            },
            operation: Some(operation.clone()),
        };
        self.store.put_binding(&record)?;
        let reply = if asynchronous {
            operation_reply(&operation)
        } else {
            Reply::new(StatusCode::CREATED, json!(record.response))
        };
        self.bindings.insert(key, record);
        Ok(reply)
    }

    /// What a new binding hands out: the user's own credentials for a user-provided service,
    /// generated database credentials otherwise; rotatable plans' credentials expire.
    fn credentials_for(
        &self,
        instance: &InstanceRecord,
        service: &Service,
        plan: &Plan,
        binding_id: &str,
        parameters: &Option<Value>,
    ) -> BindingBody {
        let mut body = BindingBody::default();
        if service_behaviour(service).user_provided {
            let provided = instance.parameters.as_ref().map(|p| {
                p.get("credentials")
                    .filter(|c| c.is_object())
                    .unwrap_or(p)
                    .clone()
            });
            body.credentials = Some(match provided {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            });
        } else {
            let read_only = parameters
                .as_ref()
                .and_then(|p| p.get("readOnly"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let host = format!(
                "{}-{}.reference-broker.local",
                service.name,
                short(&instance.id)
            );
            let database = format!("db_{}", short(&instance.id));
            let username = format!(
                "{}_{}",
                if read_only { "ro" } else { "rw" },
                short(binding_id)
            );
            let password = uuid::Uuid::new_v4().simple().to_string();
            let credentials = json!({
                "host": host,
                "port": 3306,
                "database": database,
                "username": username,
                "password": password,
                "uri": format!("mysql://{username}:{password}@{host}:3306/{database}"),
            });
            if let Value::Object(map) = credentials {
                body.credentials = Some(map);
            }
            body.endpoints = Some(vec![osb_client::Endpoint {
                host,
                ports: vec!["3306".into()],
                protocol: Some("tcp".into()),
                ..Default::default()
            }]);
        }
        if plan.binding_rotatable == Some(true) {
            let now = SystemTime::now();
            body.metadata = Some(BindingMetadata {
                expires_at: Some(
                    humantime::format_rfc3339_millis(now + BINDING_LIFETIME).to_string(),
                ),
                renew_before: Some(
                    humantime::format_rfc3339_millis(now + BINDING_LIFETIME - BINDING_RENEW_MARGIN)
                        .to_string(),
                ),
                ..Default::default()
            });
        }
        body
    }

    pub fn unbind(
        &mut self,
        instance_id: &str,
        binding_id: &str,
        service_id: Option<&str>,
        plan_id: Option<&str>,
        accepts_incomplete: bool,
    ) -> Answer {
        if service_id.is_none() || plan_id.is_none() {
            return Err(Reply::bad_request(
                "service_id and plan_id query parameters are required",
            ));
        }
        let key = (instance_id.to_owned(), binding_id.to_owned());
        self.settle_binding(&key)?;
        let Some(binding) = self.bindings.get(&key).filter(|b| b.phase != Phase::Gone) else {
            return Err(Reply::empty(StatusCode::GONE));
        };
        let behaviour = self
            .catalog
            .find(&binding.service_id, &binding.plan_id)
            .map(|(_, plan)| plan_behaviour(plan))
            .unwrap_or_default();
        match binding.operation.as_ref().filter(|op| op.in_progress()) {
            Some(op) if op.kind == OperationKind::Unbind => return Ok(operation_reply(op)),
            Some(_) => return Err(Reply::concurrency("this binding")),
            None => {}
        }
        if behaviour.async_bindings && !accepts_incomplete {
            return Err(Reply::async_required());
        }
        if !behaviour.async_bindings {
            self.store.delete_binding(instance_id, binding_id)?;
            self.bindings.remove(&key);
            return Ok(Reply::empty(StatusCode::OK));
        }
        let operation = self.new_operation(OperationKind::Unbind, &behaviour, true);
        let mut record = binding.clone();
        record.operation = Some(operation.clone());
        self.store.put_binding(&record)?;
        self.bindings.insert(key, record);
        Ok(operation_reply(&operation))
    }

    pub fn fetch_binding(&mut self, instance_id: &str, binding_id: &str) -> Answer {
        let key = (instance_id.to_owned(), binding_id.to_owned());
        self.settle_binding(&key)?;
        let Some(binding) = self.bindings.get(&key).filter(|b| b.phase == Phase::Ready) else {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                None,
                format!("binding {binding_id:?} of instance {instance_id:?} does not exist"),
            ));
        };
        let mut body = binding.response.clone();
        body.operation = None;
        body.parameters = binding.parameters.clone();
        Ok(Reply::new(StatusCode::OK, json!(body)))
    }

    pub fn binding_last_operation(
        &mut self,
        instance_id: &str,
        binding_id: &str,
        operation: Option<&str>,
    ) -> Answer {
        let key = (instance_id.to_owned(), binding_id.to_owned());
        self.settle_binding(&key)?;
        let Some(binding) = self.bindings.get(&key) else {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                None,
                format!("binding {binding_id:?} of instance {instance_id:?} does not exist"),
            ));
        };
        if binding.phase == Phase::Gone {
            let _ = self.store.delete_binding(instance_id, binding_id);
            return Err(Reply::empty(StatusCode::GONE));
        }
        last_operation_reply(binding.operation.as_ref(), operation)
    }
}

fn last_operation_reply(current: Option<&OperationRecord>, asked: Option<&str>) -> Answer {
    let Some(current) = current else {
        return Ok(Reply::new(StatusCode::OK, json!({"state": "succeeded"})));
    };
    if let Some(asked) = asked
        && asked != current.id
    {
        return Err(Reply::bad_request(format!(
            "unknown operation {asked:?}; the last operation is {:?}",
            current.id
        )));
    }
    let mut body = json!({"state": current.state.as_str()});
    match (&current.state, &current.failure) {
        (OperationState::Failed, Some(reason)) => body["description"] = json!(reason),
        (OperationState::InProgress, _) => {
            let elapsed = now_ms().saturating_sub(current.started_ms);
            let percent = (elapsed * 100 / current.duration_ms.max(1)).min(99);
            body["description"] = json!(format!("{percent}% done"));
        }
        _ => {}
    }
    let mut reply = Reply::new(StatusCode::OK, body);
    if current.state == OperationState::InProgress {
        reply.retry_after_secs = Some(current.retry_after_secs);
    }
    Ok(reply)
}
