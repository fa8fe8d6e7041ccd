//! `kycgate eval`: the local provider measured on a labelled directory laid out like
//! `../shared/eval`, with the thresholds and gates fixed in `providers/local.toml` (never fitted
//! per run). Faces, full-frame liveness and portraits go through the product path
//! ([`product`]: the API's upload check, then the provider's own sub-calls); the model-only
//! figures are printed beside them so a gap between the two is visible. With a floors file it
//! is CI's regression gate, on the product figures.
//!
//! Used only by the CLI: nothing here is linked into the request path.

pub mod product;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use kycgate_mrz::eval::MrzReport;
use kycgate_vision::eval::{FaceReport, LivenessReport};
use kycgate_vision::{FaceDetector, FaceEmbedder};
use serde::Deserialize;

use crate::config::{Config, ImageLimits};
use crate::local::models::ModelStore;
use crate::local::{LocalProvider, LocalSettings};
use crate::providers::spec::LocalSpec;
use crate::providers::{Provider, SubCallKind};
use product::{FacePairsReport, FullFrameReport, PairStats, PortraitCrops, ProductPath};

/// Every section's report.
pub struct EvalReport {
    pub mrz: MrzReport,
    /// Model-only: largest face, no gates, embedder and threshold directly.
    pub faces: FaceReport,
    /// Model-only on the tight face crops of `spoof/`.
    pub liveness: LivenessReport,
    /// Product path: register_face on A, authenticate_face's compare with B.
    pub pairs: FacePairsReport,
    /// Product path: the liveness sub-call on `spoof_fullframe/` (absent when the set is).
    pub full_frames: Option<FullFrameReport>,
    /// Product path: the portrait crop on `documents/`.
    pub portraits: PortraitCrops,
}

/// Why the harness could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("model: {0}")]
    Model(String),
    #[error("MRZ evaluation: {0}")]
    Mrz(#[from] std::io::Error),
    #[error("face evaluation: {0}")]
    Vision(String),
    #[error("product path: {0}")]
    Product(String),
    #[error("floors file {path}: {reason}")]
    Floors { path: String, reason: String },
}

/// The local provider as deployed (`spec`), the model store and the upload limits.
pub struct Subject<'a> {
    pub spec: &'a LocalSpec,
    pub settings: &'a LocalSettings,
    pub store: &'a ModelStore,
    pub config: &'a Config,
}

/// Runs every section: the model-only ones on the blocking pool, the product ones through a
/// local provider built exactly as `serve` builds it.
pub async fn run(dir: &Path, subject: &Subject<'_>) -> Result<EvalReport, EvalError> {
    let provider = LocalProvider::build("local", subject.spec, &subject.config.models, &subject.config.local)
        .await
        .map_err(|e| EvalError::Model(format!("[settings] of the local provider: {e}")))?;
    for kind in [SubCallKind::Liveness, SubCallKind::FaceCompare] {
        if let Some(why) = provider.unavailable(kind) {
            return Err(EvalError::Model(why.reason));
        }
    }
    let limits: ImageLimits = subject.config.images;
    let path = ProductPath { provider: &provider, limits: &limits };
    let (owned_dir, store, settings) = (dir.to_path_buf(), subject.store.clone(), subject.settings.clone());
    let models = tokio::task::spawn_blocking(move || model_only(&owned_dir, &store, &settings));
    let pairs = product::face_pairs(dir, &path).await?;
    let full_frames = if dir.join("spoof_fullframe/labels.csv").is_file() {
        let threshold = live_threshold(subject)?;
        Some(product::full_frames(dir, &path, threshold).await?)
    } else {
        None
    };
    let portraits = product::portraits(dir, &path).await?;
    let (mrz, faces, liveness) =
        models.await.map_err(|e| EvalError::Product(format!("model-only task: {e}")))??;
    Ok(EvalReport { mrz, faces, liveness, pairs, full_frames, portraits })
}

