//! The vendor simulator: the shipped scenario loads (every fixture exists) and the shipped dry-run
//! routing config builds; faults (errors, 429 bursts, outages) seen through the real gateway.

use std::time::Duration;

use kycgate::app::{Gateway, Overrides};
use kycgate::config::Config;
use kycgate::simulate::{Scenario, Simulator};
use crate::support::*;

/// Starts a simulator for `scenario` (TOML text; fixtures relative to the repo's `sim/`).
async fn simulator(scenario: &str) -> String {
    let scenario: Scenario = toml::from_str(scenario).expect("scenario parses");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let sim = Simulator::new(&scenario, &repo().join("sim"), &base).expect("fixtures load");
    tokio::spawn(async move { axum::serve(listener, sim.router()).await.expect("simulator") });
    base
}

#[tokio::test]
async fn shipped_scenario_and_dry_run_config_load() {
    let scenario = Scenario::load(&repo().join("sim/vendors.toml")).expect("sim/vendors.toml parses");
    let sim = Simulator::new(&scenario, &repo().join("sim"), "http://127.0.0.1:9100").expect("every fixture loads");
    let names: Vec<String> = sim.bases().into_iter().map(|(n, _)| n).collect();
    // Every shipped HTTP adapter is simulated, and every simulated vendor has an adapter.
    for entry in std::fs::read_dir(repo().join("providers")).expect("providers/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("adapter");
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
        if text.lines().any(|l| l.trim() == "kind = \"http\"") {
            assert!(names.contains(&name), "{name} is not simulated in sim/vendors.toml");
        }
    }
    for vendor in &names {
        assert!(repo().join("providers").join(format!("{vendor}.toml")).is_file(), "{vendor} has no adapter");
    }
    let mut config = Config::load(Some(&repo().join("sim/gateway.toml"))).expect("sim/gateway.toml loads");
    config.providers.dir = repo().join("providers");
    Gateway::build(config, &Overrides::default()).await.expect("the dry-run routing builds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_reach_the_gateway_and_it_routes_around_them() {
    let base = simulator(
        r#"
[[vendor]]
name = "broken"
faults = { error_rate = 1.0 }
route = [{ path = "/check_liveness", replies = [{ fixture = "../providers/fixtures/kbyai/real.json" }] }]

[[vendor]]
name = "bursty"
faults = { burst_429 = { every_secs = 3600, count = 1, retry_after_secs = 1 } }
route = [{ path = "/check_liveness", replies = [{ fixture = "../providers/fixtures/kbyai/real.json" }] }]

[[vendor]]
name = "down"
faults = { outages = [[0, 3600]] }
route = [{ path = "/check_liveness", replies = [{ fixture = "../providers/fixtures/kbyai/real.json" }] }]
"#,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    local_adapter(dir.path());
    for name in ["broken", "bursty", "down"] {
        vendor_adapter(dir.path(), "kbyai.toml", name, &format!("{base}/{name}"), &[]);
    }
    let gw = TestGateway::start(Options {
        providers_dir: dir.path().to_path_buf(),
        extra_toml: r#"
[routing.liveness]
chain = [
  { provider = "down", retry = { max_attempts = 1 } },
  { provider = "broken", retry = { max_attempts = 1 } },
  { provider = "bursty", retry = { max_attempts = 2, max_delay_ms = 3000 } },
]
"#
        .into(),
        ..Options::default()
    })
    .await;
    let api = gw.client();
    let id = api.submit_ok("face_liveness", vec![file("image", png(32))]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
    let data = &task["result"]["data"];
    assert_eq!(data["liveness"]["result"], true, "{task}");
    let attempts: Vec<(String, String)> = data["providers"]["liveness"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| (a["provider"].as_str().expect("p").to_string(), a["reason"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    assert_eq!(attempts[0].0, "down");
    assert!(attempts[0].1.contains("503"), "{attempts:?}");
    assert_eq!(attempts[1].0, "broken");
    assert!(attempts[1].1.contains("500"), "{attempts:?}");
    assert_eq!(attempts[2].0, "bursty");
    assert!(attempts[2].1.contains("rate limit"), "{attempts:?}");
    assert_eq!(attempts[3], ("bursty".to_string(), String::new()));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_scenario_serves_a_polling_vendor_end_to_end() {
    // The shipped scenario as is: Azure Document Intelligence answers 202 + Operation-Location,
    // one "running" poll, then the result.
    let text = std::fs::read_to_string(repo().join("sim/vendors.toml")).expect("scenario");
    let base = simulator(&text).await;
    let dir = tempfile::tempdir().expect("tempdir");
    local_adapter(dir.path());
    vendor_adapter(dir.path(), "azure_docintel.toml", "azure_docintel", &format!("{base}/azure_docintel"), &[("AZURE_DOCINTEL_KEY", "sim")]);
    let gw = TestGateway::start(Options {
        providers_dir: dir.path().to_path_buf(),
        extra_toml: "[routing.document_ocr]\nchain = [{ provider = \"azure_docintel\", timeout_ms = 20000 }]\n".into(),
        ..Options::default()
    })
    .await;
    let api = gw.client();
    let id = api.submit_ok("ocr_passport", vec![file("passport_image", eval_image("documents/passporteye_100_pass-uto.jpg"))]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
    let data = &task["result"]["data"];
    assert_eq!(data["providers"]["document_ocr"][0]["provider"], "azure_docintel", "{task}");
    assert_eq!(data["providers"]["document_ocr"][0]["outcome"], "ok", "{task}");
    assert!(data["document"]["documentNumber"].is_string(), "{task}");
    gw.stop().await;
}
