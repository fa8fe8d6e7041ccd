//! A hostile vendor (issue 12): one that redirects the gateway's request (with its API key) to
//! another origin, and one whose error answers echo personal data. Real vendor client, real
//! loopback vendors (wiremock), and for the error text the real gateway with its log captured.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kycgate::providers::http::HttpProvider;
use kycgate::providers::spec;
use kycgate::providers::{Image, Provider, ProviderError, SubCall};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

const API_KEY: &str = "vendor-secret-key-5e1f";

/// A liveness adapter with a header API key, an error code and message pointer, and a fatal
/// rule for 422; `extra` goes at the top level (e.g. `redirects = "same_origin"`).
fn adapter(dir: &std::path::Path, name: &str, base_url: &str, extra: &str) -> std::path::PathBuf {
    let secret = dir.join(format!("{name}.secret"));
    std::fs::write(&secret, API_KEY).expect("secret");
    let toml = format!(
        r#"kind = "http"
description = "hostile test vendor"
base_url = "{base_url}"
{extra}

[auth]
type = "header"
name = "x-api-key"
value = {{ file = "{secret}" }}

[errors]
code_pointer = "/code"
message_pointer = "/message"
rules = [{{ status = 422, action = "fatal" }}]

[endpoints.liveness]
path = "/check_liveness"

[endpoints.liveness.body]
encoding = "multipart"
images = [{{ source = "image", field = "file" }}]

[endpoints.liveness.response]
score = "/score"
threshold = 0.7
"#,
        secret = secret.display()
    );
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, toml).expect("adapter");
    file
}

/// The provider as the gateway builds it: `from_file`, so the production client and its
/// redirect policy.
fn provider(file: &std::path::Path) -> HttpProvider {
    HttpProvider::from_file(&spec::load_file(file).expect("adapter parses")).expect("adapter validates")
}

fn liveness() -> SubCall {
    SubCall::Liveness { image: Image { bytes: eval_image("faces/deepface/img1.jpg").into(), mime: "image/jpeg" } }
}

/// Whoever receives a request: it must never be called by a redirect.
async fn attacker() -> MockServer {
    let evil = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_body_json(json!({"score": 0.99}))).mount(&evil).await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_json(json!({"score": 0.99}))).mount(&evil).await;
    evil
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_redirect_never_carries_the_key_to_another_origin() {
    let evil = attacker().await;
    let vendor = MockServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for status in [301u16, 302, 303, 307, 308] {
        // Whatever the adapter opts into: another origin is never followed.
        for extra in ["", "redirects = \"same_origin\""] {
            let p = provider(&adapter(dir.path(), "v", &vendor.uri(), extra));
            vendor.reset().await;
            Mock::given(method("POST"))
                .and(path("/check_liveness"))
                .respond_with(ResponseTemplate::new(status).insert_header("location", format!("{}/steal", evil.uri()).as_str()))
                .mount(&vendor)
                .await;
            let err = p.call(liveness()).await.expect_err("a redirect is an error");
            assert!(matches!(err, ProviderError::Redirect { status: s } if s == status), "{status} {extra}: {err:?}");
            assert!(err.to_string().contains("redirect"), "a clear reason: {err}");
            let sent = vendor.received_requests().await.expect("recorded");
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].headers.get("x-api-key").and_then(|v| v.to_str().ok()), Some(API_KEY), "the vendor got its key");
        }
    }
    assert!(evil.received_requests().await.expect("recorded").is_empty(), "a redirect reached the other origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_redirects_are_followed_only_when_the_adapter_opts_in() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/check_liveness"))
        .respond_with(ResponseTemplate::new(303).insert_header("location", "/v2/check_liveness"))
        .mount(&vendor)
        .await;
    // 303: see the answer with a GET (a 307 of a streamed multipart body cannot be replayed, so
    // it stays a `Redirect` error even for an opted-in adapter).
    Mock::given(method("GET"))
        .and(path("/v2/check_liveness"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"score": 0.93})))
        .mount(&vendor)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let strict = provider(&adapter(dir.path(), "strict", &vendor.uri(), ""));
    let err = strict.call(liveness()).await.expect_err("no redirects by default");
    assert!(matches!(err, ProviderError::Redirect { status: 303 }), "{err:?}");
    let lenient = provider(&adapter(dir.path(), "lenient", &vendor.uri(), "redirects = \"same_origin\""));
    let answer = lenient.call(liveness()).await.expect("a same-origin 303 is followed");
    assert!(format!("{:?}", answer.verdict).contains("0.93"), "{:?}", answer.verdict);
    let followed = vendor.received_requests().await.expect("recorded");
    let second = followed.iter().find(|r| r.url.path() == "/v2/check_liveness").expect("followed");
    assert_eq!(second.headers.get("x-api-key").and_then(|v| v.to_str().ok()), Some(API_KEY), "same origin keeps its key");
}

/// Log lines written by the test's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const ECHOED: &[&str] = &["MUSTERMANN", "ERIKA", "C01X00T47"];

/// One thread (a current-thread runtime), so the subscriber set as this thread's default sees
/// every log line of the server, the worker and the routing stack without a process-wide one.
#[tokio::test(flavor = "current_thread")]
async fn vendor_error_text_reaches_neither_the_log_nor_the_result() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let vendor = MockServer::start().await;
    for (status, body) in [
        // A fatal rule: a vendor error with the adapter's code pointer and message pointer.
        (422, json!({"code": "E_DOC", "message": "No record for ERIKA MUSTERMANN, passport C01X00T47"})),
        // An error code that is itself personal text.
        (422, json!({"code": "ERIKA MUSTERMANN C01X00T47", "message": "MUSTERMANN"})),
        // No rule: the status alone.
        (400, json!({"code": "C01X00T47", "message": "ERIKA MUSTERMANN"})),
    ] {
        vendor.reset().await;
        Mock::given(method("POST"))
            .and(path("/check_liveness"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&vendor)
            .await;
        let dir = tempfile::tempdir().expect("tempdir");
        local_adapter(dir.path());
        adapter(dir.path(), "echo", &vendor.uri(), "");
        let routing = "[routing.liveness]\nchain = [{ provider = \"echo\", timeout_ms = 10000, retry = { max_attempts = 1 } }]\n";
        let gw = TestGateway::start(Options::routed(dir.path(), routing)).await;
        let api = gw.client();
        let id = api.submit_ok("face_liveness", vec![file("image", eval_image("faces/deepface/img1.jpg"))]).await;
        let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
        gw.stop().await;
        assert!(!vendor.received_requests().await.expect("recorded").is_empty(), "the vendor was called");
        let result = task.to_string();
        for pii in ECHOED {
            assert!(!result.contains(pii), "{pii} reached the client's result: {result}");
        }
        let captured = String::from_utf8_lossy(&logs.0.lock().expect("logs")).to_string();
        // The capture works: the failed attempt (logged before the task completes) is in it.
        assert!(captured.contains("Provider attempt failed"), "the vendor error was logged");
        for pii in ECHOED {
            assert!(!captured.contains(pii), "{pii} reached the log (vendor {status})");
        }
    }
    let _ = std::io::stderr().flush();
}
