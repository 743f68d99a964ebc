//! Discovery documents, all derived from the [`Registry`]: `/api`, `/api/v1`, `/apis`,
//! `/apis/<g>`, `/apis/<g>/<v>`, the aggregated (v2/v2beta1) form negotiated by `Accept`, and
//! `/version`.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::kinds::{Registry, ResourceKind};

/// Kubernetes version this server reports (kubectl warns beyond ±1 minor; 1.30 sits between the
/// supported kubectl versions' expectations without breaking either).
pub const KUBERNETES_MINOR: &str = "30";

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: [&str; 3] = ["get", "patch", "update"];

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-service-catalog-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Which aggregated discovery version the client asked for first, if any.
fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for range in accept.split(',') {
        let range = range.replace(' ', "");
        if range.contains("as=APIGroupDiscoveryList") && range.contains("g=apidiscovery.k8s.io") {
            if range.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if range.contains("v=v2") {
                return Some("v2");
            }
        }
        if range.starts_with("application/json") && !range.contains("as=") {
            // Plain JSON came first: the client prefers legacy discovery.
            return None;
        }
    }
    None
}

fn resource_list(registry: &Registry, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for kind in registry.in_group_version(group, version) {
        resources.push(json!({
            "name": kind.plural,
            "singularName": kind.singular,
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": VERBS,
            "shortNames": kind.short_names,
            "categories": kind.categories,
        }));
        if kind.has_status {
            resources.push(json!({
                "name": format!("{}/status", kind.plural),
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": STATUS_VERBS,
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

fn aggregated_resource(kind: &ResourceKind) -> Value {
    let response_kind = json!({"group": kind.group, "version": kind.version, "kind": kind.kind});
    let mut resource = json!({
        "resource": kind.plural,
        "responseKind": response_kind,
        "scope": if kind.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": kind.singular,
        "verbs": VERBS,
        "shortNames": kind.short_names,
        "categories": kind.categories,
    });
    if kind.has_status {
        resource["subresources"] = json!([{
            "subresource": "status",
            "responseKind": response_kind,
            "verbs": STATUS_VERBS,
        }]);
    }
    resource
}

fn aggregated(registry: &Registry, core: bool, version: &str) -> Response {
    let items: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = registry
                        .in_group_version(group, v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "freshness": "Current", "resources": resources})
                })
                .collect();
            json!({"metadata": {"name": group}, "versions": versions})
        })
        .collect();
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let content_type =
        format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    let mut response = axum::Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// `GET /api`.
pub fn core_versions(registry: &Registry, headers: &HeaderMap) -> Response {
    if let Some(version) = aggregated_version(headers) {
        return aggregated(registry, true, version);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    axum::Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    }))
    .into_response()
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// `GET /apis`.
pub fn groups(registry: &Registry, headers: &HeaderMap) -> Response {
    if let Some(version) = aggregated_version(headers) {
        return aggregated(registry, false, version);
    }
    let groups: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, versions)| api_group(group, &versions))
        .collect();
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        .into_response()
}

/// `GET /apis/<group>`, if served.
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    registry
        .groups()
        .into_iter()
        .find(|(group, _)| *group == name && !name.is_empty())
        .map(|(group, versions)| api_group(group, &versions))
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`, if served.
pub fn resources(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    registry
        .in_group_version(group, version)
        .next()
        .map(|_| resource_list(registry, group, version))
}
