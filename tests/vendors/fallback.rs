//! Fallback through the real server: vendors (TOML adapters pointed at wiremock servers that
//! replay documented payloads) that time out, answer 500, or answer 429 with Retry-After hand
//! the sub-call to the next provider; the task result says who answered and what the others said.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use crate::support::*;
use tokio::time::Instant;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers 429 + `Retry-After: 1` and notes when each request arrived.
struct Throttled(Arc<Mutex<Vec<Instant>>>);

impl Respond for Throttled {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.0.lock().expect("lock").push(Instant::now());
        ResponseTemplate::new(429).insert_header("Retry-After", "1")
    }
}

async fn kbyai_mock(respond: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/check_liveness")).respond_with(respond).mount(&server).await;
    server
}

fn attempts(data: &Value, sub: &str) -> Vec<(String, u64, String)> {
    data["providers"][sub]
        .as_array()
        .unwrap_or_else(|| panic!("no providers.{sub}: {data}"))
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().expect("provider").to_string(),
                a["attempt"].as_u64().expect("attempt"),
                a["outcome"].as_str().expect("outcome").to_string(),
            )
        })
        .collect()
}

fn a(p: &str, n: u64, o: &str) -> (String, u64, String) {
    (p.to_string(), n, o.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_falls_back_past_timeout_500_and_429() {
    let slow = kbyai_mock(vendor_answer("kbyai", "real.json").set_delay(Duration::from_secs(5))).await;
    let broken = kbyai_mock(ResponseTemplate::new(500).set_body_string("upstream exploded")).await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let throttled = kbyai_mock(Throttled(arrivals.clone())).await;
    let good = kbyai_mock(vendor_answer("kbyai", "real.json")).await;

    let dir = tempfile::tempdir().expect("tempdir");
    local_adapter(dir.path());
    for (name, server) in [("slow", &slow), ("broken", &broken), ("throttled", &throttled), ("good", &good)] {
        vendor_adapter(dir.path(), "kbyai.toml", name, &server.uri(), &[]);
    }
    let routing = r#"
[routing.liveness]
chain = [
  { provider = "slow", timeout_ms = 300, retry = { max_attempts = 1 } },
  { provider = "broken", timeout_ms = 2000, retry = { max_attempts = 2, base_delay_ms = 10 } },
  { provider = "throttled", timeout_ms = 2000, retry = { max_attempts = 2, base_delay_ms = 10, max_delay_ms = 3000 } },
  { provider = "good", timeout_ms = 2000 },
]
"#;
    let gw = TestGateway::start(Options::routed(dir.path(), routing)).await;
    let api = gw.client();
    let selfie = eval_image("faces/deepface/img1.jpg");
    let id = api.submit_ok("face_liveness", vec![file("image", selfie.clone()), text("extend_data", "true")]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "SUCCESS", "{task}");
    let result = &task["result"];
    assert_eq!(result["status"], 200, "{result}");
    let data = &result["data"];

    // The documented liveness shape, from the vendor that answered.
    assert_eq!(data["liveness"]["result"], true, "{data}");
    assert_eq!(data["liveness"]["data"]["probability"], json!(0.9312));
    assert_eq!(data["liveness"]["data"]["provider"], "good");

    // Every attempt, in order, with the reasons of the ones that failed.
    assert_eq!(
        attempts(data, "liveness"),
        [
            a("slow", 1, "error"),
            a("broken", 1, "error"),
            a("broken", 2, "error"),
            a("throttled", 1, "error"),
            a("throttled", 2, "error"),
            a("good", 1, "ok"),
        ]
    );
    let reasons: Vec<String> =
        data["providers"]["liveness"].as_array().expect("list").iter().map(|a| a["reason"].to_string()).collect();
    assert!(reasons[0].contains("timed out"), "{reasons:?}");
    assert!(reasons[1].contains("500"), "{reasons:?}");
    assert!(reasons[3].contains("rate limit"), "{reasons:?}");

    // Retry-After was honoured between the two throttled attempts.
    let arrivals = arrivals.lock().expect("lock").clone();
    assert_eq!(arrivals.len(), 2);
    assert!(arrivals[1] - arrivals[0] >= Duration::from_secs(1), "retried before Retry-After");

    // extend_data: the answering vendor's raw payload, untouched.
    let raw: Value = serde_json::from_slice(&vendor_fixture("kbyai", "real.json")).expect("fixture json");
    assert_eq!(data["extended"]["liveness"]["good"], raw);

    // The request the vendor received: the selfie as the multipart `file` part.
    let got = good.received_requests().await.expect("recorded");
    assert_eq!(got.len(), 1);
    let ctype = got[0].headers.get("content-type").expect("content-type").to_str().expect("ascii");
    assert!(ctype.starts_with("multipart/form-data"), "{ctype}");
    let body = &got[0].body;
    assert!(body.windows(b"name=\"file\"".len()).any(|w| w == b"name=\"file\""), "no `file` part");
    assert!(body.windows(selfie.len().min(4096)).any(|w| w == &selfie[..selfie.len().min(4096)]), "selfie bytes not sent");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_failing_is_a_failure_with_the_attempts() {
    let broken = kbyai_mock(ResponseTemplate::new(503)).await;
    let garbage = kbyai_mock(ResponseTemplate::new(200).set_body_raw("<html>oops</html>", "text/html")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    local_adapter(dir.path());
    vendor_adapter(dir.path(), "kbyai.toml", "broken", &broken.uri(), &[]);
    vendor_adapter(dir.path(), "kbyai.toml", "garbage", &garbage.uri(), &[]);
    let routing = r#"
[routing.liveness]
chain = [
  { provider = "broken", retry = { max_attempts = 1 } },
  { provider = "garbage", retry = { max_attempts = 1 } },
]
"#;
    let gw = TestGateway::start(Options::routed(dir.path(), routing)).await;
    let api = gw.client();
    let id = api.submit_ok("face_liveness", vec![file("image", eval_image("faces/deepface/img1.jpg"))]).await;
    let (task, seen) = api.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "FAILURE", "{task}");
    assert_eq!(seen.last().map(String::as_str), Some("FAILURE"));
    let result = &task["result"];
    assert_eq!(result["status"], 503, "{result}");
    assert_eq!(attempts(&result["data"], "liveness"), [a("broken", 1, "error"), a("garbage", 1, "error")]);
    assert_eq!(result["data"]["liveness"]["result"], false);
    assert_eq!(result["data"]["liveness"]["error_code"], "PROVIDER_FAILED", "{result}");
    // A finished task stays as it is.
    let (_, again) = api.task(&id).await;
    assert_eq!(again, task);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kyc_passport_with_a_compare_vendor_in_front_of_local() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/verification/verify"))
        .and(header("x-api-key", "cf-secret"))
        .respond_with(vendor_answer("compreface", "success.json"))
        .mount(&vendor)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    local_adapter(dir.path());
    vendor_adapter(dir.path(), "compreface.toml", "compreface", &vendor.uri(), &[("COMPREFACE_API_KEY", "cf-secret")]);
    let routing = r#"
[routing.face_compare]
chain = [{ provider = "compreface", timeout_ms = 5000 }, { provider = "local" }]
"#;
    let gw = TestGateway::start(Options::routed(dir.path(), routing)).await;
    let api = gw.client();
    let id = api.submit_ok("kyc_passport", kyc_specimen("yes")).await;
    let (task, _) = api.wait(&id, Duration::from_secs(120)).await;
    assert_eq!(task["status"], "SUCCESS", "{task}");
    let data = &task["result"]["data"];
    // CompreFace's documented answer (similarity 0.97858 ≥ 0.8) decides the match.
    assert_eq!(data["compare"], true, "{data}");
    assert_eq!(data["details"]["compare"]["data"]["provider"], "compreface");
    assert_eq!(data["details"]["compare"]["data"]["score"], json!(0.97858));
    assert_eq!(attempts(data, "face_compare"), [a("compreface", 1, "ok")]);
    assert_eq!(attempts(data, "document_ocr"), [a("local", 1, "ok")]);
    let raw: Value = serde_json::from_slice(&vendor_fixture("compreface", "success.json")).expect("fixture json");
    assert_eq!(data["extended"]["face_compare"]["compreface"], raw);
    assert!(data["extended"]["document_ocr"]["local"].is_object(), "{data}");

    // The vendor got the selfie as source_image and the cropped portrait (a JPEG) as target_image.
    let got = vendor.received_requests().await.expect("recorded");
    assert_eq!(got.len(), 1);
    let body = &got[0].body;
    for field in [&b"name=\"source_image\""[..], &b"name=\"target_image\""[..]] {
        assert!(body.windows(field.len()).any(|w| w == field), "missing {}", String::from_utf8_lossy(field));
    }
    gw.stop().await;
}
