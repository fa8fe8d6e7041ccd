//! Signed webhooks end to end: a real gateway (memory and Redis stores) POSTs a finished task to
//! a wiremock receiver, signed, retried after a 5xx, given up after `max_attempts`; callback URLs
//! on non-public addresses are refused unless the operator allows them.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

const SECRET: &str = "whsec-test-6b1d";

fn webhooks_toml(allow_private: bool, max_attempts: u32) -> String {
    format!(
        "[webhooks]\nsecret = \"{SECRET}\"\nallow_private = {allow_private}\nmax_attempts = {max_attempts}\n\
         base_delay_ms = 50\nmax_delay_ms = 200\npoll_ms = 50\ntimeout_ms = 5000\n"
    )
}

async fn submit_with_callback(gw: &TestGateway, url: &str) -> (u16, Value) {
    gw.client().submit("face_liveness", vec![file("image", png(64)), text("callback_url", url)]).await
}

/// Waits until `server` has received `n` requests.
async fn received(server: &MockServer, n: usize) -> Vec<wiremock::Request> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = server.received_requests().await.expect("recorded");
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} of {n} webhook requests arrived", got.len());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Checks `Kycgate-Signature: t=…,v1=…` against the body, as a receiver would.
fn verify_signature(req: &wiremock::Request) {
    let header = req.headers.get("kycgate-signature").and_then(|v| v.to_str().ok()).expect("signature header");
    let (t, v1) = header.split_once(',').expect("t=…,v1=…");
    let t = t.strip_prefix("t=").expect("t=");
    let v1 = v1.strip_prefix("v1=").expect("v1=");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&req.body);
    let tag = hex::decode(v1).expect("hex");
    ring::hmac::verify(&key, &signed, &tag).expect("the signature verifies");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let t: u64 = t.parse().expect("unix seconds");
    assert!(t.abs_diff(now) < 300, "a fresh timestamp");
}

