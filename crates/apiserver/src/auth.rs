//! Who is asking: the identity a request is made as.
//!
//! For now the only authenticator is a static token map (the admin token the standalone server
//! writes into its kubeconfig). A request without a known token is `system:anonymous`, which is
//! still let through: enforcing authentication and RBAC is the authorization work's to do; what
//! the identity already feeds is the catalog's `spec.userInfo` (the OSB originating identity).

use std::collections::{BTreeMap, HashMap};

use axum::http::{HeaderMap, header};

/// A user as Kubernetes authenticators describe one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserIdentity {
    /// The identity of a request that presented no (known) credentials.
    pub fn anonymous() -> Self {
        Self {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    /// The catalog's `UserInfo` JSON shape.
    pub fn to_user_info(&self) -> serde_json::Value {
        let mut info = serde_json::json!({"username": self.username, "uid": self.uid});
        if !self.groups.is_empty() {
            info["groups"] = serde_json::json!(self.groups);
        }
        if !self.extra.is_empty() {
            info["extra"] = serde_json::json!(self.extra);
        }
        info
    }
}

/// Bearer tokens and the users they stand for.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: HashMap<String, UserIdentity>,
}

impl Authenticator {
    pub fn add_token(&mut self, token: impl Into<String>, user: UserIdentity) {
        self.tokens.insert(token.into(), user);
    }

    /// The identity a request's headers establish.
    pub fn identify(&self, headers: &HeaderMap) -> UserIdentity {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| self.tokens.get(token.trim()))
            .cloned()
            .unwrap_or_else(UserIdentity::anonymous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_token_is_its_user_and_anything_else_is_anonymous() {
        let admin = UserIdentity {
            username: "admin".into(),
            uid: "u1".into(),
            groups: vec!["system:masters".into()],
            extra: BTreeMap::new(),
        };
        let mut authenticator = Authenticator::default();
        authenticator.add_token("secret", admin.clone());
        let mut headers = HeaderMap::new();
        assert_eq!(authenticator.identify(&headers), UserIdentity::anonymous());
        headers.insert(
            header::AUTHORIZATION,
            "Bearer secret".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(authenticator.identify(&headers), admin);
        headers.insert(
            header::AUTHORIZATION,
            "Bearer other".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            authenticator.identify(&headers).username,
            "system:anonymous"
        );
    }
}
