//! Evaluation on the shared real-image sets: face verification, passive liveness and document-portrait detection.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;

use crate::decode::{decode_image, DecodeError, DecodeLimits};
use crate::detect::{Face, FaceDetector};
use crate::embed::{compare, Embedding, EmbeddingModel, FaceEmbedder};
use crate::error::VisionError;
use crate::liveness::{LivenessKind, LivenessModel};

/// Why an evaluation could not run (missing files, bad labels); model failures are carried as `Vision`.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A label file or image could not be read.
    #[error("cannot read {path}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A label CSV lacks a column or has a malformed row.
    #[error("bad label file {path}: {detail}")]
    Labels {
        /// Label file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// An eval image does not decode.
    #[error("cannot decode {path}")]
    Decode {
        /// Image file.
        path: PathBuf,
        /// Decoder error.
        #[source]
        source: DecodeError,
    },
    /// Detection, embedding or liveness inference failed.
    #[error(transparent)]
    Vision(#[from] VisionError),
}

// === CSV and image helpers ===

/// Parses a CSV with a header row into maps (handles double-quoted fields with commas and doubled quotes).
pub fn read_csv(path: &Path) -> Result<Vec<HashMap<String, String>>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.into(), source })?;
    let mut rows = text.lines().filter(|l| !l.trim().is_empty()).map(split_csv_line);
    let header = rows.next().ok_or_else(|| EvalError::Labels { path: path.into(), detail: "empty".into() })?;
    Ok(rows.map(|r| header.iter().cloned().zip(r).collect()).collect())
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// One column of a `read_csv` row; a missing column is a label-file error naming `path`.
pub fn field<'a>(row: &'a HashMap<String, String>, name: &str, path: &Path) -> Result<&'a str, EvalError> {
    row.get(name)
        .map(String::as_str)
        .ok_or_else(|| EvalError::Labels { path: path.into(), detail: format!("missing column {name}") })
}

fn load_image(path: &Path) -> Result<RgbImage, EvalError> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io { path: path.into(), source })?;
    decode_image(&bytes, &DecodeLimits::default()).map_err(|source| EvalError::Decode { path: path.into(), source })
}

/// Median (upper middle for even counts); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// ROC AUC by the Mann-Whitney statistic (ties count one half): probability that a random positive scores
/// above a random negative.
pub fn roc_auc(positives: &[f32], negatives: &[f32]) -> f64 {
    if positives.is_empty() || negatives.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0f64;
    for p in positives {
        for n in negatives {
            wins += if p > n { 1.0 } else if p == n { 0.5 } else { 0.0 };
        }
    }
    wins / (positives.len() * negatives.len()) as f64
}

/// True-accept rate at a false-accept rate: the strictest threshold letting through at most
/// `floor(far * impostors)` impostors, and the share of genuine scores strictly above it.
pub fn tar_at_far(genuine: &[f32], impostor: &[f32], far: f64) -> f64 {
    if genuine.is_empty() || impostor.is_empty() {
        return f64::NAN;
    }
    let mut imp = impostor.to_vec();
    imp.sort_by(|a, b| b.total_cmp(a));
    let allowed = (far * imp.len() as f64).floor() as usize;
    let cut = imp[allowed.min(imp.len() - 1)];
    genuine.iter().filter(|&&g| g > cut).count() as f64 / genuine.len() as f64
}

/// Threshold (midpoint between adjacent scores) maximising `accuracy(threshold)`; the first (lowest) wins ties.
pub fn best_threshold(scores: &[f32], accuracy: impl Fn(f32) -> f64) -> (f32, f64) {
    let mut s: Vec<f32> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    s.sort_by(f32::total_cmp);
    s.dedup();
    let mut best = (f32::NAN, f64::MIN);
    for w in s.windows(2) {
        let t = (w[0] + w[1]) / 2.0;
        let a = accuracy(t);
        if a > best.1 {
            best = (t, a);
        }
    }
    best
}

// === Face verification ===

