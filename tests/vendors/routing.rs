//! Routing end to end: real `HttpProvider`s (the CompreFace adapter) against wiremock vendors,
//! through `routing::build` — fallback, retries honouring `Retry-After`, circuit breaker, and
//! final rejections.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kycgate::providers::http::HttpProvider;
use kycgate::providers::spec::{self, ProviderSpec};
use kycgate::providers::{Image, IssueCode, SharedProvider, SubCall, Verdict};
use kycgate::routing::config::{BreakerConfig, ProviderRoute, RetryConfig, RouteConfig, RoutingConfig};
use kycgate::routing::{self, Routed, SubCallRouter};
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const VERIFY: &str = "/api/v1/verification/verify";

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("providers/fixtures/compreface").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ok_body() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(fixture("success.json").into_bytes(), "application/json")
}

/// A CompreFace adapter named `name`, pointed at `server`.
fn compreface(name: &str, server: &MockServer) -> SharedProvider {
    let file = spec::load_file(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("providers/compreface.toml"))
        .expect("adapter parses");
    let ProviderSpec::Http(spec) = &file.spec else { panic!("compreface is an http adapter") };
    let env: HashMap<String, String> =
        [("COMPREFACE_BASE_URL".to_string(), server.uri()), ("COMPREFACE_API_KEY".to_string(), "k".to_string())].into();
    Arc::new(HttpProvider::from_spec(name, spec, &env, reqwest::Client::new()).expect("adapter validates"))
}

fn route(name: &str, timeout_ms: u64, max_attempts: u32, breaker_threshold: u32) -> ProviderRoute {
    ProviderRoute {
        timeout_ms,
        retry: RetryConfig { max_attempts, base_delay_ms: 10, max_delay_ms: 2_000, ..RetryConfig::default() },
        breaker: BreakerConfig { failure_threshold: breaker_threshold, cool_down_ms: 600, ..BreakerConfig::default() },
        ..ProviderRoute::named(name)
    }
}

fn router(chain: Vec<ProviderRoute>, providers: Vec<SharedProvider>) -> impl SubCallRouter {
    let mut map: HashMap<String, SharedProvider> =
        providers.into_iter().map(|p| (p.name().to_string(), p)).collect();
    // The other sub-calls keep the default chain (`local`); a stand-in satisfies the name.
    let local = map.values().next().cloned().expect("a provider");
    map.insert("local".into(), local);
    let config = RoutingConfig { face_compare: RouteConfig::with_chain(chain), ..RoutingConfig::default() };
    routing::build(&config, &map).expect("router builds")
}

fn compare_call() -> SubCall {
    let img = |t: &'static [u8]| Image { bytes: Bytes::from_static(t), mime: "image/jpeg" };
    SubCall::FaceCompare { probe: img(b"\xff\xd8probe"), reference: img(b"\xff\xd8reference") }
}

fn outcomes(r: &Routed) -> Vec<(String, u32, String)> {
    r.attempts.iter().map(|a| (a.provider.clone(), a.attempt, a.outcome.to_string())).collect()
}

fn o(p: &str, n: u32, outcome: &str) -> (String, u32, String) {
    (p.to_string(), n, outcome.to_string())
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.expect("recording").len()
}

#[tokio::test]
async fn falls_back_when_the_first_provider_times_out() {
    let slow = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(ok_body().set_delay(Duration::from_secs(3))).mount(&slow).await;
    let fast = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(ok_body()).mount(&fast).await;

    let r = router(
        vec![route("slow", 200, 1, 5), route("fast", 2_000, 1, 5)],
        vec![compreface("slow", &slow), compreface("fast", &fast)],
    );
    let routed = r.route(compare_call()).await;
    assert_eq!(routed.answer.as_ref().expect("answer").provider, "fast");
    assert_eq!(outcomes(&routed), [o("slow", 1, "error"), o("fast", 1, "ok")]);
    let timed_out = &routed.attempts[0];
    assert!(timed_out.reason.as_deref().is_some_and(|r| r.contains("timed out")), "{timed_out:?}");
    assert!((200.0..2_000.0).contains(&timed_out.latency_ms), "{timed_out:?}");
}

#[tokio::test]
async fn retries_a_500_then_falls_back() {
    let broken = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(ResponseTemplate::new(500)).mount(&broken).await;
    let good = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(ok_body()).mount(&good).await;

    let r = router(
        vec![route("broken", 2_000, 2, 5), route("good", 2_000, 1, 5)],
        vec![compreface("broken", &broken), compreface("good", &good)],
    );
    let routed = r.route(compare_call()).await;
    assert!(matches!(routed.answer.as_ref().expect("answer").verdict, Verdict::Compare(ref c) if c.is_match));
    assert_eq!(outcomes(&routed), [o("broken", 1, "error"), o("broken", 2, "error"), o("good", 1, "ok")]);
    assert!(routed.attempts[0].reason.as_deref().is_some_and(|r| r.contains("500")));
    assert_eq!(requests(&broken).await, 2);
}

/// Answers 429 + `Retry-After: 1` and notes when each request arrived.
struct Throttled(Arc<Mutex<Vec<Instant>>>);

impl Respond for Throttled {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.0.lock().expect("lock").push(Instant::now());
        ResponseTemplate::new(429).insert_header("Retry-After", "1")
    }
}

