//! Who may do what: request attributes as kube-apiserver derives them from a request, the
//! RBAC rule semantics of `rbac.authorization.k8s.io/v1`, and the `Forbidden` message clients
//! print.
//!
//! [`Policy`] is a compiled snapshot of the stored Roles, ClusterRoles and their bindings;
//! the server rebuilds it when any of them changed (see `ApiServer::authorize`). Members of
//! `system:masters` are allowed everything without consulting RBAC, as in Kubernetes.

use std::collections::HashMap;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::UserIdentity;
use crate::status::{ApiError, Subject};

/// The group whose members RBAC never refuses.
pub const SUPERUSER_GROUP: &str = "system:masters";

/// What a resource request addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub namespace: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// A request as an authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserIdentity,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`; for
    /// non-resource requests the lower-case HTTP method.
    pub verb: String,
    /// `None`: a non-resource request (`/version`, `/apis`, `/metrics`...).
    pub resource: Option<ResourceAttributes>,
    pub path: String,
}

impl Attributes {
    /// kube-apiserver's request-info rules, for the paths this server serves.
    pub fn from_request(user: UserIdentity, method: &Method, path: &str, query: &str) -> Self {
        let non_resource = |user| Self {
            user,
            verb: method.as_str().to_ascii_lowercase(),
            resource: None,
            path: path.to_owned(),
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, mut rest) = match segments.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
            ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
            _ => return non_resource(user),
        };
        let mut watch_path = false;
        if rest.first() == Some(&"watch") {
            watch_path = true;
            rest = &rest[1..];
        }
        let mut attributes = ResourceAttributes {
            group: group.to_owned(),
            version: version.to_owned(),
            ..Default::default()
        };
        match rest {
            // A namespace's own subresources (kube-apiserver's `namespaceSubresources`).
            ["namespaces", name, subresource @ ("status" | "finalize")] if group.is_empty() => {
                attributes.resource = "namespaces".into();
                attributes.name = (*name).to_owned();
                attributes.namespace = (*name).to_owned();
                attributes.subresource = (*subresource).to_owned();
            }
            ["namespaces", namespace, resource, tail @ ..] => {
                attributes.namespace = (*namespace).to_owned();
                attributes.resource = (*resource).to_owned();
                attributes.name = tail.first().map(|s| (*s).to_owned()).unwrap_or_default();
                attributes.subresource = tail.get(1).map(|s| (*s).to_owned()).unwrap_or_default();
            }
            // A namespace itself: its name is also its namespace (as Kubernetes has it).
            ["namespaces", name] => {
                attributes.resource = "namespaces".into();
                attributes.name = (*name).to_owned();
                attributes.namespace = (*name).to_owned();
            }
            [resource, tail @ ..] => {
                attributes.resource = (*resource).to_owned();
                attributes.name = tail.first().map(|s| (*s).to_owned()).unwrap_or_default();
                attributes.subresource = tail.get(1).map(|s| (*s).to_owned()).unwrap_or_default();
            }
            [] => return non_resource(user),
        }
        let has_name = !attributes.name.is_empty();
        // The same reading of `watch` as the handlers' (a named GET is a get either way).
        let watch = !has_name
            && (watch_path || crate::rest::flag(&crate::rest::parse_query(Some(query)), "watch"));
        let verb = match *method {
            Method::GET | Method::HEAD if watch => "watch",
            Method::GET | Method::HEAD if has_name => "get",
            Method::GET | Method::HEAD => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if has_name => "delete",
            Method::DELETE => "deletecollection",
            _ => return non_resource(user),
        };
        Self {
            user,
            verb: verb.to_owned(),
            resource: Some(attributes),
            path: path.to_owned(),
        }
    }

    /// The 403 kube-apiserver answers, worded as it words it (clients show the message).
    pub fn forbidden(&self, reason: &str) -> ApiError {
        let user = &self.user.username;
        let suffix = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        let Some(resource) = &self.resource else {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "forbidden: User \"{user}\" cannot {} path \"{}\"{suffix}",
                    self.verb, self.path
                ),
            );
        };
        let qualified = if resource.group.is_empty() {
            resource.resource.clone()
        } else {
            format!("{}.{}", resource.resource, resource.group)
        };
        let addressed = if resource.name.is_empty() {
            qualified
        } else {
            format!("{qualified} \"{}\"", resource.name)
        };
        let full_resource = if resource.subresource.is_empty() {
            resource.resource.clone()
        } else {
            format!("{}/{}", resource.resource, resource.subresource)
        };
        let scope = if resource.namespace.is_empty() {
            "at the cluster scope".to_owned()
        } else {
            format!("in the namespace \"{}\"", resource.namespace)
        };
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{addressed} is forbidden: User \"{user}\" cannot {} resource \"{full_resource}\" in API group \"{}\" {scope}{suffix}",
                self.verb, resource.group
            ),
        )
        .with_subject(Subject {
            group: resource.group.clone(),
            resource: resource.resource.clone(),
            name: resource.name.clone(),
        })
    }
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Not allowed, with why (often empty, as RBAC's).
    Deny(String),
}

