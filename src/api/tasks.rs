//! `GET /api/v3/services/task/?id=…`, the caller's task list (`GET tasks/`) and the portrait
//! media a result links to. A client only ever sees its own tasks: someone else's id is a plain
//! 404, and the list is always the caller's.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::AppState;
use crate::tasks::store::{media_key, ListCursor, TaskPage, TaskQuery, TaskSummary};
use crate::tasks::{ServiceKind, TaskId, TaskRecord, TaskStatus};

/// DRF's wording for the list's query parameters.
pub mod list_messages {
    pub const INVALID_INTEGER: &str = "A valid integer is required.";
    pub const LIMIT_MIN: &str = "Ensure this value is greater than or equal to 1.";
    pub const LIMIT_MAX: &str = "Ensure this value is less than or equal to 100.";
    pub const INVALID_CURSOR: &str = "Invalid cursor.";

    /// DRF ChoiceField's message for `value`.
    pub fn not_a_choice(value: &str) -> String {
        format!("\"{value}\" is not a valid choice.")
    }
}

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

/// `GET /api/v3/services/tasks/?status=&service=&limit=&cursor=`: the caller's recent tasks,
/// newest first, one page (`next` is the cursor of the following one, or null). Every bad
/// parameter is reported at once (DRF field errors); an empty one counts as absent.
pub async fn list_tasks(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(&query)?;
    let page = state.store.list(&principal.owner, &query).await?;
    Ok(Json(page_json(&page)))
}

/// The list's query parameters as a [`TaskQuery`], or every problem with them.
fn list_query(raw: &HashMap<String, String>) -> Result<TaskQuery, ApiError> {
    use list_messages::*;
    let param = |name: &str| raw.get(name).map(|s| s.trim()).filter(|s| !s.is_empty());
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut query = TaskQuery::default();
    if let Some(v) = param("status") {
        match TaskStatus::parse(&v.to_ascii_uppercase()) {
            Some(s) => query.status = Some(s),
            None => {
                errors.insert("status".into(), vec![not_a_choice(v)]);
            }
        }
    }
    if let Some(v) = param("service") {
        match ServiceKind::from_path(v) {
            Some(s) => query.service = Some(s),
            None => {
                errors.insert("service".into(), vec![not_a_choice(v)]);
            }
        }
    }
    if let Some(v) = param("limit") {
        let problem = match v.parse::<i64>() {
            Err(_) => Some(INVALID_INTEGER),
            Ok(n) if n < 1 => Some(LIMIT_MIN),
            Ok(n) if n > TaskQuery::MAX_LIMIT as i64 => Some(LIMIT_MAX),
            Ok(n) => {
                query.limit = n as usize;
                None
            }
        };
        if let Some(p) = problem {
            errors.insert("limit".into(), vec![p.to_string()]);
        }
    }
    if let Some(v) = param("cursor") {
        match v.parse::<ListCursor>() {
            Ok(c) => query.after = Some(c),
            Err(_) => {
                errors.insert("cursor".into(), vec![INVALID_CURSOR.to_string()]);
            }
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(ApiError::Fields(errors))
    }
}

/// A page as `GET tasks/` shows it.
pub fn page_json(page: &TaskPage) -> Value {
    json!({
        "results": page.tasks.iter().map(summary_json).collect::<Vec<_>>(),
        "next": page.next.map(|c| c.to_string()),
    })
}

fn summary_json(task: &TaskSummary) -> Value {
    json!({
        "id": task.id,
        "service": task.service.as_str(),
        "status": task.status,
        "created_at": timestamp(task.created_ms),
        "finished_at": task.finished_ms.map(timestamp),
    })
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (`2026-12-04T07:51:39.120Z`).
fn timestamp(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or(Value::Null, |t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
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