#[tokio::test]
async fn honours_retry_after_then_falls_back() {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let throttled = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(Throttled(arrivals.clone())).mount(&throttled).await;
    let good = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(ok_body()).mount(&good).await;

    let r = router(
        vec![route("throttled", 2_000, 2, 5), route("good", 2_000, 1, 5)],
        vec![compreface("throttled", &throttled), compreface("good", &good)],
    );
    let routed = r.route(compare_call()).await;
    assert_eq!(routed.answer.as_ref().expect("answer").provider, "good");
    assert_eq!(outcomes(&routed), [o("throttled", 1, "error"), o("throttled", 2, "error"), o("good", 1, "ok")]);
    assert!(routed.attempts[0].reason.as_deref().is_some_and(|r| r.contains("rate limit")));
    let arrivals = arrivals.lock().expect("lock").clone();
    assert_eq!(arrivals.len(), 2);
    let waited = arrivals[1] - arrivals[0];
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}, before Retry-After");
}

#[tokio::test]
async fn retry_after_beyond_max_delay_falls_back_at_once() {
    let throttled = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(VERIFY))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
        .mount(&throttled)
        .await;
    let good = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(ok_body()).mount(&good).await;
    let r = router(
        vec![route("throttled", 2_000, 3, 5), route("good", 2_000, 1, 5)],
        vec![compreface("throttled", &throttled), compreface("good", &good)],
    );
    let started = Instant::now();
    let routed = r.route(compare_call()).await;
    assert_eq!(outcomes(&routed), [o("throttled", 1, "error"), o("good", 1, "ok")]);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// 500 until told to recover.
struct Flaky(Arc<AtomicBool>);

impl Respond for Flaky {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.0.load(Ordering::SeqCst) {
            ok_body()
        } else {
            ResponseTemplate::new(500)
        }
    }
}

#[tokio::test]
async fn breaker_opens_skips_then_recovers_after_cool_down() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flaky = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(Flaky(healthy.clone())).mount(&flaky).await;
    let backup = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(ok_body()).mount(&backup).await;

    let r = router(
        vec![route("flaky", 2_000, 1, 2), route("backup", 2_000, 1, 5)],
        vec![compreface("flaky", &flaky), compreface("backup", &backup)],
    );
    // Two failures open the circuit.
    for _ in 0..2 {
        let routed = r.route(compare_call()).await;
        assert_eq!(outcomes(&routed)[0], o("flaky", 1, "error"));
    }
    let opened = Instant::now();
    let routed = r.route(compare_call()).await;
    assert_eq!(outcomes(&routed), [o("flaky", 0, "skipped"), o("backup", 1, "ok")]);
    assert_eq!(routed.attempts[0].reason.as_deref(), Some("circuit open"));
    assert_eq!(requests(&flaky).await, 2, "an open circuit does not call the vendor");

    // The vendor recovers; after the cool-down the probe succeeds and the circuit closes.
    healthy.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let routed = r.route(compare_call()).await;
        if routed.answer.as_ref().is_some_and(|a| a.provider == "flaky") {
            break;
        }
        assert!(Instant::now() < deadline, "breaker never recovered");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(opened.elapsed() >= Duration::from_millis(550), "probe before the cool-down");
    let routed = r.route(compare_call()).await;
    assert_eq!(outcomes(&routed), [o("flaky", 1, "ok")]);
}

#[tokio::test]
async fn rejection_is_final_and_not_retried() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(VERIFY))
        .respond_with(ResponseTemplate::new(400).set_body_raw(fixture("no_face.json").into_bytes(), "application/json"))
        .mount(&vendor)
        .await;
    let backup = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(ok_body()).mount(&backup).await;

    let r = router(
        vec![route("vendor", 2_000, 3, 5), route("backup", 2_000, 1, 5)],
        vec![compreface("vendor", &vendor), compreface("backup", &backup)],
    );
    let routed = r.route(compare_call()).await;
    match &routed.answer.as_ref().expect("answer").verdict {
        Verdict::Rejected(rej) => assert_eq!(rej.code, IssueCode::FaceNotFound),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(outcomes(&routed), [o("vendor", 1, "rejected")]);
    assert_eq!(requests(&vendor).await, 1);
    assert_eq!(requests(&backup).await, 0);
}

#[tokio::test]
async fn unavailable_provider_is_skipped_and_reported() {
    let backup = MockServer::start().await;
    Mock::given(method("POST")).and(path(VERIFY)).respond_with(ok_body()).mount(&backup).await;
    let file = spec::load_file(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("providers/facepp.toml")).expect("parses");
    // No FACEPP_API_KEY: the adapter is valid but unavailable.
    let facepp: SharedProvider =
        Arc::new(HttpProvider::from_file_with(&file, &HashMap::new(), reqwest::Client::new()).expect("valid"));
    let r = router(vec![ProviderRoute::named("facepp"), route("backup", 2_000, 1, 5)], vec![facepp, compreface("backup", &backup)]);
    let routed = r.route(compare_call()).await;
    assert_eq!(outcomes(&routed), [o("facepp", 0, "skipped"), o("backup", 1, "ok")]);
    assert!(routed.attempts[0].reason.as_deref().is_some_and(|r| r.contains("FACEPP_API_KEY")));
}
