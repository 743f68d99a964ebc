//! The catalog's default roles (standalone mode creates them at start, and keeps them current
//! while they carry the autoupdate annotation):
//!
//! - `servicecatalog.k8s.io:admin` — the catalog administrator: everything in the catalog
//!   group (cluster brokers included) and the Secrets brokers authenticate with.
//! - `servicecatalog.k8s.io:user` — for a RoleBinding in a team's namespace: provision, bind,
//!   read the binding Secrets. Registering brokers (even the namespace's own) makes the
//!   controller call a URL of one's choosing, so that is the admin role's (bound in the
//!   namespace, it covers only the namespace's brokers).
//! - `servicecatalog.k8s.io:viewer` — read-only, and no Secrets.
//! - `servicecatalog.k8s.io:marketplace` — reading cluster classes and plans, bound to every
//!   authenticated user (as the original: the marketplace is visible to all). Brokers (their
//!   URLs and credentials' Secret names) are not in it.
//! - `servicecatalog.k8s.io:controller-manager` — exactly what the controller does, bound to
//!   [`CONTROLLER_USER`].

use apiserver::authz::{cluster_role, cluster_role_binding};
use serde_json::{Value, json};

use catalog_api::GROUP;

/// The user the standalone controller manager authenticates as.
pub const CONTROLLER_USER: &str = "system:service-catalog:controller-manager";

pub const ADMIN_ROLE: &str = "servicecatalog.k8s.io:admin";
pub const USER_ROLE: &str = "servicecatalog.k8s.io:user";
pub const VIEWER_ROLE: &str = "servicecatalog.k8s.io:viewer";
pub const MARKETPLACE_ROLE: &str = "servicecatalog.k8s.io:marketplace";
pub const CONTROLLER_ROLE: &str = "servicecatalog.k8s.io:controller-manager";

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

const ALL_KINDS: [&str; 8] = [
    "clusterservicebrokers",
    "servicebrokers",
    "clusterserviceclasses",
    "serviceclasses",
    "clusterserviceplans",
    "serviceplans",
    "serviceinstances",
    "servicebindings",
];

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
}

/// The catalog's default ClusterRoles and ClusterRoleBindings.
pub fn default_policy() -> Vec<Value> {
    let statuses: Vec<String> = ALL_KINDS.iter().map(|k| format!("{k}/status")).collect();
    let statuses: Vec<&str> = statuses.iter().map(String::as_str).collect();
    vec![
        cluster_role(
            ADMIN_ROLE,
            json!([
                rule(GROUP, &["*"], &["*"]),
                rule("", &["secrets"], &WRITE),
                rule("", &["namespaces", "events"], &READ),
                rule("events.k8s.io", &["events"], &READ),
            ]),
        ),
        cluster_role(
            USER_ROLE,
            json!([
                rule(GROUP, &["serviceinstances", "servicebindings"], &WRITE),
                rule(
                    GROUP,
                    &["servicebrokers", "serviceclasses", "serviceplans"],
                    &READ
                ),
                rule(
                    GROUP,
                    &[
                        "serviceinstances/status",
                        "servicebindings/status",
                        "servicebrokers/status"
                    ],
                    &READ
                ),
                rule("", &["secrets"], &WRITE),
                rule("", &["configmaps", "events"], &READ),
                rule("events.k8s.io", &["events"], &READ),
            ]),
        ),
        cluster_role(
            VIEWER_ROLE,
            json!([
                rule(GROUP, &ALL_KINDS, &READ),
                rule("", &["events"], &READ),
                rule("events.k8s.io", &["events"], &READ),
            ]),
        ),
        cluster_role(
            MARKETPLACE_ROLE,
            json!([rule(
                GROUP,
                &["clusterserviceclasses", "clusterserviceplans"],
                &READ
            )]),
        ),
        cluster_role_binding(
            MARKETPLACE_ROLE,
            MARKETPLACE_ROLE,
            &[("Group", "system:authenticated")],
        ),
        cluster_role(
            CONTROLLER_ROLE,
            json!([
                rule(GROUP, &ALL_KINDS, &READ),
                rule(GROUP, &statuses, &["get", "update", "patch"]),
                rule(
                    GROUP,
                    &["serviceinstances/reference"],
                    &["get", "update", "patch"]
                ),
                rule(
                    GROUP,
                    &[
                        "clusterserviceclasses",
                        "serviceclasses",
                        "clusterserviceplans",
                        "serviceplans"
                    ],
                    &["create", "update", "patch", "delete"]
                ),
                // Finalizers are removed through the main resource.
                rule(
                    GROUP,
                    &[
                        "serviceinstances",
                        "servicebindings",
                        "clusterservicebrokers",
                        "servicebrokers"
                    ],
                    &["update", "patch"]
                ),
                rule(
                    "",
                    &["secrets"],
                    &["get", "create", "update", "patch", "delete"]
                ),
                rule("", &["namespaces"], &READ),
                rule("", &["events"], &["create", "update", "patch"]),
                rule("events.k8s.io", &["events"], &["create", "update", "patch"]),
                rule(
                    "coordination.k8s.io",
                    &["leases"],
                    &["get", "create", "update"]
                ),
            ]),
        ),
        cluster_role_binding(
            CONTROLLER_ROLE,
            CONTROLLER_ROLE,
            &[("User", CONTROLLER_USER)],
        ),
    ]
}
