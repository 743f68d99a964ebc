//! Objects as stored and as served: the JSON ↔ bytes mapping (the `resourceVersion` is never
//! stored, it is the key's revision), server-set metadata, and the generic checks every kind
//! gets (names, labels).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Map, Value, json};
use storage::KeyValue;

use crate::kinds::ResourceKind;
use crate::status::Cause;

/// Characters Kubernetes uses for `generateName` suffixes (no vowels, no look-alikes).
const NAME_SUFFIX_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// `generateName` + 5 random characters.
pub fn generate_name(prefix: &str) -> String {
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|b| NAME_SUFFIX_CHARS[*b as usize % NAME_SUFFIX_CHARS.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// The stored bytes: the object without `metadata.resourceVersion`.
pub fn encode(object: &Value) -> Vec<u8> {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    // A JSON value always serializes.
    serde_json::to_vec(&object).unwrap_or_default()
}

/// The served object: stored bytes with `resourceVersion` set from the revision.
pub fn decode(kv: &KeyValue, revision: storage::Revision) -> Result<Value, String> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| format!("stored object {} is not JSON: {e}", kv.key))?;
    set_resource_version(&mut object, revision);
    Ok(object)
}

/// The object as served: `apiVersion`/`kind` filled from the kind (they are not stored per
/// object differently).
pub fn served(kind: &ResourceKind, mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(kind.api_version()));
        map.insert("kind".into(), json!(kind.kind));
    }
    object
}

pub fn set_resource_version(object: &mut Value, revision: storage::Revision) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("resourceVersion".into(), json!(revision.to_string()));
    }
}

pub fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.as_object()
}

pub fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    object.get_mut("metadata")?.as_object_mut()
}

pub fn name(object: &Value) -> Option<&str> {
    metadata(object)?.get("name")?.as_str()
}

pub fn resource_version(object: &Value) -> Option<&str> {
    metadata(object)?
        .get("resourceVersion")?
        .as_str()
        .filter(|v| !v.is_empty())
}

pub fn labels(object: &Value) -> BTreeMap<String, String> {
    metadata(object)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn finalizers(object: &Value) -> Vec<String> {
    metadata(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(object: &Value) -> bool {
    metadata(object).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|t| !t.is_null()))
}

/// Everything that counts toward `generation`: the object minus metadata (and minus status
/// for kinds whose status is a subresource).
pub fn generation_content(kind: &ResourceKind, object: &Value) -> Value {
    let mut content = object.clone();
    if let Some(map) = content.as_object_mut() {
        map.remove("metadata");
        if kind.has_status {
            map.remove("status");
        }
    }
    content
}

/// Sets the value at a JSON pointer in `to` to the one in `from`, or removes it when `from`
/// has none (parents are created as objects when missing).
pub fn copy_pointer(from: &Value, to: &mut Value, pointer: &str) {
    let Some((parent, leaf)) = pointer.rsplit_once('/') else {
        return;
    };
    match from.pointer(pointer) {
        Some(value) => {
            let mut node = &mut *to;
            for segment in parent.split('/').filter(|s| !s.is_empty()) {
                if !node.is_object() {
                    *node = Value::Object(Default::default());
                }
                let Some(map) = node.as_object_mut() else {
                    return;
                };
                node = map
                    .entry(segment)
                    .or_insert_with(|| Value::Object(Default::default()));
            }
            if let Some(map) = node.as_object_mut() {
                map.insert(leaf.to_owned(), value.clone());
            } else {
                *node = serde_json::json!({ leaf: value.clone() });
            }
        }
        None => {
            if let Some(map) = to.pointer_mut(parent).and_then(Value::as_object_mut) {
                map.remove(leaf);
            }
        }
    }
}

/// A DNS-1123 subdomain: what most object names must be.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A DNS-1123 label: what namespace names must be.
pub fn is_dns_label(name: &str) -> bool {
    name.len() <= 63 && !name.contains('.') && is_dns_subdomain(name)
}

/// The checks every kind gets: a valid name, valid labels and annotations.
pub fn validate_metadata(kind: &ResourceKind, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(metadata) = metadata(object) else {
        causes.push(Cause::required("metadata"));
        return causes;
    };
    match metadata.get("name").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("metadata.name")),
        Some(_) if kind.strategy.checks_names() => {}
        Some(name) => {
            let valid = if kind.kind == "Namespace" {
                is_dns_label(name)
            } else {
                is_dns_subdomain(name)
            };
            if !valid {
                causes.push(Cause::invalid(
                    "metadata.name",
                    name,
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                ));
            }
        }
    }
    for field in ["labels", "annotations"] {
        if let Some(value) = metadata.get(field).filter(|v| !v.is_null()) {
            match value.as_object() {
                Some(map) => {
                    for (key, value) in map {
                        if !value.is_string() {
                            causes.push(Cause::invalid(
                                &format!("metadata.{field}[{key}]"),
                                &value.to_string(),
                                "must be a string",
                            ));
                        }
                    }
                }
                None => causes.push(Cause::invalid(
                    &format!("metadata.{field}"),
                    &value.to_string(),
                    "must be a map of strings",
                )),
            }
        }
    }
    if let Some(finalizers) = metadata.get("finalizers").filter(|v| !v.is_null())
        && !finalizers
            .as_array()
            .is_some_and(|f| f.iter().all(Value::is_string))
    {
        causes.push(Cause::invalid(
            "metadata.finalizers",
            &finalizers.to_string(),
            "must be a list of strings",
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_1123() {
        assert!(is_dns_subdomain("my-instance.v1"));
        assert!(!is_dns_subdomain("My_Instance"));
        assert!(!is_dns_subdomain("-x"));
        assert!(is_dns_label("test-ns"));
        assert!(!is_dns_label("a.b"));
    }

    #[test]
    fn generated_names_have_a_five_character_suffix() {
        let name = generate_name("binding-");
        assert_eq!(name.len(), "binding-".len() + 5);
        assert!(
            name["binding-".len()..]
                .bytes()
                .all(|b| NAME_SUFFIX_CHARS.contains(&b))
        );
    }

    #[test]
    fn the_resource_version_is_never_stored() -> Result<(), String> {
        let object = json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let bytes = encode(&object);
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let kv = KeyValue {
            key: "/k".into(),
            value: bytes,
            create_revision: 7,
            mod_revision: 9,
        };
        assert_eq!(decode(&kv, 9)?["metadata"]["resourceVersion"], "9");
        Ok(())
    }
}
