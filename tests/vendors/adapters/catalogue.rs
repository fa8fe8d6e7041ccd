//! Contract tests for ADVANCE.AI (signed token exchange, always-200 envelope), Regula Document
//! Reader (enum-keyed fields, MRZ over visual, base64 portrait) and Google Document AI
//! (service-account OAuth2, portrait cropped from a box), plus the generic HMAC signing auth.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use kycgate::providers::http::HttpProvider;
use kycgate::providers::spec;
use kycgate::providers::{
    DocumentFields, ErrorClass, Image, IssueCode, OcrAnswer, Provider, ProviderError, Rejection,
    SubCall, Verdict,
};
use crate::vendor::*;
use wiremock::matchers::{header as has_header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A provider whose clock is a shared counter of Unix milliseconds the test moves.
fn provider_with_clock(vendor: &str, vars: &[(&str, &str)], clock: Arc<AtomicU64>) -> HttpProvider {
    provider(vendor, vars).with_clock(move || UNIX_EPOCH + Duration::from_millis(clock.load(Ordering::SeqCst)))
}

// === ADVANCE.AI ===

/// The vendor's documented example: accessKey, secretKey, timestamp and the resulting signature.
const AAI_TS: u64 = 1_665_993_522_952;
const AAI_SIGNATURE: &str = "02209bbeaf0d0a3dd587f6a1ba22f84c98d142e3b545e77db7e4906ca56349f5";
const AAI_TOKEN: &str = "eyJhbGciOiJIUzUxMiJ9.c3ludGhldGljLXRva2VuLTE.c2ln";
const TOKEN_PATH: &str = "/openapi/auth/ticket/v1/generate-token";
const CHECK_PATH: &str = "/openapi/face-recognition/v4/check";

async fn advance_server(token: ResponseTemplate, check: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(TOKEN_PATH)).respond_with(token).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(CHECK_PATH))
        .and(has_header("x-access-token", AAI_TOKEN))
        .respond_with(check)
        .mount(&server)
        .await;
    server
}

fn advance(server: &MockServer, clock: Arc<AtomicU64>) -> HttpProvider {
    let uri = server.uri();
    provider_with_clock(
        "advance_ai",
        &[
            ("ADVANCE_AI_BASE_URL", uri.as_str()),
            ("ADVANCE_AI_ACCESS_KEY", "sampleaccesskey"),
            ("ADVANCE_AI_SECRET_KEY", "samplesecretkey"),
        ],
        clock,
    )
}

async fn paths(server: &MockServer) -> Vec<String> {
    requests(server).await.iter().map(|r| r.url.path().to_string()).collect()
}

#[tokio::test]
async fn advance_ai_signs_the_token_request_and_reuses_the_token() {
    let server = advance_server(ok("advance_ai", "token.json"), ok("advance_ai", "success.json")).await;
    let p = advance(&server, Arc::new(AtomicU64::new(AAI_TS)));
    assert_verdict(verdict(p.call(compare_call()).await), compare(true, 0.865, 0.7, 86.5));
    assert_verdict(verdict(p.call(compare_call()).await), compare(true, 0.865, 0.7, 86.5));
    let reqs = requests(&server).await;
    assert_eq!(paths(&server).await, [TOKEN_PATH, CHECK_PATH, CHECK_PATH], "one token for both calls");
    assert_eq!(header(&reqs[0], "content-type"), "application/json");
    assert_eq!(
        body_json(&reqs[0]),
        serde_json::json!({"accessKey": "sampleaccesskey", "timestamp": "1665993522952", "periodSecond": "3600",
                           "signature": AAI_SIGNATURE})
    );
    let parts = multipart(&reqs[1]);
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["firstImage", "secondImage"]);
    assert_eq!(parts[0].body, jpeg("probe-selfie").bytes.to_vec());
    assert_eq!(parts[1].body, jpeg("reference-portrait").bytes.to_vec());
    assert!(reqs[1].headers.get("authorization").is_none());
}

#[tokio::test]
async fn advance_ai_token_is_refreshed_before_it_expires() {
    let server = advance_server(ok("advance_ai", "token.json"), ok("advance_ai", "success.json")).await;
    let clock = Arc::new(AtomicU64::new(AAI_TS));
    let p = advance(&server, clock.clone());
    p.call(compare_call()).await.expect("first");
    // 30 minutes later: still cached (expiredTime is an hour after the first fetch).
    clock.store(AAI_TS + 30 * 60_000, Ordering::SeqCst);
    p.call(compare_call()).await.expect("second");
    // 30 s before expiry, inside the 60 s refresh margin: fetched again, signed anew.
    clock.store(1_665_997_122_952 - 30_000, Ordering::SeqCst);
    p.call(compare_call()).await.expect("third");
    let reqs = requests(&server).await;
    let tokens: Vec<_> = reqs.iter().filter(|r| r.url.path() == TOKEN_PATH).collect();
    assert_eq!(tokens.len(), 2);
    assert_eq!(body_json(tokens[1])["timestamp"], "1665997092952");
    assert_ne!(body_json(tokens[1])["signature"], AAI_SIGNATURE);
}

