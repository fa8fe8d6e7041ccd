//! Routing policies through the real server against wiremock vendors: weighted split over 1,000
//! tasks, rules on the nationality read from the passport, hedging a slow primary, a daily
//! budget and a rate limit that reroute, and consensus that flags a disagreement.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use crate::support::*;
use wiremock::matchers::{method, path};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A kbyai-style liveness vendor answering "real" after `delay` (also used by `slots`).
pub(crate) async fn liveness_vendor(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/check_liveness"))
        .respond_with(vendor_answer("kbyai", "real.json").set_delay(delay))
        .mount(&server)
        .await;
    server
}

async fn compare_vendor(answer: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/verification/verify"))
        .respond_with(vendor_answer("compreface", answer))
        .mount(&server)
        .await;
    server
}

async fn hits(server: &MockServer) -> usize {
    server.received_requests().await.expect("recorded").len()
}

/// A providers directory with `local` and the given kbyai-style liveness vendors.
fn providers(vendors: &[(&str, &MockServer)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    local_adapter(dir.path());
    for (name, server) in vendors {
        vendor_adapter(dir.path(), "kbyai.toml", name, &server.uri(), &[]);
    }
    dir
}

async fn gateway(dir: &Path, routing: &str) -> TestGateway {
    TestGateway::start(Options {
        providers_dir: dir.to_path_buf(),
        extra_toml: routing.into(),
        concurrency: 8,
        ..Options::default()
    })
    .await
}

fn attempts(task: &Value, sub: &str) -> Vec<(String, String)> {
    task["result"]["data"]["providers"][sub]
        .as_array()
        .unwrap_or_else(|| panic!("no providers.{sub}: {task}"))
        .iter()
        .map(|a| (a["provider"].as_str().expect("provider").into(), a["outcome"].as_str().expect("outcome").into()))
        .collect()
}

fn pair(p: &str, o: &str) -> (String, String) {
    (p.to_string(), o.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_over_a_thousand_tasks() {
    let a = liveness_vendor(Duration::ZERO).await;
    let b = liveness_vendor(Duration::ZERO).await;
    let dir = providers(&[("arm_a", &a), ("arm_b", &b)]);
    let gw = gateway(
        dir.path(),
        r#"
[routing.liveness]
chain = [{ provider = "arm_a" }, { provider = "arm_b" }]
split = [{ provider = "arm_a", weight = 90 }, { provider = "arm_b", weight = 10 }]
"#,
    )
    .await;
    let api = gw.client();
    let image = png(32);
    let mut ids = Vec::with_capacity(1000);
    for _ in 0..1000 {
        ids.push(api.submit_ok("face_liveness", vec![file("image", image.clone())]).await);
    }
    let mut to_b = 0;
    for id in &ids {
        let (task, _) = api.wait(id, Duration::from_secs(120)).await;
        let tried = attempts(&task, "liveness");
        assert_eq!(tried.len(), 1, "{task}");
        if tried[0].0 == "arm_b" {
            to_b += 1;
        }
    }
    // 10% of 1,000: binomial sd ≈ 9.5; ±50 is over five sd.
    assert!((50..=150).contains(&to_b), "{to_b} of 1000 tasks went to the 10% arm");
    assert_eq!(hits(&b).await, to_b);
    assert_eq!(hits(&a).await, 1000 - to_b);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_routes_face_compare_by_the_passport_nationality() {
    let utopia = compare_vendor("success.json").await;
    let dir = tempfile::tempdir().expect("tempdir");
    local_adapter(dir.path());
    vendor_adapter(dir.path(), "compreface.toml", "utopia_vendor", &utopia.uri(), &[("COMPREFACE_API_KEY", "k")]);
    let gw = gateway(
        dir.path(),
        r#"
[routing.face_compare]
chain = [{ provider = "local" }, { provider = "utopia_vendor" }]
rules = [{ when = { nationality = ["UTO"] }, order = ["utopia_vendor"] }]
"#,
    )
    .await;
    let api = gw.client();
    let selfie = || file("selfie_image", eval_image("faces/deepface/img1.jpg"));
    // A Utopian passport: the rule sends the compare to the vendor.
    let id = api.submit_ok("kyc_passport", vec![selfie(), file("passport_image", eval_image("documents/passporteye_100_pass-uto.jpg"))]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(120)).await;
    assert_eq!(task["result"]["data"]["document"]["nationalityCode"], "UTO", "{task}");
    assert_eq!(attempts(&task, "face_compare"), [pair("utopia_vendor", "ok")]);
    assert_eq!(hits(&utopia).await, 1);
    // Another nationality: the configured order, local first.
    let id = api.submit_ok("kyc_passport", vec![selfie(), file("passport_image", eval_image("documents/passporteye_100_pass-isl.png"))]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(120)).await;
    assert_ne!(task["result"]["data"]["document"]["nationalityCode"], "UTO", "{task}");
    assert_eq!(attempts(&task, "face_compare")[0], pair("local", "ok"));
    assert_eq!(hits(&utopia).await, 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedge_wins_over_a_slow_primary() {
    let slow = liveness_vendor(Duration::from_secs(3)).await;
    let fast = liveness_vendor(Duration::ZERO).await;
    let dir = providers(&[("slow", &slow), ("fast", &fast)]);
    let gw = gateway(
        dir.path(),
        r#"
[routing.liveness]
chain = [{ provider = "slow", timeout_ms = 10000 }, { provider = "fast" }]
hedge = { delay_ms = 150 }
"#,
    )
    .await;
    let api = gw.client();
    let id = api.submit_ok("face_liveness", vec![file("image", png(32))]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(task["result"]["data"]["liveness"]["data"]["provider"], "fast", "{task}");
    let tried = attempts(&task, "liveness");
    assert_eq!(tried, [pair("fast", "ok"), pair("slow", "cancelled")]);
    let cancelled = &task["result"]["data"]["providers"]["liveness"][1];
    assert!(cancelled["latency_ms"].as_f64().is_some_and(|ms| ms < 3000.0), "{cancelled}");
    assert_eq!(hits(&slow).await, 1, "the primary was called");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_budget_and_rate_limit_reroute() {
    let paid = liveness_vendor(Duration::ZERO).await;
    let limited = liveness_vendor(Duration::ZERO).await;
    let spare = liveness_vendor(Duration::ZERO).await;
    let dir = providers(&[("paid", &paid), ("limited", &limited), ("spare", &spare)]);
    let gw = gateway(
        dir.path(),
        r#"
[routing.liveness]
chain = [
  { provider = "paid", cost_per_call = 0.5, daily_budget = 1.0 },
  { provider = "limited", rate_limit = { per_second = 0.001, burst = 1 } },
  { provider = "spare" },
]
"#,
    )
    .await;
    let api = gw.client();
    let mut first = Vec::new();
    for _ in 0..4 {
        let id = api.submit_ok("face_liveness", vec![file("image", png(32))]).await;
        let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
        first.push(attempts(&task, "liveness"));
    }
    // Two calls spend the budget of 1.0; then the one-token bucket; then the spare.
    assert_eq!(first[0], [pair("paid", "ok")]);
    assert_eq!(first[1], [pair("paid", "ok")]);
    assert_eq!(first[2], [pair("paid", "skipped"), pair("limited", "ok")]);
    assert_eq!(first[3], [pair("paid", "skipped"), pair("limited", "skipped"), pair("spare", "ok")]);
    assert_eq!((hits(&paid).await, hits(&limited).await, hits(&spare).await), (2, 1, 1));
    gw.stop().await;
}

/// The same chain as above on two instances sharing one Redis: the budget and the bucket are
/// the cluster's, not each instance's (with per-instance gates, `paid` would take all four).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_and_rate_limit_hold_across_instances_on_redis() {
    let paid = liveness_vendor(Duration::ZERO).await;
    let limited = liveness_vendor(Duration::ZERO).await;
    let spare = liveness_vendor(Duration::ZERO).await;
    let dir = providers(&[("paid", &paid), ("limited", &limited), ("spare", &spare)]);
    let opts = Options {
        store: redis_url(),
        namespace: namespace("gates"),
        providers_dir: dir.path().to_path_buf(),
        extra_toml: r#"
[routing.liveness]
chain = [
  { provider = "paid", cost_per_call = 0.5, daily_budget = 1.0 },
  { provider = "limited", rate_limit = { per_second = 0.001, burst = 1 } },
  { provider = "spare" },
]
"#
        .into(),
        ..Options::default()
    };
    let a = TestGateway::start(opts.clone()).await;
    let b = TestGateway::start(opts.clone()).await;
    let mut seen = Vec::new();
    for gw in [&a, &b, &a, &b] {
        let api = gw.client();
        let id = api.submit_ok("face_liveness", vec![file("image", png(32))]).await;
        let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
        seen.push(attempts(&task, "liveness"));
    }
    assert_eq!(seen[0], [pair("paid", "ok")]);
    assert_eq!(seen[1], [pair("paid", "ok")]);
    assert_eq!(seen[2], [pair("paid", "skipped"), pair("limited", "ok")]);
    assert_eq!(seen[3], [pair("paid", "skipped"), pair("limited", "skipped"), pair("spare", "ok")]);
    assert_eq!((hits(&paid).await, hits(&limited).await, hits(&spare).await), (2, 1, 1));
    // The spend is in Redis under the namespace, for today, and expires by itself.
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let day = chrono::Utc::now().date_naive();
    let key = format!("{}:gate:spent:liveness:paid:{day}", opts.namespace);
    let spent: f64 = redis::cmd("GET").arg(&key).query_async(&mut conn).await.expect("GET spent");
    assert!((spent - 1.0).abs() < 1e-9, "spent {spent}");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.expect("TTL");
    assert!(ttl > 0, "ttl {ttl}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consensus_combines_compare_and_flags_an_ocr_disagreement() {
    let yes = compare_vendor("success.json").await;
    let no = compare_vendor("no_match.json").await;
    // A document vendor that reads the specimen with another document number.
    let reader = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/documents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "document": { "number": "L898902C8", "last_name": "ERIKSSON", "birth_date": "1974-08-12" }
        })))
        .mount(&reader)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    local_adapter(dir.path());
    vendor_adapter(dir.path(), "compreface.toml", "cf_yes", &yes.uri(), &[("COMPREFACE_API_KEY", "k")]);
    vendor_adapter(dir.path(), "compreface.toml", "cf_no", &no.uri(), &[("COMPREFACE_API_KEY", "k")]);
    std::fs::write(
        dir.path().join("reader.toml"),
        format!(
            r#"kind = "http"
base_url = "{}"

[endpoints.document_ocr]
path = "/v2/documents"
body = {{ encoding = "json", images = [{{ source = "front", pointer = "/image" }}] }}

[endpoints.document_ocr.response]
document_number = "/document/number"
surname = "/document/last_name"
date_of_birth = {{ pointer = "/document/birth_date", date_format = "%Y-%m-%d" }}
"#,
            reader.uri()
        ),
    )
    .expect("write adapter");
    let gw = gateway(
        dir.path(),
        r#"
[routing.face_compare]
chain = [{ provider = "cf_yes" }, { provider = "cf_no" }]
consensus = { providers = ["cf_yes", "cf_no"], policy = "all" }

[routing.document_ocr]
chain = [{ provider = "local" }, { provider = "reader" }]
consensus = { providers = ["local", "reader"] }
"#,
    )
    .await;
    let api = gw.client();
    let id = api.submit_ok("kyc_passport", kyc_specimen("true")).await;
    let (task, _) = api.wait(&id, Duration::from_secs(120)).await;
    let data = &task["result"]["data"];
    // Face compare: one vendor says yes, the other no; "all" says no, and names both.
    assert_eq!(data["compare"], false, "{data}");
    assert_eq!(data["details"]["compare"]["data"]["provider"], "cf_yes+cf_no");
    assert!(data["extended"]["face_compare"]["cf_yes+cf_no"]["cf_no"].is_object(), "{data}");
    // OCR: the readers disagree on the document number: kept from the first, flagged, not hidden.
    let doc = &data["document"];
    assert_eq!(doc["documentNumber"], "L898902C3", "{doc}");
    assert_eq!(doc["disagreements"], json!(["document_number"]));
    assert!(data["issues"]["document"]["FIELD_DISAGREEMENT"].as_str().is_some_and(|m| m.contains("document_number")), "{data}");
    assert_eq!(task["result"]["status"], 400);
    assert!(doc["confidence"].as_f64().is_some_and(|c| c < 0.6), "{doc}");
    let ocr = attempts(&task, "document_ocr");
    assert!(ocr.contains(&pair("local", "ok")) && ocr.contains(&pair("reader", "ok")), "{ocr:?}");
    gw.stop().await;
}

/// 500 until told to recover.
struct Flaky(Arc<AtomicBool>);

impl Respond for Flaky {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.0.load(Ordering::SeqCst) {
            vendor_answer("kbyai", "real.json")
        } else {
            ResponseTemplate::new(500)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_shows_in_readyz_and_recovers() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flaky = MockServer::start().await;
    Mock::given(method("POST")).and(path("/check_liveness")).respond_with(Flaky(healthy.clone())).mount(&flaky).await;
    let spare = liveness_vendor(Duration::ZERO).await;
    let dir = providers(&[("flaky", &flaky), ("spare", &spare)]);
    let gw = gateway(
        dir.path(),
        r#"
[routing.liveness]
chain = [
  { provider = "flaky", retry = { max_attempts = 1 }, breaker = { failure_threshold = 2, cool_down_ms = 500 } },
  { provider = "spare" },
]
"#,
    )
    .await;
    let api = gw.client();
    let run = || async {
        let id = api.submit_ok("face_liveness", vec![file("image", png(32))]).await;
        api.wait(&id, Duration::from_secs(60)).await.0
    };
    for _ in 0..2 {
        let task = run().await;
        assert_eq!(attempts(&task, "liveness"), [pair("flaky", "error"), pair("spare", "ok")]);
    }
    let (_, ready) = gw.client_with(None).get("/readyz").await;
    assert_eq!(ready["circuits"]["liveness"]["flaky"], "open", "{ready}");
    let task = run().await;
    assert_eq!(attempts(&task, "liveness"), [pair("flaky", "skipped"), pair("spare", "ok")]);
    assert_eq!(hits(&flaky).await, 2, "an open circuit does not call the vendor");

    // The vendor recovers: after the cool-down a probe goes through and the circuit closes.
    healthy.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let task = run().await;
        if attempts(&task, "liveness")[0] == pair("flaky", "ok") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the circuit never closed again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, ready) = gw.client_with(None).get("/readyz").await;
    assert_eq!(ready["circuits"]["liveness"]["flaky"], "closed", "{ready}");
    gw.stop().await;
}