/// One scored pair.
#[derive(Debug, Clone)]
pub struct PairScore {
    /// Subset name from pairs.csv.
    pub subset: String,
    /// Ground truth: same person.
    pub same: bool,
    /// Similarity, `None` when a face was missing in either image.
    pub similarity: Option<f32>,
}

/// Verification metrics of one subset.
#[derive(Debug, Clone)]
pub struct SubsetStats {
    /// Subset name ("lfw", "deepface", "kbyai", "all").
    pub name: String,
    /// Same-person pairs.
    pub same: usize,
    /// Different-person pairs.
    pub different: usize,
    /// Pairs in which either image had no detected face (decided "different").
    pub no_face: usize,
    /// Accuracy at the fixed threshold, over all pairs (no-face pairs count as "different").
    pub accuracy: f64,
    /// ROC AUC (no-face pairs scored lowest).
    pub auc: f64,
    /// TAR at FAR 1e-3; with fewer than 1000 impostor pairs this is TAR at zero false accepts.
    pub tar_at_far_1e3: f64,
    /// Accuracy-maximising threshold on this subset and its accuracy (information, not used for decisions).
    pub best_threshold: (f32, f64),
}

/// Face-verification report for one embedding model.
#[derive(Debug, Clone)]
pub struct FaceReport {
    /// Embedding model evaluated.
    pub model: EmbeddingModel,
    /// Similarity threshold used for `accuracy`.
    pub threshold: f32,
    /// Per-subset metrics, then "all".
    pub subsets: Vec<SubsetStats>,
    /// Distinct images processed.
    pub images: usize,
    /// Images with no face found (undecodable ones included).
    pub images_no_face: usize,
    /// Images the decoder refused (not PNG/JPEG), counted as "no face".
    pub images_undecodable: usize,
    /// Median detector time per image (ms).
    pub detect_ms: f64,
    /// Median embedding time per face (ms), alignment included.
    pub embed_ms: f64,
    /// Every pair's score, for threshold sweeps.
    pub pairs: Vec<PairScore>,
}

impl FaceReport {
    /// Recomputes subset metrics at another threshold (used to compare candidate thresholds).
    pub fn at_threshold(&self, threshold: f32) -> Vec<SubsetStats> {
        subset_stats(&self.pairs, threshold)
    }
}

fn subset_stats(pairs: &[PairScore], threshold: f32) -> Vec<SubsetStats> {
    let mut names: Vec<String> = Vec::new();
    for p in pairs {
        if !names.contains(&p.subset) {
            names.push(p.subset.clone());
        }
    }
    names.push("all".into());
    names
        .into_iter()
        .map(|name| {
            let sel: Vec<&PairScore> = pairs.iter().filter(|p| name == "all" || p.subset == name).collect();
            let score = |p: &PairScore| p.similarity.unwrap_or(f32::NEG_INFINITY);
            let genuine: Vec<f32> = sel.iter().filter(|p| p.same).map(|p| score(p)).collect();
            let impostor: Vec<f32> = sel.iter().filter(|p| !p.same).map(|p| score(p)).collect();
            let acc = |t: f32| {
                sel.iter().filter(|p| (score(p) >= t) == p.same).count() as f64 / sel.len().max(1) as f64
            };
            let all: Vec<f32> = sel.iter().map(|p| score(p)).collect();
            SubsetStats {
                same: genuine.len(),
                different: impostor.len(),
                no_face: sel.iter().filter(|p| p.similarity.is_none()).count(),
                accuracy: acc(threshold),
                auc: roc_auc(&genuine, &impostor),
                tar_at_far_1e3: tar_at_far(&genuine, &impostor, 1e-3),
                best_threshold: best_threshold(&all, acc),
                name,
            }
        })
        .collect()
}

