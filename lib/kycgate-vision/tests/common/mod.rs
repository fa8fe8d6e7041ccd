//! Shared helpers for the integration tests: locating eval data and models (missing data fails the test).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use kycgate_vision::{decode_image, DecodeLimits, EmbeddingModel, FaceDetector, FaceEmbedder, LivenessModel};

fn dir(var: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(default));
    assert!(p.is_dir(), "{var} not set and default {} missing: eval data/models are required", p.display());
    p
}

pub fn eval_dir() -> PathBuf {
    dir("KYCGATE_EVAL_DIR", "../shared/eval")
}

pub fn model_dir() -> PathBuf {
    dir("KYCGATE_MODEL_DIR", "../shared/models")
}

pub fn read(rel: &str) -> Vec<u8> {
    let p = eval_dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn image(rel: &str) -> image::RgbImage {
    decode_image(&read(rel), &DecodeLimits::default()).unwrap()
}

pub fn detector() -> &'static FaceDetector {
    static D: OnceLock<FaceDetector> = OnceLock::new();
    D.get_or_init(|| FaceDetector::load(model_dir().join("face_detection_yunet_2023mar.onnx")).unwrap())
}

pub fn embedder() -> &'static FaceEmbedder {
    static E: OnceLock<FaceEmbedder> = OnceLock::new();
    E.get_or_init(|| FaceEmbedder::load(EmbeddingModel::FrFeature, model_dir().join("fr_feature.onnx")).unwrap())
}

pub fn liveness() -> &'static LivenessModel {
    static L: OnceLock<LivenessModel> = OnceLock::new();
    L.get_or_init(|| {
        let m = model_dir();
        LivenessModel::load_minifasnet(m.join("minifasnet_v2_27.onnx"), m.join("minifasnet_v1se_40.onnx")).unwrap()
    })
}
