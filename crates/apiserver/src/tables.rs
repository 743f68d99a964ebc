//! Representations negotiated by `Accept`: the object itself, a `Table` with the kind's columns
//! (what `kubectl get` asks for), or `PartialObjectMetadata` (metadata-only clients).

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::kinds::{Column, ColumnValue, ResourceKind};

/// How much of each object a Table row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    Object,
    Table(Include),
    Metadata,
}

/// The first acceptable representation in the client's `Accept` order.
pub fn negotiate(headers: &HeaderMap, include_object: Option<&str>) -> Representation {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Representation::Object;
    };
    for range in accept.split(',') {
        let range = range.replace(' ', "");
        let is_meta_group = range.contains("g=meta.k8s.io");
        if range.starts_with("application/json") && range.contains("as=Table") && is_meta_group {
            let include = match include_object {
                Some("None") => Include::None,
                Some("Object") => Include::Object,
                _ => Include::Metadata,
            };
            return Representation::Table(include);
        }
        if range.starts_with("application/json")
            && (range.contains("as=PartialObjectMetadataList;")
                || range.contains("as=PartialObjectMetadata;")
                || range.ends_with("as=PartialObjectMetadata")
                || range.ends_with("as=PartialObjectMetadataList"))
            && is_meta_group
        {
            return Representation::Metadata;
        }
        if (range.starts_with("application/json") && !range.contains("as="))
            || range.starts_with("*/*")
        {
            return Representation::Object;
        }
    }
    Representation::Object
}

/// Kubernetes' short human duration (`apimachinery/pkg/util/duration.HumanDuration`).
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        if seconds.is_multiple_of(60) {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{}s", seconds % 60)
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        if minutes.is_multiple_of(60) {
            format!("{hours}h")
        } else {
            format!("{hours}h{}m", minutes % 60)
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        if hours.is_multiple_of(24) {
            format!("{days}d")
        } else {
            format!("{days}d{}h", hours % 24)
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        let years = days / 365;
        if days.is_multiple_of(365) {
            format!("{years}y")
        } else {
            format!("{years}y{}d", days % 365)
        }
    } else {
        format!("{}y", days / 365)
    }
}

fn age(object: &Value) -> String {
    let created = object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339(t).ok());
    match created {
        Some(created) => human_duration(
            SystemTime::now()
                .duration_since(created)
                .unwrap_or(Duration::ZERO),
        ),
        None => "<unknown>".into(),
    }
}

fn cell(object: &Value, column: &Column) -> Value {
    match column.value {
        ColumnValue::Path(pointer) => match object.pointer(pointer) {
            Some(Value::String(s)) => json!(s),
            Some(Value::Null) | None => json!(""),
            Some(other) => other.clone(),
        },
        ColumnValue::Count(pointer) => json!(
            object
                .pointer(pointer)
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
        ),
        ColumnValue::KindName(pointer) => {
            let target = object.pointer(pointer);
            let kind = target
                .and_then(|t| t.get("kind"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = target
                .and_then(|t| t.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            json!(format!("{}/{name}", kind.to_lowercase()))
        }
        ColumnValue::Computed(compute) => compute(object),
    }
}

/// `PartialObjectMetadata` for one object.
pub fn partial(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn row(kind: &ResourceKind, object: &Value, include: Include) -> Value {
    let mut cells = vec![json!(
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    )];
    cells.extend(kind.columns.iter().map(|c| cell(object, c)));
    cells.push(json!(age(object)));
    let mut row = json!({"cells": cells});
    match include {
        Include::None => {}
        Include::Metadata => row["object"] = partial(object),
        Include::Object => row["object"] = object.clone(),
    }
    row
}

/// A `Table` of objects, with list metadata (`resourceVersion`, `continue`).
pub fn table(
    kind: &ResourceKind,
    objects: &[Value],
    list_metadata: Value,
    include: Include,
) -> Value {
    let mut definitions = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    definitions.extend(kind.columns.iter().map(|c| {
        json!({"name": c.name, "type": c.kind, "format": "", "description": c.description, "priority": c.priority})
    }));
    definitions.push(json!({"name": "Age", "type": "date", "format": "", "description": "Time since creation.", "priority": 0}));
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": objects.iter().map(|o| row(kind, o, include)).collect::<Vec<_>>(),
    })
}

/// One object in the negotiated representation (for get and watch events).
pub fn one(kind: &ResourceKind, object: Value, representation: Representation) -> Value {
    match representation {
        Representation::Object => object,
        Representation::Metadata => partial(&object),
        Representation::Table(include) => {
            let revision = object
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            table(
                kind,
                &[object],
                json!({"resourceVersion": revision}),
                include,
            )
        }
    }
}

/// A list in the negotiated representation.
pub fn list(
    kind: &ResourceKind,
    items: Vec<Value>,
    metadata: Value,
    representation: Representation,
) -> Value {
    match representation {
        Representation::Object => json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.api_version(),
            "metadata": metadata,
            "items": items,
        }),
        Representation::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
            "items": items.iter().map(partial).collect::<Vec<_>>(),
        }),
        Representation::Table(include) => table(kind, &items, metadata, include),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn durations_read_like_kubectl() {
        for (seconds, text) in [
            (5, "5s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 600, "3h10m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (40 * 86400, "40d"),
            (3 * 365 * 86400, "3y"),
        ] {
            assert_eq!(human_duration(Duration::from_secs(seconds)), text);
        }
    }

    #[test]
    fn the_first_acceptable_representation_wins() {
        let mut headers = HeaderMap::new();
        assert_eq!(negotiate(&headers, None), Representation::Object);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert_eq!(
            negotiate(&headers, None),
            Representation::Table(Include::Metadata)
        );
        assert_eq!(
            negotiate(&headers, Some("Object")),
            Representation::Table(Include::Object)
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"));
        assert_eq!(negotiate(&headers, None), Representation::Metadata);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf,application/json"),
        );
        assert_eq!(negotiate(&headers, None), Representation::Object);
    }
}
