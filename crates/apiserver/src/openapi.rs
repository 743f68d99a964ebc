//! OpenAPI documents built from the kinds' schemas, and the schema walk behind
//! `fieldValidation` (unknown fields rejected, warned about, or pruned).
//!
//! - `/openapi/v3` (index) and `/openapi/v3/<api/v1 | apis/g/v>`: OpenAPI 3.0 per group-version,
//!   every operation tagged with `x-kubernetes-group-version-kind` and `x-kubernetes-action`,
//!   and PATCH declaring the `fieldValidation` parameter — which is what makes kubectl ≥ 1.27
//!   trust server-side validation and `kubectl explain` work.
//! - `/openapi/v2`: Swagger 2.0 JSON; for the protobuf-only request of kubectl 1.20 an empty
//!   protobuf `Document` (a valid empty message), with which apply/create work.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};

use serde_json::{Map, Value, json};

use crate::kinds::{Registry, ResourceKind};

/// The schema of `metadata` (ObjectMeta), inlined wherever an object is described.
pub fn object_meta() -> Value {
    let string = json!({"type": "string"});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "type": "object",
        "description": "Standard object metadata.",
        "properties": {
            "name": string, "generateName": string, "namespace": string, "uid": string,
            "resourceVersion": string, "selfLink": string,
            "generation": {"type": "integer", "format": "int64"},
            "creationTimestamp": {"type": "string", "format": "date-time"},
            "deletionTimestamp": {"type": "string", "format": "date-time"},
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
            "labels": string_map, "annotations": string_map,
            "finalizers": {"type": "array", "items": string},
            "ownerReferences": {"type": "array", "items": {"type": "object", "properties": {
                "apiVersion": string, "kind": string, "name": string, "uid": string,
                "controller": {"type": "boolean"}, "blockOwnerDeletion": {"type": "boolean"}}}},
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        },
    })
}

/// The name of a kind's schema in `components.schemas` / `definitions`.
pub fn schema_name(kind: &ResourceKind) -> String {
    if kind.group.is_empty() {
        return format!("io.k8s.api.core.{}.{}", kind.version, kind.kind);
    }
    let mut parts: Vec<&str> = kind.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), kind.version, kind.kind)
}

fn gvk(kind: &ResourceKind) -> Value {
    json!({"group": kind.group, "version": kind.version, "kind": kind.kind})
}

/// A kind's whole object schema: apiVersion, kind, metadata and the kind's own properties.
pub fn object_schema(kind: &ResourceKind) -> Value {
    let mut properties = Map::new();
    properties.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
    properties.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
    properties.insert("metadata".into(), object_meta());
    if let Value::Object(own) = (kind.schema)() {
        properties.extend(own);
    }
    json!({
        "type": "object",
        "description": kind.description,
        "properties": properties,
        "x-kubernetes-group-version-kind": [gvk(kind)],
    })
}

fn operation(
    kind: &ResourceKind,
    action: &str,
    schema_ref: &str,
    extra_parameters: &[&str],
) -> Value {
    let mut parameters: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "pretty"]
        .iter()
        .filter(|p| extra_parameters.contains(p))
        .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
        .collect();
    if action == "list" || action == "watchlist" || action == "deletecollection" {
        for p in [
            "labelSelector",
            "fieldSelector",
            "limit",
            "continue",
            "resourceVersion",
            "resourceVersionMatch",
            "timeoutSeconds",
            "watch",
            "allowWatchBookmarks",
            "sendInitialEvents",
        ] {
            parameters.push(json!({"name": p, "in": "query", "schema": {"type": "string"}}));
        }
    }
    json!({
        "operationId": format!("{action}{}", kind.kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind),
    })
}

