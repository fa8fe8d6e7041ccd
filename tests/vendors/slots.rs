//! Route slots against workers, through the real gateway: a provider whose `concurrency` is
//! below `[worker] concurrency` makes tasks wait for a slot; a wait that outlasts the attempt
//! deadline skips the provider ("no free slot") and the chain moves on, and the wait is never
//! counted as the provider failing (its circuit stays closed). A route left without
//! `concurrency` gets the worker count, so no task waits.

use std::time::Duration;

use serde_json::Value;

use crate::policies::liveness_vendor;
use crate::support::*;

/// Every attempt of every task's liveness sub-call: (provider, outcome, reason).
async fn run_tasks(gw: &TestGateway, n: usize) -> Vec<Vec<(String, String, String)>> {
    let api = gw.client();
    let selfie = eval_image("faces/lfw/Bill_Bradley/Bill_Bradley_0001.jpg");
    let submits = (0..n).map(|_| api.submit_ok("face_liveness", vec![file("image", selfie.clone()), text("extend_data", "true")]));
    let ids = futures::future::join_all(submits).await;
    let mut all = Vec::new();
    for id in ids {
        let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
        assert_eq!(task["status"], "SUCCESS", "{task}");
        let attempts = task["result"]["data"]["providers"]["liveness"].as_array().cloned().unwrap_or_default();
        all.push(
            attempts
                .iter()
                .map(|a: &Value| {
                    (
                        a["provider"].as_str().unwrap_or_default().to_string(),
                        a["outcome"].as_str().unwrap_or_default().to_string(),
                        a["reason"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        );
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_a_slot_skips_the_provider_without_opening_its_circuit() {
    let slow = liveness_vendor(Duration::from_millis(400)).await;
    let spare = liveness_vendor(Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    local_adapter(dir.path());
    vendor_adapter(dir.path(), "kbyai.toml", "slow", &slow.uri(), &[]);
    vendor_adapter(dir.path(), "kbyai.toml", "spare", &spare.uri(), &[]);
    // One slot for eight workers, and a breaker that opens on the first counted failure.
    let routing = r#"
[routing.liveness]
chain = [
  { provider = "slow", concurrency = 1, timeout_ms = 1000, retry = { max_attempts = 1 }, breaker = { failure_threshold = 1 } },
  { provider = "spare", timeout_ms = 5000 },
]
"#;
    let gw = TestGateway::start(Options { concurrency: 8, ..Options::routed(dir.path(), routing) }).await;
    let tasks = run_tasks(&gw, 8).await;
    let flat: Vec<_> = tasks.iter().flatten().collect();
    assert!(
        flat.iter().any(|(p, o, r)| p == "slow" && o == "skipped" && r.contains("no free slot")),
        "some task waited past the deadline and skipped `slow`: {tasks:?}"
    );
    assert!(flat.iter().any(|(p, o, _)| p == "slow" && o == "ok"), "`slow` still served some: {tasks:?}");
    assert!(
        !flat.iter().any(|(p, o, r)| p == "slow" && (o == "error" || r.contains("circuit open"))),
        "waiting for a slot counted as a failure: {tasks:?}"
    );
    let (_, ready) = gw.client().get("/readyz").await;
    assert!(!ready.to_string().contains("\"open\""), "a circuit opened: {ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_concurrency_follows_the_workers() {
    let slow = liveness_vendor(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    local_adapter(dir.path());
    vendor_adapter(dir.path(), "kbyai.toml", "slow", &slow.uri(), &[]);
    // With the old fixed default of 16 slots, tasks 33..40 would wait two vendor calls (600 ms)
    // for a slot, past the 500 ms deadline, and skip the only provider (no answer). Unset, the
    // route has 40 slots and no task waits.
    let routing = r#"
[routing.liveness]
chain = [{ provider = "slow", timeout_ms = 500, retry = { max_attempts = 1 } }]
"#;
    let gw = TestGateway::start(Options { concurrency: 40, ..Options::routed(dir.path(), routing) }).await;
    let tasks = run_tasks(&gw, 40).await;
    for attempts in &tasks {
        assert_eq!(attempts.len(), 1, "one attempt each: {tasks:?}");
        assert_eq!((attempts[0].0.as_str(), attempts[0].1.as_str()), ("slow", "ok"), "{tasks:?}");
    }
}
