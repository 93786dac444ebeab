//! Read positions (`crate::unread` counts what is left):
//! - `PUT /v1/chats/{n}/read` `{"number": k}` with a member's user token
//!   moves the member's position forward to `k` (a lower `k` changes
//!   nothing) and answers the position in force with the unread count;
//! - `GET /v1/chats/{n}/read` with a member's user token: the same answer
//!   without a change;
//! - `GET /v1/chats/{n}/reads?after=&limit=` with the app token or a
//!   member's user token: every member's position, in user id order, for
//!   "seen by" receipts;
//! - `PUT`/`GET /internal/v1/apps/{app}/chats/{n}/reads/{user}` with the
//!   operator key: the first two for a member the caller (the engine) has
//!   authenticated.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::AppState;
use super::extract::{
    ChatPath, InternalSubscriberPath, JsonBody, OperatorAuth, QueryParams, Reader,
};
use super::views::{ReadPositionView, ReadPositionsPage, ReadView};
use crate::error::ApiError;
use crate::store::{AppId, Chat, ChatNumber, MessageNumber};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkReadBody {
    number: u64,
}

pub async fn mark(
    State(state): State<AppState>,
    reader: Reader,
    ChatPath(chat): ChatPath,
    JsonBody(body): JsonBody<MarkReadBody>,
) -> Result<Json<ReadView>, ApiError> {
    let (app, user) = member_only(reader)?;
    mark_as(&state, app, chat, user, body.number).await
}

pub async fn show(
    State(state): State<AppState>,
    reader: Reader,
    ChatPath(chat): ChatPath,
) -> Result<Json<ReadView>, ApiError> {
    let (app, user) = member_only(reader)?;
    show_as(&state, app, chat, user).await
}

/// `PUT /internal/v1/apps/{app}/chats/{n}/reads/{user}` (operator key): the
/// engine's way in for a `read` frame, with the member it authenticated.
pub async fn mark_internal(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    InternalSubscriberPath(app, chat, user): InternalSubscriberPath,
    JsonBody(body): JsonBody<MarkReadBody>,
) -> Result<Json<ReadView>, ApiError> {
    mark_as(&state, app, chat, user, body.number).await
}

/// `GET /internal/v1/apps/{app}/chats/{n}/reads/{user}` (operator key).
pub async fn show_internal(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    InternalSubscriberPath(app, chat, user): InternalSubscriberPath,
) -> Result<Json<ReadView>, ApiError> {
    show_as(&state, app, chat, user).await
}

async fn mark_as(
    state: &AppState,
    app: AppId,
    chat: ChatNumber,
    user: String,
    number: u64,
) -> Result<Json<ReadView>, ApiError> {
    let number = chat_wire::number::check_cursor(number, "read position")
        .map_err(|error| ApiError::InvalidNumber(error.to_string()))?;
    let found = member_chat(state, app, chat, &user).await?;
    if number > found.messages_count {
        return Err(ApiError::ReadBeyondLast(format!(
            "read position {number} is beyond the chat's last message, {}",
            found.messages_count
        )));
    }
    let position = state
        .store
        .mark_read(app, chat, user.clone(), number)
        .await?;
    answer(state, app, found, user, position).await
}

async fn show_as(
    state: &AppState,
    app: AppId,
    chat: ChatNumber,
    user: String,
) -> Result<Json<ReadView>, ApiError> {
    let found = member_chat(state, app, chat, &user).await?;
    let positions = state
        .store
        .read_positions(app, chat, vec![user.clone()])
        .await?;
    answer(state, app, found, user, positions[0]).await
}

pub async fn list(
    State(state): State<AppState>,
    reader: Reader,
    ChatPath(chat): ChatPath,
    query: QueryParams,
) -> Result<Json<ReadPositionsPage>, ApiError> {
    let (after, limit) = super::subscribers::members_page_query(&query, &state)?;
    let app = match reader {
        Reader::App(app) => app.id,
        Reader::User { app, user } => {
            if !state.store.is_subscribed(app, chat, user).await? {
                return Err(ApiError::NotSubscribed);
            }
            app
        }
    };
    let members = state.store.subscribers(app, chat, after, limit).await?;
    let positions = state
        .store
        .read_positions(app, chat, members.items.clone())
        .await?;
    Ok(Json(ReadPositionsPage {
        reads: members
            .items
            .into_iter()
            .zip(positions)
            .map(|(user, number)| ReadPositionView { user, number })
            .collect(),
        has_more: members.has_more,
    }))
}

/// A member's own position is theirs to read and move: a user token only.
fn member_only(reader: Reader) -> Result<(AppId, String), ApiError> {
    match reader {
        Reader::User { app, user } => Ok((app, user)),
        Reader::App(_) => Err(ApiError::Forbidden(
            "/v1/chats/{n}/read takes a member's user token; with the app token read every \
             member's position at /v1/chats/{n}/reads",
        )),
    }
}

/// The chat, if `user` is one of its members.
async fn member_chat(
    state: &AppState,
    app: AppId,
    chat: ChatNumber,
    user: &str,
) -> Result<Chat, ApiError> {
    let found = state
        .store
        .chat(app, chat)
        .await?
        .ok_or(ApiError::ChatNotFound)?;
    if !state
        .store
        .is_subscribed(app, chat, user.to_owned())
        .await?
    {
        return Err(ApiError::NotSubscribed);
    }
    Ok(found)
}

async fn answer(
    state: &AppState,
    app: AppId,
    chat: Chat,
    user: String,
    position: MessageNumber,
) -> Result<Json<ReadView>, ApiError> {
    // A position never passes the count it was checked against, and counts
    // only grow: the chat read before the position covers it.
    let last = chat.messages_count.max(position);
    let unread = crate::unread::count(
        state.cache.as_ref(),
        &state.store,
        app,
        chat.number,
        &user,
        position,
        last,
    )
    .await?;
    Ok(Json(ReadView {
        chat: chat.number,
        user,
        number: position,
        messages_count: last,
        unread_count: unread.count,
        unread_capped: unread.capped,
    }))
}
