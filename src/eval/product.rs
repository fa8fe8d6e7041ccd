//! The product path: every image goes through the API's upload check (`images::check`) and
//! then the local provider's own sub-calls (`Provider::call`), so the decode limits, the
//! selfie shrink, the quality gates, the face picked, the portrait crop and the thresholds in
//! force are the ones measured, not a re-implementation of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use bytes::Bytes;
use kycgate_vision::eval::{field, pad_groups, pad_table, read_csv, FaceSource, LivenessSample, PadStats};

use super::EvalError;
use crate::config::ImageLimits;
use crate::images;
use crate::local::LocalProvider;
use crate::providers::PortraitCropper;
use crate::providers::{Image, IssueCode, Provider, SubCall, Verdict};

/// Why the product gave no decision for an image or a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The API refuses the upload (HTTP 400) before any task exists.
    Upload,
    /// A sub-call answered with this issue code: a quality gate, no face, unreadable.
    Issue(IssueCode),
    /// `register_face` stores only a face judged live, so `authenticate_face` finds none
    /// (FACE_NOT_REGISTERED).
    NotRegistered,
}

impl Refusal {
    /// The code a client sees.
    pub fn code(self) -> &'static str {
        match self {
            Self::Upload => "UPLOAD_REFUSED",
            Self::Issue(code) => code.as_str(),
            Self::NotRegistered => IssueCode::FaceNotRegistered.as_str(),
        }
    }
}

/// What the liveness sub-call answered for one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LivenessOutcome {
    /// Scored: the live probability and the verdict at the threshold in force.
    Scored { probability: f64, is_live: bool },
    Refused(Refusal),
}

/// The product's two entry points the harness drives: the uploads' check and the provider.
pub struct ProductPath<'a> {
    pub provider: &'a LocalProvider,
    pub limits: &'a ImageLimits,
}

impl ProductPath<'_> {
    /// An upload as the API hands it on, or `None` when the API would refuse it.
    fn upload(&self, bytes: Bytes) -> Option<Image> {
        let checked = images::check(&bytes, self.limits).ok()?;
        Some(Image { mime: checked, bytes })
    }

    /// The liveness sub-call (what `face_liveness`, `register_face` and every selfie run).
    pub async fn liveness(&self, bytes: Bytes) -> Result<LivenessOutcome, EvalError> {
        let Some(image) = self.upload(bytes) else { return Ok(LivenessOutcome::Refused(Refusal::Upload)) };
        let answer = self.provider.call(SubCall::Liveness { image }).await.map_err(provider_error)?;
        match answer.verdict {
            Verdict::Liveness(l) => Ok(LivenessOutcome::Scored { probability: l.score.value, is_live: l.is_live }),
            Verdict::Rejected(r) => Ok(LivenessOutcome::Refused(Refusal::Issue(r.code))),
            other => Err(EvalError::Product(format!("liveness answered {other:?}"))),
        }
    }

    /// The face-compare sub-call with `probe` as the selfie and `reference` as the registered
    /// face (what `authenticate_face` sends): `Ok(Ok((is_match, similarity)))` or a refusal.
    pub async fn compare(&self, probe: Bytes, reference: Bytes) -> Result<Result<(bool, f64), Refusal>, EvalError> {
        let (Some(probe), Some(reference)) = (self.upload(probe), self.upload(reference)) else {
            return Ok(Err(Refusal::Upload));
        };
        let answer = self.provider.call(SubCall::FaceCompare { probe, reference }).await.map_err(provider_error)?;
        match answer.verdict {
            Verdict::Compare(c) => Ok(Ok((c.is_match, c.score.value))),
            Verdict::Rejected(r) => Ok(Err(Refusal::Issue(r.code))),
            other => Err(EvalError::Product(format!("face compare answered {other:?}"))),
        }
    }

    /// The portrait crop of a document page (what `kyc_*` and `ocr_*` return as the portrait).
    pub async fn portrait(&self, bytes: Bytes) -> Result<bool, EvalError> {
        let Some(page) = self.upload(bytes) else { return Ok(false) };
        let cropper = self.provider.clone();
        tokio::task::spawn_blocking(move || cropper.crop(&page).is_some())
            .await
            .map_err(|e| EvalError::Product(format!("portrait crop task: {e}")))
    }
}

