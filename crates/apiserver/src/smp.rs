//! Strategic merge patch for the standalone core kinds (Secret, ConfigMap, Namespace, Event,
//! Lease): a JSON merge patch plus the directives kubectl and client-go send, and the merge
//! strategies of the only lists these kinds have — `metadata.finalizers` (a merged set of
//! strings) and `metadata.ownerReferences` (merged by `uid`). Catalog kinds answer 415, as CRDs do.

use serde_json::{Map, Value};

/// Applies `patch` to `target` with strategic-merge semantics; `path` is the dotted path of
/// `target` (empty at the top).
pub fn apply(target: &mut Value, patch: &Value, path: &str) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        Some("replace") => {
            let mut replacement = patch.clone();
            replacement.remove("$patch");
            *target = Value::Object(replacement);
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return;
    };
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(remove)) = (map.get_mut(field), value) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        let child_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (child_path.as_str(), map.get_mut(key), value) {
            (_, _, Value::Null) => {
                map.remove(key);
            }
            ("metadata.finalizers", Some(Value::Array(existing)), Value::Array(added)) => {
                for item in added {
                    if !existing.contains(item) {
                        existing.push(item.clone());
                    }
                }
            }
            ("metadata.ownerReferences", Some(Value::Array(existing)), Value::Array(patched)) => {
                for reference in patched {
                    let uid = reference.get("uid");
                    match existing
                        .iter_mut()
                        .find(|e| e.get("uid") == uid && uid.is_some())
                    {
                        Some(current) => apply(current, reference, &child_path),
                        None => existing.push(reference.clone()),
                    }
                }
            }
            (_, Some(existing), Value::Object(_)) if existing.is_object() => {
                apply(existing, value, &child_path)
            }
            _ => {
                let mut fresh = Value::Null;
                apply(&mut fresh, value, &child_path);
                map.insert(
                    key.clone(),
                    if value.is_object() {
                        fresh
                    } else {
                        value.clone()
                    },
                );
            }
        }
    }
    if let Some(Value::Array(retain)) = patch.get("$retainKeys") {
        map.retain(|key, _| retain.iter().any(|k| k.as_str() == Some(key)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(target: Value, patch: Value) -> Value {
        let mut target = target;
        apply(&mut target, &patch, "");
        target
    }

    #[test]
    fn finalizers_merge_as_a_set_and_directives_remove() {
        let object =
            json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1"}}, "data": {"k": "v"}});
        let added = patched(
            object.clone(),
            json!({"metadata": {"finalizers": ["b", "a"]}}),
        );
        assert_eq!(added["metadata"]["finalizers"], json!(["a", "b"]));
        let removed = patched(
            added,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"],
            "$setElementOrder/finalizers": ["b"]}}),
        );
        assert_eq!(removed["metadata"]["finalizers"], json!(["b"]));
        let replaced = patched(
            object,
            json!({"data": {"$patch": "replace", "new": "1"}, "metadata": {"labels": {"x": null}}}),
        );
        assert_eq!(replaced["data"], json!({"new": "1"}));
        assert_eq!(replaced["metadata"]["labels"], json!({}));
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let object = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}});
        let merged = patched(
            object,
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "renamed"}, {"uid": "2", "name": "b"}]}}),
        );
        assert_eq!(
            merged["metadata"]["ownerReferences"],
            json!([{"uid": "1", "name": "renamed"}, {"uid": "2", "name": "b"}])
        );
    }
}
