//! The engine's internal interface, authenticated with the operator key:
//! - `POST /internal/v1/batches`: an rkyv [`chat_wire::Batch`]; answers only
//!   after the commit is durable; replays are no-ops with the same answer;
//!   with `chat-batch-stream`, `chat-batch-seq` and
//!   `chat-batch-unsettled-from`, applied after the earlier batches of its
//!   stream (`batch_order`);
//! - `GET /internal/v1/apps/{app}/chats/{n}`: the chat's last number, version
//!   and whole subscriber set, which an owner shard loads on first use;
//! - `GET /internal/v1/apps/{app}/chats/{n}/messages?after=&limit=&user=`:
//!   what `user` may see after a number, for reconnect sync past the ring;
//! - `POST /internal/v1/apps/{app}/users/{user}/memberships` `{"chats":[…]}`:
//!   which of those chats the user is a member of now, which the engine asks
//!   one user's membership check;
//! - `POST /internal/v1/apps/{app}/memberships` `{"checks":[{"user":…,
//!   "chats":[…]},…]}`: the same for many users at once, which the engine
//!   asks before it serves WebSocket syncs (the syncs of a shard that
//!   arrive while one check is on its way go in the next);
//! - `DELETE /internal/v1/apps/{app}/chats/{n}/subscribers/{user}`: a user
//!   leaves a chat (the engine's `leave` frame).

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use chat_wire::{BATCH_SEQ_HEADER, BATCH_STREAM_HEADER, BATCH_UNSETTLED_FROM_HEADER};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::extract::{
    InternalAppPath, InternalChatPath, InternalSubscriberPath, InternalUserPath, JsonBody,
    OperatorAuth, QueryParams, read_body,
};
use super::messages::history_query;
use super::validate;
use super::views::MessagesPage;
use crate::batch_order::{BATCH_ORDER_WAIT_MS, Place, Turn};
use crate::error::ApiError;
use crate::store::BatchReceipt;

pub async fn commit_batch(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    request: Request,
) -> Result<Json<BatchReceipt>, ApiError> {
    let received = Instant::now();
    let place = batch_place(request.headers())?;
    let outcome = decode_and_commit(&state, request, place).await;
    // Settled: committed, or refused for good (a retry would be refused
    // alike). A store that could not commit leaves the later batches of
    // the stream waiting for the retry.
    if let Some(place) = place
        && outcome
            .as_ref()
            .map_or_else(|error| error.status().is_client_error(), |_| true)
    {
        state.batch_order.settle(place);
    }
    let mut receipt = outcome?;
    receipt.api_us = u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX);
    if !receipt.refused.is_empty() {
        tracing::info!(
            batch_id = receipt.batch_id,
            refused = ?receipt.refused,
            "batch committed with refused chats"
        );
    }
    Ok(Json(receipt))
}

async fn decode_and_commit(
    state: &AppState,
    request: Request,
    place: Option<Place>,
) -> Result<BatchReceipt, ApiError> {
    let bytes = read_body(request, state, state.limits.batch_body_bytes_max).await?;
    let batch = chat_wire::decode_batch(&bytes, state.limits.message_body_bytes_max)
        .map_err(|error| ApiError::InvalidBatch(error.to_string()))?;
    if let Some(place) = place {
        let wait_max = Duration::from_millis(BATCH_ORDER_WAIT_MS);
        let turn = state.batch_order.wait_turn(place, wait_max).await;
        if turn == Turn::TimedOut {
            tracing::warn!(
                batch_id = batch.batch_id,
                stream = place.stream,
                seq = place.seq,
                "an earlier batch of this stream never came; committing as it is"
            );
        }
        state.metrics.observe_batch_turn(turn);
    }
    let messages = batch.messages.len();
    // The cache needs the messages after the store has taken the batch.
    let for_cache = state
        .cache
        .as_ref()
        .map(|_| crate::cache::BatchMessages::of(&batch));
    let started = Instant::now();
    let receipt = state.store.commit_batch(batch).await;
    state
        .metrics
        .observe_commit(started.elapsed(), messages, receipt.is_ok());
    if let (Some(cache), Some(messages)) = (&state.cache, for_cache) {
        match &receipt {
            Ok(receipt) => cache.after_commit(messages, receipt),
            Err(_) => cache.after_failed_commit(messages),
        }
    }
    let receipt = receipt?;
    // The store logged the batch in its own transaction; the indexer reads
    // it from there, so the answer never waits for indexing.
    if let Some(search) = &state.search {
        search.after_commit();
    }
    Ok(receipt)
}