fn provider_error(e: crate::providers::ProviderError) -> EvalError {
    EvalError::Product(e.to_string())
}

fn read(dir: &Path, rel: &str) -> Result<Bytes, EvalError> {
    let path = dir.join(rel);
    std::fs::read(&path).map(Bytes::from).map_err(|e| EvalError::Product(format!("{}: {e}", path.display())))
}

fn labels(path: &Path) -> Result<Vec<HashMap<String, String>>, EvalError> {
    read_csv(path).map_err(|e| EvalError::Vision(e.to_string()))
}

fn col<'a>(row: &'a HashMap<String, String>, name: &str, path: &Path) -> Result<&'a str, EvalError> {
    field(row, name, path).map_err(|e| EvalError::Vision(e.to_string()))
}

fn frac(n: usize, d: usize) -> f64 {
    if d == 0 {
        f64::NAN
    } else {
        n as f64 / d as f64
    }
}

/// Counts by refusal code, in code order.
pub type Refusals = BTreeMap<&'static str, usize>;

fn refusal_list(r: &Refusals) -> String {
    if r.is_empty() {
        return "-".into();
    }
    r.iter().map(|(code, n)| format!("{code} {n}")).collect::<Vec<_>>().join(", ")
}

// === Face pairs: register_face on image A, authenticate_face with image B ===

/// One pair as the product decided it.
#[derive(Debug, Clone)]
pub struct PairRecord {
    pub subset: String,
    /// Image paths under `faces/`.
    pub a: String,
    pub b: String,
    pub same: bool,
    /// LFW identity half (0 or 1) when both images' identities fall in it, for the
    /// calibrate-on-one-half, report-on-the-other split.
    pub half: Option<u8>,
    /// `Ok((is_match, similarity))`, or why no decision came back.
    pub outcome: Result<(bool, f64), Refusal>,
}

impl PairRecord {
    fn correct(&self) -> bool {
        matches!(self.outcome, Ok((is_match, _)) if is_match == self.same)
    }
}

/// One image's selfie verdict, with the set and half it belongs to.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub path: String,
    pub subset: String,
    pub half: Option<u8>,
    pub liveness: LivenessOutcome,
}

/// Face pairs through the product path.
#[derive(Debug, Clone)]
pub struct FacePairsReport {
    pub pairs: Vec<PairRecord>,
    /// Every distinct image through the liveness sub-call (its quality gates).
    pub images: Vec<ImageRecord>,
}

/// One row of the face-pairs table.
#[derive(Debug, Clone)]
pub struct PairStats {
    pub name: String,
    pub pairs: usize,
    pub decided: usize,
    pub refused: Refusals,
    /// Correct decisions over all pairs: a refusal counts as an error.
    pub accuracy: f64,
    /// Correct decisions over decided pairs.
    pub accuracy_decided: f64,
    /// Images of the set refused by the selfie gates, and how many images.
    pub images_refused: usize,
    pub images: usize,
    pub images_refused_by: Refusals,
}

impl PairStats {
    pub fn images_refused_rate(&self) -> f64 {
        frac(self.images_refused, self.images)
    }
}

impl FacePairsReport {
    /// Stats over the pairs and images `keep` selects.
    pub fn stats(
        &self,
        name: &str,
        keep_pair: impl Fn(&PairRecord) -> bool,
        keep_image: impl Fn(&ImageRecord) -> bool,
    ) -> PairStats {
        let pairs: Vec<&PairRecord> = self.pairs.iter().filter(|p| keep_pair(p)).collect();
        let mut refused = Refusals::new();
        for p in &pairs {
            if let Err(r) = p.outcome {
                *refused.entry(r.code()).or_default() += 1;
            }
        }
        let decided = pairs.iter().filter(|p| p.outcome.is_ok()).count();
        let correct = pairs.iter().filter(|p| p.correct()).count();
        let images: Vec<&ImageRecord> = self.images.iter().filter(|i| keep_image(i)).collect();
        let mut images_refused_by = Refusals::new();
        for i in &images {
            if let LivenessOutcome::Refused(r) = i.liveness {
                *images_refused_by.entry(r.code()).or_default() += 1;
            }
        }
        PairStats {
            name: name.to_string(),
            pairs: pairs.len(),
            decided,
            accuracy: frac(correct, pairs.len()),
            accuracy_decided: frac(correct, decided),
            refused,
            images_refused: images_refused_by.values().sum(),
            images: images.len(),
            images_refused_by,
        }
    }

