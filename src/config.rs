//! Gateway configuration: embedded defaults (`config/default.toml`), an optional file, then
//! `KYCGATE__SECTION__KEY` environment variables, merged by the `config` crate.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::routing::config::RoutingConfig;
/// The `[telemetry]` section is declared by telemetry (a leaf: it imports no config).
pub use crate::telemetry::{OtlpConfig, TelemetryConfig};
/// The `[webhooks]` section is declared by webhooks.
pub use crate::webhooks::WebhookConfig;

/// The embedded defaults, so the binary runs with no file at all.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Everything the gateway reads at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub images: ImageLimits,
    pub store: StoreConfig,
    pub worker: WorkerConfig,
    pub auth: AuthConfig,
    pub providers: ProvidersConfig,
    pub models: ModelsConfig,
    pub routing: RoutingConfig,
    pub telemetry: TelemetryConfig,
    pub webhooks: WebhookConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Base URL for `portrait_url`; empty = from the request's Host header.
    pub public_url: String,
    pub max_body_bytes: usize,
    /// A connection must send a request's whole header within this (slowloris).
    pub header_read_timeout_ms: u64,
    /// A whole request, body included, must be read and answered within this.
    pub request_timeout_ms: u64,
    /// Connections served at once; past it new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request head (request line and headers), bytes: past it hyper answers 431.
    pub max_header_bytes: usize,
}

/// Per-file image limits, enforced before decoding.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageLimits {
    pub max_bytes: usize,
    pub max_pixels: u64,
    pub max_side: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `memory` or a `redis://` URL.
    pub url: StoreUrl,
    pub namespace: String,
    pub task_ttl_secs: u64,
    pub face_ttl_secs: u64,
    pub lease_secs: u64,
    /// Unfinished tasks held at once (memory: this instance; Redis: all instances); 429 past it.
    pub max_queued_tasks: u64,
    /// Image bytes of unfinished tasks (same scope); 429 past it.
    pub max_queued_bytes: u64,
    /// Unfinished tasks of one owner (across instances on Redis); 429 past it.
    pub max_queued_per_owner: u64,
    /// `Retry-After` of a 429 from those bounds.
    pub retry_after_secs: u64,
    /// How long an `Idempotency-Key` keeps naming its task.
    pub idempotency_ttl_secs: u64,
    /// Memory store: image bytes of queued inputs kept in RAM; past it they spill to
    /// `spill_dir`, or submits get 429 when it is empty.
    pub memory_max_bytes: u64,
    /// Memory store: directory for spilled inputs (created 0700); empty = no spilling.
    pub spill_dir: String,
    /// Per-owner task TTLs overriding `task_ttl_secs`.
    pub retention: Vec<RetentionRule>,
}

/// `[[store.retention]]`: how long one owner's tasks (records, images, portraits) are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    pub owner: String,
    pub task_ttl_secs: u64,
}

/// Which task store to use, parsed once from `store.url` (or `serve --store`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StoreUrl {
    /// `memory`: the embedded single-node store.
    Memory,
    /// A `redis://` or `rediss://` URL: the shared store of many instances.
    Redis(String),
}

impl FromStr for StoreUrl {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            Ok(Self::Memory)
        } else if s.starts_with("redis://") || s.starts_with("rediss://") {
            Ok(Self::Redis(s.to_string()))
        } else {
            Err(ConfigError::Invalid(format!("store.url must be \"memory\" or a redis:// URL, not {s:?}")))
        }
    }
}

impl TryFrom<String> for StoreUrl {
    type Error = ConfigError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Redis(url) => f.write_str(url),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub jwt_secret: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub api_keys: Vec<ApiKeyConfig>,
    pub users: Vec<UserConfig>,
    /// Failed `token/obtain` attempts per user name within `login_window_secs`; then 429.
    pub login_max_failures_per_user: u32,
    /// Failed `token/obtain` attempts per client address within `login_window_secs`; then 429.
    pub login_max_failures_per_address: u32,
    pub login_window_secs: u64,
    /// User names plus addresses tracked at once (the limiter's memory bound).
    pub login_max_tracked: usize,
}

/// A static API key. The key itself is never written in config: give its sha256, or the name
/// of an environment variable holding it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Owner name the key's tasks are filed under.
    pub id: String,
    pub sha256: Option<String>,
    pub env: Option<String>,
    /// Where this key's finished tasks are POSTed when a submit gives no `callback_url`.
    #[serde(default)]
    pub callback_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// PHC string (`$argon2id$…`) from `kycgate hash-password`.
    pub password_hash: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Model directory; empty = `KYCGATE_MODEL_DIR` or none.
    pub dir: String,
    pub fetch: bool,
}

impl ModelsConfig {
    /// The model directory in force: `KYCGATE_MODEL_DIR` wins over the file.
    pub fn model_dir(&self) -> Option<PathBuf> {
        match std::env::var_os("KYCGATE_MODEL_DIR") {
            Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
            _ if !self.dir.is_empty() => Some(PathBuf::from(&self.dir)),
            _ => None,
        }
    }
}