/// The batch's place in its engine shard's stream: all three headers or
/// none (a batch without them is applied as it comes).
fn batch_place(headers: &HeaderMap) -> Result<Option<Place>, ApiError> {
    let header = |name: &str| -> Result<Option<u64>, ApiError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ApiError::InvalidBatch(format!("{name} appears twice")));
        }
        let text = value
            .to_str()
            .map_err(|_| ApiError::InvalidBatch(format!("{name} is not text")))?;
        chat_wire::number::parse_positive(text, "a batch stream header")
            .map(Some)
            .map_err(|error| ApiError::InvalidBatch(format!("{name}: {error}")))
    };
    let place = (
        header(BATCH_STREAM_HEADER)?,
        header(BATCH_SEQ_HEADER)?,
        header(BATCH_UNSETTLED_FROM_HEADER)?,
    );
    match place {
        (Some(stream), Some(seq), Some(unsettled_from)) if unsettled_from <= seq => {
            Ok(Some(Place {
                stream,
                seq,
                unsettled_from,
            }))
        }
        (Some(_), Some(_), Some(_)) => Err(ApiError::InvalidBatch(format!(
            "{BATCH_UNSETTLED_FROM_HEADER} may not be above {BATCH_SEQ_HEADER}"
        ))),
        (None, None, None) => Ok(None),
        _ => Err(ApiError::InvalidBatch(format!(
            "{BATCH_STREAM_HEADER}, {BATCH_SEQ_HEADER} and {BATCH_UNSETTLED_FROM_HEADER} go together"
        ))),
    }
}

#[derive(Serialize)]
pub struct ChatStateView {
    pub app: u64,
    pub number: u64,
    pub last_number: u64,
    pub version: u64,
    pub subscribers: Vec<String>,
}

pub async fn chat_state(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    InternalChatPath(app, chat): InternalChatPath,
) -> Result<Json<ChatStateView>, ApiError> {
    let ticket = state
        .cache
        .as_ref()
        .and_then(|cache| cache.members_ticket(app, chat));
    let found = state
        .store
        .chat_state(app, chat)
        .await?
        .ok_or(ApiError::ChatNotFound)?;
    if let (Some(cache), Some(ticket)) = (&state.cache, ticket) {
        cache.fill_chat_members(ticket, found.subscribers.clone());
    }
    Ok(Json(ChatStateView {
        app,
        number: chat,
        last_number: found.chat.messages_count,
        version: found.chat.version,
        subscribers: found.subscribers,
    }))
}

pub async fn visible_messages(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    InternalChatPath(app, chat): InternalChatPath,
    query: QueryParams,
) -> Result<Json<MessagesPage>, ApiError> {
    query.allow(&["after", "before", "limit", "user"])?;
    let user = query.text("user").map(str::to_owned);
    if let Some(user) = &user {
        validate::user_id(user, &state.limits)?;
    }
    let history = history_query(&query, &state, user)?;
    let page =
        crate::cache::messages(state.cache.as_ref(), &state.store, app, chat, history).await?;
    Ok(Json(MessagesPage {
        messages: page.items.into_iter().map(Into::into).collect(),
        has_more: page.has_more,
    }))
}

#[derive(Serialize)]
pub struct AppIdView {
    pub app: u64,
}

/// `GET /internal/v1/app-tokens/{sha256 hex}`: which app a token belongs to
/// (404 `app_not_found` for none, so that a 401 can only mean the caller's
/// own operator key was wrong). The engine and the auth service send the
/// token's digest, not the token, and cache the answer.
pub async fn app_by_token_hash(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    axum::extract::Path(digest): axum::extract::Path<String>,
) -> Result<Json<AppIdView>, ApiError> {
    let hash = crate::credentials::parse_digest_hex(&digest)
        .ok_or_else(|| ApiError::InvalidRequest("expected 64 hex digits of a SHA-256".into()))?;
    let app = state
        .app_tokens
        .app(state.store.as_ref(), hash)
        .await?
        .ok_or(ApiError::AppNotFound)?;
    Ok(Json(AppIdView { app: app.id }))
}

