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
    pub local: LocalConfig,
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
    /// A connection must send a request's whole header within this (slowloris).
    pub header_read_timeout_ms: u64,
    /// A whole request, body included, must be read and answered within this.
    pub request_timeout_ms: u64,
    /// Connections served at once; past it new ones wait in the listen backlog.
    pub max_connections: usize,
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

/// `[local]`: bounds of the on-device provider.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Images decoded (and held as pixels) at once; 0 = one per CPU core.
    pub max_concurrent_decodes: usize,
}

impl LocalConfig {
    /// The decode cap in force: the configured one, or the number of CPU cores.
    pub fn decode_cap(&self) -> usize {
        match self.max_concurrent_decodes {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }
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
        let mut cfg: Config = builder
            .add_source(
                config::Environment::with_prefix("KYCGATE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        cfg.validate()?;
        cfg.routing.default_concurrency(cfg.worker.concurrency);
        Ok(cfg)
    }

    /// Settings that load but work against each other, in words for the operator's log (the
    /// gateway logs them at start-up; nothing here is fatal).
    pub fn warnings(&self) -> Vec<String> {
        let workers = self.worker.concurrency;
        self.routing
            .fewer_slots_than(workers)
            .into_iter()
            .map(|(kind, provider, slots)| {
                format!(
                    "routing.{kind} provider {provider:?}: concurrency = {slots} is below worker.concurrency = {workers}; \
                     tasks beyond {slots} wait for a slot and skip {provider:?} after its timeout_ms \
                     (leave concurrency unset unless the vendor caps concurrent calls)"
                )
            })
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        if server.max_connections == 0 || server.header_read_timeout_ms == 0 || server.request_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "server.max_connections, header_read_timeout_ms and request_timeout_ms must be at least 1".into(),
            ));
        }
        if self.worker.concurrency == 0 {
            return Err(ConfigError::Invalid("worker.concurrency must be at least 1".into()));
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
    fn embedded_defaults_load() {
        let cfg = Config::load(None).expect("defaults parse");
        assert_eq!(cfg.store.url, StoreUrl::Memory);
        assert_eq!(cfg.auth.access_ttl_secs, 300);
        assert!(cfg.worker.concurrency >= 1);
        assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
        assert_eq!(cfg.local.max_concurrent_decodes, 0);
        assert!(cfg.local.decode_cap() >= 1);
        assert_eq!(LocalConfig { max_concurrent_decodes: 3 }.decode_cap(), 3);
    }

    #[test]
    fn route_slots_follow_workers_and_fewer_are_warned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            "[worker]\nconcurrency = 256\n[routing.liveness]\nchain = [{ provider = \"kbyai\", concurrency = 16 }, { provider = \"local\" }]\n",
        )
        .expect("write config");
        let cfg = Config::load(Some(&path)).expect("loads");
        assert_eq!(cfg.routing.liveness.chain[0].params().concurrency, 16);
        assert_eq!(cfg.routing.liveness.chain[1].params().concurrency, 256);
        assert_eq!(cfg.routing.document_ocr.chain[0].params().concurrency, 256);
        let warnings = cfg.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("routing.liveness provider \"kbyai\": concurrency = 16"), "{warnings:?}");
    }
}
