//! Contract tests for the AWS (Rekognition, Textract) and Azure (Face, Document Intelligence)
//! adapters: the exact request each vendor receives, including an independently recomputed SigV4
//! signature, and every recorded answer replayed into a golden unified result.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kycgate::providers::http::HttpProvider;
use kycgate::providers::spec;
use kycgate::providers::{
    DocumentFields, ErrorClass, IssueCode, OcrAnswer, Provider, ProviderError, Rejection, SubCall,
    SubCallKind, Verdict,
};
use crate::vendor::*;
use wiremock::matchers::{body_bytes, body_json as body_json_is, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn aws(vendor: &str, server: &MockServer) -> HttpProvider {
    let base = format!("{}_BASE_URL", vendor.to_ascii_uppercase());
    let uri = server.uri();
    provider(
        vendor,
        &[(&base, uri.as_str()), ("AWS_ACCESS_KEY_ID", AKID), ("AWS_SECRET_ACCESS_KEY", SECRET), ("AWS_REGION", "eu-west-1")],
    )
}

// === AWS Rekognition CompareFaces ===

async fn rekognition_with(status: u16, body: String, call: SubCall) -> (MockServer, Result<kycgate::providers::Answer, ProviderError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/")).respond_with(json_response(status, body)).mount(&server).await;
    let result = aws("aws_rekognition", &server).call(call).await;
    (server, result)
}

#[tokio::test]
async fn rekognition_request_is_sigv4_signed_json() {
    let (server, result) = rekognition_with(200, fixture("aws_rekognition", "success.json"), compare_call()).await;
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method.as_str(), "POST");
    assert_eq!(req.url.path(), "/");
    assert_eq!(header(req, "x-amz-target"), "RekognitionService.CompareFaces");
    assert_eq!(header(req, "content-type"), "application/x-amz-json-1.1");
    assert_eq!(header(req, "x-amz-date"), FIXED_AMZ_DATE);
    assert!(
        header(req, "authorization").contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target,"),
        "{}",
        header(req, "authorization")
    );
    let sig = verify_sigv4(req, AKID, SECRET, "eu-west-1", "rekognition");
    assert_eq!(
        body_json(req),
        serde_json::json!({
            "SimilarityThreshold": 0,
            "SourceImage": {"Bytes": b64(&jpeg("probe-selfie").bytes)},
            "TargetImage": {"Bytes": b64(&jpeg("reference-portrait").bytes)},
        })
    );
    // The best of the two faces in the reference, not the first.
    assert_verdict(verdict(result), compare(true, 0.991234, 0.8, 99.1234));

    // Another body, same time: still a valid signature, and a different one.
    let other = SubCall::FaceCompare { probe: jpeg("another-selfie"), reference: jpeg("reference-portrait") };
    let (server, _) = rekognition_with(200, fixture("aws_rekognition", "success.json"), other).await;
    let reqs = requests(&server).await;
    let sig2 = verify_sigv4(&reqs[0], AKID, SECRET, "eu-west-1", "rekognition");
    assert_ne!(sig, sig2, "the signature covers the body");
}

#[tokio::test]
async fn rekognition_session_token_is_sent_and_signed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(200, fixture("aws_rekognition", "success.json")))
        .mount(&server)
        .await;
    let uri = server.uri();
    let p = provider(
        "aws_rekognition",
        &[
            ("AWS_REKOGNITION_BASE_URL", uri.as_str()),
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", "session-token-xyz"),
        ],
    );
    p.call(compare_call()).await.expect("answer");
    let reqs = requests(&server).await;
    assert_eq!(header(&reqs[0], "x-amz-security-token"), "session-token-xyz");
    assert!(header(&reqs[0], "authorization").contains("x-amz-security-token"));
    // The region defaults to us-east-1 without AWS_REGION.
    verify_sigv4(&reqs[0], AKID, SECRET, "us-east-1", "rekognition");
}