/// The `kycgate_webhook_deliveries_total{outcome=…}` count.
async fn deliveries(gw: &TestGateway, outcome: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gw.base)).await.expect("metrics").text().await.expect("text");
    text.lines()
        .filter(|l| l.starts_with("kycgate_webhook_deliveries_total{") && l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn posted_signed_and_retried(store: String) {
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).and(path("/hook")).respond_with(ResponseTemplate::new(503)).up_to_n_times(1).mount(&receiver).await;
    Mock::given(method("POST")).and(path("/hook")).respond_with(ResponseTemplate::new(204)).mount(&receiver).await;
    let opts = Options { store, namespace: namespace("webhooks"), extra_toml: webhooks_toml(true, 5), ..Options::default() };
    let gw = TestGateway::start(opts).await;
    let (code, body) = submit_with_callback(&gw, &format!("{}/hook", receiver.uri())).await;
    assert_eq!(code, 200, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let (task, _) = gw.client().wait(&id, Duration::from_secs(60)).await;
    let got = received(&receiver, 2).await;
    assert_eq!(got.len(), 2, "delivered once after one failure");
    for req in &got {
        verify_signature(req);
        let posted: Value = serde_json::from_slice(&req.body).expect("JSON body");
        assert_eq!(posted, task, "the task as GET task/ shows it");
        assert_eq!(req.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    }
    let delivery = |r: &wiremock::Request| r.headers.get("kycgate-delivery").and_then(|v| v.to_str().ok()).map(str::to_string);
    assert!(delivery(&got[0]).is_some());
    assert_eq!(delivery(&got[0]), delivery(&got[1]), "a retry carries the same delivery id");
    assert!(deliveries(&gw, "retry").await >= 1.0);
    assert!(deliveries(&gw, "delivered").await >= 1.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_is_posted_signed_and_retried_memory() {
    posted_signed_and_retried("memory".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_is_posted_signed_and_retried_redis() {
    posted_signed_and_retried(redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_given_up_after_max_attempts() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).mount(&receiver).await;
    let gw = TestGateway::start(Options { extra_toml: webhooks_toml(true, 3), ..Options::default() }).await;
    let failed_before = deliveries(&gw, "failed").await;
    let (code, body) = submit_with_callback(&gw, &format!("{}/down", receiver.uri())).await;
    assert_eq!(code, 200, "{body}");
    received(&receiver, 3).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while deliveries(&gw, "failed").await <= failed_before {
        assert!(Instant::now() < deadline, "the delivery was never given up");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(receiver.received_requests().await.expect("recorded").len(), 3, "exactly max_attempts attempts");
    gw.stop().await;
}

/// A retried submit with the same `Idempotency-Key` names the first task; its webhook is
/// delivered once, not once per retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_repeat_is_delivered_once() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).and(path("/once")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    let gw = TestGateway::start(Options { extra_toml: webhooks_toml(true, 3), ..Options::default() }).await;
    let url = format!("{}/once", receiver.uri());
    let image = png(64);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let form = reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(image.clone()).file_name("s.png").mime_str("image/png").expect("mime"))
            .text("callback_url", url.clone());
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v3/services/face_liveness/", gw.base))
            .bearer_auth(KEY)
            .header("Idempotency-Key", "retry-7f2c")
            .multipart(form)
            .send()
            .await
            .expect("POST");
        let (code, body) = json_of(resp).await;
        assert_eq!(code, 200, "{body}");
        ids.push(body["id"].as_str().expect("id").to_string());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "one task: {ids:?}");
    gw.client().wait(&ids[0], Duration::from_secs(60)).await;
    received(&receiver, 1).await;
    // Leave time for a duplicate delivery to show up (deliveries poll every 50 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = receiver.received_requests().await.expect("recorded");
    assert_eq!(got.len(), 1, "one delivery for one task");
    let body: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(body["id"], ids[0].as_str(), "{body}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_are_bounded() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).mount(&receiver).await;
    // One pending delivery at most; it keeps failing and waits long between attempts.
    let toml = webhooks_toml(true, 100).replace("max_delay_ms = 200", "max_delay_ms = 600000").replace("base_delay_ms = 50", "base_delay_ms = 600000")
        + "max_pending = 1\n";
    let gw = TestGateway::start(Options { extra_toml: toml, ..Options::default() }).await;
    let url = format!("{}/slow", receiver.uri());
    let (code, body) = submit_with_callback(&gw, &url).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = submit_with_callback(&gw, &url).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["detail"], "Too many webhook deliveries pending, try again later.");
    // Without a callback the same client is served.
    let (code, body) = gw.client().submit("face_liveness", vec![file("image", png(64))]).await;
    assert_eq!(code, 200, "{body}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_urls_must_be_public_and_well_formed() {
    let gw = TestGateway::start(Options { extra_toml: webhooks_toml(false, 3), ..Options::default() }).await;
    const PRIVATE: &str = "Callback URLs may not point to loopback, private or link-local addresses.";
    const INVALID: &str = "Enter a valid URL.";
    let long = format!("https://example.com/{}", "a".repeat(3000));
    for (url, want) in [
        ("http://127.0.0.1:9/hook", PRIVATE),
        ("http://localhost:9/hook", PRIVATE),
        ("http://10.1.2.3/hook", PRIVATE),
        ("http://169.254.169.254/latest/meta-data/", PRIVATE),
        ("http://[::1]:9/hook", PRIVATE),
        ("http://[::ffff:127.0.0.1]/", PRIVATE),
        ("http://0.0.0.0:9/", PRIVATE),
        ("ftp://example.com/hook", INVALID),
        ("not a url", INVALID),
        ("http://user:pw@example.com/", INVALID),
        (long.as_str(), INVALID),
    ] {
        let (code, body) = submit_with_callback(&gw, url).await;
        assert_eq!(code, 400, "{url}: {body}");
        assert_eq!(body["callback_url"][0], want, "{url}: {body}");
    }
    gw.stop().await;
    // Without a secret, webhooks are off.
    let off = TestGateway::start(Options::default()).await;
    let (code, body) = submit_with_callback(&off, "https://example.com/hook").await;
    assert_eq!((code, &body["callback_url"][0]), (400, &serde_json::json!("Webhooks are not enabled on this gateway.")));
    off.stop().await;
}

/// A receiver that is down (connection refused) while the task finishes, and the instance that
/// holds the delivery stopped meanwhile: another instance on the same Redis delivers it once the
/// receiver is back, signed, with the first attempt's delivery id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_survives_a_receiver_outage_and_an_instance_restart() {
    // Reserve a port for the receiver, then close it: connections are refused until it is back.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
    let opts = Options {
        store: redis_url(),
        namespace: namespace("webhook-outage"),
        extra_toml: webhooks_toml(true, 30),
        ..Options::default()
    };
    let a = TestGateway::start(opts.clone()).await;
    let (code, body) = submit_with_callback(&a, &format!("http://{addr}/hook")).await;
    assert_eq!(code, 200, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let (task, _) = a.client().wait(&id, Duration::from_secs(60)).await;
    // At least one attempt met the closed port before the instance goes away.
    let deadline = Instant::now() + Duration::from_secs(30);
    while deliveries(&a, "retry").await < 1.0 {
        assert!(Instant::now() < deadline, "no failed attempt was counted");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    a.stop().await;

    let listener = std::net::TcpListener::bind(addr).expect("the receiver's port is free again");
    let receiver = MockServer::builder().listener(listener).start().await;
    Mock::given(method("POST")).and(path("/hook")).respond_with(ResponseTemplate::new(204)).mount(&receiver).await;
    let b = TestGateway::start(opts).await;
    let got = received(&receiver, 1).await;
    verify_signature(&got[0]);
    let posted: Value = serde_json::from_slice(&got[0].body).expect("JSON body");
    assert_eq!(posted, task, "the finished task, delivered by the other instance");
    let deadline = Instant::now() + Duration::from_secs(30);
    while deliveries(&b, "delivered").await < 1.0 {
        assert!(Instant::now() < deadline, "the delivery was not counted");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    b.stop().await;
}
