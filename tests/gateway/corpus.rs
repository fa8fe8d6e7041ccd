//! A hostile corpus (issue 12): a table of malformed, oversized, forged and odd requests, each
//! with the answer the gateway documents for it, all sent over raw TCP to one real `kycgate
//! serve` process (its own process, so its memory is measured alone). After the run the server
//! still answers `/healthz`, no answer was a 5xx, nothing hung or panicked, and its peak RSS
//! stayed under [`MAX_RSS_BYTES`].
//!
//! Image expectations are "400 naming the field" rather than a decoder's wording, so they hold
//! whichever image check (full decode, header + structure) is in force.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Peak resident memory allowed to the gateway process over the whole corpus (models loaded
/// included: the local provider's ONNX models are most of it).
const MAX_RSS_BYTES: u64 = 512 * 1024 * 1024;
/// An answer must come within this; past it the case counts as a hang.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
const JWT_SECRET: &str = "corpus-jwt-secret";
const MAX_IMAGE_BYTES: usize = 2_000_000;
const MAX_BODY_BYTES: usize = 8_000_000;
const SERVICES: &[&str] =
    &["face_liveness", "register_face", "authenticate_face", "ocr_passport", "ocr_card", "kyc_passport", "kyc_card"];

/// The file fields of each service (Progeny's form).
fn image_fields(service: &str) -> &'static [&'static str] {
    match service {
        "face_liveness" | "register_face" | "authenticate_face" => &["image"],
        "ocr_passport" => &["passport_image"],
        "ocr_card" => &["front_id", "back_id"],
        "kyc_passport" => &["selfie_image", "passport_image"],
        _ => &["selfie_image", "front_id", "back_id"],
    }
}

/// What a case must be answered with.
#[derive(Debug, Clone)]
enum Want {
    /// This status and exactly this JSON body.
    Json(u16, Value),
    /// This status and `{"detail": <this>}`.
    Detail(u16, &'static str),
    /// This status and a `detail` starting with this.
    DetailPrefix(u16, &'static str),
    /// 400 with DRF field errors naming (at least) these fields, each a list of messages.
    Fields(&'static [&'static str]),
    /// 400 with this field's first message exactly this.
    FieldMsg(&'static str, &'static str),
    /// 200 `{"id": <uuid v4>}`: accepted.
    Id,
    /// Answered by hyper before any handler: this status and an empty body (docs/SECURITY.md).
    Bare(u16),
    /// This status, body not checked (HEAD).
    Status(u16),
    /// Closed without an answer (not HTTP/1.x at all).
    NoAnswer,
}

struct Case {
    name: String,
    request: Vec<u8>,
    want: Want,
}

fn case(name: impl Into<String>, request: Vec<u8>, want: Want) -> Case {
    Case { name: name.into(), request, want }
}

/// A request with `Host`, `Connection: close` and a `Content-Length` for a body.
fn http(method: &str, target: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

fn key() -> (&'static str, String) {
    bearer(KEY)
}

/// A multipart part.
enum P {
    /// A file part (`filename="f.bin"`, `application/octet-stream`).
    F(&'static str, Vec<u8>),
    /// A text part.
    T(&'static str, String),
    /// Bytes written as they are between boundaries.
    Raw(Vec<u8>),
}

const BOUNDARY: &str = "corpus-7f3a";

fn multipart(parts: &[P]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match p {
            P::F(name, bytes) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                        .as_bytes(),
                );
                body.extend_from_slice(bytes);
            }
            P::T(name, value) => {
                body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}").as_bytes());
            }
            P::Raw(bytes) => body.extend_from_slice(bytes),
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

fn submit(service: &str, headers: &[(&str, String)], parts: &[P]) -> Vec<u8> {
    let (ct, body) = multipart(parts);
    let mut h = headers.to_vec();
    h.push(("Content-Type", ct));
    http("POST", &format!("/api/v3/services/{service}/"), &h, &body)
}

fn json_post(target: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    http("POST", target, &[("Content-Type", content_type.to_string())], body)
}

// === Hostile images ===

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// A PNG whose header claims `side`×`side` RGB pixels, with a few bytes of data: a
/// decompression bomb if anyone allocated by the header.
fn png_claiming(side: u32) -> Vec<u8> {
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &vec![0u8; 1 << 16]).expect("deflate");
    let idat = z.finish().expect("deflate");
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    out.extend(png_chunk(b"IDAT", &idat));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

/// A real JPEG whose frame header (SOF) is rewritten to claim `side`×`side` pixels. The marker
/// segments are walked (an EXIF thumbnail may hold a SOF of its own inside APP1).
fn jpeg_claiming(jpeg: &[u8], side: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let mut at = 2;
    loop {
        assert!(at + 4 <= out.len() && out[at] == 0xFF, "a JPEG marker at {at}");
        let marker = out[at + 1];
        let len = usize::from(u16::from_be_bytes([out[at + 2], out[at + 3]]));
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            // FFCx, length (2), precision (1), height (2), width (2).
            out[at + 5..at + 7].copy_from_slice(&side.to_be_bytes());
            out[at + 7..at + 9].copy_from_slice(&side.to_be_bytes());
            return out;
        }
        at += 2 + len;
    }
}

struct Images {
    good_png: Vec<u8>,
    jpeg: Vec<u8>,
}

/// The broken images every file field is tried with: (label, bytes).
fn bad_images(img: &Images) -> Vec<(&'static str, Vec<u8>)> {
    let mut huge = b"\xFF\xD8\xFF\xE0".to_vec();
    huge.resize(MAX_IMAGE_BYTES + 1, 0x55);
    vec![
        ("text", b"hello, I am not an image at all".to_vec()),
        ("pdf", b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n1 0 obj << /Type /Catalog >> endobj\n".to_vec()),
        ("gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xFF\xFF\xFF\x00\x00\x00!\xF9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec()),
        ("truncated jpeg", img.jpeg[..img.jpeg.len() / 3].to_vec()),
        ("truncated png", img.good_png[..img.good_png.len() / 2].to_vec()),
        ("png bomb 100000 px", png_claiming(100_000)),
        ("jpeg bomb 60000 px", jpeg_claiming(&img.jpeg, 60_000)),
        ("over max_bytes", huge),
    ]
}

// === Tokens ===

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn claims(token_type: &str, exp: u64) -> Value {
    json!({ "sub": USER, "token_type": token_type, "exp": exp, "iat": now_s().saturating_sub(5), "jti": "corpus" })
}

fn jwt(alg: jsonwebtoken::Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()))
        .expect("jwt")
}

fn jwt_alg_none(claims: &Value) -> String {
    format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), b64url(claims.to_string().as_bytes()))
}

