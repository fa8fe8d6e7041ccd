//! `kycgate simulate`: a vendor simulator. It serves the shipped vendors' APIs from their
//! recorded fixtures, each under its own path prefix (`http://HOST:PORT/<vendor>/…`, so an
//! adapter's base URL is `http://HOST:PORT/<vendor>`), with configurable latency, error rate,
//! 429 bursts and outages. Operators dry-run a routing config against it; benchmarks and fault
//! tests use it as a realistic peer.
//!
//! The scenario is a TOML file (`sim/vendors.toml`): vendors, their routes, the fixture each
//! route answers with, and the faults. It knows nothing of adapter internals: a route is a
//! method, a path and a list of responses served in turn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use rand::Rng as _;
use serde::Deserialize;
use tokio::time::Instant;

/// The scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Faults applied to every vendor unless it sets its own.
    #[serde(default)]
    pub faults: Faults,
    pub vendor: Vec<VendorSim>,
}

/// One simulated vendor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorSim {
    /// Path prefix and name (`facepp` → `/facepp/...`).
    pub name: String,
    pub faults: Option<Faults>,
    pub route: Vec<RouteSim>,
}

/// One endpoint: answers cycle through `responses` (one answer for most; a 202 then a 200 for
/// an asynchronous vendor's submit-and-poll).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSim {
    #[serde(default = "default_method")]
    pub method: String,
    /// Path after the vendor prefix, e.g. `/facepp/v3/compare`. A trailing `*` matches any rest.
    pub path: String,
    pub responses: Vec<ResponseSim>,
}

fn default_method() -> String {
    "POST".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSim {
    #[serde(default = "default_status")]
    pub status: u16,
    /// A fixture file, relative to the scenario file.
    pub fixture: Option<PathBuf>,
    /// An inline JSON body (when there is no fixture).
    pub body: Option<serde_json::Value>,
    /// Extra headers; `{base}` in a value becomes this vendor's base URL.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_status() -> u16 {
    200
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

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{path}: {reason}")]
    Load { path: String, reason: String },
}

/// A loaded answer, ready to serve.
#[derive(Debug, Clone)]
struct Canned {
    status: StatusCode,
    body: bytes::Bytes,
    headers: Vec<(HeaderName, String)>,
}

struct Endpoint {
    method: Method,
    path: String,
    responses: Vec<Canned>,
    served: AtomicU64,
}

struct Vendor {
    name: String,
    faults: Faults,
    endpoints: Vec<Endpoint>,
    /// 429 bursts: (window index, calls seen in it).
    burst_state: std::sync::Mutex<(u64, u64)>,
}

/// The running simulator's state.
pub struct Simulator {
    vendors: Vec<Vendor>,
    started: Instant,
    base: String,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let err = |reason: String| SimError::Load { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }
}

impl Simulator {
    /// Loads every fixture now, so a missing file fails at start, not mid-run.
    pub fn new(scenario: &Scenario, scenario_dir: &Path, base: &str) -> Result<Self, SimError> {
        let mut vendors = Vec::new();
        for v in &scenario.vendor {
            let mut endpoints = Vec::new();
            for r in &v.route {
                let method = Method::from_bytes(r.method.as_bytes())
                    .map_err(|_| SimError::Load { path: v.name.clone(), reason: format!("bad method {}", r.method) })?;
                let mut responses = Vec::new();
                for resp in &r.responses {
                    let body = match (&resp.fixture, &resp.body) {
                        (Some(f), _) => {
                            let p = scenario_dir.join(f);
                            bytes::Bytes::from(std::fs::read(&p).map_err(|e| SimError::Load {
                                path: p.display().to_string(),
                                reason: e.to_string(),
                            })?)
                        }
                        (None, Some(v)) => bytes::Bytes::from(v.to_string()),
                        (None, None) => bytes::Bytes::new(),
                    };
                    let status = StatusCode::from_u16(resp.status)
                        .map_err(|_| SimError::Load { path: v.name.clone(), reason: format!("bad status {}", resp.status) })?;
                    let mut headers = Vec::new();
                    for (k, val) in &resp.headers {
                        let name = HeaderName::try_from(k.as_str())
                            .map_err(|_| SimError::Load { path: v.name.clone(), reason: format!("bad header {k}") })?;
                        headers.push((name, val.clone()));
                    }
                    responses.push(Canned { status, body, headers });
                }
                if responses.is_empty() {
                    return Err(SimError::Load { path: v.name.clone(), reason: format!("route {} has no responses", r.path) });
                }
                endpoints.push(Endpoint { method, path: r.path.clone(), responses, served: AtomicU64::new(0) });
            }
            vendors.push(Vendor {
                name: v.name.clone(),
                faults: v.faults.clone().unwrap_or_else(|| scenario.faults.clone()),
                endpoints,
                burst_state: std::sync::Mutex::new((u64::MAX, 0)),
            });
        }
        Ok(Self { vendors, started: Instant::now(), base: base.trim_end_matches('/').to_string() })
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
    let Some(ep) = vendor.endpoints.iter().find(|e| e.method == req.method() && matches(&e.path, &rest)) else {
        return plain(StatusCode::NOT_FOUND, r#"{"error":"unknown route"}"#);
    };
    // Drain the body like a real server would before answering.
    let _ = axum::body::to_bytes(req.into_body(), 64 << 20).await;
    let f = &vendor.faults;
    let extra = if f.jitter_ms > 0 { rand::thread_rng().gen_range(0..f.jitter_ms) } else { 0 };
    if f.latency_ms + extra > 0 {
        tokio::time::sleep(Duration::from_millis(f.latency_ms + extra)).await;
    }
    let since = sim.started.elapsed().as_secs();
    if f.outages.iter().any(|[from, to]| (*from..*to).contains(&since)) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"simulated outage"}"#);
    }
    if let Some(b) = &f.burst_429 {
        let window = since / b.every_secs.max(1);
        let mut st = vendor.burst_state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
    if f.error_rate > 0.0 && rand::thread_rng().gen_bool(f.error_rate.clamp(0.0, 1.0)) {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"simulated failure"}"#);
    }
    let n = ep.served.fetch_add(1, Ordering::Relaxed) as usize;
    let canned = &ep.responses[n % ep.responses.len()];
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