#[tokio::test]
async fn advance_ai_one_token_fetch_under_load() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ok("advance_ai", "token.json").set_delay(Duration::from_millis(150)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path(CHECK_PATH)).respond_with(ok("advance_ai", "success.json")).mount(&server).await;
    let p = Arc::new(advance(&server, Arc::new(AtomicU64::new(AAI_TS))));
    let calls = (0..12).map(|_| {
        let p = p.clone();
        tokio::spawn(async move { p.call(compare_call()).await })
    });
    for r in futures::future::join_all(calls).await {
        assert!(matches!(r.expect("task").expect("answer").verdict, Verdict::Compare(_)));
    }
    server.verify().await;
}

#[tokio::test]
async fn advance_ai_envelope_codes() {
    let clock = || Arc::new(AtomicU64::new(AAI_TS));
    let server = advance_server(ok("advance_ai", "token.json"), ok("advance_ai", "low_similarity.json")).await;
    // "41.0" arrives as a string: read as a number.
    assert_verdict(verdict(advance(&server, clock()).call(compare_call()).await), compare(false, 0.41, 0.7, 41.0));

    let server = advance_server(ok("advance_ai", "token.json"), ok("advance_ai", "no_face_first.json")).await;
    assert_verdict(
        verdict(advance(&server, clock()).call(compare_call()).await),
        Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)),
    );

    let busy = ok("advance_ai", "service_busy.json").insert_header("Retry-After", "3");
    let server = advance_server(ok("advance_ai", "token.json"), busy).await;
    let err = advance(&server, clock()).call(compare_call()).await.expect_err("busy");
    assert!(matches!(err, ProviderError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);

    let server = advance_server(ok("advance_ai", "token.json"), ok("advance_ai", "insufficient_balance.json")).await;
    let err = advance(&server, clock()).call(compare_call()).await.expect_err("balance");
    assert!(matches!(&err, ProviderError::Vendor { code, retryable: false, .. } if code == "INSUFFICIENT_BALANCE"), "{err:?}");

    // A refused token exchange never reaches the check endpoint.
    let server = advance_server(ok("advance_ai", "token_signature_error.json"), ok("advance_ai", "success.json")).await;
    let err = advance(&server, clock()).call(compare_call()).await.expect_err("token refused");
    assert!(matches!(&err, ProviderError::Vendor { code, retryable: false, .. } if code == "PARAMETER_ERROR"), "{err:?}");
    assert_eq!(paths(&server).await, [TOKEN_PATH]);
}

#[tokio::test]
async fn advance_ai_refused_token_is_dropped_and_refetched() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(TOKEN_PATH)).respond_with(ok("advance_ai", "token.json")).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(CHECK_PATH))
        .respond_with(ok("advance_ai", "iam_failed.json"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path(CHECK_PATH)).respond_with(ok("advance_ai", "success.json")).mount(&server).await;
    let p = advance(&server, Arc::new(AtomicU64::new(AAI_TS)));
    let err = p.call(compare_call()).await.expect_err("token refused");
    assert!(matches!(&err, ProviderError::Vendor { code, retryable: true, .. } if code == "IAM_FAILED"), "{err:?}");
    // The retry (the routing stack's job, done by hand here) signs a new token.
    assert_verdict(verdict(p.call(compare_call()).await), compare(true, 0.865, 0.7, 86.5));
    assert_eq!(paths(&server).await, [TOKEN_PATH, CHECK_PATH, TOKEN_PATH, CHECK_PATH]);
}

fn ok(vendor: &str, file: &str) -> ResponseTemplate {
    json_response(200, fixture(vendor, file))
}

// === Regula Document Reader ===

async fn regula_with(status: u16, body: String, pages: Vec<Image>) -> (MockServer, Result<kycgate::providers::Answer, ProviderError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/api/process")).respond_with(json_response(status, body)).mount(&server).await;
    let uri = server.uri();
    let result = provider("regula", &[("REGULA_BASE_URL", uri.as_str())]).call(SubCall::DocumentOcr { pages }).await;
    (server, result)
}

