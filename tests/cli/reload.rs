//! A served gateway (the real binary, a child process) reloaded without restart: routing to
//! wiremock vendor A, the file edited to route to B, SIGHUP, new tasks go to B; then a broken
//! file, SIGHUP, tasks still go to B and the log says why. The admin endpoint reloads for an
//! operator key only. On the way: `X-Request-Id` is echoed and in the log, and `/metrics` has
//! the HTTP duration histogram.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::support::*;

const CLIENT_KEY: &str = "reload-client-key";
const OPERATOR_KEY: &str = "reload-operator-key";

/// The child gateway, its collected stderr, and its address.
struct Served {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    base: String,
}

impl Served {
    async fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[]).await
    }

    /// As `start`, with more environment variables for the child.
    async fn start_with(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kycgate"))
            .args(["serve", "--config", "gateway.toml", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env_remove("KYCGATE_CONFIG")
            .env("KYCGATE_API_KEYS", format!("client:{CLIENT_KEY}"))
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kycgate serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        let mut served = Self { child, log, base: String::new() };
        let line = served.wait_log("kycgate listening on http://", Duration::from_secs(120)).await;
        let addr = line.rsplit("http://").next().expect("address").trim().to_string();
        served.base = format!("http://{addr}");
        served
    }

    /// Waits for a stderr line containing `needle` that was not there before `skip` lines.
    async fn wait_log_after(&self, skip: usize, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.log.lock().expect("log").iter().skip(skip).find(|l| l.contains(needle)) {
                return l.clone();
            }
            if Instant::now() > deadline {
                panic!("no log line with {needle:?} within {within:?}:\n{}", self.log.lock().expect("log").join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_log(&self, needle: &str, within: Duration) -> String {
        self.wait_log_after(0, needle, within).await
    }

    fn log_len(&self) -> usize {
        self.log.lock().expect("log").len()
    }

    fn hangup(&self) {
        let status = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().expect("kill -HUP");
        assert!(status.success());
    }

    fn api(&self, key: &str) -> Api {
        Api { base: self.base.clone(), key: Some(key.to_string()), http: reqwest::Client::new() }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn liveness_vendor() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/check_liveness")).respond_with(vendor_answer("kbyai", "real.json")).mount(&server).await;
    server
}

fn write_gateway(dir: &Path, liveness_provider: &str) {
    let operator = hex::encode(kycgate::api::auth::key_digest(OPERATOR_KEY));
    let toml = format!(
        r#"[providers]
dir = "{providers}"

[[auth.api_keys]]
id = "ops"
sha256 = "{operator}"
role = "operator"

[routing.liveness]
chain = [{{ provider = "{liveness_provider}", timeout_ms = 5000 }}]
"#,
        providers = dir.join("providers").display(),
    );
    std::fs::write(dir.join("gateway.toml"), toml).expect("write gateway.toml");
}

/// Runs one face_liveness task; returns the provider that answered.
async fn answered_by(api: &Api) -> String {
    let id = api.submit_ok("face_liveness", vec![file("image", eval_image("faces/deepface/img1.jpg"))]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
    let attempts: &Value = &task["result"]["data"]["providers"]["liveness"];
    let ok = attempts.as_array().and_then(|a| a.iter().find(|x| x["outcome"] == "ok"));
    ok.and_then(|a| a["provider"].as_str()).unwrap_or_else(|| panic!("no provider answered: {task}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_admin_reload_swap_routing_and_keep_it_on_a_bad_file() {
    let a = liveness_vendor().await;
    let b = liveness_vendor().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("providers")).expect("providers dir");
    local_adapter(&dir.path().join("providers"));
    vendor_adapter(&dir.path().join("providers"), "kbyai.toml", "vendor_a", &a.uri(), &[]);
    vendor_adapter(&dir.path().join("providers"), "kbyai.toml", "vendor_b", &b.uri(), &[]);
    write_gateway(dir.path(), "vendor_a");

    let gw = Served::start(dir.path()).await;
    let api = gw.api(CLIENT_KEY);
    assert_eq!(answered_by(&api).await, "vendor_a");
    let before_b = b.received_requests().await.expect("recorded").len();
    assert_eq!(before_b, 0);

    // Edit the file to route to B; SIGHUP.
    write_gateway(dir.path(), "vendor_b");
    let mark = gw.log_len();
    gw.hangup();
    gw.wait_log_after(mark, "Configuration reloaded", Duration::from_secs(30)).await;
    assert_eq!(answered_by(&api).await, "vendor_b");
    assert!(!b.received_requests().await.expect("recorded").is_empty());

    // A broken file: refused, the log says why, tasks still go to B.
    let broken = std::fs::read_to_string(dir.path().join("gateway.toml")).expect("read").replace("vendor_b", "vendor_nope");
    std::fs::write(dir.path().join("gateway.toml"), broken).expect("write");
    let mark = gw.log_len();
    gw.hangup();
    let why = gw.wait_log_after(mark, "Reload refused", Duration::from_secs(30)).await;
    assert!(why.contains("unknown provider `vendor_nope`") && why.contains("gateway.toml:"), "{why}");
    assert_eq!(answered_by(&api).await, "vendor_b");

    // The admin endpoint: a client key may not; an operator's reload reports the problems (422),
    // then, with the file fixed, the new chains.
    let http = reqwest::Client::new();
    let reload = |key: &str| http.post(format!("{}/api/v3/admin/reload/", gw.base)).bearer_auth(key.to_string()).send();
    let r = reload(CLIENT_KEY).await.expect("POST");
    assert_eq!(r.status(), 403);
    let r = reload(OPERATOR_KEY).await.expect("POST");
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.expect("json");
    assert!(body["problems"].to_string().contains("vendor_nope"), "{body}");
    write_gateway(dir.path(), "vendor_a");
    let r = reload(OPERATOR_KEY).await.expect("POST");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["routing"]["liveness"], serde_json::json!(["vendor_a"]), "{body}");
    assert_eq!(answered_by(&api).await, "vendor_a");

    // Request ids: kept when sent (and in the request's log lines), made when not.
    let mark = gw.log_len();
    let sent = http
        .get(format!("{}/api/v3/services/task/?id=00000000-0000-4000-8000-000000000000", gw.base))
        .bearer_auth(CLIENT_KEY)
        .header("X-Request-Id", "op-test-42")
        .send()
        .await
        .expect("GET");
    assert_eq!(sent.headers()["x-request-id"], "op-test-42");
    let made = http.get(format!("{}/healthz", gw.base)).send().await.expect("GET");
    let made = made.headers()["x-request-id"].to_str().expect("ascii").to_string();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(eval_image("faces/deepface/img1.jpg")).file_name("s.jpg").mime_str("image/jpeg").expect("mime"),
    );
    let r = http
        .post(format!("{}/api/v3/services/face_liveness/", gw.base))
        .bearer_auth(CLIENT_KEY)
        .header("X-Request-Id", "op-test-43")
        .multipart(form)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let accepted = gw.wait_log_after(mark, "Task accepted", Duration::from_secs(10)).await;
    assert!(accepted.contains("op-test-43"), "the request's log line lacks its id: {accepted}");

    // The semantic-conventions histogram, with its attribute names, next to the other metrics.
    let metrics = http.get(format!("{}/metrics", gw.base)).send().await.expect("GET").text().await.expect("text");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("http_server_request_duration_seconds_count{") && l.contains("http_route=\"/api/v3/services/{service}/\""))
        .unwrap_or_else(|| panic!("no duration histogram for the services route:\n{metrics}"));
    assert!(line.contains("http_request_method=\"POST\"") && line.contains("http_response_status_code=\"200\""), "{line}");

    // The container HEALTHCHECK command: 0 against this gateway, non-zero where none listens.
    let probe = crate::kycgate(dir.path(), &["healthcheck", "--url", &format!("{}/healthz", gw.base)]);
    assert!(probe.status.success(), "{}", crate::stderr(&probe));
    let dead = crate::kycgate(dir.path(), &["healthcheck", "--url", "http://127.0.0.1:9/healthz"]);
    assert!(!dead.status.success());
}

/// Vendor calls honour the operator's egress proxy (`HTTP_PROXY` / `HTTPS_PROXY`, as curl and
/// the cloud SDKs read them): a vendor at a name that does not resolve is reached through the
/// proxy, which sees the vendor's host in the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_calls_go_through_the_environment_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = dir.path().join("providers");
    std::fs::create_dir(&providers).expect("providers dir");
    local_adapter(&providers);
    vendor_adapter(&providers, "kbyai.toml", "behind_proxy", "http://vendor.kycgate.invalid", &[]);
    write_gateway(dir.path(), "behind_proxy");
    let proxy = liveness_vendor().await;
    let proxy_url = proxy.uri();
    let served = Served::start_with(dir.path(), &[("HTTP_PROXY", proxy_url.as_str()), ("NO_PROXY", "")]).await;
    assert_eq!(answered_by(&served.api(CLIENT_KEY)).await, "behind_proxy");
    let seen = proxy.received_requests().await.expect("recorded");
    assert_eq!(seen.len(), 1, "the vendor call went through the proxy");
    assert_eq!(seen[0].url.host_str(), Some("vendor.kycgate.invalid"), "{}", seen[0].url);
}
