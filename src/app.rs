//! Wiring: config → store, providers, router, pipeline, workers, HTTP server.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::{self, AppState, Authenticator};
use crate::config::{Config, StoreConfig, StoreUrl};
use crate::local::LocalProvider;
use crate::pipeline::Pipeline;
use crate::providers::http::HttpProvider;
use crate::providers::spec::{self, LocalSpec, ProviderFile, ProviderSpec};
use crate::providers::{PortraitCropper, SharedProvider};
use crate::routing::swap::SwappableRouter;
use crate::routing::{self, SubCallRouter};
use crate::tasks::store::memory::MemoryStore;
use crate::tasks::store::once::{MemoryOnce, RedisOnce, SpendOnce};
use crate::tasks::store::redis::{RedisOptions, RedisStore};
use crate::tasks::store::{QueueLimits, SharedStore, StoreOptions, Ttls};
use crate::webhooks::queue::{DeliveryQueue, MemoryQueue, RedisQueue};
use crate::webhooks::Webhooks;
use crate::worker::{self, WorkerSettings};

/// The embedded `providers/local.toml` (declared by `local`, which `check` reads too).
pub use crate::local::LOCAL_PROVIDER_TOML;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("store: {0}")]
    Store(#[from] crate::tasks::store::StoreError),
    #[error("providers: {0}")]
    Spec(#[from] spec::SpecError),
    #[error("provider {name}: {reason}")]
    Provider { name: String, reason: String },
    #[error("routing: {0}")]
    Routing(String),
    #[error("auth: {0}")]
    Auth(#[from] crate::api::auth::AuthError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Start-up choices that come from the command line rather than config.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub store: Option<StoreUrl>,
    pub api_keys: Vec<String>,
    /// Client API keys with their owner id (`KYCGATE_API_KEYS="id:key,…"`).
    pub named_api_keys: Vec<(String, String)>,
    /// The gateway file a reload re-reads (`--config`); `None`: the embedded defaults.
    pub config_file: Option<PathBuf>,
}

/// Everything built from config, ready to serve or to run one task in-process.
pub struct Gateway {
    pub config: Config,
    pub state: AppState,
    pub pipeline: Arc<Pipeline>,
    /// Re-reads routing and adapters (`SIGHUP`, `POST /api/v3/admin/reload/`).
    pub reloader: Arc<Reloader>,
}

impl Gateway {
    pub async fn build(mut config: Config, overrides: &Overrides) -> Result<Self, AppError> {
        if let Some(listen) = overrides.listen {
            config.server.listen = listen;
        }
        if let Some(store) = &overrides.store {
            config.store.url = store.clone();
        }
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        for (id, key) in &overrides.named_api_keys {
            config.auth.api_keys.push(crate::config::ApiKeyConfig {
                id: id.clone(),
                sha256: Some(hex::encode(crate::api::auth::key_digest(key))),
                env: None,
                role: crate::config::Role::Client,
                callback_url: None,
            });
        }
        let store = open_store(&config.store, config.worker.concurrency).await?;
        let files = provider_files(&config.providers.dir)?;
        let (providers, local) = build_providers(&config, files, None).await?;
        let shared_limits = shared_limits(&config.store).await;
        let chains = routing::build_with(&config.routing, &providers, shared_limits.clone())
            .map_err(|e| AppError::Routing(e.to_string()))?;
        let swappable = Arc::new(SwappableRouter::new(Arc::new(chains)));
        let router: Arc<dyn SubCallRouter> = swappable.clone();
        let cropper = local.as_ref().map(|(_, l)| l.clone() as Arc<dyn PortraitCropper>);
        let pipeline = Arc::new(Pipeline::new(router.clone(), store.clone(), cropper));
        let auth = Arc::new(Authenticator::new(&config.auth, &overrides.api_keys)?.with_spent_tokens(spent_tokens(&config.store).await?));
        let public_url = Some(config.server.public_url.trim_end_matches('/').to_string()).filter(|u| !u.is_empty());
        let reloader = Arc::new(Reloader {
            config_file: overrides.config_file.clone(),
            router: swappable,
            local: tokio::sync::Mutex::new(local),
            shared_limits,
        });
        let reload: Arc<dyn api::admin::Reload> = reloader.clone();
        let webhooks = Arc::new(Webhooks::new(config.webhooks.clone(), delivery_queue(&config.store).await?));
        let state = AppState { store, auth, router, limits: config.images, public_url, webhooks, reload: Some(reload) };
        Ok(Self { config, state, pipeline, reloader })
    }

    /// Serves HTTP and runs workers until `shutdown` resolves; then drains.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let settings = WorkerSettings {
            name: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
            concurrency: self.config.worker.concurrency,
            heartbeat: Duration::from_secs(self.config.store.lease_secs.max(3) / 3),
            poll: Duration::from_secs(2),
        };
        // Task work shares the API's runtime unless `[worker] threads` gives it one of its own.
        let tasks = match self.config.worker.threads {
            0 => None,
            n => Some(worker::TaskRuntime::new(n, self.config.worker.nice)?),
        };
        let runtime = tasks.as_ref().map_or_else(tokio::runtime::Handle::current, |t| t.handle().clone());
        let mut workers =
            worker::spawn(self.state.store.clone(), self.pipeline.clone(), settings, stop_rx.clone(), &runtime);
        // Webhook deliveries (any instance makes any pending one).
        workers.spawn(self.state.webhooks.clone().run(self.state.store.clone(), api::tasks::task_json, stop_rx.clone()));
        // Queue gauges between scrapes (OTLP pushes read the last sample).
        tokio::spawn(crate::telemetry::metrics::sample_queue_every(
            self.state.store.clone(),
            QUEUE_SAMPLE_EVERY,
            stop_rx,
        ));
        let server = &self.config.server;
        let app = api::app(self.state.clone(), server.max_body_bytes, Duration::from_millis(server.request_timeout_ms));
        let http = http_server(listener, app, server, stop_tx.subscribe());
        // Registered before serving, so a SIGHUP right after start-up reloads instead of killing.
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangup) => {
                tokio::spawn(reload_on_sighup(self.reloader.clone(), hangup, stop_tx.subscribe()));
            }
            Err(e) => tracing::warn!(error = %e, "SIGHUP reload unavailable"),
        }
        let trigger = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        http.await;
        trigger.abort();
        while workers.join_next().await.is_some() {}
        drop(tasks);
        Ok(())
    }
}

