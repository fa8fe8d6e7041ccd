//! Chaos: two gateway processes on one Redis. Mid-run, one process is SIGKILLed and Redis is
//! killed and restarted (from its append-only file, as a production Redis with persistence
//! would be). Every task must still finish, and finish once: the vendor answers each call with
//! a different score, so a task answered twice would show a changed result when read again.
//!
//! The gateways are the real binary (`kycgate serve`), not in-process servers, so the kill is a
//! real SIGKILL of a process holding leases and connections.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::store_outage::{free_port, Server};
use crate::support::*;

/// Each call answers a distinct liveness score, after `delay` (so tasks are mid-run when the
/// kill comes).
struct CountingVendor {
    calls: Arc<AtomicUsize>,
    delay: Duration,
}

impl Respond for CountingVendor {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_delay(self.delay).set_body_json(json!({
            "face_state": { "result": "Real", "quality": "High" },
            "faces": [{ "liveness": 0.8 + (n as f64) * 1e-4 }]
        }))
    }
}

/// SIGKILL `redis`, then a new server on the same port and data directory.
async fn crash_and_restart(mut redis: Server, port: u16, dir: &Path, down_for: Duration) -> Server {
    redis.stop();
    tokio::time::sleep(down_for).await;
    let restarted = Server::start_persistent(port, dir);
    restarted.ready().await;
    restarted
}

/// One `kycgate serve` process.
struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    async fn start(config: &Path, log: &Path) -> Self {
        let port = free_port();
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kycgate"))
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--api-key", KEY])
            .env("KYCGATE_MODEL_DIR", std::env::var("KYCGATE_MODEL_DIR").unwrap_or_default())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn kycgate");
        let instance = Self { child, base: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", instance.base)).send().await {
                if r.status().is_success() {
                    return instance;
                }
            }
            assert!(Instant::now() < deadline, "kycgate never answered /healthz; log: {}", log.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn api(&self) -> Api {
        Api { base: self.base.clone(), key: Some(KEY.to_string()), http: reqwest::Client::new() }
    }

    fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TASKS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_killed_and_redis_restarted_mid_run_lose_no_task_and_answer_none_twice() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("redis");
    std::fs::create_dir(&data).expect("redis dir");
    let redis_port = free_port();
    let mut redis = Server::start_persistent(redis_port, &data);
    redis.ready().await;

    let calls = Arc::new(AtomicUsize::new(0));
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/check_liveness"))
        .respond_with(CountingVendor { calls: calls.clone(), delay: Duration::from_millis(1500) })
        .mount(&vendor)
        .await;
    let providers = work.path().join("providers");
    std::fs::create_dir(&providers).expect("providers dir");
    local_adapter(&providers);
    vendor_adapter(&providers, "kbyai.toml", "vendor", &vendor.uri(), &[]);
    let config = work.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
url = "{url}"
namespace = "{ns}"
lease_secs = 3

[worker]
concurrency = 4

[auth]
jwt_secret = "chaos-shared-secret"

[providers]
dir = "{providers}"

[routing.liveness]
chain = [{{ provider = "vendor", timeout_ms = 20000 }}]
"#,
            url = redis.url(),
            ns = namespace("chaos"),
            providers = providers.display(),
        ),
    )
    .expect("write config");

    let a = Instance::start(&config, &work.path().join("a.log")).await;
    let b = Instance::start(&config, &work.path().join("b.log")).await;
    let mut ids = Vec::new();
    for i in 0..TASKS {
        let gw = if i % 2 == 0 { &a } else { &b };
        ids.push(gw.api().submit_ok("face_liveness", vec![file("image", png(48))]).await);
    }

    // Wait until the vendor is busy with some tasks, then kill A with its leases held.
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "no task reached the vendor");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.sigkill();

    // Then Redis crashes while B is working, and comes back from its append-only file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis = crash_and_restart(redis, redis_port, &data, Duration::from_secs(2)).await;
    // B reconnects by itself: a client sees 503 (JSON, "try again later") until then.
    let api = b.api();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = api.task(&ids[0]).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(body["detail"].is_string(), "{body}");
        assert!(Instant::now() < deadline, "B never reconnected to the restarted Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every task finishes, through B alone (A's leases lapse and B reclaims them).
    let mut first_seen: Vec<Value> = Vec::new();
    for id in &ids {
        let (task, _) = api.wait(id, Duration::from_secs(180)).await;
        assert_eq!(task["status"], "SUCCESS", "task {id}: {task}");
        assert_eq!(task["result"]["data"]["liveness"]["result"], true, "{task}");
        first_seen.push(task["result"].clone());
    }
    assert!(calls.load(Ordering::SeqCst) >= TASKS, "every task reached the vendor at least once");

    // Give any duplicate delivery time to run (two leases), then read every result again: a task
    // answered twice would carry the later call's different score.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (id, before) in ids.iter().zip(&first_seen) {
        let (status, task) = api.task(id).await;
        assert_eq!(status, 200);
        assert_eq!(&task["result"], before, "task {id} was answered twice");
    }
    // Nothing is left queued or pending for a worker.
    let (status, ready) = api.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    drop(b);
    drop(redis);
}