#[tokio::test]
async fn regula_request_prefers_mrz_values_and_returns_the_portrait() {
    let (server, result) = regula_with(200, fixture("regula", "success.json"), vec![jpeg("passport-page")]).await;
    let req = &requests(&server).await[0];
    assert_eq!(header(req, "content-type"), "application/json");
    // Sent once and released (not a resendable body), but still with its length, not chunked.
    assert_eq!(header(req, "content-length"), req.body.len().to_string());
    assert!(req.headers.get("transfer-encoding").is_none());
    assert_eq!(
        body_json(req),
        serde_json::json!({
            "processParam": {"scenario": "FullProcess", "resultTypeOutput": [36, 37], "dateFormat": "yyyy-MM-dd"},
            "List": [{"ImageData": {"image": b64(&jpeg("passport-page").bytes)}, "light": 6, "page_idx": 0}],
        })
    );
    use base64::Engine as _;
    let portrait = base64::engine::general_purpose::STANDARD.decode("/9j/4AAQSkZJRgABAXBvcnRyYWl0").expect("b64");
    let want = DocumentFields {
        document_code: Some("P".into()),
        // MRZ "UTO" over the visual misread "UT0", and so on below.
        issuing_state: Some("UTO".into()),
        nationality: Some("UTO".into()),
        sex: Some("F".into()),
        confidence: Some(0.99),
        valid: Some(true),
        // The MRZ checks Regula ran; expiry's "not performed" (2) is left out, not guessed.
        checks: [("document_number".to_string(), true), ("date_of_birth".to_string(), true)].into(),
        ..sample_fields()
    };
    assert_verdict(verdict(result), Verdict::Ocr(OcrAnswer { fields: want, portrait: Some(Bytes::from(portrait)) }));

    let (server, _) =
        regula_with(200, fixture("regula", "success.json"), vec![jpeg("card-front"), jpeg("card-back")]).await;
    let body = body_json(&requests(&server).await[0]);
    assert_eq!(body["List"][1], serde_json::json!({"ImageData": {"image": b64(&jpeg("card-back").bytes)}, "light": 6, "page_idx": 1}));
}

#[tokio::test]
async fn regula_answers_and_errors() {
    let page = || vec![jpeg("passport-page")];
    let (_s, r) = regula_with(200, fixture("regula", "no_text.json"), page()).await;
    let mut want = Rejection::new(IssueCode::MrzNotFound);
    want.message = "No document fields could be read".into();
    assert_verdict(verdict(r), Verdict::Rejected(want));

    // Processing not finished (timeout on the server): an error, never a partial answer.
    let (_s, r) = regula_with(200, fixture("regula", "timeout.json"), page()).await;
    assert!(matches!(r, Err(ProviderError::Vendor { retryable: false, .. })), "{r:?}");

    let (_s, r) = regula_with(403, fixture("regula", "licence_invalid.json"), page()).await;
    let err = r.expect_err("licence");
    assert_eq!(err.class(), ErrorClass::Fatal);

    let (_s, r) = regula_with(503, "<html>unavailable</html>".into(), page()).await;
    assert_eq!(r.expect_err("503").class(), ErrorClass::Retryable);
}

// === Google Document AI ===

const PROCESS: &str = "/v1/projects/kycgate-test/locations/eu/processors/abc123:process";

/// The replay's synthetic page: a red block where the fixture's portrait box is
/// (x 0.1..0.3, y 0.2..0.8 → pixels 20..60 × 20..80).
fn page_png() -> Image {
    kycgate::simulate::replay::synthetic_page().expect("png")
}

async fn google_server(token: ResponseTemplate, process: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(PROCESS))
        .and(has_header("authorization", "Bearer ya29.synthetic-access-token-1"))
        .respond_with(process)
        .mount(&server)
        .await;
    server
}

fn google(server: &MockServer, clock: Arc<AtomicU64>) -> HttpProvider {
    let uri = server.uri();
    let token_url = format!("{uri}/token");
    let key = fixture_path("google_docai", "service_account.json");
    let key = key.to_str().expect("utf-8 path");
    provider_with_clock(
        "google_docai",
        &[
            ("GOOGLE_DOCUMENTAI_BASE_URL", uri.as_str()),
            ("GOOGLE_OAUTH_TOKEN_URL", token_url.as_str()),
            ("GOOGLE_APPLICATION_CREDENTIALS", key),
            ("GOOGLE_DOCUMENTAI_PROJECT", "kycgate-test"),
            ("GOOGLE_DOCUMENTAI_PROCESSOR", "abc123"),
            ("GOOGLE_DOCUMENTAI_LOCATION", "eu"),
        ],
        clock,
    )
}