/// Which of `chats` `user` is in, ascending: from the chats' cached member
/// sets where the cache holds them whole, from the store for the rest.
async fn memberships_of(
    state: &AppState,
    app: u64,
    user: String,
    mut chats: Vec<u64>,
) -> Result<Vec<u64>, ApiError> {
    let Some(cache) = &state.cache else {
        return Ok(state.store.memberships(app, user, chats).await?);
    };
    chats.sort_unstable();
    chats.dedup();
    let cached = cache.member_of(app, &user, &chats).await;
    let mut member = Vec::with_capacity(chats.len());
    let mut ask = Vec::new();
    for (chat, answer) in chats.into_iter().zip(cached) {
        match answer {
            Some(true) => member.push(chat),
            Some(false) => {}
            None => ask.push(chat),
        }
    }
    if !ask.is_empty() {
        member.extend(state.store.memberships(app, user, ask).await?);
        member.sort_unstable();
    }
    Ok(member)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipsBody {
    chats: Vec<u64>,
}

#[derive(Serialize)]
pub struct MembershipsView {
    pub chats: Vec<u64>,
}

/// Which of the named chats the user is a member of now. At most
/// `SYNC_CHATS_MAX` chats, the most one sync frame may name.
pub async fn memberships(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    InternalUserPath(app, user): InternalUserPath,
    JsonBody(body): JsonBody<MembershipsBody>,
) -> Result<Json<MembershipsView>, ApiError> {
    if body.chats.len() > chat_wire::limits::SYNC_CHATS_MAX {
        return Err(ApiError::InvalidRequest(format!(
            "at most {} chats per request",
            chat_wire::limits::SYNC_CHATS_MAX
        )));
    }
    for &chat in &body.chats {
        chat_wire::number::check_positive(chat, "chat number")
            .map_err(|error| ApiError::InvalidNumber(error.to_string()))?;
    }
    let chats = memberships_of(&state, app, user, body.chats).await?;
    Ok(Json(MembershipsView { chats }))
}

/// Checks of one request looked up at once.
const MEMBERSHIP_CHECKS_IN_FLIGHT: usize = 64;

/// Which chats each user of the checks is a member of now, in the checks'
/// order. At most `MEMBERSHIP_CHECKS_MAX` checks, each of at most
/// `SYNC_CHATS_MAX` chats, `MEMBERSHIP_CHECK_CHATS_MAX` in all; every user
/// and number is validated before any is looked up.
pub async fn membership_checks(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    InternalAppPath(app): InternalAppPath,
    JsonBody(body): JsonBody<chat_wire::MembershipChecks>,
) -> Result<Json<chat_wire::MembershipAnswers>, ApiError> {
    use chat_wire::memberships::{MEMBERSHIP_CHECK_CHATS_MAX, MEMBERSHIP_CHECKS_MAX};
    if body.checks.len() > MEMBERSHIP_CHECKS_MAX {
        return Err(ApiError::InvalidRequest(format!(
            "at most {MEMBERSHIP_CHECKS_MAX} checks per request"
        )));
    }
    let mut chats_total = 0usize;
    for check in &body.checks {
        validate::user_id(&check.user, &state.limits)?;
        if check.chats.len() > chat_wire::limits::SYNC_CHATS_MAX {
            return Err(ApiError::InvalidRequest(format!(
                "at most {} chats per check",
                chat_wire::limits::SYNC_CHATS_MAX
            )));
        }
        for &chat in &check.chats {
            chat_wire::number::check_positive(chat, "chat number")
                .map_err(|error| ApiError::InvalidNumber(error.to_string()))?;
        }
        if !check.seen.is_empty() && check.seen.len() != check.chats.len() {
            return Err(ApiError::InvalidRequest(
                "`seen` has one number per chat, or is absent".into(),
            ));
        }
        for &seen in &check.seen {
            chat_wire::number::check_cursor(seen, "last seen number")
                .map_err(|error| ApiError::InvalidNumber(error.to_string()))?;
        }
        chats_total += check.chats.len();
    }
    if chats_total > MEMBERSHIP_CHECK_CHATS_MAX {
        return Err(ApiError::InvalidRequest(format!(
            "at most {MEMBERSHIP_CHECK_CHATS_MAX} chats per request in all"
        )));
    }
    // Several at once, answers kept in order: with the cache a check is one
    // Redis round trip, and the multiplexed connection pipelines them.
    let with_reads = body.checks.iter().any(|check| !check.seen.is_empty());
    let answers: Vec<(Vec<u64>, Vec<chat_wire::ReadState>)> =
        futures_util::stream::iter(body.checks)
            .map(|check| membership_answer(&state, app, check))
            .buffered(MEMBERSHIP_CHECKS_IN_FLIGHT)
            .try_collect()
            .await?;
    let (members, reads) = answers.into_iter().unzip();
    Ok(Json(chat_wire::MembershipAnswers {
        members,
        reads: if with_reads { reads } else { Vec::new() },
    }))
}

/// One check's member chats and, when it names what the client has seen,
/// the user's read state of each of them.
async fn membership_answer(
    state: &AppState,
    app: u64,
    check: chat_wire::MembershipCheck,
) -> Result<(Vec<u64>, Vec<chat_wire::ReadState>), ApiError> {
    let seen: std::collections::HashMap<u64, u64> =
        check.chats.iter().copied().zip(check.seen).collect();
    let members = memberships_of(state, app, check.user.clone(), check.chats).await?;
    if seen.is_empty() {
        return Ok((members, Vec::new()));
    }
    let user = check.user.as_str();
    let reads = futures_util::stream::iter(members.clone())
        .map(|chat| {
            let seen = seen.get(&chat).copied().unwrap_or(0);
            crate::unread::read_state(state.cache.as_ref(), &state.store, app, chat, user, seen)
        })
        .buffered(READ_STATES_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok((members, reads))
}

/// Read states of one check's chats looked up at once.
const READ_STATES_IN_FLIGHT: usize = 16;

/// A user leaves a chat: 204, or 404 `subscription_not_found` (also for a
/// chat that does not exist, or another app's).
pub async fn leave(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    InternalSubscriberPath(app, chat, user): InternalSubscriberPath,
) -> Result<axum::http::StatusCode, ApiError> {
    let removed = state.store.unsubscribe(app, chat, user.clone()).await;
    super::subscribers::forget_membership(&state, app, chat, &user);
    match removed {
        Ok(true) => Ok(axum::http::StatusCode::NO_CONTENT),
        Ok(false) | Err(crate::store::StoreError::ChatNotFound) => {
            Err(ApiError::SubscriptionNotFound)
        }
        Err(other) => Err(other.into()),
    }
}
