//! The Redis store through an outage: with its private `redis-server` killed, every call fails
//! promptly with `StoreError::Unavailable`; once the server is back on the same port, the same
//! store object works again. Needs `redis-server` on PATH (CI installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use kycgate::tasks::store::redis::RedisStore;
use kycgate::tasks::store::{StoreError, TaskStore, Ttls};
use kycgate::tasks::{now_ms, ServiceInput, TaskId, TaskInput, TaskOutcome, TaskRecord, TaskStatus};
use tokio::time::{timeout, Instant};

/// How long any call may take while Redis is down before we call it a hang.
const PROMPT: Duration = Duration::from_secs(5);

/// A private `redis-server` child process, killed when dropped (also on test failure).
pub(crate) struct Server {
    child: Option<Child>,
    port: u16,
    /// Set when the server listens on this Unix socket only (`--port 0`).
    socket: Option<std::path::PathBuf>,
}

impl Server {
    pub(crate) fn start(port: u16) -> Self {
        Self::spawn(port, &["--appendonly", "no"])
    }

    /// A server that keeps every acknowledged write in an append-only file in `dir`, so a crash
    /// and a restart on the same directory lose nothing (a production Redis with persistence).
    pub(crate) fn start_persistent(port: u16, dir: &std::path::Path) -> Self {
        let dir = dir.to_str().expect("utf-8 path");
        Self::spawn(port, &["--appendonly", "yes", "--appendfsync", "always", "--dir", dir])
    }

    /// A server on a Unix socket in `dir` and no TCP port: a Redis on the gateway's own host.
    pub(crate) fn start_unix(dir: &std::path::Path) -> Self {
        let socket = dir.join("redis.sock");
        let path = socket.to_str().expect("utf-8 path");
        let mut server = Self::spawn(0, &["--appendonly", "no", "--unixsocket", path, "--unixsocketperm", "700"]);
        server.socket = Some(socket);
        server
    }

    fn spawn(port: u16, persistence: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(persistence)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (is it on PATH?): {e}"));
        Self { child: Some(child), port, socket: None }
    }

