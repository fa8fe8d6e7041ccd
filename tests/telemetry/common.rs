//! Shared by `tests/telemetry/` and `tests/telemetry_redaction.rs`: an in-test OTLP/HTTP receiver, kbyai vendors on wiremock,
//! a gateway on 127.0.0.1:0, task submission and polling, and a Prometheus text parser.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use kycgate::app::{Gateway, Overrides};
use kycgate::config::Config;
use kycgate::routing::config::{BreakerConfig, ProviderRoute, RetryConfig, RouteConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::Value;
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const API_KEY: &str = "telemetry-test-key";

pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `$var`, else `../shared/<name>` next to the repository (the layout the README describes).
fn shared_dir(var: &str, name: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => Some(repo("..").join("shared").join(name)).filter(|p| p.is_dir()),
    }
}

/// An image from the shared evaluation set (`KYCGATE_EVAL_DIR`), if present.
pub fn eval_image(rel: &str) -> Option<Vec<u8>> {
    std::fs::read(shared_dir("KYCGATE_EVAL_DIR", "eval")?.join(rel)).ok()
}

/// The shared model mirror (`KYCGATE_MODEL_DIR`), if present.
pub fn model_dir() -> Option<PathBuf> {
    shared_dir("KYCGATE_MODEL_DIR", "models")
}

// === OTLP receiver ===

/// What the receiver has been sent.
#[derive(Default)]
pub struct Received {
    pub spans: Vec<Span>,
    /// Metric names seen in any export.
    pub metric_names: Vec<String>,
    /// Raw request bodies (for "never contains" checks).
    pub raw: Vec<u8>,
}

pub type Sink = Arc<Mutex<Received>>;

/// Starts an OTLP/HTTP (protobuf) receiver; returns its base URL.
pub async fn otlp_receiver() -> (String, Sink) {
    let sink: Sink = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), sink)
}

fn ok() -> ([(&'static str, &'static str); 1], Vec<u8>) {
    ([("content-type", "application/x-protobuf")], Vec::new())
}

async fn traces(State(sink): State<Sink>, body: Bytes) -> impl axum::response::IntoResponse {
    let req = ExportTraceServiceRequest::decode(body.as_ref()).expect("ExportTraceServiceRequest");
    let mut s = sink.lock().expect("sink");
    s.raw.extend_from_slice(&body);
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            s.spans.extend(ss.spans);
        }
    }
    ok()
}

async fn metrics(State(sink): State<Sink>, body: Bytes) -> impl axum::response::IntoResponse {
    let req = ExportMetricsServiceRequest::decode(body.as_ref()).expect("ExportMetricsServiceRequest");
    let mut s = sink.lock().expect("sink");
    s.raw.extend_from_slice(&body);
    for rm in req.resource_metrics {
        for sm in rm.scope_metrics {
            s.metric_names.extend(sm.metrics.into_iter().map(|m| m.name));
        }
    }
    ok()
}

