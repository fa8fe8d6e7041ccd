//! `kycgate providers test NAME`: runs an adapter against its vendor's recording.
//!
//! `providers/fixtures/<name>/replay.toml` says which sub-call to run and what the vendor
//! answers. The simulator plays the vendor on a loopback port, the adapter runs against it with
//! only the recording's environment (never the real credentials), and the unified result is
//! returned as JSON. The contract tests assert the exact requests; this is the operator's quick
//! look and a check that the recordings still map.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};

use super::recording::{LoadError, Recording};
use super::Simulator;
use crate::providers::http::{default_base_url_env, HttpProvider};
use crate::providers::spec::{self, ProviderSpec};
use crate::providers::{Image, Provider, SubCall, SubCallKind, Verdict};

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Recording(#[from] LoadError),
    #[error("{0}")]
    Setup(String),
}

/// The outcome of a replay.
#[derive(Debug)]
pub struct Replay {
    pub recording: Recording,
    pub result: Value,
}

/// Replays provider `name` from `providers_dir` against `fixtures_dir/<name>/replay.toml`.
pub async fn run(name: &str, providers_dir: &Path, fixtures_dir: &Path) -> Result<Replay, ReplayError> {
    let file = spec::load_file(&providers_dir.join(format!("{name}.toml")))?;
    let ProviderSpec::Http(http) = &file.spec else {
        return Err(ReplayError::Setup(format!("{name} is not an http adapter")));
    };
    let recording = Recording::load(fixtures_dir, name)?;
    let dir: PathBuf = fixtures_dir.join(name);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| ReplayError::Setup(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| ReplayError::Setup(e.to_string()))?;
    let mut sim = Simulator::recording(name, &recording, &dir, &format!("http://{addr}"))?;
    let log = sim.log_requests();
    let base = format!("http://{addr}/{name}");
    let task = tokio::spawn(async move { axum::serve(listener, sim.router()).await });

    let fixtures = dir.display().to_string();
    let fill = |s: &str| s.replace("{base}", &base).replace("{fixtures}", &fixtures);
    let mut env: HashMap<String, String> = recording.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
    let url_var = http.base_url_env.clone().unwrap_or_else(|| default_base_url_env(name));
    env.insert(url_var, base.clone());
    // The production redirect policy, so a replay sees what the gateway would.
    let client = crate::providers::http::client_for(http.redirects);
    let mut provider = HttpProvider::from_file_with(&file, &env, client)?;
    if let Some(ms) = recording.time_ms {
        provider = provider.with_clock(move || UNIX_EPOCH + Duration::from_millis(ms));
    }
    let call = sub_call(recording.call, recording.pages)?;
    let started = std::time::Instant::now();
    let outcome = provider.call(call).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    task.abort();

    let requests = log.lines();
    let result = match outcome {
        Ok(answer) => json!({
            "provider": name,
            "sub_call": recording.call,
            "ok": true,
            "verdict": verdict_json(&answer.verdict),
            "vendor_requests": requests,
            "elapsed_ms": elapsed_ms,
        }),
        Err(e) => json!({
            "provider": name,
            "sub_call": recording.call,
            "ok": false,
            "error": e.to_string(),
            "class": e.class(),
            "vendor_requests": requests,
            "elapsed_ms": elapsed_ms,
        }),
    };
    Ok(Replay { recording, result })
}

/// Whether every key of `expect` is in `got` with the same value (numbers compared as f64).
pub fn contains(got: &Value, expect: &Value) -> bool {
    match (got, expect) {
        (Value::Object(g), Value::Object(e)) => e.iter().all(|(k, v)| g.get(k).is_some_and(|gv| contains(gv, v))),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => got == expect,
    }
}

/// A synthetic page: a 200×100 PNG, blue, with a red block where a portrait box would be, so
/// crops and decoders have something real to work on. No personal data.
pub fn synthetic_page() -> Result<Image, image::ImageError> {
    let img = image::RgbImage::from_fn(200, 100, |x, y| {
        if (20..60).contains(&x) && (20..80).contains(&y) {
            image::Rgb([220, 20, 20])
        } else {
            image::Rgb([20, 20, 220])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(Image { bytes: Bytes::from(out.into_inner()), mime: "image/png" })
}

/// The sub-call a recording runs, on synthetic pages.
fn sub_call(kind: SubCallKind, pages: usize) -> Result<SubCall, ReplayError> {
    let image = synthetic_page().map_err(|e| ReplayError::Setup(e.to_string()))?;
    Ok(match kind {
        SubCallKind::Liveness => SubCall::Liveness { image },
        SubCallKind::FaceCompare => SubCall::FaceCompare { probe: image.clone(), reference: image },
        SubCallKind::DocumentOcr => SubCall::DocumentOcr { pages: vec![image; pages.clamp(1, 2)] },
    })
}

/// The unified verdict as JSON; a portrait is reported by size only.
fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Liveness(a) => json!({ "liveness": a }),
        Verdict::Compare(a) => json!({ "face_compare": a }),
        Verdict::Rejected(r) => json!({ "rejected": r }),
        Verdict::Ocr(o) => json!({
            "document_ocr": {
                "fields": o.fields,
                "portrait_bytes": o.portrait.as_ref().map(|p| p.len()),
            }
        }),
    }
}