#[tokio::test]
async fn rekognition_answers_and_errors() {
    let (_s, r) = rekognition_with(200, fixture("aws_rekognition", "no_match.json"), compare_call()).await;
    assert_verdict(verdict(r), compare(false, 0.034521, 0.8, 3.4521));

    let (_s, r) = rekognition_with(400, fixture("aws_rekognition", "invalid_parameter.json"), compare_call()).await;
    assert_verdict(verdict(r), Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)));

    // Throttling is an HTTP 500 or 400 with a __type: retryable either way.
    for (status, file) in [(500, "throttling.json"), (400, "provisioned_throughput.json")] {
        let (_s, r) = rekognition_with(status, fixture("aws_rekognition", file), compare_call()).await;
        let err = r.expect_err("throttled");
        assert!(matches!(err, ProviderError::RateLimited { .. }), "{file}: {err:?}");
        assert_eq!(err.class(), ErrorClass::Retryable);
    }

    let (_s, r) = rekognition_with(400, fixture("aws_rekognition", "access_denied.json"), compare_call()).await;
    let err = r.expect_err("denied");
    assert!(matches!(&err, ProviderError::Vendor { code, retryable: false, .. } if code == "AccessDeniedException"), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Fatal);
}

#[tokio::test]
async fn aws_without_keys_is_unavailable_and_silent() {
    let server = MockServer::start().await;
    let uri = server.uri();
    let p = provider("aws_rekognition", &[("AWS_REKOGNITION_BASE_URL", uri.as_str()), ("AWS_ACCESS_KEY_ID", AKID)]);
    assert!(p.unavailable(SubCallKind::FaceCompare).is_some_and(|u| u.reason.contains("AWS_SECRET_ACCESS_KEY")));
    assert!(matches!(p.call(compare_call()).await, Err(ProviderError::Unavailable(_))));
    assert!(requests(&server).await.is_empty());
}

// === AWS Textract AnalyzeID ===

async fn textract_with(status: u16, body: String, pages: Vec<kycgate::providers::Image>) -> (MockServer, Result<kycgate::providers::Answer, ProviderError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/")).respond_with(json_response(status, body)).mount(&server).await;
    let result = aws("aws_textract", &server).call(SubCall::DocumentOcr { pages }).await;
    (server, result)
}

#[tokio::test]
async fn textract_request_and_fields() {
    let (server, result) = textract_with(200, fixture("aws_textract", "success.json"), vec![jpeg("passport-page")]).await;
    let reqs = requests(&server).await;
    let req = &reqs[0];
    assert_eq!(header(req, "x-amz-target"), "Textract.AnalyzeID");
    assert_eq!(header(req, "content-type"), "application/x-amz-json-1.1");
    verify_sigv4(req, AKID, SECRET, "eu-west-1", "textract");
    assert_eq!(body_json(req), serde_json::json!({"DocumentPages": [{"Bytes": b64(&jpeg("passport-page").bytes)}]}));
    let want = DocumentFields { format: Some("PASSPORT".into()), confidence: Some(0.985), ..sample_fields() };
    assert_verdict(verdict(result), Verdict::Ocr(OcrAnswer { fields: want, portrait: None }));

    // A two-sided card sends both pages.
    let (server, _) =
        textract_with(200, fixture("aws_textract", "success.json"), vec![jpeg("card-front"), jpeg("card-back")]).await;
    let body = body_json(&requests(&server).await[0]);
    assert_eq!(body["DocumentPages"][1]["Bytes"], b64(&jpeg("card-back").bytes));
}

