//! Adapter contract suite: every `providers/*.toml` validates, and each vendor adapter sends the
//! exact request the vendor documents and maps its recorded answers to a golden unified result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use kycgate::providers::http::{EnvSource, HttpProvider};
use kycgate::providers::spec::{self, ProviderSpec, SpecError};
use kycgate::providers::{
    Answer, CompareAnswer, Image, IssueCode, LivenessAnswer, Provider, ProviderError, Rejection, Score, SubCall,
    SubCallKind, Verdict,
};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(vendor: &str, name: &str) -> String {
    let p = repo().join("tests/fixtures/vendors").join(vendor).join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

fn json_response(status: u16, body: String) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.into_bytes(), "application/json")
}

/// Builds the adapter `providers/<vendor>.toml` against `server`, with `vars` as its environment.
fn provider(vendor: &str, vars: &[(&str, &str)]) -> HttpProvider {
    let file = spec::load_file(&repo().join("providers").join(format!("{vendor}.toml"))).expect("adapter parses");
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    HttpProvider::from_file_with(&file, &env, reqwest::Client::new()).expect("adapter validates")
}

fn jpeg(tag: &str) -> Image {
    let mut b = vec![0xff, 0xd8, 0xff, 0xe0];
    b.extend_from_slice(tag.as_bytes());
    Image { bytes: Bytes::from(b), mime: "image/jpeg" }
}

fn compare_call() -> SubCall {
    SubCall::FaceCompare { probe: jpeg("probe-selfie"), reference: jpeg("reference-portrait") }
}

fn liveness_call() -> SubCall {
    SubCall::Liveness { image: jpeg("liveness-selfie") }
}

/// One part of a multipart body.
#[derive(Debug)]
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Minimal multipart/form-data parser, enough to assert what a vendor receives.
fn multipart(req: &Request) -> Vec<Part> {
    let ct = req.headers.get("content-type").and_then(|v| v.to_str().ok()).expect("content-type");
    assert!(ct.starts_with("multipart/form-data"), "not multipart: {ct}");
    let boundary = ct.split("boundary=").nth(1).expect("boundary").trim_matches('"');
    let delim = format!("--{boundary}");
    let body = &req.body;
    let mut parts = Vec::new();
    let positions: Vec<usize> = body
        .windows(delim.len())
        .enumerate()
        .filter(|(_, w)| *w == delim.as_bytes())
        .map(|(i, _)| i)
        .collect();
    for pair in positions.windows(2) {
        let chunk = &body[pair[0] + delim.len()..pair[1]];
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let split = chunk.windows(4).position(|w| w == b"\r\n\r\n").expect("part headers");
        let headers = String::from_utf8_lossy(&chunk[..split]).to_string();
        let mut content = chunk[split + 4..].to_vec();
        if content.ends_with(b"\r\n") {
            content.truncate(content.len() - 2);
        }
        let disposition = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .expect("content-disposition")
            .to_string();
        let attr = |key: &str| {
            disposition.split(';').map(str::trim).find_map(|kv| kv.strip_prefix(&format!("{key}=\""))).map(|v| v.trim_end_matches('"').to_string())
        };
        let content_type = headers
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()));
        parts.push(Part { name: attr("name").expect("part name"), filename: attr("filename"), content_type, body: content });
    }
    parts
}

fn field<'a>(parts: &'a [Part], name: &str) -> &'a Part {
    parts.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no multipart field `{name}` in {parts:?}"))
}

async fn only_request(server: &MockServer) -> Request {
    let mut reqs = server.received_requests().await.expect("recording on");
    assert_eq!(reqs.len(), 1, "exactly one vendor request");
    reqs.remove(0)
}

fn verdict(result: Result<Answer, ProviderError>) -> Verdict {
    let answer = result.expect("answer");
    assert!(answer.raw.is_some(), "raw vendor JSON kept");
    answer.verdict
}

fn compare(is_match: bool, value: f64, threshold: f64, raw: f64) -> Verdict {
    Verdict::Compare(CompareAnswer { is_match, score: Score { value, threshold: Some(threshold), raw: Some(raw) } })
}

