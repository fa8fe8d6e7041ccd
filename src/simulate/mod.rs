//! Faked vendors, one mechanism for every use: `kycgate simulate` (operators dry-run a routing
//! config; benchmarks and fault tests use it as a realistic peer), `kycgate providers test` (one
//! adapter against its recording, see [`replay`]) and the tests.
//!
//! The simulator serves each vendor under its own path prefix (`http://HOST:PORT/<vendor>/…`, so
//! an adapter's base URL is `http://HOST:PORT/<vendor>`), from its recording
//! (`providers/fixtures/<vendor>/replay.toml`) or routes written inline in the scenario
//! (`sim/vendors.toml`), with configurable latency, error rate, 429 bursts and outages. It knows
//! nothing of adapter internals: a route is a method, a path and replies served in turn.

pub mod recording;
pub mod replay;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use rand::Rng as _;
use serde::Deserialize;
use tokio::time::Instant;

pub use recording::{LoadError, Recording, Reply, Route};

/// The scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Faults applied to every vendor unless it sets its own.
    #[serde(default)]
    pub faults: Faults,
    /// Where the vendors' recordings are, relative to the scenario file.
    #[serde(default = "default_fixtures")]
    pub fixtures: PathBuf,
    pub vendor: Vec<VendorSim>,
}

fn default_fixtures() -> PathBuf {
    PathBuf::from("../providers/fixtures")
}

/// One simulated vendor: a recording, or inline routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorSim {
    /// Path prefix and name (`facepp` → `/facepp/...`).
    pub name: String,
    pub faults: Option<Faults>,
    /// The recording served (`<fixtures>/<recording>/replay.toml`); `name` by default.
    pub recording: Option<String>,
    /// Inline routes instead of a recording (fixtures relative to the scenario file).
    #[serde(default)]
    pub route: Vec<Route>,
}

/// What goes wrong, and how slowly things go right.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Added to every answer.
    #[serde(default)]
    pub latency_ms: u64,
    /// Uniform extra latency in 0..jitter_ms.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Fraction (0..1) of calls answered 500.
    #[serde(default)]
    pub error_rate: f64,
    /// Every `every_secs`, the first `count` calls get 429 + Retry-After.
    pub burst_429: Option<Burst>,
    /// Windows, in seconds since start, where the vendor answers 503.
    #[serde(default)]
    pub outages: Vec<[u64; 2]>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub every_secs: u64,
    pub count: u64,
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u64,
}

fn default_retry_after() -> u64 {
    1
}

/// A loaded reply, ready to serve.
#[derive(Debug, Clone)]
struct Canned {
    status: StatusCode,
    body: bytes::Bytes,
    headers: Vec<(HeaderName, String)>,
}

struct Endpoint {
    method: Method,
    path: String,
    replies: Vec<Canned>,
    served: AtomicU64,
}

struct Vendor {
    name: String,
    faults: Faults,
    endpoints: Vec<Endpoint>,
    /// 429 bursts: (window index, calls seen in it).
    burst_state: Mutex<(u64, u64)>,
}

/// `METHOD /path` of every request served (path after the vendor prefix), when asked for.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<String>>>);

impl RequestLog {
    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(line);
    }

    /// The requests so far, in order.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The running simulator's state.
pub struct Simulator {
    vendors: Vec<Vendor>,
    started: Instant,
    base: String,
    log: Option<RequestLog>,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::new(path, e))?;
        toml::from_str(&text).map_err(|e| LoadError::new(path, e))
    }
}

impl Vendor {
    /// Loads every fixture now, so a missing file fails at start, not mid-run.
    fn load(name: &str, faults: Faults, routes: &[Route], dir: &Path) -> Result<Self, LoadError> {
        let bad = |reason: String| LoadError::new(Path::new(name), reason);
        let mut endpoints = Vec::new();
        for r in routes {
            let method = Method::from_bytes(r.method.to_ascii_uppercase().as_bytes())
                .map_err(|_| bad(format!("bad method {}", r.method)))?;
            let mut replies = Vec::new();
            for reply in &r.replies {
                let body = match (&reply.fixture, &reply.body) {
                    (Some(f), _) => {
                        let p = dir.join(f);
                        bytes::Bytes::from(std::fs::read(&p).map_err(|e| LoadError::new(&p, e))?)
                    }
                    (None, Some(v)) => bytes::Bytes::from(v.to_string()),
                    (None, None) => bytes::Bytes::new(),
                };
                let status = StatusCode::from_u16(reply.status).map_err(|_| bad(format!("bad status {}", reply.status)))?;
                let mut headers = Vec::new();
                for (k, val) in &reply.headers {
                    let header = HeaderName::try_from(k.as_str()).map_err(|_| bad(format!("bad header {k}")))?;
                    headers.push((header, val.clone()));
                }
                replies.push(Canned { status, body, headers });
            }
            if replies.is_empty() {
                return Err(bad(format!("route {} has no replies", r.path)));
            }
            endpoints.push(Endpoint { method, path: r.path.clone(), replies, served: AtomicU64::new(0) });
        }
        Ok(Self { name: name.to_string(), faults, endpoints, burst_state: Mutex::new((u64::MAX, 0)) })
    }
}

