//! A member's feed: their newest messages across every chat they are in now,
//! newest first (`crate::feed`).
//! - `GET /v1/users/{user}/messages?limit=&before=` with the app token;
//! - `GET /v1/me/messages?limit=&before=` with the member's user token.
//!
//! `before` is the `next` of the previous page, opaque to clients.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{AppAuth, QueryParams, Reader, UserPath};
use super::views::{FeedItemView, FeedView};
use crate::error::ApiError;
use crate::feed::{FeedKey, FeedQuery};
use crate::store::AppId;

pub async fn of_user(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    UserPath(user): UserPath,
    query: QueryParams,
) -> Result<Json<FeedView>, ApiError> {
    answer(&state, app.id, user, &query).await
}

pub async fn of_me(
    State(state): State<AppState>,
    reader: Reader,
    query: QueryParams,
) -> Result<Json<FeedView>, ApiError> {
    match reader {
        Reader::User { app, user } => answer(&state, app, user, &query).await,
        Reader::App(_) => Err(ApiError::Forbidden(
            "/v1/me/messages takes a user token; with the app token read /v1/users/{user}/messages",
        )),
    }
}

async fn answer(
    state: &AppState,
    app: AppId,
    user: String,
    query: &QueryParams,
) -> Result<Json<FeedView>, ApiError> {
    query.allow(&["before", "limit"])?;
    let before = query
        .text("before")
        .map(|raw| {
            FeedKey::parse(raw).ok_or_else(|| {
                ApiError::InvalidCursor(format!(
                    "before {raw:?} is not a feed cursor: pass the next of an earlier page"
                ))
            })
        })
        .transpose()?;
    let feed_query = FeedQuery {
        app,
        user,
        before,
        limit: query.limit(state)?,
    };
    let page = crate::feed::feed(&state.store, state.cache.as_ref(), feed_query).await?;
    Ok(Json(FeedView {
        messages: page
            .items
            .into_iter()
            .map(|item| FeedItemView {
                chat: item.chat,
                message: item.message.into(),
            })
            .collect(),
        has_more: page.next.is_some(),
        next: page.next.map(|key| key.to_string()),
    }))
}
