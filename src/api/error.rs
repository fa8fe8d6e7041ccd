//! The one place where failures become HTTP responses (DRF-shaped JSON bodies).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::tasks::store::StoreError;

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
            Self::Store(StoreError::NotFound) => (StatusCode::NOT_FOUND, json!({ "detail": "Not found." })),
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
        if matches!(self, Self::Unauthenticated(_)) {
            resp.headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer realm=\"api\""));
        }
        resp
    }
}