#[tokio::test]
async fn textract_answers_and_errors() {
    let page = || vec![jpeg("passport-page")];
    let (_s, r) = textract_with(200, fixture("aws_textract", "no_document.json"), page()).await;
    let mut want = Rejection::new(IssueCode::FailedToReadImage);
    want.message = "No identity document found in the image".into();
    assert_verdict(verdict(r), Verdict::Rejected(want));

    let (_s, r) = textract_with(400, fixture("aws_textract", "unsupported_document.json"), page()).await;
    assert_verdict(verdict(r), Verdict::Rejected(Rejection::new(IssueCode::FailedToReadImage)));

    let (_s, r) = textract_with(400, fixture("aws_textract", "provisioned_throughput.json"), page()).await;
    assert!(matches!(r, Err(ProviderError::RateLimited { .. })), "{r:?}");

    let (_s, r) = textract_with(500, fixture("aws_textract", "internal_error.json"), page()).await;
    let err = r.expect_err("500");
    assert!(matches!(&err, ProviderError::Vendor { retryable: true, .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
}

// === Azure AI Face: detect -> verify ===

const PROBE_FACE: &str = "c5c24a82-6845-4031-9d5d-978df9175426";
const REFERENCE_FACE: &str = "015839fb-fbd9-4f79-ace9-7675fc2f1dd9";

/// Mounts detect answers per image body and the verify answer.
async fn azure_face(
    probe_detect: ResponseTemplate,
    reference_detect: ResponseTemplate,
    verify: ResponseTemplate,
) -> (MockServer, Result<kycgate::providers::Answer, ProviderError>) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/face/v1.0/detect"))
        .and(body_bytes(jpeg("probe-selfie").bytes.to_vec()))
        .respond_with(probe_detect)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/face/v1.0/detect"))
        .and(body_bytes(jpeg("reference-portrait").bytes.to_vec()))
        .respond_with(reference_detect)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/face/v1.0/verify"))
        .and(body_json_is(serde_json::json!({"faceId1": PROBE_FACE, "faceId2": REFERENCE_FACE})))
        .respond_with(verify)
        .mount(&server)
        .await;
    let uri = server.uri();
    let result =
        provider("azure_face", &[("AZURE_FACE_ENDPOINT", uri.as_str()), ("AZURE_FACE_KEY", "az-key")]).call(compare_call()).await;
    (server, result)
}

fn ok(vendor: &str, file: &str) -> ResponseTemplate {
    json_response(200, fixture(vendor, file))
}

#[tokio::test]
async fn azure_face_detects_both_then_verifies_the_ids() {
    let (server, result) = azure_face(
        ok("azure_face", "detect_probe.json"),
        ok("azure_face", "detect_reference.json"),
        ok("azure_face", "verify_identical.json"),
    )
    .await;
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 3, "detect, detect, verify");
    for (req, image) in reqs[..2].iter().zip(["probe-selfie", "reference-portrait"]) {
        assert_eq!(req.url.path(), "/face/v1.0/detect");
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        assert_eq!(q.get("returnFaceId").map(String::as_str), Some("true"));
        assert_eq!(q.get("recognitionModel").map(String::as_str), Some("recognition_04"));
        assert_eq!(header(req, "content-type"), "application/octet-stream");
        assert_eq!(header(req, "ocp-apim-subscription-key"), "az-key");
        assert_eq!(req.body, jpeg(image).bytes.to_vec(), "raw image bytes as the body");
    }
    assert_eq!(reqs[2].url.path(), "/face/v1.0/verify");
    assert_eq!(header(&reqs[2], "content-type"), "application/json");
    assert_eq!(body_json(&reqs[2]), serde_json::json!({"faceId1": PROBE_FACE, "faceId2": REFERENCE_FACE}));
    assert_verdict(verdict(result), compare(true, 0.9137, 0.5, 0.9137));

    let (_s, result) = azure_face(
        ok("azure_face", "detect_probe.json"),
        ok("azure_face", "detect_reference.json"),
        ok("azure_face", "verify_different.json"),
    )
    .await;
    assert_verdict(verdict(result), compare(false, 0.0874, 0.5, 0.0874));
}

#[tokio::test]
async fn azure_face_rejections_stop_the_chain() {
    let (server, result) = azure_face(
        ok("azure_face", "detect_none.json"),
        ok("azure_face", "detect_reference.json"),
        ok("azure_face", "verify_identical.json"),
    )
    .await;
    assert_verdict(verdict(result), Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)));
    assert_eq!(requests(&server).await.len(), 1, "no further call after a rejection");

    let (_s, result) = azure_face(
        ok("azure_face", "detect_two_faces.json"),
        ok("azure_face", "detect_reference.json"),
        ok("azure_face", "verify_identical.json"),
    )
    .await;
    assert_verdict(verdict(result), Verdict::Rejected(Rejection::new(IssueCode::MultipleFaces)));

    let (server, result) = azure_face(
        ok("azure_face", "detect_probe.json"),
        ok("azure_face", "detect_none.json"),
        ok("azure_face", "verify_identical.json"),
    )
    .await;
    assert_verdict(verdict(result), Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)));
    assert_eq!(requests(&server).await.len(), 2);

    let (_s, result) = azure_face(
        json_response(400, fixture("azure_face", "invalid_image.json")),
        ok("azure_face", "detect_reference.json"),
        ok("azure_face", "verify_identical.json"),
    )
    .await;
    assert_verdict(verdict(result), Verdict::Rejected(Rejection::new(IssueCode::FailedToReadImage)));
}

