//! `POST /api/v3/accounts/token/{obtain,refresh}/` (simplejwt-compatible answers).

use std::collections::BTreeMap;

use axum::extract::{Request, State};
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
    let fields = Form::text_fields(req).await?;
    required(&fields, &["username", "password"])?;
    let (user, pass) = (&fields["username"], &fields["password"]);
    let auth = state.auth.clone();
    let (user, pass) = (user.clone(), pass.clone());
    // argon2 is deliberately slow: keep it off the async workers.
    let result = tokio::task::spawn_blocking(move || auth.obtain(&user, &pass))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match result {
        Ok(pair) => Ok(Json(pair)),
        Err(AuthError::Config(e)) => Err(ApiError::Internal(e)),
        Err(_) => Err(ApiError::Unauthenticated("No active account found with the given credentials")),
    }
}

pub async fn refresh(State(state): State<AppState>, req: Request) -> Result<Json<TokenPair>, ApiError> {
    let fields = Form::text_fields(req).await?;
    required(&fields, &["refresh"])?;
    match state.auth.refresh(&fields["refresh"]) {
        Ok(pair) => Ok(Json(pair)),
        Err(AuthError::Config(e)) => Err(ApiError::Internal(e)),
        Err(_) => Err(ApiError::Unauthenticated("Token is invalid or expired")),
    }
}
