//! `POST /api/v3/services/<service>/`: validate the multipart form as DRF would (every field
//! error at once), store the task, answer `{"id": uuid}`.

use std::collections::BTreeMap;

use axum::extract::{Path, Request, State};
use axum::Json;
use serde_json::{json, Value};
use tracing::Instrument as _;

use bytes::Bytes;
use uuid::Uuid;

use super::auth::Principal;
use super::error::ApiError;
use super::form::Form;
use super::AppState;
use crate::config::ImageLimits;
use crate::images::{self, ImageProblem};
use crate::tasks::store::{Idempotency, Submitted};
use crate::tasks::{now_ms, ServiceInput, ServiceKind, TaskId, TaskInput, TaskRecord};

/// DRF's messages, kept verbatim: clients match on them.
pub mod messages {
    pub const NO_FILE: &str = "No file was submitted.";
    pub const NOT_A_FILE: &str = "The submitted data was not a file. Check the encoding type on the form.";
    pub const EMPTY_FILE: &str = "The submitted file is empty.";
    pub const INVALID_IMAGE: &str =
        "Upload a valid image. The file you uploaded was either not an image or a corrupted image.";
    pub const REQUIRED: &str = "This field is required.";
    pub const INVALID_UUID: &str = "Must be a valid UUID.";
    pub const INVALID_BOOL: &str = "Must be a valid boolean.";
    pub const FACE_NOT_REGISTERED: &str = "No registered face with this uuid.";
}

/// DRF BooleanField's accepted spellings.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" | "t" => Some(true),
        "false" | "0" | "no" | "n" | "off" | "f" | "" => Some(false),
        _ => None,
    }
}

/// The form's field names (Progeny's), known only here (and in the OpenAPI document built from
/// them): the task carries a [`ServiceInput`].
pub(crate) mod field {
    pub const IMAGE: &str = "image";
    pub const SELFIE: &str = "selfie_image";
    pub const PASSPORT: &str = "passport_image";
    pub const FRONT: &str = "front_id";
    pub const BACK: &str = "back_id";
    pub const UUID: &str = "uuid";
    pub const EXTEND_DATA: &str = "extend_data";
    pub const CALLBACK_URL: &str = "callback_url";
}

/// The file fields `service` requires, in the order errors are reported.
pub(crate) fn image_fields(service: ServiceKind) -> &'static [&'static str] {
    use field::*;
    match service {
        ServiceKind::FaceLiveness | ServiceKind::RegisterFace | ServiceKind::AuthenticateFace => &[IMAGE],
        ServiceKind::OcrPassport => &[PASSPORT],
        ServiceKind::OcrCard => &[FRONT, BACK],
        ServiceKind::KycPassport => &[SELFIE, PASSPORT],
        ServiceKind::KycCard => &[SELFIE, FRONT, BACK],
    }
}

/// DRF field errors collected over the whole form: `{"field": ["message", …]}`.
#[derive(Default)]
struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_string()).or_default().push(message.into());
    }

    /// `Err` with every collected error, if there is one.
    fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Fields(self.0))
        }
    }
}

