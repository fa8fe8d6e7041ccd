//! `POST /api/v3/admin/reload/`: re-reads routing and the adapters as `SIGHUP` does, for API
//! keys configured with `role = "operator"`. Not part of Progeny.

use std::collections::BTreeMap;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::AppState;
use crate::config::Role;

/// What the admin endpoint asks of the application (implemented by `app::Reloader`, which
/// `api` may not import).
#[async_trait::async_trait]
pub trait Reload: Send + Sync + 'static {
    /// Validates the configuration on disk and swaps it in. `Err`: every problem found; the
    /// running configuration is kept.
    async fn reload(&self) -> Result<Reloaded, Vec<String>>;
}

/// A reload that took effect: the chains now in force, per sub-call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reloaded {
    pub routing: BTreeMap<String, Vec<String>>,
}

/// A caller whose API key has the operator role.
pub struct Operator;

impl<S> FromRequestParts<S> for Operator
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = super::auth::request_bearer(parts)
            .ok_or(ApiError::Unauthenticated("Authentication credentials were not provided."))?;
        match state.auth.role_of(token) {
            Some(Role::Operator) => Ok(Operator),
            Some(Role::Client) => Err(ApiError::Forbidden),
            None => Err(ApiError::Unauthenticated("Given token not valid for any token type")),
        }
    }
}

/// 200 with the chains now in force; 422 with every problem when the files on disk are
/// refused (the running configuration stays).
pub async fn reload(State(state): State<AppState>, _operator: Operator) -> Result<Response, ApiError> {
    let Some(reloader) = state.reload.clone() else { return Err(ApiError::NotFound) };
    Ok(match reloader.reload().await {
        Ok(done) => Json(json!({ "reloaded": true, "routing": done.routing })).into_response(),
        Err(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "reloaded": false,
                "detail": "The configuration on disk was refused; the running one is kept.",
                "problems": problems,
            })),
        )
            .into_response(),
    })
}