/// The most one connection's read buffer grows to (hyper's default is ~400 KB).
const READ_BUF_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `stop` turns true, then lets open connections finish.
///
/// Every bound is explicit (`[server]`): at most `max_connections` connections at once (the
/// rest wait in the kernel's backlog, so file descriptors cannot run out), and a request's
/// header must arrive within `header_read_timeout_ms` or its connection is closed (idle and
/// trickling sockets). HTTP/1.1 only: no protocol sniffing that could wait on a silent socket.
async fn http_server(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    config: &crate::config::ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms))
        .max_header_size(config.max_header_bytes)
        // hyper's default read buffer grows to ~400 KB, and a connection receiving an upload
        // keeps it as large until the request ends: 64 uploads at once held 37 MB of them at
        // the 10,000-in-flight peak (docs/PERFORMANCE.md). Bodies are read in 64 KB steps
        // instead; headers still get their own bound.
        .max_buf_size(READ_BUF_BYTES.max(config.max_header_bytes + 8192));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot { Ok(s) => s, Err(_) => break },
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors or a reset before accept: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer address, for per-address limits (login attempts). It is the socket's peer:
        // behind a proxy, the proxy's address (forwarding headers are not trusted).
        let with_peer = tower::ServiceBuilder::new()
            .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            })
            .service(app.clone());
        let service = hyper_util::service::TowerToHyperService::new(with_peer);
        let connection = http1.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request is not the gateway's error.
            let _ = watched.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The task store `config` names, with its lifetimes and bounds. The Redis pool keeps one idle
/// blocking connection per worker (`[worker] concurrency`), so claims do not reconnect.
async fn open_store(config: &StoreConfig, workers: usize) -> Result<SharedStore, AppError> {
    let ttls = Ttls {
        task: Duration::from_secs(config.task_ttl_secs),
        face: Duration::from_secs(config.face_ttl_secs),
        lease: Duration::from_secs(config.lease_secs),
    };
    let options = store_options(config);
    Ok(match &config.url {
        StoreUrl::Memory => Arc::new(MemoryStore::open(ttls, options)?),
        StoreUrl::Redis(url) => {
            let redis = RedisOptions {
                max_idle_blocking: workers.max(1),
                recent_inputs_max_bytes: usize::try_from(config.redis_recent_max_bytes).unwrap_or(usize::MAX),
                ..RedisOptions::default()
            };
            Arc::new(RedisStore::open(url, &config.namespace, ttls, redis, options).await?)
        }
    })
}