fn paths_of(kind: &ResourceKind, base: &str, schema_ref: &str) -> Vec<(String, Value)> {
    let write = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
    let collection = json!({
        "get": operation(kind, "list", schema_ref, &["pretty"]),
        "post": operation(kind, "post", schema_ref, &write),
        "delete": operation(kind, "deletecollection", schema_ref, &["dryRun", "pretty"]),
    });
    let item = json!({
        "get": operation(kind, "get", schema_ref, &["pretty"]),
        "put": operation(kind, "put", schema_ref, &write),
        "patch": operation(kind, "patch", schema_ref, &write),
        "delete": operation(kind, "delete", schema_ref, &["dryRun", "pretty"]),
    });
    let mut paths = Vec::new();
    let scoped = if kind.namespaced {
        paths.push((
            format!("{base}/{}", kind.plural),
            json!({"get": operation(kind, "list", schema_ref, &["pretty"])}),
        ));
        format!("{base}/namespaces/{{namespace}}/{}", kind.plural)
    } else {
        format!("{base}/{}", kind.plural)
    };
    paths.push((scoped.clone(), collection));
    paths.push((format!("{scoped}/{{name}}"), item.clone()));
    if kind.has_status {
        let mut status = item;
        if let Some(map) = status.as_object_mut() {
            map.remove("delete");
        }
        paths.push((format!("{scoped}/{{name}}/status"), status));
    }
    paths
}

/// The OpenAPI 3.0 document of one group-version, if served.
pub fn v3_document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&ResourceKind> = registry.in_group_version(group, version).collect();
    if kinds.is_empty() {
        return None;
    }
    let base = if group.is_empty() {
        "/api/v1".to_owned()
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for kind in kinds {
        let name = schema_name(kind);
        let reference = format!("#/components/schemas/{name}");
        schemas.insert(name, object_schema(kind));
        for (path, item) in paths_of(kind, &base, &reference) {
            paths.insert(path, item);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBERNETES_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn hash_of(document: &Value) -> String {
    let mut hasher = DefaultHasher::new();
    document.to_string().hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}

/// `/openapi/v3`: where each group-version's document is, with a content hash.
pub fn v3_index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            let Some(document) = v3_document(registry, group, version) else {
                continue;
            };
            let path = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            paths.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash_of(&document))}));
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v2` as Swagger 2.0 JSON: the definitions (what `explain` and validation use).
pub fn v2_document(registry: &Registry) -> Value {
    let mut definitions = Map::new();
    for kind in registry.kinds() {
        definitions.insert(schema_name(kind), object_schema(kind));
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBERNETES_MINOR)},
        "paths": {},
        "definitions": definitions,
    })
}

/// Fields of `value` its schema does not know, as dotted paths (`spec.foo`, `data[k].x`).
pub fn unknown_fields(schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) => {
                        unknown_fields(child_schema, child, &child_path, found)
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(child_schema @ Value::Object(_))) => {
                        unknown_fields(child_schema, child, &format!("{path}[{key}]"), found)
                    }
                    (None, _) if properties.is_some() => found.push(child_path),
                    // A schema without properties says nothing about the fields.
                    (None, _) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item_schema, item, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

/// Removes the fields `unknown_fields` reports (Kubernetes prunes what it does not know).
pub fn prune(schema: &Value, value: &mut Value) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            map.retain(|key, _| {
                properties.is_some_and(|p| p.contains_key(key))
                    || additional.is_some_and(|a| a.is_object() || a == &Value::Bool(true))
                    || properties.is_none()
            });
            for (key, child) in map.iter_mut() {
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) => prune(child_schema, child),
                    (None, Some(child_schema @ Value::Object(_))) => prune(child_schema, child),
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_with_their_paths_and_pruned() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"url": {"type": "string"}}},
            "data": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}}}});
        let mut value = json!({"spec": {"url": "u", "foo": 1}, "data": {"k": "v"}, "free": {"any": 1},
                               "list": [{"a": "x", "b": 2}], "top": true});
        let mut found = Vec::new();
        unknown_fields(&schema, &value, "", &mut found);
        assert_eq!(found, ["list[0].b", "spec.foo", "top"]);
        prune(&schema, &mut value);
        assert_eq!(
            value,
            json!({"spec": {"url": "u"}, "data": {"k": "v"}, "free": {"any": 1}, "list": [{"a": "x"}]})
        );
    }
}
