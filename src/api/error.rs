//! The one place where failures become HTTP responses (DRF-shaped JSON bodies).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::tasks::store::{FullScope, StoreError};

/// Everything an API handler can fail with; clients see Progeny/DRF shapes.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// DRF field errors: `{"field": ["message", …], …}`, all fields at once.
    #[error("invalid fields")]
    Fields(BTreeMap<String, Vec<String>>),
    /// 400 with a `detail` (malformed query, …).
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// 403: authenticated, but the credential's role may not do this (admin endpoints).
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("unsupported media type")]
    UnsupportedMediaType(String),
    #[error("request body too large")]
    PayloadTooLarge,
    /// The whole request (headers to answer) took longer than `server.request_timeout_ms`.
    #[error("request timed out")]
    RequestTimeout,
    /// A route exists at this path, but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A bounded resource is full (e.g. pending webhooks): 503, try again later.
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
    /// Too many failed logins for this user name or client address; retry after the delay.
    #[error("too many attempts")]
    TooManyAttempts { retry_after: std::time::Duration },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    /// A single field error.
    pub fn field(name: &str, message: &str) -> Self {
        let mut map = BTreeMap::new();
        map.insert(name.to_string(), vec![message.to_string()]);
        Self::Fields(map)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            Self::Fields(map) => (StatusCode::BAD_REQUEST, json!(map)),
            Self::BadRequest(detail) => (StatusCode::BAD_REQUEST, json!({ "detail": detail })),
            Self::Unauthenticated(detail) => (StatusCode::UNAUTHORIZED, json!({ "detail": detail })),
            Self::Forbidden => {
                (StatusCode::FORBIDDEN, json!({ "detail": "You do not have permission to perform this action." }))
            }
            Self::NotFound => (StatusCode::NOT_FOUND, json!({ "detail": "Not found." })),
            Self::UnsupportedMediaType(ct) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({ "detail": format!("Unsupported media type \"{ct}\" in request.") }),
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "detail": "Request body is too large." }),
            ),
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, json!({ "detail": "Request timed out." })),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, json!({ "detail": "Method not allowed." })),
            Self::Unavailable(detail) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "detail": detail })),
            Self::TooManyAttempts { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "detail": format!("Request was throttled. Expected available in {} seconds.", retry_secs(*retry_after)) }),
            ),
            Self::Store(StoreError::NotFound) => (StatusCode::NOT_FOUND, json!({ "detail": "Not found." })),
            Self::Store(StoreError::Full { scope, .. }) => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "detail": match scope {
                    FullScope::Owner => "Too many unfinished tasks for this client; retry later.",
                    FullScope::Queue => "The task queue is full; retry later.",
                } }),
            ),
            Self::Store(StoreError::IdempotencyConflict) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "detail": "This Idempotency-Key was already used with a different request." }),
            ),
            Self::Store(err) => {
                tracing::warn!(error = %err, "Task store failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "detail": "Task store unavailable, try again later." }),
                )
            }
            Self::Internal(err) => {
                tracing::error!(error = %err, "Internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, json!({ "detail": "Internal server error." }))
            }
        };
        let mut resp = (status, Json(body)).into_response();
        if let Self::Store(StoreError::Full { retry_after, .. }) = &self {
            // Whole seconds, rounded up: a client never retries before the store may have room.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs.max(1)));
        }
        if matches!(self, Self::Unauthenticated(_)) {
            resp.headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer realm=\"api\""));
        }
        if let Self::TooManyAttempts { retry_after } = self {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, retry_secs(retry_after).into());
        }
        resp
    }
}

/// Whole seconds to wait, at least 1 (`Retry-After` has no fractions; 0 would invite a retry now).
fn retry_secs(d: std::time::Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Middleware: every error answer has a JSON `{"detail": …}` body. Extractor rejections (a
/// malformed query or path, …) come from axum as plain text that may echo the request; they are
/// replaced by the status's fixed wording. JSON errors of our own pass through untouched.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    let mut fixed = (status, Json(json!({ "detail": fixed_detail(status) }))).into_response();
    for (name, value) in parts.headers.iter() {
        fixed.headers_mut().entry(name.clone()).or_insert_with(|| value.clone());
    }
    fixed
}

/// The detail of an error answer that had none of ours: DRF's wording where it has one.
pub fn fixed_detail(status: StatusCode) -> String {
    match status {
        StatusCode::BAD_REQUEST => "Malformed request.".into(),
        StatusCode::NOT_FOUND => "Not found.".into(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed.".into(),
        StatusCode::PAYLOAD_TOO_LARGE => "Request body is too large.".into(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported media type in request.".into(),
        StatusCode::INTERNAL_SERVER_ERROR => "Internal server error.".into(),
        other => format!("{}.", other.canonical_reason().unwrap_or("Error")),
    }
}

/// Middleware: a handler that panics answers a JSON 500 instead of dropping the connection. The
/// panic's message is not logged here (it may quote input); the panic hook already printed it.
pub async fn catch_panic(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use futures::FutureExt as _;
    match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(_) => ApiError::Internal("a request handler panicked".into()).into_response(),
    }
}
