//! `GET /api/v3/services/task/?id=…` and the portrait media it links to. A client only ever
//! sees its own tasks: someone else's id is a plain 404.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::AppState;
use crate::tasks::store::media_key;
use crate::tasks::{TaskId, TaskRecord};

pub async fn get_task(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = task_id(&query)?;
    let record = state.store.get(id).await?.ok_or(ApiError::NotFound)?;
    if record.owner != principal.owner {
        return Err(ApiError::NotFound);
    }
    Ok(Json(task_json(&record)))
}

/// `DELETE /api/v3/services/task/?id=…`: erases the caller's task at once (record, uploaded
/// images, portraits, vendor answers in its result). 204; 404 for an unknown or foreign id.
pub async fn delete_task(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let id = task_id(&query)?;
    if state.store.delete(&principal.owner, id).await? {
        tracing::info!(task = %id, "Task deleted by its owner");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// `DELETE /api/v3/services/faces/`: erases every face the caller registered. 204.
pub async fn erase_faces(State(state): State<AppState>, principal: Principal) -> Result<StatusCode, ApiError> {
    let erased = state.store.erase_faces(&principal.owner).await?;
    tracing::info!(faces = erased, "Registered faces erased by their owner");
    Ok(StatusCode::NO_CONTENT)
}

/// The required `id` query parameter as a task id (DRF field errors otherwise).
fn task_id(query: &HashMap<String, String>) -> Result<TaskId, ApiError> {
    let raw = query.get("id").map(|s| s.trim()).filter(|s| !s.is_empty());
    let raw = raw.ok_or_else(|| ApiError::field("id", "This field is required."))?;
    raw.parse().map_err(|_| ApiError::field("id", "Must be a valid UUID."))
}

/// A task as `GET task/` shows it: `result` is `null` until it finished.
pub fn task_json(record: &TaskRecord) -> Value {
    json!({
        "id": record.id,
        "status": record.status,
        "result": record.outcome.as_ref().map(super::result::render),
    })
}

pub async fn get_media(
    State(state): State<AppState>,
    principal: Principal,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    if path.contains("..") {
        return Err(ApiError::NotFound);
    }
    let bytes = state.store.get_media(&media_key(&principal.owner, &path)).await?.ok_or(ApiError::NotFound)?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, no-store")], bytes).into_response())
}
