//! `POST /v1/chats`, `GET /v1/chats`, `GET /v1/chats/{n}` (app token).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::extract::{AppAuth, ChatPath, OptionalJsonBody, QueryParams};
use super::validate;
use super::views::{ChatView, ChatsPage};
use crate::clock;
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChatBody {
    #[serde(default)]
    title: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    OptionalJsonBody(body): OptionalJsonBody<CreateChatBody>,
) -> Result<(StatusCode, Json<ChatView>), ApiError> {
    let body = body.unwrap_or(CreateChatBody { title: None });
    if let Some(title) = &body.title {
        validate::title(title, &state.limits)?;
    }
    let chat = state
        .store
        .create_chat(app.id, body.title, clock::now_us())
        .await?;
    Ok((StatusCode::CREATED, Json(chat.into())))
}

pub async fn list(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    query: QueryParams,
) -> Result<Json<ChatsPage>, ApiError> {
    query.allow(&["after", "limit"])?;
    let after = query.cursor("after")?.unwrap_or(0);
    let limit = query.limit(&state)?;
    let page = state.store.chats(app.id, after, limit).await?;
    Ok(Json(ChatsPage {
        chats: page.items.into_iter().map(Into::into).collect(),
        has_more: page.has_more,
    }))
}

pub async fn show(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    ChatPath(number): ChatPath,
) -> Result<Json<ChatView>, ApiError> {
    let chat = state
        .store
        .chat(app.id, number)
        .await?
        .ok_or(ApiError::ChatNotFound)?;
    Ok(Json(chat.into()))
}