/// How requests are authorized.
#[derive(Clone, Default)]
pub enum Authorization {
    /// Everything is allowed (in-process test servers; never the binary's choice).
    #[default]
    AlwaysAllow,
    /// The stored RBAC objects decide (standalone mode).
    Rbac,
    /// Someone else decides (SubjectAccessReview against the cluster, in aggregated mode).
    Delegated(std::sync::Arc<dyn Authorizer>),
}

/// An authorizer outside this server (SubjectAccessReview against the cluster).
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync {
    async fn authorize(&self, attributes: &Attributes) -> Decision;
}

/// One RBAC policy rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    non_resource_urls: Vec<String>,
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    fn from_json(rule: &Value) -> Self {
        Self {
            verbs: strings(rule.get("verbs")),
            api_groups: strings(rule.get("apiGroups")),
            resources: strings(rule.get("resources")),
            resource_names: strings(rule.get("resourceNames")),
            non_resource_urls: strings(rule.get("nonResourceURLs")),
        }
    }

    fn to_json(&self) -> Value {
        let mut rule = json!({"verbs": self.verbs});
        for (field, values) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !values.is_empty() {
                rule[field] = json!(values);
            }
        }
        rule
    }

    fn allows(&self, attributes: &Attributes) -> bool {
        let has = |list: &[String], value: &str| list.iter().any(|v| v == "*" || v == value);
        if !has(&self.verbs, &attributes.verb) {
            return false;
        }
        let Some(resource) = &attributes.resource else {
            return self.non_resource_urls.iter().any(|url| {
                url == "*"
                    || url == &attributes.path
                    || url
                        .strip_suffix('*')
                        .is_some_and(|prefix| attributes.path.starts_with(prefix))
            });
        };
        if !has(&self.api_groups, &resource.group) {
            return false;
        }
        let resource_matches = self.resources.iter().any(|r| {
            if r == "*" {
                return true;
            }
            if resource.subresource.is_empty() {
                return r == &resource.resource;
            }
            r == &format!("{}/{}", resource.resource, resource.subresource)
                || r == &format!("*/{}", resource.subresource)
        });
        if !resource_matches {
            return false;
        }
        self.resource_names.is_empty()
            || (!resource.name.is_empty() && self.resource_names.contains(&resource.name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RbacSubject {
    User(String),
    Group(String),
    ServiceAccount { namespace: String, name: String },
}

impl RbacSubject {
    fn from_json(subject: &Value, binding_namespace: &str) -> Option<Self> {
        let name = subject.get("name")?.as_str()?.to_owned();
        match subject.get("kind")?.as_str()? {
            "User" => Some(Self::User(name)),
            "Group" => Some(Self::Group(name)),
            "ServiceAccount" => Some(Self::ServiceAccount {
                namespace: subject
                    .get("namespace")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .unwrap_or(binding_namespace)
                    .to_owned(),
                name,
            }),
            _ => None,
        }
    }

    fn includes(&self, user: &UserIdentity) -> bool {
        match self {
            Self::User(name) => &user.username == name,
            Self::Group(name) => user.groups.iter().any(|g| g == name),
            Self::ServiceAccount { namespace, name } => {
                user.username == format!("system:serviceaccount:{namespace}:{name}")
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Binding {
    /// `None` for a ClusterRoleBinding.
    namespace: Option<String>,
    role_kind: String,
    role_name: String,
    subjects: Vec<RbacSubject>,
}

/// The stored RBAC objects, compiled for evaluation.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    cluster_roles: HashMap<String, Vec<Rule>>,
    roles: HashMap<(String, String), Vec<Rule>>,
    bindings: Vec<Binding>,
}

fn name_and_namespace(object: &Value) -> (String, String) {
    let meta = |field: &str| {
        object
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (meta("name"), meta("namespace"))
}

fn rules_of(object: &Value) -> Vec<Rule> {
    object
        .get("rules")
        .and_then(Value::as_array)
        .map(|rules| rules.iter().map(Rule::from_json).collect())
        .unwrap_or_default()
}

impl Policy {
    /// Compiles stored ClusterRoles, Roles, ClusterRoleBindings and RoleBindings.
    pub fn compile(
        cluster_roles: &[Value],
        roles: &[Value],
        cluster_bindings: &[Value],
        bindings: &[Value],
    ) -> Self {
        let mut policy = Self::default();
        for role in cluster_roles {
            policy
                .cluster_roles
                .insert(name_and_namespace(role).0, rules_of(role));
        }
        for role in roles {
            let (name, namespace) = name_and_namespace(role);
            policy.roles.insert((namespace, name), rules_of(role));
        }
        for (binding, namespaced) in cluster_bindings
            .iter()
            .map(|b| (b, false))
            .chain(bindings.iter().map(|b| (b, true)))
        {
            let (_, namespace) = name_and_namespace(binding);
            let role_ref = |field: &str| {
                binding
                    .pointer(&format!("/roleRef/{field}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            policy.bindings.push(Binding {
                namespace: namespaced.then(|| namespace.clone()),
                role_kind: role_ref("kind"),
                role_name: role_ref("name"),
                subjects: binding
                    .get("subjects")
                    .and_then(Value::as_array)
                    .map(|s| {
                        s.iter()
                            .filter_map(|s| RbacSubject::from_json(s, &namespace))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        policy
    }

    /// RBAC's answer: allowed when some binding that includes the user grants a rule that
    /// covers the request (a RoleBinding only within its namespace).
    pub fn allows(&self, attributes: &Attributes) -> bool {
        if attributes.user.groups.iter().any(|g| g == SUPERUSER_GROUP) {
            return true;
        }
        let request_namespace = attributes
            .resource
            .as_ref()
            .map(|r| r.namespace.as_str())
            .unwrap_or_default();
        self.bindings.iter().any(|binding| {
            if let Some(namespace) = &binding.namespace
                && (attributes.resource.is_none() || namespace != request_namespace)
            {
                return false;
            }
            if !binding
                .subjects
                .iter()
                .any(|s| s.includes(&attributes.user))
            {
                return false;
            }
            let rules = match (binding.role_kind.as_str(), &binding.namespace) {
                ("ClusterRole", _) => self.cluster_roles.get(&binding.role_name),
                ("Role", Some(namespace)) => self
                    .roles
                    .get(&(namespace.clone(), binding.role_name.clone())),
                _ => None,
            };
            rules.is_some_and(|rules| rules.iter().any(|rule| rule.allows(attributes)))
        })
    }
}

impl Policy {
    /// The rules of the role a binding refers to: a ClusterRole, or a Role in `namespace`.
    pub fn role_rules(&self, kind: &str, name: &str, namespace: &str) -> Option<Vec<Value>> {
        let rules = match kind {
            "ClusterRole" => self.cluster_roles.get(name)?,
            "Role" => self.roles.get(&(namespace.to_owned(), name.to_owned()))?,
            _ => return None,
        };
        Some(rules.iter().map(Rule::to_json).collect())
    }

    /// What `user` may do in `namespace` (`kubectl auth can-i --list`): (resource rules,
    /// non-resource rules), as SelfSubjectRulesReview reports them.
    pub fn rules_for(&self, user: &UserIdentity, namespace: &str) -> (Vec<Value>, Vec<Value>) {
        let (mut resource_rules, mut non_resource_rules) = (Vec::new(), Vec::new());
        for binding in &self.bindings {
            if binding.namespace.as_deref().is_some_and(|n| n != namespace)
                || !binding.subjects.iter().any(|s| s.includes(user))
            {
                continue;
            }
            let Some(rules) = self.role_rules(
                &binding.role_kind,
                &binding.role_name,
                binding.namespace.as_deref().unwrap_or_default(),
            ) else {
                continue;
            };
            for rule in rules {
                if rule.get("nonResourceURLs").is_some() {
                    if binding.namespace.is_none() {
                        non_resource_rules.push(rule);
                    }
                } else {
                    resource_rules.push(rule);
                }
            }
        }
        (resource_rules, non_resource_rules)
    }

    /// The parts of `rules` that `user` does not hold itself in `namespace` (`""`: cluster
    /// wide), as kube-apiserver's escalation check breaks them down: one verb, group,
    /// resource and name (or URL) each. Empty: granting `rules` is no escalation.
    pub fn not_held(&self, user: &UserIdentity, namespace: &str, rules: &[Value]) -> Vec<String> {
        let mut missing = Vec::new();
        for rule in rules.iter().map(Rule::from_json) {
            for verb in &rule.verbs {
                // Non-resource rules grant nothing through a RoleBinding.
                let urls = if namespace.is_empty() {
                    rule.non_resource_urls.as_slice()
                } else {
                    &[]
                };
                for url in urls {
                    let attributes = Attributes {
                        user: user.clone(),
                        verb: verb.clone(),
                        resource: None,
                        path: url.clone(),
                    };
                    if !self.allows(&attributes) {
                        missing.push(format!(
                            "{{NonResourceURLs:[\"{url}\"], Verbs:[\"{verb}\"]}}"
                        ));
                    }
                }
                let names: Vec<String> = if rule.resource_names.is_empty() {
                    vec![String::new()]
                } else {
                    rule.resource_names.clone()
                };
                for group in &rule.api_groups {
                    for resource in &rule.resources {
                        let (resource, subresource) =
                            resource.split_once('/').unwrap_or((resource.as_str(), ""));
                        for name in &names {
                            let attributes = Attributes {
                                user: user.clone(),
                                verb: verb.clone(),
                                resource: Some(ResourceAttributes {
                                    namespace: namespace.to_owned(),
                                    group: group.clone(),
                                    version: String::new(),
                                    resource: resource.to_owned(),
                                    subresource: subresource.to_owned(),
                                    name: name.clone(),
                                }),
                                path: String::new(),
                            };
                            if !self.allows(&attributes) {
                                let full = if subresource.is_empty() {
                                    resource.to_owned()
                                } else {
                                    format!("{resource}/{subresource}")
                                };
                                let names = if name.is_empty() {
                                    String::new()
                                } else {
                                    format!(", ResourceNames:[\"{name}\"]")
                                };
                                missing.push(format!(
                                    "{{APIGroups:[\"{group}\"], Resources:[\"{full}\"]{names}, Verbs:[\"{verb}\"]}}"
                                ));
                            }
                        }
                    }
                }
            }
        }
        missing
    }
}

/// A SelfSubjectAccessReview's or SubjectAccessReview's `spec` as attributes for `user`.
pub fn review_attributes(spec: &Value, user: UserIdentity) -> Result<Attributes, ApiError> {
    let text = |value: &Value, field: &str| {
        value
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if let Some(resource) = spec.get("resourceAttributes") {
        let verb = text(resource, "verb");
        if verb.is_empty() {
            return Err(ApiError::invalid(
                "SelfSubjectAccessReview",
                Subject::default(),
                vec![crate::status::Cause::required(
                    "spec.resourceAttributes.verb",
                )],
            ));
        }
        return Ok(Attributes {
            user,
            verb,
            resource: Some(ResourceAttributes {
                namespace: text(resource, "namespace"),
                group: text(resource, "group"),
                version: text(resource, "version"),
                resource: text(resource, "resource"),
                subresource: text(resource, "subresource"),
                name: text(resource, "name"),
            }),
            path: String::new(),
        });
    }
    if let Some(non_resource) = spec.get("nonResourceAttributes") {
        return Ok(Attributes {
            user,
            verb: text(non_resource, "verb"),
            resource: None,
            path: text(non_resource, "path"),
        });
    }
    Err(ApiError::invalid(
        "SelfSubjectAccessReview",
        Subject::default(),
        vec![crate::status::Cause::required_because(
            "spec",
            "exactly one of resourceAttributes and nonResourceAttributes must be set",
        )],
    ))
}

/// The ClusterRoles and ClusterRoleBindings every Kubernetes cluster has that this server
/// needs: `cluster-admin` for `system:masters`, discovery and self-reviews for every
/// authenticated user, health and version for everyone.
pub fn default_policy() -> Vec<Value> {
    let get = json!(["get"]);
    vec![
        cluster_role(
            "cluster-admin",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ]),
        ),
        cluster_role_binding(
            "cluster-admin",
            "cluster-admin",
            &[("Group", "system:masters")],
        ),
        cluster_role(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/"], "verbs": get}]),
        ),
        cluster_role_binding(
            "system:discovery",
            "system:discovery",
            &[("Group", "system:authenticated")],
        ),
        cluster_role(
            "system:basic-user",
            json!([
                {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
            ]),
        ),
        cluster_role_binding(
            "system:basic-user",
            "system:basic-user",
            &[("Group", "system:authenticated")],
        ),
        cluster_role(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": get}]),
        ),
        cluster_role_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[
                ("Group", "system:authenticated"),
                ("Group", "system:unauthenticated"),
            ],
        ),
    ]
}

/// Marks objects the server keeps up to date at every start (as kube-apiserver's RBAC
/// bootstrap does); remove the annotation (or set it to "false") to keep local changes.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// A bootstrap ClusterRole.
pub fn cluster_role(name: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "annotations": {AUTOUPDATE_ANNOTATION: "true"},
                     "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "rules": rules,
    })
}

/// A bootstrap ClusterRoleBinding of `role` to `subjects` (kind, name).
pub fn cluster_role_binding(name: &str, role: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, name)| json!({"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": name}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "annotations": {AUTOUPDATE_ANNOTATION: "true"},
                     "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: &UserIdentity, method: Method, path: &str) -> Attributes {
        Attributes::from_request(user.clone(), &method, path, "")
    }

    fn alice() -> UserIdentity {
        UserIdentity::new("alice", &["team-a"])
    }

    #[test]
    fn request_attributes_follow_kube_apiserver() {
        let user = alice();
        let list = Attributes::from_request(
            user.clone(),
            &Method::GET,
            "/apis/servicecatalog.k8s.io/v1beta1/namespaces/a/serviceinstances",
            "watch=true",
        );
        assert_eq!(list.verb, "watch");
        let status = request(
            &user,
            Method::PUT,
            "/apis/servicecatalog.k8s.io/v1beta1/namespaces/a/serviceinstances/db/status",
        );
        let resource = status.resource.clone().unwrap_or_default();
        assert_eq!(
            (
                status.verb.as_str(),
                resource.namespace.as_str(),
                resource.name.as_str(),
                resource.subresource.as_str()
            ),
            ("update", "a", "db", "status")
        );
        let collection = request(&user, Method::DELETE, "/api/v1/namespaces/a/secrets");
        assert_eq!(collection.verb, "deletecollection");
        let finalize = request(&user, Method::PUT, "/api/v1/namespaces/a/finalize");
        assert_eq!(
            finalize
                .resource
                .map(|r| (r.resource, r.name, r.subresource)),
            Some(("namespaces".into(), "a".into(), "finalize".into()))
        );
        let namespace = request(&user, Method::GET, "/api/v1/namespaces/a");
        assert_eq!(
            namespace.resource.map(|r| (r.resource, r.namespace)),
            Some(("namespaces".into(), "a".into()))
        );
        let discovery = request(&user, Method::GET, "/apis/servicecatalog.k8s.io/v1beta1");
        assert!(discovery.resource.is_none());
    }

    fn policy() -> Policy {
        let role = json!({"metadata": {"name": "user", "namespace": "a"}, "rules": [
            {"apiGroups": ["servicecatalog.k8s.io"], "resources": ["serviceinstances", "servicebindings"], "verbs": ["*"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["mine"]},
        ]});
        let viewer = json!({"metadata": {"name": "viewer"}, "rules": [
            {"apiGroups": ["servicecatalog.k8s.io"], "resources": ["*"], "verbs": ["get", "list"]},
            {"nonResourceURLs": ["/apis/*"], "verbs": ["get"]},
        ]});
        let binding = json!({"metadata": {"name": "b", "namespace": "a"},
            "roleRef": {"kind": "Role", "name": "user"},
            "subjects": [{"kind": "User", "name": "alice"}]});
        let view_in_b = json!({"metadata": {"name": "v", "namespace": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "viewer"},
            "subjects": [{"kind": "Group", "name": "team-a"}]});
        Policy::compile(&[viewer], &[role], &[], &[binding, view_in_b])
    }

    #[test]
    fn role_bindings_grant_only_in_their_namespace() {
        let policy = policy();
        let user = alice();
        let path = |ns: &str| {
            format!("/apis/servicecatalog.k8s.io/v1beta1/namespaces/{ns}/serviceinstances")
        };
        assert!(policy.allows(&request(&user, Method::POST, &path("a"))));
        assert!(!policy.allows(&request(&user, Method::POST, &path("b"))));
        assert!(policy.allows(&request(&user, Method::GET, &path("b"))));
        assert!(!policy.allows(&request(&user, Method::GET, &path("c"))));
        // A ClusterRole bound by a RoleBinding grants nothing outside resources.
        assert!(!policy.allows(&request(&user, Method::GET, "/apis/x")));
        let bob = UserIdentity::new("bob", &[]);
        assert!(!policy.allows(&request(&bob, Method::GET, &path("a"))));
        let root = UserIdentity::new("root", &[SUPERUSER_GROUP]);
        assert!(policy.allows(&request(
            &root,
            Method::DELETE,
            "/api/v1/namespaces/z/secrets"
        )));
    }

    #[test]
    fn subresources_and_resource_names_must_match_exactly() {
        let policy = policy();
        let user = alice();
        // `serviceinstances` does not cover `serviceinstances/status`.
        assert!(!policy.allows(&request(
            &user,
            Method::PUT,
            "/apis/servicecatalog.k8s.io/v1beta1/namespaces/b/serviceinstances/x/status"
        )));
        assert!(policy.allows(&request(
            &user,
            Method::GET,
            "/api/v1/namespaces/a/secrets/mine"
        )));
        assert!(!policy.allows(&request(
            &user,
            Method::GET,
            "/api/v1/namespaces/a/secrets/other"
        )));
        // resourceNames never cover a list.
        assert!(!policy.allows(&request(&user, Method::GET, "/api/v1/namespaces/a/secrets")));
    }

    #[test]
    fn forbidden_messages_read_as_kube_apiservers() {
        let user = alice();
        let message = request(&user, Method::GET, "/api/v1/namespaces/b/secrets/db")
            .forbidden("")
            .message;
        assert_eq!(
            message,
            "secrets \"db\" is forbidden: User \"alice\" cannot get resource \"secrets\" in API group \"\" in the namespace \"b\""
        );
        let message = request(
            &user,
            Method::POST,
            "/apis/servicecatalog.k8s.io/v1beta1/clusterservicebrokers",
        )
        .forbidden("")
        .message;
        assert_eq!(
            message,
            "clusterservicebrokers.servicecatalog.k8s.io is forbidden: User \"alice\" cannot create resource \"clusterservicebrokers\" in API group \"servicecatalog.k8s.io\" at the cluster scope"
        );
        let message = request(&user, Method::GET, "/metrics")
            .forbidden("")
            .message;
        assert_eq!(
            message,
            "forbidden: User \"alice\" cannot get path \"/metrics\""
        );
    }
}
