//! `GET /api/v3/services/task/?id=…` and the portrait media it links to. A client only ever
//! sees its own tasks: someone else's id is a plain 404.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
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
    let raw = query.get("id").map(|s| s.trim()).filter(|s| !s.is_empty());
    let raw = raw.ok_or_else(|| ApiError::field("id", "This field is required."))?;
    let id: TaskId = raw.parse().map_err(|_| ApiError::field("id", "Must be a valid UUID."))?;
    let record = state.store.get(id).await?.ok_or(ApiError::NotFound)?;
    if record.owner != principal.owner {
        return Err(ApiError::NotFound);
    }
    Ok(Json(task_json(&record)))
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