// === The corpus ===

const NOT_PROVIDED: &str = "Authentication credentials were not provided.";
const NOT_VALID: &str = "Given token not valid for any token type";
const BAD_LOGIN: &str = "No active account found with the given credentials";
const BAD_REFRESH: &str = "Token is invalid or expired";
const NO_FILE: &str = "No file was submitted.";
const EMPTY_FILE: &str = "The submitted file is empty.";
const NOT_A_FILE: &str = "The submitted data was not a file. Check the encoding type on the form.";

fn corpus(img: &Images, foreign_task: &str) -> Vec<Case> {
    use Want::*;
    let mut c = Vec::new();
    let png = || img.good_png.clone();

    // --- Forms, per service: missing, empty, text-for-file and broken images, each named. ---
    for &s in SERVICES {
        let fields = image_fields(s);
        let wanted: &'static [&'static str] = match s {
            "authenticate_face" => &["image", "uuid"],
            _ => fields,
        };
        c.push(case(format!("{s}: empty form"), submit(s, &[key()], &[]), Fields(wanted)));
        c.push(case(format!("{s}: only unknown fields"), submit(s, &[key()], &[P::T("foo", "bar".into()), P::F("nope", png())]), Fields(wanted)));
        c.push(case(format!("{s}: empty file"), submit(s, &[key()], &[P::F(fields[0], Vec::new())]), FieldMsg(fields[0], EMPTY_FILE)));
        c.push(case(format!("{s}: text instead of a file"), submit(s, &[key()], &[P::T(fields[0], "aGVsbG8=".into())]), FieldMsg(fields[0], NOT_A_FILE)));
        for (label, bytes) in bad_images(img) {
            let mut parts: Vec<P> = fields.iter().map(|&f| P::F(f, png())).collect();
            parts[0] = P::F(fields[0], bytes);
            if s == "authenticate_face" {
                parts.push(P::T("uuid", uuid::Uuid::new_v4().to_string()));
            }
            let named: &'static [&'static str] = &fields[..1];
            c.push(case(format!("{s}: {label} as {}", fields[0]), submit(s, &[key()], &parts), Fields(named)));
        }
    }
    // Field values: booleans, uuids, unicode, duplicates.
    c.push(case("extend_data not a boolean", submit("face_liveness", &[key()], &[P::F("image", png()), P::T("extend_data", "maybe".into())]), FieldMsg("extend_data", "Must be a valid boolean.")));
    c.push(case("extend_data unicode", submit("face_liveness", &[key()], &[P::F("image", png()), P::T("extend_data", "✓真".into())]), FieldMsg("extend_data", "Must be a valid boolean.")));
    c.push(case("extend_data 100 kB", submit("face_liveness", &[key()], &[P::F("image", png()), P::T("extend_data", "t".repeat(100_000))]), FieldMsg("extend_data", "Must be a valid boolean.")));
    c.push(case("uuid not a uuid", submit("authenticate_face", &[key()], &[P::F("image", png()), P::T("uuid", "123".into())]), FieldMsg("uuid", "Must be a valid UUID.")));
    c.push(case("uuid SQL", submit("authenticate_face", &[key()], &[P::F("image", png()), P::T("uuid", "' OR 1=1 --".into())]), FieldMsg("uuid", "Must be a valid UUID.")));
    c.push(case("uuid blank", submit("authenticate_face", &[key()], &[P::F("image", png()), P::T("uuid", "   ".into())]), FieldMsg("uuid", "This field is required.")));
    c.push(case("uuid of no registered face", submit("authenticate_face", &[key()], &[P::F("image", png()), P::T("uuid", uuid::Uuid::new_v4().to_string())]), FieldMsg("uuid", "No registered face with this uuid.")));
    c.push(case("uuid of a task, not a face", submit("authenticate_face", &[key()], &[P::F("image", png()), P::T("uuid", foreign_task.to_string())]), FieldMsg("uuid", "No registered face with this uuid.")));
    c.push(case("every field wrong at once", submit("kyc_card", &[key()], &[P::F("selfie_image", Vec::new()), P::T("front_id", "x".into()), P::T("extend_data", "?".into())]), Fields(&["selfie_image", "front_id", "back_id", "extend_data"])));
    // Callback URLs (webhooks on, private addresses not allowed).
    const PRIVATE: &str = "Callback URLs may not point to loopback, private or link-local addresses.";
    for (label, url, msg) in [
        ("cloud metadata", "http://169.254.169.254/latest/meta-data/".to_string(), PRIVATE),
        ("loopback by name", "http://localhost:6379/".to_string(), PRIVATE),
        ("mapped IPv6 loopback", "http://[::ffff:7f00:1]/".to_string(), PRIVATE),
        ("gopher scheme", "gopher://example.com/_SET".to_string(), "Enter a valid URL."),
        ("10 kB URL", format!("https://example.com/{}", "u".repeat(10_000)), "Enter a valid URL."),
        ("javascript scheme", "javascript:alert(1)".to_string(), "Enter a valid URL."),
    ] {
        c.push(case(format!("callback_url: {label}"), submit("face_liveness", &[key()], &[P::F("image", png()), P::T("callback_url", url)]), FieldMsg("callback_url", msg)));
    }
    c.push(case("field names are case-sensitive", submit("face_liveness", &[key()], &[P::F("Image", png())]), FieldMsg("image", NO_FILE)));
    c.push(case("duplicate field: bad first", submit("face_liveness", &[key()], &[P::F("image", b"junk".to_vec()), P::F("image", png())]), Fields(&["image"])));
    c.push(case("duplicate field: good first", submit("face_liveness", &[key()], &[P::F("image", png()), P::F("image", b"junk".to_vec())]), Id));
    c.push(case("unicode field names and values", submit("face_liveness", &[key()], &[P::F("image", png()), P::T("名前", "Ærøskøbing 😀".into()), P::T("extend_data", "false".into())]), Id));
    c.push(case("10,000 text fields", submit("face_liveness", &[key()], &(0..10_000).map(|_| P::T("x", "y".into())).collect::<Vec<_>>()), Fields(&["image"])));
    c.push(case("field name with CRLF injection", submit("face_liveness", &[key()], &[P::Raw(b"Content-Disposition: form-data; name=\"image\r\nX-Evil: 1\"\r\n\r\nabc".to_vec())]), Status(400)));
    c.push(case("part without a name", submit("face_liveness", &[key()], &[P::Raw(b"Content-Disposition: form-data; filename=\"a.png\"\r\n\r\nabc".to_vec())]), Fields(&["image"])));
    c.push(case("part without headers", submit("face_liveness", &[key()], &[P::Raw(b"\r\nbare".to_vec())]), Status(400)));
    c.push(case("part header 100 kB", submit("face_liveness", &[key()], &[P::Raw(format!("Content-Disposition: form-data; name=\"image\"; filename=\"{}\"\r\n\r\nx", "a".repeat(100_000)).into_bytes())]), Status(400)));

    // --- Multipart framing and media types. ---
    let (_, good_body) = multipart(&[P::F("image", png())]);
    let submit_with = |ct: &str, body: &[u8]| http("POST", "/api/v3/services/face_liveness/", &[key(), ("Content-Type", ct.to_string())], body);
    c.push(case("no boundary parameter", submit_with("multipart/form-data", &good_body), DetailPrefix(400, "Multipart form parse error")));
    c.push(case("boundary mismatch", submit_with("multipart/form-data; boundary=other", &good_body), Status(400)));
    c.push(case("boundary 200 chars", submit_with(&format!("multipart/form-data; boundary={}", "b".repeat(200)), &good_body), Status(400)));
    c.push(case("quoted boundary with a space", submit_with("multipart/form-data; boundary=\"a b\"", b"--a b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ny\r\n--a b--\r\n"), Fields(&["image"])));
    c.push(case("no closing boundary", submit_with(&format!("multipart/form-data; boundary={BOUNDARY}"), &good_body[..good_body.len() - 20]), Status(400)));
    c.push(case("body is not multipart", submit_with(&format!("multipart/form-data; boundary={BOUNDARY}"), b"just some text"), Status(400)));
    c.push(case("empty body", submit_with(&format!("multipart/form-data; boundary={BOUNDARY}"), b""), Status(400)));
    c.push(case("multipart/mixed", submit_with("multipart/mixed; boundary=x", &good_body), Detail(415, "Unsupported media type \"multipart/mixed\" in request.")));
    c.push(case("json to a service", submit_with("application/json", b"{\"image\": \"aGk=\"}"), Detail(415, "Unsupported media type \"application/json\" in request.")));
    c.push(case("no content type", http("POST", "/api/v3/services/face_liveness/", &[key()], &good_body), Detail(415, "Unsupported media type \"\" in request.")));
    c.push(case("content type with NUL-free junk", submit_with("image/png", &png()), Detail(415, "Unsupported media type \"image/png\" in request.")));
    let mut chunked = format!(
        "POST /api/v3/services/face_liveness/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for piece in good_body.chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    c.push(case("chunked upload", chunked, Id));
    let mut over = format!(
        "POST /api/v3/services/face_liveness/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1000
    )
    .into_bytes();
    over.resize(over.len() + MAX_BODY_BYTES + 1000, b'a');
    c.push(case("body over max_body_bytes", over, Detail(413, "Request body is too large.")));
    let mut over_chunked = format!(
        "POST /api/v3/services/face_liveness/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let mut first = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\"\r\n\r\n").into_bytes();
    first.resize(1 << 20, b'z');
    for _ in 0..9 {
        over_chunked.extend_from_slice(format!("{:x}\r\n", first.len()).as_bytes());
        over_chunked.extend_from_slice(&first);
        over_chunked.extend_from_slice(b"\r\n");
        first = vec![b'z'; 1 << 20];
    }
    c.push(case("chunked body over max_body_bytes", over_chunked, Detail(413, "Request body is too large.")));
    let mut short = format!(
        "POST /api/v3/services/face_liveness/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 100000\r\n\r\n"
    )
    .into_bytes();
    short.extend_from_slice(&good_body[..100]);
    c.push(case("body shorter than Content-Length", short, Detail(408, "Request timed out.")));

    // --- Credentials, on a service and on task reads. ---
    let future = now_s() + 3600;
    let tokens: Vec<(&str, Option<String>, &'static str)> = vec![
        ("no Authorization", None, NOT_PROVIDED),
        ("Basic scheme", Some(format!("Basic {}", b64url(b"alice:pw"))), NOT_PROVIDED),
        ("Bearer without token", Some("Bearer ".into()), NOT_PROVIDED),
        ("wrong key", Some("Bearer not-a-key".into()), NOT_VALID),
        ("JWT alg none", Some(format!("Bearer {}", jwt_alg_none(&claims("access", future)))), NOT_VALID),
        ("JWT other secret", Some(format!("Bearer {}", jwt(jsonwebtoken::Algorithm::HS256, "guess", &claims("access", future)))), NOT_VALID),
        ("JWT HS512 right secret", Some(format!("Bearer {}", jwt(jsonwebtoken::Algorithm::HS512, JWT_SECRET, &claims("access", future)))), NOT_VALID),
        ("JWT expired", Some(format!("Bearer {}", jwt(jsonwebtoken::Algorithm::HS256, JWT_SECRET, &claims("access", now_s() - 60)))), NOT_VALID),
        ("refresh token as access", Some(format!("Bearer {}", jwt(jsonwebtoken::Algorithm::HS256, JWT_SECRET, &claims("refresh", future)))), NOT_VALID),
        ("JWT without signature", Some(format!("Bearer {}", jwt(jsonwebtoken::Algorithm::HS256, JWT_SECRET, &claims("access", future)).rsplit_once('.').map(|(h, _)| format!("{h}.")).unwrap_or_default())), NOT_VALID),
        ("token 8 kB", Some(format!("Bearer {}", "A".repeat(8000))), NOT_VALID),
        ("token with unicode", Some("Bearer ключ-🔑".into()), NOT_PROVIDED),
    ];
    for (label, header, detail) in &tokens {
        let headers: Vec<(&str, String)> = header.iter().map(|h| ("Authorization", h.clone())).collect();
        c.push(case(format!("submit: {label}"), submit("face_liveness", &headers, &[P::F("image", png())]), Detail(401, detail)));
        let t = http("GET", &format!("/api/v3/services/task/?id={foreign_task}"), &headers, b"");
        c.push(case(format!("task: {label}"), t, Detail(401, detail)));
    }
    let access = jwt(jsonwebtoken::Algorithm::HS256, JWT_SECRET, &claims("access", future));
    c.push(case("a valid user token reads no foreign task", http("GET", &format!("/api/v3/services/task/?id={foreign_task}"), &[bearer(&access)], b""), Detail(404, "Not found.")));

    // --- Task ids. ---
    let get = |q: &str| http("GET", &format!("/api/v3/services/task/{q}"), &[key()], b"");
    c.push(case("task: no id", get(""), FieldMsg("id", "This field is required.")));
    c.push(case("task: empty id", get("?id="), FieldMsg("id", "This field is required.")));
    for (label, id) in [
        ("short", "123".to_string()),
        ("SQL", "%27%20OR%201%3D1--".to_string()),
        ("NUL", "%00".to_string()),
        ("10 kB", "a".repeat(10_000)),
        ("unicode", "%E2%9C%93".to_string()),
        ("uuid plus junk", format!("{}x", uuid::Uuid::new_v4())),
        ("path traversal", "..%2F..%2Fetc%2Fpasswd".to_string()),
    ] {
        c.push(case(format!("task: {label} id"), get(&format!("?id={id}")), FieldMsg("id", "Must be a valid UUID.")));
    }
    c.push(case("task: a foreign task", get(&format!("?id={foreign_task}")), Detail(404, "Not found.")));
    c.push(case("task: an unknown uuid", get(&format!("?id={}", uuid::Uuid::new_v4())), Detail(404, "Not found.")));
    c.push(case("task: the nil uuid", get("?id=00000000-0000-0000-0000-000000000000"), Detail(404, "Not found.")));
    c.push(case("task: uppercase foreign id", get(&format!("?id={}", foreign_task.to_uppercase())), Detail(404, "Not found.")));

    // --- Media paths. ---
    let media = |p: &str| http("GET", &format!("/media/{p}"), &[key()], b"");
    for p in [
        "../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "images/services/x/../../../other",
        "..%5c..%5cwindows%5cwin.ini",
        "%00",
        "images/services/ocr_passport/00000000-0000-0000-0000-000000000000.jpg",
        "key%3Aother/images/x.jpg",
        "other/images/services/ocr_passport/x.jpg",
    ] {
        c.push(case(format!("media: {p}"), media(p), Detail(404, "Not found.")));
    }
    c.push(case("media: 8 kB path", media(&"a/".repeat(4000)), Detail(404, "Not found.")));
    c.push(case("media: no credentials", http("GET", "/media/images/x.jpg", &[], b""), Detail(401, NOT_PROVIDED)));
    c.push(case("media: invalid UTF-8", media("%FF%FE"), Detail(400, "Malformed request.")));

    // --- Methods and routes. ---
    for m in ["M000123X", "PUT", "PATCH", "OPTIONS", "FOO-BAR", "get", "PROPFIND"] {
        c.push(case(format!("{m} /healthz"), http(m, "/healthz", &[], b""), Detail(405, "Method not allowed.")));
    }
    for (m, p) in [
        ("GET", "/api/v3/services/face_liveness/"),
        ("PUT", "/api/v3/services/face_liveness/"),
        ("GET", "/api/v3/accounts/token/obtain/"),
        ("PATCH", "/api/v3/accounts/token/refresh/"),
        ("POST", "/api/v3/services/task/"),
        ("POST", "/healthz"),
        ("PUT", "/media/images/x.jpg"),
    ] {
        c.push(case(format!("{m} {p}"), http(m, p, &[key()], b""), Detail(405, "Method not allowed.")));
    }
    for p in ["/", "/API/V3/services/task/", "//healthz", "/api/v3/services/", "/api/v4/services/face_liveness/", "/media", "/.env", "/%2e%2e/etc/passwd"] {
        c.push(case(format!("GET {p}"), http("GET", p, &[key()], b""), Detail(404, "Not found.")));
    }
    c.push(case("unknown service", submit("no_such_service", &[key()], &[P::F("image", png())]), Detail(404, "Not found.")));
    c.push(case("service path traversal", submit("..%2F..%2Fetc", &[key()], &[]), Detail(404, "Not found.")));
    c.push(case("unknown service without credentials", submit("no_such_service", &[], &[]), Detail(401, NOT_PROVIDED)));
    c.push(case("service path invalid UTF-8", submit("%C0%AF", &[key()], &[]), Detail(400, "Malformed request.")));
    c.push(case("HEAD /healthz", http("HEAD", "/healthz", &[], b""), Status(200)));
    c.push(case("healthz with a script in the query", http("GET", "/healthz?x=%3Cscript%3E", &[], b""), Json(200, json!({"status": "ok"}))));
    c.push(case("HTTP/1.0", b"GET /healthz HTTP/1.0\r\n\r\n".to_vec(), Json(200, json!({"status": "ok"}))));
    c.push(case("Host with user info", b"GET /healthz HTTP/1.1\r\nHost: evil@x:99999\r\nConnection: close\r\n\r\n".to_vec(), Json(200, json!({"status": "ok"}))));
    c.push(case("header value with high bytes", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bin: \xff\xfe\xfd\r\nConnection: close\r\n\r\n".to_vec(), Json(200, json!({"status": "ok"}))));
    c.push(case("URI of 60 kB", http("GET", &format!("/healthz?{}", "q".repeat(60_000)), &[], b""), Json(200, json!({"status": "ok"}))));

    // --- Broken HTTP: answered by hyper, empty body. ---
    let mut giant = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Giant: ".to_vec();
    giant.resize(giant.len() + 100_000, b'g');
    giant.extend_from_slice(b"\r\n\r\n");
    c.push(case("header of 100 kB", giant, Bare(431)));
    let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    c.push(case("200 headers", many, Bare(431)));
    c.push(case("URI of 70 kB", http("GET", &format!("/healthz?{}", "q".repeat(70_000)), &[], b""), Bare(431)));
    c.push(case("garbage request line", b"HELLO\r\n\r\n".to_vec(), Bare(400)));
    c.push(case("header without colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n".to_vec(), Bare(400)));
    c.push(case("NUL in header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n".to_vec(), Bare(400)));
    c.push(case("conflicting Content-Length", b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(), Bare(400)));
    c.push(case("negative Content-Length", b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(), Bare(400)));
    c.push(case("space in method", b"GE T /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Bare(400)));
    c.push(case("HTTP/2 preface on HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), NoAnswer));
    c.push(case("TLS ClientHello on plain HTTP", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(), Bare(400)));

    // --- Token endpoints. ---
    let obtain = "/api/v3/accounts/token/obtain/";
    let refresh = "/api/v3/accounts/token/refresh/";
    let j = "application/json";
    c.push(case("obtain: {}", json_post(obtain, j, b"{}"), Json(400, json!({"username": ["This field is required."], "password": ["This field is required."]}))));
    c.push(case("obtain: blank username", json_post(obtain, j, br#"{"username": "", "password": "x"}"#), Json(400, json!({"username": ["This field may not be blank."]}))));
    c.push(case("obtain: null password", json_post(obtain, j, br#"{"username": "x", "password": null}"#), Json(400, json!({"password": ["This field is required."]}))));
    c.push(case("obtain: wrong types", json_post(obtain, j, br#"{"username": 5, "password": []}"#), Detail(401, BAD_LOGIN)));
    c.push(case("obtain: array", json_post(obtain, j, b"[1,2]"), Detail(400, "JSON parse error - expected an object")));
    c.push(case("obtain: broken JSON", json_post(obtain, j, b"{\"username\": "), DetailPrefix(400, "JSON parse error")));
    c.push(case("obtain: unicode name", json_post(obtain, j, "{\"username\": \"ålice😀\", \"password\": \"x\"}".as_bytes()), Detail(401, BAD_LOGIN)));
    c.push(case("obtain: 2 MB body", json_post(obtain, j, &vec![b' '; 2 << 20]), Detail(413, "Request body is too large.")));
    c.push(case("obtain: text/plain", json_post(obtain, "text/plain", b"username=a"), Detail(415, "Unsupported media type \"text/plain\" in request.")));
    c.push(case("obtain: url-encoded bad escapes", json_post(obtain, "application/x-www-form-urlencoded", b"username=%zz&password=%"), Detail(401, BAD_LOGIN)));
    c.push(case("obtain: duplicate keys", json_post(obtain, j, br#"{"username": "alice", "username": "bob", "password": "x"}"#), Detail(401, BAD_LOGIN)));
    for i in 1..=5 {
        c.push(case(format!("obtain: mallory wrong #{i}"), json_post(obtain, j, br#"{"username": "mallory", "password": "guess"}"#), Detail(401, BAD_LOGIN)));
    }
    c.push(case("obtain: mallory #6 is throttled", json_post(obtain, j, br#"{"username": "mallory", "password": "guess"}"#), DetailPrefix(429, "Request was throttled.")));
    c.push(case("refresh: {}", json_post(refresh, j, b"{}"), Json(400, json!({"refresh": ["This field is required."]}))));
    c.push(case("refresh: garbage", json_post(refresh, j, br#"{"refresh": "garbage"}"#), Detail(401, BAD_REFRESH)));
    c.push(case("refresh: an access token", json_post(refresh, j, json!({"refresh": access}).to_string().as_bytes()), Detail(401, BAD_REFRESH)));
    c.push(case("refresh: alg none", json_post(refresh, j, json!({"refresh": jwt_alg_none(&claims("refresh", future))}).to_string().as_bytes()), Detail(401, BAD_REFRESH)));
    c.push(case("refresh: expired", json_post(refresh, j, json!({"refresh": jwt(jsonwebtoken::Algorithm::HS256, JWT_SECRET, &claims("refresh", now_s() - 60))}).to_string().as_bytes()), Detail(401, BAD_REFRESH)));
    c.push(case("refresh: unknown user", json_post(refresh, j, json!({"refresh": jwt(jsonwebtoken::Algorithm::HS256, JWT_SECRET, &json!({"sub": "eve", "token_type": "refresh", "exp": future, "iat": 1, "jti": "x"}))}).to_string().as_bytes()), Detail(401, BAD_REFRESH)));
    c.push(case("refresh: claims of the wrong types", json_post(refresh, j, json!({"refresh": jwt(jsonwebtoken::Algorithm::HS256, JWT_SECRET, &json!({"sub": 1, "token_type": ["refresh"], "exp": future}))}).to_string().as_bytes()), Detail(401, BAD_REFRESH)));
    c
}

/// An answer as read off the socket.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Sends one case on a fresh connection and reads the answer until the server closes. The write
/// side stays open: hyper treats a half-close as the client going away (`half_close` is off).
async fn send(addr: &str, case: &Case) -> Result<Option<Answer>, &'static str> {
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|_| "connect refused")?;
    let (mut rd, mut wr) = s.split();
    let write = async {
        // The server may answer (and close) before reading everything: not an error here.
        let _ = wr.write_all(&case.request).await;
    };
    let mut got = Vec::new();
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let exchange = async {
        tokio::select! {
            _ = read => {},
            _ = async { write.await; std::future::pending::<()>().await } => {},
        }
    };
    if tokio::time::timeout(ANSWER_WITHIN, exchange).await.is_err() {
        return Err("hang");
    }
    if got.is_empty() {
        return Ok(None);
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no header end")?;
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or("no status")?;
    let mut body = got[end + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok(Some(Answer { status, body }))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

/// Why an answer is not the documented one (`None` when it is).
fn mismatch(want: &Want, got: &Option<Answer>) -> Option<String> {
    let Some(a) = got else {
        return (!matches!(want, Want::NoAnswer)).then(|| "closed without an answer".to_string());
    };
    let json: Option<Value> = serde_json::from_slice(&a.body).ok();
    let text = || String::from_utf8_lossy(&a.body[..a.body.len().min(300)]).to_string();
    let detail = || json.as_ref().and_then(|j| j["detail"].as_str()).map(str::to_string);
    let ok = match want {
        Want::Json(s, v) => a.status == *s && json.as_ref() == Some(v),
        Want::Detail(s, d) => a.status == *s && detail().as_deref() == Some(*d),
        Want::DetailPrefix(s, d) => a.status == *s && detail().is_some_and(|x| x.starts_with(d)),
        Want::Fields(fields) => {
            a.status == 400
                && json.as_ref().is_some_and(|j| {
                    fields.iter().all(|f| j[*f].as_array().is_some_and(|m| !m.is_empty() && m.iter().all(Value::is_string)))
                })
        }
        Want::FieldMsg(f, m) => a.status == 400 && json.as_ref().is_some_and(|j| j[*f][0] == *m),
        Want::Id => {
            a.status == 200
                && json.as_ref().and_then(|j| j["id"].as_str()).and_then(|id| uuid::Uuid::parse_str(id).ok()).is_some_and(|u| u.get_version_num() == 4)
        }
        Want::Bare(s) => a.status == *s && a.body.is_empty(),
        Want::Status(s) => {
            // Every error the application answers is JSON (`{"detail"}` or field errors).
            a.status == *s && (a.status < 400 || json.as_ref().is_some_and(|j| j.is_object() && !j.as_object().is_some_and(|o| o.is_empty())))
        }
        Want::NoAnswer => false,
    };
    (!ok).then(|| format!("got {} {}", a.status, text()))
}

/// `VmRSS` and `VmHWM` (peak) of a process, bytes.
fn rss_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// `kycgate serve` as its own process, on a free loopback port; its stderr is kept.
struct Served {
    child: tokio::process::Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

async fn serve_process() -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = kycgate::api::auth::hash_password(PASSWORD).expect("hash");
    let other = hex::encode(kycgate::api::auth::key_digest(OTHER_KEY));
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = {MAX_BODY_BYTES}
request_timeout_ms = 4000
header_read_timeout_ms = 4000

[images]
max_bytes = {MAX_IMAGE_BYTES}

[worker]
concurrency = 1

[auth]
jwt_secret = "{JWT_SECRET}"
api_keys = [{{ id = "other", sha256 = "{other}" }}]
users = [{{ username = "{USER}", password_hash = "{hash}" }}]
login_max_failures_per_user = 5
login_max_failures_per_address = 1000

[providers]
dir = "{providers}"

[models]
fetch = false

[webhooks]
secret = "corpus-webhook-secret"
allow_private = false

[telemetry]
log_format = "json"
log_filter = "warn"
"#,
        providers = repo().join("providers").display()
    );
    let path = dir.path().join("corpus.toml");
    std::fs::write(&path, config).expect("config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kycgate"))
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .arg("--api-key")
        .arg(KEY)
        .env_remove("KYCGATE_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kycgate serve starts");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sink = stderr.clone();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.split("kycgate listening on http://").nth(1) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(120), rx).await.expect("listening in time").expect("address");
    Served { child, addr, stderr, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_corpus_is_answered_as_documented() {
    let mut served = serve_process().await;
    let pid = served.child.id().expect("pid");
    let base = format!("http://{}", served.addr);
    let http = reqwest::Client::new();
    let health = |http: reqwest::Client, base: String| async move {
        http.get(format!("{base}/healthz")).timeout(Duration::from_secs(10)).send().await.map(|r| r.status().as_u16())
    };
    assert_eq!(health(http.clone(), base.clone()).await.ok(), Some(200));

    // A task of another owner, for the isolation cases.
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(png(64)).file_name("f.png").mime_str("image/png").expect("mime"));
    let r = http.post(format!("{base}/api/v3/services/face_liveness/")).bearer_auth(OTHER_KEY).multipart(form).send().await.expect("POST");
    let (code, body) = json_of(r).await;
    assert_eq!(code, 200, "{body}");
    let foreign = body["id"].as_str().expect("id").to_string();

    let images = Images { good_png: png(64), jpeg: eval_image("faces/deepface/img10.jpg") };
    let cases = corpus(&images, &foreign);
    let (rss_before, _) = rss_of(pid);
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let (mut server_errors, mut hangs, mut peak_rss) = (0, 0, 0u64);
    for case in &cases {
        match send(&served.addr, case).await {
            Err(why) => {
                hangs += usize::from(why == "hang");
                failures.insert(case.name.clone(), why.to_string());
            }
            Ok(answer) => {
                server_errors += usize::from(answer.as_ref().is_some_and(|a| a.status >= 500));
                if let Some(why) = mismatch(&case.want, &answer) {
                    failures.insert(case.name.clone(), format!("want {:?}, {why}", case.want));
                }
            }
        }
        peak_rss = peak_rss.max(rss_of(pid).0);
    }
    let still = health(http.clone(), base.clone()).await.ok();
    let (_, hwm) = rss_of(pid);
    let panics = served.stderr.lock().map(|s| s.matches("panicked at").count()).unwrap_or(0);
    let report = format!(
        "corpus: {} requests, {} answered as documented, {} 5xx, {} hangs, {} panics; RSS at start {} MiB, peak {} MiB \
         (bound {} MiB)",
        cases.len(),
        cases.len() - failures.len(),
        server_errors,
        hangs,
        panics,
        rss_before >> 20,
        hwm.max(peak_rss) >> 20,
        MAX_RSS_BYTES >> 20,
    );
    eprintln!("{report}");
    let _ = served.child.start_kill();
    let _ = served.child.wait().await;
    assert!(cases.len() >= 150, "{report}");
    assert!(failures.is_empty(), "{report}\n{failures:#?}");
    assert_eq!((server_errors, hangs, panics), (0, 0, 0), "{report}");
    assert_eq!(still, Some(200), "the gateway stopped answering /healthz: {report}");
    assert!(hwm.max(peak_rss) < MAX_RSS_BYTES, "{report}");
}
