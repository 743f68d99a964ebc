//! Label and field selectors, in Kubernetes' syntax.
//!
//! Hand-written: the grammar is small and the ecosystem's parsers live inside client crates
//! (kube-core builds selectors, it does not parse them).
//!
//! - Labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`; comma means AND.
//! - Fields: `f=v`, `f==v`, `f!=v`; comma means AND; which fields exist is the kind's business.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelRequirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

fn valid_label_key(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    !name.is_empty()
        && name.len() <= 63
        && key.split('/').count() <= 2
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn valid_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

impl LabelSelector {
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(Self(requirements));
        }
        for part in split_top_level(input) {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!(
                    "invalid label selector {input:?}: empty requirement"
                ));
            }
            requirements.push(Self::parse_requirement(part)?);
        }
        Ok(Self(requirements))
    }

    fn parse_requirement(part: &str) -> Result<LabelRequirement, String> {
        let key_ok = |key: &str| {
            if valid_label_key(key) {
                Ok(key.to_owned())
            } else {
                Err(format!("invalid label key {key:?}"))
            }
        };
        let value_ok = |value: &str| {
            if valid_label_value(value) {
                Ok(value.to_owned())
            } else {
                Err(format!("invalid label value {value:?}"))
            }
        };
        if let Some(key) = part.strip_prefix('!') {
            return Ok(LabelRequirement::NotExists(key_ok(key.trim())?));
        }
        if let Some((key, value)) = part.split_once("!=") {
            return Ok(LabelRequirement::NotEquals(
                key_ok(key.trim())?,
                value_ok(value.trim())?,
            ));
        }
        if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            return Ok(LabelRequirement::Equals(
                key_ok(key.trim())?,
                value_ok(value.trim())?,
            ));
        }
        let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
        if let [key, rest] = words.as_slice() {
            let rest = rest.trim();
            let (negated, list) = if let Some(list) = rest.strip_prefix("notin") {
                (true, list)
            } else if let Some(list) = rest.strip_prefix("in") {
                (false, list)
            } else {
                return Err(format!("invalid label selector requirement {part:?}"));
            };
            let list = list.trim();
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| {
                    format!("invalid label selector requirement {part:?}: expected (values)")
                })?;
            let values = inner
                .split(',')
                .map(|v| value_ok(v.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            let key = key_ok(key.trim())?;
            return Ok(if negated {
                LabelRequirement::NotIn(key, values)
            } else {
                LabelRequirement::In(key, values)
            });
        }
        Ok(LabelRequirement::Exists(key_ok(part)?))
    }

    /// The keys the selector's requirements are about, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.0
            .iter()
            .map(|r| match r {
                LabelRequirement::Equals(k, _)
                | LabelRequirement::NotEquals(k, _)
                | LabelRequirement::In(k, _)
                | LabelRequirement::NotIn(k, _)
                | LabelRequirement::Exists(k)
                | LabelRequirement::NotExists(k) => k.as_str(),
            })
            .collect()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            LabelRequirement::Equals(k, v) => labels.get(k) == Some(v),
            LabelRequirement::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelRequirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelRequirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            LabelRequirement::Exists(k) => labels.contains_key(k),
            LabelRequirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// One `field=value` or `field!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(Self(requirements));
        }
        for part in input.split(',') {
            let part = part.trim();
            let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid field selector {input:?}: {part:?} has no operator"
                ));
            };
            requirements.push(FieldRequirement {
                field: field.trim().to_owned(),
                value: value.trim().to_owned(),
                negated,
            });
        }
        Ok(Self(requirements))
    }

    /// Whether the object matches, reading each field with `lookup`.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| {
            let actual = lookup(&r.field).unwrap_or_default();
            (actual == r.value) != r.negated
        })
    }

    /// The value an equality requirement pins `field` to, if any (to narrow a list).
    pub fn pinned(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.field == field && !r.negated)
            .map(|r| r.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn every_label_operator_matches_as_kubernetes_does() -> Result<(), String> {
        let l = labels(&[("app", "demo"), ("tier", "web"), ("example.com/team", "a")]);
        for (selector, expected) in [
            ("", true),
            ("app=demo", true),
            ("app==demo", true),
            ("app!=demo", false),
            ("app in (demo, other)", true),
            ("tier notin (web)", false),
            ("missing notin (x)", true),
            ("app,tier", true),
            ("!missing", true),
            ("!app", false),
            ("app=demo,tier in (db)", false),
            ("example.com/team=a", true),
        ] {
            assert_eq!(
                LabelSelector::parse(selector)?.matches(&l),
                expected,
                "{selector}"
            );
        }
        Ok(())
    }

    #[test]
    fn malformed_label_selectors_are_errors() {
        for bad in [
            "app in demo",
            "a b c",
            "app=demo,",
            "-bad=x",
            "app=in valid",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn field_selectors_support_equality_and_inequality() -> Result<(), String> {
        let selector = FieldSelector::parse("metadata.name=a,metadata.namespace!=kube-system")?;
        let lookup = |field: &str| match field {
            "metadata.name" => Some("a".to_owned()),
            "metadata.namespace" => Some("default".to_owned()),
            _ => None,
        };
        assert!(selector.matches(lookup));
        assert_eq!(selector.pinned("metadata.name"), Some("a"));
        assert!(FieldSelector::parse("metadata.name").is_err());
        Ok(())
    }
}