#[tokio::test]
async fn azure_face_errors_are_classified() {
    let (_s, result) = azure_face(
        json_response(429, fixture("azure_face", "rate_limited.json")).insert_header("Retry-After", "2"),
        ok("azure_face", "detect_reference.json"),
        ok("azure_face", "verify_identical.json"),
    )
    .await;
    let err = result.expect_err("429");
    assert!(matches!(err, ProviderError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2)), "{err:?}");

    let (_s, result) = azure_face(
        ok("azure_face", "detect_probe.json"),
        ok("azure_face", "detect_reference.json"),
        json_response(403, fixture("azure_face", "unsupported_feature.json")),
    )
    .await;
    let err = result.expect_err("403");
    assert!(matches!(&err, ProviderError::Vendor { code, retryable: false, .. } if code == "UnsupportedFeature"), "{err:?}");
}

// === Azure Document Intelligence: 202 + Operation-Location polling ===

const ANALYZE: &str = "/documentintelligence/documentModels/prebuilt-idDocument:analyze";
const RESULT: &str = "/documentintelligence/documentModels/prebuilt-idDocument/analyzeResults/3b0b7b9c-0001";

async fn docintel(polls: Vec<ResponseTemplate>, location: Option<String>) -> (MockServer, Result<kycgate::providers::Answer, ProviderError>, Duration) {
    let server = MockServer::start().await;
    let loc = location.unwrap_or_else(|| format!("{}{RESULT}?api-version=2024-11-30", server.uri()));
    Mock::given(method("POST"))
        .and(path(ANALYZE))
        .respond_with(ResponseTemplate::new(202).insert_header("Operation-Location", loc.as_str()).insert_header("Retry-After", "0"))
        .mount(&server)
        .await;
    let n = polls.len();
    for (i, resp) in polls.into_iter().enumerate() {
        let mock = Mock::given(method("GET")).and(path(RESULT)).respond_with(resp);
        // Each answer once, the last one for good.
        let mock = if i + 1 < n { mock.up_to_n_times(1) } else { mock };
        mock.mount(&server).await;
    }
    let uri = server.uri();
    let p = provider("azure_docintel", &[("AZURE_DOCINTEL_ENDPOINT", uri.as_str()), ("AZURE_DOCINTEL_KEY", "di-key")]);
    let started = Instant::now();
    let result = p.call(SubCall::DocumentOcr { pages: vec![jpeg("passport-page")] }).await;
    (server, result, started.elapsed())
}

#[tokio::test]
async fn docintel_submits_then_polls_until_succeeded() {
    let running = json_response(200, fixture("azure_docintel", "running.json")).insert_header("Retry-After", "0");
    let (server, result, elapsed) =
        docintel(vec![running.clone(), running, ok("azure_docintel", "succeeded.json")], None).await;
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 4, "submit + 3 polls");
    let submit = &reqs[0];
    assert_eq!((submit.method.as_str(), submit.url.path()), ("POST", ANALYZE));
    assert_eq!(submit.url.query(), Some("api-version=2024-11-30"));
    assert_eq!(header(submit, "ocp-apim-subscription-key"), "di-key");
    assert_eq!(body_json(submit), serde_json::json!({"base64Source": b64(&jpeg("passport-page").bytes)}));
    for poll in &reqs[1..] {
        assert_eq!((poll.method.as_str(), poll.url.path()), ("GET", RESULT));
        assert_eq!(header(poll, "ocp-apim-subscription-key"), "di-key");
        assert!(poll.body.is_empty());
    }
    // Retry-After: 0 is honoured over the adapter's 1 s interval.
    assert!(elapsed < Duration::from_millis(900), "polled at the vendor's pace: {elapsed:?}");
    let want = DocumentFields {
        format: Some("idDocument.passport".into()),
        issuing_state: Some("UTO".into()),
        nationality: Some("UTO".into()),
        sex: Some("F".into()),
        confidence: Some(0.962),
        mrz_lines: Vec::new(),
        ..sample_fields()
    };
    assert_verdict(verdict(result), Verdict::Ocr(OcrAnswer { fields: want, portrait: None }));
}