/// Scores every pair of `faces/pairs.csv` under `eval_dir` with the largest face of each image.
pub fn eval_faces(
    eval_dir: &Path,
    detector: &FaceDetector,
    embedder: &FaceEmbedder,
    threshold: f32,
) -> Result<FaceReport, EvalError> {
    let dir = eval_dir.join("faces");
    let csv = dir.join("pairs.csv");
    let rows = read_csv(&csv)?;
    let mut cache: HashMap<String, Option<Embedding>> = HashMap::new();
    let (mut det_ms, mut emb_ms) = (Vec::new(), Vec::new());
    let mut pairs = Vec::new();
    let mut undecodable = 0;
    for row in &rows {
        let mut embs = Vec::new();
        for col in ["img_a", "img_b"] {
            let rel = field(row, col, &csv)?;
            if !cache.contains_key(rel) {
                let img = match load_image(&dir.join(rel)) {
                    Ok(img) => img,
                    // Formats we refuse (e.g. a WebP named .jpg) count as "no face", like in production.
                    Err(EvalError::Decode { .. }) => {
                        undecodable += 1;
                        cache.insert(rel.to_string(), None);
                        embs.push(None);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let t = Instant::now();
                let faces = detector.detect(&img)?;
                det_ms.push(ms_since(t));
                let emb = match faces.first() {
                    Some(face) => {
                        let t = Instant::now();
                        let e = embedder.embed(&img, face)?;
                        emb_ms.push(ms_since(t));
                        Some(e)
                    }
                    None => None,
                };
                cache.insert(rel.to_string(), emb);
            }
            embs.push(cache.get(rel).cloned().flatten());
        }
        let similarity = match (&embs[0], &embs[1]) {
            (Some(a), Some(b)) => Some(compare(a, b)?.similarity),
            _ => None,
        };
        pairs.push(PairScore {
            subset: field(row, "subset", &csv)?.to_string(),
            same: field(row, "same", &csv)? == "1",
            similarity,
        });
    }
    Ok(FaceReport {
        model: embedder.model(),
        threshold,
        subsets: subset_stats(&pairs, threshold),
        images: cache.len(),
        images_no_face: cache.values().filter(|e| e.is_none()).count(),
        images_undecodable: undecodable,
        detect_ms: median(&det_ms),
        embed_ms: median(&emb_ms),
        pairs,
    })
}

impl fmt::Display for FaceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Face verification: {} @ similarity >= {:.3}  ({} images, {} without face of which {} undecodable; median detect {:.1} ms, embed {:.1} ms)",
            self.model.name(),
            self.threshold,
            self.images,
            self.images_no_face,
            self.images_undecodable,
            self.detect_ms,
            self.embed_ms
        )?;
        writeln!(f, "| subset | same/diff | no face | accuracy | ROC AUC | TAR@FAR1e-3 | best thr (acc) |")?;
        writeln!(f, "|---|---|---|---|---|---|---|")?;
        for s in &self.subsets {
            writeln!(
                f,
                "| {} | {}/{} | {} | {:.2}% | {:.4} | {:.2}% | {:.3} ({:.2}%) |",
                s.name,
                s.same,
                s.different,
                s.no_face,
                s.accuracy * 100.0,
                s.auc,
                s.tar_at_far_1e3 * 100.0,
                s.best_threshold.0,
                s.best_threshold.1 * 100.0
            )?;
        }
        Ok(())
    }
}

// === Liveness ===

/// How the face for a liveness score was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceSource {
    /// YuNet found it.
    Detected,
    /// YuNet found nothing; the whole image was used as the face box.
    WholeImage,
    /// No face and no fallback: the image is rejected (decided "not live").
    None,
}

/// One scored liveness image.
#[derive(Debug, Clone)]
pub struct LivenessSample {
    /// Attack type from labels.csv ("bona_fide" for real).
    pub attack_type: String,
    /// Capture kind ("face_crop" / "full_frame").
    pub capture: String,
    /// Ground truth.
    pub is_spoof: bool,
    /// Liveness score, `None` when no face was used.
    pub score: Option<f32>,
    /// Where the face came from.
    pub source: FaceSource,
    /// Largest fraction of the frame (width or height) covered by the detected face box.
    pub frame_fraction: Option<f32>,
}

