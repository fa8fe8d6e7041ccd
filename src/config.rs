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
    pub local: LocalConfig,
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
    /// `memory`, a `redis://` / `rediss://` URL, or `redis+unix://` with a socket path.
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
    /// Redis store: image bytes of just-queued inputs kept for this instance's idle workers,
    /// so their claims need not read the images back; 0 = none.
    pub redis_recent_max_bytes: u64,
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
    /// A `redis://` or `rediss://` URL: the shared store of many instances; or `redis+unix://`
    /// (`unix://`) with a socket path, for a Redis on the same host.
    Redis(String),
}

impl FromStr for StoreUrl {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            Ok(Self::Memory)
        } else if ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|p| s.starts_with(p)) {
            Ok(Self::Redis(s.to_string()))
        } else {
            Err(ConfigError::Invalid(format!("store.url must be \"memory\" or a redis://, rediss:// or redis+unix:// URL, not {s:?}")))
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
    /// Threads of a runtime of its own for task work; 0: tasks share the API's runtime.
    pub threads: usize,
    /// With `threads`, how much lower those threads' OS priority is (niceness 0 to 19).
    pub nice: i32,
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
    /// `client` (default) or `operator` (may also call the admin endpoints, e.g. reload).
    #[serde(default)]
    pub role: Role,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The Progeny API: submit tasks, read its own tasks and media.
    #[default]
    Client,
    /// A client that may also call `/api/v3/admin/…`.
    Operator,
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
        let cfg = Self::load_unchecked(file)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// [`Config::load`] without refusing values that parse but cannot work: `kycgate check`
    /// reports those itself ([`Config::problems`]), each at its line.
    pub fn load_unchecked(file: Option<&Path>) -> Result<Self, ConfigError> {
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
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let all: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
        Err(ConfigError::Invalid(all.join("; ")))
    }

    /// Every value that parses but cannot work, each at its dotted key (`kycgate check` maps the
    /// key to a line of the file). Start-up refuses a config with any.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut at_least_one = |key: &str, value: u64| {
            if value == 0 {
                out.push(ConfigProblem::new(key, "must be at least 1", None));
            }
        };
        let server = &self.server;
        at_least_one("server.max_connections", server.max_connections as u64);
        at_least_one("server.header_read_timeout_ms", server.header_read_timeout_ms);
        at_least_one("server.request_timeout_ms", server.request_timeout_ms);
        at_least_one("worker.concurrency", self.worker.concurrency as u64);
        let auth = &self.auth;
        at_least_one("auth.login_max_failures_per_user", u64::from(auth.login_max_failures_per_user));
        at_least_one("auth.login_max_failures_per_address", u64::from(auth.login_max_failures_per_address));
        at_least_one("auth.login_window_secs", auth.login_window_secs);
        at_least_one("auth.login_max_tracked", auth.login_max_tracked as u64);
        let hooks = &self.webhooks;
        at_least_one("webhooks.max_attempts", u64::from(hooks.max_attempts));
        at_least_one("webhooks.timeout_ms", hooks.timeout_ms);
        at_least_one("webhooks.poll_ms", hooks.poll_ms);
        at_least_one("webhooks.max_pending", hooks.max_pending as u64);
        let store = &self.store;
        at_least_one("store.max_queued_tasks", store.max_queued_tasks as u64);
        at_least_one("store.max_queued_bytes", store.max_queued_bytes as u64);
        at_least_one("store.max_queued_per_owner", store.max_queued_per_owner as u64);
        at_least_one("store.task_ttl_secs", store.task_ttl_secs);
        at_least_one("store.idempotency_ttl_secs", store.idempotency_ttl_secs);
        at_least_one("store.lease_secs", store.lease_secs);
        for (i, rule) in store.retention.iter().enumerate() {
            at_least_one(&format!("store.retention.{i}.task_ttl_secs"), rule.task_ttl_secs);
        }
        if server.max_header_bytes < 1024 {
            out.push(ConfigProblem::new("server.max_header_bytes", "must be at least 1024", None));
        }
        if !(0..=19).contains(&self.worker.nice) {
            out.push(ConfigProblem::new("worker.nice", "must be 0 to 19", None));
        }
        if hooks.max_url_bytes < 16 {
            out.push(ConfigProblem::new("webhooks.max_url_bytes", "must be at least 16", None));
        }
        if hooks.base_delay_ms > hooks.max_delay_ms {
            out.push(ConfigProblem::new("webhooks.base_delay_ms", "must be at most webhooks.max_delay_ms", None));
        }
        for (i, key) in self.auth.api_keys.iter().enumerate() {
            if key.sha256.is_none() == key.env.is_none() {
                out.push(ConfigProblem::new(
                    &format!("auth.api_keys.{i}"),
                    &format!("API key {:?}: give exactly one of sha256 or env", key.id),
                    Some("sha256 = \"<hex sha256 of the key>\" or env = \"VAR_HOLDING_THE_KEY\""),
                ));
            }
            if let Some(digest) = &key.sha256 {
                if digest.trim().len() != 64 || !digest.trim().bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.push(ConfigProblem::new(
                        &format!("auth.api_keys.{i}.sha256"),
                        &format!("API key {:?}: sha256 must be 64 hex digits", key.id),
                        Some("printf %s \"$KEY\" | sha256sum"),
                    ));
                }
            }
        }
        if !LOG_FORMATS.contains(&self.telemetry.log_format.as_str()) {
            out.push(ConfigProblem::new(
                "telemetry.log_format",
                &format!("unknown log format {:?}", self.telemetry.log_format),
                Some("one of \"pretty\" (terminals) or \"json\" (production)"),
            ));
        }
        out
    }
}

/// The values `telemetry.log_format` accepts.
pub const LOG_FORMATS: &[&str] = &["pretty", "json"];

/// A value that parses but cannot work: where (dotted key, array items by index), what, and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl ConfigProblem {
    fn new(key: &str, message: &str, hint: Option<&str>) -> Self {
        Self { key: key.to_string(), message: message.to_string(), hint: hint.map(str::to_string) }
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
        assert_eq!(
            "redis+unix:///run/redis.sock".parse::<StoreUrl>().unwrap(),
            StoreUrl::Redis("redis+unix:///run/redis.sock".into())
        );
        assert!("unix:///run/redis.sock?db=2".parse::<StoreUrl>().is_ok());
        assert!("http://r".parse::<StoreUrl>().is_err());
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
    fn task_thread_niceness_is_bounded() {
        let mut cfg = Config::load(None).expect("defaults parse");
        assert_eq!((cfg.worker.threads, cfg.worker.nice), (0, 10));
        for bad in [-1, 20] {
            cfg.worker.nice = bad;
            let problems = cfg.problems();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].key, "worker.nice");
        }
        cfg.worker.nice = 0;
        assert!(cfg.problems().is_empty());
    }

    #[test]
    fn unknown_log_format_fails_instead_of_falling_back() {
        let mut cfg = Config::load(None).expect("defaults parse");
        cfg.telemetry.log_format = "jsn".into();
        let problems = cfg.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "telemetry.log_format");
        assert!(cfg.validate().is_err());
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
