//! Providers: whoever answers a sub-call. The three sub-calls, their unified answers and errors.
//!
//! A provider is either a vendor described by a TOML adapter (`http`) or the built-in on-device
//! models (`local`). Both implement [`Provider`]; `routing` wraps each one in a tower stack.

pub mod http;
pub mod portrait;
pub mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use portrait::PortraitCropper;

/// The closed set of sub-calls a KYC task is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubCallKind {
    /// Passive liveness on one selfie.
    Liveness,
    /// One face image against another.
    FaceCompare,
    /// MRZ / visual fields and portrait of an identity document.
    DocumentOcr,
}

impl SubCallKind {
    pub const ALL: [SubCallKind; 3] = [Self::Liveness, Self::FaceCompare, Self::DocumentOcr];

    /// The name used in config, result keys and telemetry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Liveness => "liveness",
            Self::FaceCompare => "face_compare",
            Self::DocumentOcr => "document_ocr",
        }
    }
}

impl fmt::Display for SubCallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An uploaded image: raw bytes as the client sent them (already checked to decode).
///
/// Debug never prints the bytes: images are personal data.
#[derive(Clone)]
pub struct Image {
    pub bytes: Bytes,
    /// `image/jpeg` or `image/png`, sniffed from the content.
    pub mime: &'static str,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Image({}, {} bytes)", self.mime, self.bytes.len())
    }
}

/// One sub-call request.
#[derive(Debug, Clone)]
pub enum SubCall {
    Liveness { image: Image },
    /// `probe` is the live capture (selfie); `reference` the document portrait or registered face.
    FaceCompare { probe: Image, reference: Image },
    /// One page (passport) or two (card front, back).
    DocumentOcr { pages: Vec<Image> },
}

impl SubCall {
    pub fn kind(&self) -> SubCallKind {
        match self {
            Self::Liveness { .. } => SubCallKind::Liveness,
            Self::FaceCompare { .. } => SubCallKind::FaceCompare,
            Self::DocumentOcr { .. } => SubCallKind::DocumentOcr,
        }
    }
}

/// Why a provider cannot serve a sub-call right now. `code` is set when the reason is one a
/// client is told about as such (`MODEL_UNAVAILABLE`: the check was not performed); `reason`
/// is the short public sentence (no paths or other internals: it reaches `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub code: Option<IssueCode>,
    pub reason: String,
}

impl Unavailable {
    /// A reason without a client-facing code (unsupported, credentials not set, …).
    pub fn because(reason: impl Into<String>) -> Self {
        Self { code: None, reason: reason.into() }
    }
}

/// Unified error codes (Progeny's, plus a few of kycgate's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IssueCode {
    FaceNotFound,
    FaceTooSmall,
    FaceTooClose,
    FaceAngleTooLarge,
    FailedToReadImage,
    MultipleFaces,
    MrzNotFound,
    MrzChecksumFailed,
    DocumentExpired,
    PortraitNotFound,
    FieldDisagreement,
    ModelUnavailable,
    ProviderFailed,
    FaceNotRegistered,
}

impl IssueCode {
    /// The code as it appears in `issues` objects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FaceNotFound => "FACE_NOT_FOUND",
            Self::FaceTooSmall => "FACE_TOO_SMALL",
            Self::FaceTooClose => "FACE_TOO_CLOSE",
            Self::FaceAngleTooLarge => "FACE_ANGLE_TOO_LARGE",
            Self::FailedToReadImage => "FAILED_TO_READ_IMAGE",
            Self::MultipleFaces => "MULTIPLE_FACES",
            Self::MrzNotFound => "MRZ_NOT_FOUND",
            Self::MrzChecksumFailed => "MRZ_CHECKSUM_FAILED",
            Self::DocumentExpired => "DOCUMENT_EXPIRED",
            Self::PortraitNotFound => "PORTRAIT_NOT_FOUND",
            Self::FieldDisagreement => "FIELD_DISAGREEMENT",
            Self::ModelUnavailable => "MODEL_UNAVAILABLE",
            Self::ProviderFailed => "PROVIDER_FAILED",
            Self::FaceNotRegistered => "FACE_NOT_REGISTERED",
        }
    }

    /// Default human message, Progeny's wording where it has one.
    pub fn default_message(self) -> &'static str {
        match self {
            Self::FaceNotFound => "No face or facial landmarks detected",
            Self::FaceTooSmall => "Absolute face size is too small",
            Self::FaceTooClose => "Face is too close to the camera",
            Self::FaceAngleTooLarge => "Face angle (pitch or yaw) is too large",
            Self::FailedToReadImage => "Failed to read the image",
            Self::MultipleFaces => "More than one face in the image",
            Self::MrzNotFound => "No machine-readable zone found on the document",
            Self::MrzChecksumFailed => "Machine-readable zone check digits do not hold",
            Self::DocumentExpired => "The document is expired",
            Self::PortraitNotFound => "No portrait found on the document",
            Self::FieldDisagreement => "Providers disagree on document fields",
            Self::ModelUnavailable => "A model needed for this check is not available",
            Self::ProviderFailed => "Every provider for this check failed",
            Self::FaceNotRegistered => "No registered face with this uuid",
        }
    }
}

