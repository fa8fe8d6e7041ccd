//! `kycgate providers test NAME`: replays an adapter against its recorded vendor answers.
//!
//! `tests/fixtures/vendors/<name>/replay.toml` says which sub-call to run and which recorded
//! answer each vendor route gives. An in-process axum server plays the vendor on a loopback
//! port, the adapter runs against it with only the manifest's environment (never the real
//! credentials), and the unified result is returned as JSON. The contract suites assert the
//! exact requests; this is the operator's quick look and a check that the fixtures still map.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{default_base_url_env, HttpProvider};
use super::spec::{self, ProviderSpec};
use super::{Image, Provider, SubCall, SubCallKind, Verdict};

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error("{}: {source}", path.display())]
    Manifest { path: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{0}")]
    Setup(String),
}

/// `replay.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The sub-call to run.
    pub call: SubCallKind,
    /// Document pages (1 or 2) for `document_ocr`.
    #[serde(default = "one")]
    pub pages: usize,
    /// The adapter's environment; `{server}` is the replay server's URL, `{fixtures}` this
    /// vendor's fixture directory. The base URL override is set automatically.
    #[serde(default)]
    pub env: HashMap<String, String>,
    /// Fixed request time (Unix ms) for signatures and token expiry; now by default.
    #[serde(default)]
    pub time_ms: Option<u64>,
    /// Vendor routes. Several entries for one method + path answer in turn, the last repeating
    /// (a poll that is running, then done).
    pub routes: Vec<Route>,
    /// Subset of the result JSON the replay must produce (checked by the test suite).
    #[serde(default)]
    pub expect: Option<toml::Value>,
}

fn one() -> usize {
    1
}

/// One recorded answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default = "post")]
    pub method: String,
    pub path: String,
    #[serde(default = "ok")]
    pub status: u16,
    /// Fixture file in the vendor's directory; empty body when absent.
    #[serde(default)]
    pub body: Option<String>,
    /// Answer headers; values may use `{server}`.
    #[serde(default)]
    pub headers: HashMap<String, String>,
}

fn post() -> String {
    "POST".into()
}

fn ok() -> u16 {
    200
}

/// The outcome of a replay.
#[derive(Debug)]
pub struct Replay {
    pub manifest: Manifest,
    pub result: Value,
}

/// Replays provider `name` from `providers_dir` against `fixtures_dir/<name>/replay.toml`.
pub async fn run(name: &str, providers_dir: &Path, fixtures_dir: &Path) -> Result<Replay, ReplayError> {
    let file = spec::load_file(&providers_dir.join(format!("{name}.toml")))?;
    let ProviderSpec::Http(http) = &file.spec else {
        return Err(ReplayError::Setup(format!("{name} is not an http adapter")));
    };
    let dir = fixtures_dir.join(name);
    let manifest_path = dir.join("replay.toml");
    let bad = |source: Box<dyn std::error::Error + Send + Sync>| ReplayError::Manifest { path: manifest_path.clone(), source };
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| bad(e.into()))?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| bad(e.into()))?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| ReplayError::Setup(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| ReplayError::Setup(e.to_string()))?;
    let server = format!("http://{addr}");
    let fixtures = dir.display().to_string();
    let fill = |s: &str| s.replace("{server}", &server).replace("{fixtures}", &fixtures);

    let mut routes = Vec::new();
    for r in &manifest.routes {
        let body = match &r.body {
            Some(f) => Bytes::from(std::fs::read(dir.join(f)).map_err(|e| bad(format!("{f}: {e}").into()))?),
            None => Bytes::new(),
        };
        let headers: Vec<(String, String)> = r.headers.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
        routes.push(Recorded { method: r.method.to_ascii_uppercase(), path: r.path.clone(), status: r.status, headers, body });
    }
    let state = Arc::new(Vendor { routes, served: Mutex::new(HashMap::new()), log: Mutex::new(Vec::new()) });
    let handler_state = state.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let state = handler_state.clone();
        async move { state.answer(req.method().as_str(), req.uri().path()) }
    });
    let task = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut env: HashMap<String, String> = manifest.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
    let url_var = http.base_url_env.clone().unwrap_or_else(|| default_base_url_env(name));
    env.insert(url_var, server.clone());
    let mut provider = HttpProvider::from_file_with(&file, &env, reqwest::Client::new())?;
    if let Some(ms) = manifest.time_ms {
        provider = provider.with_clock(move || UNIX_EPOCH + Duration::from_millis(ms));
    }
    let call = sub_call(manifest.call, manifest.pages)?;
    let started = std::time::Instant::now();
    let outcome = provider.call(call).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    task.abort();

    let requests: Vec<String> = state.log.lock().map(|l| l.clone()).unwrap_or_default();
    let result = match outcome {
        Ok(answer) => json!({
            "provider": name,
            "sub_call": manifest.call,
            "ok": true,
            "verdict": verdict_json(&answer.verdict),
            "vendor_requests": requests,
            "elapsed_ms": elapsed_ms,
        }),
        Err(e) => json!({
            "provider": name,
            "sub_call": manifest.call,
            "ok": false,
            "error": e.to_string(),
            "class": e.class(),
            "vendor_requests": requests,
            "elapsed_ms": elapsed_ms,
        }),
    };
    Ok(Replay { manifest, result })
}

