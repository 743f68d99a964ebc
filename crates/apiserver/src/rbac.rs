//! `rbac.authorization.k8s.io/v1` as kinds this server stores and serves (standalone mode):
//! Roles, ClusterRoles, RoleBindings, ClusterRoleBindings, with kube-apiserver's validation
//! (a binding's `roleRef` cannot change; subjects and rules must be complete). Evaluation is
//! [`crate::authz::Policy`]'s.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::authz::{Attributes, ResourceAttributes, SUPERUSER_GROUP};
use crate::kinds::{Admission, Column, ColumnValue, Registry, ResourceKind, Strategy};
use crate::status::{ApiError, Cause};

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// Adds the four RBAC kinds to `registry`.
pub fn add_kinds(registry: &mut Registry) {
    let kind = |kind: &'static str,
                plural: &'static str,
                singular: &'static str,
                namespaced: bool,
                columns: &'static [Column],
                description: &'static str,
                schema: fn() -> Value,
                strategy: Arc<dyn Strategy>| ResourceKind {
        group: GROUP,
        version: "v1",
        kind,
        plural,
        singular,
        short_names: &[],
        categories: &[],
        namespaced,
        has_status: false,
        field_selectors: &[],
        spec_subresources: &[],
        columns,
        description,
        schema,
        strategic_merge: true,
        strategy,
    };
    registry
        .add(kind(
            "ClusterRole",
            "clusterroles",
            "clusterrole",
            false,
            &[],
            "ClusterRole is a cluster level, logical grouping of PolicyRules that can be referenced as a unit by a RoleBinding or ClusterRoleBinding.",
            role_schema,
            Arc::new(RoleStrategy { cluster: true }),
        ))
        .add(kind(
            "Role",
            "roles",
            "role",
            true,
            &[],
            "Role is a namespaced, logical grouping of PolicyRules that can be referenced as a unit by a RoleBinding.",
            role_schema,
            Arc::new(RoleStrategy { cluster: false }),
        ))
        .add(kind(
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            false,
            BINDING_COLUMNS,
            "ClusterRoleBinding references a ClusterRole, but not contain it.",
            binding_schema,
            Arc::new(BindingStrategy { cluster: true }),
        ))
        .add(kind(
            "RoleBinding",
            "rolebindings",
            "rolebinding",
            true,
            BINDING_COLUMNS,
            "RoleBinding references a role, but does not contain it.",
            binding_schema,
            Arc::new(BindingStrategy { cluster: false }),
        ));
}

const BINDING_COLUMNS: &[Column] = &[Column {
    name: "Role",
    kind: "string",
    description: "The role granted",
    priority: 0,
    value: ColumnValue::Computed(role_cell),
}];