fn assert_verdict(got: Verdict, want: Verdict) {
    match (&got, &want) {
        (Verdict::Compare(a), Verdict::Compare(b)) => assert_eq!(a, b),
        (Verdict::Liveness(a), Verdict::Liveness(b)) => assert_eq!(a, b),
        (Verdict::Rejected(a), Verdict::Rejected(b)) => assert_eq!(a, b),
        _ => panic!("got {got:?}, want {want:?}"),
    }
}

// === Every adapter file ===

#[test]
fn every_adapter_parses_and_validates() {
    let files = spec::load_dir(&repo().join("providers")).expect("providers/*.toml parse");
    let http: Vec<_> = files.iter().filter(|f| matches!(f.spec, ProviderSpec::Http(_))).collect();
    assert!(http.len() >= 11, "the shipped catalogue: {}", http.len());
    let no_env: HashMap<String, String> = HashMap::new();
    for file in http {
        let p = HttpProvider::from_file_with(file, &no_env, reqwest::Client::new())
            .unwrap_or_else(|e| panic!("{}: {e}", file.path.display()));
        assert!(SubCallKind::ALL.iter().any(|k| p.supports(*k)), "{} serves nothing", file.name);
        // Without credentials an authenticated adapter is valid but unavailable.
        if let ProviderSpec::Http(spec) = &file.spec {
            if !matches!(spec.auth, kycgate::providers::spec::AuthSpec::None) {
                let kind = SubCallKind::ALL.into_iter().find(|k| p.supports(*k)).expect("a kind");
                assert!(p.unavailable_reason(kind).is_some_and(|r| r.contains("not set")), "{}", file.name);
            }
        }
    }
}

#[test]
fn unknown_key_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "kind = \"http\"\nbase_url = \"http://localhost\"\n\n[endpoints.liveness]\npath = \"/x\"\nmethd = \"POST\"\n";
    std::fs::write(dir.path().join("typo.toml"), text).expect("write");
    let err = spec::load_dir(dir.path()).expect_err("unknown key rejected");
    assert!(matches!(err, SpecError::Parse { line_col: Some((6, 1)), .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("typo.toml:6:1"), "{msg}");
    assert!(msg.contains("unknown field `methd`"), "{msg}");
    assert!(msg.contains("hint"), "{msg}");
}

#[test]
fn literal_secret_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "kind = \"http\"\nbase_url = \"http://localhost\"\n[auth]\ntype = \"bearer\"\ntoken = \"sk-123\"\n\
                [endpoints.liveness]\npath = \"/x\"\n";
    std::fs::write(dir.path().join("leak.toml"), text).expect("write");
    let msg = spec::load_dir(dir.path()).expect_err("literal secret").to_string();
    // Tagged tables (`[auth]`, `body`) report the table's line.
    assert!(msg.contains("leak.toml:3"), "{msg}");
    assert!(msg.contains("env = "), "hint missing: {msg}");
    assert!(!msg.contains("sk-123"), "secret echoed: {msg}");
}

#[test]
fn semantic_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "kind = \"http\"\nbase_url = \"http://localhost\"\n[endpoints.liveness]\npath = \"/x\"\n\
                body = { encoding = \"multipart\", images = [{ source = \"probe\", field = \"f\" }] }\n\
                response = { score = \"/s\", threshold = 0.5 }\n";
    let path = dir.path().join("wrong.toml");
    std::fs::write(&path, text).expect("write");
    let file = spec::load_file(&path).expect("parses");
    let msg = HttpProvider::from_file_with(&file, &HashMap::new(), reqwest::Client::new())
        .expect_err("probe is not a liveness input")
        .to_string();
    assert!(msg.contains("wrong.toml") && msg.contains("Probe"), "{msg}");
}

// === Face++ ===

fn facepp_env(server: &MockServer) -> Vec<(&'static str, String)> {
    vec![("FACEPP_BASE_URL", server.uri()), ("FACEPP_API_KEY", "key-123".into()), ("FACEPP_API_SECRET", "secret-456".into())]
}