/// Whether every key of `expect` is in `got` with the same value (numbers compared as f64).
pub fn contains(got: &Value, expect: &Value) -> bool {
    match (got, expect) {
        (Value::Object(g), Value::Object(e)) => e.iter().all(|(k, v)| g.get(k).is_some_and(|gv| contains(gv, v))),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => got == expect,
    }
}

/// A route ready to answer: method, path, status, headers, body.
struct Recorded {
    method: String,
    path: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// The vendor side of the replay.
struct Vendor {
    routes: Vec<Recorded>,
    served: Mutex<HashMap<(String, String), usize>>,
    log: Mutex<Vec<String>>,
}

impl Vendor {
    fn answer(&self, method: &str, path: &str) -> Response<Body> {
        if let Ok(mut log) = self.log.lock() {
            log.push(format!("{method} {path}"));
        }
        let matching: Vec<_> = self.routes.iter().filter(|r| r.method == method && r.path == path).collect();
        let n = match self.served.lock() {
            Ok(mut served) => {
                let n = served.entry((method.to_string(), path.to_string())).or_insert(0);
                *n += 1;
                *n - 1
            }
            Err(_) => 0,
        };
        let Some(route) = matching.get(n.min(matching.len().saturating_sub(1))) else {
            return plain(StatusCode::NOT_FOUND, "no recorded answer for this route");
        };
        let mut resp = Response::builder().status(route.status);
        if !route.body.is_empty() {
            resp = resp.header("content-type", "application/json");
        }
        for (k, v) in &route.headers {
            resp = resp.header(k.as_str(), v.as_str());
        }
        resp.body(Body::from(route.body.clone())).unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad route"))
    }
}

fn plain(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(msg));
    *r.status_mut() = status;
    r
}

/// Synthetic inputs: a 200×100 PNG per image (a red block where a portrait box would be), so
/// crops and decoders have something real to work on. No personal data.
fn sub_call(kind: SubCallKind, pages: usize) -> Result<SubCall, ReplayError> {
    let img = image::RgbImage::from_fn(200, 100, |x, y| {
        if (20..60).contains(&x) && (20..80).contains(&y) {
            image::Rgb([220, 20, 20])
        } else {
            image::Rgb([20, 20, 220])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| ReplayError::Setup(e.to_string()))?;
    let image = Image { bytes: Bytes::from(out.into_inner()), mime: "image/png" };
    Ok(match kind {
        SubCallKind::Liveness => SubCall::Liveness { image },
        SubCallKind::FaceCompare => SubCall::FaceCompare { probe: image.clone(), reference: image },
        SubCallKind::DocumentOcr => SubCall::DocumentOcr { pages: vec![image; pages.clamp(1, 2)] },
    })
}

/// The unified verdict as JSON; a portrait is reported by size only.
fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Liveness(a) => json!({ "liveness": a }),
        Verdict::Compare(a) => json!({ "face_compare": a }),
        Verdict::Rejected(r) => json!({ "rejected": r }),
        Verdict::Ocr(o) => json!({
            "document_ocr": {
                "fields": o.fields,
                "portrait_bytes": o.portrait.as_ref().map(|p| p.len()),
            }
        }),
    }
}