/// `google_docai` on Application Default Credentials other than a service-account key.
fn google_adc(server: &MockServer, env: &[(&str, &str)]) -> HttpProvider {
    let uri = server.uri();
    let token_url = format!("{uri}/token");
    let mut vars = vec![
        ("GOOGLE_DOCUMENTAI_BASE_URL", uri.as_str()),
        ("GOOGLE_OAUTH_TOKEN_URL", token_url.as_str()),
        ("GOOGLE_DOCUMENTAI_PROJECT", "kycgate-test"),
        ("GOOGLE_DOCUMENTAI_PROCESSOR", "abc123"),
        ("GOOGLE_DOCUMENTAI_LOCATION", "eu"),
    ];
    vars.extend_from_slice(env);
    provider_with_clock("google_docai", &vars, fixed_ms())
}

#[tokio::test]
async fn google_adc_authorized_user_from_the_gcloud_well_known_file() {
    let server = google_server(ok("google_docai", "token.json"), ok("google_docai", "success.json")).await;
    let gcloud = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        gcloud.path().join("application_default_credentials.json"),
        r#"{"type": "authorized_user", "client_id": "cid.apps.googleusercontent.com", "client_secret": "csecret", "refresh_token": "1//refresh"}"#,
    )
    .expect("well-known file");
    let dir = gcloud.path().display().to_string();
    let p = google_adc(&server, &[("CLOUDSDK_CONFIG", dir.as_str())]);
    assert!(p.call(SubCall::DocumentOcr { pages: vec![page_png()] }).await.is_ok());
    assert_eq!(paths(&server).await, ["/token", PROCESS]);
    let form: HashMap<String, String> = form(&requests(&server).await[0].body);
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!((form["client_id"].as_str(), form["refresh_token"].as_str()), ("cid.apps.googleusercontent.com", "1//refresh"));
}

#[tokio::test]
async fn google_adc_falls_back_to_the_metadata_server() {
    let server = google_server(ok("google_docai", "token.json"), ok("google_docai", "success.json")).await;
    Mock::given(method("GET"))
        .and(path("/computeMetadata/v1/instance/service-accounts/default/token"))
        .and(has_header("metadata-flavor", "Google"))
        .and(wiremock::matchers::query_param("scopes", "https://www.googleapis.com/auth/cloud-platform"))
        .respond_with(ok("google_docai", "token.json"))
        .mount(&server)
        .await;
    let host = server.address().to_string();
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path().display().to_string();
    let p = google_adc(&server, &[("GCE_METADATA_HOST", host.as_str()), ("HOME", home.as_str())]);
    assert!(p.call(SubCall::DocumentOcr { pages: vec![page_png()] }).await.is_ok());
    assert_eq!(paths(&server).await, ["/computeMetadata/v1/instance/service-accounts/default/token", PROCESS]);
}

fn fixed_ms() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(FIXED_SECS * 1000))
}

#[tokio::test]
async fn google_docai_service_account_token_and_portrait_crop() {
    let server = google_server(ok("google_docai", "token.json"), ok("google_docai", "success.json")).await;
    let page = page_png();
    let result = google(&server, fixed_ms()).call(SubCall::DocumentOcr { pages: vec![page.clone()] }).await;
    let reqs = requests(&server).await;
    assert_eq!(paths(&server).await, ["/token", PROCESS]);

    // The token request: an RS256 assertion signed with the service account's key.
    let form: HashMap<String, String> = form(&reqs[0].body);
    assert_eq!(form["grant_type"], "urn:ietf:params:oauth:grant-type:jwt-bearer");
    let public = std::fs::read(fixture_path("google_docai", "service_account_public.pem")).expect("public key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    let token_url = format!("{}/token", server.uri());
    validation.set_audience(&[token_url.as_str()]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &form["assertion"],
        &jsonwebtoken::DecodingKey::from_rsa_pem(&public).expect("pem"),
        &validation,
    )
    .expect("assertion verifies with the service account's public key")
    .claims;
    assert_eq!(claims["iss"], "docai-test@kycgate-test.iam.gserviceaccount.com");
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/cloud-platform");
    assert_eq!(claims["iat"], FIXED_SECS);
    assert_eq!(claims["exp"], FIXED_SECS + 3600);

    assert_eq!(
        body_json(&reqs[1]),
        serde_json::json!({"skipHumanReview": true, "rawDocument": {"content": b64(&page.bytes), "mimeType": "image/png"}})
    );
    let Verdict::Ocr(ocr) = verdict(result) else { panic!("not OCR") };
    let want = DocumentFields { confidence: Some(0.9954), ..sample_fields() };
    assert_eq!(ocr.fields, want);
    // The portrait is the box cut out of the page: 40×60 and red.
    let crop = image::load_from_memory(&ocr.portrait.expect("portrait cropped")).expect("jpeg").to_rgb8();
    assert_eq!((crop.width(), crop.height()), (40, 60));
    let px = crop.get_pixel(20, 30);
    assert!(px[0] > 180 && px[2] < 80, "crop is the red block: {px:?}");
}

#[tokio::test]
async fn google_token_is_fetched_once_under_load_and_refreshed_near_expiry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ok("google_docai", "token.json").set_delay(Duration::from_millis(150)))
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path(PROCESS)).respond_with(ok("google_docai", "success.json")).mount(&server).await;
    let clock = fixed_ms();
    let p = Arc::new(google(&server, clock.clone()));
    let calls = (0..10).map(|_| {
        let p = p.clone();
        tokio::spawn(async move { p.call(SubCall::DocumentOcr { pages: vec![page_png()] }).await })
    });
    for r in futures::future::join_all(calls).await {
        r.expect("task").expect("answer");
    }
    let count = |reqs: &[wiremock::Request]| reqs.iter().filter(|r| r.url.path() == "/token").count();
    assert_eq!(count(&requests(&server).await), 1, "one refresh at a time");
    // expires_in 3599 s: 3550 s later is inside the 60 s margin.
    clock.fetch_add(3_550_000, Ordering::SeqCst);
    p.call(SubCall::DocumentOcr { pages: vec![page_png()] }).await.expect("answer");
    assert_eq!(count(&requests(&server).await), 2);
}

