//! Who is asking: authentication, in kube-apiserver's order.
//!
//! 1. **Front proxy** (aggregated mode): a connection whose client certificate was issued by
//!    the request-header CA, with a common name among the allowed ones, is kube-apiserver
//!    speaking for a user it already authenticated; the user is in `X-Remote-User`,
//!    `X-Remote-Group` and `X-Remote-Extra-*`. Those headers mean nothing on any other
//!    connection.
//! 2. **Client certificates** issued by the client CA: CN is the user, O the groups.
//! 3. **Bearer tokens**: a static token file (Kubernetes' CSV format), then a delegated
//!    [`TokenReviewer`] (TokenReview against the cluster, in aggregated mode). A token nobody
//!    knows is refused outright (401), even where anonymous requests are allowed.
//! 4. **Anonymous** (`system:anonymous`, group `system:unauthenticated`), only when enabled;
//!    otherwise a request without credentials gets 401.
//!
//! Certificate chains were verified by rustls during the handshake against every trusted CA;
//! here each chain is checked again against the one CA whose word it carries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use tls_serve::rustls::pki_types::{CertificateDer, UnixTime};
use tls_serve::rustls::server::danger::ClientCertVerifier;

/// Every authenticated user is in this group.
pub const AUTHENTICATED: &str = "system:authenticated";