/// APCER/BPCER for one group of samples.
#[derive(Debug, Clone)]
pub struct PadStats {
    /// Group name (attack type, capture kind, or "overall").
    pub name: String,
    /// Bona fide samples.
    pub bona_fide: usize,
    /// Attack samples.
    pub attacks: usize,
    /// Samples without a detected face (before any fallback).
    pub no_face: usize,
    /// Attacks accepted as live / attacks.
    pub apcer: f64,
    /// Bona fide rejected / bona fide.
    pub bpcer: f64,
}

impl PadStats {
    /// Average classification error rate (mean of APCER and BPCER, NaN parts ignored).
    pub fn acer(&self) -> f64 {
        match (self.apcer.is_nan(), self.bpcer.is_nan()) {
            (false, false) => (self.apcer + self.bpcer) / 2.0,
            (true, false) => self.bpcer,
            (false, true) => self.apcer,
            (true, true) => f64::NAN,
        }
    }
}

/// Passive-liveness report for one model.
#[derive(Debug, Clone)]
pub struct LivenessReport {
    /// Model evaluated.
    pub kind: LivenessKind,
    /// "live when score >= threshold".
    pub threshold: f32,
    /// Whether the whole image was used when no face was detected.
    pub whole_image_fallback: bool,
    /// Overall, then per capture kind, then per attack type.
    pub groups: Vec<PadStats>,
    /// ROC AUC of the score for bona fide vs attack (rejected images scored lowest).
    pub auc: f64,
    /// ACER-minimising threshold and its ACER (information only).
    pub best_threshold: (f32, f64),
    /// Median ms per `score` call.
    pub score_ms: f64,
    /// Every sample, for threshold sweeps.
    pub samples: Vec<LivenessSample>,
}

impl LivenessReport {
    /// Recomputes the groups at another threshold.
    pub fn at_threshold(&self, threshold: f32) -> Vec<PadStats> {
        pad_groups(&self.samples, threshold)
    }
}

fn pad_stats(name: &str, samples: &[&LivenessSample], threshold: f32) -> PadStats {
    let live = |s: &&LivenessSample| s.score.is_some_and(|v| v >= threshold);
    let bona: Vec<_> = samples.iter().filter(|s| !s.is_spoof).collect();
    let attacks: Vec<_> = samples.iter().filter(|s| s.is_spoof).collect();
    let rate = |n: usize, d: usize| if d == 0 { f64::NAN } else { n as f64 / d as f64 };
    PadStats {
        name: name.to_string(),
        bona_fide: bona.len(),
        attacks: attacks.len(),
        no_face: samples.iter().filter(|s| s.source != FaceSource::Detected).count(),
        apcer: rate(attacks.iter().filter(|s| live(s)).count(), attacks.len()),
        bpcer: rate(bona.iter().filter(|s| !live(s)).count(), bona.len()),
    }
}

/// A Markdown table of PAD groups; `unscored` names the column of samples without a score.
pub fn pad_table(groups: &[PadStats], unscored: &str) -> String {
    let pct = |v: f64| if v.is_nan() { "-".to_string() } else { format!("{:.2}%", v * 100.0) };
    let mut out = format!("| group | bona fide | attacks | {unscored} | APCER | BPCER | ACER |\n|---|---|---|---|---|---|---|\n");
    for g in groups {
        let row = [g.bona_fide.to_string(), g.attacks.to_string(), g.no_face.to_string(), pct(g.apcer), pct(g.bpcer), pct(g.acer())];
        out.push_str(&format!("| {} | {} |\n", g.name, row.join(" | ")));
    }
    out
}

