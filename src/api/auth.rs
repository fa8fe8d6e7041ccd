//! Authentication: JWT access/refresh tokens for users (Progeny's token endpoints) and static
//! API keys for machine clients. Every service, task and media endpoint needs one of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::throttle::{LoginLimits, LoginThrottle};
use super::AppState;
use crate::config::{AuthConfig, Role};
use crate::tasks::store::once::{MemoryOnce, SpendOnce};

/// Who is calling. Tasks are filed under `owner` and only visible to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub owner: String,
}

/// Why credentials were refused (the token endpoint's and the guard's answers).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("No active account found with the given credentials")]
    BadCredentials,
    #[error("Token is invalid or expired")]
    InvalidToken,
    #[error("auth configuration: {0}")]
    Config(String),
    /// The spent-token ledger (the shared store) cannot be reached: refuse, never guess.
    #[error("token ledger unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// `access` or `refresh`.
    token_type: String,
    exp: u64,
    iat: u64,
    jti: String,
}

/// A pair of tokens as the token endpoints return them.
#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub refresh: String,
    pub access: String,
}

struct ApiKey {
    owner: String,
    sha256: [u8; 32],
    /// The key's default webhook (`auth.api_keys[].callback_url`).
    callback_url: Option<String>,
    role: Role,
}

