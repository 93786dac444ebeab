//! `POST /v1/tokens`, `POST /v1/tokens/revoke` (app token) and `GET /v1/keys`
//! (anyone).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chat_token::Jwks;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::extract::{AppAuth, JsonBody};
use crate::clock;
use crate::error::AuthError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    user: String,
    /// Any JSON number (or null): a negative, fractional or huge one is an
    /// `invalid_ttl` like 0, not a type error.
    #[serde(default)]
    ttl_s: Option<serde_json::Number>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    user: String,
}

/// The answer to `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintedToken {
    pub token: String,
    /// RFC 3339, UTC, whole seconds: the token's `exp`.
    pub expires_at: String,
}

/// The answer to `POST /v1/tokens/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedUser {
    pub user: String,
    /// RFC 3339, UTC, whole seconds: tokens of the user issued (`iat`)
    /// before this instant are revoked. It is the first second after the
    /// revocation, and every token minted from now on is issued at or after
    /// it (see [`crate::revocation`]).
    pub revoked_at: String,
}

fn user_id(user: &str) -> Result<(), AuthError> {
    chat_wire::validate_user_id(user).map_err(|error| AuthError::InvalidUserId(error.to_string()))
}

fn ttl(requested: Option<&serde_json::Number>, state: &AppState) -> Result<u64, AuthError> {
    let max = state.settings.token_ttl_max_s;
    let Some(number) = requested else {
        return Ok(state.settings.token_ttl_default_s);
    };
    match number.as_u64() {
        Some(ttl) if (1..=max).contains(&ttl) => Ok(ttl),
        _ => Err(AuthError::InvalidTtl(format!(
            "ttl_s must be a whole number of seconds from 1 to {max}, got {number}"
        ))),
    }
}

pub async fn mint(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    JsonBody(body): JsonBody<MintBody>,
) -> Result<(StatusCode, Json<MintedToken>), AuthError> {
    user_id(&body.user)?;
    let ttl = ttl(body.ttl_s.as_ref(), &state)?;
    let iat = state.revocations.issue_time(app, &body.user).await?;
    // The configured maximum is capped at a year: no overflow.
    let exp = iat + ttl as i64;
    let token = state
        .keys
        .signer()
        .mint(app, &body.user, iat, exp)
        .map_err(|error| AuthError::Internal(format!("minting: {error}")))?;
    state.metrics.tokens_minted.inc();
    Ok((
        StatusCode::CREATED,
        Json(MintedToken {
            token,
            expires_at: clock::rfc3339(exp),
        }),
    ))
}

pub async fn revoke(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<Json<RevokedUser>, AuthError> {
    user_id(&body.user)?;
    if !state.revocation_quota.try_take(app, clock::now_s()) {
        return Err(AuthError::TooManyRevocations(
            state.revocation_quota.per_minute_max(),
        ));
    }
    let record = state.revocations.revoke(app, body.user).await?;
    state.metrics.revocations.inc();
    state
        .metrics
        .live_revocations
        .set(state.revocations.live() as i64);
    tracing::info!(
        app,
        user = %record.user,
        seq = record.seq,
        revoked_at = record.revoked_at,
        "user tokens revoked"
    );
    Ok(Json(RevokedUser {
        user: record.user,
        revoked_at: clock::rfc3339(record.revoked_at),
    }))
}

pub async fn keys(State(state): State<AppState>) -> Json<Jwks> {
    Json(Jwks::clone(&state.keys.jwks()))
}
