//! The store's bounds, idempotency and deletion through the public API: 429 with
//! `Retry-After` past the queue bounds (memory; and one owner's quota shared by two instances
//! on Redis), `Idempotency-Key` on both stores, `DELETE task/` and `DELETE faces/`.
//!
//! The liveness vendor is a gate: it holds every request until the test opens it, so tasks
//! stay unfinished exactly as long as a test needs (no timing guesses).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::support::*;

/// A vendor that holds every request until opened, then answers KBY-AI's recorded "real".
struct GatedVendor {
    uri: String,
    open: watch::Sender<bool>,
    /// Requests received so far.
    requests: Arc<AtomicUsize>,
    dir: tempfile::TempDir,
}

impl GatedVendor {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let uri = format!("http://{}", listener.local_addr().expect("addr"));
        let (open, gate) = watch::channel(false);
        let body = vendor_fixture("kbyai", "real.json");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (mut gate, body, counter) = (gate.clone(), body.clone(), counter.clone());
                tokio::spawn(async move {
                    if !read_request(&mut sock).await {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { uri, open, requests, dir: tempfile::tempdir().expect("tempdir") }
    }

    fn open(&self) {
        let _ = self.open.send(true);
    }

    /// Gateway options routing liveness to this vendor only.
    fn options(&self, store: &str, store_toml: &str) -> Options {
        let dir = self.dir.path();
        local_adapter(dir);
        vendor_adapter(dir, "kbyai.toml", "gated", &self.uri, &[]);
        let routing = "[routing.liveness]\nchain = [{ provider = \"gated\", timeout_ms = 300000 }]\n";
        Options { store: store.into(), store_toml: store_toml.into(), concurrency: 1, ..Options::routed(dir, routing) }
    }
}

/// Reads one HTTP request (head, then a Content-Length or chunked body); false if the peer left.
async fn read_request(sock: &mut tokio::net::TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if head.contains("transfer-encoding: chunked") {
            if buf.ends_with(b"0\r\n\r\n") {
                return true;
            }
            continue;
        }
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return true;
        }
    }
}

fn selfie() -> Vec<u8> {
    eval_image("faces/deepface/img1.jpg")
}

/// POSTs a `face_liveness` form with `image` and an optional `Idempotency-Key`.
async fn submit_liveness(gw: &TestGateway, key: Option<&str>, image: Vec<u8>, extend: &str) -> (u16, HeaderMap, Value) {
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(image).file_name("s.jpg").mime_str("image/jpeg").expect("mime"))
        .text("extend_data", extend.to_string());
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v3/services/face_liveness/", gw.base))
        .bearer_auth(KEY)
        .multipart(form);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.expect("POST");
    let headers = resp.headers().clone();
    let (status, body) = json_of(resp).await;
    (status, headers, body)
}

async fn delete(gw: &TestGateway, key: Option<&str>, path: &str) -> (u16, String) {
    let mut req = reqwest::Client::new().delete(format!("{}{path}", gw.base));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("DELETE");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101st_queued_task_gets_429_until_tasks_finish() {
    let vendor = GatedVendor::start().await;
    let gw = TestGateway::start(vendor.options("memory", "max_queued_tasks = 100\nretry_after_secs = 3")).await;
    let image = selfie();
    let mut ids = Vec::new();
    for i in 0..100 {
        let (status, _, body) = submit_liveness(&gw, None, image.clone(), "false").await;
        assert_eq!(status, 200, "submit {i}: {body}");
        ids.push(body["id"].as_str().expect("id").to_string());
    }
    let (status, headers, body) = submit_liveness(&gw, None, image.clone(), "false").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));
    assert_eq!(body, json!({ "detail": "The task queue is full; retry later." }));

    // The vendor answers: tasks finish, and submits are accepted again.
    vendor.open();
    let (task, _) = gw.client().wait(&ids[0], Duration::from_secs(120)).await;
    assert_eq!(task["status"], "SUCCESS", "{task}");
    let (status, _, body) = submit_liveness(&gw, None, image, "false").await;
    assert_eq!(status, 200, "{body}");
    gw.kill().await;
}

