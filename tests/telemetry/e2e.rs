//! End to end: a gateway exporting OTLP to an in-test receiver runs a task whose liveness vendor
//! retries and falls back (`kbyai_a` answers 500 three times, `kbyai_b` answers), then the span
//! tree, the `/metrics` scrape and the OTLP metric export are checked, and every metric the
//! deploy dashboard and alert rules query must exist in the scrape.
//!
//! Telemetry is process-global (subscriber, meter provider): the only `init` of this binary.

use std::collections::BTreeSet;
use std::sync::Arc;

use kycgate::telemetry::metrics::NAMES;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use crate::common::*;

/// A 64×64 grey PNG, for runs without the evaluation images.
fn plain_png() -> Vec<u8> {
    let img = image::GrayImage::from_pixel(64, 64, image::Luma([128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("png");
    out.into_inner()
}

/// `kyc_passport` with a real specimen passport and selfie when `KYCGATE_EVAL_DIR` is set,
/// else `face_liveness` (the liveness chain is what this test is about).
fn task_input() -> (&'static str, Vec<(&'static str, Vec<u8>)>) {
    match (eval_image("mrz/images/passporteye__passport-td3.jpg"), eval_image("faces/kbyai/face_01.jpg")) {
        (Some(passport), Some(selfie)) => {
            ("kyc_passport", vec![("selfie_image", selfie), ("passport_image", passport)])
        }
        _ => ("face_liveness", vec![("image", plain_png())]),
    }
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.parent_span_id == parent.span_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_trace_and_metrics_reach_otlp_and_prometheus() {
    let (otlp, sink) = otlp_receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let vendors = kbyai_vendors(dir.path()).await;
    let cfg = config(dir.path(), Some(&otlp));
    let telemetry = Arc::new(kycgate::telemetry::init(&cfg.telemetry));
    let gw = start_gateway(cfg).await;

    // === one task, liveness retried at kbyai_a then answered by kbyai_b ===
    let (service, files) = task_input();
    let id = submit(&gw.base, service, &files, None).await;
    let task = wait_finished(&gw.base, &id).await;
    let attempts: Vec<(String, u64, String)> = task["result"]["data"]["providers"]["liveness"]
        .as_array()
        .expect("liveness attempts")
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap_or("").to_string(),
                a["attempt"].as_u64().unwrap_or(0),
                a["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, String)> =
        [("kbyai_a", 1, "error"), ("kbyai_a", 2, "error"), ("kbyai_a", 3, "error"), ("kbyai_b", 1, "ok")]
            .into_iter()
            .map(|(p, n, o)| (p.to_string(), n, o.to_string()))
            .collect();
    assert_eq!(attempts, expected, "task: {task}");

    // A caller's trace context is joined.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v3/services/task/?id={id}", gw.base))
        .bearer_auth(API_KEY)
        .header("traceparent", format!("00-{caller_trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("get task");
    assert!(resp.status().is_success());

    // === /metrics ===
    // The finish is counted just after the result is stored: poll for it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let (text, samples) = loop {
        let (text, samples) = scrape(&gw.base).await;
        if value(&samples, "kycgate_tasks_finished_total", &[("service", service)]) >= 1.0 {
            break (text, samples);
        }
        assert!(tokio::time::Instant::now() < deadline, "task finish never counted:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let v = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);
    let a = [("provider", "kbyai_a"), ("sub_call", "liveness")];
    let b = [("provider", "kbyai_b"), ("sub_call", "liveness")];
    assert_eq!(v("kycgate_provider_attempts_total", &[a[0], a[1], ("outcome", "error")]), 3.0, "{text}");
    assert_eq!(v("kycgate_provider_attempts_total", &[b[0], b[1], ("outcome", "ok")]), 1.0, "{text}");
    assert_eq!(v("kycgate_provider_retries_total", &a), 2.0);
    assert_eq!(v("kycgate_provider_retries_total", &b), 0.0);
    assert_eq!(v("kycgate_provider_fallbacks_total", &a), 1.0);
    assert_eq!(v("kycgate_provider_fallbacks_total", &b), 0.0);
    assert_eq!(v("kycgate_provider_attempt_duration_seconds_count", &a), 3.0);
    assert_eq!(v("kycgate_provider_attempt_duration_seconds_count", &b), 1.0);
    assert_eq!(v("kycgate_provider_attempt_duration_seconds_bucket", &[a[0], a[1], ("le", "+Inf")]), 3.0);
    assert_eq!(v("kycgate_provider_circuit_state", &a), 0.0);
    assert_eq!(v("kycgate_provider_in_flight", &a), 0.0);
    assert_eq!(v("kycgate_provider_in_flight", &b), 0.0);
    // Only answered calls are billed: kbyai_b once, kbyai_a's 500s not at all.
    assert!((v("kycgate_provider_cost_total", &[("provider", "kbyai_b")]) - 0.01).abs() < 1e-9, "{text}");
    assert_eq!(v("kycgate_provider_cost_total", &[("provider", "kbyai_a")]), 0.0);
    assert_eq!(v("kycgate_tasks_submitted_total", &[("service", service)]), 1.0);
    let outcome = task["status"].as_str().expect("status");
    let result = task["result"]["status"].as_i64().expect("result status").to_string();
    assert_eq!(
        v("kycgate_tasks_finished_total", &[("service", service), ("outcome", outcome), ("result", &result)]),
        1.0,
        "{text}"
    );
    assert_eq!(v("kycgate_task_duration_seconds_count", &[("service", service)]), 1.0);
    assert!(v("kycgate_task_duration_seconds_sum", &[("service", service)]) >= 0.0);
    assert!(v("kycgate_decisions_total", &[("kind", "liveness"), ("decision", "pass")]) >= 1.0, "{text}");
    assert_eq!(
        v(
            "kycgate_http_requests_total",
            &[("route", "/api/v3/services/{service}/"), ("method", "POST"), ("status", "200")]
        ),
        1.0,
        "{text}"
    );
    assert!(v("kycgate_http_requests_total", &[("route", "/api/v3/services/task/"), ("method", "GET")]) >= 1.0);
    assert_eq!(v("kycgate_queue_depth", &[]), 0.0);
    assert_eq!(v("kycgate_queue_oldest_pending_age_seconds", &[]), 0.0);
    let present: BTreeSet<&str> = samples
        .iter()
        .map(|s| s.name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count"))
        .collect();
    for name in NAMES {
        assert!(present.contains(name), "{name} missing from /metrics:\n{text}");
    }
    deploy_queries_use_existing_metrics(&present);

    // === OTLP: spans and metrics ===
    let t = telemetry.clone();
    tokio::task::spawn_blocking(move || t.flush()).await.expect("flush");
    let task_id = id.clone();
    wait_for(&sink, "the task's attempt spans", |r| {
        let Some(task) = r.spans.iter().find(|s| s.name == "task" && attr(s, "task").as_deref() == Some(&task_id))
        else {
            return false;
        };
        r.spans.iter().filter(|s| s.trace_id == task.trace_id && s.name == "attempt").count() >= 4
    })
    .await;
    wait_for(&sink, "OTLP metrics", |r| {
        ["kycgate_provider_attempts_total", "kycgate_task_duration_seconds", "kycgate_provider_circuit_state"]
            .iter()
            .all(|n| r.metric_names.iter().any(|m| m == n))
    })
    .await;

    {
        let received = sink.lock().expect("sink");
        let task_span = received
            .spans
            .iter()
            .find(|s| s.name == "task" && attr(s, "task").as_deref() == Some(id.as_str()))
            .expect("task span");
        let trace: Vec<Span> = received.spans.iter().filter(|s| s.trace_id == task_span.trace_id).cloned().collect();

        // Root: the POST's server span, named and attributed per the HTTP semantic conventions.
        let root = trace.iter().find(|s| s.parent_span_id.is_empty()).expect("root span");
        assert_eq!(root.name, "POST /api/v3/services/{service}/");
        assert_eq!(root.kind, SpanKind::Server as i32);
        assert_eq!(attr(root, "http.request.method").as_deref(), Some("POST"));
        assert_eq!(attr(root, "http.route").as_deref(), Some("/api/v3/services/{service}/"));
        assert_eq!(attr(root, "url.path"), Some(format!("/api/v3/services/{service}/")));
        assert_eq!(attr(root, "http.response.status_code").as_deref(), Some("200"));
        // The worker's task span continues the POST's trace.
        assert_eq!(task_span.parent_span_id, root.span_id, "task span is a child of the POST");
        assert_eq!(attr(task_span, "service").as_deref(), Some(service));

        // task → sub_call(liveness) → attempts.
        let liveness = children(&trace, task_span)
            .into_iter()
            .find(|s| s.name == "sub_call" && attr(s, "kind").as_deref() == Some("liveness"))
            .expect("liveness sub_call span under the task");
        assert_eq!(attr(liveness, "provider").as_deref(), Some("kbyai_b"));
        assert_eq!(attr(liveness, "outcome").as_deref(), Some("ok"));
        assert_eq!(attr(liveness, "fallbacks").as_deref(), Some("1"));
        assert!(attr(liveness, "fallback_reason").is_some_and(|r| r.starts_with("kbyai_a: ") && r.contains("500")));
        let mut tries: Vec<(String, String, String)> = children(&trace, liveness)
            .into_iter()
            .filter(|s| s.name == "attempt")
            .map(|s| {
                assert_eq!(s.kind, SpanKind::Client as i32);
                assert_eq!(attr(s, "sub_call").as_deref(), Some("liveness"));
                assert_eq!(attr(s, "kycgate.circuit.state").as_deref(), Some("closed"));
                (
                    attr(s, "provider").unwrap_or_default(),
                    attr(s, "attempt").unwrap_or_default(),
                    attr(s, "status").unwrap_or_default(),
                )
            })
            .collect();
        tries.sort();
        let want: Vec<(String, String, String)> =
            [("kbyai_a", "1", "error"), ("kbyai_a", "2", "error"), ("kbyai_a", "3", "error"), ("kbyai_b", "1", "ok")]
                .into_iter()
                .map(|(p, n, o)| (p.to_string(), n.to_string(), o.to_string()))
                .collect();
        assert_eq!(tries, want);
        let failed = children(&trace, liveness)
            .into_iter()
            .find(|s| s.name == "attempt" && attr(s, "provider").as_deref() == Some("kbyai_a"))
            .expect("kbyai_a attempt");
        assert_eq!(attr(failed, "error.type").as_deref(), Some("http_5xx"));
        assert_eq!(attr(failed, "http.response.status_code").as_deref(), Some("500"));
        assert_eq!(attr(failed, "server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(attr(failed, "server.port"), Some(vendors.0.address().port().to_string()));
        if service == "kyc_passport" {
            assert!(
                children(&trace, task_span).iter().any(|s| attr(s, "kind").as_deref() == Some("document_ocr")),
                "document_ocr sub_call span"
            );
        }
    }

    // The caller's trace id was honoured.
    let caller_bytes: Vec<u8> =
        (0..16).map(|i| u8::from_str_radix(&caller_trace[i * 2..i * 2 + 2], 16).unwrap_or(0)).collect();
    wait_for(&sink, "the GET task span in the caller's trace", |r| {
        r.spans.iter().any(|s| s.trace_id == caller_bytes && s.name == "GET /api/v3/services/task/")
    })
    .await;

    let _ = gw.stop.send(());
    let _ = gw.handle.await;
    if let Ok(t) = Arc::try_unwrap(telemetry) {
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
}

/// Every `kycgate_*` name in the Grafana dashboard and the Prometheus rules must be a metric the
/// gateway serves (histogram series suffixes stripped).
fn deploy_queries_use_existing_metrics(present: &BTreeSet<&str>) {
    let files =
        ["deploy/grafana/dashboards/kycgate.json", "deploy/prometheus/alerts.yml", "deploy/prometheus/prometheus.yml"];
    let mut used = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(repo(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        for (i, _) in text.match_indices("kycgate_") {
            let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count").to_string();
            // Recording-rule outputs are named `kycgate:…`, not `kycgate_…`, so every hit is a metric.
            used.insert(base);
        }
    }
    assert!(used.len() >= 8, "the dashboard and rules query the gateway's metrics: {used:?}");
    for name in &used {
        assert!(present.contains(name.as_str()), "{name} is used in deploy/ but not served at /metrics");
    }
}
