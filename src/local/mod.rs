//! The built-in `local` provider: on-device MRZ reading, portrait crop, face compare and
//! passive liveness, so a fresh clone does real work with no vendor account.
//!
//! Models are resolved (and, when allowed, fetched) once at start-up through [`models`] (the
//! `kycgate-models` crate). A model that cannot be had disables only the sub-call that needs it:
//! the provider reports `MODEL_UNAVAILABLE` through `Provider::unavailable` (so `/readyz` and routing
//! skip it), never a crash. What clients and `/readyz` see is a fixed sentence naming the check;
//! the detail (paths, per-source failures) goes to the operator's log only. Inference is
//! CPU-bound and runs on the blocking pool.

pub use kycgate_models as models;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use image::RgbImage;
use kycgate_mrz::parse::{Mrz, MrzDate, Today};
use kycgate_mrz::read::{MrzReader, ReadError};
use kycgate_vision::{
    assess, crop_portrait, decode_image, encode_jpeg, main_face, subject, CrowdRule, DecodeLimits, EmbeddingModel, Face,
    FaceDetector, FaceEmbedder, LivenessModel, QualityIssue, QualityRules,
};
use serde::Deserialize;
use serde_json::json;

use crate::config::{LocalConfig, ModelsConfig};
use crate::providers::spec::LocalSpec;
use crate::providers::{
    Answer, CompareAnswer, DocumentFields, Image, IssueCode, LivenessAnswer, OcrAnswer, PartialDate, PortraitCropper,
    Provider, ProviderError, Rejection, Score, SubCall, SubCallKind, Unavailable, Verdict,
};
use models::{ModelManifest, ModelStore};

/// `[settings]` of `providers/local.toml`. Thresholds are fixed here, not fitted per run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSettings {
    /// `dlib_resnet` or `fr_feature`.
    pub embedding_model: EmbeddingModel,
    /// Same person when similarity (0..1) ≥ this. Default: the model's measured threshold.
    pub compare_threshold: Option<f64>,
    /// `minifasnet` or `fr_liveness` (anything else fails to load: no silent default).
    pub liveness_model: LivenessModelKind,
    /// Live when the live probability ≥ this. Default: the model's measured threshold.
    pub liveness_threshold: Option<f64>,
    /// Smallest selfie face side in px (FACE_TOO_SMALL below).
    pub min_face_px: f32,
    /// Largest |yaw| in degrees (FACE_ANGLE_TOO_LARGE above); 50 = nose tip past the far eye.
    pub max_yaw_deg: f32,
    /// Largest |pitch| in degrees (FACE_ANGLE_TOO_LARGE above).
    pub max_pitch_deg: f32,
    /// Face box covering more than this fraction of the frame is FACE_TOO_CLOSE.
    pub max_frame_fraction: f32,
    /// A second face makes a selfie ambiguous (MULTIPLE_FACES) when its prominence (size,
    /// discounted by distance from the frame centre) is at least this fraction of the main one's.
    pub max_second_face_prominence: f32,
    /// Portrait crop margin around the face box (fraction of its size).
    pub portrait_margin: f32,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self {
            embedding_model: kycgate_vision::embed::DEFAULT_EMBEDDING_MODEL,
            compare_threshold: None,
            liveness_model: LivenessModelKind::Minifasnet,
            liveness_threshold: None,
            min_face_px: 48.0,
            max_yaw_deg: QualityRules::default().max_yaw_deg,
            max_pitch_deg: QualityRules::default().max_pitch_deg,
            max_frame_fraction: 0.95,
            max_second_face_prominence: CrowdRule::default().max_second_prominence,
            portrait_margin: 0.35,
        }
    }
}

/// Which passive-liveness model the local provider runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LivenessModelKind {
    /// MiniFASNet V2 + V1SE (two files, averaged).
    Minifasnet,
    /// The FR liveness model (one file).
    FrLiveness,
}

