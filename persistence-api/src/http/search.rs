//! The search routes (docs/API.md "Search"):
//! - `GET /v1/chats/{n}/messages/search?q=&limit=&before=&sort=&cursor=`:
//!   one chat, with the app token or a member's user token;
//! - `GET /v1/messages/search?q=&chats=&from=&limit=&sort=&cursor=`: with
//!   the app token every chat of the app (or those of `chats=`), with a
//!   user token the chats the user is a member of now.
//!
//! Membership is read from the store on every request, so a member who
//! leaves stops finding the chat's messages at once; the backend query
//! carries the app and the history visibility rule for the viewer.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::extract::{ChatPath, QueryParams, Reader, positive_number};
use super::validate;
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::search::cursor::fingerprint;
use crate::search::index::{ChatScope, Hit, SearchPage, SearchRequest, SortOrder};
use crate::search::{Search, query};
use crate::store::ChatNumber;

#[derive(Serialize)]
pub struct HighlightView {
    pub start: u32,
    pub end: u32,
}

#[derive(Serialize)]
pub struct HitView {
    pub chat: u64,
    pub number: u64,
    pub from: String,
    pub sent_at: String,
    pub body: String,
    /// `word`, `prefix` or `infix`: the weakest way a term matched.
    #[serde(rename = "match")]
    pub class: &'static str,
    pub highlights: Vec<HighlightView>,
}