    /// One row per subset, then "all".
    pub fn subsets(&self) -> Vec<PairStats> {
        let names: BTreeSet<&str> = self.pairs.iter().map(|p| p.subset.as_str()).collect();
        let mut rows: Vec<PairStats> =
            names.iter().map(|n| self.stats(n, |p| p.subset == *n, |i| i.subset == *n)).collect();
        rows.push(self.stats("all", |_| true, |_| true));
        rows
    }

    /// LFW restricted to one identity half.
    pub fn lfw_half(&self, half: u8) -> PairStats {
        self.stats(
            &format!("lfw half {}", if half == 0 { "A" } else { "B" }),
            |p| p.subset == "lfw" && p.half == Some(half),
            |i| i.subset == "lfw" && i.half == Some(half),
        )
    }

    /// Images judged not live among these genuine face photos (register_face would not store them).
    pub fn not_live(&self, subset: &str) -> (usize, usize) {
        let imgs: Vec<_> = self.images.iter().filter(|i| i.subset == subset).collect();
        let n = imgs.iter().filter(|i| matches!(i.liveness, LivenessOutcome::Scored { is_live: false, .. })).count();
        (n, imgs.len())
    }
}

/// Runs `faces/pairs.csv`: each image once through the liveness sub-call (the selfie gates
/// `register_face` and `authenticate_face` apply), then per pair the compare sub-call with B
/// as the probe and A as the registered reference. A pair whose A or B a gate refuses gets no
/// decision. Liveness does not veto the pair here (see `FacePairsReport::not_live`): its
/// errors are measured on the spoof sets.
pub async fn face_pairs(dir: &Path, path: &ProductPath<'_>) -> Result<FacePairsReport, EvalError> {
    let dir = dir.join("faces");
    let csv = dir.join("pairs.csv");
    let rows = labels(&csv)?;
    let ids_csv = dir.join("identities.csv");
    let identity: HashMap<String, String> = labels(&ids_csv)?
        .iter()
        .map(|r| Ok((col(r, "path", &ids_csv)?.to_string(), col(r, "identity", &ids_csv)?.to_string())))
        .collect::<Result<_, EvalError>>()?;
    let halves = identity_halves(identity.values().map(String::as_str));
    let half_of = |rel: &str| identity.get(rel).and_then(|id| halves.get(id.as_str()).copied());

    let mut seen: HashMap<String, LivenessOutcome> = HashMap::new();
    let mut images = Vec::new();
    let mut pairs = Vec::new();
    for row in &rows {
        let subset = col(row, "subset", &csv)?.to_string();
        let (a, b) = (col(row, "img_a", &csv)?, col(row, "img_b", &csv)?);
        for rel in [a, b] {
            if !seen.contains_key(rel) {
                let outcome = path.liveness(read(&dir, rel)?).await?;
                seen.insert(rel.to_string(), outcome);
                images.push(ImageRecord { path: rel.to_string(), subset: subset.clone(), half: half_of(rel), liveness: outcome });
            }
        }
        // register_face runs the liveness sub-call on A: a gate refusal there leaves nothing
        // to authenticate against.
        let outcome = match seen[a] {
            LivenessOutcome::Refused(r) => Err(r),
            LivenessOutcome::Scored { .. } => path.compare(read(&dir, b)?, read(&dir, a)?).await?,
        };
        let half = match (half_of(a), half_of(b)) {
            (Some(x), Some(y)) if x == y => Some(x),
            _ => None,
        };
        pairs.push(PairRecord { subset, a: a.to_string(), b: b.to_string(), same: col(row, "same", &csv)? == "1", half, outcome });
    }
    Ok(FacePairsReport { pairs, images })
}

/// Splits identities in two halves: sorted by name, alternating (deterministic, and no person
/// is in both).
fn identity_halves<'a>(ids: impl Iterator<Item = &'a str>) -> HashMap<&'a str, u8> {
    let sorted: BTreeSet<&str> = ids.collect();
    sorted.into_iter().enumerate().map(|(i, id)| (id, (i % 2) as u8)).collect()
}