impl LocalSettings {
    /// The `[settings]` table of a local provider file.
    pub fn from_spec(spec: &LocalSpec) -> Result<Self, toml::de::Error> {
        toml::Value::Table(spec.settings.clone()).try_into()
    }

    /// Manifest name (`models.toml`) of the selected embedding model.
    pub fn embedder_model_name(&self) -> &'static str {
        match self.embedding_model {
            EmbeddingModel::DlibResnet => "dlib_resnet_v1",
            EmbeddingModel::FrFeature => "fr_feature",
        }
    }

    /// Manifest names of the selected liveness model's files, in the order `load_liveness` takes.
    pub fn liveness_model_names(&self) -> &'static [&'static str] {
        if self.liveness_model == LivenessModelKind::FrLiveness {
            &["fr_liveness"]
        } else {
            &["minifasnet_v2_27", "minifasnet_v1se_40"]
        }
    }

    /// Loads the liveness model from the files `liveness_model_names` resolved to.
    pub fn load_liveness(&self, paths: &[std::path::PathBuf]) -> Result<LivenessModel, kycgate_vision::VisionError> {
        match paths {
            [fr] if self.liveness_model == LivenessModelKind::FrLiveness => LivenessModel::load_fr(fr),
            [v2, v1se] => LivenessModel::load_minifasnet(v2, v1se),
            _ => Err(kycgate_vision::VisionError::BadInput("liveness model files do not match the selected model")),
        }
    }

    /// Same-person threshold in force: the configured one, else the model's measured default.
    pub fn compare_threshold_for(&self, embedder: &FaceEmbedder) -> f64 {
        self.compare_threshold.unwrap_or(f64::from(embedder.default_threshold()))
    }

    /// Live threshold in force: the configured one, else the model's measured default.
    pub fn liveness_threshold_for(&self, model: &LivenessModel) -> f64 {
        self.liveness_threshold.unwrap_or(f64::from(model.default_threshold()))
    }
}

/// A loaded model, or why it is not there.
type Loaded<T> = Result<T, Missing>;

/// A model the provider could not load. `detail` (which may name files and directories) is for
/// the log; what leaves the process is [`Missing::public`].
#[derive(Debug, Clone)]
struct Missing {
    /// What is missing, in words a client may read ("liveness model").
    what: &'static str,
    /// Why, for operators.
    detail: String,
}

impl Missing {
    fn new(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Self { what, detail: detail.to_string() }
    }

    /// The stable code and a short sentence, free of paths and other internals.
    fn public(&self) -> Unavailable {
        let reason = format!("{}: the {} is not installed on this server", IssueCode::ModelUnavailable.as_str(), self.what);
        Unavailable { code: Some(IssueCode::ModelUnavailable), reason }
    }

    fn to_provider_error(&self) -> ProviderError {
        ProviderError::Unavailable(self.public().reason)
    }
}

/// The on-device provider: a cheap handle to the loaded models.
#[derive(Clone)]
pub struct LocalProvider {
    engine: Arc<Engine>,
}

/// Caps the calls that decode images (and hold their pixels) at once. A call waits for its
/// permit on the async side, so waiting holds no blocking-pool thread; a decoded 6000x6000
/// upload is ~108 MB, so without the cap N concurrent uploads meant N of them in memory
/// (issue 12). Also counts decodes, so the cap can be observed.
struct DecodeCap {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
    decoding: AtomicUsize,
    peak: AtomicUsize,
    decodes: AtomicU64,
}

/// What [`LocalProvider::decode_stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeStats {
    /// The configured cap.
    pub limit: usize,
    /// The most decodes ever in progress at once.
    pub peak: usize,
    /// Decodes started so far.
    pub decodes: u64,
}

