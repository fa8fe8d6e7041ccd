//! Uploads are checked without decoding (`images::check`: header, limits, structure); pixels are
//! decoded later, only by the local provider and under its decode cap. On the shared real
//! images: the structural check accepts every image the decoder reads and refuses every
//! truncated one; the local provider never decodes more images at once than its cap.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use kycgate::config::{Config, LocalConfig};
use kycgate::images::{self, ImageProblem};
use kycgate::local::LocalProvider;
use kycgate::providers::spec::{load_file, ProviderSpec};
use kycgate::providers::{Image, Provider, SubCall, Verdict};
use kycgate_vision::{decode_image, DecodeLimits};

use crate::support::*;

fn images_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            images_under(&path, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        {
            out.push(path);
        }
    }
}

#[test]
fn structural_check_agrees_with_the_decoder_on_every_real_image() {
    let limits = Config::load(None).expect("defaults").images;
    let decode_limits = DecodeLimits::from(&limits);
    let mut paths = Vec::new();
    images_under(&eval_dir(), &mut paths);
    assert!(paths.len() > 500, "expected the shared image set, found {} images", paths.len());
    let mut decoded = 0;
    for path in &paths {
        let bytes = std::fs::read(path).expect("read image");
        let checked = images::check(&bytes, &limits);
        match decode_image(&bytes, &decode_limits) {
            Ok(_) => {
                decoded += 1;
                assert!(checked.is_ok(), "{}: the decoder reads it, the check refused it: {checked:?}", path.display());
            }
            // Refused by the decoder: the check may only let it through if its structure is
            // complete (a damaged entropy-coded stream, left to the provider to report).
            Err(e) => assert!(
                checked.is_err() || images::inspect(&bytes).is_ok(),
                "{}: decoder refused it ({e}) and its structure is broken, yet the check passed it",
                path.display()
            ),
        }
        // A cut-off upload of an accepted image is a 400 at submit, as when submit decoded.
        if checked.is_ok() {
            let cut = &bytes[..bytes.len() * 2 / 3];
            assert_eq!(images::check(cut, &limits), Err(ImageProblem::Invalid), "{} cut to 2/3", path.display());
        }
    }
    assert!(decoded > 500, "only {decoded} images decoded");
}

async fn local_provider(cap: usize) -> LocalProvider {
    let file = load_file(&repo().join("providers/local.toml")).expect("local.toml");
    let ProviderSpec::Local(spec) = &file.spec else { panic!("local.toml is not a local provider") };
    let mut config = Config::load(None).expect("defaults");
    // The shared mirror (KYCGATE_MODEL_DIR) or nothing: tests never download.
    config.models.fetch = false;
    LocalProvider::build("local", spec, &config.models, &LocalConfig { max_concurrent_decodes: cap }).await.expect("local settings are valid")
}

/// Distinct selfies (the provider caches decodes of identical bytes).
fn selfies(n: usize) -> Vec<Image> {
    (1..=n)
        .map(|i| {
            let bytes = Bytes::from(eval_image(&format!("faces/deepface/img{i}.jpg")));
            Image { mime: "image/jpeg", bytes }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_provider_never_decodes_more_than_its_cap() {
    for cap in [1, 2] {
        let provider = local_provider(cap).await;
        assert_eq!(provider.decode_stats().limit, cap);
        let calls = selfies(6).into_iter().map(|image| {
            let provider = provider.clone();
            async move { provider.call(SubCall::Liveness { image }).await }
        });
        let answers = futures::future::join_all(calls).await;
        for answer in &answers {
            let answer = answer.as_ref().expect("local liveness answers (models in KYCGATE_MODEL_DIR)");
            assert!(matches!(answer.verdict, Verdict::Liveness(_) | Verdict::Rejected(_)), "{:?}", answer.verdict);
        }
        let stats = provider.decode_stats();
        assert_eq!(stats.decodes, 6, "each distinct selfie decoded once: {stats:?}");
        assert!(stats.peak >= 1 && stats.peak <= cap, "cap {cap} exceeded: {stats:?}");
    }
}

#[test]
fn decode_cap_defaults_to_the_cores() {
    let config = Config::load(None).expect("defaults");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(config.local.decode_cap(), cores);
}
