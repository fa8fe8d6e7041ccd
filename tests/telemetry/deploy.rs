//! The deploy configs the gateway itself reads must load: the compose gateway config and every
//! TOML embedded in the Kubernetes ConfigMap (gateway config and provider adapters).
//! (Metric names used by the dashboard and rules are checked against a live scrape in
//! `e2e.rs`; YAML/JSON/promtool checks are in `deploy/check.sh`.)

use std::path::PathBuf;

use kycgate::config::Config;
use kycgate::providers::spec;

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn compose_gateway_config_loads() {
    let cfg = Config::load(Some(&repo("deploy/config/kycgate.toml"))).expect("deploy/config/kycgate.toml");
    assert!(cfg.telemetry.otlp.enabled);
    assert!(matches!(cfg.store.url, kycgate::config::StoreUrl::Redis(_)), "{}", cfg.store.url);
}

/// The `data:` entries of the ConfigMap, as (key, text); a small reader for this one file
/// (block scalars `key: |` under `data:`) so the test needs no YAML crate.
fn configmap_entries(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_data = false;
    for line in text.lines() {
        if line == "data:" {
            in_data = true;
            continue;
        }
        if !in_data {
            continue;
        }
        if let Some(key) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(": |")).filter(|k| !k.starts_with(' ')) {
            out.push((key.to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            if line.starts_with("  #") {
                continue;
            }
            body.push_str(line.strip_prefix("    ").unwrap_or(line.trim()));
            body.push('\n');
        }
    }
    out
}

#[test]
fn kubernetes_configmap_tomls_load() {
    let text = std::fs::read_to_string(repo("deploy/k8s/standalone/configmap.yaml")).expect("configmap");
    let entries = configmap_entries(&text);
    assert!(entries.iter().any(|(k, _)| k == "kycgate.toml"), "{entries:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    for (key, body) in &entries {
        let path = dir.path().join(key);
        std::fs::write(&path, body).expect("write");
        if key == "kycgate.toml" {
            Config::load(Some(&path)).unwrap_or_else(|e| panic!("{key}: {e}"));
        } else {
            spec::parse_spec(body).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
}