/// The live threshold in force, as the provider applies it.
fn live_threshold(subject: &Subject<'_>) -> Result<f64, EvalError> {
    let s = subject.settings;
    if let Some(t) = s.liveness_threshold {
        return Ok(t);
    }
    let model = |name: &str| subject.store.resolve(name).map_err(|e| EvalError::Model(format!("{name}: {e}")));
    let files = s.liveness_model_names().iter().map(|n| model(n)).collect::<Result<Vec<_>, _>>()?;
    let live = s.load_liveness(&files).map_err(|e| EvalError::Vision(e.to_string()))?;
    Ok(s.liveness_threshold_for(&live))
}

/// The model-only sections: MRZ reader, embedder on the largest face, liveness on tight crops.
fn model_only(
    dir: &Path,
    store: &ModelStore,
    settings: &LocalSettings,
) -> Result<(MrzReport, FaceReport, LivenessReport), EvalError> {
    let model = |name: &str| store.resolve(name).map_err(|e| EvalError::Model(format!("{name}: {e}")));
    let vision = |e: kycgate_vision::VisionError| EvalError::Vision(e.to_string());
    let det = FaceDetector::load(model("yunet")?).map_err(vision)?;
    let emb = FaceEmbedder::load(settings.embedding_model, model(settings.embedder_model_name())?).map_err(vision)?;
    let live_files = settings.liveness_model_names().iter().map(|n| model(n)).collect::<Result<Vec<_>, _>>()?;
    let live = settings.load_liveness(&live_files).map_err(vision)?;
    let compare_threshold = settings.compare_threshold_for(&emb) as f32;
    let live_threshold = settings.liveness_threshold_for(&live) as f32;
    let mrz = kycgate_mrz::read::MrzReader::new().map_err(|e| EvalError::Model(format!("MRZ reader: {e}")))?;
    let vis = |e: kycgate_vision::eval::EvalError| EvalError::Vision(e.to_string());
    Ok((
        kycgate_mrz::eval::eval_mrz(&dir.join("mrz"), &mrz, kycgate_mrz::Today::now())?,
        kycgate_vision::eval::eval_faces(dir, &det, &emb, compare_threshold).map_err(vis)?,
        kycgate_vision::eval::eval_liveness(dir, &det, &live, live_threshold, false).map_err(vis)?,
    ))
}

/// Minimums (and, for error rates, maximums) a run must meet; fractions in 0..1. The face and
/// full-frame liveness bounds are on the product path's figures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floors {
    pub mrz_whole_exact: f64,
    pub mrz_number_birth_expiry: f64,
    /// LFW pairs decided right through the product path, refusals counted as errors.
    pub lfw_accuracy: f64,
    /// Ceiling: LFW images (all genuine faces) refused by the selfie gates.
    pub lfw_max_images_refused: f64,
    /// Model-only ROC AUC on LFW (the embedder itself).
    pub lfw_auc: f64,
    /// Ceiling: model-only ACER on the tight crops of `spoof/`.
    pub liveness_max_acer: f64,
    /// Ceiling: product-path ACER on `spoof_fullframe/`.
    pub fullframe_max_acer: f64,
    /// Product-path portrait crops on documents that have a portrait.
    pub portraits_found: f64,
}

impl Floors {
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let err = |reason: String| EvalError::Floors { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }
}

