//! `POST /api/v3/accounts/token/{obtain,refresh}/` (simplejwt-compatible answers).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::Json;

use super::auth::{AuthError, TokenPair};
use super::error::ApiError;
use super::form::Form;
use super::AppState;

fn required(fields: &BTreeMap<String, String>, names: &[&str]) -> Result<(), ApiError> {
    let missing: BTreeMap<String, Vec<String>> = names
        .iter()
        .filter(|n| fields.get(**n).is_none_or(|v| v.is_empty()))
        .map(|n| {
            let msg = if fields.contains_key(*n) { "This field may not be blank." } else { "This field is required." };
            (n.to_string(), vec![msg.to_string()])
        })
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(ApiError::Fields(missing)) }
}

pub async fn obtain(State(state): State<AppState>, req: Request) -> Result<Json<TokenPair>, ApiError> {
    // The TCP peer (set by the server loop); absent when the router is driven in-process.
    let address = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let fields = Form::text_fields(req).await?;
    required(&fields, &["username", "password"])?;
    let (user, pass) = (fields["username"].clone(), fields["password"].clone());
    // Counted before argon2 runs: a refused attempt costs no hashing.
    let admitted =
        state.auth.throttle().admit(&user, address).map_err(|retry_after| ApiError::TooManyAttempts { retry_after })?;
    let auth = state.auth.clone();
    // argon2 is deliberately slow: keep it off the async workers.
    let result = tokio::task::spawn_blocking(move || auth.obtain(&user, &pass))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match result {
        Ok(pair) => {
            state.auth.throttle().succeeded(admitted);
            Ok(Json(pair))
        }
        Err(AuthError::Config(e)) => Err(ApiError::Internal(e)),
        Err(_) => Err(ApiError::Unauthenticated("No active account found with the given credentials")),
    }
}

pub async fn refresh(State(state): State<AppState>, req: Request) -> Result<Json<TokenPair>, ApiError> {
    let fields = Form::text_fields(req).await?;
    required(&fields, &["refresh"])?;
    match state.auth.refresh(&fields["refresh"]).await {
        Ok(pair) => Ok(Json(pair)),
        Err(AuthError::Config(e)) => Err(ApiError::Internal(e)),
        Err(AuthError::Unavailable(e)) => Err(ApiError::Store(crate::tasks::store::StoreError::Unavailable(e))),
        Err(_) => Err(ApiError::Unauthenticated("Token is invalid or expired")),
    }
}
