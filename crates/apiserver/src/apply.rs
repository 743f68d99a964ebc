//! Server-side apply, in the "degraded but sufficient" form of `k8s-api-compat.md` P4: create or
//! merge the applied intent, record the manager's field set in `managedFields`, and remove the
//! fields this manager applied before but no longer does. Conflicts between managers are not
//! detected (every apply behaves as `force=true`); lists are owned whole.

use serde_json::{Map, Value, json};

/// Fields that are identity or server-owned, never part of anyone's field set.
const NOT_OWNED: [&str; 2] = ["apiVersion", "kind"];
const METADATA_NOT_OWNED: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
];

/// The FieldsV1 set of an applied object: `{"f:spec": {"f:url": {}}}`.
pub fn field_set(applied: &Value) -> Value {
    fn walk(value: &Value, top: bool, in_metadata: bool) -> Value {
        let Value::Object(map) = value else {
            return json!({});
        };
        let mut set = Map::new();
        for (key, child) in map {
            if top && NOT_OWNED.contains(&key.as_str()) {
                continue;
            }
            if in_metadata && METADATA_NOT_OWNED.contains(&key.as_str()) {
                continue;
            }
            set.insert(
                format!("f:{key}"),
                walk(child, false, top && key == "metadata"),
            );
        }
        Value::Object(set)
    }
    walk(applied, true, false)
}

/// The FieldsV1 set of what a write changed: fields added or given a new value (leaves, and
/// whole lists), not the whole object — so a manager owns what it touched.
pub fn changed_fields(old: &Value, new: &Value) -> Value {
    fn walk(old: Option<&Value>, new: &Value, top: bool, in_metadata: bool) -> Option<Value> {
        match new {
            Value::Object(map) if old.is_none_or(Value::is_object) => {
                let mut set = Map::new();
                for (key, child) in map {
                    if (top && NOT_OWNED.contains(&key.as_str()))
                        || (in_metadata && METADATA_NOT_OWNED.contains(&key.as_str()))
                    {
                        continue;
                    }
                    let before = old.and_then(|o| o.get(key));
                    if let Some(changed) = walk(before, child, false, top && key == "metadata") {
                        set.insert(format!("f:{key}"), changed);
                    }
                }
                (!set.is_empty() || old.is_none()).then_some(Value::Object(set))
            }
            leaf => (old != Some(leaf)).then(|| json!({})),
        }
    }
    walk(Some(old), new, true, false).unwrap_or_else(|| json!({}))
}

/// The union of two FieldsV1 sets.
pub fn union(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let mut merged = a.clone();
            for (key, value) in b {
                let joined = match merged.get(key) {
                    Some(existing) => union(existing, value),
                    None => value.clone(),
                };
                merged.insert(key.clone(), joined);
            }
            Value::Object(merged)
        }
        (_, b) => b.clone(),
    }
}

/// The fields a manager's previous entry for `operation` owns, if any.
pub fn owned(object: &Value, manager: &str, operation: &str) -> Option<Value> {
    object
        .pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|entry| {
            entry.get("manager").and_then(Value::as_str) == Some(manager)
                && entry.get("operation").and_then(Value::as_str) == Some(operation)
        })?
        .get("fieldsV1")
        .cloned()
}

/// Removes from `object` every field in `owned` that is not in `keep`.
fn remove_disowned(object: &mut Value, owned: &Value, keep: &Value) {
    let (Value::Object(map), Value::Object(owned)) = (object, owned) else {
        return;
    };
    for (field, owned_child) in owned {
        let Some(key) = field.strip_prefix("f:") else {
            continue;
        };
        match keep.get(field) {
            None => {
                map.remove(key);
            }
            Some(keep_child) => {
                if let Some(child) = map.get_mut(key) {
                    remove_disowned(child, owned_child, keep_child);
                }
            }
        }
    }
}

/// Objects merge, everything else is replaced by the applied value.
fn merge(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(target), Value::Object(applied)) => {
            for (key, value) in applied {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, applied) => *target = applied.clone(),
    }
}

/// Records a manager's write in `managedFields` (`operation` is `Apply` or `Update`),
/// replacing its previous entry for the same operation.
pub fn record(
    object: &mut Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    fields: Value,
    now: &str,
) {
    let entry = json!({
        "manager": manager, "operation": operation, "apiVersion": api_version,
        "time": now, "fieldsType": "FieldsV1", "fieldsV1": fields,
    });
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let entries = metadata
        .entry("managedFields")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(entries) = entries {
        entries.retain(|e| {
            !(e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("operation").and_then(Value::as_str) == Some(operation))
        });
        entries.push(entry);
    }
}

/// The object after `manager` applies `applied` to `live`.
pub fn apply(live: &Value, applied: &Value, manager: &str) -> Value {
    let mut result = live.clone();
    let fields = field_set(applied);
    if let Some(previous) = owned(live, manager, "Apply") {
        remove_disowned(&mut result, &previous, &fields);
    }
    merge(&mut result, applied);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_owns_only_what_it_changed() {
        let old = json!({"metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1"}});
        let new = json!({"metadata": {"name": "c", "labels": {"a": "1", "tier": "web"}}, "data": {"x": "1"}});
        assert_eq!(
            changed_fields(&old, &new),
            json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
        );
        assert_eq!(
            union(
                &json!({"f:data": {"f:x": {}}}),
                &json!({"f:data": {"f:y": {}}})
            ),
            json!({"f:data": {"f:x": {}, "f:y": {}}})
        );
    }

    #[test]
    fn a_field_the_manager_stops_applying_is_removed_and_others_stay() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1", "y": "2"}});
        let mut live = apply(
            &json!({"metadata": {"name": "c"}, "data": {"other": "kept"}}),
            &first,
            "me",
        );
        record(&mut live, "me", "Apply", "v1", field_set(&first), "t");
        assert_eq!(
            field_set(&first),
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:data": {"f:x": {}, "f:y": {}}})
        );
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "9"}});
        let after = apply(&live, &second, "me");
        assert_eq!(after["data"], json!({"x": "9", "other": "kept"}));
        assert!(after.pointer("/metadata/labels/a").is_none());
    }
}
