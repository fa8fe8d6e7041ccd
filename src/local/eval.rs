//! The evaluation harness behind `kycgate eval`: the local provider's models, with the
//! thresholds fixed in `providers/local.toml` (never fitted per run), over a labelled directory
//! laid out like `../shared/eval`. With a floors file it becomes a regression gate for CI.

use std::fmt;
use std::path::Path;

use kycgate_mrz::eval::MrzReport;
use kycgate_vision::eval::{FaceReport, LivenessReport, PortraitReport};
use kycgate_vision::{FaceDetector, FaceEmbedder};
use serde::Deserialize;

use super::models::ModelStore;
use super::LocalSettings;

/// Every section's report.
pub struct EvalReport {
    pub mrz: MrzReport,
    pub faces: FaceReport,
    pub liveness: LivenessReport,
    pub portraits: PortraitReport,
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
    #[error("floors file {path}: {reason}")]
    Floors { path: String, reason: String },
}

/// Runs every section with the models and thresholds `settings` selects.
pub fn run(dir: &Path, store: &ModelStore, settings: &LocalSettings) -> Result<EvalReport, EvalError> {
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
    Ok(EvalReport {
        mrz: kycgate_mrz::eval::eval_mrz(&dir.join("mrz"), &mrz, kycgate_mrz::Today::now())?,
        faces: kycgate_vision::eval::eval_faces(dir, &det, &emb, compare_threshold).map_err(vis)?,
        liveness: kycgate_vision::eval::eval_liveness(dir, &det, &live, live_threshold, false).map_err(vis)?,
        portraits: kycgate_vision::eval::eval_documents(dir, &det).map_err(vis)?,
    })
}

/// Minimums (and, for error rates, maximums) a run must meet; fractions in 0..1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floors {
    pub mrz_whole_exact: f64,
    pub mrz_number_birth_expiry: f64,
    pub lfw_accuracy: f64,
    pub lfw_auc: f64,
    pub liveness_max_acer: f64,
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
    fn lfw(&self) -> Option<&kycgate_vision::eval::SubsetStats> {
        self.faces.subsets.iter().find(|s| s.name == "lfw")
    }

    fn overall_acer(&self) -> f64 {
        self.liveness.groups.first().map(|g| g.acer()).unwrap_or(f64::NAN)
    }

    fn rows(&self, floors: Option<&Floors>) -> Vec<Row> {
        let m = &self.mrz;
        let lfw = self.lfw();
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
            Row { metric: "LFW accuracy", value: lfw.map_or(0.0, |s| s.accuracy), bound: f(|f| f.lfw_accuracy, true), target: ">= 99.0%" },
            Row { metric: "LFW ROC AUC", value: lfw.map_or(0.0, |s| s.auc), bound: f(|f| f.lfw_auc, true), target: "" },
            Row { metric: "LFW TAR @ FAR 1e-3", value: lfw.map_or(0.0, |s| s.tar_at_far_1e3), bound: None, target: "" },
            Row { metric: "Liveness ACER (overall)", value: self.overall_acer(), bound: f(|f| f.liveness_max_acer, false), target: "reported" },
            Row {
                metric: "Portraits found",
                value: frac(self.portraits.found, self.portraits.with_portrait),
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
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.mrz)?;
        writeln!(f, "{}", self.faces)?;
        writeln!(f, "{}", self.liveness)?;
        write!(f, "{}", self.portraits)
    }
}