fn role_cell(object: &Value) -> Value {
    let field = |f: &str| {
        object
            .pointer(&format!("/roleRef/{f}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    json!(format!("{}/{}", field("kind"), field("name")))
}

fn string_list() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn role_schema() -> Value {
    json!({
        "rules": {"type": "array", "items": {"type": "object", "properties": {
            "verbs": string_list(), "apiGroups": string_list(), "resources": string_list(),
            "resourceNames": string_list(), "nonResourceURLs": string_list()}}},
        "aggregationRule": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

fn binding_schema() -> Value {
    let string = json!({"type": "string"});
    json!({
        "roleRef": {"type": "object", "properties": {
            "apiGroup": string, "kind": string, "name": string}},
        "subjects": {"type": "array", "items": {"type": "object", "properties": {
            "kind": string, "apiGroup": string, "name": string, "namespace": string}}},
    })
}

/// RBAC names are path segments, not DNS names (`system:basic-user` is a valid name), as
/// kube-apiserver's `ValidatePathSegmentName`.
fn name_causes(object: &Value) -> Vec<Cause> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name == "." || name == ".." || name.contains('/') || name.contains('%') {
        vec![Cause::invalid(
            "metadata.name",
            name,
            "may not be '.' or '..' and may not contain '/' or '%'",
        )]
    } else {
        Vec::new()
    }
}

fn list_len(value: Option<&Value>) -> usize {
    value.and_then(Value::as_array).map_or(0, Vec::len)
}

struct RoleStrategy {
    cluster: bool,
}

/// Whether the requester holds `verb` (`escalate`, `bind`) on the role `name` itself.
fn holds_verb_on_role(
    policy: &crate::authz::Policy,
    admission: &Admission<'_>,
    verb: &str,
    plural: &str,
    name: &str,
) -> bool {
    policy.allows(&Attributes {
        user: admission.user.clone(),
        verb: verb.to_owned(),
        resource: Some(ResourceAttributes {
            namespace: admission.namespace.unwrap_or_default().to_owned(),
            group: GROUP.to_owned(),
            version: "v1".to_owned(),
            resource: plural.to_owned(),
            subresource: String::new(),
            name: name.to_owned(),
        }),
        path: String::new(),
    })
}

/// kube-apiserver's escalation check: nobody grants permissions they do not hold, unless
/// they may `escalate` (roles) or `bind` (bindings) explicitly.
fn refuse_escalation(
    admission: &Admission<'_>,
    plural: &str,
    name: &str,
    missing: Vec<String>,
) -> Result<(), ApiError> {
    if missing.is_empty() {
        return Ok(());
    }
    let user = admission.user;
    Err(ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "{plural}.{GROUP} \"{name}\" is forbidden: user \"{}\" (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
            user.username,
            user.groups,
            missing.join("\n")
        ),
    )
    .with_subject(crate::status::Subject {
        group: GROUP.to_owned(),
        resource: plural.to_owned(),
        name: name.to_owned(),
    }))
}

/// The policy a write of RBAC objects is checked against: `None` when there is nothing to
/// check (RBAC does not decide here, or the requester is a superuser, who may grant anything;
/// asked first, so an administrator's writes do not read the policy at all).
async fn policy_to_check(admission: &Admission<'_>) -> Option<Arc<crate::authz::Policy>> {
    if admission.user.groups.iter().any(|g| g == SUPERUSER_GROUP) {
        return None;
    }
    admission.rbac_policy().await
}

fn object_name(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[async_trait::async_trait]
impl Strategy for RoleStrategy {
    fn checks_names(&self) -> bool {
        true
    }

    async fn admit(
        &self,
        admission: &Admission<'_>,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(policy) = policy_to_check(admission).await else {
            return Ok(());
        };
        let plural = if self.cluster {
            "clusterroles"
        } else {
            "roles"
        };
        let name = object_name(object);
        // `escalate` is asked as the request is addressed: a create names no object (so an
        // `escalate` limited to some resourceNames only covers updates of those).
        let addressed = if old.is_some() { name.as_str() } else { "" };
        if holds_verb_on_role(&policy, admission, "escalate", plural, addressed) {
            return Ok(());
        }
        let rules = object
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let namespace = admission.namespace.unwrap_or_default();
        refuse_escalation(
            admission,
            plural,
            &name,
            policy.not_held(admission.user, namespace, &rules),
        )
    }

    fn validate(&self, object: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = name_causes(object);
        let rules = object
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if object
            .get("rules")
            .is_some_and(|r| !r.is_array() && !r.is_null())
        {
            causes.push(Cause::invalid(
                "rules",
                "<value>",
                "must be a list of rules",
            ));
        }
        for (index, rule) in rules.iter().enumerate() {
            let field = |f: &str| format!("rules[{index}].{f}");
            // A string where a list belongs must not read as "no restriction".
            for list in [
                "verbs",
                "apiGroups",
                "resources",
                "resourceNames",
                "nonResourceURLs",
            ] {
                let well_typed = match rule.get(list) {
                    None | Some(Value::Null) => true,
                    Some(Value::Array(items)) => items.iter().all(Value::is_string),
                    Some(_) => false,
                };
                if !well_typed {
                    causes.push(Cause::invalid(
                        &field(list),
                        "<value>",
                        "must be a list of strings",
                    ));
                }
            }
            if list_len(rule.get("verbs")) == 0 {
                causes.push(Cause::required(&field("verbs")));
            }
            let non_resource = list_len(rule.get("nonResourceURLs"));
            let resources = list_len(rule.get("resources"));
            if non_resource > 0 && !self.cluster {
                causes.push(Cause::invalid(
                    &field("nonResourceURLs"),
                    "<value>",
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if non_resource > 0 && (resources > 0 || list_len(rule.get("apiGroups")) > 0) {
                causes.push(Cause::invalid(
                    &field("nonResourceURLs"),
                    "<value>",
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            if non_resource == 0 {
                if list_len(rule.get("apiGroups")) == 0 {
                    causes.push(Cause::required_because(
                        &field("apiGroups"),
                        "resource rules must supply at least one api group",
                    ));
                }
                if resources == 0 {
                    causes.push(Cause::required_because(
                        &field("resources"),
                        "resource rules must supply at least one resource",
                    ));
                }
            }
        }
        causes
    }
}

struct BindingStrategy {
    cluster: bool,
}

#[async_trait::async_trait]
impl Strategy for BindingStrategy {
    fn checks_names(&self) -> bool {
        true
    }

    async fn admit(
        &self,
        admission: &Admission<'_>,
        object: &mut Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(policy) = policy_to_check(admission).await else {
            return Ok(());
        };
        let role_ref = |field: &str| {
            object
                .pointer(&format!("/roleRef/{field}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (role_kind, role_name) = (role_ref("kind"), role_ref("name"));
        let role_plural = if role_kind == "Role" {
            "roles"
        } else {
            "clusterroles"
        };
        if holds_verb_on_role(&policy, admission, "bind", role_plural, &role_name) {
            return Ok(());
        }
        let namespace = admission.namespace.unwrap_or_default();
        let plural = if self.cluster {
            "clusterrolebindings"
        } else {
            "rolebindings"
        };
        let name = object_name(object);
        // Without `bind`, the role must exist now: binding a name whose role appears later
        // would grant whatever it turns out to hold (kube-apiserver refuses too).
        let Some(rules) = policy.role_rules(&role_kind, &role_name, namespace) else {
            return refuse_escalation(
                admission,
                plural,
                &name,
                vec![format!("{role_kind} \"{role_name}\" not found")],
            );
        };
        refuse_escalation(
            admission,
            plural,
            &name,
            policy.not_held(admission.user, namespace, &rules),
        )
    }

    fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = name_causes(object);
        let role_kind = object.pointer("/roleRef/kind").and_then(Value::as_str);
        let allowed: &[&str] = if self.cluster {
            &["ClusterRole"]
        } else {
            &["Role", "ClusterRole"]
        };
        match role_kind {
            None => causes.push(Cause::required("roleRef.kind")),
            Some(kind) if !allowed.contains(&kind) => {
                causes.push(Cause::unsupported("roleRef.kind", kind, allowed));
            }
            Some(_) => {}
        }
        if object
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required("roleRef.name"));
        }
        if let Some(group) = object.pointer("/roleRef/apiGroup").and_then(Value::as_str)
            && group != GROUP
        {
            causes.push(Cause::unsupported("roleRef.apiGroup", group, &[GROUP]));
        }
        if let Some(old) = old
            && old.get("roleRef") != object.get("roleRef")
        {
            causes.push(Cause::invalid(
                "roleRef",
                "<value>",
                "cannot change roleRef",
            ));
        }
        if object
            .get("subjects")
            .is_some_and(|r| !r.is_array() && !r.is_null())
        {
            causes.push(Cause::invalid(
                "subjects",
                "<value>",
                "must be a list of subjects",
            ));
        }
        let subjects = object
            .get("subjects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (index, subject) in subjects.iter().enumerate() {
            let field = |f: &str| format!("subjects[{index}].{f}");
            let text = |f: &str| subject.get(f).and_then(Value::as_str).unwrap_or_default();
            for key in ["kind", "name", "namespace", "apiGroup"] {
                if subject
                    .get(key)
                    .is_some_and(|v| !v.is_string() && !v.is_null())
                {
                    causes.push(Cause::invalid(&field(key), "<value>", "must be a string"));
                }
            }
            if text("name").is_empty() {
                causes.push(Cause::required(&field("name")));
            }
            match text("kind") {
                "User" | "Group" => {}
                "ServiceAccount" => {
                    if self.cluster && text("namespace").is_empty() {
                        causes.push(Cause::required(&field("namespace")));
                    }
                }
                other => causes.push(Cause::unsupported(
                    &field("kind"),
                    other,
                    &["User", "Group", "ServiceAccount"],
                )),
            }
        }
        causes
    }
}