/// Validates the whole form (every field error at once), checks that a referenced face is
/// registered, turns the form into a [`ServiceInput`] and queues the task.
pub async fn submit(
    State(state): State<AppState>,
    principal: Result<Principal, ApiError>,
    Path(service): Path<String>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    // Refusals before the form is read still read the upload (bounded by the body limit): a
    // client still sending a large file would otherwise meet a closed socket, not the answer.
    let (principal, service) = match (principal, ServiceKind::from_path(&service)) {
        (Ok(p), Some(s)) => (p, s),
        (Err(e), _) => return Err(drain_then(req, &state, e).await),
        (Ok(_), None) => return Err(drain_then(req, &state, ApiError::NotFound).await),
    };
    let base_url = request_base_url(req.headers());
    let idempotency_key = match idempotency_key(req.headers()) {
        Ok(key) => key,
        Err(e) => return Err(drain_then(req, &state, e).await),
    };
    let form = Form::from_multipart(req).await?;

    let mut errors = FieldErrors::default();
    let images = submitted_images(service, &form, &mut errors);
    check_images(&images, state.limits, &mut errors).await?;
    let face = (service == ServiceKind::AuthenticateFace).then(|| face_uuid(&form, &mut errors)).flatten();
    let extend_data = extend_data(&form, &mut errors);
    let given = form.texts.get(field::CALLBACK_URL).map(String::as_str);
    let callback = callback(&state, given.or(state.auth.default_callback(&principal)), &mut errors).await;
    errors.into_result()?;
    if callback.is_some() && !state.webhooks.has_room().await? {
        // Refused before the task exists: a client told 503 may retry without a duplicate.
        return Err(ApiError::Unavailable("Too many webhook deliveries pending, try again later."));
    }

    if let Some(face) = face {
        if state.store.get_face(&principal.owner, &face.hyphenated().to_string()).await?.is_none() {
            return Err(ApiError::field(field::UUID, messages::FACE_NOT_REGISTERED));
        }
    }
    let idempotency = idempotency_key.map(|key| Idempotency { key, fingerprint: fingerprint(service, &form) });
    let input = TaskInput {
        upload: service_input(service, images, face)?,
        owner: principal.owner,
        extend_data,
        trace_context: crate::telemetry::propagation::traceparent(&tracing::Span::current()),
        base_url: state.public_url.clone().or(base_url),
    };
    let id = enqueue(&state, input, idempotency, callback).await?;
    Ok(Json(json!({ "id": id })))
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    match value.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(k.to_owned())),
        _ => Err(ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters.".into())),
    }
}

/// The header naming a submit's idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// SHA-256 over the service and every form field (name and content, files and texts apart):
/// a retry of the same request has the same fingerprint, any changed field another.
fn fingerprint(service: ServiceKind, form: &Form) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    let mut field = |kind: &[u8], name: &str, value: &[u8]| {
        h.update(kind);
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_be_bytes());
        h.update(value);
    };
    field(b"s", "service", service.as_str().as_bytes());
    for (name, part) in &form.files {
        field(b"f", name, &part.bytes);
    }
    for (name, value) in &form.texts {
        field(b"t", name, value.as_bytes());
    }
    let digest: [u8; 32] = h.finalize().into();
    hex::encode(digest)
}

/// The optional `callback_url` (else the API key's default), checked against the webhook policy.
async fn callback(state: &AppState, raw: Option<&str>, errors: &mut FieldErrors) -> Option<reqwest::Url> {
    match state.webhooks.check(raw?).await {
        Ok((url, _)) => Some(url),
        Err(e) => {
            errors.add(field::CALLBACK_URL, e.to_string());
            None
        }
    }
}

/// The non-empty file parts `service` needs, by field name; missing, empty and non-file parts
/// are field errors.
fn submitted_images(service: ServiceKind, form: &Form, errors: &mut FieldErrors) -> BTreeMap<&'static str, Bytes> {
    let mut images = BTreeMap::new();
    for &name in image_fields(service) {
        match form.files.get(name) {
            Some(part) if part.bytes.is_empty() => errors.add(name, messages::EMPTY_FILE),
            Some(part) => {
                images.insert(name, part.bytes.clone());
            }
            None if form.texts.contains_key(name) => errors.add(name, messages::NOT_A_FILE),
            None => errors.add(name, messages::NO_FILE),
        }
    }
    images
}

/// Uploads up to this many bytes in total are checked on the request's own task: the check
/// reads each byte once (tens of µs per MB), so a thread hand-off would cost more than it
/// saves; larger ones go to the blocking pool so an async thread is never held for long.
const INLINE_CHECK_BYTES: usize = 2 << 20;