async fn facepp_with(status: u16, body: String) -> (MockServer, Result<Answer, ProviderError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/facepp/v3/compare")).respond_with(json_response(status, body)).mount(&server).await;
    let env = facepp_env(&server);
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let result = provider("facepp", &vars).call(compare_call()).await;
    (server, result)
}

#[tokio::test]
async fn facepp_sends_keys_and_images_as_documented() {
    let (server, result) = facepp_with(200, fixture("facepp", "success.json")).await;
    let req = only_request(&server).await;
    assert_eq!(req.method.as_str(), "POST");
    assert_eq!(req.url.path(), "/facepp/v3/compare");
    assert!(req.headers.get("authorization").is_none());
    let parts = multipart(&req);
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(field(&parts, "api_key").body, b"key-123");
    assert_eq!(field(&parts, "api_secret").body, b"secret-456");
    let img1 = field(&parts, "image_file1");
    assert_eq!(img1.body, jpeg("probe-selfie").bytes.to_vec());
    assert_eq!(img1.filename.as_deref(), Some("image_file1.jpg"));
    assert_eq!(img1.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(field(&parts, "image_file2").body, jpeg("reference-portrait").bytes.to_vec());
    assert_verdict(verdict(result), compare(true, 0.88488, 0.69101, 88.488));
}

#[tokio::test]
async fn facepp_no_face_is_a_rejection() {
    let (_s, result) = facepp_with(200, fixture("facepp", "no_face.json")).await;
    assert_verdict(verdict(result), Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)));
    let (_s, result) = facepp_with(400, fixture("facepp", "bad_format.json")).await;
    assert_verdict(verdict(result), Verdict::Rejected(Rejection::new(IssueCode::FailedToReadImage)));
}

#[tokio::test]
async fn facepp_errors_are_classified() {
    let (_s, result) = facepp_with(403, fixture("facepp", "concurrency_limit.json")).await;
    let err = result.expect_err("rate limited");
    assert!(matches!(err, ProviderError::RateLimited { .. }), "{err:?}");
    assert_eq!(err.class(), kycgate::providers::ErrorClass::Retryable);

    let (_s, result) = facepp_with(401, fixture("facepp", "authentication_error.json")).await;
    let err = result.expect_err("auth");
    assert!(matches!(&err, ProviderError::Vendor { code, retryable: false, .. } if code == "AUTHENTICATION_ERROR"), "{err:?}");
    assert_eq!(err.class(), kycgate::providers::ErrorClass::Fatal);

    let (_s, result) = facepp_with(502, "<html>bad gateway</html>".into()).await;
    assert!(matches!(result, Err(ProviderError::Http { status: 502, .. })));
}

#[tokio::test]
async fn facepp_without_credentials_does_not_call() {
    let server = MockServer::start().await;
    let uri = server.uri();
    let p = provider("facepp", &[("FACEPP_BASE_URL", uri.as_str()), ("FACEPP_API_KEY", "k")]);
    assert!(p.unavailable_reason(SubCallKind::FaceCompare).is_some_and(|r| r.contains("FACEPP_API_SECRET")));
    assert!(matches!(p.call(compare_call()).await, Err(ProviderError::Unavailable(_))));
    assert!(server.received_requests().await.expect("recording").is_empty());
    assert!(matches!(p.call(liveness_call()).await, Err(ProviderError::Unsupported(SubCallKind::Liveness))));
}

// === CompreFace ===

async fn compreface_with(status: u16, body: String) -> (MockServer, Result<Answer, ProviderError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/verification/verify"))
        .and(header("x-api-key", "cf-key"))
        .respond_with(json_response(status, body))
        .mount(&server)
        .await;
    let uri = server.uri();
    let result = provider("compreface", &[("COMPREFACE_BASE_URL", uri.as_str()), ("COMPREFACE_API_KEY", "cf-key")])
        .call(compare_call())
        .await;
    (server, result)
}