#[tokio::test]
async fn google_docai_errors() {
    let pages = || SubCall::DocumentOcr { pages: vec![page_png()] };
    let server = google_server(ok("google_docai", "token.json"), json_response(429, fixture("google_docai", "resource_exhausted.json"))).await;
    let err = google(&server, fixed_ms()).call(pages()).await.expect_err("429");
    assert!(matches!(err, ProviderError::RateLimited { .. }), "{err:?}");

    let server = google_server(ok("google_docai", "token.json"), json_response(403, fixture("google_docai", "permission_denied.json"))).await;
    let err = google(&server, fixed_ms()).call(pages()).await.expect_err("403");
    assert!(matches!(&err, ProviderError::Vendor { code, retryable: false, .. } if code == "PERMISSION_DENIED"), "{err:?}");

    let server = google_server(ok("google_docai", "token.json"), ok("google_docai", "no_entities.json")).await;
    let r = verdict(google(&server, fixed_ms()).call(pages()).await);
    assert!(matches!(r, Verdict::Rejected(Rejection { code: IssueCode::FailedToReadImage, .. })), "{r:?}");

    let server = google_server(json_response(400, fixture("google_docai", "token_invalid_grant.json")), ok("google_docai", "success.json")).await;
    let err = google(&server, fixed_ms()).call(pages()).await.expect_err("bad grant");
    assert_eq!(err.class(), ErrorClass::Fatal, "{err:?}");
    assert_eq!(paths(&server).await, ["/token"]);
}

// === Generic constructs: HMAC signing, OAuth2 client credentials ===

fn inline_provider(text: &str, name: &str, server: &MockServer, vars: &[(&str, &str)]) -> HttpProvider {
    let dir = tempfile::tempdir().expect("tempdir");
    let file_path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&file_path, text).expect("write");
    let file = spec::load_file(&file_path).unwrap_or_else(|e| panic!("{e}"));
    let mut env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.insert(format!("KYCGATE_{}_BASE_URL", name.to_ascii_uppercase()), server.uri());
    HttpProvider::from_file_with(&file, &env, reqwest::Client::new())
        .unwrap_or_else(|e| panic!("{e}"))
        .with_clock(|| UNIX_EPOCH + Duration::from_secs(FIXED_SECS))
}

/// Sumsub's documented scheme: hex HMAC-SHA256(secret, ts + METHOD + path?query + body).
#[tokio::test]
async fn hmac_auth_signs_the_canonical_string() {
    let text = r#"kind = "http"
base_url = "http://127.0.0.1:9"
[auth]
type = "hmac"
secrets = { app_token = { env = "APP_TOKEN" }, secret_key = { env = "SECRET_KEY" } }
signature = { algorithm = "hmac_sha256", key = "${secret_key}", input = "${timestamp}${method}${path_query}${body}" }
headers = { "X-App-Token" = "${app_token}", "X-App-Access-Ts" = "${timestamp}", "X-App-Access-Sig" = "${signature}" }
[endpoints.liveness]
path = "/resources/check"
query = { level = "basic" }
body = { encoding = "json", images = [{ source = "image", pointer = "/image" }] }
response = { score = "/score", threshold = 0.5 }
"#;
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(json_response(200, "{\"score\":0.9}".into())).mount(&server).await;
    let p = inline_provider(text, "signed", &server, &[("APP_TOKEN", "tok-1"), ("SECRET_KEY", "s3cr3t")]);
    p.call(SubCall::Liveness { image: jpeg("selfie") }).await.expect("answer");
    let req = &requests(&server).await[0];
    let ts = FIXED_SECS.to_string();
    assert_eq!(header(req, "x-app-token"), "tok-1");
    assert_eq!(header(req, "x-app-access-ts"), ts);
    let canonical = format!("{ts}POST/resources/check?level=basic{}", String::from_utf8_lossy(&req.body));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cr3t");
    assert_eq!(header(req, "x-app-access-sig"), hex::encode(ring::hmac::sign(&key, canonical.as_bytes())));
}

