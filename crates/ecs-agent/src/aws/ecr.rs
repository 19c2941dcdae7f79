//! ECR registry logins (docs/aws-services.md §2): GetAuthorizationToken's
//! answer decoded into the user name, password and server address Docker
//! pulls with, and a cache of them, so that a burst of tasks from one
//! registry makes one call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::{Caller, ServiceError};
use crate::docker::RegistryAuth;

/// At most this many logins are kept; the oldest goes first.
const CACHE_ENTRIES: usize = 100;
/// No login is kept longer than this, whatever its expiry says.
const CACHE_TTL: Duration = Duration::from_secs(12 * 3600);
/// A login is renewed this long before it expires, plus a random part of
/// [`REFRESH_JITTER`], so that many agents do not renew at once.
const REFRESH_MARGIN: Duration = Duration::from_secs(30 * 60);
const REFRESH_JITTER: Duration = Duration::from_secs(30 * 60);

/// The registry an image's payload names (`ecrAuthData`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    pub registry_id: String,
    pub region: String,
    /// Where to call ECR instead of the region's endpoint.
    #[serde(default)]
    pub endpoint_override: Option<String>,
}

/// What one cached login is for: who asked, and which registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    credentials_id: String,
    role_arn: String,
    region: String,
    registry_id: String,
    endpoint_override: String,
}

impl TokenKey {
    pub fn new(registry: &Registry, caller: Caller<'_>) -> Self {
        let (credentials_id, role_arn) = caller.cache_identity();
        Self {
            credentials_id,
            role_arn,
            region: registry.region.clone(),
            registry_id: registry.registry_id.clone(),
            endpoint_override: registry.endpoint_override.clone().unwrap_or_default(),
        }
    }
}

/// A decoded login and when ECR says it expires.
#[derive(Clone)]
pub struct Token {
    pub auth: RegistryAuth,
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// The one login of a GetAuthorizationToken answer for one registry:
    /// `authorizationToken` is base64 of `user:password`, and the pull goes
    /// to `proxyEndpoint`; `expiresAt` is in seconds since the epoch.
    pub fn from_answer(answer: &serde_json::Value) -> Result<Token, ServiceError> {
        let data = answer["authorizationData"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let [one] = data else {
            return Err(ServiceError(format!(
                "unexpected number of results in AuthorizationData ({})",
                data.len()
            )));
        };
        let token = one["authorizationToken"]
            .as_str()
            .ok_or_else(|| ServiceError("ECR answered without an authorization token".into()))?;
        let (username, password) = decode(token)?;
        let expires_at = one["expiresAt"]
            .as_f64()
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .and_then(|secs| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs)));
        Ok(Token {
            auth: RegistryAuth {
                username: Some(username),
                password: Some(password),
                email: None,
                server_address: one["proxyEndpoint"].as_str().map(str::to_string),
            },
            expires_at,
        })
    }
}

/// `base64(user:password)` → (user, password).
pub fn decode(token: &str) -> Result<(String, String), ServiceError> {
    let bad = || ServiceError("ECR answered with a malformed authorization token".into());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok((user.to_string(), password.to_string()))
}

struct Cached {
    auth: RegistryAuth,
    /// When it must be asked for again.
    renew_at: SystemTime,
    stored_at: SystemTime,
}

/// Logins by [`TokenKey`], each reused until shortly before it expires.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<TokenKey, Cached>>,
}

