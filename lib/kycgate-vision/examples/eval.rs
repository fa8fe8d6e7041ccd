//! Prints every evaluation report (faces, liveness, documents) for all models; used to choose models and thresholds.
//!
//! Run: `cargo run -p kycgate-vision --example eval [--release]` with `KYCGATE_EVAL_DIR` / `KYCGATE_MODEL_DIR`
//! (defaults: ../shared/eval and ../shared/models relative to the workspace root).

use std::path::PathBuf;
use std::time::Instant;

use kycgate_vision::eval::{eval_documents, eval_faces, eval_liveness};
use kycgate_vision::{EmbeddingModel, FaceDetector, FaceEmbedder, LivenessModel};

fn dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(default))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let models = dir("KYCGATE_MODEL_DIR", "../shared/models");
    let eval = dir("KYCGATE_EVAL_DIR", "../shared/eval");
    let only: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);

    let t = Instant::now();
    let detector = FaceDetector::load(models.join("face_detection_yunet_2023mar.onnx"))?;
    println!("loaded YuNet in {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);

    if want("documents") {
        println!("{}", eval_documents(&eval, &detector)?);
        let small = FaceDetector::load_with_size(models.join("face_detection_yunet_2023mar.onnx"), 320)?;
        println!("YuNet 320x320:\n{}", eval_documents(&eval, &small)?);
    }

    if want("faces") {
        for (model, file) in
            [(EmbeddingModel::DlibResnet, "dlib_resnet_v1.onnx"), (EmbeddingModel::FrFeature, "fr_feature.onnx")]
        {
            let embedder = FaceEmbedder::load(model, models.join(file))?;
            let report = eval_faces(&eval, &detector, &embedder, model.default_threshold())?;
            println!("{report}");
            println!("threshold sweep (accuracy lfw / deepface / all):");
            for i in 0..=12 {
                let t = model.default_threshold() - 0.12 + 0.02 * i as f32;
                let s = report.at_threshold(t);
                let acc: Vec<String> = s.iter().map(|x| format!("{}={:.2}%", x.name, x.accuracy * 100.0)).collect();
                println!("  {t:.2}: {}", acc.join(" "));
            }
            println!();
        }
    }

    if want("liveness") {
        let mini = LivenessModel::load_minifasnet(
            models.join("minifasnet_v2_27.onnx"),
            models.join("minifasnet_v1se_40.onnx"),
        )?;
        let fr = LivenessModel::load_fr(models.join("fr_liveness.onnx"))?;
        for model in [&mini, &fr] {
            for fallback in [false, true] {
                let report = eval_liveness(&eval, &detector, model, model.default_threshold(), fallback)?;
                println!("{report}");
                if fallback {
                    continue;
                }
                println!("threshold sweep (overall APCER / BPCER / ACER):");
                for t in [0.05f32, 0.1, 0.12, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] {
                    let g = &report.at_threshold(t)[0];
                    println!("  {t:.2}: {:.2}% / {:.2}% / {:.2}%", g.apcer * 100.0, g.bpcer * 100.0, g.acer() * 100.0);
                }
                println!();
            }
        }
    }
    Ok(())
}
