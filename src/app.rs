//! Wiring: config → store, providers, router, pipeline, workers, HTTP server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::{self, AppState, Authenticator};
use crate::config::{Config, StoreConfig, StoreUrl};
use crate::local::LocalProvider;
use crate::pipeline::Pipeline;
use crate::providers::http::HttpProvider;
use crate::providers::spec::{self, ProviderFile, ProviderSpec};
use crate::providers::{PortraitCropper, SharedProvider};
use crate::routing::{self, SubCallRouter};
use crate::tasks::store::memory::MemoryStore;
use crate::tasks::store::redis::RedisStore;
use crate::tasks::store::{SharedStore, Ttls};
use crate::worker::{self, WorkerSettings};

/// The embedded `providers/local.toml`, used when the providers directory has no `local.toml`
/// (e.g. the binary runs outside the repository).
pub const LOCAL_PROVIDER_TOML: &str = include_str!("../providers/local.toml");

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
}

/// Everything built from config, ready to serve or to run one task in-process.
pub struct Gateway {
    pub config: Config,
    pub state: AppState,
    pub pipeline: Arc<Pipeline>,
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
        let store = open_store(&config.store).await?;
        let (providers, local) = build_providers(&config).await?;
        let router: Arc<dyn SubCallRouter> = Arc::new(
            routing::build(&config.routing, &providers).map_err(|e| AppError::Routing(e.to_string()))?,
        );
        let cropper = local.map(|l| l as Arc<dyn PortraitCropper>);
        let pipeline = Arc::new(Pipeline::new(router.clone(), store.clone(), cropper));
        let auth = Arc::new(Authenticator::new(&config.auth, &overrides.api_keys)?);
        let public_url = Some(config.server.public_url.trim_end_matches('/').to_string()).filter(|u| !u.is_empty());
        let state = AppState { store, auth, router, limits: config.images, public_url };
        Ok(Self { config, state, pipeline })
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
        let mut workers = worker::spawn(self.state.store.clone(), self.pipeline.clone(), settings, stop_rx.clone());
        // Queue gauges between scrapes (OTLP pushes read the last sample).
        tokio::spawn(crate::telemetry::metrics::sample_queue_every(
            self.state.store.clone(),
            QUEUE_SAMPLE_EVERY,
            stop_rx,
        ));
        let server = &self.config.server;
        let app = api::app(self.state.clone(), server.max_body_bytes, Duration::from_millis(server.request_timeout_ms));
        let http = http_server(listener, app, server, stop_tx.subscribe());
        let trigger = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        http.await;
        trigger.abort();
        while workers.join_next().await.is_some() {}
        Ok(())
    }
}

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
    http1.timer(TokioTimer::new()).header_read_timeout(Duration::from_millis(config.header_read_timeout_ms));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot { Ok(s) => s, Err(_) => break },
            _ = stopped(&mut stop) => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
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
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
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

/// The task store `config` names, with its lifetimes.
async fn open_store(config: &StoreConfig) -> Result<SharedStore, AppError> {
    let ttls = Ttls {
        task: Duration::from_secs(config.task_ttl_secs),
        face: Duration::from_secs(config.face_ttl_secs),
        lease: Duration::from_secs(config.lease_secs),
    };
    Ok(match &config.url {
        StoreUrl::Memory => Arc::new(MemoryStore::new(ttls)),
        StoreUrl::Redis(url) => Arc::new(RedisStore::connect(url, &config.namespace, ttls).await?),
    })
}

/// How often the queue gauges are refreshed in the background.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(15);

fn hostname() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "kycgate".into())
}

/// Builds the providers the routing config names (others in the directory are only parsed,
/// so a vendor file whose credentials are not set does not stop the gateway).
async fn build_providers(
    config: &Config,
) -> Result<(HashMap<String, SharedProvider>, Option<Arc<LocalProvider>>), AppError> {
    let dir = &config.providers.dir;
    let mut files: Vec<ProviderFile> = if dir.is_dir() { spec::load_dir(dir)? } else { Vec::new() };
    if !files.iter().any(|f| f.name == "local") {
        let spec = spec::parse_spec(LOCAL_PROVIDER_TOML)
            .map_err(|e| AppError::Provider { name: "local".into(), reason: e.to_string() })?;
        files.push(ProviderFile { name: "local".into(), path: Path::new("providers/local.toml").into(), spec });
    }
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
                let l = Arc::new(LocalProvider::build(&file.name, spec, &config.models, &config.local).await);
                local = Some(l.clone());
                l as SharedProvider
            }
        };
        providers.insert(file.name.clone(), provider);
    }
    Ok((providers, local))
}