/// Verifies credentials and issues tokens.
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl: Duration,
    refresh_ttl: Duration,
    users: HashMap<String, String>,
    /// Verified instead of a user's hash when the name is unknown, so an unknown name costs
    /// the same argon2 work as a known one (no timing oracle for which names exist).
    dummy_hash: String,
    /// Password verifications run (known and unknown names alike); tests read it.
    password_checks: AtomicU64,
    api_keys: Vec<ApiKey>,
    /// Refresh tokens already exchanged (rotation), by `jti`: shared by every instance when the
    /// store is Redis.
    spent_refresh: Arc<dyn SpendOnce>,
    throttle: LoginThrottle,
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The sha256 of an API key, as written in `auth.api_keys[].sha256`.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Constant-time comparison, so key checks do not leak how much of a key matched.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// Builds from config plus extra plain keys (`--api-key`), each filed under owner `cli`.
    pub fn new(cfg: &AuthConfig, extra_keys: &[String]) -> Result<Self, AuthError> {
        let secret = if cfg.jwt_secret.is_empty() { random_hex(32) } else { cfg.jwt_secret.clone() };
        let mut api_keys = Vec::new();
        for k in &cfg.api_keys {
            let digest = match (&k.sha256, &k.env) {
                (Some(hex_digest), _) => {
                    let raw = hex::decode(hex_digest.trim())
                        .map_err(|_| AuthError::Config(format!("api key {:?}: sha256 is not hex", k.id)))?;
                    <[u8; 32]>::try_from(raw.as_slice())
                        .map_err(|_| AuthError::Config(format!("api key {:?}: sha256 must be 32 bytes", k.id)))?
                }
                (None, Some(var)) => {
                    let key = std::env::var(var)
                        .map_err(|_| AuthError::Config(format!("api key {:?}: env {var} is not set", k.id)))?;
                    key_digest(&key)
                }
                (None, None) => return Err(AuthError::Config(format!("api key {:?}: no sha256 or env", k.id))),
            };
            api_keys.push(ApiKey { owner: k.id.clone(), sha256: digest, callback_url: k.callback_url.clone(), role: k.role });
        }
        for key in extra_keys {
            api_keys.push(ApiKey { owner: "cli".to_string(), sha256: key_digest(key), callback_url: None, role: Role::Client });
        }
        for u in &cfg.users {
            PasswordHash::new(&u.password_hash)
                .map_err(|e| AuthError::Config(format!("user {:?}: bad password hash: {e}", u.username)))?;
        }
        let throttle = LoginThrottle::new(LoginLimits {
            per_user: cfg.login_max_failures_per_user,
            per_address: cfg.login_max_failures_per_address,
            window: Duration::from_secs(cfg.login_window_secs),
            max_tracked: cfg.login_max_tracked,
        });
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            access_ttl: Duration::from_secs(cfg.access_ttl_secs),
            refresh_ttl: Duration::from_secs(cfg.refresh_ttl_secs),
            users: cfg.users.iter().map(|u| (u.username.clone(), u.password_hash.clone())).collect(),
            // Same algorithm and parameters as `hash_password`, so the same cost.
            dummy_hash: hash_password(&random_hex(16))?,
            password_checks: AtomicU64::new(0),
            api_keys,
            spent_refresh: Arc::new(MemoryOnce::default()),
            throttle,
        })
    }

    /// Keeps spent refresh-token ids in `ledger` (the shared store) instead of this process.
    pub fn with_spent_tokens(mut self, ledger: Arc<dyn SpendOnce>) -> Self {
        self.spent_refresh = ledger;
        self
    }

    /// The default webhook of the caller's API key, if its config names one.
    pub fn default_callback(&self, principal: &Principal) -> Option<&str> {
        let id = principal.owner.strip_prefix("key:")?;
        self.api_keys.iter().find(|k| k.owner == id).and_then(|k| k.callback_url.as_deref())
    }

    /// The failed-login limits of `token/obtain`.
    pub fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// Password verifications run so far (each `obtain` runs exactly one).
    pub fn password_checks(&self) -> u64 {
        self.password_checks.load(Ordering::Relaxed)
    }

    /// `token/obtain`: username + password → tokens. Slow by design (argon2): call it off the
    /// async workers. An unknown name is verified against a dummy hash, so both cost the same.
    pub fn obtain(&self, username: &str, password: &str) -> Result<TokenPair, AuthError> {
        let known = self.users.get(username);
        let hash = known.unwrap_or(&self.dummy_hash);
        self.password_checks.fetch_add(1, Ordering::Relaxed);
        let verified = PasswordHash::new(hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok());
        if !(verified && known.is_some()) {
            return Err(AuthError::BadCredentials);
        }
        self.issue(username)
    }

    /// `token/refresh`: a refresh token → new tokens; the old refresh token is spent (rotation)
    /// in the shared ledger, so a replay is refused on every instance and after a restart.
    pub async fn refresh(&self, refresh: &str) -> Result<TokenPair, AuthError> {
        let claims = self.decode(refresh, "refresh")?;
        if !self.users.contains_key(&claims.sub) {
            return Err(AuthError::InvalidToken);
        }
        // Kept until the token would have expired anyway (then `decode` refuses it).
        let ttl = Duration::from_secs(claims.exp.saturating_sub(now_s()).max(1));
        let first = self
            .spent_refresh
            .spend_once(&format!("refresh:{}", claims.jti), ttl)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        if !first {
            return Err(AuthError::InvalidToken);
        }
        self.issue(&claims.sub)
    }

    fn issue(&self, sub: &str) -> Result<TokenPair, AuthError> {
        let now = now_s();
        let make = |token_type: &str, ttl: Duration| {
            let claims = Claims {
                sub: sub.to_string(),
                token_type: token_type.to_string(),
                iat: now,
                exp: now + ttl.as_secs(),
                jti: random_hex(16),
            };
            jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
                .map_err(|e| AuthError::Config(format!("jwt encode: {e}")))
        };
        Ok(TokenPair { access: make("access", self.access_ttl)?, refresh: make("refresh", self.refresh_ttl)? })
    }

    fn decode(&self, token: &str, token_type: &str) -> Result<Claims, AuthError> {
        let mut validation = Validation::default();
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| AuthError::InvalidToken)?;
        if data.claims.token_type != token_type {
            return Err(AuthError::InvalidToken);
        }
        Ok(data.claims)
    }

    /// A bearer credential → the caller: an API key, or a user's access token.
    pub fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        let digest = key_digest(bearer);
        if let Some(k) = self.api_keys.iter().find(|k| ct_eq(&k.sha256, &digest)) {
            return Ok(Principal { owner: format!("key:{}", k.owner) });
        }
        let claims = self.decode(bearer, "access")?;
        Ok(Principal { owner: format!("user:{}", claims.sub) })
    }
}

impl Authenticator {
    /// What a bearer credential may do: an API key's configured role; a user's access token is a
    /// client. `None`: not a valid credential.
    pub fn role_of(&self, bearer: &str) -> Option<Role> {
        let digest = key_digest(bearer);
        if let Some(k) = self.api_keys.iter().find(|k| ct_eq(&k.sha256, &digest)) {
            return Some(k.role);
        }
        self.decode(bearer, "access").ok().map(|_| Role::Client)
    }
}