/// `[store]`'s bounds, retention and spill directory.
fn store_options(config: &StoreConfig) -> StoreOptions {
    StoreOptions {
        limits: QueueLimits {
            max_tasks: config.max_queued_tasks,
            max_bytes: config.max_queued_bytes,
            max_per_owner: config.max_queued_per_owner,
            retry_after: Duration::from_secs(config.retry_after_secs),
        },
        retention: config
            .retention
            .iter()
            .map(|r| (r.owner.clone(), Duration::from_secs(r.task_ttl_secs)))
            .collect(),
        idempotency_ttl: Duration::from_secs(config.idempotency_ttl_secs),
        memory_max_bytes: config.memory_max_bytes,
        spill_dir: Some(config.spill_dir.trim()).filter(|d| !d.is_empty()).map(std::path::PathBuf::from),
    }
}

/// With the Redis store, provider rate limits and daily budgets are shared by every instance
/// through the same Redis. The store has just connected, so a failure here is unlikely; if it
/// happens the gates stay per instance and the log says so.
async fn shared_limits(config: &StoreConfig) -> Option<Arc<routing::SharedLimits>> {
    let StoreUrl::Redis(url) = &config.url else { return None };
    match routing::SharedLimits::connect(url, &config.namespace).await {
        Ok(limits) => Some(limits),
        Err(e) => {
            tracing::warn!(error = %e, "Shared rate limits unavailable: each instance keeps its own");
            None
        }
    }
}

/// Where spent refresh tokens are recorded: the store's Redis (shared by every instance), or
/// this process with the memory store.
async fn spent_tokens(config: &StoreConfig) -> Result<Arc<dyn SpendOnce>, AppError> {
    Ok(match &config.url {
        StoreUrl::Memory => Arc::new(MemoryOnce::default()),
        StoreUrl::Redis(url) => Arc::new(RedisOnce::connect(url, &config.namespace).await?),
    })
}

/// Where pending webhook deliveries live: beside the task store.
async fn delivery_queue(config: &StoreConfig) -> Result<Arc<dyn DeliveryQueue>, AppError> {
    Ok(match &config.url {
        StoreUrl::Memory => Arc::new(MemoryQueue::default()),
        StoreUrl::Redis(url) => Arc::new(RedisQueue::connect(url, &config.namespace).await?),
    })
}

/// How often the queue gauges are refreshed in the background.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(15);

fn hostname() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "kycgate".into())
}

/// The adapter files of `dir`, plus the embedded local provider when the directory has none.
fn provider_files(dir: &Path) -> Result<Vec<ProviderFile>, AppError> {
    let mut files: Vec<ProviderFile> = if dir.is_dir() { spec::load_dir(dir)? } else { Vec::new() };
    if !files.iter().any(|f| f.name == "local") {
        let spec = spec::parse_spec(LOCAL_PROVIDER_TOML)
            .map_err(|e| AppError::Provider { name: "local".into(), reason: e.to_string() })?;
        files.push(ProviderFile { name: "local".into(), path: Path::new("providers/local.toml").into(), spec });
    }
    Ok(files)
}

/// The local provider as built, with the file section it was built from (a reload reuses it
/// when that is unchanged, rather than loading every model again).
type BuiltLocal = (LocalSpec, Arc<LocalProvider>);

/// Builds the providers the routing config names (others in the directory are only parsed,
/// so a vendor file whose credentials are not set does not stop the gateway).
async fn build_providers(
    config: &Config,
    files: Vec<ProviderFile>,
    reuse: Option<&BuiltLocal>,
) -> Result<(HashMap<String, SharedProvider>, Option<BuiltLocal>), AppError> {
    let wanted: std::collections::HashSet<&str> = config.routing.provider_names().collect();
    let mut providers: HashMap<String, SharedProvider> = HashMap::new();
    let mut local = None;
    for file in files {
        if !wanted.contains(file.name.as_str()) {
            continue;
        }
        let provider: SharedProvider = match &file.spec {
            ProviderSpec::Http(_) => Arc::new(
                HttpProvider::from_file(&file)
                    .map_err(|e| AppError::Provider { name: file.name.clone(), reason: e.to_string() })?,
            ),
            ProviderSpec::Local(spec) => {
                let l = match reuse {
                    Some((old, built)) if old.serves == spec.serves && old.settings == spec.settings => built.clone(),
                    _ => Arc::new(LocalProvider::build(&file.name, spec, &config.models, &config.local).await.map_err(|e| {
                        AppError::Provider { name: file.name.clone(), reason: format!("invalid [settings]: {e}") }
                    })?),
                };
                local = Some((spec.clone(), l.clone()));
                l as SharedProvider
            }
        };
        providers.insert(file.name.clone(), provider);
    }
    Ok((providers, local))
}

