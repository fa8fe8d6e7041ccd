//! Tasks: what a client asked for ([`ServiceInput`]), where it stands ([`TaskStatus`]) and how it
//! ended ([`TaskOutcome`]). Pure data, no IO (the store does IO).

pub mod outcome;
pub mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use outcome::{FailureReason, TaskOutcome};

/// A task's public id: a UUIDv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(crate::ids::new_v4())
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

/// What a client uploaded, one variant per service: each image by its role, never by its
/// form-field name (those are the API's business). Built once by the API from the form and
/// by `verify`; the pipeline matches on it. Images are personal data: Debug prints sizes only.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "service", rename_all = "snake_case")]
pub enum ServiceInput {
    FaceLiveness {
        #[serde(with = "base64_bytes")]
        selfie: Bytes,
    },
    RegisterFace {
        #[serde(with = "base64_bytes")]
        selfie: Bytes,
    },
    AuthenticateFace {
        #[serde(with = "base64_bytes")]
        selfie: Bytes,
        /// The registered face to compare against (a hyphenated UUID).
        face: Uuid,
    },
    OcrPassport {
        #[serde(with = "base64_bytes")]
        passport: Bytes,
    },
    OcrCard {
        #[serde(with = "base64_bytes")]
        front: Bytes,
        #[serde(with = "base64_bytes")]
        back: Bytes,
    },
    KycPassport {
        #[serde(with = "base64_bytes")]
        selfie: Bytes,
        #[serde(with = "base64_bytes")]
        passport: Bytes,
    },
    KycCard {
        #[serde(with = "base64_bytes")]
        selfie: Bytes,
        #[serde(with = "base64_bytes")]
        front: Bytes,
        #[serde(with = "base64_bytes")]
        back: Bytes,
    },
}

impl ServiceInput {
    /// Which service this input is for.
    pub fn kind(&self) -> ServiceKind {
        match self {
            Self::FaceLiveness { .. } => ServiceKind::FaceLiveness,
            Self::RegisterFace { .. } => ServiceKind::RegisterFace,
            Self::AuthenticateFace { .. } => ServiceKind::AuthenticateFace,
            Self::OcrPassport { .. } => ServiceKind::OcrPassport,
            Self::OcrCard { .. } => ServiceKind::OcrCard,
            Self::KycPassport { .. } => ServiceKind::KycPassport,
            Self::KycCard { .. } => ServiceKind::KycCard,
        }
    }

    /// Every image with its role (`selfie`, `passport`, `front`, `back`): how stores keep them,
    /// as raw bytes by role, and how Debug prints sizes only.
    pub fn images(&self) -> Vec<(&'static str, &Bytes)> {
        match self {
            Self::FaceLiveness { selfie } | Self::RegisterFace { selfie } | Self::AuthenticateFace { selfie, .. } => {
                vec![("selfie", selfie)]
            }
            Self::OcrPassport { passport } => vec![("passport", passport)],
            Self::OcrCard { front, back } => vec![("front", front), ("back", back)],
            Self::KycPassport { selfie, passport } => vec![("selfie", selfie), ("passport", passport)],
            Self::KycCard { selfie, front, back } => vec![("selfie", selfie), ("front", front), ("back", back)],
        }
    }
}

impl ServiceInput {
    /// Moves the images out, leaving this input with empty ones (same service and face): a
    /// running task's worker keeps what the task is, while the pipeline owns the bytes and
    /// drops each as soon as its last sub-call is done with it.
    pub fn take_images(&mut self) -> Self {
        let empty = Self::from_roles(self.kind(), self.face(), |_| Some(Bytes::new()));
        match empty {
            Some(empty) => std::mem::replace(self, empty),
            // Unreachable: every role and the face are given. Keep the images rather than lose them.
            None => self.clone(),
        }
    }