/// Checks every submitted image's format, size, declared dimensions and structure (nothing is
/// decoded), so unreadable ones are refused now.
async fn check_images(
    uploads: &BTreeMap<&'static str, Bytes>,
    limits: ImageLimits,
    errors: &mut FieldErrors,
) -> Result<(), ApiError> {
    let to_check: Vec<(&'static str, Bytes)> = uploads.iter().map(|(k, v)| (*k, v.clone())).collect();
    let check_all = move || {
        to_check.into_iter().map(|(name, bytes)| (name, images::check(&bytes, &limits))).collect::<Vec<_>>()
    };
    let total: usize = uploads.values().map(Bytes::len).sum();
    let checked = if total <= INLINE_CHECK_BYTES {
        check_all()
    } else {
        tokio::task::spawn_blocking(check_all).await.map_err(|e| ApiError::Internal(e.to_string()))?
    };
    for (name, problem) in checked.into_iter().filter_map(|(name, r)| r.err().map(|p| (name, p))) {
        match problem {
            ImageProblem::Invalid => errors.add(name, messages::INVALID_IMAGE),
            other => errors.add(name, other.to_string()),
        }
    }
    Ok(())
}

/// `authenticate_face`'s required `uuid` of a registered face.
fn face_uuid(form: &Form, errors: &mut FieldErrors) -> Option<Uuid> {
    match form.texts.get(field::UUID).map(|s| s.trim()) {
        None | Some("") => {
            errors.add(field::UUID, messages::REQUIRED);
            None
        }
        Some(v) => Uuid::parse_str(v).map_err(|_| errors.add(field::UUID, messages::INVALID_UUID)).ok(),
    }
}

/// The optional `extend_data` boolean (default false).
fn extend_data(form: &Form, errors: &mut FieldErrors) -> bool {
    match form.texts.get(field::EXTEND_DATA) {
        None => false,
        Some(v) => parse_bool(v).unwrap_or_else(|| {
            errors.add(field::EXTEND_DATA, messages::INVALID_BOOL);
            false
        }),
    }
}

/// The typed input from validated parts: each field name becomes its role, once.
fn service_input(
    service: ServiceKind,
    mut images: BTreeMap<&'static str, Bytes>,
    face: Option<Uuid>,
) -> Result<ServiceInput, ApiError> {
    use field::*;
    let mut take = |name: &str| {
        images.remove(name).ok_or_else(|| ApiError::Internal(format!("validated field {name} is missing")))
    };
    Ok(match service {
        ServiceKind::FaceLiveness => ServiceInput::FaceLiveness { selfie: take(IMAGE)? },
        ServiceKind::RegisterFace => ServiceInput::RegisterFace { selfie: take(IMAGE)? },
        ServiceKind::AuthenticateFace => ServiceInput::AuthenticateFace {
            selfie: take(IMAGE)?,
            face: face.ok_or_else(|| ApiError::Internal("validated field uuid is missing".into()))?,
        },
        ServiceKind::OcrPassport => ServiceInput::OcrPassport { passport: take(PASSPORT)? },
        ServiceKind::OcrCard => ServiceInput::OcrCard { front: take(FRONT)?, back: take(BACK)? },
        ServiceKind::KycPassport => ServiceInput::KycPassport { selfie: take(SELFIE)?, passport: take(PASSPORT)? },
        ServiceKind::KycCard => ServiceInput::KycCard { selfie: take(SELFIE)?, front: take(FRONT)?, back: take(BACK)? },
    })
}

/// Stores the Pending task, queues it and its callback; the id is the answer. A repeated
/// idempotency key (same request) answers the task it first created, which is not queued again
/// (nor its callback).
///
/// Runs to its end on a task of its own. Once the store has the task it runs, whether or not the
/// client is still there to read its id (a client that went away finds it in the task list, or
/// by repeating its `Idempotency-Key`). Dropped with the request (the client closed its
/// connection, or `server.request_timeout_ms` passed), the write could land with the task
/// uncounted by `kycgate_tasks_submitted_total` and its callback never queued.
async fn enqueue(
    state: &AppState,
    input: TaskInput,
    idempotency: Option<Idempotency>,
    callback: Option<reqwest::Url>,
) -> Result<TaskId, ApiError> {
    let id = TaskId::new();
    let service = input.service();
    let store = state.store.clone();
    let webhooks = state.webhooks.clone();
    let submit = async move {
        match store.submit_with(TaskRecord::new(id, &input, now_ms()), input, idempotency.as_ref()).await? {
            Submitted::Created => {
                crate::telemetry::metrics().task_submitted(service.as_str());
                tracing::info!(task = %id, service = %service, "Task accepted");
                if let Some(url) = callback {
                    webhooks.enqueue(id, &url).await?;
                }
                Ok(id)
            }
            Submitted::Existing(existing) => {
                tracing::info!(task = %existing, service = %service, "Repeated submit answered with its task");
                Ok(existing)
            }
        }
    };
    tokio::spawn(submit.in_current_span()).await.map_err(|e| ApiError::Internal(format!("submit: {e}")))?
}

/// Reads and drops the request body (at most 4× the per-image limit), then gives back `err`.
async fn drain_then(req: Request, state: &AppState, err: ApiError) -> ApiError {
    let _ = axum::body::to_bytes(req.into_body(), state.limits.max_bytes.saturating_mul(4)).await;
    err
}

/// `scheme://host` as the client addressed us (honouring `X-Forwarded-Proto` from a proxy).
/// A `Host` that is not a plain `host[:port]` (user info, paths, spaces, odd characters) is
/// ignored: `portrait_url` is then relative. Operators behind a proxy set `server.public_url`.
fn request_base_url(headers: &axum::http::HeaderMap) -> Option<String> {
    let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
    if !is_plain_authority(host) {
        return None;
    }
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    Some(format!("{scheme}://{host}"))
}

/// `host[:port]` with a DNS name, an IPv4 address or a bracketed IPv6 address, and nothing else.
fn is_plain_authority(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        // `[v6]:port`, or `name:port` with no other colon.
        Some((n, p)) if !host.ends_with(']') && (n.ends_with(']') || !n.contains(':')) => (n, Some(p)),
        _ => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
            })
    };
    port_ok && name_ok
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_hosts_make_a_base_url() {
        use super::is_plain_authority as ok;
        for good in ["localhost", "127.0.0.1:8080", "kyc.example.com", "[::1]:8080", "a-b.c"] {
            assert!(ok(good), "{good}");
        }
        for bad in ["", "evil.com@x", "a b", "x/y", "h:", "h:99999x", "[zz]", "-a.com", "a..b", "h:1:2", "<script>"] {
            assert!(!ok(bad), "{bad}");
        }
    }

    #[test]
    fn idempotency_keys_are_short_visible_ascii() {
        use axum::http::{HeaderMap, HeaderValue};
        let key = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(super::IDEMPOTENCY_KEY, HeaderValue::from_str(v).expect("header value"));
            super::idempotency_key(&h)
        };
        assert_eq!(key("order-42/retry").ok().flatten().as_deref(), Some("order-42/retry"));
        assert!(key("").is_err() && key("a b").is_err() && key(&"k".repeat(256)).is_err());
        assert!(matches!(super::idempotency_key(&HeaderMap::new()), Ok(None)));
    }

    #[test]
    fn fingerprints_cover_every_field() {
        use super::{fingerprint, Form};
        use crate::api::form::FilePart;
        use crate::tasks::ServiceKind;
        let form = |img: &'static [u8], extend: &str| {
            let mut f = Form::default();
            f.files.insert("image".into(), FilePart { bytes: bytes::Bytes::from_static(img) });
            f.texts.insert("extend_data".into(), extend.into());
            f
        };
        let base = fingerprint(ServiceKind::FaceLiveness, &form(b"jpeg", "true"));
        assert_eq!(base, fingerprint(ServiceKind::FaceLiveness, &form(b"jpeg", "true")));
        assert_ne!(base, fingerprint(ServiceKind::FaceLiveness, &form(b"jpeg!", "true")));
        assert_ne!(base, fingerprint(ServiceKind::FaceLiveness, &form(b"jpeg", "false")));
        assert_ne!(base, fingerprint(ServiceKind::RegisterFace, &form(b"jpeg", "true")));
    }

    #[test]
    fn bools_like_drf() {
        use super::parse_bool;
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("No"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