impl DecodeCap {
    fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
            decoding: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            decodes: AtomicU64::new(0),
        }
    }

    /// Waits for a slot without holding a thread.
    async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ProviderError> {
        self.permits.clone().acquire_owned().await.map_err(|_| ProviderError::Unavailable("decode cap closed".into()))
    }

    /// Waits for a slot on a blocking thread (the portrait cropper is called from one).
    fn acquire_blocking(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        futures::executor::block_on(self.permits.clone().acquire_owned()).ok()
    }

    /// Runs one decode, counted (callers hold a permit).
    fn decode<T>(&self, decode: impl FnOnce() -> T) -> T {
        let now = self.decoding.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.decodes.fetch_add(1, Ordering::Relaxed);
        let out = decode();
        self.decoding.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

/// The loaded models and settings; every method is blocking CPU work.
struct Engine {
    name: String,
    serves: Vec<SubCallKind>,
    settings: LocalSettings,
    limits: DecodeLimits,
    detector: Loaded<FaceDetector>,
    embedder: Loaded<FaceEmbedder>,
    liveness: Loaded<LivenessModel>,
    mrz: Loaded<MrzReader>,
    selfies: SelfieCache,
    decodes: DecodeCap,
}

/// The embedded `providers/local.toml`, used when the providers directory has no `local.toml`
/// (e.g. the binary runs outside the repository).
pub const LOCAL_PROVIDER_TOML: &str = include_str!("../../providers/local.toml");

/// Manifest name (`models.toml`) of the face detector every selfie check needs.
pub const DETECTOR_MODEL: &str = "yunet";

/// What each loadable part is called where a client can read it.
const DETECTOR: &str = "face detection model";
const EMBEDDER: &str = "face recognition model";
const LIVENESS: &str = "liveness model";
const MRZ: &str = "MRZ reader";

/// Longest side a selfie is analysed at: faces stay far above the models' inputs (80–112 px),
/// and a 12 MP phone photo is not run through every step at full size.
const SELFIE_MAX_SIDE: u32 = 1280;
/// Selfies remembered; liveness and compare of one task ask for the same one at once.
const SELFIE_CACHE_LEN: usize = 8;

/// A decoded selfie and its one gated face, or why it has none; `Err` = a model is missing.
type SelfieAnalysis = Result<Result<(Arc<RgbImage>, Face), Rejection>, String>;

/// Decode-and-detect once per selfie: the liveness and face-compare sub-calls of a task get
/// the same bytes concurrently, and each would otherwise decode and detect again. Keyed by a
/// keyed SipHash of the whole content (collisions cannot be crafted), so tasks never share a
/// face they did not send.
struct SelfieCache {
    hasher: std::collections::hash_map::RandomState,
    entries: std::sync::Mutex<std::collections::VecDeque<(u64, usize, Arc<std::sync::OnceLock<SelfieAnalysis>>)>>,
}

impl SelfieCache {
    fn new() -> Self {
        Self { hasher: std::collections::hash_map::RandomState::new(), entries: Default::default() }
    }

    /// The cell for `bytes`, created if new; the oldest entry is dropped beyond the limit.
    fn cell(&self, bytes: &[u8]) -> Arc<std::sync::OnceLock<SelfieAnalysis>> {
        use std::hash::BuildHasher;
        let key = self.hasher.hash_one(bytes);
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, cell)) = entries.iter().find(|(k, len, _)| *k == key && *len == bytes.len()) {
            return cell.clone();
        }
        let cell = Arc::new(std::sync::OnceLock::new());
        entries.push_back((key, bytes.len(), cell.clone()));
        while entries.len() > SELFIE_CACHE_LEN {
            entries.pop_front();
        }
        cell
    }
}

/// The model store the config describes: manifest from `KYCGATE_MODELS_MANIFEST` or embedded,
/// model dir from config / `KYCGATE_MODEL_DIR`, network fetching as `models.fetch` says.
pub fn model_store(cfg: &ModelsConfig) -> Result<ModelStore, models::ManifestError> {
    let mut store = ModelStore::from_env(Arc::new(ModelManifest::from_env()?));
    if let Some(dir) = cfg.model_dir() {
        store.model_dir = Some(dir);
    }
    store.allow_network_fetch = cfg.fetch;
    Ok(store)
}