/// A signed multipart body is built in memory, so the signature covers the exact bytes sent.
#[tokio::test]
async fn hmac_auth_covers_a_multipart_body() {
    let text = r#"kind = "http"
base_url = "http://127.0.0.1:9"
[auth]
type = "hmac"
secrets = { secret_key = { env = "SECRET_KEY" } }
signature = { algorithm = "hmac_sha256", key = "${secret_key}", input = "${body}", encoding = "base64" }
headers = { "X-HMAC-Signature" = "${signature}" }
[endpoints.face_compare]
path = "/compare"
body = { encoding = "multipart", fields = { mode = "strict" }, images = [{ source = "probe", field = "a" }, { source = "reference", field = "b" }] }
response = { score = "/score", threshold = 0.5 }
"#;
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(json_response(200, "{\"score\":0.7}".into())).mount(&server).await;
    let p = inline_provider(text, "multisigned", &server, &[("SECRET_KEY", "k3y")]);
    p.call(compare_call()).await.expect("answer");
    let req = &requests(&server).await[0];
    let parts = multipart(req);
    let names: Vec<(&str, Option<&str>)> = parts.iter().map(|p| (p.name.as_str(), p.filename.as_deref())).collect();
    assert_eq!(names, [("mode", None), ("a", Some("a.jpg")), ("b", Some("b.jpg"))]);
    assert_eq!(parts[1].body, jpeg("probe-selfie").bytes.to_vec());
    use base64::Engine as _;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k3y");
    let want = base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, &req.body));
    assert_eq!(header(req, "x-hmac-signature"), want);
}

#[tokio::test]
async fn oauth2_client_credentials() {
    let text = r#"kind = "http"
base_url = "http://127.0.0.1:9"
[vars]
token_url = { env = "TOKEN_URL" }
[auth]
type = "oauth2"
token_url = "${token_url}"
client_id = { env = "CLIENT_ID" }
client_secret = { env = "CLIENT_SECRET" }
client_auth = "basic"
scope = "kyc.read"
[endpoints.liveness]
path = "/live"
body = { encoding = "raw", source = "image", content_type = "image/jpeg" }
response = { score = "/score", threshold = 0.5 }
"#;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(json_response(200, "{\"access_token\":\"at-1\",\"token_type\":\"Bearer\",\"expires_in\":600}".into()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/live"))
        .and(has_header("authorization", "Bearer at-1"))
        .respond_with(json_response(200, "{\"score\":0.2}".into()))
        .mount(&server)
        .await;
    let token_url = format!("{}/oauth/token", server.uri());
    let p = inline_provider(
        text,
        "oauthed",
        &server,
        &[("TOKEN_URL", token_url.as_str()), ("CLIENT_ID", "cid"), ("CLIENT_SECRET", "csecret")],
    );
    for _ in 0..2 {
        let v = verdict(p.call(SubCall::Liveness { image: jpeg("selfie") }).await);
        assert!(matches!(v, Verdict::Liveness(ref l) if !l.is_live), "{v:?}");
    }
    let reqs = requests(&server).await;
    use base64::Engine as _;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("cid:csecret"));
    assert_eq!(header(&reqs[0], "authorization"), basic);
    let form: HashMap<String, String> = form(&reqs[0].body);
    assert_eq!(form, HashMap::from([("grant_type".into(), "client_credentials".into()), ("scope".into(), "kyc.read".into())]));
    assert_eq!(header(&reqs[1], "content-type"), "image/jpeg");
    assert_eq!(reqs[1].body, jpeg("selfie").bytes.to_vec());
    server.verify().await;
}