/// The bearer token of a request, if it sent one.
pub(crate) fn request_bearer(parts: &Parts) -> Option<&str> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    bearer_token(header)
}

impl<S> FromRequestParts<S> for Principal
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token =
            request_bearer(parts).ok_or(ApiError::Unauthenticated("Authentication credentials were not provided."))?;
        state
            .auth
            .authenticate(token)
            .map_err(|_| ApiError::Unauthenticated("Given token not valid for any token type"))
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is case-insensitive
/// (RFC 9110 §11.1), so `BEARER` and `bearer` work as `Bearer` does.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Hashes a password for `auth.users[].password_hash` (argon2id, random salt).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Config(format!("hash: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, UserConfig};

    fn auth() -> Authenticator {
        let cfg = AuthConfig {
            jwt_secret: "s3cret".into(),
            access_ttl_secs: 300,
            refresh_ttl_secs: 3600,
            api_keys: vec![],
            users: vec![UserConfig { username: "alice".into(), password_hash: hash_password("pw").unwrap() }],
            login_max_failures_per_user: 5,
            login_max_failures_per_address: 20,
            login_window_secs: 300,
            login_max_tracked: 100,
        };
        Authenticator::new(&cfg, &["k1".to_string()]).unwrap()
    }

    #[tokio::test]
    async fn tokens_round_trip_and_refresh_rotates() {
        let a = auth();
        assert_eq!(a.obtain("alice", "bad").err(), Some(AuthError::BadCredentials));
        let pair = a.obtain("alice", "pw").unwrap();
        assert_eq!(a.authenticate(&pair.access).unwrap().owner, "user:alice");
        // A refresh token is not an access token.
        assert!(a.authenticate(&pair.refresh).is_err());
        let next = a.refresh(&pair.refresh).await.unwrap();
        assert!(a.refresh(&pair.refresh).await.is_err(), "a spent refresh token must not work twice");
        assert!(a.refresh(&next.refresh).await.is_ok());
        assert_eq!(a.authenticate("k1").unwrap().owner, "key:cli");
        assert!(a.authenticate("k2").is_err());
    }

    #[test]
    fn an_api_key_may_name_a_default_callback() {
        let mut cfg = AuthConfig {
            jwt_secret: "s".into(),
            access_ttl_secs: 300,
            refresh_ttl_secs: 3600,
            api_keys: vec![],
            users: vec![],
            login_max_failures_per_user: 5,
            login_max_failures_per_address: 20,
            login_window_secs: 300,
            login_max_tracked: 100,
        };
        cfg.api_keys.push(crate::config::ApiKeyConfig {
            id: "hooked".into(),
            sha256: Some(hex::encode(key_digest("k-hooked"))),
            env: None,
            callback_url: Some("https://example.com/hook".into()),
            role: crate::config::Role::Client,
        });
        let a = Authenticator::new(&cfg, &["k-plain".to_string()]).unwrap();
        let hooked = a.authenticate("k-hooked").unwrap();
        assert_eq!(a.default_callback(&hooked), Some("https://example.com/hook"));
        assert_eq!(a.default_callback(&a.authenticate("k-plain").unwrap()), None);
        assert_eq!(a.default_callback(&Principal { owner: "user:hooked".into() }), None, "users have none");
    }

    #[test]
    fn unknown_and_known_names_both_run_argon2() {
        let a = auth();
        let before = a.password_checks();
        assert_eq!(a.obtain("nobody", "pw").err(), Some(AuthError::BadCredentials));
        assert_eq!(a.password_checks(), before + 1, "an unknown name is verified against the dummy hash");
        assert_eq!(a.obtain("alice", "wrong").err(), Some(AuthError::BadCredentials));
        assert_eq!(a.password_checks(), before + 2);
        // The dummy hash never logs anyone in, whatever the password.
        assert!(a.obtain("", "").is_err());
        assert!(a.dummy_hash.starts_with("$argon2id$"), "same algorithm as real hashes");
        assert_eq!(
            PasswordHash::new(&a.dummy_hash).unwrap().params.to_string(),
            PasswordHash::new(&a.users["alice"]).unwrap().params.to_string(),
            "same cost parameters as real hashes"
        );
    }
}
