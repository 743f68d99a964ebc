//! Parameters as the user gives them (`--param k=v`, `--params-json`, `--secret name[key]`),
//! typed and checked against the plan's schema before anything is created, so a mistake is an
//! error naming the parameter rather than a Failed instance a minute later.

use serde_json::{Map, Value, json};

use crate::cli::ParamArgs;
use crate::error::{Error, Result};

/// Parameters ready for a spec: inline ones, and references to Secret keys.
#[derive(Debug, Default, PartialEq)]
pub struct Parameters {
    pub inline: Map<String, Value>,
    /// Keys given with `--param`: typed by the schema, since the command line only has strings.
    pub from_flags: Vec<String>,
    pub secrets: Vec<(String, String)>,
}

impl Parameters {
    pub fn parse(args: &ParamArgs) -> Result<Parameters> {
        let mut inline = match &args.params_json {
            None => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    return Err(Error::Invalid(
                        "--params-json: expected a JSON object, like '{\"size\": 5}'".into(),
                    ));
                }
                Err(e) => return Err(Error::Invalid(format!("--params-json: {e}"))),
            },
        };
        let mut from_flags = Vec::new();
        for param in &args.params {
            let Some((key, value)) = param.split_once('=') else {
                return Err(Error::Invalid(format!(
                    "--param {param:?}: expected KEY=VALUE"
                )));
            };
            if key.is_empty() {
                return Err(Error::Invalid(format!(
                    "--param {param:?}: the key is empty"
                )));
            }
            inline.insert(key.to_string(), Value::String(value.to_string()));
            from_flags.push(key.to_string());
        }
        let mut secrets = Vec::new();
        for secret in &args.secrets {
            let parsed = secret
                .strip_suffix(']')
                .and_then(|s| s.split_once('['))
                .filter(|(name, key)| !name.is_empty() && !key.is_empty());
            let Some((name, key)) = parsed else {
                return Err(Error::Invalid(format!(
                    "--secret {secret:?}: expected SECRET[KEY], like db-params[params]"
                )));
            };
            secrets.push((name.to_string(), key.to_string()));
        }
        Ok(Parameters {
            inline,
            from_flags,
            secrets,
        })
    }

    /// Gives `--param` values the type the schema asks for (integer, number, boolean), then
    /// checks everything against the schema. With parameters from Secrets, which svcat does not
    /// read, a required property may be there: only the inline values are judged.
    pub fn check(&mut self, schema: Option<&Value>, what: &str) -> Result<()> {
        let Some(schema) = schema else {
            return Ok(());
        };
        for key in &self.from_flags {
            let wanted = schema.pointer(&format!("/properties/{}/type", escape(key)));
            let Some(Value::String(text)) = self.inline.get(key) else {
                continue;
            };
            let typed = match wanted.and_then(Value::as_str) {
                Some("integer") => text.parse::<i64>().ok().map(Value::from),
                Some("number") => text.parse::<f64>().ok().map(Value::from),
                Some("boolean") => text.parse::<bool>().ok().map(Value::from),
                Some("object") | Some("array") => serde_json::from_str(text).ok(),
                _ => None,
            };
            if let Some(typed) = typed {
                self.inline.insert(key.clone(), typed);
            }
        }
        let mut schema = schema.clone();
        if !self.secrets.is_empty()
            && let Some(map) = schema.as_object_mut()
        {
            map.remove("required");
        }
        osb_client::validate_parameters(&schema, &Value::Object(self.inline.clone()))
            .map_err(|error| Error::Invalid(format!("{what}: {error}")))
    }

    /// The spec's `parameters` (absent when there are none).
    pub fn inline_value(&self) -> Option<Value> {
        (!self.inline.is_empty()).then(|| Value::Object(self.inline.clone()))
    }

    /// The spec's `parametersFrom`.
    pub fn secret_refs(&self) -> Vec<Value> {
        self.secrets
            .iter()
            .map(|(name, key)| json!({"secretKeyRef": {"name": name, "key": key}}))
            .collect()
    }
}

/// A JSON pointer token: `~` and `/` escaped.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(params: &[&str], json: Option<&str>, secrets: &[&str]) -> ParamArgs {
        ParamArgs {
            params: params.iter().map(|s| s.to_string()).collect(),
            params_json: json.map(str::to_string),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn schema() -> Value {
        json!({"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "maximum": 100},
            "ha": {"type": "boolean"},
            "name": {"type": "string"}}})
    }

    #[test]
    fn flag_values_take_the_schemas_types_over_the_json() {
        let mut p = Parameters::parse(&args(
            &["size=5", "ha=true", "name=007"],
            Some(r#"{"size": 1, "extra": [1]}"#),
            &[],
        ))
        .unwrap_or_default();
        let checked = p.check(Some(&schema()), "plan x");
        assert!(checked.is_ok(), "{checked:?}");
        assert_eq!(
            p.inline_value(),
            Some(json!({"size": 5, "ha": true, "name": "007", "extra": [1]}))
        );
    }

    #[test]
    fn a_parameter_breaking_the_schema_is_named_with_what_the_schema_wanted() {
        let mut p = Parameters::parse(&args(&["size=500"], None, &[])).unwrap_or_default();
        let error = p
            .check(Some(&schema()), "plan x")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("plan x: parameter /size: 500 is greater than the maximum of 100")
        );
        let mut p = Parameters::parse(&args(&["size=big"], None, &[])).unwrap_or_default();
        let error = p
            .check(Some(&schema()), "plan x")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("plan x: parameter /size: \"big\" is not of type \"integer\"")
        );
    }

    #[test]
    fn required_properties_may_come_from_a_secret() {
        let mut without = Parameters::parse(&args(&["ha=true"], None, &[])).unwrap_or_default();
        let error = without
            .check(Some(&schema()), "plan x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("\"size\" is a required property"), "{error}");
        let mut with =
            Parameters::parse(&args(&["ha=true"], None, &["db[params]"])).unwrap_or_default();
        assert!(with.check(Some(&schema()), "plan x").is_ok());
        assert_eq!(
            with.secret_refs(),
            vec![json!({"secretKeyRef": {"name": "db", "key": "params"}})]
        );
    }

    #[test]
    fn malformed_flags_are_refused_with_the_shape_expected() {
        for bad in [
            args(&["size"], None, &[]),
            args(&["=5"], None, &[]),
            args(&[], Some("[1]"), &[]),
            args(&[], Some("{"), &[]),
            args(&[], None, &["db"]),
            args(&[], None, &["db[]"]),
        ] {
            assert!(
                matches!(Parameters::parse(&bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
