//! `POST /v1/apps` (operator), `GET` and `PATCH /v1/app` (app token).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::extract::{AppAuth, JsonBody, OperatorAuth};
use super::validate;
use super::views::{AppView, CreatedAppView};
use crate::error::ApiError;
use crate::{clock, credentials};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TitleBody {
    title: String,
}

pub async fn create(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    JsonBody(body): JsonBody<TitleBody>,
) -> Result<(StatusCode, Json<CreatedAppView>), ApiError> {
    validate::title(&body.title, &state.limits)?;
    let token = credentials::new_app_token();
    let app = state
        .store
        .create_app(body.title, credentials::digest(&token), clock::now_us())
        .await?;
    tracing::info!(app = app.id, "app created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedAppView {
            token,
            app: app.into(),
        }),
    ))
}

/// Read from the store: the app the token resolved to may be remembered
/// from before a rename or a new chat (`app_tokens`).
pub async fn show(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
) -> Result<Json<AppView>, ApiError> {
    let app = state
        .store
        .app(app.id)
        .await?
        .ok_or(ApiError::AppNotFound)?;
    Ok(Json(app.into()))
}

pub async fn rename(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    JsonBody(body): JsonBody<TitleBody>,
) -> Result<Json<AppView>, ApiError> {
    validate::title(&body.title, &state.limits)?;
    let app = state.store.rename_app(app.id, body.title).await?;
    Ok(Json(app.into()))
}
