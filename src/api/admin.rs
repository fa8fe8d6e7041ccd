//! Operator-only endpoints (API keys configured with `role = "operator"`; not part of Progeny):
//! `POST /api/v3/admin/reload/` re-reads routing and the adapters as `SIGHUP` does;
//! `GET /api/v3/admin/routing/` shows the routing in force and each provider's state.

use std::collections::BTreeMap;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

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

/// `GET /api/v3/admin/routing/`: per sub-call, the chain and its policies as configured, and per
/// provider its circuit, recent latency percentiles and error rate (its last
/// [`crate::routing::recent::CAPACITY`] attempts on this instance) and today's spend against its
/// daily budget.
pub async fn routing(State(state): State<AppState>, _operator: Operator) -> Json<Value> {
    let overview = state.router.overview().await;
    Json(json!({ "sub_calls": overview.iter().map(sub_call_json).collect::<Vec<_>>() }))
}

fn sub_call_json(sub: &crate::routing::SubCallOverview) -> Value {
    let c = &sub.config;
    // The routing types serialize as their TOML reads; a failure would be a bug, shown as null.
    let value = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    json!({
        "sub_call": sub.sub_call.as_str(),
        "chain": value(serde_json::to_value(&c.chain)),
        "split": value(serde_json::to_value(&c.split)),
        "rules": value(serde_json::to_value(&c.rules)),
        "hedge": value(serde_json::to_value(&c.hedge)),
        "consensus": value(serde_json::to_value(&c.consensus)),
        "providers": sub.providers.iter().map(|p| json!({
            "provider": p.provider,
            "circuit": p.circuit.as_str(),
            "recent": {
                "calls": p.recent.calls,
                "p50_ms": p.recent.p50_ms,
                "p95_ms": p.recent.p95_ms,
                "p99_ms": p.recent.p99_ms,
                "error_rate": p.recent.error_rate,
            },
            "spend": {
                "cost_per_call": p.spend.cost_per_call,
                "spent_today": p.spend.spent_today,
                "daily_budget": p.spend.daily_budget,
            },
        })).collect::<Vec<_>>(),
    })
}