#[tokio::test]
async fn docintel_failed_analysis_and_errors() {
    let (_s, result, _) = docintel(vec![ok("azure_docintel", "failed.json")], None).await;
    assert_verdict(verdict(result), Verdict::Rejected(Rejection::new(IssueCode::FailedToReadImage)));

    // A throttled poll waits and carries on.
    let throttled = json_response(429, fixture("azure_face", "rate_limited.json")).insert_header("Retry-After", "0");
    let (server, result, _) = docintel(vec![throttled, ok("azure_docintel", "succeeded.json")], None).await;
    assert!(matches!(verdict(result), Verdict::Ocr(_)));
    assert_eq!(requests(&server).await.len(), 3);

    // Credentials never leave the vendor's origin.
    let (server, result, _) = docintel(vec![], Some("http://169.254.169.254/latest".into())).await;
    assert!(matches!(&result, Err(ProviderError::Decode(m)) if m.contains("outside")), "{result:?}");
    assert_eq!(requests(&server).await.len(), 1);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(401, fixture("azure_docintel", "unauthorized.json")))
        .mount(&server)
        .await;
    let uri = server.uri();
    let p = provider("azure_docintel", &[("AZURE_DOCINTEL_ENDPOINT", uri.as_str()), ("AZURE_DOCINTEL_KEY", "bad")]);
    let err = p.call(SubCall::DocumentOcr { pages: vec![jpeg("passport-page")] }).await.expect_err("401");
    assert_eq!(err.class(), ErrorClass::Fatal, "{err:?}");
}