/// A 30 s token with the default 60 s margin is refreshed at half its life, not on every call.
#[tokio::test]
async fn short_lived_tokens_are_refreshed_at_half_life() {
    let text = r#"kind = "http"
base_url = "http://127.0.0.1:9"
[vars]
token_url = { env = "TOKEN_URL" }
[auth]
type = "oauth2"
token_url = "${token_url}"
client_id = { env = "CLIENT_ID" }
client_secret = { env = "CLIENT_SECRET" }
[endpoints.liveness]
path = "/live"
body = { encoding = "raw", source = "image" }
response = { score = "/score", threshold = 0.5 }
"#;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(json_response(200, "{\"access_token\":\"at-1\",\"expires_in\":30}".into()))
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path("/live")).respond_with(json_response(200, "{\"score\":0.9}".into())).mount(&server).await;
    let token_url = format!("{}/oauth/token", server.uri());
    let clock = fixed_ms();
    let c = clock.clone();
    let p = inline_provider(text, "shortlived", &server, &[("TOKEN_URL", token_url.as_str()), ("CLIENT_ID", "i"), ("CLIENT_SECRET", "s")])
        .with_clock(move || UNIX_EPOCH + Duration::from_millis(c.load(Ordering::SeqCst)));
    let tokens = |reqs: Vec<wiremock::Request>| reqs.iter().filter(|r| r.url.path() == "/oauth/token").count();
    p.call(SubCall::Liveness { image: jpeg("s") }).await.expect("answer");
    clock.fetch_add(10_000, Ordering::SeqCst);
    p.call(SubCall::Liveness { image: jpeg("s") }).await.expect("answer");
    assert_eq!(tokens(requests(&server).await), 1, "cached at 10 s");
    clock.fetch_add(10_000, Ordering::SeqCst);
    p.call(SubCall::Liveness { image: jpeg("s") }).await.expect("answer");
    assert_eq!(tokens(requests(&server).await), 2, "refreshed past 15 s");
}

#[test]
fn language_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        // A template naming nothing known.
        ("[endpoints.liveness]\npath = \"/x/${nope}\"\nbody = { encoding = \"raw\", source = \"image\" }\nresponse = { score = \"/s\", threshold = 0.5 }\n", "${nope}"),
        // A selector that does not exist.
        ("[endpoints.liveness]\npath = \"/x\"\nbody = { encoding = \"raw\", source = \"image\" }\nresponse = { score = \"/a/[second]/s\", threshold = 0.5 }\n", "unknown selector"),
        // An HMAC key chain naming a digest that does not come earlier.
        ("[auth]\ntype = \"hmac\"\nsecrets = { k = { env = \"K\" } }\nsignature = { algorithm = \"hmac_sha256\", key_digest = \"later\", input = \"${body}\" }\nheaders = { X-Sig = \"${signature}\" }\n[endpoints.liveness]\npath = \"/x\"\nbody = { encoding = \"raw\", source = \"image\" }\nresponse = { score = \"/s\", threshold = 0.5 }\n", "not an earlier entry"),
        // Polling without a URL source.
        ("[endpoints.liveness]\npath = \"/x\"\nbody = { encoding = \"raw\", source = \"image\" }\npoll = { until = { pointer = \"/s\", present = true } }\nresponse = { score = \"/s\", threshold = 0.5 }\n", "exactly one of `url_header`, `path`"),
    ];
    for (i, (tail, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&path, format!("kind = \"http\"\nbase_url = \"http://localhost\"\n{tail}")).expect("write");
        let file = spec::load_file(&path).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let msg = HttpProvider::from_file_with(&file, &HashMap::new(), reqwest::Client::new()).expect_err("invalid").to_string();
        assert!(msg.contains(&format!("case{i}.toml")) && msg.contains(needle), "case {i}: {msg}");
    }
    // A typo inside a digest table is an unknown key, not a silently sent field.
    let path = dir.path().join("digest.toml");
    std::fs::write(
        &path,
        "kind = \"http\"\nbase_url = \"http://localhost\"\n[auth]\ntype = \"token\"\nurl = \"/t\"\ntoken_pointer = \"/t\"\n\
         fields = { sig = { algorithm = \"sha256\", inptu = \"x\" } }\n[endpoints.liveness]\npath = \"/x\"\n",
    )
    .expect("write");
    let msg = spec::load_file(&path).expect_err("typo").to_string();
    assert!(msg.contains("digest.toml") && msg.contains("inptu"), "{msg}");
}

// === Tencent Cloud iai: TC3-HMAC-SHA256 through the generic HMAC auth ===

async fn tencent_with(body: String) -> (MockServer, Result<kycgate::providers::Answer, ProviderError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/")).respond_with(json_response(200, body)).mount(&server).await;
    let uri = server.uri();
    let p = provider(
        "tencent_iai",
        &[("TENCENT_IAI_BASE_URL", uri.as_str()), ("TENCENTCLOUD_SECRET_ID", "AKIDtest"), ("TENCENTCLOUD_SECRET_KEY", "tc-secret")],
    );
    let result = p.call(compare_call()).await;
    (server, result)
}

