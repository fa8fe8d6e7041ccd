//! The HTTP API (axum): Progeny v3 routes, auth, health. Only this module knows status codes.

pub mod admin;
pub mod auth;
pub mod console;
pub mod error;
pub mod form;
pub mod openapi;
pub mod request_id;
pub mod result;
pub mod services;
pub mod tasks;
pub mod throttle;
pub mod tokens;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::config::ImageLimits;
use crate::routing::SubCallRouter;
use crate::tasks::store::SharedStore;

pub use auth::{Authenticator, Principal};
pub use error::ApiError;

/// Handles every handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub auth: Arc<Authenticator>,
    pub router: Arc<dyn SubCallRouter>,
    pub limits: ImageLimits,
    /// Base URL for `portrait_url` (no trailing slash); `None` = from the Host header.
    pub public_url: Option<String>,
    /// Signed callbacks of finished tasks (`callback_url`).
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Configuration reload for `POST /api/v3/admin/reload/`; `None`: not offered.
    pub reload: Option<Arc<dyn admin::Reload>>,
}

/// The whole HTTP surface. Tests drive it in-process or over a socket.
/// The HTTP API. `request_timeout` bounds a whole request, so a client trickling its body cannot
/// hold a handler (and its buffers) open: past it the answer is a JSON 408.
pub fn app(state: AppState, max_body_bytes: usize, request_timeout: std::time::Duration) -> Router {
    let api = Router::new()
        .route("/api/v3/accounts/token/obtain/", post(tokens::obtain))
        .route("/api/v3/accounts/token/obtain", post(tokens::obtain))
        .route("/api/v3/accounts/token/refresh/", post(tokens::refresh))
        .route("/api/v3/accounts/token/refresh", post(tokens::refresh))
        .route("/api/v3/services/task/", get(tasks::get_task).delete(tasks::delete_task))
        .route("/api/v3/services/task", get(tasks::get_task).delete(tasks::delete_task))
        .route("/api/v3/services/tasks/", get(tasks::list_tasks))
        .route("/api/v3/services/tasks", get(tasks::list_tasks))
        .route("/api/v3/services/faces/", delete(tasks::erase_faces))
        .route("/api/v3/services/faces", delete(tasks::erase_faces))
        .route("/api/v3/services/{service}/", post(services::submit))
        .route("/api/v3/services/{service}", post(services::submit))
        .route("/api/v3/admin/reload/", post(admin::reload))
        .route("/api/v3/admin/reload", post(admin::reload))
        .route("/api/v3/admin/routing/", get(admin::routing))
        .route("/api/v3/admin/routing", get(admin::routing))
        .route("/api/v3/openapi.json", get(openapi::serve))
        .route("/media/{*path}", get(tasks::get_media))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    api.layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(|_: tower::BoxError| async { ApiError::RequestTimeout }))
                .timeout(request_timeout),
        )
        // A panic is a JSON 500; every error answer leaves with a JSON body.
        .layer(axum::middleware::from_fn(error::catch_panic))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(crate::telemetry::http::server_span))
        // Outermost: every answer carries the id, and the server span above records it.
        .layer(axum::middleware::from_fn(request_id::propagate))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Liveness probe: the process serves HTTP.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Prometheus scrape. Unauthenticated like `/healthz` (it carries no personal data: labels are
/// closed sets); keep it on the internal network. The queue is sampled now, so it is fresh.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::telemetry::metrics::sample_queue(&state.store).await;
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::telemetry::prometheus::render(),
    )
}

/// Readiness: the store answers and every sub-call has at least one usable provider.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    // Unauthenticated: the store's error (which may name hosts or users) goes to the log only.
    let store = match state.store.ping().await {
        Ok(()) => json!("ok"),
        Err(e) => {
            tracing::warn!(error = %e, "Readiness: task store unavailable");
            json!("unavailable")
        }
    };
    let mut ready = store == json!("ok");
    let mut subcalls = serde_json::Map::new();
    for (kind, status) in state.router.readiness() {
        let v = match status {
            Ok(()) => json!("ok"),
            Err(why) => {
                ready = false;
                json!(why)
            }
        };
        subcalls.insert(kind.as_str().to_string(), v);
    }
    // Circuit states are information, not readiness: an open circuit falls back along the chain.
    let mut circuits = serde_json::Map::new();
    for (kind, states) in state.router.circuits() {
        let per: serde_json::Map<String, serde_json::Value> =
            states.into_iter().map(|(n, st)| (n, json!(st.as_str()))).collect();
        circuits.insert(kind.as_str().to_string(), serde_json::Value::Object(per));
    }
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({ "ready": ready, "store": store, "sub_calls": subcalls, "circuits": circuits })))
}