/// Resolves `name` locally, fetching it when allowed; the error is the operator's detail.
async fn obtain(store: &ModelStore, name: &str, fetch: bool) -> Result<std::path::PathBuf, String> {
    match store.resolve(name) {
        Ok(p) => Ok(p),
        Err(_) if fetch => store.fetch(name).await.map(|f| f.path).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

impl LocalProvider {
    /// Loads every model the provider needs; a missing model is kept per capability, never
    /// fatal. Invalid `[settings]` are: a typo must not quietly run on default thresholds.
    pub async fn build(
        name: &str,
        spec: &LocalSpec,
        models_cfg: &ModelsConfig,
        local: &LocalConfig,
    ) -> Result<Self, toml::de::Error> {
        let settings = LocalSettings::from_spec(spec)?;
        let decodes = DecodeCap::new(local.decode_cap());
        Ok(Self { engine: Arc::new(Engine::build(name, spec, settings, models_cfg, decodes).await) })
    }

    /// The decode cap and what it has seen.
    pub fn decode_stats(&self) -> DecodeStats {
        let cap = &self.engine.decodes;
        DecodeStats {
            limit: cap.limit,
            peak: cap.peak.load(Ordering::SeqCst),
            decodes: cap.decodes.load(Ordering::Relaxed),
        }
    }
}

impl Engine {
    async fn build(name: &str, spec: &LocalSpec, settings: LocalSettings, models_cfg: &ModelsConfig, decodes: DecodeCap) -> Self {
        let store = match model_store(models_cfg) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(reason = %e, "Model manifest unusable; the checks needing models are disabled");
                return Self::without_models(name, spec, settings, &format!("model manifest: {e}"), decodes);
            }
        };
        let fetch = models_cfg.fetch;
        let detector = match obtain(&store, DETECTOR_MODEL, fetch).await {
            Ok(p) => FaceDetector::load(&p).map_err(|e| Missing::new(DETECTOR, e)),
            Err(e) => Err(Missing::new(DETECTOR, e)),
        };
        let embedder = match obtain(&store, settings.embedder_model_name(), fetch).await {
            Ok(p) => FaceEmbedder::load(settings.embedding_model, &p).map_err(|e| Missing::new(EMBEDDER, e)),
            Err(e) => Err(Missing::new(EMBEDDER, e)),
        };
        let mut liveness_files = Vec::new();
        for name in settings.liveness_model_names() {
            liveness_files.push(obtain(&store, name, fetch).await);
        }
        let liveness = liveness_files
            .into_iter()
            .collect::<Result<Vec<_>, String>>()
            .and_then(|paths| settings.load_liveness(&paths).map_err(|e| e.to_string()))
            .map_err(|e| Missing::new(LIVENESS, e));
        let mrz = MrzReader::new().map_err(|e| Missing::new(MRZ, e));
        for missing in [detector.as_ref().err(), embedder.as_ref().err(), liveness.as_ref().err(), mrz.as_ref().err()]
            .into_iter()
            .flatten()
        {
            tracing::warn!(model = missing.what, reason = %missing.detail, "Local model unavailable; the checks needing it are disabled");
        }
        Self {
            name: name.to_string(),
            serves: spec.serves.clone(),
            settings,
            limits: DecodeLimits::default(),
            detector,
            embedder,
            liveness,
            mrz,
            selfies: SelfieCache::new(),
            decodes,
        }
    }

    fn without_models(name: &str, spec: &LocalSpec, settings: LocalSettings, why: &str, decodes: DecodeCap) -> Self {
        Self {
            name: name.to_string(),
            serves: spec.serves.clone(),
            settings,
            limits: DecodeLimits::default(),
            detector: Err(Missing::new(DETECTOR, why)),
            embedder: Err(Missing::new(EMBEDDER, why)),
            liveness: Err(Missing::new(LIVENESS, why)),
            mrz: MrzReader::new().map_err(|e| Missing::new(MRZ, e)),
            selfies: SelfieCache::new(),
            decodes,
        }
    }

    fn quality_rules(&self) -> QualityRules {
        QualityRules {
            min_face_px: self.settings.min_face_px,
            max_yaw_deg: self.settings.max_yaw_deg,
            max_pitch_deg: self.settings.max_pitch_deg,
            max_frame_fraction: Some(self.settings.max_frame_fraction),
        }
    }

    fn crowd_rule(&self) -> CrowdRule {
        CrowdRule { max_second_prominence: self.settings.max_second_face_prominence }
    }

    fn detector(&self) -> Result<&FaceDetector, ProviderError> {
        self.detector.as_ref().map_err(Missing::to_provider_error)
    }

    /// The one place pixels are decoded (callers hold a decode permit). Uploads were only
    /// checked structurally at submit, so a file that still fails here is an input verdict.
    fn decode(&self, img: &Image) -> Result<RgbImage, Rejection> {
        self.decodes
            .decode(|| decode_image(&img.bytes, &self.limits))
            .map_err(|_| Rejection::new(IssueCode::FailedToReadImage))
    }

    /// The selfie decoded (shrunk to `SELFIE_MAX_SIDE`) with its one gated face, computed once
    /// per content (see `SelfieCache`).
    fn selfie(&self, image: &Image) -> Result<Result<(Arc<RgbImage>, Face), Rejection>, ProviderError> {
        let cell = self.selfies.cell(&image.bytes);
        cell.get_or_init(|| self.analyse_selfie(image)).clone().map_err(ProviderError::Unavailable)
    }

    fn analyse_selfie(&self, image: &Image) -> SelfieAnalysis {
        let img = match self.decode(image) {
            Ok(i) => i,
            Err(r) => return Ok(Err(r)),
        };
        let long = img.width().max(img.height());
        let (img, scale) = match kycgate_vision::resize::shrink_to(&img, SELFIE_MAX_SIDE) {
            Some(small) => (small, SELFIE_MAX_SIDE as f32 / long as f32),
            None => (img, 1.0),
        };
        match self.selfie_face(&img, scale) {
            Ok(Ok(face)) => Ok(Ok((Arc::new(img), face))),
            Ok(Err(r)) => Ok(Err(r)),
            // Keep the message, not the wrapper: `selfie` wraps it in `Unavailable` again.
            Err(ProviderError::Unavailable(why)) => Err(why),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The one face of a selfie, after the quality gates. `scale` is how much the image was
    /// shrunk, so the minimum face size still refers to the photo as taken.
    fn selfie_face(&self, img: &RgbImage, scale: f32) -> Result<Result<Face, Rejection>, ProviderError> {
        let faces = self.detector()?.detect(img).map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let mut rules = self.quality_rules();
        rules.min_face_px *= scale;
        let gated = main_face(&faces, img.dimensions(), &self.crowd_rule())
            .and_then(|face| face.map(|f| assess(f, img.dimensions(), &rules).map(|()| *f)).transpose());
        Ok(match gated {
            Ok(Some(face)) => Ok(face),
            Ok(None) => Err(Rejection::new(IssueCode::FaceNotFound)),
            Err(issue) => Err(Rejection::new(match issue {
                QualityIssue::TooSmall => IssueCode::FaceTooSmall,
                QualityIssue::AngleTooLarge => IssueCode::FaceAngleTooLarge,
                QualityIssue::TooClose => IssueCode::FaceTooClose,
                QualityIssue::MultipleFaces => IssueCode::MultipleFaces,
            })),
        })
    }

    /// The largest face on a document page (no selfie gates: portraits on documents are small,
    /// and the main portrait is larger than its ghost image wherever it sits on the page).
    fn any_face(&self, img: &RgbImage) -> Result<Option<Face>, ProviderError> {
        let faces = self.detector()?.detect_document(img).map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        Ok(faces.into_iter().next())
    }

    /// The face of a compare reference (a registered photo or a portrait crop): the photo's
    /// subject as the selfie gate picks it, without refusing it.
    fn reference_face(&self, img: &RgbImage) -> Result<Option<Face>, ProviderError> {
        let faces = self.detector()?.detect(img).map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        Ok(subject(&faces, img.dimensions()).copied())
    }

    fn answer(&self, verdict: Verdict, raw: serde_json::Value) -> Answer {
        Answer { provider: self.name.clone(), verdict, raw: Some(raw) }
    }

    /// JPEG crop of the largest face on a document page.
    fn portrait(&self, page: &RgbImage) -> Option<Bytes> {
        let face = self.any_face(page).ok().flatten()?;
        encode_jpeg(&crop_portrait(page, &face, self.settings.portrait_margin), 90).ok().map(Bytes::from)
    }

    fn run_liveness(&self, image: &Image) -> Result<Answer, ProviderError> {
        let model = self.liveness.as_ref().map_err(Missing::to_provider_error)?;
        let (img, face) = match self.selfie(image)? {
            Ok(f) => f,
            Err(r) => return Ok(self.answer(Verdict::Rejected(r), json!({}))),
        };
        let p = model.score(&img, &face).map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let threshold = self.settings.liveness_threshold_for(model);
        let value = f64::from(p);
        let raw = json!({ "live_probability": value, "face_score": face.score, "model": self.settings.liveness_model });
        Ok(self.answer(
            Verdict::Liveness(LivenessAnswer {
                is_live: value >= threshold,
                score: Score { value, threshold: Some(threshold), raw: Some(value) },
                quality: Some(f64::from(face.score)),
            }),
            raw,
        ))
    }

    fn run_compare(&self, probe: &Image, reference: &Image) -> Result<Answer, ProviderError> {
        let embedder = self.embedder.as_ref().map_err(Missing::to_provider_error)?;
        let (pimg, pface) = match self.selfie(probe)? {
            Ok(f) => f,
            Err(r) => return Ok(self.answer(Verdict::Rejected(r), json!({}))),
        };
        let rimg = match self.decode(reference) {
            Ok(i) => i,
            Err(r) => return Ok(self.answer(Verdict::Rejected(r), json!({}))),
        };
        let Some(rface) = self.reference_face(&rimg)? else {
            return Ok(self.answer(
                Verdict::Rejected(Rejection {
                    code: IssueCode::FaceNotFound,
                    message: "No face found in the reference image".into(),
                }),
                json!({}),
            ));
        };
        let ea = embedder.embed(&pimg, &pface).map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let eb = embedder.embed(&rimg, &rface).map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let cmp = kycgate_vision::embed::compare(&ea, &eb).map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let threshold = self.settings.compare_threshold_for(embedder);
        let value = f64::from(cmp.similarity);
        let raw = json!({ "similarity": value, "distance": cmp.distance, "model": embedder.model().name() });
        Ok(self.answer(
            Verdict::Compare(CompareAnswer {
                is_match: value >= threshold,
                score: Score { value, threshold: Some(threshold), raw: Some(f64::from(cmp.distance)) },
            }),
            raw,
        ))
    }

    fn run_ocr(&self, pages: &[Image]) -> Result<Answer, ProviderError> {
        let reader = self.mrz.as_ref().map_err(Missing::to_provider_error)?;
        let mut decoded = Vec::with_capacity(pages.len());
        for p in pages {
            match self.decode(p) {
                Ok(i) => decoded.push(i),
                Err(r) => return Ok(self.answer(Verdict::Rejected(r), json!({}))),
            }
        }
        let today = today();
        // Cards carry the MRZ on the back: read pages from the last one first.
        let mut read = None;
        let mut last_err = ReadError::NotFound;
        for img in decoded.iter().rev() {
            match reader.read(img, today) {
                Ok(r) => {
                    read = Some(r);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let Some(read) = read else {
            let code = match last_err {
                ReadError::Unreadable => IssueCode::MrzChecksumFailed,
                _ => IssueCode::MrzNotFound,
            };
            return Ok(self.answer(Verdict::Rejected(Rejection::new(code)), json!({ "read": false })));
        };
        // Portrait: the largest face on the first page (the photo page / card front).
        let portrait = self.portrait(&decoded[0]);
        let fields = fields_from_mrz(&read.mrz, read.confidence);
        let raw = json!({
            "format": format!("{:?}", read.mrz.format),
            "rotation_deg": read.rotation_deg,
            "confidence": read.confidence,
            "checks": fields.checks,
        });
        Ok(self.answer(Verdict::Ocr(OcrAnswer { fields, portrait }), raw))
    }
}

fn today() -> Today {
    use chrono::Datelike;
    let t = chrono::Utc::now().date_naive();
    Today { year: t.year(), month: t.month(), day: t.day() }
}

fn date(d: &MrzDate) -> Option<PartialDate> {
    Some(PartialDate { year: d.year, month: d.month, day: d.day })
}

/// Maps a parsed MRZ onto the unified document fields.
pub fn fields_from_mrz(m: &Mrz, confidence: f32) -> DocumentFields {
    let mut checks = std::collections::BTreeMap::new();
    checks.insert("document_number".to_string(), m.checks.document_number);
    checks.insert("date_of_birth".to_string(), m.checks.date_of_birth);
    checks.insert("date_of_expiry".to_string(), m.checks.date_of_expiry);
    if let Some(c) = m.checks.personal_number {
        checks.insert("personal_number".to_string(), c);
    }
    if let Some(c) = m.checks.composite {
        checks.insert("composite".to_string(), c);
    }
    let non_empty = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    DocumentFields {
        format: Some(m.format.as_str().to_string()),
        document_code: non_empty(&m.document_code),
        issuing_state: non_empty(&m.issuing_state),
        nationality: non_empty(&m.nationality),
        surname: non_empty(&m.surname),
        given_names: non_empty(&m.given_names),
        document_number: non_empty(&m.document_number),
        personal_number: m.personal_number.clone().filter(|s| !s.is_empty()),
        date_of_birth: date(&m.date_of_birth),
        date_of_expiry: date(&m.date_of_expiry),
        date_of_issue: None,
        sex: m.sex.map(|c| c.to_string()),
        mrz_lines: m.lines.clone(),
        checks,
        valid: Some(m.valid),
        confidence: Some(f64::from(confidence)),
        disagreements: Vec::new(),
    }
}

#[async_trait::async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        &self.engine.name
    }

    fn supports(&self, kind: SubCallKind) -> bool {
        self.engine.serves.contains(&kind)
    }

    async fn call(&self, request: SubCall) -> Result<Answer, ProviderError> {
        if !self.supports(request.kind()) {
            return Err(ProviderError::Unsupported(request.kind()));
        }
        let this = self.engine.clone();
        // Every local call decodes: it waits here, off the blocking pool, for a decode slot
        // and keeps it while the pixels live.
        let permit = this.decodes.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            match &request {
                SubCall::Liveness { image } => this.run_liveness(image),
                SubCall::FaceCompare { probe, reference } => this.run_compare(probe, reference),
                SubCall::DocumentOcr { pages } => this.run_ocr(pages),
            }
        })
        .await
        .map_err(|e| ProviderError::Unavailable(format!("local inference task failed: {e}")))?
    }

    fn unavailable(&self, kind: SubCallKind) -> Option<Unavailable> {
        let this = &self.engine;
        let missing = match kind {
            SubCallKind::Liveness => this.detector.as_ref().err().or(this.liveness.as_ref().err()),
            SubCallKind::FaceCompare => this.detector.as_ref().err().or(this.embedder.as_ref().err()),
            SubCallKind::DocumentOcr => this.mrz.as_ref().err(),
        };
        missing.map(Missing::public)
    }
}

impl PortraitCropper for LocalProvider {
    fn crop(&self, page: &Image) -> Option<Bytes> {
        let _permit = self.engine.decodes.acquire_blocking()?;
        let img = self.engine.decode(page).ok()?;
        self.engine.portrait(&img)
    }
}