/// Overall, then per capture kind, then per attack type, at `threshold`.
pub fn pad_groups(samples: &[LivenessSample], threshold: f32) -> Vec<PadStats> {
    let all: Vec<&LivenessSample> = samples.iter().collect();
    let mut groups = vec![pad_stats("overall", &all, threshold)];
    let mut by_capture: BTreeMap<&str, Vec<&LivenessSample>> = BTreeMap::new();
    let mut by_type: BTreeMap<&str, Vec<&LivenessSample>> = BTreeMap::new();
    for s in samples {
        by_capture.entry(&s.capture).or_default().push(s);
        by_type.entry(&s.attack_type).or_default().push(s);
    }
    for (k, v) in by_capture {
        groups.push(pad_stats(&format!("capture={k}"), &v, threshold));
    }
    for (k, v) in by_type {
        groups.push(pad_stats(&format!("type={k}"), &v, threshold));
    }
    groups
}

/// Scores every image of `spoof/labels.csv`. With `whole_image_fallback`, images where YuNet finds no face are
/// scored with the whole image as the face box (the set's tight crops); otherwise they are rejected.
/// Measured: with `FaceDetector`'s shrunk retry YuNet finds a face in 216/216 spoof-set images, so the fallback
/// changes nothing there and production should keep it off (a frame without a detected face is rejected).
pub fn eval_liveness(
    eval_dir: &Path,
    detector: &FaceDetector,
    model: &LivenessModel,
    threshold: f32,
    whole_image_fallback: bool,
) -> Result<LivenessReport, EvalError> {
    let dir = eval_dir.join("spoof");
    let csv = dir.join("labels.csv");
    let rows = read_csv(&csv)?;
    let mut samples = Vec::new();
    let mut times = Vec::new();
    for row in &rows {
        let img = load_image(&dir.join(field(row, "path", &csv)?))?;
        let faces = detector.detect(&img)?;
        let (face, source): (Option<Face>, FaceSource) = match faces.first() {
            Some(f) => (Some(*f), FaceSource::Detected),
            None if whole_image_fallback => (Some(Face::whole_image(img.width(), img.height())), FaceSource::WholeImage),
            None => (None, FaceSource::None),
        };
        let score = match &face {
            Some(face) => {
                let t = Instant::now();
                let s = model.score(&img, face)?;
                times.push(ms_since(t));
                Some(s)
            }
            None => None,
        };
        let frame_fraction = faces
            .first()
            .map(|f| (f.bbox[2] / img.width() as f32).max(f.bbox[3] / img.height() as f32));
        samples.push(LivenessSample {
            attack_type: field(row, "attack_type", &csv)?.to_string(),
            capture: field(row, "capture", &csv)?.to_string(),
            is_spoof: field(row, "is_spoof", &csv)? == "1",
            score,
            source,
            frame_fraction,
        });
    }
    let score = |s: &LivenessSample| s.score.unwrap_or(f32::NEG_INFINITY);
    let bona: Vec<f32> = samples.iter().filter(|s| !s.is_spoof).map(score).collect();
    let attacks: Vec<f32> = samples.iter().filter(|s| s.is_spoof).map(score).collect();
    let all: Vec<f32> = samples.iter().map(score).collect();
    let (t, acer) = best_threshold(&all, |t| 1.0 - pad_groups(&samples, t)[0].acer());
    Ok(LivenessReport {
        kind: model.kind(),
        threshold,
        whole_image_fallback,
        groups: pad_groups(&samples, threshold),
        auc: roc_auc(&bona, &attacks),
        best_threshold: (t, 1.0 - acer),
        score_ms: median(&times),
        samples,
    })
}

