//! Subscriptions: `PUT`/`DELETE /v1/chats/{n}/subscribers/{user}` and the
//! paged member list (app token).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::extract::{AppAuth, ChatPath, QueryParams, SubscriberPath};
use super::validate;
use super::views::{SubscribersPage, SubscriptionView};
use crate::cache::MembershipChange;
use crate::error::ApiError;

/// 201 when the subscription is new, 200 when it already existed.
pub async fn subscribe(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    SubscriberPath(chat, user): SubscriberPath,
) -> Result<(StatusCode, Json<SubscriptionView>), ApiError> {
    let added = state.store.subscribe(app.id, chat, user.clone()).await;
    forget_membership(&state, app.id, chat, &user);
    let added = added?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(SubscriptionView {
            chat,
            user,
            subscribed: true,
        }),
    ))
}

/// 204 when the subscription was removed; 404 `subscription_not_found` when there was none.
pub async fn unsubscribe(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    SubscriberPath(chat, user): SubscriberPath,
) -> Result<StatusCode, ApiError> {
    let removed = state.store.unsubscribe(app.id, chat, user.clone()).await;
    forget_membership(&state, app.id, chat, &user);
    if removed? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::SubscriptionNotFound)
    }
}

pub async fn list(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    ChatPath(chat): ChatPath,
    query: QueryParams,
) -> Result<Json<SubscribersPage>, ApiError> {
    let (after, limit) = members_page_query(&query, &state)?;
    let page = state.store.subscribers(app.id, chat, after, limit).await?;
    Ok(Json(SubscribersPage {
        subscribers: page.items,
        has_more: page.has_more,
    }))
}

/// `after` (a user id) and `limit` of a page of a chat's members: the
/// subscriber listing's, and the read positions' that follow it.
pub fn members_page_query(
    query: &QueryParams,
    state: &AppState,
) -> Result<(Option<String>, usize), ApiError> {
    query.allow(&["after", "limit"])?;
    let after = query.text("after").map(str::to_owned);
    if let Some(after) = &after {
        validate::user_id(after, &state.limits)?;
    }
    Ok((after, query.limit(state)?))
}

/// After every change of a membership, whatever the store answered (an
/// error may still have changed it): the member's cached chats are stale.
pub fn forget_membership(state: &AppState, app: u64, chat: u64, user: &str) {
    if let Some(cache) = &state.cache {
        cache.forget_memberships(vec![MembershipChange {
            app,
            chat,
            user: user.to_owned(),
        }]);
    }
}