/// A span attribute as text (strings as-is, numbers formatted).
pub fn attr(span: &Span, key: &str) -> Option<String> {
    let kv = span.attributes.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

// === vendors ===

/// Two kbyai liveness containers: `kbyai_a` always answers 500, `kbyai_b` a real face.
pub async fn kbyai_vendors(dir: &Path) -> (MockServer, MockServer) {
    let real = std::fs::read(repo("providers/fixtures/kbyai/real.json")).expect("fixture");
    kbyai_vendors_with(dir, b"boom".to_vec(), real).await
}

/// Like [`kbyai_vendors`], with the failing and the answering bodies given.
pub async fn kbyai_vendors_with(dir: &Path, fail_body: Vec<u8>, real: Vec<u8>) -> (MockServer, MockServer) {
    let failing = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/check_liveness"))
        .respond_with(ResponseTemplate::new(500).set_body_raw(fail_body, "application/json"))
        .mount(&failing)
        .await;
    let healthy = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/check_liveness"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(real, "application/json"))
        .mount(&healthy)
        .await;
    let adapter = std::fs::read_to_string(repo("providers/kbyai.toml")).expect("kbyai.toml");
    for (name, server) in [("kbyai_a", &failing), ("kbyai_b", &healthy)] {
        let text: String = adapter
            .lines()
            .map(|l| {
                if l.starts_with("base_url =") {
                    format!("base_url = \"{}\"\ncost_per_call = 0.01", server.uri())
                } else if l.starts_with("base_url_env") {
                    String::new()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join(format!("{name}.toml")), text).expect("write adapter");
    }
    (failing, healthy)
}

/// Liveness: `kbyai_a` (3 attempts, fast backoff) then `kbyai_b`.
pub fn liveness_chain() -> RouteConfig {
    let route = |name: &str, attempts: u32| ProviderRoute {
        timeout_ms: 5_000,
        retry: RetryConfig { max_attempts: attempts, base_delay_ms: 5, max_delay_ms: 50, ..RetryConfig::default() },
        breaker: BreakerConfig { failure_threshold: 10, cool_down_ms: 30_000, ..BreakerConfig::default() },
        ..ProviderRoute::named(name)
    };
    RouteConfig::with_chain(vec![route("kbyai_a", 3), route("kbyai_b", 1)])
}

/// Embedded defaults with the providers dir, liveness chain and OTLP endpoint set.
pub fn config(providers: &Path, otlp: Option<&str>) -> Config {
    let mut cfg = Config::load(None).expect("defaults");
    cfg.providers.dir = providers.to_path_buf();
    cfg.routing.liveness = liveness_chain();
    cfg.telemetry.log_filter = "info".into();
    // Tests never download models: the shared mirror or nothing (then `local` is unavailable).
    cfg.models.fetch = false;
    if let Some(dir) = model_dir() {
        cfg.models.dir = dir.display().to_string();
    }
    // With Redis the trace context crosses the queue serialised, as between instances.
    if let Ok(url) = std::env::var("KYCGATE_TEST_REDIS") {
        cfg.store.url = url.parse().expect("KYCGATE_TEST_REDIS is a redis:// URL");
        cfg.store.namespace = format!("kycgate-telemetry-test-{}", uuid::Uuid::new_v4().simple());
    }
    if let Some(endpoint) = otlp {
        cfg.telemetry.otlp.enabled = true;
        cfg.telemetry.otlp.endpoint = endpoint.to_string();
        cfg.telemetry.otlp.metrics_interval_secs = 1;
        cfg.telemetry.otlp.timeout_secs = 5;
    }
    cfg
}

// === gateway ===

pub struct Running {
    pub base: String,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub handle: tokio::task::JoinHandle<()>,
}

pub async fn start_gateway(cfg: Config) -> Running {
    let overrides = Overrides { api_keys: vec![API_KEY.to_string()], ..Overrides::default() };
    let gateway = Gateway::build(cfg, &overrides).await.expect("gateway builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        gateway
            .serve(listener, async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
    });
    Running { base: format!("http://{addr}"), stop, handle }
}

/// Submits `service` with the given file fields; returns the task id.
pub async fn submit(base: &str, service: &str, files: &[(&str, Vec<u8>)], traceparent: Option<&str>) -> String {
    let mut form = reqwest::multipart::Form::new().text("extend_data", "true");
    for (field, bytes) in files {
        let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(format!("{field}.jpg"));
        form = form.part(field.to_string(), part);
    }
    let mut req =
        reqwest::Client::new().post(format!("{base}/api/v3/services/{service}/")).bearer_auth(API_KEY).multipart(form);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = req.send().await.expect("submit");
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert!(status.is_success(), "submit answered {status}: {body}");
    body["id"].as_str().expect("id").to_string()
}

/// Polls the task until it is finished (deadline 120 s); returns the task JSON.
pub async fn wait_finished(base: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    let client = reqwest::Client::new();
    loop {
        let body: Value = client
            .get(format!("{base}/api/v3/services/task/?id={id}"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("get task")
            .json()
            .await
            .expect("json");
        if matches!(body["status"].as_str(), Some("SUCCESS" | "FAILURE")) {
            return body;
        }
        assert!(Instant::now() < deadline, "task never finished: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` on the receiver until it holds (deadline 30 s).
pub async fn wait_for(sink: &Sink, what: &str, check: impl Fn(&Received) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if check(&sink.lock().expect("sink")) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === Prometheus text ===

/// One sample: name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition format (enough of it for our own output: no timestamps).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "label value quote in {line:?}");
                    let mut val = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => val.push('\n'),
                                Some(o) => val.push(o),
                                None => break,
                            },
                            '"' => break,
                            o => val.push(o),
                        }
                    }
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                    labels.insert(key, val);
                }
                (name.to_string(), labels)
            }
        };
        out.push(Sample { name, labels, value });
    }
    out
}

/// Sum of the samples named `name` whose labels include every pair in `want`.
pub fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

pub async fn scrape(base: &str) -> (String, Vec<Sample>) {
    let resp = reqwest::get(format!("{base}/metrics")).await.expect("scrape");
    assert!(resp.status().is_success());
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(ct.starts_with("text/plain"), "content type {ct}");
    let text = resp.text().await.expect("text");
    let samples = parse_prometheus(&text);
    (text, samples)
}
