//! Aggregated mode's delegation to the cluster's kube-apiserver: tokens are checked with
//! TokenReview, requests authorized with SubjectAccessReview (both cached briefly, as
//! kube-apiserver's own webhook authenticator and authorizer cache), and the front proxy's
//! settings read from the ConfigMap `kube-system/extension-apiserver-authentication`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apiserver::authz::Attributes;
use apiserver::{Decision, UserIdentity};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, Client};

/// Entries kept at most per cache; past it, expired entries go, then the oldest.
const CACHE_CAPACITY: usize = 10_000;

/// Reviews in flight towards the cluster at once, per kind: a flood of unknown tokens or
/// distinct requests waits here instead of flooding kube-apiserver.
const MAX_REVIEWS_IN_FLIGHT: usize = 32;

/// A map whose entries expire.
struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, value)| value.clone())
    }

    fn put(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_CAPACITY {
            let now = Instant::now();
            entries.retain(|_, (expires, _)| *expires > now);
            // Still full of live entries: the one expiring first goes (never all of them, so
            // a flood of new keys cannot flush the answers everyone else relies on).
            if entries.len() >= CACHE_CAPACITY
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (expires, _))| *expires)
                    .map(|(key, _)| key.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (Instant::now() + ttl, value));
    }
}

/// Tokens longer than this are refused without asking the cluster (Kubernetes' service
/// account and OIDC tokens are a few KiB).
const MAX_TOKEN_LENGTH: usize = 16 * 1024;

/// TokenReview against the cluster.
pub struct DelegatedAuthentication {
    client: Client,
    ttl: Duration,
    /// By the token's SHA-256: the cache holds no credentials and its keys have a fixed size.
    cache: TtlCache<Vec<u8>, Option<UserIdentity>>,
    in_flight: tokio::sync::Semaphore,
}

impl DelegatedAuthentication {
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: TtlCache::new(),
            in_flight: tokio::sync::Semaphore::new(MAX_REVIEWS_IN_FLIGHT),
        }
    }
}

#[async_trait::async_trait]
impl apiserver::auth::TokenReviewer for DelegatedAuthentication {
    async fn review(&self, token: &str) -> Result<Option<UserIdentity>, String> {
        if token.len() > MAX_TOKEN_LENGTH {
            return Ok(None);
        }
        let key = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
            .as_ref()
            .to_vec();
        if let Some(known) = self.cache.get(&key) {
            return Ok(known);
        }
        let _permit = self.in_flight.acquire().await.map_err(|e| e.to_string())?;
        // Someone may have asked the same while this waited.
        if let Some(known) = self.cache.get(&key) {
            return Ok(known);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: None,
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| e.to_string())?;
        let user = reviewed
            .status
            .filter(|s| s.authenticated == Some(true))
            .and_then(|s| s.user)
            .and_then(|u| serde_json::to_value(u).ok())
            .and_then(|u| UserIdentity::from_user_info(&u));
        self.cache.put(key, user.clone(), self.ttl);
        Ok(user)
    }
}

/// SubjectAccessReview against the cluster.
pub struct DelegatedAuthorization {
    client: Client,
    allowed_ttl: Duration,
    denied_ttl: Duration,
    cache: TtlCache<String, Decision>,
    in_flight: tokio::sync::Semaphore,
}

impl DelegatedAuthorization {
    pub fn new(client: Client, allowed_ttl: Duration, denied_ttl: Duration) -> Self {
        Self {
            client,
            allowed_ttl,
            denied_ttl,
            cache: TtlCache::new(),
            in_flight: tokio::sync::Semaphore::new(MAX_REVIEWS_IN_FLIGHT),
        }
    }

    fn review_of(attributes: &Attributes) -> SubjectAccessReview {
        let user = &attributes.user;
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.username.clone()),
                uid: non_empty(&user.uid),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes: attributes.resource.as_ref().map(|r| ResourceAttributes {
                    namespace: non_empty(&r.namespace),
                    verb: Some(attributes.verb.clone()),
                    group: Some(r.group.clone()),
                    version: non_empty(&r.version),
                    resource: Some(r.resource.clone()),
                    subresource: non_empty(&r.subresource),
                    name: non_empty(&r.name),
                    ..Default::default()
                }),
                non_resource_attributes: attributes.resource.is_none().then(|| {
                    NonResourceAttributes {
                        path: Some(attributes.path.clone()),
                        verb: Some(attributes.verb.clone()),
                    }
                }),
            },
            ..Default::default()
        }
    }
}

#[async_trait::async_trait]
impl apiserver::Authorizer for DelegatedAuthorization {
    async fn authorize(&self, attributes: &Attributes) -> Decision {
        let review = Self::review_of(attributes);
        let key = serde_json::to_string(&review.spec).unwrap_or_default();
        if let Some(decision) = self.cache.get(&key) {
            return decision;
        }
        let Ok(_permit) = self.in_flight.acquire().await else {
            return Decision::Deny("authorization is shutting down".into());
        };
        if let Some(decision) = self.cache.get(&key) {
            return decision;
        }
        let decision = match Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(reviewed) => {
                let status = reviewed.status.unwrap_or_default();
                if status.allowed {
                    Decision::Allow
                } else {
                    Decision::Deny(status.reason.unwrap_or_default())
                }
            }
            Err(error) => {
                // Not cached: the next request asks again.
                tracing::warn!(%error, "subject access review failed");
                return Decision::Deny(format!("authorization check failed: {error}"));
            }
        };
        let ttl = match decision {
            Decision::Allow => self.allowed_ttl,
            Decision::Deny(_) => self.denied_ttl,
        };
        self.cache.put(key, decision.clone(), ttl);
        decision
    }
}

/// What `kube-system/extension-apiserver-authentication` says (kube-apiserver publishes its
/// client CA and front-proxy settings there for extension API servers).
#[derive(Debug, Default)]
pub struct ClusterAuthentication {
    pub client_ca: Option<String>,
    pub requestheader_client_ca: Option<String>,
    pub requestheader_allowed_names: Vec<String>,
    pub requestheader_username_headers: Vec<String>,
    pub requestheader_group_headers: Vec<String>,
    pub requestheader_extra_headers_prefix: Vec<String>,
}

impl ClusterAuthentication {
    pub async fn read(client: &Client) -> anyhow::Result<Self> {
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
        let Some(config_map) = config_maps
            .get_opt("extension-apiserver-authentication")
            .await?
        else {
            return Ok(Self::default());
        };
        let data = config_map.data.unwrap_or_default();
        let list = |key: &str| -> anyhow::Result<Vec<String>> {
            match data.get(key) {
                None => Ok(Vec::new()),
                Some(text) => serde_json::from_str(text)
                    .map_err(|e| anyhow::anyhow!("extension-apiserver-authentication {key}: {e}")),
            }
        };
        Ok(Self {
            client_ca: data.get("client-ca-file").cloned(),
            requestheader_client_ca: data.get("requestheader-client-ca-file").cloned(),
            requestheader_allowed_names: list("requestheader-allowed-names")?,
            requestheader_username_headers: list("requestheader-username-headers")?,
            requestheader_group_headers: list("requestheader-group-headers")?,
            requestheader_extra_headers_prefix: list("requestheader-extra-headers-prefix")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entries_expire_and_zero_ttl_is_not_kept() {
        let cache = TtlCache::new();
        cache.put("a", 1, Duration::from_secs(60));
        cache.put("b", 2, Duration::ZERO);
        cache.put("c", 3, Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(cache.get(&"a"), Some(1));
        assert_eq!(cache.get(&"b"), None);
        assert_eq!(cache.get(&"c"), None);
    }
}