#[tokio::test]
async fn polling_gives_up_at_the_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "kind = \"http\"\nbase_url = \"http://127.0.0.1:9\"\n[endpoints.document_ocr]\npath = \"/jobs\"\n\
                body = { encoding = \"raw\", source = \"front\" }\n\
                poll = { path = \"/jobs/${job}\", capture = { job = \"/id\" }, interval_ms = 20, deadline_ms = 200, until = { pointer = \"/done\", equals = true } }\n\
                response = { document_number = \"/number\" }\n";
    let file_path = dir.path().join("slow.toml");
    std::fs::write(&file_path, text).expect("write");
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/jobs")).respond_with(json_response(201, "{\"id\":\"j/1\"}".into())).mount(&server).await;
    Mock::given(method("GET")).and(path("/jobs/j%2F1")).respond_with(json_response(200, "{\"done\":false}".into())).mount(&server).await;
    let file = spec::load_file(&file_path).expect("parses");
    let env: HashMap<String, String> = [("KYCGATE_SLOW_BASE_URL".to_string(), server.uri())].into();
    let p = HttpProvider::from_file_with(&file, &env, reqwest::Client::new()).expect("valid");
    let err = p.call(SubCall::DocumentOcr { pages: vec![jpeg("p")] }).await.expect_err("deadline");
    assert!(matches!(err, ProviderError::Timeout(d) if d == Duration::from_millis(200)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    let polls = requests(&server).await.len() - 1;
    assert!((3..=10).contains(&polls), "polled every 20 ms for 200 ms: {polls}");
}

// === AWS Face Liveness: session create / result fetch only ===

#[tokio::test]
async fn rekognition_liveness_sessions_create_and_fetch() {
    let server = MockServer::start().await;
    let target = |t: &str| wiremock::matchers::header("x-amz-target", format!("RekognitionService.{t}").as_str());
    Mock::given(method("POST"))
        .and(target("CreateFaceLivenessSession"))
        .respond_with(ok("aws_rekognition", "liveness_session_created.json"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(target("GetFaceLivenessSessionResults"))
        .respond_with(ok("aws_rekognition", "liveness_in_progress.json"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(target("GetFaceLivenessSessionResults"))
        .respond_with(ok("aws_rekognition", "liveness_succeeded.json"))
        .mount(&server)
        .await;
    let p = aws("aws_rekognition", &server);
    assert!(p.serves_liveness_sessions());
    assert!(!p.supports(SubCallKind::Liveness), "a single selfie cannot run AWS Face Liveness");

    let session = p.create_liveness_session().await.expect("session");
    assert_eq!(session.id, "0f959dbb-37cc-45d8-a08d-dc42cce85fa8");
    assert!(p.liveness_session_result(&session.id).await.expect("pending").is_none(), "IN_PROGRESS is not a verdict");
    let answer = p.liveness_session_result(&session.id).await.expect("result").expect("finished");
    let want = kycgate::providers::LivenessAnswer {
        is_live: true,
        score: kycgate::providers::Score { value: 0.975271, threshold: Some(0.8), raw: Some(97.5271) },
        quality: None,
    };
    assert_verdict(answer.verdict, Verdict::Liveness(want));

    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 3);
    for req in &reqs {
        verify_sigv4(req, AKID, SECRET, "eu-west-1", "rekognition");
    }
    let create = body_json(&reqs[0]);
    assert_eq!(create["Settings"], serde_json::json!({"AuditImagesLimit": 0}));
    assert!(create["ClientRequestToken"].as_str().is_some_and(|t| t.len() == 36), "{create}");
    assert_eq!(body_json(&reqs[1]), serde_json::json!({"SessionId": session.id}));
}

#[tokio::test]
async fn rekognition_liveness_session_failures() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ok("aws_rekognition", "liveness_expired.json")).mount(&server).await;
    let err = aws("aws_rekognition", &server).liveness_session_result("s-1").await.expect_err("expired");
    assert!(matches!(err, ProviderError::Vendor { retryable: false, .. }), "{err:?}");

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(400, fixture("aws_rekognition", "liveness_session_not_found.json")))
        .mount(&server)
        .await;
    let err = aws("aws_rekognition", &server).liveness_session_result("s-2").await.expect_err("not found");
    assert_eq!(err.class(), ErrorClass::Fatal, "{err:?}");

    // Adapters without sessions say so.
    let server = MockServer::start().await;
    let uri = server.uri();
    let p = provider("azure_face", &[("AZURE_FACE_ENDPOINT", uri.as_str()), ("AZURE_FACE_KEY", "k")]);
    assert!(matches!(p.create_liveness_session().await, Err(ProviderError::Unsupported(SubCallKind::Liveness))));
}

// === AWS default credential chain (an adapter that names no keys) ===

/// `aws_rekognition.toml` without its key lines, so the default chain finds the credentials.
fn rekognition_on_chain(server: &MockServer, env: &[(&str, &str)]) -> (HttpProvider, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(repo().join("providers/aws_rekognition.toml")).expect("adapter");
    let text: String = text
        .lines()
        .filter(|l| !["access_key_id", "secret_access_key", "session_token"].iter().any(|k| l.trim_start().starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.path().join("aws_rekognition.toml");
    std::fs::write(&path, text).expect("write adapter");
    let file = spec::load_file(&path).expect("adapter parses");
    let home = dir.path().display().to_string();
    let uri = server.uri();
    let mut vars: HashMap<String, String> =
        [("AWS_REKOGNITION_BASE_URL", uri.as_str()), ("AWS_REGION", "eu-west-1"), ("HOME", home.as_str())]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let p = HttpProvider::from_file_with(&file, &vars, reqwest::Client::new()).expect("adapter validates");
    (p.with_clock(fixed_time), dir)
}

async fn rekognition_vendor() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .respond_with(json_response(200, fixture("aws_rekognition", "success.json")))
        .mount(&server)
        .await;
    server
}

const TEMP_ID: &str = "ASIATEMPORARYEXAMPLE";
const TEMP_SECRET: &str = "temporary/secret/EXAMPLEKEY";
const TEMP_TOKEN: &str = "FwoGZXIvYXdzEXAMPLETOKEN";

#[tokio::test]
async fn chain_takes_instance_metadata_credentials_and_caches_them() {
    use wiremock::matchers::header as has_header;
    let imds = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/latest/api/token"))
        .and(has_header("x-aws-ec2-metadata-token-ttl-seconds", "21600"))
        .respond_with(ResponseTemplate::new(200).set_body_string("imds-session"))
        .mount(&imds)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/iam/security-credentials/"))
        .and(has_header("x-aws-ec2-metadata-token", "imds-session"))
        .respond_with(ResponseTemplate::new(200).set_body_string("kycgate-node\n"))
        .mount(&imds)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/iam/security-credentials/kycgate-node"))
        .and(has_header("x-aws-ec2-metadata-token", "imds-session"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "Code": "Success", "AccessKeyId": TEMP_ID, "SecretAccessKey": TEMP_SECRET,
            "Token": TEMP_TOKEN, "Expiration": "2100-01-01T00:00:00Z"
        })))
        .expect(1)
        .mount(&imds)
        .await;
    let vendor = rekognition_vendor().await;
    let (p, _dir) = rekognition_on_chain(&vendor, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.uri().as_str())]);
    for _ in 0..2 {
        assert!(p.call(compare_call()).await.is_ok());
    }
    let reqs = requests(&vendor).await;
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        verify_sigv4(req, TEMP_ID, TEMP_SECRET, "eu-west-1", "rekognition");
        assert_eq!(header(req, "x-amz-security-token"), TEMP_TOKEN);
    }
    // `.expect(1)`: the second call used the cached credentials (checked when `imds` drops).
}