#[tokio::test]
async fn compreface_request_and_answers() {
    let (server, result) = compreface_with(200, fixture("compreface", "success.json")).await;
    let req = only_request(&server).await;
    assert_eq!(req.url.path(), "/api/v1/verification/verify");
    let query: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
    assert_eq!(query.get("limit").map(String::as_str), Some("1"));
    assert_eq!(req.headers.get("x-api-key").and_then(|v| v.to_str().ok()), Some("cf-key"));
    let parts = multipart(&req);
    assert_eq!(parts.len(), 2);
    assert_eq!(field(&parts, "source_image").body, jpeg("probe-selfie").bytes.to_vec());
    assert_eq!(field(&parts, "target_image").body, jpeg("reference-portrait").bytes.to_vec());
    assert_verdict(verdict(result), compare(true, 0.97858, 0.8, 0.97858));

    let (_s, result) = compreface_with(200, fixture("compreface", "no_match.json")).await;
    assert_verdict(verdict(result), compare(false, 0.41207, 0.8, 0.41207));

    let (_s, result) = compreface_with(400, fixture("compreface", "no_face.json")).await;
    assert_verdict(verdict(result), Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)));

    let (_s, result) = compreface_with(500, "{\"message\":\"internal\",\"code\":0}".into()).await;
    let err = result.expect_err("500");
    assert!(matches!(err, ProviderError::Http { status: 500, .. }));
    assert_eq!(err.class(), kycgate::providers::ErrorClass::Retryable);
}

// === KBY-AI ===

async fn kbyai_with(body: String) -> (MockServer, Result<Answer, ProviderError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/check_liveness")).respond_with(json_response(200, body)).mount(&server).await;
    let uri = server.uri();
    let result = provider("kbyai", &[("KBYAI_BASE_URL", uri.as_str())]).call(liveness_call()).await;
    (server, result)
}

#[tokio::test]
async fn kbyai_request_and_answers() {
    let (server, result) = kbyai_with(fixture("kbyai", "real.json")).await;
    let req = only_request(&server).await;
    let parts = multipart(&req);
    assert_eq!(parts.len(), 1);
    assert_eq!(field(&parts, "file").body, jpeg("liveness-selfie").bytes.to_vec());
    let want = LivenessAnswer { is_live: true, score: Score { value: 0.9312, threshold: Some(0.7), raw: Some(0.9312) }, quality: Some(0.9) };
    assert_verdict(verdict(result), Verdict::Liveness(want));

    let (_s, result) = kbyai_with(fixture("kbyai", "spoof.json")).await;
    let want = LivenessAnswer { is_live: false, score: Score { value: 0.1204, threshold: Some(0.7), raw: Some(0.1204) }, quality: Some(0.6) };
    assert_verdict(verdict(result), Verdict::Liveness(want));

    let (_s, result) = kbyai_with(fixture("kbyai", "no_face.json")).await;
    assert_verdict(verdict(result), Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)));

    // An envelope outside the documented set is an error, not a guess.
    let (_s, result) = kbyai_with("{\"face_state\":{\"result\":\"Unknown\"},\"faces\":[]}".into()).await;
    assert!(matches!(result, Err(ProviderError::Vendor { retryable: false, .. })), "{result:?}");
}

// === Didit ===

async fn didit_with(resp: ResponseTemplate) -> (MockServer, Result<Answer, ProviderError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/passive-liveness/"))
        .and(header("x-api-key", "didit-key"))
        .respond_with(resp)
        .mount(&server)
        .await;
    let uri = server.uri();
    let result = provider("didit", &[("DIDIT_BASE_URL", uri.as_str()), ("DIDIT_API_KEY", "didit-key")]).call(liveness_call()).await;
    (server, result)
}

