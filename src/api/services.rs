//! `POST /api/v3/services/<service>/`: validate the multipart form as DRF would (every field
//! error at once), store the task, answer `{"id": uuid}`.

use std::collections::BTreeMap;

use axum::extract::{Path, Request, State};
use axum::Json;
use serde_json::{json, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::form::Form;
use super::AppState;
use crate::images::{self, ImageProblem};
use crate::tasks::{now_ms, ServiceKind, TaskId, TaskInput, TaskRecord};

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
    let form = Form::from_multipart(req).await?;
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut images_in = BTreeMap::new();

    for &name in service.image_fields() {
        match form.files.get(name) {
            Some(part) if part.bytes.is_empty() => {
                errors.entry(name.into()).or_default().push(messages::EMPTY_FILE.into());
            }
            Some(part) => {
                images_in.insert(name.to_string(), part.bytes.clone());
            }
            None if form.texts.contains_key(name) => {
                errors.entry(name.into()).or_default().push(messages::NOT_A_FILE.into());
            }
            None => errors.entry(name.into()).or_default().push(messages::NO_FILE.into()),
        }
    }

    // Decode every submitted image (off the async threads) so unreadable ones are refused now.
    let limits = state.limits;
    let to_check: Vec<(String, bytes::Bytes)> = images_in.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let checked = tokio::task::spawn_blocking(move || {
        to_check.into_iter().map(|(name, bytes)| (name, images::check(&bytes, &limits))).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    for (name, outcome) in checked {
        if let Err(problem) = outcome {
            let msg = match problem {
                ImageProblem::Invalid => messages::INVALID_IMAGE.to_string(),
                other => other.to_string(),
            };
            errors.entry(name).or_default().push(msg);
        }
    }

    let mut fields = BTreeMap::new();
    for &name in service.text_fields() {
        match form.texts.get(name).map(|s| s.trim()) {
            None | Some("") => errors.entry(name.into()).or_default().push(messages::REQUIRED.into()),
            Some(v) => match uuid::Uuid::parse_str(v) {
                Ok(u) => {
                    fields.insert(name.to_string(), u.hyphenated().to_string());
                }
                Err(_) => errors.entry(name.into()).or_default().push(messages::INVALID_UUID.into()),
            },
        }
    }

    let extend_data = match form.texts.get("extend_data") {
        None => false,
        Some(v) => parse_bool(v).unwrap_or_else(|| {
            errors.entry("extend_data".into()).or_default().push(messages::INVALID_BOOL.into());
            false
        }),
    };

    if !errors.is_empty() {
        return Err(ApiError::Fields(errors));
    }

    if let Some(uuid) = fields.get("uuid") {
        if state.store.get_face(&principal.owner, uuid).await?.is_none() {
            return Err(ApiError::field("uuid", messages::FACE_NOT_REGISTERED));
        }
    }

    let id = TaskId::new();
    let input = TaskInput {
        service,
        owner: principal.owner,
        extend_data,
        images: images_in,
        fields,
        trace_context: crate::telemetry::propagation::traceparent(&tracing::Span::current()),
        base_url: state.public_url.clone().or(base_url),
    };
    let record = TaskRecord::new(id, &input, now_ms());
    state.store.submit(record, input).await?;
    crate::telemetry::metrics().task_submitted(service.as_str());
    tracing::info!(task = %id, service = %service, "Task accepted");
    Ok(Json(json!({ "id": id })))
}

/// `scheme://host` as the client addressed us (honouring `X-Forwarded-Proto` from a proxy).
/// Reads and drops the request body (at most 4× the per-image limit), then gives back `err`.
async fn drain_then(req: Request, state: &AppState, err: ApiError) -> ApiError {
    let _ = axum::body::to_bytes(req.into_body(), state.limits.max_bytes.saturating_mul(4)).await;
    err
}

fn request_base_url(headers: &axum::http::HeaderMap) -> Option<String> {
    let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bools_like_drf() {
        use super::parse_bool;
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("No"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
