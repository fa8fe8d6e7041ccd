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

/// The `kycgate_http_requests_total` series in a `/metrics` text.
fn request_series(metrics: &str) -> Vec<&str> {
    metrics.lines().filter(|l| l.starts_with("kycgate_http_requests_total{")).collect()
}

/// The value of a label in one exposition line (`method="GET"` → `GET`).
fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    line[start..].split('"').next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_method_string_is_one_metric_label() {
    let gw = TestGateway::start(Options::default()).await;
    let http = reqwest::Client::new();
    const CUSTOM: usize = 300;
    for i in 0..CUSTOM {
        let method = reqwest::Method::from_bytes(format!("M{i:06}X").as_bytes()).expect("a token is a method");
        let resp = http.request(method, format!("{}/healthz", gw.base)).send().await.expect("custom method");
        let (code, body) = json_of(resp).await;
        assert_eq!((code, &body["detail"]), (405, &serde_json::json!("Method not allowed.")));
    }
    // Unmatched paths with odd methods too: the route label is the template or `unmatched`.
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("P{i}").as_bytes()).expect("method");
        let resp = http.request(method, format!("{}/no/such/{i}", gw.base)).send().await.expect("custom method");
        assert_eq!(json_of(resp).await.0, 404);
    }
    let text = http.get(format!("{}/metrics", gw.base)).send().await.expect("metrics").text().await.expect("text");
    let series = request_series(&text);
    assert!(!series.is_empty(), "the counter is exported: {text}");
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER"];
    for line in &series {
        let method = label(line, "method").expect("method label");
        assert!(METHODS.contains(&method), "an open-ended method label: {line}");
        let route = label(line, "route").expect("route label");
        assert!(route == "unmatched" || route.starts_with('/'), "{line}");
        assert!(!route.contains("/no/such"), "a raw path became a label: {line}");
    }
    let other: f64 = series
        .iter()
        .filter(|l| label(l, "method") == Some("_OTHER") && label(l, "route") == Some("/healthz"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(other >= CUSTOM as f64, "the custom methods are counted under _OTHER: {other}");
    gw.stop().await;
}

/// A raw HTTP/1.1 exchange: writes `request`, reads until the server closes or the answer's
/// declared body is complete.
async fn raw_exchange(gw: &TestGateway, request: &[u8]) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr_of(gw)).await.expect("connect");
    // The server may answer (and close) before it has read everything: ignore write errors.
    let _ = s.write_all(request).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if len.is_some_and(|n| got.len() >= end + 4 + n) {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("the server answered");
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(got.len());
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = got.get(end + 4..).unwrap_or_default().to_vec();
    (code, head, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_layer_errors_are_json_or_documented_empty() {
    let opts = Options { server_toml: "max_header_bytes = 8192\nmax_body_bytes = 4096".into(), ..Options::default() };
    let gw = TestGateway::start(opts).await;
    let detail = |body: &[u8]| -> String {
        let v: Value = serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
        v["detail"].as_str().unwrap_or_else(|| panic!("no detail: {v}")).to_string()
    };
    // Answered by the application: JSON.
    let big = vec![b'x'; 10_000];
    let mut req = format!(
        "POST /api/v3/services/face_liveness/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(&big);
    let (code, _, body) = raw_exchange(&gw, &req).await;
    assert_eq!((code, detail(&body).as_str()), (413, "Request body is too large."));
    // A path the extractor cannot read (percent-encoded invalid UTF-8): axum's plain-text
    // rejection leaves as JSON with the fixed wording.
    let (code, head, body) =
        raw_exchange(&gw, format!("GET /media/%FF%FE%FD HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n").as_bytes()).await;
    assert!(head.to_ascii_lowercase().contains("application/json"), "{head}");
    assert_eq!((code, detail(&body).as_str()), (400, "Malformed request."));
    let (code, _, body) = raw_exchange(
        &gw,
        format!("POST /api/v3/services/%C0%AF/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!((code, detail(&body).as_str()), (400, "Malformed request."));
    let (code, _, body) = raw_exchange(&gw, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((code, detail(&body).as_str()), (404, "Not found."));

    // Answered by hyper before any handler runs: the status, an empty body, and the connection
    // closed (docs/SECURITY.md, "HTTP layer").
    let mut huge_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge_header.extend(std::iter::repeat_n(b'a', 20_000));
    huge_header.extend_from_slice(b"\r\n\r\n");
    let (code, head, body) = raw_exchange(&gw, &huge_header).await;
    assert_eq!(code, 431, "{head}");
    assert!(body.is_empty(), "{head}");
    let (code, head, body) = raw_exchange(&gw, b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").await;
    assert_eq!(code, 400, "{head}");
    assert!(body.is_empty());
    let (code, head, _) = raw_exchange(&gw, b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello").await;
    assert_eq!(code, 400, "conflicting lengths: {head}");
    let (code, head, _) = raw_exchange(&gw, b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await;
    assert!(code == 400 || code == 405, "bad chunk framing: {head}");
    // A URI longer than hyper's 65534-byte limit, inside a head under a raised header limit.
    let gw2 = TestGateway::start(Options { server_toml: "max_header_bytes = 200000".into(), ..Options::default() }).await;
    let long = format!("GET /healthz?{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let (code, head, body) = raw_exchange(&gw2, long.as_bytes()).await;
    assert_eq!(code, 414, "{head}");
    assert!(body.is_empty());
    // Still serving.
    for g in [&gw, &gw2] {
        let ok = reqwest::Client::new().get(format!("{}/healthz", g.base)).send().await.expect("healthz");
        assert_eq!(ok.status().as_u16(), 200);
    }
    gw.stop().await;
    gw2.stop().await;
}

async fn login(gw: &TestGateway, user: &str, password: &str) -> (u16, Option<String>, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v3/accounts/token/obtain/", gw.base))
        .json(&serde_json::json!({ "username": user, "password": password }))
        .send()
        .await
        .expect("POST");
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (code, body) = json_of(resp).await;
    (code, retry, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_per_name_and_address() {
    let gw = TestGateway::start(Options {
        auth_toml: "login_max_failures_per_user = 3\nlogin_max_failures_per_address = 6\nlogin_window_secs = 600".into(),
        ..Options::default()
    })
    .await;
    // N wrong attempts are 401; the N+1th is 429, even with the right password.
    for _ in 0..3 {
        let (code, _, body) = login(&gw, USER, "wrong").await;
        assert_eq!(code, 401, "{body}");
    }
    let (code, retry, body) = login(&gw, USER, PASSWORD).await;
    assert_eq!(code, 429, "{body}");
    let secs: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=600).contains(&secs), "{secs}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("throttled")), "{body}");
    // Another name from the same address still gets its own count, up to the address's limit.
    for i in 0..3 {
        let (code, _, body) = login(&gw, &format!("nobody-{i}"), "x").await;
        assert_eq!(code, 401, "{body}");
    }
    let (code, retry, body) = login(&gw, "someone-else", "x").await;
    assert_eq!(code, 429, "the address is over its limit: {body}");
    assert!(retry.is_some());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_refresh_token_is_refused_on_every_instance() {
    let opts = Options { store: redis_url(), namespace: namespace("refresh"), ..Options::default() };
    let a = TestGateway::start(opts.clone()).await;
    let b = TestGateway::start(opts.clone()).await;
    let (code, _, pair) = login(&a, USER, PASSWORD).await;
    assert_eq!(code, 200, "{pair}");
    let refresh = pair["refresh"].as_str().expect("refresh").to_string();
    let exchange = |gw: &TestGateway, token: String| {
        let url = format!("{}/api/v3/accounts/token/refresh/", gw.base);
        async move {
            let r = reqwest::Client::new().post(url).json(&serde_json::json!({ "refresh": token })).send().await.expect("POST");
            json_of(r).await
        }
    };
    let (code, rotated) = exchange(&a, refresh.clone()).await;
    assert_eq!(code, 200, "{rotated}");
    let (code, body) = exchange(&b, refresh.clone()).await;
    assert_eq!((code, &body["detail"]), (401, &serde_json::json!("Token is invalid or expired")), "replayed on B");
    // After a restart of A (a new process would have an empty map): still refused.
    a.stop().await;
    let a2 = TestGateway::start(opts).await;
    assert_eq!(exchange(&a2, refresh).await.0, 401, "replayed after a restart");
    // The rotated token is spent once too, wherever it is used first.
    let next = rotated["refresh"].as_str().expect("refresh").to_string();
    assert_eq!(exchange(&b, next.clone()).await.0, 200);
    assert_eq!(exchange(&a2, next).await.0, 401);
    a2.stop().await;
    b.stop().await;
}
