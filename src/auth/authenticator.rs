//! The authenticator: who is calling (the user the aggregator vouches for through its front-proxy
//! certificate and identity headers, or a bearer token's owner by TokenReview) and what they may
//! do (SubjectAccessReview). Both answers are cached briefly; tokens by their SHA-256 only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

use super::front_proxy::FrontProxyConfig;
use super::tls::PeerIdentity;

pub const QUERY_GROUP: &str = "query.cost-analysis.spaceone.dev";
/// The one version of the aggregated group.
pub const QUERY_VERSION: &str = "v1";

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("authentication or authorization unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UserInfo {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceAttrs {
    pub group: String,
    pub resource: String,
    pub verb: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl ResourceAttrs {
    /// SpaceONE domain isolation as RBAC: `get` (read) or `cancel` on `domains/<domain_id>`.
    pub fn domain(verb: &str, domain_id: &str) -> ResourceAttrs {
        ResourceAttrs {
            group: QUERY_GROUP.into(),
            resource: "domains".into(),
            verb: verb.into(),
            namespace: None,
            name: Some(domain_id.into()),
            subresource: None,
        }
    }
}

const ALLOW_TTL: Duration = Duration::from_secs(10);
const DENY_TTL: Duration = Duration::from_secs(2);
const MAX_ENTRIES: usize = 10_000;

/// A small expiring cache; cleared wholesale when full (simple, and bounded).
struct Cache<K, V> {
    entries: HashMap<K, (Instant, V)>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Cache {
            entries: HashMap::new(),
        }
    }

    fn get(&self, k: &K, now: Instant) -> Option<V> {
        self.entries
            .get(k)
            .filter(|(until, _)| *until > now)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, k: K, v: V, ttl: Duration, now: Instant) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, (until, _)| *until > now);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        // The TTLs are small constants; should one ever overflow the clock, the entry is simply
        // stale at once (not cached) rather than a panic.
        let until = now.checked_add(ttl).unwrap_or(now);
        self.entries.insert(k, (until, v));
    }
}

pub struct Authenticator {
    client: Client,
    front_proxy: RwLock<FrontProxyConfig>,
    tokens: Mutex<Cache<[u8; 32], Option<UserInfo>>>,
    decisions: Mutex<Cache<(UserInfo, ResourceAttrs), bool>>,
}

impl Authenticator {
    pub fn new(client: Client) -> Authenticator {
        Authenticator {
            client,
            front_proxy: RwLock::new(FrontProxyConfig::default()),
            tokens: Mutex::new(Cache::new()),
            decisions: Mutex::new(Cache::new()),
        }
    }

    pub fn set_front_proxy(&self, fp: FrontProxyConfig) {
        if let Ok(mut f) = self.front_proxy.write() {
            *f = fp;
        }
    }

    pub async fn authenticate(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
    ) -> Result<UserInfo, AuthError> {
        if peer.front_proxy_cn.is_some() {
            let fp = self
                .front_proxy
                .read()
                .map(|f| f.clone())
                .unwrap_or_default();
            return user_from_headers(&fp, headers)
                .ok_or_else(|| AuthError::Unauthenticated("the front proxy sent no user".into()));
        }
        // Identity headers on a connection without the front-proxy certificate are ignored.
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthError::Unauthenticated("no bearer token".into()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let now = Instant::now();
        if let Some(cached) = self.tokens.lock().ok().and_then(|c| c.get(&key, now)) {
            return cached.ok_or_else(|| AuthError::Unauthenticated("invalid bearer token".into()));
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                ..Default::default()
            },
            ..Default::default()
        };
        let api = Api::<TokenReview>::all(self.client.clone());
        let answer = bounded(api.create(&PostParams::default(), &review)).await?;
        let status = answer.status.unwrap_or_default();
        let user = (status.authenticated == Some(true)).then(|| {
            let u = status.user.unwrap_or_default();
            UserInfo {
                name: u.username.unwrap_or_default(),
                uid: u.uid,
                groups: u.groups.unwrap_or_default(),
                extra: u.extra.unwrap_or_default().into_iter().collect(),
            }
        });
        if let Ok(mut c) = self.tokens.lock() {
            c.put(
                key,
                user.clone(),
                if user.is_some() { ALLOW_TTL } else { DENY_TTL },
                now,
            );
        }
        user.ok_or_else(|| AuthError::Unauthenticated("invalid bearer token".into()))
    }