// === Liveness on full frames ===

/// One full frame through the liveness sub-call.
#[derive(Debug, Clone)]
pub struct FrameRecord {
    /// The frame's path in `spoof_fullframe/`.
    pub path: String,
    pub subject_group: String,
    /// 0 or 1: subject groups split in two halves for the 2-fold threshold choice.
    pub fold: u8,
    /// The sample in the model-level form (`score = None` when refused), its `capture` set to
    /// the camera source (`webcam` or `phone_or_other`), which the set's notes say is
    /// confounded with the label.
    pub sample: LivenessSample,
    pub outcome: LivenessOutcome,
}

/// `spoof_fullframe/` through the product path.
#[derive(Debug, Clone)]
pub struct FullFrameReport {
    pub frames: Vec<FrameRecord>,
    /// Threshold in force (`providers/local.toml`, else the model's default).
    pub threshold: f64,
}

/// One fold of the 2-fold threshold choice: chosen on `fold`'s half, reported on the other.
#[derive(Debug, Clone)]
pub struct FoldResult {
    pub chosen_on: u8,
    pub threshold: f32,
    pub chosen_acer: f64,
    pub held_out: PadStats,
}

impl FullFrameReport {
    fn samples(&self, keep: impl Fn(&FrameRecord) -> bool) -> Vec<LivenessSample> {
        self.frames.iter().filter(|f| keep(f)).map(|f| f.sample.clone()).collect()
    }

    /// Overall, per camera source and per attack type at the threshold in force.
    pub fn groups(&self) -> Vec<PadStats> {
        pad_groups(&self.samples(|_| true), self.threshold as f32)
    }

    /// Refusals among bona fide and attack frames.
    pub fn refused(&self, spoof: bool) -> Refusals {
        let mut out = Refusals::new();
        for f in self.frames.iter().filter(|f| f.sample.is_spoof == spoof) {
            if let LivenessOutcome::Refused(r) = f.outcome {
                *out.entry(r.code()).or_default() += 1;
            }
        }
        out
    }

    /// Chooses the ACER-minimising threshold on each half of the subject groups and reports it
    /// on the other half.
    pub fn two_fold(&self) -> Vec<FoldResult> {
        (0..2u8)
            .map(|k| {
                let train = self.samples(|f| f.fold == k);
                let test = self.samples(|f| f.fold != k);
                let (threshold, chosen_acer) = min_acer_threshold(&train);
                FoldResult { chosen_on: k, threshold, chosen_acer, held_out: pad_groups(&test, threshold).remove(0) }
            })
            .collect()
    }
}

/// The threshold with the lowest overall ACER on `samples` (ties: the highest, which accepts
/// fewer attacks), and that ACER.
pub fn min_acer_threshold(samples: &[LivenessSample]) -> (f32, f64) {
    let mut cuts: Vec<f32> = samples.iter().filter_map(|s| s.score).collect();
    cuts.sort_by(f32::total_cmp);
    cuts.dedup();
    let mut candidates: Vec<f32> = cuts.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    candidates.extend(cuts.last().map(|v| v + 1e-6));
    candidates.extend(cuts.first().copied());
    let mut best = (0.5f32, f64::INFINITY);
    for t in candidates {
        let acer = pad_groups(samples, t)[0].acer();
        if acer < best.1 || (acer == best.1 && t > best.0) {
            best = (t, acer);
        }
    }
    best
}