impl fmt::Display for LivenessReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Liveness: {:?} @ live >= {:.3}, whole-image fallback {}  (ROC AUC {:.4}; min-ACER threshold {:.3} -> ACER {:.2}%; median {:.1} ms/score)",
            self.kind,
            self.threshold,
            if self.whole_image_fallback { "on" } else { "off" },
            self.auc,
            self.best_threshold.0,
            self.best_threshold.1 * 100.0,
            self.score_ms
        )?;
        write!(f, "{}", pad_table(&self.groups, "no face"))?;
        let mut fr: Vec<f32> = self
            .samples
            .iter()
            .filter(|s| s.capture == "face_crop")
            .filter_map(|s| s.frame_fraction)
            .collect();
        fr.sort_by(f32::total_cmp);
        if let (Some(max), false) = (fr.last(), fr.is_empty()) {
            writeln!(
                f,
                "face_crop frame fraction (face box / frame, detected faces): median {:.2}, max {:.2}, >0.90: {}, >0.95: {} of {}",
                fr[fr.len() / 2],
                max,
                fr.iter().filter(|&&v| v > 0.90).count(),
                fr.iter().filter(|&&v| v > 0.95).count(),
                fr.len()
            )?;
        }
        Ok(())
    }
}

// === Document portraits ===

/// Portrait detection on document images.
#[derive(Debug, Clone)]
pub struct PortraitReport {
    /// Images labelled with a portrait.
    pub with_portrait: usize,
    /// Of those, how many had a face detected.
    pub found: usize,
    /// Images labelled without a portrait (back sides).
    pub without_portrait: usize,
    /// Of those, how many wrongly had a face detected.
    pub false_found: usize,
    /// File names of labelled portraits that were missed.
    pub missed: Vec<String>,
    /// Median detector time per document (ms).
    pub detect_ms: f64,
}

/// Runs the detector on `documents/labels.csv` and counts found portraits and false detections.
pub fn eval_documents(eval_dir: &Path, detector: &FaceDetector) -> Result<PortraitReport, EvalError> {
    let dir = eval_dir.join("documents");
    let csv = dir.join("labels.csv");
    let rows = read_csv(&csv)?;
    let mut r = PortraitReport { with_portrait: 0, found: 0, without_portrait: 0, false_found: 0, missed: Vec::new(), detect_ms: 0.0 };
    let mut times = Vec::new();
    for row in &rows {
        let rel = field(row, "path", &csv)?;
        let img = load_image(&dir.join(rel))?;
        let t = Instant::now();
        let faces = detector.detect(&img)?;
        times.push(ms_since(t));
        if field(row, "has_portrait", &csv)? == "1" {
            r.with_portrait += 1;
            if faces.is_empty() {
                r.missed.push(rel.to_string());
            } else {
                r.found += 1;
            }
        } else {
            r.without_portrait += 1;
            r.false_found += usize::from(!faces.is_empty());
        }
    }
    r.detect_ms = median(&times);
    Ok(r)
}

impl fmt::Display for PortraitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Document portraits (median detect {:.1} ms)", self.detect_ms)?;
        writeln!(f, "| documents | n | face found |")?;
        writeln!(f, "|---|---|---|")?;
        writeln!(f, "| with portrait | {} | {} ({:.1}%) |", self.with_portrait, self.found, 100.0 * self.found as f64 / self.with_portrait.max(1) as f64)?;
        writeln!(f, "| without portrait | {} | {} (false) |", self.without_portrait, self.false_found)?;
        if !self.missed.is_empty() {
            writeln!(f, "missed: {}", self.missed.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes() {
        assert_eq!(split_csv_line(r#"a,"b, c",d"#), vec!["a", "b, c", "d"]);
        assert_eq!(split_csv_line(r#""x ""y""",z"#), vec![r#"x "y""#, "z"]);
    }

    #[test]
    fn auc_and_tar() {
        assert_eq!(roc_auc(&[0.9, 0.8], &[0.1, 0.2]), 1.0);
        assert_eq!(roc_auc(&[0.5], &[0.5]), 0.5);
        // 1000 impostors, one at 0.95: at FAR 1e-3 one false accept is allowed, so the cut is the next one (0.5).
        let mut imp = vec![0.5f32; 999];
        imp.push(0.95);
        assert_eq!(tar_at_far(&[0.9, 0.4], &imp, 1e-3), 0.5);
        assert_eq!(tar_at_far(&[0.9, 0.4], &imp[..999], 1e-3), 0.5);
    }
}