/// A user as Kubernetes authenticators describe one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserIdentity {
    /// A user with `groups` (and `system:authenticated`).
    pub fn new(username: impl Into<String>, groups: &[&str]) -> Self {
        let mut user = Self {
            username: username.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            extra: BTreeMap::new(),
        };
        user.add_authenticated_group();
        user
    }

    /// The identity of a request that presented no credentials.
    pub fn anonymous() -> Self {
        Self {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    fn add_authenticated_group(&mut self) {
        if !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
    }

    /// The catalog's `UserInfo` JSON shape (also authentication.k8s.io's).
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

    /// The inverse of [`UserIdentity::to_user_info`] (a TokenReview's `status.user`).
    pub fn from_user_info(info: &serde_json::Value) -> Option<Self> {
        let username = info.get("username")?.as_str()?.to_owned();
        if username.is_empty() {
            return None;
        }
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(Self {
            username,
            uid: info
                .get("uid")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            groups: info.get("groups").map(strings).unwrap_or_default(),
            extra: info
                .get("extra")
                .and_then(|e| e.as_object())
                .map(|e| e.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
                .unwrap_or_default(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: line {line}: {message}")]
    TokenFile {
        path: String,
        line: u64,
        message: String,
    },
    #[error("{0}")]
    Io(String),
}

/// Answers "who holds this token?" elsewhere (TokenReview against the cluster).
#[async_trait::async_trait]
pub trait TokenReviewer: Send + Sync {
    /// `Ok(None)`: the token is not valid. `Err`: the reviewer could not be asked.
    async fn review(&self, token: &str) -> Result<Option<UserIdentity>, String>;
}

/// The front proxy's settings (kube-apiserver's `--requestheader-*` flags).
#[derive(Clone)]
pub struct RequestHeaderConfig {
    /// Verifies chains against the request-header CA only.
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// Common names the proxy's certificate may have; empty: any issued by the CA.
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_header_prefixes: Vec<String>,
}

impl std::fmt::Debug for RequestHeaderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHeaderConfig")
            .field("allowed_names", &self.allowed_names)
            .field("username_headers", &self.username_headers)
            .finish_non_exhaustive()
    }
}

/// What authentication concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    User(UserIdentity),
    /// Credentials were presented and are not valid (401, whatever the anonymous setting).
    Rejected(String),
    /// No credentials, and anonymous requests are not allowed (401).
    Missing,
}

/// The authenticators of one server. The default knows no credentials and lets anonymous
/// requests through (what an in-process test server wants); the binary configures it.
#[derive(Clone)]
pub struct Authenticator {
    tokens: HashMap<String, UserIdentity>,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
    request_header: Option<RequestHeaderConfig>,
    token_reviewer: Option<Arc<dyn TokenReviewer>>,
    anonymous: bool,
    /// Who a request without credentials is, instead of anonymous (the insecure loopback port).
    without_credentials: Option<UserIdentity>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self {
            tokens: HashMap::new(),
            client_ca: None,
            request_header: None,
            token_reviewer: None,
            anonymous: true,
            without_credentials: None,
        }
    }
}

impl Authenticator {
    pub fn add_token(&mut self, token: impl Into<String>, mut user: UserIdentity) {
        user.add_authenticated_group();
        self.tokens.insert(token.into(), user);
    }

    /// Reads a static token file: `token,user,uid[,"group1,group2"]` per line, as
    /// kube-apiserver's `--token-auth-file`.
    pub fn add_token_file(&mut self, path: &std::path::Path) -> Result<(), AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError::Io(format!("{}: {e}", path.display())))?;
        for (token, user) in parse_token_file(&text, &path.display().to_string())? {
            self.add_token(token, user);
        }
        Ok(())
    }

    pub fn set_client_ca(&mut self, verifier: Arc<dyn ClientCertVerifier>) {
        self.client_ca = Some(verifier);
    }

    pub fn set_request_header(&mut self, config: RequestHeaderConfig) {
        self.request_header = Some(config);
    }

    pub fn set_token_reviewer(&mut self, reviewer: Arc<dyn TokenReviewer>) {
        self.token_reviewer = Some(reviewer);
    }

    pub fn set_anonymous(&mut self, allowed: bool) {
        self.anonymous = allowed;
    }

    /// Requests without credentials are `user` (kube-apiserver's former insecure port: over
    /// plain HTTP, kubectl sends neither tokens nor certificates).
    pub fn set_user_without_credentials(&mut self, user: UserIdentity) {
        self.without_credentials = Some(user);
    }

    /// Who a request is: its connection's client certificate chain (leaf first) and headers.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        chain: &[CertificateDer<'static>],
    ) -> Authentication {
        if let Some(config) = &self.request_header {
            match front_proxy_user(config, headers, chain) {
                FrontProxy::User(user) => return Authentication::User(user),
                FrontProxy::NameNotAllowed(name) => {
                    return Authentication::Rejected(format!(
                        "a request-header client certificate with the common name {name:?}, which is not allowed"
                    ));
                }
                FrontProxy::NotTheProxy => {}
            }
        }
        if let Some(verifier) = &self.client_ca
            && let Some(user) = certificate_user(verifier.as_ref(), chain)
        {
            return Authentication::User(user);
        }
        if let Some(token) = bearer_token(headers) {
            if let Some(user) = self.tokens.get(token) {
                return Authentication::User(user.clone());
            }
            if let Some(reviewer) = &self.token_reviewer {
                return match reviewer.review(token).await {
                    Ok(Some(mut user)) => {
                        user.add_authenticated_group();
                        Authentication::User(user)
                    }
                    Ok(None) => Authentication::Rejected("invalid bearer token".into()),
                    Err(error) => {
                        tracing::warn!(%error, "token review failed");
                        Authentication::Rejected(format!("token review failed: {error}"))
                    }
                };
            }
            return Authentication::Rejected("invalid bearer token".into());
        }
        if let Some(user) = &self.without_credentials {
            Authentication::User(user.clone())
        } else if self.anonymous {
            Authentication::User(UserIdentity::anonymous())
        } else {
            Authentication::Missing
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn verified(verifier: &dyn ClientCertVerifier, chain: &[CertificateDer<'static>]) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .is_ok()
}

/// The subject's common name and organizations. A subject with several common names (or one
/// that does not decode) names nobody: Go's x509 would pick another one than "the first".
fn subject_names(leaf: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let names: Vec<_> = subject.iter_common_name().collect();
    let [only] = names.as_slice() else {
        return None;
    };
    let common_name = only.as_str().ok()?.to_owned();
    let organizations = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some((common_name, organizations))
}

fn certificate_user(
    verifier: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'static>],
) -> Option<UserIdentity> {
    if !verified(verifier, chain) {
        return None;
    }
    let (username, groups) = subject_names(chain.first()?)?;
    if username.is_empty() {
        return None;
    }
    let mut user = UserIdentity {
        username,
        uid: String::new(),
        groups,
        extra: BTreeMap::new(),
    };
    user.add_authenticated_group();
    Some(user)
}

/// What the front-proxy authenticator concluded.
enum FrontProxy {
    User(UserIdentity),
    /// The request-header CA issued the certificate, to a name not allowed: refused (401).
    NameNotAllowed(String),
    /// Not the proxy (or the proxy named no user): the next authenticator decides.
    NotTheProxy,
}

fn front_proxy_user(
    config: &RequestHeaderConfig,
    headers: &HeaderMap,
    chain: &[CertificateDer<'static>],
) -> FrontProxy {
    match front_proxy_identity(config, headers, chain) {
        Ok(Some(user)) => FrontProxy::User(user),
        Ok(None) => FrontProxy::NotTheProxy,
        Err(name) => FrontProxy::NameNotAllowed(name),
    }
}

/// `Err(common name)` when the certificate's name is not allowed.
fn front_proxy_identity(
    config: &RequestHeaderConfig,
    headers: &HeaderMap,
    chain: &[CertificateDer<'static>],
) -> Result<Option<UserIdentity>, String> {
    let Some(leaf) = chain.first() else {
        return Ok(None);
    };
    if !verified(config.verifier.as_ref(), chain) {
        return Ok(None);
    }
    if !config.allowed_names.is_empty() {
        let common_name = subject_names(leaf).map(|(cn, _)| cn).unwrap_or_default();
        if !config.allowed_names.contains(&common_name) {
            return Err(common_name);
        }
    }
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let Some(username) = config
        .username_headers
        .iter()
        .flat_map(|h| values(h))
        .find(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let groups = config
        .group_headers
        .iter()
        .flat_map(|h| values(h))
        .filter(|g| !g.is_empty())
        .collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        for prefix in &config.extra_header_prefixes {
            let prefix = prefix.to_ascii_lowercase();
            if let Some(key) = name.strip_prefix(&prefix)
                && let Ok(value) = value.to_str()
            {
                // Keys are percent-encoded by the proxy (they may hold `/` and the like);
                // a path unescape, as Go's `url.PathUnescape` (a `+` stays a `+`).
                let key = percent_encoding::percent_decode_str(key)
                    .decode_utf8()
                    .map(|k| k.into_owned())
                    .unwrap_or_else(|_| key.to_owned());
                extra
                    .entry(key.to_ascii_lowercase())
                    .or_default()
                    .push(value.to_owned());
            }
        }
    }
    let mut user = UserIdentity {
        username,
        uid: String::new(),
        groups,
        extra,
    };
    user.add_authenticated_group();
    Ok(Some(user))
}

/// `token,user,uid[,"group1,group2"]` lines (blank lines and `#` comments skipped).
fn parse_token_file(text: &str, path: &str) -> Result<Vec<(String, UserIdentity)>, AuthError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut tokens = Vec::new();
    for record in reader.records() {
        let error = |line: u64, message: String| AuthError::TokenFile {
            path: path.to_owned(),
            line,
            message,
        };
        let record = record.map_err(|e| {
            error(
                e.position().map(|p| p.line()).unwrap_or_default(),
                e.to_string(),
            )
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or_default();
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() < 3 {
            return Err(error(
                line,
                format!(
                    "expected token,user,uid[,\"groups\"]; found {} field(s)",
                    record.len()
                ),
            ));
        }
        let (token, username, uid) = (&record[0], &record[1], &record[2]);
        if token.is_empty() || username.is_empty() {
            return Err(error(
                line,
                "the token and the user must not be empty".into(),
            ));
        }
        let groups = record
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        tokens.push((
            token.to_owned(),
            UserIdentity {
                username: username.to_owned(),
                uid: uid.to_owned(),
                groups,
                extra: BTreeMap::new(),
            },
        ));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = format!("Bearer {token}").parse() {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    #[tokio::test]
    async fn a_known_token_is_its_user_an_unknown_one_is_refused_and_none_is_anonymous() {
        let mut authenticator = Authenticator::default();
        authenticator.add_token("secret", UserIdentity::new("admin", &["system:masters"]));
        let admin = authenticator.authenticate(&bearer("secret"), &[]).await;
        assert!(
            matches!(&admin, Authentication::User(u) if u.username == "admin"
                && u.groups == ["system:masters", AUTHENTICATED]),
            "{admin:?}"
        );
        assert!(matches!(
            authenticator.authenticate(&bearer("other"), &[]).await,
            Authentication::Rejected(_)
        ));
        assert_eq!(
            authenticator.authenticate(&HeaderMap::new(), &[]).await,
            Authentication::User(UserIdentity::anonymous())
        );
        authenticator.set_anonymous(false);
        assert_eq!(
            authenticator.authenticate(&HeaderMap::new(), &[]).await,
            Authentication::Missing
        );
    }

    #[test]
    fn the_token_file_reads_kubernetes_csv_with_quoted_groups() -> Result<(), AuthError> {
        let tokens = parse_token_file(
            "# comment\nt1,alice,u1,\"team-a,team-b\"\n\nt2, bob ,u2\n",
            "tokens.csv",
        )?;
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].1.username, "alice");
        assert_eq!(tokens[0].1.groups, ["team-a", "team-b"]);
        assert_eq!(tokens[1].1.username, "bob");
        assert!(tokens[1].1.groups.is_empty());
        Ok(())
    }

    #[test]
    fn a_short_token_line_names_its_line() {
        let error = parse_token_file("t1,alice,u1\nt2,bob\n", "tokens.csv")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("tokens.csv: line 2"), "{error}");
    }
}