    pub async fn authorize(
        &self,
        user: &UserInfo,
        attrs: ResourceAttrs,
    ) -> Result<bool, AuthError> {
        let now = Instant::now();
        let key = (user.clone(), attrs.clone());
        if let Some(allowed) = self.decisions.lock().ok().and_then(|c| c.get(&key, now)) {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone().into_iter().collect()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(attrs.group.clone()),
                    resource: Some(attrs.resource.clone()),
                    verb: Some(attrs.verb.clone()),
                    namespace: attrs.namespace.clone(),
                    name: attrs.name.clone(),
                    subresource: attrs.subresource.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api = Api::<SubjectAccessReview>::all(self.client.clone());
        let answer = bounded(api.create(&PostParams::default(), &review)).await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        if let Ok(mut c) = self.decisions.lock() {
            c.put(
                key,
                allowed,
                if allowed { ALLOW_TTL } else { DENY_TTL },
                now,
            );
        }
        Ok(allowed)
    }
}

/// The user the front proxy vouches for, from its configured header names.
fn user_from_headers(fp: &FrontProxyConfig, headers: &HeaderMap) -> Option<UserInfo> {
    let names = |configured: &[String], default: &str| -> Vec<String> {
        if configured.is_empty() {
            vec![default.to_string()]
        } else {
            configured.to_vec()
        }
    };
    let values = |h: &str| -> Vec<String> {
        headers
            .get_all(h)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    };
    let name = names(&fp.username_headers, "X-Remote-User")
        .iter()
        .find_map(|h| values(h).into_iter().find(|v| !v.is_empty()))?;
    let groups = names(&fp.group_headers, "X-Remote-Group")
        .iter()
        .flat_map(|h| values(h))
        .collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for prefix in names(&fp.extra_headers_prefixes, "X-Remote-Extra-") {
        let prefix = prefix.to_ascii_lowercase();
        for (h, v) in headers {
            if let (Some(key), Ok(v)) = (h.as_str().strip_prefix(&prefix), v.to_str()) {
                extra
                    .entry(unescape_extra_key(key))
                    .or_default()
                    .push(v.to_string());
            }
        }
    }
    Some(UserInfo {
        name,
        uid: None,
        groups,
        extra,
    })
}

/// How long a TokenReview or SubjectAccessReview may take: while the API server is away a caller
/// gets a prompt 503 instead of a request that hangs for the client's whole read timeout.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<T>(
    review: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, AuthError> {
    match tokio::time::timeout(REVIEW_TIMEOUT, review).await {
        Ok(answer) => answer.map_err(|e| AuthError::Unavailable(e.to_string())),
        Err(_) => Err(AuthError::Unavailable(format!(
            "the Kubernetes API did not answer within {}s",
            REVIEW_TIMEOUT.as_secs()
        ))),
    }
}

/// Extra keys are lower-cased and percent-decoded, as kube-apiserver's requestheader authenticator
/// does.
fn unescape_extra_key(key: &str) -> String {
    crate::percent::decode(&key.to_ascii_lowercase(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn identity_headers_are_read_as_configured() {
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", HeaderValue::from_static("alice"));
        h.append("x-remote-group", HeaderValue::from_static("devs"));
        h.append(
            "x-remote-group",
            HeaderValue::from_static("system:authenticated"),
        );
        h.insert("x-remote-extra-scopes%2fA", HeaderValue::from_static("s1"));
        let u = user_from_headers(&FrontProxyConfig::default(), &h).expect("user");
        assert_eq!(u.name, "alice");
        assert_eq!(u.groups, ["devs", "system:authenticated"]);
        assert_eq!(
            u.extra.get("scopes/a").map(Vec::as_slice),
            Some(&["s1".to_string()][..])
        );
        assert!(user_from_headers(&FrontProxyConfig::default(), &HeaderMap::new()).is_none());
        let custom = FrontProxyConfig {
            username_headers: vec!["X-User".into()],
            ..Default::default()
        };
        assert!(user_from_headers(&custom, &h).is_none());
    }

    #[test]
    fn caches_expire_and_stay_bounded() {
        let mut c: Cache<u32, bool> = Cache::new();
        let t0 = Instant::now();
        c.put(1, true, Duration::from_secs(10), t0);
        assert_eq!(c.get(&1, t0 + Duration::from_secs(9)), Some(true));
        assert_eq!(c.get(&1, t0 + Duration::from_secs(11)), None);
        for i in 0..(MAX_ENTRIES as u32 + 5) {
            c.put(i, false, Duration::from_secs(1), t0);
        }
        assert!(c.entries.len() <= MAX_ENTRIES);
    }
}