    /// Total image bytes: what a queued task costs a store (its queue bounds count this).
    pub fn image_bytes(&self) -> u64 {
        self.images().iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// The registered face an `authenticate_face` input refers to.
    pub fn face(&self) -> Option<Uuid> {
        match self {
            Self::AuthenticateFace { face, .. } => Some(*face),
            _ => None,
        }
    }

    /// Rebuilds an input of `kind` from its images by role (the inverse of [`Self::images`]);
    /// `None` when a role's image or the face is missing.
    pub fn from_roles(
        kind: ServiceKind,
        face: Option<Uuid>,
        mut image: impl FnMut(&'static str) -> Option<Bytes>,
    ) -> Option<Self> {
        Some(match kind {
            ServiceKind::FaceLiveness => Self::FaceLiveness { selfie: image("selfie")? },
            ServiceKind::RegisterFace => Self::RegisterFace { selfie: image("selfie")? },
            ServiceKind::AuthenticateFace => Self::AuthenticateFace { selfie: image("selfie")?, face: face? },
            ServiceKind::OcrPassport => Self::OcrPassport { passport: image("passport")? },
            ServiceKind::OcrCard => Self::OcrCard { front: image("front")?, back: image("back")? },
            ServiceKind::KycPassport => Self::KycPassport { selfie: image("selfie")?, passport: image("passport")? },
            ServiceKind::KycCard => {
                Self::KycCard { selfie: image("selfie")?, front: image("front")?, back: image("back")? }
            }
        })
    }
}

impl fmt::Debug for ServiceInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: BTreeMap<&str, usize> = self.images().into_iter().map(|(k, v)| (k, v.len())).collect();
        f.debug_struct("ServiceInput").field("service", &self.kind()).field("image_sizes", &sizes).finish()
    }
}

/// What the worker needs to run a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInput {
    /// The service asked for, with its images.
    pub upload: ServiceInput,
    /// Who submitted it (user name or API-key id); only they may read it.
    pub owner: String,
    pub extend_data: bool,
    /// W3C trace context of the request that created the task, to link the worker span.
    pub trace_context: Option<String>,
    /// Absolute base URL for `portrait_url` (from config or the request's Host header).
    #[serde(default)]
    pub base_url: Option<String>,
}

impl TaskInput {
    pub fn service(&self) -> ServiceKind {
        self.upload.kind()
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
    /// How the task ended; `None` before. `api::result` renders it as Progeny's `result`.
    pub outcome: Option<TaskOutcome>,
}

impl TaskRecord {
    pub fn new(id: TaskId, input: &TaskInput, now_ms: i64) -> Self {
        Self {
            id,
            owner: input.owner.clone(),
            service: input.service(),
            status: TaskStatus::Pending,
            created_ms: now_ms,
            updated_ms: now_ms,
            outcome: None,
        }
    }
}

/// Milliseconds since the Unix epoch, the one clock used in records.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Image bytes as base64 strings, the one place inputs meet their stored (JSON) form.
mod base64_bytes {
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text).map(Bytes::from).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_images_moves_the_bytes_out_and_keeps_what_the_task_is() {
        let face = Uuid::new_v4();
        let mut input = ServiceInput::AuthenticateFace { selfie: Bytes::from_static(b"\xff\xd8selfie"), face };
        let taken = input.take_images();
        assert_eq!(taken, ServiceInput::AuthenticateFace { selfie: Bytes::from_static(b"\xff\xd8selfie"), face });
        assert_eq!((input.kind(), input.face(), input.image_bytes()), (ServiceKind::AuthenticateFace, Some(face), 0));
    }

    #[test]
    fn inputs_round_trip_through_their_stored_form_and_never_print_bytes() {
        let input = ServiceInput::KycCard {
            selfie: Bytes::from_static(b"\xff\xd8selfie"),
            front: Bytes::from_static(b"\x89PNGfront"),
            back: Bytes::new(),
        };
        let stored = serde_json::to_value(&input).expect("serialises");
        assert_eq!(stored["service"], "kyc_card");
        assert_eq!(stored["front"], "iVBOR2Zyb250", "base64 of the bytes");
        assert_eq!(serde_json::from_value::<ServiceInput>(stored).expect("deserialises"), input);
        let face = Uuid::new_v4();
        let auth = ServiceInput::AuthenticateFace { selfie: Bytes::from_static(b"jpeg"), face };
        let stored = serde_json::to_value(&auth).expect("serialises");
        assert_eq!(stored["face"], face.hyphenated().to_string());
        assert_eq!(serde_json::from_value::<ServiceInput>(stored).expect("deserialises").kind(), ServiceKind::AuthenticateFace);

        let roles: std::collections::HashMap<&str, Bytes> =
            input.images().into_iter().map(|(k, v)| (k, v.clone())).collect();
        let rebuilt = ServiceInput::from_roles(ServiceKind::KycCard, None, |r| roles.get(r).cloned());
        assert_eq!(rebuilt.as_ref(), Some(&input), "images by role rebuild the input");
        assert_eq!(input.image_bytes(), 17);
        assert_eq!(ServiceInput::from_roles(ServiceKind::AuthenticateFace, None, |r| roles.get(r).cloned()), None);

        let printed = format!("{input:?}");
        assert!(printed.contains("\"front\": 9") && !printed.contains("PNG"), "{printed}");
    }

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
