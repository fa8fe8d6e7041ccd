//! Gateway configuration: embedded defaults (`config/default.toml`), an optional file, then
//! `KYCGATE__SECTION__KEY` environment variables, merged by the `config` crate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::routing::config::RoutingConfig;
use crate::tasks::store::Ttls;
/// The `[telemetry]` section is declared by telemetry (a leaf: it imports no config).
pub use crate::telemetry::{OtlpConfig, TelemetryConfig};

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Base URL for `portrait_url`; empty = from the request's Host header.
    pub public_url: String,
    pub max_body_bytes: usize,
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
    pub url: String,
    pub namespace: String,
    pub task_ttl_secs: u64,
    pub face_ttl_secs: u64,
    pub lease_secs: u64,
}

impl StoreConfig {
    pub fn ttls(&self) -> Ttls {
        Ttls {
            task: Duration::from_secs(self.task_ttl_secs),
            face: Duration::from_secs(self.face_ttl_secs),
            lease: Duration::from_secs(self.lease_secs),
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
        if self.worker.concurrency == 0 {
            return Err(ConfigError::Invalid("worker.concurrency must be at least 1".into()));
        }
        if self.store.url != "memory" && !self.store.url.starts_with("redis://") && !self.store.url.starts_with("rediss://") {
            return Err(ConfigError::Invalid(format!(
                "store.url must be \"memory\" or a redis:// URL, not {:?}",
                self.store.url
            )));
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
    fn embedded_defaults_load() {
        let cfg = Config::load(None).expect("defaults parse");
        assert_eq!(cfg.store.url, "memory");
        assert_eq!(cfg.auth.access_ttl_secs, 300);
        assert!(cfg.worker.concurrency >= 1);
    }
}
