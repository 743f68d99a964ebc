//! The OpenAPI v2 document as gnostic's `openapi.v2.Document` protobuf, which is the only form
//! kubectl 1.20 accepts for client-side validation and `explain`.
//!
//! Hand-written protobuf encoding, on purpose: only seven messages are written (Document, Info,
//! Definitions, NamedSchema, Schema and its small wrappers), nothing is ever decoded, and
//! generating them with prost would need `protoc` and gnostic's `.proto` at build time. Field
//! numbers are those of gnostic's `openapiv2/OpenAPIv2.proto`.

use serde_json::Value;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A length-delimited field (strings, bytes, messages).
fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    varint(out, u64::from(field) << 3 | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn string(out: &mut Vec<u8>, field: u32, value: &str) {
    if !value.is_empty() {
        bytes(out, field, value.as_bytes());
    }
}

fn boolean(out: &mut Vec<u8>, field: u32, value: bool) {
    varint(out, u64::from(field) << 3);
    varint(out, u64::from(value));
}

/// `NamedAny{name, value: Any{yaml}}`: how vendor extensions travel.
fn vendor_extension(out: &mut Vec<u8>, field: u32, name: &str, value: &Value) {
    let yaml = serde_yaml::to_string(value).unwrap_or_default();
    let mut any = Vec::new();
    string(&mut any, 2, &yaml);
    let mut named = Vec::new();
    string(&mut named, 1, name);
    bytes(&mut named, 2, &any);
    bytes(out, field, &named);
}

fn named_schema(name: &str, schema: &Value) -> Vec<u8> {
    let mut named = Vec::new();
    string(&mut named, 1, name);
    bytes(&mut named, 2, &encode_schema(schema));
    named
}

/// A JSON schema as `openapi.v2.Schema`. Objects that preserve unknown fields lose their
/// `type`, which kubectl reads as "anything goes" instead of "an object with no fields".
pub fn encode_schema(schema: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        string(&mut out, 1, reference);
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        string(&mut out, 2, format);
    }
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        string(&mut out, 4, description);
    }
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(required) = required.as_str() {
            string(&mut out, 19, required);
        }
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            let mut item = Vec::new();
            boolean(&mut item, 2, *allowed);
            bytes(&mut out, 21, &item);
        }
        Some(nested @ Value::Object(_)) => {
            let mut item = Vec::new();
            bytes(&mut item, 1, &encode_schema(nested));
            bytes(&mut out, 21, &item);
        }
        _ => {}
    }
    if let Some(kind) = schema
        .get("type")
        .and_then(Value::as_str)
        .filter(|_| !preserve)
    {
        let mut item = Vec::new();
        string(&mut item, 1, kind);
        bytes(&mut out, 22, &item);
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        let mut item = Vec::new();
        bytes(&mut item, 1, &encode_schema(items));
        bytes(&mut out, 23, &item);
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        let mut encoded = Vec::new();
        for (name, property) in properties {
            bytes(&mut encoded, 1, &named_schema(name, property));
        }
        bytes(&mut out, 25, &encoded);
    }
    if let Some(map) = schema.as_object() {
        for (name, value) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
            vendor_extension(&mut out, 31, name, value);
        }
    }
    out
}

/// A Swagger 2.0 JSON document (`info` and `definitions`) as `openapi.v2.Document`.
pub fn encode_document(document: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(
        &mut out,
        1,
        document
            .get("swagger")
            .and_then(Value::as_str)
            .unwrap_or("2.0"),
    );
    let mut info = Vec::new();
    let info_json = document.get("info");
    string(
        &mut info,
        1,
        info_json
            .and_then(|i| i.get("title"))
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    string(
        &mut info,
        2,
        info_json
            .and_then(|i| i.get("version"))
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    bytes(&mut out, 2, &info);
    if let Some(definitions) = document.get("definitions").and_then(Value::as_object) {
        let mut encoded = Vec::new();
        for (name, schema) in definitions {
            bytes(&mut encoded, 1, &named_schema(name, schema));
        }
        bytes(&mut out, 9, &encoded);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_and_fields_use_the_protobuf_wire_format() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        string(&mut out, 1, "2.0");
        assert_eq!(out, [0x0a, 3, b'2', b'.', b'0']);
    }

    #[test]
    fn a_schema_carries_type_properties_and_extensions() {
        let encoded = encode_schema(
            &json!({"type": "object", "properties": {"a": {"type": "string"}},
            "x-kubernetes-group-version-kind": [{"group": "", "kind": "Secret", "version": "v1"}]}),
        );
        // type (22) = TypeItem{"object"}: key 22<<3|2 = 0xb2 0x01.
        assert!(encoded.windows(2).any(|w| w == [0xb2, 0x01]));
        let text = String::from_utf8_lossy(&encoded);
        assert!(text.contains("x-kubernetes-group-version-kind") && text.contains("kind: Secret"));
        let preserved =
            encode_schema(&json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        assert!(
            !preserved.windows(2).any(|w| w == [0xb2, 0x01]),
            "no type when unknown fields are kept"
        );
    }
}