/// A problem with the *input* that a provider reports as a final answer (not retried, not
/// handed to the next provider): e.g. no face in the selfie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: IssueCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: IssueCode) -> Self {
        Self { code, message: code.default_message().to_string() }
    }
}

/// A score normalised to 0..1, with the threshold used and the vendor's raw number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// 0..1, higher = more live / more similar.
    pub value: f64,
    /// The decision threshold on `value`, when known.
    pub threshold: Option<f64>,
    /// The vendor's own number, unscaled.
    pub raw: Option<f64>,
}

/// Unified liveness answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivenessAnswer {
    pub is_live: bool,
    pub score: Score,
    /// Image / face quality 0..1 when the provider reports one.
    pub quality: Option<f64>,
}

/// Unified face-compare answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareAnswer {
    pub is_match: bool,
    pub score: Score,
}

/// A date as read from a document: any part may be unknown (`<<` in an MRZ, absent in a vendor
/// answer). Formats as Progeny does: `1991-9-24`, unknown parts as `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartialDate {
    pub year: Option<i32>,
    pub month: Option<u32>,
    pub day: Option<u32>,
}

impl PartialDate {
    pub fn ymd(year: i32, month: u32, day: u32) -> Self {
        Self { year: Some(year), month: Some(month), day: Some(day) }
    }

    /// The full date when every part is known and valid.
    pub fn to_naive(self) -> Option<chrono::NaiveDate> {
        chrono::NaiveDate::from_ymd_opt(self.year?, self.month?, self.day?)
    }
}

impl fmt::Display for PartialDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn part<T: fmt::Display>(p: Option<T>) -> String {
            p.map_or_else(|| "None".to_string(), |v| v.to_string())
        }
        write!(f, "{}-{}-{}", part(self.year), part(self.month), part(self.day))
    }
}

/// Unified document fields. `None` = the provider did not read it.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DocumentFields {
    /// `TD1`, `TD2`, `TD3`, `MRVA`, `MRVB`, or a vendor's document type.
    pub format: Option<String>,
    /// First letters of the MRZ (`P`, `I`, `ID`, `V`, …).
    pub document_code: Option<String>,
    /// ISO 3166-1 alpha-3 / ICAO code of the issuing state.
    pub issuing_state: Option<String>,
    /// ISO 3166-1 alpha-3 / ICAO code of the holder's nationality.
    pub nationality: Option<String>,
    pub surname: Option<String>,
    pub given_names: Option<String>,
    pub document_number: Option<String>,
    pub personal_number: Option<String>,
    pub date_of_birth: Option<PartialDate>,
    pub date_of_expiry: Option<PartialDate>,
    pub date_of_issue: Option<PartialDate>,
    /// `M`, `F` or `X`.
    pub sex: Option<String>,
    /// Raw MRZ lines when read.
    pub mrz_lines: Vec<String>,
    /// Per-field check-digit results (`document_number`, `date_of_birth`, `date_of_expiry`,
    /// `personal_number`, `composite`).
    pub checks: BTreeMap<String, bool>,
    /// Overall validity from the provider: MRZ check digits all hold (or the vendor's own verdict).
    pub valid: Option<bool>,
    /// Reader confidence 0..1.
    pub confidence: Option<f64>,
    /// Field names (never values) on which consensus providers read different things.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disagreements: Vec<String>,
}

impl fmt::Debug for DocumentFields {
    /// Field values are personal data: only say which fields are present.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocumentFields")
            .field("format", &self.format)
            .field("has_surname", &self.surname.is_some())
            .field("has_document_number", &self.document_number.is_some())
            .field("valid", &self.valid)
            .finish_non_exhaustive()
    }
}