impl Simulator {
    /// The scenario's vendors; `scenario_dir` is where the scenario file is.
    pub fn new(scenario: &Scenario, scenario_dir: &Path, base: &str) -> Result<Self, LoadError> {
        let fixtures = scenario_dir.join(&scenario.fixtures);
        let mut vendors = Vec::new();
        for v in &scenario.vendor {
            let faults = v.faults.clone().unwrap_or_else(|| scenario.faults.clone());
            let vendor = match (&v.recording, v.route.is_empty()) {
                (Some(_), false) => {
                    return Err(LoadError::new(Path::new(&v.name), "a vendor has `recording` or `route`, not both"))
                }
                (None, false) => Vendor::load(&v.name, faults, &v.route, scenario_dir)?,
                (recording, true) => {
                    let recording = recording.as_deref().unwrap_or(&v.name);
                    let routes = Recording::load(&fixtures, recording)?.route;
                    Vendor::load(&v.name, faults, &routes, &fixtures.join(recording))?
                }
            };
            vendors.push(vendor);
        }
        Ok(Self { vendors, started: Instant::now(), base: base.trim_end_matches('/').to_string(), log: None })
    }

    /// One vendor from its recording, without faults (`providers test`); `dir` holds its fixtures.
    pub fn recording(name: &str, recording: &Recording, dir: &Path, base: &str) -> Result<Self, LoadError> {
        let vendor = Vendor::load(name, Faults::default(), &recording.route, dir)?;
        Ok(Self { vendors: vec![vendor], started: Instant::now(), base: base.trim_end_matches('/').to_string(), log: None })
    }

    /// Keeps a log of the requests served (for replays; unbounded, so not for long runs).
    pub fn log_requests(&mut self) -> RequestLog {
        self.log.get_or_insert_with(RequestLog::default).clone()
    }

    /// Vendor names and their base URLs, for the start-up banner.
    pub fn bases(&self) -> Vec<(String, String)> {
        self.vendors.iter().map(|v| (v.name.clone(), format!("{}/{}", self.base, v.name))).collect()
    }

    pub fn router(self) -> Router {
        Router::new().fallback(serve).with_state(Arc::new(self))
    }
}

fn matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

fn plain(status: StatusCode, body: &str) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn serve(State(sim): State<Arc<Simulator>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some((vendor_name, rest)) = path.trim_start_matches('/').split_once('/') else {
        return plain(StatusCode::NOT_FOUND, r#"{"error":"unknown vendor"}"#);
    };
    let rest = format!("/{rest}");
    let Some(vendor) = sim.vendors.iter().find(|v| v.name == vendor_name) else {
        return plain(StatusCode::NOT_FOUND, r#"{"error":"unknown vendor"}"#);
    };
    if let Some(log) = &sim.log {
        log.push(format!("{} {rest}", req.method()));
    }
    let Some(ep) = vendor.endpoints.iter().find(|e| e.method == req.method() && matches(&e.path, &rest)) else {
        return plain(StatusCode::NOT_FOUND, r#"{"error":"unknown route"}"#);
    };
    // Drain the body like a real server would before answering.
    let _ = axum::body::to_bytes(req.into_body(), 64 << 20).await;
    let f = &vendor.faults;
    let extra = if f.jitter_ms > 0 { rand::rng().random_range(0..f.jitter_ms) } else { 0 };
    if f.latency_ms + extra > 0 {
        tokio::time::sleep(Duration::from_millis(f.latency_ms + extra)).await;
    }
    let since = sim.started.elapsed().as_secs();
    if f.outages.iter().any(|[from, to]| (*from..*to).contains(&since)) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"simulated outage"}"#);
    }
    if let Some(b) = &f.burst_429 {
        let window = since / b.every_secs.max(1);
        let mut st = vendor.burst_state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.0 != window {
            *st = (window, 0);
        }
        st.1 += 1;
        if st.1 <= b.count {
            let mut r = plain(StatusCode::TOO_MANY_REQUESTS, r#"{"error":"simulated rate limit"}"#);
            if let Ok(v) = HeaderValue::from_str(&b.retry_after_secs.to_string()) {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            return r;
        }
    }
    if f.error_rate > 0.0 && rand::rng().random_bool(f.error_rate.clamp(0.0, 1.0)) {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"simulated failure"}"#);
    }
    let n = ep.served.fetch_add(1, Ordering::Relaxed) as usize;
    let canned = &ep.replies[n % ep.replies.len()];
    let mut r = Response::new(Body::from(canned.body.clone()));
    *r.status_mut() = canned.status;
    r.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let base = format!("{}/{}", sim.base, vendor.name);
    for (k, v) in &canned.headers {
        if let Ok(v) = HeaderValue::from_str(&v.replace("{base}", &base)) {
            r.headers_mut().insert(k.clone(), v);
        }
    }
    r
}

/// Binds `listen`, prints every vendor's base URL, and serves until Ctrl-C.
pub async fn run(scenario_path: &Path, listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let scenario = Scenario::load(scenario_path)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let dir = scenario_path.parent().unwrap_or(Path::new("."));
    let sim = Simulator::new(&scenario, dir, &format!("http://{addr}"))?;
    for (name, base) in sim.bases() {
        println!("{name:<16} {base}");
    }
    axum::serve(listener, sim.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