impl TokenCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Cached>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached login, unless it is due for renewal at `now`.
    pub fn get(&self, key: &TokenKey, now: SystemTime) -> Option<RegistryAuth> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some(c) if now < c.renew_at => Some(c.auth.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `token` unless it is already due for renewal (a login without
    /// an expiry is not kept: nothing says how long it is good for).
    pub fn put(&self, key: TokenKey, token: Token, now: SystemTime) {
        let Some(expires_at) = token.expires_at else {
            return;
        };
        let jitter = REFRESH_JITTER.mul_f64(rand::random::<f64>());
        let renew_at = expires_at
            .checked_sub(REFRESH_MARGIN + jitter)
            .unwrap_or(SystemTime::UNIX_EPOCH)
            .min(now + CACHE_TTL);
        if renew_at <= now {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= CACHE_ENTRIES && !entries.contains_key(&key) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, c)| c.stored_at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            Cached {
                auth: token.auth,
                renew_at,
                stored_at: now,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::credentials::RoleCredentials;

    fn registry(id: &str) -> Registry {
        Registry {
            registry_id: id.into(),
            region: "us-west-2".into(),
            endpoint_override: None,
        }
    }

    fn token(user: &str, expires_in: Option<Duration>, now: SystemTime) -> Token {
        Token {
            auth: RegistryAuth {
                username: Some(user.into()),
                password: Some("p".into()),
                email: None,
                server_address: None,
            },
            expires_at: expires_in.map(|d| now + d),
        }
    }

    #[test]
    fn tokens_decode_into_user_and_password() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("AWS:pass:with:colons");
        assert_eq!(
            decode(&encoded).unwrap(),
            ("AWS".to_string(), "pass:with:colons".to_string())
        );
        assert!(decode("not base64!").is_err());
        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        assert!(decode(&no_colon).is_err());
    }

    #[test]
    fn an_answer_must_hold_exactly_one_login() {
        let one = serde_json::json!({
            "authorizationToken": base64::engine::general_purpose::STANDARD.encode("AWS:pw"),
            "proxyEndpoint": "https://123456789012.dkr.ecr.us-west-2.amazonaws.com",
            "expiresAt": 2_000_000_000.5
        });
        let t = Token::from_answer(&serde_json::json!({"authorizationData": [one]})).unwrap();
        assert_eq!(t.auth.username.as_deref(), Some("AWS"));
        assert_eq!(t.auth.password.as_deref(), Some("pw"));
        assert_eq!(
            t.auth.server_address.as_deref(),
            Some("https://123456789012.dkr.ecr.us-west-2.amazonaws.com")
        );
        assert!(t.expires_at.is_some());
        assert!(Token::from_answer(&serde_json::json!({"authorizationData": []})).is_err());
        assert!(Token::from_answer(&serde_json::json!({})).is_err());
        assert!(
            Token::from_answer(&serde_json::json!({"authorizationData": [one.clone(), one]}))
                .is_err()
        );
    }

    #[test]
    fn a_login_is_reused_until_shortly_before_it_expires() {
        let cache = TokenCache::default();
        let now = SystemTime::now();
        let key = TokenKey::new(&registry("1"), Caller::Instance);
        cache.put(
            key.clone(),
            token("a", Some(Duration::from_secs(12 * 3600)), now),
            now,
        );
        assert!(cache.get(&key, now + Duration::from_secs(3600)).is_some());
        // Renewal falls between 30 and 60 minutes before expiry.
        assert!(cache
            .get(&key, now + Duration::from_secs(11 * 3600 + 1800 + 1))
            .is_none());
        assert!(cache.is_empty(), "a login due for renewal is dropped");
    }

    #[test]
    fn logins_near_or_past_expiry_or_without_one_are_not_kept() {
        let cache = TokenCache::default();
        let now = SystemTime::now();
        let key = TokenKey::new(&registry("1"), Caller::Instance);
        cache.put(
            key.clone(),
            token("a", Some(Duration::from_secs(60)), now),
            now,
        );
        cache.put(key.clone(), token("a", None, now), now);
        let expired = Token {
            expires_at: Some(now - Duration::from_secs(3600)),
            ..token("a", None, now)
        };
        cache.put(key.clone(), expired, now);
        assert!(cache.is_empty());
    }

    #[test]
    fn logins_are_kept_apart_by_caller_and_registry() {
        let cache = TokenCache::default();
        let now = SystemTime::now();
        let role = RoleCredentials {
            role_arn: "arn:aws:iam::1:role/exec".into(),
            access_key_id: "A".into(),
            secret_access_key: "S".into(),
            session_token: "T".into(),
            expiration: String::new(),
        };
        let as_role = Caller::Role {
            id: "cred-1",
            credentials: &role,
        };
        let day = Some(Duration::from_secs(24 * 3600));
        let instance_key = TokenKey::new(&registry("1"), Caller::Instance);
        cache.put(instance_key.clone(), token("instance", day, now), now);
        let role_key = TokenKey::new(&registry("1"), as_role);
        assert!(cache.get(&role_key, now).is_none());
        cache.put(role_key.clone(), token("role", day, now), now);
        assert_eq!(
            cache.get(&role_key, now).unwrap().username.as_deref(),
            Some("role")
        );
        let mut overridden = registry("1");
        overridden.endpoint_override = Some("ecr.example".into());
        assert!(cache
            .get(&TokenKey::new(&overridden, as_role), now)
            .is_none());
        assert!(cache
            .get(&TokenKey::new(&registry("2"), as_role), now)
            .is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = TokenCache::default();
        let now = SystemTime::now();
        let day = Some(Duration::from_secs(24 * 3600));
        for i in 0..(CACHE_ENTRIES + 5) {
            let key = TokenKey::new(&registry(&i.to_string()), Caller::Instance);
            let at = now + Duration::from_secs(i as u64);
            cache.put(key, token("a", day, at), at);
        }
        assert_eq!(cache.len(), CACHE_ENTRIES);
        let first = TokenKey::new(&registry("0"), Caller::Instance);
        assert!(cache.get(&first, now).is_none(), "the oldest went first");
    }
}