fn frac(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

/// One row of the summary table.
struct Row {
    metric: &'static str,
    value: f64,
    /// (bound, true = the value must be at least the bound; false = at most).
    bound: Option<(f64, bool)>,
    target: &'static str,
}

impl EvalReport {
    fn lfw_model(&self) -> Option<&kycgate_vision::eval::SubsetStats> {
        self.faces.subsets.iter().find(|s| s.name == "lfw")
    }

    fn lfw_product(&self) -> PairStats {
        self.pairs.stats("lfw", |p| p.subset == "lfw", |i| i.subset == "lfw")
    }

    fn tight_crop_acer(&self) -> f64 {
        self.liveness.groups.first().map(|g| g.acer()).unwrap_or(f64::NAN)
    }

    fn full_frame_acer(&self) -> f64 {
        self.full_frames.as_ref().and_then(|r| r.groups().first().map(|g| g.acer())).unwrap_or(f64::NAN)
    }

    fn rows(&self, floors: Option<&Floors>) -> Vec<Row> {
        let m = &self.mrz;
        let model = self.lfw_model();
        let lfw = self.lfw_product();
        let f = |pick: fn(&Floors) -> f64, at_least: bool| floors.map(|fl| (pick(fl), at_least));
        vec![
            Row { metric: "MRZ whole exact", value: frac(m.whole_exact, m.positives), bound: f(|f| f.mrz_whole_exact, true), target: ">= 95%" },
            Row {
                metric: "MRZ number+birth+expiry exact",
                value: frac(m.num_birth_expiry, m.positives),
                bound: f(|f| f.mrz_number_birth_expiry, true),
                target: ">= 98%",
            },
            Row { metric: "MRZ check-digit agreement", value: frac(m.check_agree, m.positives), bound: None, target: "" },
            Row {
                metric: "LFW accuracy, product path (refusals = errors)",
                value: lfw.accuracy,
                bound: f(|f| f.lfw_accuracy, true),
                target: ">= 99.0%",
            },
            Row {
                metric: "LFW genuine images refused by the gates",
                value: lfw.images_refused_rate(),
                bound: f(|f| f.lfw_max_images_refused, false),
                target: "<= 1%",
            },
            Row { metric: "LFW accuracy, model only", value: model.map_or(0.0, |s| s.accuracy), bound: None, target: "" },
            Row { metric: "LFW ROC AUC, model only", value: model.map_or(0.0, |s| s.auc), bound: f(|f| f.lfw_auc, true), target: "" },
            Row { metric: "LFW TAR @ FAR 1e-3, model only", value: model.map_or(0.0, |s| s.tar_at_far_1e3), bound: None, target: "" },
            Row {
                metric: "Liveness ACER, full frames, product path",
                value: self.full_frame_acer(),
                bound: f(|f| f.fullframe_max_acer, false),
                target: "reported",
            },
            Row {
                metric: "Liveness ACER, tight crops, model only",
                value: self.tight_crop_acer(),
                bound: f(|f| f.liveness_max_acer, false),
                target: "reported",
            },
            Row {
                metric: "Portraits cropped, product path",
                value: frac(self.portraits.cropped, self.portraits.with_portrait),
                bound: f(|f| f.portraits_found, true),
                target: "",
            },
        ]
    }

    /// The floors this run breaks, as readable lines (empty = all held).
    pub fn breaches(&self, floors: &Floors) -> Vec<String> {
        self.rows(Some(floors))
            .into_iter()
            .filter_map(|r| {
                let (bound, at_least) = r.bound?;
                let ok = if at_least { r.value >= bound } else { r.value <= bound };
                (!ok || r.value.is_nan()).then(|| {
                    format!(
                        "{}: {:.2}% is {} the floor {:.2}%",
                        r.metric,
                        r.value * 100.0,
                        if at_least { "below" } else { "above" },
                        bound * 100.0
                    )
                })
            })
            .collect()
    }

    /// The one summary table (the detailed per-section tables follow it in `Display`).
    pub fn summary(&self, floors: Option<&Floors>) -> String {
        let mut out = String::from("| metric | value | floor | target |\n|---|---|---|---|\n");
        for r in self.rows(floors) {
            let floor = match r.bound {
                Some((b, true)) => format!(">= {:.2}%", b * 100.0),
                Some((b, false)) => format!("<= {:.2}%", b * 100.0),
                None => String::new(),
            };
            out.push_str(&format!("| {} | {:.2}% | {} | {} |\n", r.metric, r.value * 100.0, floor, r.target));
        }
        out.push_str(&format!(
            "| median ms: MRZ read / detect / embed / liveness | {:.1} / {:.1} / {:.1} / {:.1} | | |\n",
            self.mrz.ms_per_image, self.faces.detect_ms, self.faces.embed_ms, self.liveness.score_ms
        ));
        out
    }

    /// Pairs of `subset` the product refused, and how many of them the model alone (largest
    /// face, no gates) decided wrongly: a gate that refuses only those costs no accuracy.
    fn refused_model_wrong(&self, subset: &str) -> (usize, usize) {
        let t = self.faces.threshold;
        let refused: Vec<_> = self
            .pairs
            .pairs
            .iter()
            .zip(&self.faces.pairs)
            .filter(|(p, _)| p.subset == subset && p.outcome.is_err())
            .collect();
        let wrong = refused.iter().filter(|(p, m)| (m.similarity.unwrap_or(f32::NEG_INFINITY) >= t) != p.same).count();
        (refused.len(), wrong)
    }

    /// Every pair's product outcome beside the model-only similarity, then every image's
    /// liveness-sub-call outcome, as TSV: what the gates were calibrated from.
    pub fn pairs_tsv(&self) -> String {
        let mut t = String::from("subset\tsame\timg_a\timg_b\tproduct\tmodel_similarity\n");
        for (p, m) in self.pairs.pairs.iter().zip(&self.faces.pairs) {
            let product = match p.outcome {
                Ok((is_match, similarity)) => format!("{}:{similarity:.4}", if is_match { "match" } else { "no_match" }),
                Err(r) => r.code().to_string(),
            };
            let model = m.similarity.map_or("no_face".to_string(), |s| format!("{s:.4}"));
            t.push_str(&format!("{}\t{}\t{}\t{}\t{product}\t{model}\n", p.subset, u8::from(p.same), p.a, p.b));
        }
        t
    }

    /// Every full frame's liveness-sub-call outcome (live probability, or the refusal code), as
    /// TSV: what the threshold was chosen from, and the input for studying other cues.
    pub fn frames_tsv(&self) -> String {
        let mut t = String::from("path\tsubject_group\tfold\tattack_type\tcapture\tis_spoof\tproduct\n");
        for f in self.full_frames.iter().flat_map(|r| &r.frames) {
            let product = match &f.outcome {
                product::LivenessOutcome::Scored { probability, .. } => format!("{probability:.4}"),
                product::LivenessOutcome::Refused(r) => r.code().to_string(),
            };
            let s = &f.sample;
            t.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{product}\n",
                f.path, f.subject_group, f.fold, s.attack_type, s.capture, u8::from(s.is_spoof)
            ));
        }
        t
    }

    /// The product-path face table: per subset, then the LFW identity halves.
    pub fn pairs_table(&self) -> String {
        let model: HashMap<String, f64> = self.faces.subsets.iter().map(|s| (s.name.clone(), s.accuracy)).collect();
        let mut rows = self.pairs.subsets();
        rows.push(self.pairs.lfw_half(0));
        rows.push(self.pairs.lfw_half(1));
        product::pairs_table(&rows, &model)
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.mrz)?;
        writeln!(f, "Model only (largest face, no gates):\n{}", self.faces)?;
        writeln!(f, "Face pairs through the product path (register_face on A, authenticate_face on B):")?;
        writeln!(f, "{}", self.pairs_table())?;
        let (refused, wrong) = self.refused_model_wrong("lfw");
        writeln!(f, "LFW pairs refused through the product path: {refused}, of which the model alone decided {wrong} wrongly")?;
        let (nl, n) = self.pairs.not_live("lfw");
        writeln!(f, "LFW images judged not live by the liveness sub-call (register_face would not store them): {nl}/{n}\n")?;
        writeln!(f, "Model only, tight face crops:\n{}", self.liveness)?;
        if let Some(ff) = &self.full_frames {
            writeln!(f, "{ff}")?;
        }
        let p = &self.portraits;
        writeln!(
            f,
            "Portrait crop through the product path: {}/{} documents with a portrait, {} false crops on {} without",
            p.cropped, p.with_portrait, p.false_crops, p.without_portrait
        )
    }
}
