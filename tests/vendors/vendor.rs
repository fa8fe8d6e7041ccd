//! Shared helpers of the vendor tests: fixtures, adapters against wiremock with a
//! fixed clock, synthetic images, a multipart reader and an independent SigV4 verifier.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kycgate::providers::http::HttpProvider;
use kycgate::providers::spec;
use kycgate::providers::{Answer, CompareAnswer, Image, ProviderError, Score, SubCall, Verdict};
use wiremock::{MockServer, Request, ResponseTemplate};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture_path(vendor: &str, name: &str) -> PathBuf {
    repo().join("providers/fixtures").join(vendor).join(name)
}

pub fn fixture(vendor: &str, name: &str) -> String {
    let p = fixture_path(vendor, name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

pub fn json_response(status: u16, body: String) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.into_bytes(), "application/json")
}

/// 2026-11-27T04:00:00Z, the clock of every signed request in these suites.
pub const FIXED_SECS: u64 = 1_795_752_000;
pub const FIXED_AMZ_DATE: &str = "20261127T040000Z";

pub fn fixed_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(FIXED_SECS)
}

/// The adapter `providers/<vendor>.toml` with `vars` as its environment and a fixed clock.
pub fn provider(vendor: &str, vars: &[(&str, &str)]) -> HttpProvider {
    provider_at(vendor, vars, fixed_time())
}

pub fn provider_at(vendor: &str, vars: &[(&str, &str)], at: SystemTime) -> HttpProvider {
    let file = spec::load_file(&repo().join("providers").join(format!("{vendor}.toml"))).expect("adapter parses");
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    HttpProvider::from_file_with(&file, &env, reqwest::Client::new()).expect("adapter validates").with_clock(move || at)
}

pub fn compare_call() -> SubCall {
    SubCall::FaceCompare { probe: jpeg("probe-selfie"), reference: jpeg("reference-portrait") }
}

pub fn liveness_call() -> SubCall {
    SubCall::Liveness { image: jpeg("liveness-selfie") }
}

pub fn jpeg(tag: &str) -> Image {
    let mut b = vec![0xff, 0xd8, 0xff, 0xe0];
    b.extend_from_slice(tag.as_bytes());
    Image { bytes: Bytes::from(b), mime: "image/jpeg" }
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn verdict(result: Result<Answer, ProviderError>) -> Verdict {
    let answer = result.expect("answer");
    assert!(answer.raw.is_some(), "raw vendor JSON kept");
    answer.verdict
}

pub fn compare(is_match: bool, value: f64, threshold: f64, raw: f64) -> Verdict {
    Verdict::Compare(CompareAnswer { is_match, score: Score { value, threshold: Some(threshold), raw: Some(raw) } })
}

pub fn assert_verdict(got: Verdict, want: Verdict) {
    match (&got, &want) {
        (Verdict::Compare(a), Verdict::Compare(b)) => assert_eq!(a, b),
        (Verdict::Liveness(a), Verdict::Liveness(b)) => assert_eq!(a, b),
        (Verdict::Rejected(a), Verdict::Rejected(b)) => assert_eq!(a, b),
        (Verdict::Ocr(a), Verdict::Ocr(b)) => {
            assert_eq!(a.fields, b.fields, "fields: got {:#?}", serde_json::to_value(&a.fields).ok());
            assert_eq!(a.portrait, b.portrait);
        }
        _ => panic!("got {got:?}, want {want:?}"),
    }
}

pub async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.expect("recording on")
}

pub fn header<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no header {name}"))
}

pub fn body_json(req: &Request) -> serde_json::Value {
    serde_json::from_slice(&req.body).expect("JSON body")
}

/// One part of a multipart body.
#[derive(Debug)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Minimal multipart/form-data reader, enough to assert what a vendor receives.
pub fn multipart(req: &Request) -> Vec<Part> {
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

pub fn field<'a>(parts: &'a [Part], name: &str) -> &'a Part {
    parts.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no multipart field `{name}` in {parts:?}"))
}

pub async fn only_request(server: &MockServer) -> Request {
    let mut reqs = server.received_requests().await.expect("recording on");
    assert_eq!(reqs.len(), 1, "exactly one vendor request");
    reqs.remove(0)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

pub fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data.as_bytes()).as_ref().to_vec()
}

/// Recomputes the AWS Signature V4 of a received request from AWS's published algorithm (not
/// with the signer under test) and checks the Authorization header against it. Returns the
/// signature.
pub fn verify_sigv4(req: &Request, access_key: &str, secret: &str, region: &str, service: &str) -> String {
    let auth = header(req, "authorization");
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").unwrap_or_else(|| panic!("not SigV4: {auth}"));
    let part = |k: &str| {
        rest.split(", ").find_map(|p| p.strip_prefix(&format!("{k}="))).unwrap_or_else(|| panic!("no {k} in {auth}"))
    };
    let amz_date = header(req, "x-amz-date");
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    assert_eq!(part("Credential"), format!("{access_key}/{scope}"));
    let signed = part("SignedHeaders");
    let mut canonical_headers = String::new();
    for name in signed.split(';') {
        canonical_headers.push_str(&format!("{name}:{}\n", header(req, name).trim()));
    }
    let mut query: Vec<(String, String)> = req.url.query_pairs().into_owned().collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.as_str(),
        req.url.path(),
        query.join("&"),
        canonical_headers,
        signed,
        sha256_hex(&req.body)
    );
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical.as_bytes()));
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    let k_signing = hmac(&k_service, "aws4_request");
    let expected = hex::encode(hmac(&k_signing, &to_sign));
    assert_eq!(part("Signature"), expected, "SigV4 signature does not verify");
    expected
}

/// Decodes an `application/x-www-form-urlencoded` body.
pub fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    let url = reqwest::Url::parse(&format!("http://form/?{}", String::from_utf8_lossy(body))).expect("form body");
    url.query_pairs().into_owned().collect()
}

/// The fields of the synthetic UTO specimen most document fixtures describe.
pub fn sample_fields() -> kycgate::providers::DocumentFields {
    kycgate::providers::DocumentFields {
        surname: Some("SAMPLE".into()),
        given_names: Some("JENNIFER".into()),
        document_number: Some("X00012345".into()),
        date_of_birth: Some(kycgate::providers::PartialDate::ymd(1980, 1, 1)),
        date_of_expiry: Some(kycgate::providers::PartialDate::ymd(2027, 1, 14)),
        date_of_issue: Some(kycgate::providers::PartialDate::ymd(2017, 1, 15)),
        mrz_lines: vec![
            "P<UTOSAMPLE<<JENNIFER<<<<<<<<<<<<<<<<<<<<<<<".into(),
            "X000123453UTO8001014F2701146<<<<<<<<<<<<<<06".into(),
        ],
        ..kycgate::providers::DocumentFields::default()
    }
}
