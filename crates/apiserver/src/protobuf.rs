//! Decoding of the Kubernetes protobuf request bodies kubectl sends for core kinds.
//!
//! kubectl ≥ 1.3x creates typed objects (`kubectl create namespace`, `create secret`, `create
//! configmap`) with `Content-Type: application/vnd.kubernetes.protobuf` and never falls back to
//! JSON. Bodies are the `k8s\0` magic, then a `runtime.Unknown` whose `raw` field holds the object.
//! Hand-written (read-only, three kinds, the field numbers of k8s.io/api's `generated.proto`):
//! a generated decoder would bring all of Kubernetes' protobuf types and `protoc` into the build.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Iterates over a message's fields; `Err` on malformed input.
fn fields(mut data: &[u8]) -> Result<Vec<(u32, Field<'_>)>, String> {
    fn varint(data: &mut &[u8]) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = data.split_first().ok_or("truncated varint")?;
            *data = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }
    let mut out = Vec::new();
    while !data.is_empty() {
        let key = varint(&mut data)?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number too large")?;
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut data)?),
            2 => {
                let len = usize::try_from(varint(&mut data)?).map_err(|_| "length too large")?;
                if len > data.len() {
                    return Err("truncated field".into());
                }
                let (bytes, rest) = data.split_at(len);
                data = rest;
                Field::Bytes(bytes)
            }
            1 => {
                data = data.get(8..).ok_or("truncated fixed64")?;
                continue;
            }
            5 => {
                data = data.get(4..).ok_or("truncated fixed32")?;
                continue;
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((number, field));
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_owned())
}

/// A `map<string, string>` (or `map<string, bytes>` as base64) entry.
fn map_entry(bytes: &[u8], values_are_bytes: bool) -> Result<(String, Value), String> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(b)) => key = text(b)?,
            (2, Field::Bytes(b)) if values_are_bytes => value = json!(STANDARD.encode(b)),
            (2, Field::Bytes(b)) => value = json!(text(b)?),
            _ => {}
        }
    }
    Ok((key, value))
}

fn insert_entry(object: &mut Map<String, Value>, field: &str, entry: (String, Value)) {
    if let Value::Object(map) = object.entry(field).or_insert_with(|| json!({})) {
        map.insert(entry.0, entry.1);
    }
}

fn push(object: &mut Map<String, Value>, field: &str, value: Value) {
    if let Value::Array(items) = object.entry(field).or_insert_with(|| json!([])) {
        items.push(value);
    }
}

/// `ObjectMeta`: the fields a client sets on create.
fn object_meta(bytes: &[u8]) -> Result<Value, String> {
    let mut meta = Map::new();
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(b)) => {
                meta.insert("name".into(), json!(text(b)?));
            }
            (2, Field::Bytes(b)) => {
                meta.insert("generateName".into(), json!(text(b)?));
            }
            (3, Field::Bytes(b)) => {
                meta.insert("namespace".into(), json!(text(b)?));
            }
            (6, Field::Bytes(b)) => {
                meta.insert("resourceVersion".into(), json!(text(b)?));
            }
            (11, Field::Bytes(b)) => insert_entry(&mut meta, "labels", map_entry(b, false)?),
            (12, Field::Bytes(b)) => insert_entry(&mut meta, "annotations", map_entry(b, false)?),
            (14, Field::Bytes(b)) => push(&mut meta, "finalizers", json!(text(b)?)),
            _ => {}
        }
    }
    Ok(Value::Object(meta))
}