/// Re-reads routing and the adapters, validates them as `kycgate check` does, and swaps the new
/// chains in. A configuration with any problem is refused whole: the running one stays.
/// Tasks already routing keep the chains they started with (`routing::swap::pinned`). Other
/// sections of the gateway file (listen address, store, auth, …) need a restart.
pub struct Reloader {
    config_file: Option<PathBuf>,
    router: Arc<SwappableRouter>,
    /// One reload at a time; the local provider in force.
    local: tokio::sync::Mutex<Option<BuiltLocal>>,
    /// Rate limits and budgets shared through Redis (kept across reloads: same keys).
    shared_limits: Option<Arc<routing::SharedLimits>>,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{} problem(s) in the configuration", .0.len())]
    Invalid(Vec<crate::check::Problem>),
    #[error(transparent)]
    Build(#[from] AppError),
}

impl Reloader {
    /// Validates and swaps in the configuration on disk; returns the chains now in force.
    pub async fn reload(&self) -> Result<BTreeMap<String, Vec<String>>, ReloadError> {
        let mut local = self.local.lock().await;
        let file = self.config_file.clone();
        let report = tokio::task::spawn_blocking(move || crate::check::run(file.as_deref()))
            .await
            .map_err(|e| AppError::Routing(format!("validation stopped: {e}")))?;
        let config = match report.config {
            Some(config) if report.problems.is_empty() => config,
            _ => return Err(ReloadError::Invalid(report.problems)),
        };
        let (providers, built) = build_providers(&config, report.providers, local.as_ref()).await?;
        let chains = routing::build_with(&config.routing, &providers, self.shared_limits.clone())
            .map_err(|e| AppError::Routing(e.to_string()))?;
        self.router.swap(Arc::new(chains));
        if built.is_some() {
            *local = built;
        }
        let routing = crate::providers::SubCallKind::ALL
            .into_iter()
            .map(|k| (k.to_string(), config.routing.route(k).chain.iter().map(|e| e.provider.clone()).collect()))
            .collect();
        Ok(routing)
    }

    /// [`Reloader::reload`], logged: what is now in force, or every reason it was refused.
    pub async fn reload_logged(&self, trigger: &'static str) -> Result<BTreeMap<String, Vec<String>>, Vec<String>> {
        match self.reload().await {
            Ok(routing) => {
                tracing::info!(trigger, routing = ?routing, "Configuration reloaded");
                Ok(routing)
            }
            Err(ReloadError::Invalid(problems)) => {
                let problems: Vec<String> = problems.iter().map(crate::check::Problem::one_line).collect();
                for p in &problems {
                    tracing::error!(trigger, problem = %p, "Reload refused; the running configuration is kept");
                }
                Err(problems)
            }
            Err(ReloadError::Build(e)) => {
                tracing::error!(trigger, error = %e, "Reload refused; the running configuration is kept");
                Err(vec![e.to_string()])
            }
        }
    }
}

#[async_trait::async_trait]
impl api::admin::Reload for Reloader {
    async fn reload(&self) -> Result<api::admin::Reloaded, Vec<String>> {
        self.reload_logged("admin").await.map(|routing| api::admin::Reloaded { routing })
    }
}

/// `SIGHUP` → reload, until the server stops.
#[cfg(unix)]
async fn reload_on_sighup(
    reloader: Arc<Reloader>,
    mut hangup: tokio::signal::unix::Signal,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            got = hangup.recv() => {
                if got.is_none() {
                    return;
                }
                let _ = reloader.reload_logged("SIGHUP").await;
            }
            _ = stopped(&mut stop) => return,
        }
    }
}