#[tokio::test]
async fn chain_exchanges_a_web_identity_token_at_sts() {
    use wiremock::matchers::query_param;
    let sts = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .and(query_param("Action", "AssumeRoleWithWebIdentity"))
        .and(query_param("RoleArn", "arn:aws:iam::123456789012:role/kycgate"))
        .and(query_param("WebIdentityToken", "projected-service-account-token"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!(
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
             <AccessKeyId>{TEMP_ID}</AccessKeyId><SecretAccessKey>{TEMP_SECRET}</SecretAccessKey>\
             <SessionToken>{TEMP_TOKEN}</SessionToken><Expiration>2100-01-01T00:00:00Z</Expiration>\
             </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
        )))
        .expect(1)
        .mount(&sts)
        .await;
    let token_dir = tempfile::tempdir().expect("tempdir");
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, "projected-service-account-token\n").expect("token");
    let vendor = rekognition_vendor().await;
    let token_path = token_file.display().to_string();
    let (p, _dir) = rekognition_on_chain(
        &vendor,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_path.as_str()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/kycgate"),
            ("AWS_ENDPOINT_URL_STS", sts.uri().as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    assert!(p.call(compare_call()).await.is_ok());
    let req = &requests(&vendor).await[0];
    verify_sigv4(req, TEMP_ID, TEMP_SECRET, "eu-west-1", "rekognition");
    assert_eq!(header(req, "x-amz-security-token"), TEMP_TOKEN);
}

#[tokio::test]
async fn chain_reads_the_named_profile_and_says_what_it_tried_when_nothing_is_there() {
    let vendor = rekognition_vendor().await;
    let creds_dir = tempfile::tempdir().expect("tempdir");
    let creds = creds_dir.path().join("credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = AKIAWRONG\naws_secret_access_key = wrong\n\n[kyc]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n"),
    )
    .expect("credentials file");
    let creds_path = creds.display().to_string();
    let (p, _dir) = rekognition_on_chain(
        &vendor,
        &[("AWS_SHARED_CREDENTIALS_FILE", creds_path.as_str()), ("AWS_PROFILE", "kyc"), ("AWS_EC2_METADATA_DISABLED", "true")],
    );
    assert!(p.call(compare_call()).await.is_ok());
    verify_sigv4(&requests(&vendor).await[0], AKID, SECRET, "eu-west-1", "rekognition");

    // No source at all: a configuration error naming every source tried, and no request made.
    let empty = rekognition_vendor().await;
    let (p, _dir) = rekognition_on_chain(&empty, &[("AWS_EC2_METADATA_DISABLED", "true")]);
    match p.call(compare_call()).await {
        Err(ProviderError::Config(why)) => {
            for source in ["environment", "profile", "web identity", "container", "instance metadata"] {
                assert!(why.contains(source), "{why}");
            }
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert!(requests(&empty).await.is_empty());
}
