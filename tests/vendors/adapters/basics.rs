//! Adapter basics: file errors name the file, line and key; Face++, CompreFace, KBY-AI and
//! Didit send the exact request their vendors document; credentials from files and base-URL
//! variables; the ADAPTERS.md example validates.

use std::collections::HashMap;
use std::path::Path;

use kycgate::providers::http::{EnvSource, HttpProvider};
use kycgate::providers::spec::{self, SpecError};
use kycgate::providers::{Answer, LivenessAnswer, Provider, ProviderError, Score, SubCallKind, Verdict};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::vendor::*;

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

// === Face++ (its answers are rows of the table in `adapters`) ===

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
async fn facepp_without_credentials_does_not_call() {
    let server = MockServer::start().await;
    let uri = server.uri();
    let p = provider("facepp", &[("FACEPP_BASE_URL", uri.as_str()), ("FACEPP_API_KEY", "k")]);
    assert!(p.unavailable(SubCallKind::FaceCompare).is_some_and(|u| u.reason.contains("FACEPP_API_SECRET")));
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