/// Runs `spoof_fullframe/labels.csv` through the liveness sub-call.
pub async fn full_frames(dir: &Path, path: &ProductPath<'_>, threshold: f64) -> Result<FullFrameReport, EvalError> {
    let dir = dir.join("spoof_fullframe");
    let csv = dir.join("labels.csv");
    let rows = labels(&csv)?;
    let groups: BTreeSet<&str> =
        rows.iter().map(|r| col(r, "subject_group", &csv)).collect::<Result<_, _>>()?;
    let fold_of: HashMap<&str, u8> = groups.iter().enumerate().map(|(i, g)| (*g, (i % 2) as u8)).collect();
    let mut frames = Vec::new();
    for row in &rows {
        let frame = col(row, "path", &csv)?;
        let outcome = path.liveness(read(&dir, frame)?).await?;
        let group = col(row, "subject_group", &csv)?;
        let source = if col(row, "notes", &csv)?.contains("webcam") { "webcam" } else { "phone_or_other" };
        let score = match outcome {
            LivenessOutcome::Scored { probability, .. } => Some(probability as f32),
            LivenessOutcome::Refused(_) => None,
        };
        let sample = LivenessSample {
            attack_type: col(row, "attack_type", &csv)?.to_string(),
            capture: source.to_string(),
            is_spoof: col(row, "is_spoof", &csv)? == "1",
            score,
            source: if score.is_some() { FaceSource::Detected } else { FaceSource::None },
            frame_fraction: None,
        };
        frames.push(FrameRecord { path: frame.to_string(), subject_group: group.to_string(), fold: fold_of[group], sample, outcome });
    }
    Ok(FullFrameReport { frames, threshold })
}

// === Document portraits ===

/// The portrait crop on `documents/`: pages with a portrait that got one, pages without one
/// that wrongly got one.
#[derive(Debug, Clone, Default)]
pub struct PortraitCrops {
    pub with_portrait: usize,
    pub cropped: usize,
    pub without_portrait: usize,
    pub false_crops: usize,
}

pub async fn portraits(dir: &Path, path: &ProductPath<'_>) -> Result<PortraitCrops, EvalError> {
    let dir = dir.join("documents");
    let csv = dir.join("labels.csv");
    let mut out = PortraitCrops::default();
    for row in &labels(&csv)? {
        let cropped = path.portrait(read(&dir, col(row, "path", &csv)?)?).await?;
        if col(row, "has_portrait", &csv)? == "1" {
            out.with_portrait += 1;
            out.cropped += usize::from(cropped);
        } else {
            out.without_portrait += 1;
            out.false_crops += usize::from(cropped);
        }
    }
    Ok(out)
}

// === Tables ===

pub fn pct(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{:.2}%", v * 100.0)
    }
}

/// The face-pairs table, with the model-only accuracy of each subset beside the product's.
pub fn pairs_table(rows: &[PairStats], model_accuracy: &HashMap<String, f64>) -> String {
    let mut out = String::from(
        "| set | pairs | decided | refused pairs (code n) | accuracy, refusals as errors | accuracy of decided | model-only accuracy | genuine images refused |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} ({}) {} |\n",
            r.name,
            r.pairs,
            r.decided,
            refusal_list(&r.refused),
            pct(r.accuracy),
            pct(r.accuracy_decided),
            model_accuracy.get(&r.name).map_or("-".into(), |a| pct(*a)),
            r.images_refused,
            r.images,
            pct(r.images_refused_rate()),
            if r.images_refused_by.is_empty() { String::new() } else { refusal_list(&r.images_refused_by) },
        ));
    }
    out
}

impl std::fmt::Display for FullFrameReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Liveness on full frames through the product path (spoof_fullframe, live >= {:.3})", self.threshold)?;
        write!(f, "{}", pad_table(&self.groups(), "refused"))?;
        writeln!(
            f,
            "refused: bona fide {}; attacks {}",
            refusal_list(&self.refused(false)),
            refusal_list(&self.refused(true))
        )?;
        writeln!(f, "2-fold threshold choice by subject_group (choose on one half, report on the other):")?;
        writeln!(f, "| chosen on | threshold | ACER there | held-out APCER | held-out BPCER | held-out ACER |\n|---|---|---|---|---|---|")?;
        for r in self.two_fold() {
            writeln!(
                f,
                "| half {} | {:.3} | {} | {} | {} | {} |",
                r.chosen_on,
                r.threshold,
                pct(r.chosen_acer),
                pct(r.held_out.apcer),
                pct(r.held_out.bpcer),
                pct(r.held_out.acer())
            )?;
        }
        for k in 0..2u8 {
            let g = pad_groups(&self.samples(|fr| fr.fold == k), self.threshold as f32).remove(0);
            writeln!(
                f,
                "half {k} at the threshold in force: APCER {} BPCER {} ACER {}",
                pct(g.apcer),
                pct(g.bpcer),
                pct(g.acer())
            )?;
        }
        Ok(())
    }
}