    /// Sends a signal (`STOP`, `CONT`) to the server process: a hung Redis, and its recovery.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    pub(crate) fn url(&self) -> String {
        match &self.socket {
            Some(socket) => format!("redis+unix://{}", socket.display()),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Polls PING until the server answers.
    pub(crate) async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).expect("url");
        loop {
            let up = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if up {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not come up", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until a client is blocked in `XREADGROUP … BLOCK` (this server is private, so it
    /// is the test's parked claim).
    async fn until_claim_parks(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).expect("url");
        loop {
            let clients: String = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("CLIENT").arg("LIST").query(&mut c))
                .unwrap_or_default();
            if clients.lines().any(|l| l.contains("cmd=xreadgroup") && l.split(' ').any(|f| f.starts_with("flags=") && f.contains('b'))) {
                return;
            }
            assert!(Instant::now() < deadline, "the claim never parked in XREADGROUP BLOCK: {clients}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (a crash, as far as the clients can tell).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

fn task() -> (TaskRecord, TaskInput) {
    let input = TaskInput {
        upload: ServiceInput::FaceLiveness { selfie: Bytes::from_static(&[0xff, 0xd8, 0xff]) },
        owner: "alice".into(),
        extend_data: false,
        trace_context: None,
        base_url: None,
    };
    (TaskRecord::new(TaskId::new(), &input, now_ms()), input)
}

fn passed() -> TaskOutcome {
    TaskOutcome::Passed { data: serde_json::Map::new() }
}

fn ttls() -> Ttls {
    Ttls { task: Duration::from_secs(600), face: Duration::from_secs(600), lease: Duration::from_secs(1) }
}

/// Runs one store call with Redis down: it must end within [`PROMPT`] with `Unavailable`.
async fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) {
    let t0 = Instant::now();
    let outcome = timeout(PROMPT, call).await.unwrap_or_else(|_| panic!("{what} hung while Redis was down"));
    assert!(matches!(outcome, Err(StoreError::Unavailable(_))), "{what} returned {outcome:?}");
    assert!(t0.elapsed() < PROMPT, "{what} took {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_fails_fast_while_redis_is_down_and_recovers() {
    let port = free_port();
    let mut server = Server::start(port);
    server.ready().await;
    let store = RedisStore::connect(&server.url(), "outage", ttls()).await.expect("connect");

    let (record, input) = task();
    let before = record.id;
    store.submit(record, input).await.expect("submit while up");
    assert_eq!(store.get(before).await.unwrap().map(|r| r.status), Some(TaskStatus::Pending));
    let held = store.claim("w1", Duration::ZERO).await.unwrap().expect("claimed while up");

    // A worker parked in a blocking claim when Redis dies must not hang.
    let parked = {
        let store = store.clone();
        tokio::spawn(async move { store.claim("w2", Duration::from_secs(30)).await })
    };
    server.until_claim_parks().await;

    server.stop();

    let parked_outcome = timeout(PROMPT, parked).await.expect("parked claim hung").expect("join");
    assert!(matches!(parked_outcome, Err(StoreError::Unavailable(_))), "parked claim returned {parked_outcome:?}");

    let (record, input) = task();
    assert_unavailable("submit", store.submit(record, input)).await;
    assert_unavailable("get", store.get(before)).await;
    assert_unavailable("claim", store.claim("w1", Duration::from_secs(2))).await;
    assert_unavailable("heartbeat", store.heartbeat("w1", &held)).await;
    assert_unavailable("complete", store.complete("w1", &held, passed())).await;
    assert_unavailable("put_media", store.put_media("m", Bytes::from_static(b"x"))).await;
    assert_unavailable("get_face", store.get_face("alice", "u")).await;
    assert_unavailable("queue_stats", store.queue_stats()).await;
    assert_unavailable("ping", store.ping()).await;

    // Same port, empty data set (no persistence): the same store object must work again.
    let server = Server::start(port);
    server.ready().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (record, input) = task();
    let after = record.id;
    loop {
        let attempt = timeout(PROMPT, store.submit(record.clone(), input.clone())).await;
        match attempt {
            Ok(Ok(())) => break,
            Ok(Err(StoreError::Unavailable(_))) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("store did not recover after Redis came back: {other:?}"),
        }
    }
    // Submits have a connection of their own; each connection reconnects on its next use after
    // a failed attempt, so the shared one may answer `Unavailable` once more.
    loop {
        match timeout(PROMPT, store.ping()).await {
            Ok(Ok(())) => break,
            Ok(Err(StoreError::Unavailable(_))) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("ping did not recover after Redis came back: {other:?}"),
        }
    }
    assert_eq!(store.get(before).await.unwrap(), None, "the restarted server kept nothing");
    // The consumer group is recreated, so the new task is handed out.
    let claimed = store.claim("w1", Duration::from_secs(5)).await.unwrap().expect("claim after recovery");
    assert_eq!(claimed.id, after);
    store.start("w1", &claimed).await.unwrap();
    store.complete("w1", &claimed, passed()).await.unwrap();
    assert_eq!(store.get(after).await.unwrap().map(|r| r.status), Some(TaskStatus::Success));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_dead_redis_is_unavailable_promptly() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let t0 = Instant::now();
    let outcome = timeout(PROMPT, RedisStore::connect(&url, "dead", ttls())).await.expect("connect hung");
    assert!(matches!(outcome, Err(StoreError::Unavailable(_))), "connect returned {:?}", outcome.err());
    assert!(t0.elapsed() < PROMPT);
}

/// Issue 12 finding 7: with Redis hung (SIGSTOP) a submit answers `Unavailable` (the API's 503)
/// although Redis runs it once resumed; the client's retry with the same `Idempotency-Key`
/// gets that task back instead of queueing a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_hung_redis_does_not_run_the_task_twice() {
    use kycgate::tasks::store::redis::RedisOptions;
    use kycgate::tasks::store::{Idempotency, StoreOptions, Submitted};
    let server = Server::start(free_port());
    server.ready().await;
    let opts = RedisOptions { response_timeout: Duration::from_millis(500), ..RedisOptions::default() };
    let store = RedisStore::open(&server.url(), "hung", ttls(), opts, StoreOptions::default()).await.expect("connect");
    let key = Idempotency { key: "payment-9".into(), fingerprint: "same-form".into() };
    // A first task loads the submit script, as on any gateway that has been up for a while
    // (a hung EVALSHA of an unloaded script would only come back NOSCRIPT).
    let (record, input) = task();
    let warm = record.id;
    store.submit(record, input).await.expect("submit while up");

    server.signal("STOP");
    let (record, input) = task();
    let first = record.id;
    let outcome = timeout(PROMPT, store.submit_with(record, input, Some(&key))).await.expect("submit hung");
    server.signal("CONT");
    assert!(matches!(outcome, Err(StoreError::Unavailable(_))), "{outcome:?}");

    // Redis ran the first submit once it resumed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(store.get(first).await, Ok(Some(_))) {
        assert!(Instant::now() < deadline, "the first submit never reached Redis: nothing to retry over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client retries the same request: same task, nothing new queued.
    let (record, input) = task();
    let retried = store.submit_with(record, input, Some(&key)).await.expect("retry");
    assert_eq!(retried, Submitted::Existing(first));
    let mut claimed = Vec::new();
    while let Some(c) = store.claim("w1", Duration::ZERO).await.unwrap() {
        claimed.push(c.id);
    }
    assert_eq!(claimed, [warm, first], "the retry queued a second task");
}

/// The `kycgate_tasks_submitted_total{service="face_liveness"}` count of a `/metrics` text.
fn submitted(metrics: &str) -> f64 {
    crate::support::metric_sum(metrics, "kycgate_tasks_submitted_total", "service=\"face_liveness\"")
}

/// A submit whose request is cut off (here by `request_timeout_ms`, as by a client closing its
/// connection) while Redis is slow to take the upload still ends as it began: once Redis takes
/// it, the task exists, runs and is counted as submitted. Dropped with the request, the write
/// could land with nobody counting it (the bench saw more tasks succeed than were counted
/// submitted) or, here, not at all, depending on where the drop fell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_cut_off_while_redis_is_slow_still_lands_and_is_counted() {
    let server = Server::start(free_port());
    server.ready().await;
    let opts = crate::support::Options {
        store: server.url(),
        namespace: crate::support::namespace("cutoff"),
        server_toml: "request_timeout_ms = 700".into(),
        ..crate::support::Options::default()
    };
    let gw = crate::support::TestGateway::start(opts).await;
    let metrics = || async { reqwest::get(format!("{}/metrics", gw.base)).await.expect("metrics").text().await.expect("text") };
    let before = submitted(&metrics().await);

    // Redis holds every write for 2 s (its reads still answer): the submit's upload waits in
    // Redis until the request timeout has answered the client.
    let mut conn = redis::Client::open(server.url()).expect("url").get_connection().expect("connect");
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(2000).arg("WRITE").query(&mut conn).expect("CLIENT PAUSE");
    let started = Instant::now();
    let (code, body) = gw.client().submit("face_liveness", vec![crate::support::file("image", crate::support::png(64))]).await;
    assert_eq!(code, 408, "the request timeout answers first: {body}");
    assert!(started.elapsed() < Duration::from_millis(1900), "answered before Redis took the upload");

    // Once Redis takes writes again the task is there, runs to its end, and was counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let task = loop {
        // The task list writes too (it drops expired entries), so it waits out the pause.
        let (code, page) = gw.client().get("/api/v3/services/tasks/").await;
        assert!(code == 200 || code == 408, "{code} {page}");
        let done = page["results"].as_array().and_then(|r| r.first()).filter(|t| t["status"] == "SUCCESS" || t["status"] == "FAILURE").cloned();
        if let Some(task) = done {
            break task;
        }
        assert!(Instant::now() < deadline, "the cut-off submit's task never finished: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(task["service"], "face_liveness", "{task}");
    // Other tests of this binary submit face_liveness too (the registry is the process's), so
    // this count can only be checked from below.
    assert!(submitted(&metrics().await) >= before + 1.0, "the task was counted as submitted");
    gw.stop().await;
}

/// A Redis on the same host, reached over its Unix socket (`redis+unix://`): submits (framed by
/// the store itself), claims by another instance (which reads the images back), completion and
/// the record all go over the socket, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_works_over_a_unix_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_unix(dir.path());
    server.ready().await;
    let submitting = RedisStore::connect(&server.url(), "unix", ttls()).await.expect("connect over the socket");
    let claiming = RedisStore::connect(&server.url(), "unix", ttls()).await.expect("second instance");

    let selfie = Bytes::from((0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let (record, mut input) = task();
    input.upload = ServiceInput::FaceLiveness { selfie: selfie.clone() };
    let id = record.id;
    submitting.submit(record, input).await.expect("submit over the socket");

    let claimed = claiming.claim("w-other", Duration::from_secs(2)).await.expect("claim").expect("a task");
    assert_eq!(claimed.id, id);
    assert_eq!(claimed.input.upload, ServiceInput::FaceLiveness { selfie }, "images read back byte for byte");
    claiming.complete("w-other", &claimed, passed()).await.expect("complete");
    assert_eq!(submitting.get(id).await.expect("get").map(|r| r.status), Some(TaskStatus::Success));
}