/// Unified document-OCR answer.
#[derive(Clone, PartialEq)]
pub struct OcrAnswer {
    pub fields: DocumentFields,
    /// JPEG bytes of the portrait when the provider returns (or the gateway crops) one.
    pub portrait: Option<Bytes>,
}

impl fmt::Debug for OcrAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OcrAnswer")
            .field("fields", &self.fields)
            .field("portrait_bytes", &self.portrait.as_ref().map(|p| p.len()))
            .finish()
    }
}

/// What a provider concluded for one sub-call: a typed answer, or a final input rejection.
#[derive(Debug, Clone)]
pub enum Verdict {
    Liveness(LivenessAnswer),
    Compare(CompareAnswer),
    Ocr(OcrAnswer),
    Rejected(Rejection),
}

/// A provider's answer: the verdict plus the raw vendor payload (kept for `extend_data`).
#[derive(Clone)]
pub struct Answer {
    pub provider: String,
    pub verdict: Verdict,
    /// The vendor's JSON, as received (only returned to clients that asked for `extend_data`).
    pub raw: Option<serde_json::Value>,
}

impl fmt::Debug for Answer {
    /// The raw vendor JSON holds names and document numbers: it is never formatted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("provider", &self.provider)
            .field("verdict", &self.verdict)
            .field("raw", &self.raw.as_ref().map(crate::telemetry::Redacted::new))
            .finish()
    }
}

/// Why a provider could not answer. Classified once (see [`ProviderError::class`]) so retry,
/// breaker and fallback act on the class, never on message text.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider timed out after {0:?}")]
    Timeout(Duration),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("vendor answered HTTP {status}")]
    Http { status: u16, retry_after: Option<Duration> },
    #[error("vendor rate limit (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("vendor error {code}: {message}")]
    Vendor { code: String, message: String, retryable: bool },
    #[error("vendor answer could not be understood: {0}")]
    Decode(String),
    /// The vendor answered 3xx. Redirects are not followed (a redirect to another origin would
    /// carry the vendor's credentials there), unless the adapter opts into same-origin ones.
    #[error("vendor redirected (HTTP {status}); redirects to another origin are never followed")]
    Redirect { status: u16 },
    #[error("provider does not serve {0}")]
    Unsupported(SubCallKind),
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    #[error("circuit open")]
    CircuitOpen,
    /// No concurrency slot freed up within the attempt's deadline: the gateway was busy, the
    /// provider was not called (so the breaker does not count it; the chain moves on).
    #[error("no free slot within {waited:?} ({limit} calls in flight)")]
    Saturated { waited: Duration, limit: usize },
    #[error("bad adapter configuration: {0}")]
    Config(String),
}

/// How the stack treats a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Worth another attempt at the same provider.
    Retryable,
    /// Not worth retrying here; the next provider in the chain may still answer.
    Fatal,
}

impl ProviderError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Timeout(_) | Self::Transport(_) | Self::RateLimited { .. } => ErrorClass::Retryable,
            Self::Http { status, .. } if *status >= 500 || *status == 408 || *status == 429 => {
                ErrorClass::Retryable
            }
            Self::Vendor { retryable: true, .. } => ErrorClass::Retryable,
            _ => ErrorClass::Fatal,
        }
    }

    /// A server-given delay before the next attempt (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } | Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Anything that answers sub-calls. Implementations must be cheap to share (`Arc`).
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The provider's configured name (`local`, `facepp`, …).
    fn name(&self) -> &str;
    /// Whether this provider can serve `kind` at all.
    fn supports(&self, kind: SubCallKind) -> bool;
    /// Runs one attempt of a sub-call. Retries and fallback are the stack's job, not this one's.
    async fn call(&self, request: SubCall) -> Result<Answer, ProviderError>;
    /// Why the provider cannot serve `kind` right now (e.g. a model is missing), for `/readyz`
    /// and the attempt it is skipped with.
    fn unavailable(&self, _kind: SubCallKind) -> Option<Unavailable> {
        None
    }
    /// What one answered call costs, as declared (`cost_per_call`), for the cost metric.
    fn cost_per_call(&self) -> f64 {
        0.0
    }
    /// The vendor's host and port, for attempt spans (`server.address`, `server.port`).
    fn peer(&self) -> Option<(String, u16)> {
        None
    }
}

/// Shared handle to a provider.
pub type SharedProvider = Arc<dyn Provider>;