/// One owner's quota holds across two instances sharing Redis; deleting a task frees a place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_owner_quota_on_redis() {
    let vendor = GatedVendor::start().await;
    let mut opts = vendor.options(&redis_url(), "max_queued_per_owner = 2");
    opts.namespace = namespace("quota");
    let a = TestGateway::start(opts.clone()).await;
    let b = TestGateway::start(opts).await;
    let image = selfie();
    let (s1, _, first) = submit_liveness(&a, None, image.clone(), "false").await;
    let (s2, _, _) = submit_liveness(&b, None, image.clone(), "false").await;
    assert_eq!((s1, s2), (200, 200));
    for gw in [&a, &b] {
        let (status, headers, body) = submit_liveness(gw, None, image.clone(), "false").await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body, json!({ "detail": "Too many unfinished tasks for this client; retry later." }));
        assert!(headers.get("retry-after").is_some());
    }
    let first = first["id"].as_str().expect("id").to_string();
    let path = format!("/api/v3/services/task/?id={first}");
    assert_eq!(delete(&b, Some(OTHER_KEY), &path).await.0, 404, "someone else's task is not found");
    assert_eq!(delete(&b, Some(KEY), &path).await.0, 204);
    assert_eq!(a.client().task(&first).await.0, 404);
    let (status, _, body) = submit_liveness(&a, None, image, "false").await;
    assert_eq!(status, 200, "{body}");
    a.kill().await;
    b.kill().await;
}

async fn idempotency_on(store: &str) {
    let vendor = GatedVendor::start().await;
    let mut opts = vendor.options(store, "");
    opts.namespace = namespace("idem");
    let gw = TestGateway::start(opts).await;
    let image = selfie();
    let (s1, _, first) = submit_liveness(&gw, Some("order-1"), image.clone(), "false").await;
    let (s2, _, again) = submit_liveness(&gw, Some("order-1"), image.clone(), "false").await;
    assert_eq!((s1, s2), (200, 200), "{first} {again}");
    assert_eq!(first["id"], again["id"], "a retry gets the same task");
    let (status, _, body) = submit_liveness(&gw, Some("order-1"), image.clone(), "true").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body, json!({ "detail": "This Idempotency-Key was already used with a different request." }));
    let (status, _, body) = submit_liveness(&gw, Some("bad key"), image.clone(), "false").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("Idempotency-Key")), "{body}");
    // Without a key, or with another one, it is a new task.
    let (_, _, other) = submit_liveness(&gw, Some("order-2"), image, "false").await;
    assert_ne!(other["id"], first["id"]);
    // The task ran once: two tasks in all reach the vendor (the keyed one and order-2).
    vendor.open();
    for id in [&first["id"], &other["id"]] {
        let (task, _) = gw.client().wait(id.as_str().expect("id"), Duration::from_secs(120)).await;
        assert_eq!(task["status"], "SUCCESS", "{task}");
    }
    assert_eq!(vendor.requests.load(Ordering::SeqCst), 2, "a task ran twice");
    gw.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_on_memory() {
    idempotency_on("memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_on_redis() {
    idempotency_on(&redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_routes_answer_204_404_and_401() {
    let vendor = GatedVendor::start().await;
    let gw = TestGateway::start(vendor.options("memory", "")).await;
    let (_, _, body) = submit_liveness(&gw, None, selfie(), "false").await;
    let id = body["id"].as_str().expect("id").to_string();
    let path = format!("/api/v3/services/task/?id={id}");
    assert_eq!(delete(&gw, None, &path).await.0, 401);
    assert_eq!(delete(&gw, Some(KEY), "/api/v3/services/task/?id=nope").await.0, 400);
    let unknown = format!("/api/v3/services/task/?id={}", uuid::Uuid::new_v4());
    assert_eq!(delete(&gw, Some(KEY), &unknown).await.0, 404);
    let (status, body) = delete(&gw, Some(KEY), &path).await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(gw.client().task(&id).await.0, 404);
    assert_eq!(delete(&gw, Some(KEY), &path).await.0, 404, "gone");

    assert_eq!(delete(&gw, None, "/api/v3/services/faces/").await.0, 401);
    assert_eq!(delete(&gw, Some(KEY), "/api/v3/services/faces/").await.0, 204);
    gw.kill().await;
}