impl From<Hit> for HitView {
    fn from(hit: Hit) -> Self {
        Self {
            chat: hit.chat,
            number: hit.number,
            from: hit.from,
            sent_at: rfc3339(hit.sent_at_us),
            body: hit.body,
            class: hit.class.name(),
            highlights: hit
                .highlights
                .into_iter()
                .map(|(start, end)| HighlightView { start, end })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct SearchPageView {
    pub hits: Vec<HitView>,
    /// Pass as `cursor=` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

fn search_of(state: &AppState) -> Result<&Search, ApiError> {
    state
        .search
        .as_deref()
        .ok_or_else(|| ApiError::SearchUnavailable("search is off on this server".into()))
}

/// The parameters both routes share, parsed and bounded.
struct Common {
    q: String,
    parsed: query::ParsedQuery,
    sort: SortOrder,
    limit: usize,
    cursor: Option<String>,
}

fn common(query: &QueryParams, search: &Search) -> Result<Common, ApiError> {
    let q = query.text("q").unwrap_or_default().to_owned();
    let parsed = query::parse(&q, &search.limits)?;
    let sort = match query.text("sort") {
        None => SortOrder::Relevance,
        Some(raw) => SortOrder::parse(raw).ok_or_else(|| {
            ApiError::InvalidSort(format!("sort must be relevance or recent, got {raw:?}"))
        })?,
    };
    let max = search.limits.page_size_max;
    let limit = match query.text("limit") {
        None => search.limits.page_size_default,
        Some(raw) => match positive_number(raw, "limit") {
            Ok(limit) if limit <= max as u64 => limit as usize,
            _ => {
                return Err(ApiError::InvalidLimit(format!(
                    "limit must be from 1 to {max}, got {raw:?}"
                )));
            }
        },
    };
    Ok(Common {
        q,
        parsed,
        sort,
        limit,
        cursor: query.text("cursor").map(str::to_owned),
    })
}

/// Runs one search, signs its next cursor, counts its outcome.
async fn run(
    search: &Search,
    common: Common,
    mut request: SearchRequest,
    print: [u8; 32],
) -> Result<Json<SearchPageView>, ApiError> {
    if let Some(cursor) = &common.cursor {
        let position = search
            .cursors
            .decode(cursor, common.sort, &print)
            .map_err(|error| ApiError::InvalidCursor(error.to_string()));
        let position = counted(search, position)?;
        request.after = Some(position);
    }
    let started = Instant::now();
    let page = match request.chats {
        ChatScope::Some(ref chats) if chats.is_empty() => Ok(SearchPage {
            hits: Vec::new(),
            next: None,
        }),
        _ => search.index.search(request).await,
    };
    let outcome = if page.is_ok() { "ok" } else { "unavailable" };
    search.metrics.observe_query(started.elapsed(), outcome);
    let page = page?;
    let next_cursor = page
        .next
        .map(|position| search.cursors.encode(common.sort, position, &print));
    Ok(Json(SearchPageView {
        has_more: next_cursor.is_some(),
        next_cursor,
        hits: page.hits.into_iter().map(Into::into).collect(),
    }))
}

fn counted<T>(search: &Search, result: Result<T, ApiError>) -> Result<T, ApiError> {
    if result.is_err() {
        search.metrics.count_outcome("refused");
    }
    result
}

pub async fn in_chat(
    State(state): State<AppState>,
    reader: Reader,
    ChatPath(chat): ChatPath,
    query: QueryParams,
) -> Result<Json<SearchPageView>, ApiError> {
    query.allow(&["q", "limit", "before", "sort", "cursor"])?;
    let search = search_of(&state)?;
    let common = counted(search, common(&query, search))?;
    let before = counted(search, query.number("before"))?;
    let (app, viewer) = match reader {
        Reader::App(app) => {
            state
                .store
                .chat(app.id, chat)
                .await?
                .ok_or(ApiError::ChatNotFound)?;
            (app.id, None)
        }
        Reader::User { app, user } => {
            if !state.store.is_subscribed(app, chat, user.clone()).await? {
                return Err(ApiError::NotSubscribed);
            }
            (app, Some(user))
        }
    };
    let print = fingerprint(&[
        b"chat",
        &app.to_be_bytes(),
        viewer.as_deref().unwrap_or("").as_bytes(),
        &chat.to_be_bytes(),
        &before.unwrap_or(0).to_be_bytes(),
        common.q.as_bytes(),
    ]);
    let request = SearchRequest {
        app,
        chats: ChatScope::Some(vec![chat]),
        viewer,
        from: None,
        before,
        query: common.parsed.clone(),
        sort: common.sort,
        after: None,
        limit: common.limit,
    };
    run(search, common, request, print).await
}

/// `chats=1,2,3`: distinct positive chat numbers, at most the limit.
fn chats_filter(raw: &str, max: usize) -> Result<Vec<ChatNumber>, ApiError> {
    let mut chats = Vec::new();
    for piece in raw.split(',') {
        let chat = positive_number(piece.trim(), "chat number").map_err(|_| {
            ApiError::InvalidChats(format!(
                "chats must be chat numbers separated by commas, got {piece:?}"
            ))
        })?;
        chats.push(chat);
        if chats.len() > max {
            return Err(ApiError::InvalidChats(format!(
                "chats names more than {max} chats"
            )));
        }
    }
    chats.sort_unstable();
    chats.dedup();
    Ok(chats)
}

pub async fn across_chats(
    State(state): State<AppState>,
    reader: Reader,
    query: QueryParams,
) -> Result<Json<SearchPageView>, ApiError> {
    query.allow(&["q", "chats", "from", "limit", "sort", "cursor"])?;
    let search = search_of(&state)?;
    let common = counted(search, common(&query, search))?;
    let requested = query
        .text("chats")
        .map(|raw| chats_filter(raw, search.limits.chats_filter_max))
        .transpose();
    let requested = counted(search, requested)?;
    let from = query.text("from").map(str::to_owned);
    if let Some(from) = &from {
        counted(search, validate::user_id(from, &state.limits))?;
    }
    let (app, viewer, chats) = match reader {
        Reader::App(app) => {
            let chats = requested.clone().map_or(ChatScope::All, ChatScope::Some);
            (app.id, None, chats)
        }
        Reader::User { app, user } => {
            let member = member_chats(&state, search, app, &user).await?;
            let chats = match &requested {
                Some(requested) => requested
                    .iter()
                    .copied()
                    .filter(|chat| member.binary_search(chat).is_ok())
                    .collect(),
                None => member,
            };
            (app, Some(user), ChatScope::Some(chats))
        }
    };
    let requested_bytes: Vec<u8> = requested
        .iter()
        .flatten()
        .flat_map(|chat| chat.to_be_bytes())
        .collect();
    let print = fingerprint(&[
        b"app",
        &app.to_be_bytes(),
        viewer.as_deref().unwrap_or("").as_bytes(),
        &requested_bytes,
        from.as_deref().unwrap_or("").as_bytes(),
        common.q.as_bytes(),
    ]);
    let request = SearchRequest {
        app,
        chats,
        viewer,
        from,
        before: None,
        query: common.parsed.clone(),
        sort: common.sort,
        after: None,
        limit: common.limit,
    };
    run(search, common, request, print).await
}

/// The chats `user` is a member of now, ascending, at most
/// `user_chats_max` (the lowest numbered).
async fn member_chats(
    state: &AppState,
    search: &Search,
    app: u64,
    user: &str,
) -> Result<Vec<ChatNumber>, ApiError> {
    let max = search.limits.user_chats_max;
    let mut chats = Vec::new();
    let mut after = 0;
    while chats.len() < max {
        let page_size = (max - chats.len()).min(crate::limits::PAGE_SIZE_MAX);
        let page = state
            .store
            .user_chats(app, user.to_owned(), after, page_size)
            .await?;
        chats.extend_from_slice(&page.items);
        match page.items.last() {
            Some(&last) if page.has_more => after = last,
            _ => break,
        }
    }
    Ok(chats)
}
