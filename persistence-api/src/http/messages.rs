//! `GET /v1/chats/{n}/messages?after=&before=&limit=`: history in number
//! order. `after` pages forward from a number; otherwise the page holds the
//! newest messages before `before` (or the newest of all).

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{ChatPath, QueryParams, Reader};
use super::views::MessagesPage;
use crate::error::ApiError;
use crate::store::HistoryQuery;

/// With the app token: every message. With a member's user token: what that
/// member may see (sent by them, addressed to them, or to everyone).
pub async fn history(
    State(state): State<AppState>,
    reader: Reader,
    ChatPath(chat): ChatPath,
    query: QueryParams,
) -> Result<Json<MessagesPage>, ApiError> {
    query.allow(&["after", "before", "limit"])?;
    let (app, viewer) = match reader {
        Reader::App(app) => (app.id, None),
        Reader::User { app, user } => {
            if !state.store.is_subscribed(app, chat, user.clone()).await? {
                return Err(ApiError::NotSubscribed);
            }
            (app, Some(user))
        }
    };
    let history = history_query(&query, &state, viewer)?;
    let page =
        crate::cache::messages(state.cache.as_ref(), &state.store, app, chat, history).await?;
    Ok(Json(MessagesPage {
        messages: page.items.into_iter().map(Into::into).collect(),
        has_more: page.has_more,
    }))
}

/// Reads `after`, `before` and `limit`. `after` may be 0 (from the start);
/// `before` must be at least 1 and above `after`.
pub fn history_query(
    query: &QueryParams,
    state: &AppState,
    viewer: Option<String>,
) -> Result<HistoryQuery, ApiError> {
    let after = query.cursor("after")?;
    let before = query.number("before")?;
    if let (Some(after), Some(before)) = (after, before)
        && before <= after
    {
        return Err(ApiError::InvalidQuery(format!(
            "before ({before}) must be greater than after ({after})"
        )));
    }
    Ok(HistoryQuery {
        after,
        before,
        limit: query.limit(state)?,
        viewer,
    })
}