#[tokio::test]
async fn tencent_request_carries_a_valid_tc3_signature() {
    let (server, result) = tencent_with(fixture("tencent_iai", "success.json")).await;
    let req = &requests(&server).await[0];
    assert_eq!(header(req, "x-tc-action"), "CompareFace");
    assert_eq!(header(req, "x-tc-version"), "2020-03-03");
    assert_eq!(header(req, "x-tc-region"), "ap-singapore");
    assert_eq!(header(req, "x-tc-timestamp"), FIXED_SECS.to_string());
    let ct = header(req, "content-type");
    assert_eq!(ct, "application/json; charset=utf-8");
    assert_eq!(
        body_json(req),
        serde_json::json!({"FaceModelVersion": "3.0", "QualityControl": 0, "ImageA": b64(&jpeg("probe-selfie").bytes),
                           "ImageB": b64(&jpeg("reference-portrait").bytes)})
    );
    // Tencent's published algorithm, recomputed here from what the server received.
    let date = "2026-11-27";
    let canonical = format!(
        "POST\n/\n\ncontent-type:{ct}\nhost:{}\n\ncontent-type;host\n{}",
        header(req, "host"),
        sha256_hex(&req.body)
    );
    let to_sign = format!("TC3-HMAC-SHA256\n{FIXED_SECS}\n{date}/iai/tc3_request\n{}", sha256_hex(canonical.as_bytes()));
    let k_date = hmac(b"TC3tc-secret", date);
    let k_service = hmac(&k_date, "iai");
    let k_signing = hmac(&k_service, "tc3_request");
    let signature = hex::encode(hmac(&k_signing, &to_sign));
    assert_eq!(
        header(req, "authorization"),
        format!("TC3-HMAC-SHA256 Credential=AKIDtest/{date}/iai/tc3_request, SignedHeaders=content-type;host, Signature={signature}")
    );
    assert_verdict(verdict(result), compare(true, 0.8762, 0.5, 87.62));
}

#[tokio::test]
async fn tencent_errors_inside_http_200() {
    let (_s, r) = tencent_with(fixture("tencent_iai", "no_face.json")).await;
    assert_verdict(verdict(r), Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)));
    let (_s, r) = tencent_with(fixture("tencent_iai", "rate_limited.json")).await;
    assert!(matches!(r, Err(ProviderError::RateLimited { .. })), "{r:?}");
    let (_s, r) = tencent_with(fixture("tencent_iai", "signature_failure.json")).await;
    let err = r.expect_err("auth");
    assert!(matches!(&err, ProviderError::Vendor { code, retryable: false, .. } if code == "AuthFailure.SignatureFailure"), "{err:?}");
}

// === Mindee Passport ===

async fn mindee_with(status: u16, body: String) -> (MockServer, Result<kycgate::providers::Answer, ProviderError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/products/mindee/passport/v1/predict"))
        .and(has_header("authorization", "Token mindee-key"))
        .respond_with(json_response(status, body))
        .mount(&server)
        .await;
    let uri = server.uri();
    let p = provider("mindee_passport", &[("MINDEE_BASE_URL", uri.as_str()), ("MINDEE_API_KEY", "mindee-key")]);
    let result = p.call(SubCall::DocumentOcr { pages: vec![jpeg("passport-page")] }).await;
    (server, result)
}

#[tokio::test]
async fn mindee_request_and_fields() {
    let (server, result) = mindee_with(201, fixture("mindee_passport", "success.json")).await;
    let parts = multipart(&requests(&server).await[0]);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].name, "document");
    assert_eq!(parts[0].body, jpeg("passport-page").bytes.to_vec());
    let want = DocumentFields {
        issuing_state: Some("UTO".into()),
        given_names: Some("JENNIFER ANN".into()),
        sex: Some("F".into()),
        confidence: Some(0.98),
        mrz_lines: vec![
            "P<UTOSAMPLE<<JENNIFER<ANN<<<<<<<<<<<<<<<<<<<".into(),
            "X000123453UTO8001014F2701146<<<<<<<<<<<<<<06".into(),
        ],
        ..sample_fields()
    };
    assert_verdict(verdict(result), Verdict::Ocr(OcrAnswer { fields: want, portrait: None }));

    let (_s, r) = mindee_with(201, fixture("mindee_passport", "no_mrz.json")).await;
    assert_verdict(verdict(r), Verdict::Rejected(Rejection::new(IssueCode::MrzNotFound)));
    let (_s, r) = mindee_with(429, fixture("mindee_passport", "too_many_requests.json")).await;
    assert!(matches!(r, Err(ProviderError::RateLimited { .. })), "{r:?}");
    let (_s, r) = mindee_with(401, fixture("mindee_passport", "unauthorized.json")).await;
    let err = r.expect_err("401");
    assert!(matches!(&err, ProviderError::Vendor { code, retryable: false, .. } if code == "Unauthorized"), "{err:?}");
}