fn secret(bytes: &[u8], object: &mut Map<String, Value>) -> Result<(), String> {
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(b)) => {
                object.insert("metadata".into(), object_meta(b)?);
            }
            (2, Field::Bytes(b)) => insert_entry(object, "data", map_entry(b, true)?),
            (3, Field::Bytes(b)) => {
                object.insert("type".into(), json!(text(b)?));
            }
            (4, Field::Bytes(b)) => insert_entry(object, "stringData", map_entry(b, false)?),
            (5, Field::Varint(v)) => {
                object.insert("immutable".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    Ok(())
}

fn configmap(bytes: &[u8], object: &mut Map<String, Value>) -> Result<(), String> {
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(b)) => {
                object.insert("metadata".into(), object_meta(b)?);
            }
            (2, Field::Bytes(b)) => insert_entry(object, "data", map_entry(b, false)?),
            (3, Field::Bytes(b)) => insert_entry(object, "binaryData", map_entry(b, true)?),
            (4, Field::Varint(v)) => {
                object.insert("immutable".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    Ok(())
}

fn namespace(bytes: &[u8], object: &mut Map<String, Value>) -> Result<(), String> {
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(b)) => {
                object.insert("metadata".into(), object_meta(b)?);
            }
            (2, Field::Bytes(b)) => {
                let mut spec = Map::new();
                for (n, f) in fields(b)? {
                    if let (1, Field::Bytes(finalizer)) = (n, f) {
                        push(&mut spec, "finalizers", json!(text(finalizer)?));
                    }
                }
                object.insert("spec".into(), Value::Object(spec));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `kubectl auth can-i`'s question: the spec's resource or non-resource attributes (field
/// numbers of k8s.io/api/authorization/v1's `generated.proto`).
fn self_subject_access_review(bytes: &[u8], object: &mut Map<String, Value>) -> Result<(), String> {
    const RESOURCE: [&str; 7] = [
        "namespace",
        "verb",
        "group",
        "version",
        "resource",
        "subresource",
        "name",
    ];
    const NON_RESOURCE: [&str; 2] = ["path", "verb"];
    let attributes = |bytes: &[u8], names: &[&str]| -> Result<Value, String> {
        let mut out = Map::new();
        string_fields(bytes, names, false, &mut out)?;
        Ok(Value::Object(out))
    };
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(b)) => {
                object.insert("metadata".into(), object_meta(b)?);
            }
            (2, Field::Bytes(spec_bytes)) => {
                let mut spec = Map::new();
                for (n, f) in fields(spec_bytes)? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => {
                            spec.insert("resourceAttributes".into(), attributes(b, &RESOURCE)?);
                        }
                        (2, Field::Bytes(b)) => {
                            spec.insert(
                                "nonResourceAttributes".into(),
                                attributes(b, &NON_RESOURCE)?,
                            );
                        }
                        _ => {}
                    }
                }
                object.insert("spec".into(), Value::Object(spec));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Fields numbered from 1 as strings into `out` (repeated ones as lists when `repeated`).
fn string_fields(
    bytes: &[u8],
    names: &[&str],
    repeated: bool,
    out: &mut Map<String, Value>,
) -> Result<(), String> {
    for (number, field) in fields(bytes)? {
        let name = (number as usize).checked_sub(1).and_then(|i| names.get(i));
        if let (Some(name), Field::Bytes(b)) = (name, field) {
            if repeated {
                push(out, name, json!(text(b)?));
            } else {
                out.insert((*name).to_owned(), json!(text(b)?));
            }
        }
    }
    Ok(())
}

/// Roles and ClusterRoles (`kubectl create role/clusterrole`): metadata and rules.
fn role(bytes: &[u8], object: &mut Map<String, Value>) -> Result<(), String> {
    const RULE: [&str; 5] = [
        "verbs",
        "apiGroups",
        "resources",
        "resourceNames",
        "nonResourceURLs",
    ];
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(b)) => {
                object.insert("metadata".into(), object_meta(b)?);
            }
            (2, Field::Bytes(b)) => {
                let mut rule = Map::new();
                string_fields(b, &RULE, true, &mut rule)?;
                push(object, "rules", Value::Object(rule));
            }
            _ => {}
        }
    }
    Ok(())
}

/// RoleBindings and ClusterRoleBindings (`kubectl create rolebinding/clusterrolebinding`).
fn role_binding(bytes: &[u8], object: &mut Map<String, Value>) -> Result<(), String> {
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(b)) => {
                object.insert("metadata".into(), object_meta(b)?);
            }
            (2, Field::Bytes(b)) => {
                let mut subject = Map::new();
                string_fields(
                    b,
                    &["kind", "apiGroup", "name", "namespace"],
                    false,
                    &mut subject,
                )?;
                push(object, "subjects", Value::Object(subject));
            }
            (3, Field::Bytes(b)) => {
                let mut role_ref = Map::new();
                string_fields(b, &["apiGroup", "kind", "name"], false, &mut role_ref)?;
                object.insert("roleRef".into(), Value::Object(role_ref));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `kubectl auth can-i --list`'s question: the namespace.
fn self_subject_rules_review(bytes: &[u8], object: &mut Map<String, Value>) -> Result<(), String> {
    for (number, field) in fields(bytes)? {
        if let (2, Field::Bytes(spec)) = (number, field) {
            let mut out = Map::new();
            string_fields(spec, &["namespace"], false, &mut out)?;
            object.insert("spec".into(), Value::Object(out));
        }
    }
    Ok(())
}

/// Decodes a protobuf body into the JSON object, for the kinds kubectl creates that way.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("not a Kubernetes protobuf body (no k8s magic)")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (number, field) in fields(unknown)? {
        match (number, field) {
            (1, Field::Bytes(type_meta)) => {
                for (n, f) in fields(type_meta)? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => api_version = text(b)?,
                        (2, Field::Bytes(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => secret(raw, &mut object)?,
        ("v1", "ConfigMap") => configmap(raw, &mut object)?,
        ("v1", "Namespace") => namespace(raw, &mut object)?,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            self_subject_access_review(raw, &mut object)?
        }
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => role(raw, &mut object)?,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => {
            role_binding(raw, &mut object)?
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            self_subject_rules_review(raw, &mut object)?
        }
        // `kubectl auth whoami`: the body says nothing the server needs.
        ("authentication.k8s.io/v1", "SelfSubjectReview") => {}
        _ => {
            return Err(format!(
                "protobuf bodies are accepted for v1 Secret, ConfigMap, Namespace, RBAC kinds and self reviews, not {api_version}/{kind}; send JSON"
            ));
        }
    }
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_secret_body_decodes_to_its_json() -> Result<(), String> {
        let meta = [field(1, b"db"), field(3, b"team-a")].concat();
        let entry = [field(1, b"password"), field(2, b"s3cret")].concat();
        let raw = [field(1, &meta), field(2, &entry), field(3, b"Opaque")].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let object = decode(&body)?;
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "db", "namespace": "team-a"}, "data": {"password": "czNjcmV0"}})
        );
        Ok(())
    }

    #[test]
    fn garbage_and_other_kinds_are_refused() {
        assert!(decode(b"{}").is_err());
        assert!(decode(b"k8s\0\x0a\xff").is_err());
        let type_meta = [field(1, b"v1"), field(2, b"Pod")].concat();
        assert!(decode(&[MAGIC.to_vec(), field(1, &type_meta)].concat()).is_err());
    }
}
