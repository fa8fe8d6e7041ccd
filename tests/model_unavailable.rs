//! Honest degradation: the local provider started with no model directory, an empty cache and
//! fetching off reports the checks it cannot perform as `MODEL_UNAVAILABLE` (not performed, never
//! a negative verdict), and nothing a client or the unauthenticated `/readyz` reads names a file,
//! a directory or a user.
//!
//! One test in its own binary: it sets the process environment (model dir, cache) the provider
//! reads at start-up.

#[allow(dead_code)] // this test uses part of the harness
mod support;

use std::time::Duration;

use support::{eval_image, file, Options, TestGateway};

/// Asserts `text` carries no filesystem path or user name.
fn assert_no_internals(text: &str, cache: &str) {
    let user = std::env::var("USER").unwrap_or_default();
    for needle in [cache, "/work", "/home", "/root", "/tmp", ".cache", ".onnx", "kycgate/models"] {
        assert!(!text.contains(needle), "`{needle}` leaked: {text}");
    }
    if user.len() > 2 {
        assert!(!text.contains(&user), "user name leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_models_are_reported_as_not_performed_without_internals() {
    let cache = tempfile::tempdir().expect("tempdir");
    let cache_path = cache.path().display().to_string();
    // Edition 2021: set_var is safe; this binary has this one test, so nothing reads concurrently.
    std::env::set_var("KYCGATE_MODEL_DIR", "");
    std::env::set_var("KYCGATE_CACHE_DIR", cache.path());
    std::env::remove_var("KYCGATE_MODELS_MANIFEST");
    let opts = Options { extra_toml: "[models]\nfetch = false\n".into(), ..Options::default() };
    let gw = TestGateway::start(opts).await;

    // Unauthenticated probe: not ready, with the stable code and a sentence, and no paths.
    let (code, body) = gw.client_with(None).get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    for sub in ["liveness", "face_compare"] {
        let why = body["sub_calls"][sub].as_str().unwrap_or_default();
        assert!(why.contains("MODEL_UNAVAILABLE"), "{sub}: {body}");
        assert!(why.contains("not installed"), "{sub}: {body}");
    }
    // The MRZ reader ships inside the binary: OCR stays available.
    assert_eq!(body["sub_calls"]["document_ocr"], "ok", "{body}");
    assert_no_internals(&body.to_string(), &cache_path);

    // A liveness check: not performed, not failed.
    let api = gw.client();
    let id = api.submit_ok("face_liveness", vec![file("image", eval_image("faces/deepface/img1.jpg"))]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
    let liveness = &task["result"]["data"]["liveness"];
    assert_eq!(liveness["error_code"], "MODEL_UNAVAILABLE", "{task}");
    assert!(liveness["result"].is_null(), "a check not performed has no verdict: {task}");
    assert!(task["result"]["data"]["issues"]["liveness"]["MODEL_UNAVAILABLE"].is_string(), "{task}");
    assert_no_internals(&task.to_string(), &cache_path);
    gw.stop().await;
}
