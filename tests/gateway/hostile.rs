//! Regression tests for findings of the black-box probe (issue 12), each against the real server:
//! case-insensitive auth scheme and media type, owner-escaped media keys, and `portrait_url`
//! never built from a hostile `Host` header.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The ICAO 9303 TD3 specimen, which has a portrait.
const PASSPORT: &str = "documents/passporteye_100_pass-uto.jpg";

/// A multipart body with one file part, by hand, so the test picks the exact `Content-Type`.
fn raw_multipart(field: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "kycgate-test-boundary-7d1c";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary.to_string(), body)
}

async fn post_raw(gw: &TestGateway, auth: &str, content_type: &str, host: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v3/services/ocr_passport/", gw.base))
        .header("authorization", auth)
        .header("content-type", content_type)
        .body(body);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    json_of(req.send().await.expect("POST")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheme_and_media_type_are_case_insensitive() {
    let gw = TestGateway::start(Options::default()).await;
    let (boundary, body) = raw_multipart("passport_image", &eval_image(PASSPORT));
    for (scheme, ct) in [("BEARER", "Multipart/Form-Data"), ("bearer", "MULTIPART/FORM-DATA"), ("Bearer", "multipart/form-data")] {
        let (code, answer) =
            post_raw(&gw, &format!("{scheme} {KEY}"), &format!("{ct}; boundary={boundary}"), None, body.clone()).await;
        assert_eq!(code, 200, "{scheme} / {ct}: {answer}");
        assert!(answer["id"].is_string(), "{answer}");
    }
    // Another scheme is still refused, with the DRF wording.
    let (code, answer) = post_raw(&gw, &format!("Basic {KEY}"), "multipart/form-data; boundary=x", None, Vec::new()).await;
    assert_eq!(code, 401, "{answer}");
    assert_eq!(answer["detail"], "Authentication credentials were not provided.");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_host_never_reaches_portrait_url() {
    let gw = TestGateway::start(Options::default()).await;
    let api = gw.client();
    let (boundary, body) = raw_multipart("passport_image", &eval_image(PASSPORT));
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (code, answer) = post_raw(&gw, &format!("Bearer {KEY}"), &ct, Some("evil.example@attacker.test"), body).await;
    assert_eq!(code, 200, "{answer}");
    let id = answer["id"].as_str().expect("id").to_string();
    let (task, _) = api.wait(&id, Duration::from_secs(120)).await;
    let doc = &task["result"]["data"]["document"];
    let url = doc["portrait_url"].as_str().expect("portrait_url");
    assert!(!url.contains("attacker") && !url.contains("evil"), "{url}");
    assert!(url.starts_with("/media/images/services/ocr_passport/"), "relative without a trusted host: {url}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_that_share_a_prefix_cannot_read_each_others_media() {
    let opts = Options {
        api_keys: vec![("t".into(), "key-of-t".into()), ("t/images".into(), "key-of-t-images".into())],
        ..Options::default()
    };
    let gw = TestGateway::start(opts).await;
    let t = gw.client_with(Some("key-of-t"));
    let id = t.submit_ok("ocr_passport", vec![file("passport_image", eval_image(PASSPORT))]).await;
    let (task, _) = t.wait(&id, Duration::from_secs(120)).await;
    let rel = task["result"]["data"]["document"]["portrait"].as_str().expect("portrait").to_string();
    assert!(rel.starts_with("images/"), "{rel}");
    let http = reqwest::Client::new();
    let own = http.get(format!("{}/media/{rel}", gw.base)).bearer_auth("key-of-t").send().await.expect("GET");
    assert_eq!(own.status().as_u16(), 200);
    // Before owners were escaped, `t/images` + `services/…` named the same key as `t` + `images/services/…`.
    let rest = rel.strip_prefix("images/").expect("images/ prefix");
    let other = http.get(format!("{}/media/{rest}", gw.base)).bearer_auth("key-of-t-images").send().await.expect("GET");
    assert_eq!(other.status().as_u16(), 404);
    gw.stop().await;
}

/// Reads from `stream` until the peer closes it or `within` passes; the bytes read, and whether
/// it closed.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn addr_of(gw: &TestGateway) -> String {
    gw.base.trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_sockets_cannot_starve_the_server() {
    use tokio::io::AsyncWriteExt;
    let opts = Options { server_toml: "header_read_timeout_ms = 400\nmax_connections = 4".into(), ..Options::default() };
    let gw = TestGateway::start(opts).await;
    // Fill every connection slot with sockets that never finish their headers.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(addr_of(&gw)).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.expect("write");
        idle.push(s);
    }
    // A trickler: one header byte every 100 ms, forever. Its connection waits for a slot.
    let mut trickler = tokio::net::TcpStream::connect(addr_of(&gw)).await.expect("connect");
    let trickle = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')).take(200) {
            if trickler.write_all(&[*b]).await.is_err() {
                return true; // closed by the server
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    // The idle sockets are closed once the header timeout passes…
    for s in &mut idle {
        let (_, closed) = read_until_closed(s, Duration::from_secs(5)).await;
        assert!(closed, "an idle socket outlived the header timeout");
    }
    // …so a real client is served again, while the trickler is cut off too.
    let health = reqwest::Client::new().get(format!("{}/healthz", gw.base)).timeout(Duration::from_secs(5)).send().await;
    assert_eq!(health.expect("healthz answers").status().as_u16(), 200);
    assert!(trickle.await.expect("trickler"), "a trickled header was held for 20 s");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408_in_json() {
    use tokio::io::AsyncWriteExt;
    let opts = Options { server_toml: "request_timeout_ms = 500".into(), ..Options::default() };
    let gw = TestGateway::start(opts).await;
    let mut s = tokio::net::TcpStream::connect(addr_of(&gw)).await.expect("connect");
    let head = format!(
        "POST /api/v3/services/face_liveness/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if wr.write_all(b"0123456789").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let read = async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).contains("}") {
            let n = rd.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("answered before the body ended");
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#"{"detail":"Request timed out."}"#), "{text}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_gets_a_json_405() {
    let gw = TestGateway::start(Options::default()).await;
    let resp = reqwest::Client::new().delete(format!("{}/healthz", gw.base)).send().await.expect("DELETE");
    let (code, body) = json_of(resp).await;
    assert_eq!(code, 405);
    assert_eq!(body["detail"], "Method not allowed.");
    gw.stop().await;
}
