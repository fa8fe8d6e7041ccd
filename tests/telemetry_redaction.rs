//! Redaction is structural: a task seeded with recognisable personal data (a specimen passport
//! whose MRZ names ERIKSSON ANNA MARIA / L898902C3, a vendor answer and a vendor error body
//! carrying MUSTERMANN ERIKA / C01X00T47, and the image bytes themselves) runs with debug logs,
//! span export and metrics on; none of it may appear in the captured logs, the exported spans
//! and metrics, or `/metrics`.
//!
//! Run: `KYCGATE_MODEL_DIR=… KYCGATE_EVAL_DIR=… cargo test --test telemetry_redaction`.

#[path = "telemetry/common.rs"]
mod telemetry_common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use telemetry_common::*;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Log lines written by the subscriber, kept for inspection.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Personal strings: from the document (read by the local OCR) and from the vendor payloads.
const DOCUMENT_PII: &[&str] = &["ERIKSSON", "Eriksson", "ANNA<MARIA", "L898902C3", "UTOERIKSSON"];
const VENDOR_PII: &[&str] = &["MUSTERMANN", "Mustermann", "ERIKA", "C01X00T47", "1964-08-12"];

/// Fragments of an image as it could leak: raw, hex, base64 (aligned so it is a substring of
/// the base64 of the whole file) and Rust's escaped byte-string `Debug`.
fn image_fragments(img: &[u8]) -> Vec<Vec<u8>> {
    let start = (img.len() / 2) / 3 * 3;
    let chunk = &img[start..start + 48];
    let b64 = base64::engine::general_purpose::STANDARD.encode(chunk);
    let escaped = format!("{:?}", bytes::Bytes::copy_from_slice(chunk));
    vec![
        chunk.to_vec(),
        hex::encode(chunk).into_bytes(),
        b64.into_bytes(),
        escaped.trim_start_matches("b\"").trim_end_matches('"').as_bytes().to_vec(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_never_reaches_logs_spans_or_metrics() {
    let (Some(passport), Some(selfie)) =
        (eval_image("mrz/images/passporteye__passport-td3.jpg"), eval_image("faces/kbyai/face_01.jpg"))
    else {
        panic!("the shared evaluation set is needed: set KYCGATE_EVAL_DIR");
    };
    let (otlp, sink) = otlp_receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut real: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo("providers/fixtures/kbyai/real.json")).expect("fixture"))
            .expect("json");
    real["document"] = serde_json::json!({
        "surname": "MUSTERMANN", "given_names": "ERIKA", "document_number": "C01X00T47", "birth": "1964-08-12"
    });
    let fail_body = br#"{"error":"internal","echo":"MUSTERMANN ERIKA C01X00T47"}"#.to_vec();
    let _vendors = kbyai_vendors_with(dir.path(), fail_body, serde_json::to_vec(&real).expect("json")).await;
    let mut cfg = config(dir.path(), Some(&otlp));
    cfg.telemetry.log_format = "json".into();
    cfg.telemetry.log_filter = "debug".into();
    let logs = Captured::default();
    let writer = logs.clone();
    let telemetry =
        Arc::new(kycgate::telemetry::init_with_writer(&cfg.telemetry, BoxMakeWriter::new(move || writer.clone())));
    let gw = start_gateway(cfg).await;

    let id = submit(
        &gw.base,
        "kyc_passport",
        &[("selfie_image", selfie.clone()), ("passport_image", passport.clone())],
        None,
    )
    .await;
    let task = wait_finished(&gw.base, &id).await;
    let result = task.to_string();
    // The seeded data really went through the gateway (else the test would prove nothing).
    assert!(result.contains("MUSTERMANN"), "the vendor payload reaches the client: {result}");
    if model_dir().is_some() {
        assert!(
            result.contains("ERIKSSON") && result.contains("L898902C3"),
            "the local OCR read the passport: {result}"
        );
    }

    let (metrics_text, _) = scrape(&gw.base).await;
    let t = telemetry.clone();
    tokio::task::spawn_blocking(move || t.flush()).await.expect("flush");
    let task_id = id.clone();
    wait_for(&sink, "the task's spans", |r| {
        r.spans.iter().any(|s| s.name == "task" && attr(s, "task").as_deref() == Some(&task_id))
            && r.spans.iter().filter(|s| s.name == "attempt").count() >= 4
    })
    .await;
    let _ = gw.stop.send(());
    let _ = gw.handle.await;
    let t = telemetry.clone();
    tokio::task::spawn_blocking(move || t.flush()).await.expect("flush");

    let logs = logs.0.lock().expect("logs").clone();
    assert!(contains(&logs, id.as_bytes()), "the capture works: the task id is logged");
    let exported = sink.lock().expect("sink").raw.clone();
    let sources: [(&str, &[u8]); 3] =
        [("logs", &logs), ("OTLP export", &exported), ("/metrics", metrics_text.as_bytes())];
    for (what, data) in sources {
        for pii in DOCUMENT_PII.iter().chain(VENDOR_PII) {
            assert!(!contains(data, pii.as_bytes()), "{pii:?} leaked into {what}");
        }
        for img in [&passport, &selfie] {
            for frag in image_fragments(img) {
                assert!(!contains(data, &frag), "image bytes leaked into {what}");
            }
        }
    }
}