#[tokio::test]
async fn didit_request_and_answers() {
    let (server, result) = didit_with(json_response(200, fixture("didit", "approved.json"))).await;
    let req = only_request(&server).await;
    let parts = multipart(&req);
    assert_eq!(field(&parts, "user_image").body, jpeg("liveness-selfie").bytes.to_vec());
    assert_eq!(field(&parts, "face_liveness_score_decline_threshold").body, b"30");
    assert_eq!(field(&parts, "save_api_request").body, b"false");
    let want = LivenessAnswer { is_live: true, score: Score { value: 0.95, threshold: Some(0.3), raw: Some(95.0) }, quality: Some(0.85) };
    assert_verdict(verdict(result), Verdict::Liveness(want));

    let (_s, result) = didit_with(json_response(200, fixture("didit", "declined_low_score.json"))).await;
    let want = LivenessAnswer { is_live: false, score: Score { value: 0.12, threshold: Some(0.3), raw: Some(12.0) }, quality: Some(0.715) };
    assert_verdict(verdict(result), Verdict::Liveness(want));

    let (_s, result) = didit_with(json_response(200, fixture("didit", "declined_no_face.json"))).await;
    assert_verdict(verdict(result), Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)));

    let (_s, result) =
        didit_with(json_response(429, fixture("didit", "rate_limited.json")).insert_header("Retry-After", "2")).await;
    let err = result.expect_err("429");
    assert!(matches!(err, ProviderError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2)), "{err:?}");

    let (_s, result) = didit_with(json_response(403, "{\"detail\":\"Insufficient credits\"}".into())).await;
    assert!(matches!(result, Err(ProviderError::Vendor { retryable: false, .. })), "{result:?}");
}

// === Credentials from files, base URL override defaults ===

#[tokio::test]
async fn credential_from_file_and_default_base_url_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("key");
    std::fs::write(&secret, "file-key\n").expect("write");
    let adapter = format!(
        "kind = \"http\"\nbase_url = \"http://127.0.0.1:9\"\n[auth]\ntype = \"header\"\nname = \"Authorization\"\n\
         prefix = \"Token \"\nvalue = {{ file = \"{}\" }}\n[endpoints.liveness]\npath = \"/v1/live\"\n\
         body = {{ encoding = \"json\", fields = {{ mode = \"passive\" }}, images = [{{ source = \"image\", pointer = \"/image/data\" }}] }}\n\
         response = {{ score = \"/score\", threshold = 0.5 }}\n",
        secret.display()
    );
    let path: &Path = &dir.path().join("acme.toml");
    std::fs::write(path, adapter).expect("write");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_matcher("/v1/live"))
        .and(header("authorization", "Token file-key"))
        .respond_with(json_response(200, "{\"score\":0.75}".into()))
        .mount(&server)
        .await;
    let file = spec::load_file(path).expect("parses");
    let env: HashMap<String, String> = [("KYCGATE_ACME_BASE_URL".to_string(), server.uri())].into();
    assert_eq!(env.var("KYCGATE_ACME_BASE_URL"), Some(server.uri()));
    let p = HttpProvider::from_file_with(&file, &env, reqwest::Client::new()).expect("valid");
    let v = verdict(p.call(liveness_call()).await);
    assert_verdict(v, Verdict::Liveness(LivenessAnswer { is_live: true, score: Score { value: 0.75, threshold: Some(0.5), raw: Some(0.75) }, quality: None }));
    let req = only_request(&server).await;
    let body: serde_json::Value = serde_json::from_slice(&req.body).expect("json body");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(jpeg("liveness-selfie").bytes);
    assert_eq!(body, serde_json::json!({"mode": "passive", "image": {"data": b64}}));
}

fn path_matcher(p: &str) -> wiremock::matchers::PathExactMatcher {
    path(p)
}

#[test]
fn adapters_md_example_validates() {
    let doc = std::fs::read_to_string(repo().join("docs/ADAPTERS.md")).expect("docs/ADAPTERS.md");
    let section = doc.split("## A complete example").nth(1).expect("example section");
    let toml_text = section.split("```toml").nth(1).and_then(|s| s.split("```").next()).expect("toml block");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acme.toml");
    std::fs::write(&path, toml_text).expect("write");
    let file = spec::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let p = HttpProvider::from_file_with(&file, &HashMap::new(), reqwest::Client::new()).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.supports(SubCallKind::Liveness) && p.supports(SubCallKind::DocumentOcr));
    assert!(!p.supports(SubCallKind::FaceCompare));
}
