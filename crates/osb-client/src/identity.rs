//! The `X-Broker-API-Originating-Identity` header: who, on the platform, caused a request.
//!
//! The value is `<platform> <base64(JSON)>`; for Kubernetes the JSON carries `username`, `uid`,
//! `groups` and `extra`, as the spec's Kubernetes profile describes.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The platform name the spec's profile gives Kubernetes.
pub const KUBERNETES_PLATFORM: &str = "kubernetes";

/// An originating identity: a platform name and a platform-specific JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginatingIdentity {
    pub platform: String,
    pub value: Value,
}

/// The Kubernetes profile's identity object (a Kubernetes `UserInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KubernetesUser {
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a header value is not a valid originating identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the header must be '<platform> <base64 JSON>'")]
    Shape,
    #[error("the identity value is not valid base64")]
    Base64,
    #[error("the identity value is not a JSON object")]
    NotJsonObject,
}

impl OriginatingIdentity {
    /// A Kubernetes user as the originating identity.
    pub fn kubernetes(user: &KubernetesUser) -> Self {
        Self {
            platform: KUBERNETES_PLATFORM.to_owned(),
            // A struct of strings always serializes.
            value: serde_json::to_value(user).unwrap_or(Value::Null),
        }
    }

    /// The header value: `<platform> <base64 JSON>`.
    pub fn header_value(&self) -> String {
        format!(
            "{} {}",
            self.platform,
            STANDARD.encode(self.value.to_string())
        )
    }

    /// Parses a header value (what a broker does with it).
    pub fn parse(header: &str) -> Result<Self, IdentityError> {
        let (platform, encoded) = header.trim().split_once(' ').ok_or(IdentityError::Shape)?;
        if platform.is_empty() || encoded.trim().is_empty() {
            return Err(IdentityError::Shape);
        }
        let raw = STANDARD
            .decode(encoded.trim())
            .map_err(|_| IdentityError::Base64)?;
        let value: Value =
            serde_json::from_slice(&raw).map_err(|_| IdentityError::NotJsonObject)?;
        if !value.is_object() {
            return Err(IdentityError::NotJsonObject);
        }
        Ok(Self {
            platform: platform.to_owned(),
            value,
        })
    }

    /// The identity as a Kubernetes user, when it is one.
    pub fn kubernetes_user(&self) -> Option<KubernetesUser> {
        if self.platform != KUBERNETES_PLATFORM {
            return None;
        }
        serde_json::from_value(self.value.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_identity_round_trips_through_the_header() {
        let user = KubernetesUser {
            username: "alice".into(),
            uid: "123".into(),
            groups: vec!["system:authenticated".into()],
            extra: BTreeMap::from([("scopes".into(), vec!["a".into()])]),
        };
        let header = OriginatingIdentity::kubernetes(&user).header_value();
        assert!(header.starts_with("kubernetes "));
        let parsed = OriginatingIdentity::parse(&header);
        assert_eq!(parsed.ok().and_then(|i| i.kubernetes_user()), Some(user));
    }

    #[test]
    fn malformed_headers_are_rejected_with_the_reason() {
        assert_eq!(
            OriginatingIdentity::parse("kubernetes"),
            Err(IdentityError::Shape)
        );
        assert_eq!(
            OriginatingIdentity::parse("kubernetes !!!"),
            Err(IdentityError::Base64)
        );
        let not_object = STANDARD.encode("[1]");
        assert_eq!(
            OriginatingIdentity::parse(&format!("kubernetes {not_object}")),
            Err(IdentityError::NotJsonObject)
        );
    }
}
