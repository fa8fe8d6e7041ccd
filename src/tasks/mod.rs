//! Tasks: what a client asked for and where it stands. Pure data, no IO (the store does IO).

pub mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A task's public id: a UUIDv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// The Progeny services kycgate serves (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    FaceLiveness,
    RegisterFace,
    AuthenticateFace,
    OcrPassport,
    OcrCard,
    KycPassport,
    KycCard,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 7] = [
        Self::FaceLiveness,
        Self::RegisterFace,
        Self::AuthenticateFace,
        Self::OcrPassport,
        Self::OcrCard,
        Self::KycPassport,
        Self::KycCard,
    ];

    /// The path segment: `/api/v3/services/<as_str>/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FaceLiveness => "face_liveness",
            Self::RegisterFace => "register_face",
            Self::AuthenticateFace => "authenticate_face",
            Self::OcrPassport => "ocr_passport",
            Self::OcrCard => "ocr_card",
            Self::KycPassport => "kyc_passport",
            Self::KycCard => "kyc_card",
        }
    }

    pub fn from_path(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The multipart file fields this service requires, in the order errors are reported.
    pub fn image_fields(self) -> &'static [&'static str] {
        match self {
            Self::FaceLiveness | Self::RegisterFace | Self::AuthenticateFace => &["image"],
            Self::OcrPassport => &["passport_image"],
            Self::OcrCard => &["front_id", "back_id"],
            Self::KycPassport => &["selfie_image", "passport_image"],
            Self::KycCard => &["selfie_image", "front_id", "back_id"],
        }
    }

    /// Required non-file fields.
    pub fn text_fields(self) -> &'static [&'static str] {
        match self {
            Self::AuthenticateFace => &["uuid"],
            _ => &[],
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Celery-style task states. Transitions only go forward: Pending → Started → Success|Failure
/// (Pending → Failure too); a finished task never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Pending,
    Started,
    Success,
    Failure,
}

impl TaskStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Success | Self::Failure)
    }

    /// Whether moving from `self` to `next` is allowed (monotonic; finished is final).
    /// Started → Started is allowed: a reclaimed task is started again by another worker.
    pub fn can_become(self, next: TaskStatus) -> bool {
        match (self, next) {
            (a, _) if a.is_finished() => false,
            (Self::Pending, _) => next != Self::Pending,
            (Self::Started, n) => n != Self::Pending,
            _ => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Started => "STARTED",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Started, Self::Success, Self::Failure].into_iter().find(|k| k.as_str() == s)
    }
}

/// What the worker needs to run a task. Images are personal data: Debug prints sizes only.
#[derive(Clone, Serialize, Deserialize)]
pub struct TaskInput {
    pub service: ServiceKind,
    /// Who submitted it (user name or API-key id); only they may read it.
    pub owner: String,
    pub extend_data: bool,
    /// File fields by name (`selfie_image`, `passport_image`, …), raw bytes as uploaded.
    #[serde(with = "bytes_map")]
    pub images: BTreeMap<String, Bytes>,
    /// Non-file fields (`uuid` for `authenticate_face`).
    pub fields: BTreeMap<String, String>,
    /// W3C trace context of the request that created the task, to link the worker span.
    pub trace_context: Option<String>,
    /// Absolute base URL for `portrait_url` (from config or the request's Host header).
    #[serde(default)]
    pub base_url: Option<String>,
}

impl fmt::Debug for TaskInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: BTreeMap<&str, usize> = self.images.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        f.debug_struct("TaskInput")
            .field("service", &self.service)
            .field("owner", &self.owner)
            .field("extend_data", &self.extend_data)
            .field("image_sizes", &sizes)
            .finish_non_exhaustive()
    }
}

/// The stored, client-visible state of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub owner: String,
    pub service: ServiceKind,
    pub status: TaskStatus,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The Progeny `result` object once finished; `null` before.
    pub result: Option<serde_json::Value>,
}

impl TaskRecord {
    pub fn new(id: TaskId, input: &TaskInput, now_ms: i64) -> Self {
        Self {
            id,
            owner: input.owner.clone(),
            service: input.service,
            status: TaskStatus::Pending,
            created_ms: now_ms,
            updated_ms: now_ms,
            result: None,
        }
    }
}

/// Milliseconds since the Unix epoch, the one clock used in records.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Serialises image bytes as base64 strings (so inputs can be stored as JSON, e.g. in Redis).
mod bytes_map {
    use std::collections::BTreeMap;

    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(map: &BTreeMap<String, Bytes>, s: S) -> Result<S::Ok, S::Error> {
        let enc: BTreeMap<&str, String> = map
            .iter()
            .map(|(k, v)| (k.as_str(), base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        enc.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Bytes>, D::Error> {
        let enc = BTreeMap::<String, String>::deserialize(d)?;
        enc.into_iter()
            .map(|(k, v)| {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(|b| (k, Bytes::from(b)))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_monotonic() {
        use TaskStatus::*;
        assert!(Pending.can_become(Started));
        assert!(Pending.can_become(Failure));
        assert!(Started.can_become(Success));
        assert!(Started.can_become(Started));
        assert!(!Started.can_become(Pending));
        assert!(!Success.can_become(Failure));
        assert!(!Failure.can_become(Success));
        assert!(!Success.can_become(Started));
    }
}