impl Config {
    /// Defaults, then `file` (if any), then `KYCGATE__…` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let cfg: Config = builder
            .add_source(
                config::Environment::with_prefix("KYCGATE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        if server.max_connections == 0 || server.header_read_timeout_ms == 0 || server.request_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "server.max_connections, header_read_timeout_ms and request_timeout_ms must be at least 1".into(),
            ));
        }
        if server.max_header_bytes < 1024 {
            return Err(ConfigError::Invalid("server.max_header_bytes must be at least 1024".into()));
        }
        let auth = &self.auth;
        if auth.login_max_failures_per_user == 0
            || auth.login_max_failures_per_address == 0
            || auth.login_window_secs == 0
            || auth.login_max_tracked == 0
        {
            return Err(ConfigError::Invalid(
                "auth.login_max_failures_per_user, login_max_failures_per_address, login_window_secs and \
                 login_max_tracked must be at least 1"
                    .into(),
            ));
        }
        let hooks = &self.webhooks;
        if hooks.max_attempts == 0 || hooks.timeout_ms == 0 || hooks.poll_ms == 0 || hooks.max_pending == 0 {
            return Err(ConfigError::Invalid(
                "webhooks.max_attempts, timeout_ms, poll_ms and max_pending must be at least 1".into(),
            ));
        }
        if hooks.max_url_bytes < 16 || hooks.base_delay_ms > hooks.max_delay_ms {
            return Err(ConfigError::Invalid(
                "webhooks.max_url_bytes must be at least 16 and base_delay_ms at most max_delay_ms".into(),
            ));
        }
        if self.worker.concurrency == 0 {
            return Err(ConfigError::Invalid("worker.concurrency must be at least 1".into()));
        }
        let store = &self.store;
        if store.max_queued_tasks == 0 || store.max_queued_bytes == 0 || store.max_queued_per_owner == 0 {
            return Err(ConfigError::Invalid(
                "store.max_queued_tasks, max_queued_bytes and max_queued_per_owner must be at least 1".into(),
            ));
        }
        if store.task_ttl_secs == 0 || store.idempotency_ttl_secs == 0 || store.lease_secs == 0 {
            return Err(ConfigError::Invalid(
                "store.task_ttl_secs, idempotency_ttl_secs and lease_secs must be at least 1".into(),
            ));
        }
        for rule in &store.retention {
            if rule.task_ttl_secs == 0 {
                return Err(ConfigError::Invalid(format!(
                    "store.retention for owner {:?}: task_ttl_secs must be at least 1",
                    rule.owner
                )));
            }
        }
        for key in &self.auth.api_keys {
            if key.sha256.is_none() == key.env.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "auth.api_keys entry {:?}: give exactly one of sha256 or env",
                    key.id
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_once() {
        assert_eq!("memory".parse::<StoreUrl>().unwrap(), StoreUrl::Memory);
        assert_eq!("redis://r:6379".parse::<StoreUrl>().unwrap(), StoreUrl::Redis("redis://r:6379".into()));
        assert_eq!("rediss://r".parse::<StoreUrl>().unwrap().to_string(), "rediss://r");
        assert!("postgres://db".parse::<StoreUrl>().is_err());
        assert!("Memory".parse::<StoreUrl>().is_err());
    }

    #[test]
    fn store_bounds_and_retention_load_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        let write = |body: &str| std::fs::write(&path, body).expect("write");
        write(
            "[store]\nmax_queued_per_owner = 3\nspill_dir = \"/var/spool/kyc\"\n\n[[store.retention]]\nowner = \"bank\"\ntask_ttl_secs = 600\n",
        );
        let cfg = Config::load(Some(&path)).expect("loads");
        assert_eq!(cfg.store.max_queued_per_owner, 3);
        assert_eq!(cfg.store.spill_dir, "/var/spool/kyc");
        assert_eq!((cfg.store.retention[0].owner.as_str(), cfg.store.retention[0].task_ttl_secs), ("bank", 600));
        write("[store]\nmax_queued_tasks = 0\n");
        assert!(Config::load(Some(&path)).is_err(), "a zero bound is refused");
        write("[[store.retention]]\nowner = \"bank\"\ntask_ttl_secs = 0\n");
        assert!(Config::load(Some(&path)).is_err(), "a zero retention is refused");
    }

    #[test]
    fn embedded_defaults_load() {
        let cfg = Config::load(None).expect("defaults parse");
        assert_eq!(cfg.store.url, StoreUrl::Memory);
        assert!(cfg.store.retention.is_empty() && cfg.store.spill_dir.is_empty());
        assert!(cfg.store.max_queued_per_owner <= cfg.store.max_queued_tasks);
        assert_eq!(cfg.auth.access_ttl_secs, 300);
        assert_eq!(cfg.auth.login_max_failures_per_user, 5);
        assert!(cfg.server.max_header_bytes >= 1024);
        assert!(cfg.worker.concurrency >= 1);
    }
}
