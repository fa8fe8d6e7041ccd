//! Shared harness for the end-to-end tests: start the real gateway (config file, store,
//! providers, workers, HTTP server) on a loopback port and drive it over HTTP with reqwest.
//!
//! Every wait is a poll with a deadline; nothing sleeps for a fixed time hoping work is done.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kycgate::app::{Gateway, Overrides};
use kycgate::config::Config;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The API key every test client uses unless it says otherwise (owner `cli`).
pub const KEY: &str = "test-key-a";
/// A second client's key, configured by sha256 under owner `other`.
pub const OTHER_KEY: &str = "test-key-b";
/// An operator's key (owner `ops`, `role = "operator"`): the admin endpoints.
pub const OPERATOR_KEY: &str = "test-key-operator";
/// User for the token endpoints.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared real-image set (`KYCGATE_EVAL_DIR`, else `../shared/eval` beside the repo).
pub fn eval_dir() -> PathBuf {
    let dir = std::env::var_os("KYCGATE_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/eval"));
    assert!(dir.is_dir(), "eval images not found at {} (set KYCGATE_EVAL_DIR)", dir.display());
    dir
}

pub fn eval_image(rel: &str) -> Vec<u8> {
    let p = eval_dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A recorded vendor answer, `providers/fixtures/<vendor>/<name>`.
pub fn vendor_fixture(vendor: &str, name: &str) -> Vec<u8> {
    let p = repo().join("providers/fixtures").join(vendor).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// That answer as a wiremock 200 JSON response.
pub fn vendor_answer(vendor: &str, name: &str) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(200).set_body_raw(vendor_fixture(vendor, name), "application/json")
}

/// The Redis the tests may use (`KYCGATE_TEST_REDIS`, else the local default).
pub fn redis_url() -> String {
    std::env::var("KYCGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The sum of `name`'s series carrying `label` (`key="value"`) in a `/metrics` text.
pub fn metric_sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A fresh key namespace so concurrent tests never see each other's queues.
pub fn namespace(tag: &str) -> String {
    format!("kycgate-test-{tag}-{}", uuid::Uuid::new_v4().simple())
}

/// A small valid PNG (a flat grey square).
pub fn png(side: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(side, side, image::Rgb([128, 128, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("encode png");
    out.into_inner()
}

/// How to start one gateway instance.
#[derive(Clone)]
pub struct Options {
    /// `memory` or a Redis URL.
    pub store: String,
    /// Redis key prefix (ignored by the memory store).
    pub namespace: String,
    /// Directory of provider files; the repository's `providers/` by default.
    pub providers_dir: PathBuf,
    /// Extra keys for the `[server]` table (e.g. `max_body_bytes = 1000`).
    pub server_toml: String,
    /// Extra keys for the `[store]` table (e.g. `max_queued_tasks = 100`).
    pub store_toml: String,
    /// Extra TOML appended to the generated config (routing, limits, …).
    pub extra_toml: String,
    /// Extra keys for the `[auth]` table (e.g. `login_max_failures_per_user = 3`).
    pub auth_toml: String,
    pub lease_secs: u64,
    pub concurrency: usize,
    /// Extra keys for the `[worker]` table (e.g. `threads = 1`).
    pub worker_toml: String,
    /// More API keys as (owner id, key), besides `KEY` and `OTHER_KEY`.
    pub api_keys: Vec<(String, String)>,
}

impl Options {
    /// Defaults, with providers from `dir` and the given `[routing…]` TOML.
    pub fn routed(dir: &Path, routing: &str) -> Self {
        Self { providers_dir: dir.to_path_buf(), extra_toml: routing.into(), ..Self::default() }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            store: "memory".into(),
            namespace: namespace("e2e"),
            providers_dir: repo().join("providers"),
            server_toml: String::new(),
            store_toml: String::new(),
            extra_toml: String::new(),
            auth_toml: String::new(),
            lease_secs: 30,
            concurrency: 2,
            worker_toml: String::new(),
            api_keys: Vec::new(),
        }
    }
}

/// One running gateway: its address and the means to stop it (gracefully or by killing it).
pub struct TestGateway {
    pub base: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
    _config_dir: tempfile::TempDir,
}

impl TestGateway {
    pub async fn start(opts: Options) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let hash = kycgate::api::auth::hash_password(PASSWORD).expect("hash password");
        let keys: String = std::iter::once(("other".to_string(), OTHER_KEY.to_string()))
            .chain(opts.api_keys.iter().cloned())
            .map(|(id, key)| format!("{{ id = {id:?}, sha256 = \"{}\" }},", hex::encode(kycgate::api::auth::key_digest(&key))))
            .chain(std::iter::once(format!(
                "{{ id = \"ops\", sha256 = \"{}\", role = \"operator\" }},",
                hex::encode(kycgate::api::auth::key_digest(OPERATOR_KEY))
            )))
            .collect();
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"
{server_extra}

[store]
url = "{store}"
namespace = "{ns}"
lease_secs = {lease}
{store_extra}

[worker]
concurrency = {conc}
{worker}

[auth]
jwt_secret = "e2e-shared-secret"
api_keys = [{keys}]
users = [{{ username = "{USER}", password_hash = "{hash}" }}]
{auth_extra}

[providers]
dir = "{providers}"

{extra}
"#,
            store = opts.store,
            ns = opts.namespace,
            lease = opts.lease_secs,
            conc = opts.concurrency,
            worker = opts.worker_toml,
            providers = opts.providers_dir.display(),
            server_extra = opts.server_toml,
            store_extra = opts.store_toml,
            auth_extra = opts.auth_toml,
            extra = opts.extra_toml,
        );
        let path = dir.path().join("gateway.toml");
        std::fs::File::create(&path).and_then(|mut f| f.write_all(toml.as_bytes())).expect("write config");
        let config = Config::load(Some(&path)).expect("config loads");
        let overrides = Overrides { api_keys: vec![KEY.to_string()], ..Overrides::default() };
        let gateway = Gateway::build(config, &overrides).await.expect("gateway builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            gateway
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
        });
        let gw = Self { base: format!("http://{addr}"), shutdown: Some(tx), handle, _config_dir: dir };
        gw.wait_healthy().await;
        gw
    }

    async fn wait_healthy(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "gateway never answered /healthz");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn client(&self) -> Api {
        Api { base: self.base.clone(), key: Some(KEY.to_string()), http: reqwest::Client::new() }
    }

    pub fn client_with(&self, key: Option<&str>) -> Api {
        Api { base: self.base.clone(), key: key.map(str::to_string), http: reqwest::Client::new() }
    }

    /// Graceful stop: HTTP drains, workers finish their current task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.handle).await;
    }

    /// Abrupt stop, as if the process died: the server and its workers are dropped mid-flight,
    /// no result is written and no lease is released.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// A part of a multipart form.
pub enum Part {
    File { name: &'static str, bytes: Vec<u8>, filename: &'static str, mime: &'static str },
    Text { name: &'static str, value: String },
}

pub fn file(name: &'static str, bytes: Vec<u8>) -> Part {
    let (filename, mime) = if bytes.starts_with(b"\x89PNG") { ("image.png", "image/png") } else { ("image.jpg", "image/jpeg") };
    Part::File { name, bytes, filename, mime }
}

pub fn text(name: &'static str, value: &str) -> Part {
    Part::Text { name, value: value.to_string() }
}

/// A `kyc_passport` form: a deepface selfie and the ICAO TD3 specimen (Utopia, Anna Maria
/// Eriksson, L898902C3), with `extend_data` as given.
pub fn kyc_specimen(extend_data: &str) -> Vec<Part> {
    vec![
        file("selfie_image", eval_image("faces/deepface/img1.jpg")),
        file("passport_image", eval_image("documents/passporteye_100_pass-uto.jpg")),
        text("extend_data", extend_data),
    ]
}

/// A client of the gateway's public API.
pub struct Api {
    pub base: String,
    pub key: Option<String>,
    pub http: reqwest::Client,
}

impl Api {
    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    /// POST a multipart form to `/api/v3/services/<service>/`; returns status and JSON body.
    pub async fn submit(&self, service: &str, parts: Vec<Part>) -> (u16, Value) {
        let mut form = reqwest::multipart::Form::new();
        for p in parts {
            form = match p {
                Part::File { name, bytes, filename, mime } => form.part(
                    name,
                    reqwest::multipart::Part::bytes(bytes).file_name(filename).mime_str(mime).expect("mime"),
                ),
                Part::Text { name, value } => form.text(name, value),
            };
        }
        let req = self.http.post(format!("{}/api/v3/services/{service}/", self.base)).multipart(form);
        json_of(self.auth(req).send().await.expect("POST")).await
    }

    /// Submits and expects a task id.
    pub async fn submit_ok(&self, service: &str, parts: Vec<Part>) -> String {
        let (status, body) = self.submit(service, parts).await;
        assert_eq!(status, 200, "submit {service}: {body}");
        let id = body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).to_string();
        assert_eq!(uuid::Uuid::parse_str(&id).expect("uuid").get_version_num(), 4);
        id
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let req = self.http.get(format!("{}{path_and_query}", self.base));
        json_of(self.auth(req).send().await.expect("GET")).await
    }

    pub async fn task(&self, id: &str) -> (u16, Value) {
        self.get(&format!("/api/v3/services/task/?id={id}")).await
    }

    /// Polls the task until it is finished (SUCCESS or FAILURE) or `within` passes. Returns the
    /// final task and every status seen on the way, in order.
    pub async fn wait(&self, id: &str, within: Duration) -> (Value, Vec<String>) {
        let deadline = Instant::now() + within;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let (code, task) = self.task(id).await;
            assert_eq!(code, 200, "GET task: {task}");
            let status = task["status"].as_str().expect("status").to_string();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if status == "SUCCESS" || status == "FAILURE" {
                return (task, seen);
            }
            assert!(task["result"].is_null(), "unfinished task with a result: {task}");
            assert!(Instant::now() < deadline, "task {id} not finished within {within:?}; saw {seen:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the task reaches `status` (e.g. STARTED).
    pub async fn wait_for_status(&self, id: &str, status: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (_, task) = self.task(id).await;
            if task["status"] == status {
                return;
            }
            assert!(Instant::now() < deadline, "task {id} never reached {status}: {task}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

/// Writes an HTTP adapter into `dir` from a repository adapter, pointed at `base_url`, with its
/// secrets read from files in `dir` (no process-wide environment to race on).
pub fn vendor_adapter(dir: &Path, repo_file: &str, name: &str, base_url: &str, secrets: &[(&str, &str)]) {
    let mut toml = std::fs::read_to_string(repo().join("providers").join(repo_file)).expect("adapter");
    // Drop the base-URL override so the file's base_url (the mock) is what counts.
    toml = toml.lines().filter(|l| !l.trim_start().starts_with("base_url")).collect::<Vec<_>>().join("\n");
    toml = toml.replacen("kind = \"http\"", &format!("kind = \"http\"\nbase_url = \"{base_url}\""), 1);
    for (var, value) in secrets {
        let secret = dir.join(format!("{name}-{var}.secret"));
        std::fs::write(&secret, value).expect("secret");
        toml = toml.replace(&format!("{{ env = \"{var}\" }}"), &format!("{{ file = \"{}\" }}", secret.display()));
    }
    std::fs::write(dir.join(format!("{name}.toml")), toml).expect("write adapter");
}

/// Copies the local provider's adapter into `dir` so a temporary providers directory has it.
pub fn local_adapter(dir: &Path) {
    std::fs::copy(repo().join("providers/local.toml"), dir.join("local.toml")).expect("copy local.toml");
}
