//! The persistence API's table of query parameters per route, checked by
//! `chat_http_conn::query_rules` before any handler runs (docs/ERRORS.md
//! `invalid_query`).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chat_http_conn::query_rules::{QueryTable, request_refusal};

use crate::error::ApiError;

/// (method, route template) → the parameters it reads; every other route
/// reads none.
const QUERY_PARAMETERS: QueryTable = &[
    ("GET", "/v1/chats", &["after", "limit"]),
    ("GET", "/v1/chats/{n}/subscribers", &["after", "limit"]),
    ("GET", "/v1/chats/{n}/reads", &["after", "limit"]),
    (
        "GET",
        "/v1/chats/{n}/messages",
        &["after", "before", "limit"],
    ),
    ("GET", "/v1/users/{user}/messages", &["before", "limit"]),
    ("GET", "/v1/me/messages", &["before", "limit"]),
    (
        "GET",
        "/v1/chats/{n}/messages/search",
        &["q", "limit", "before", "sort", "cursor"],
    ),
    (
        "GET",
        "/v1/messages/search",
        &["q", "chats", "from", "limit", "sort", "cursor"],
    ),
    (
        "GET",
        "/internal/v1/apps/{app}/chats/{n}/messages",
        &["after", "before", "limit", "user"],
    ),
];

pub async fn check(request: Request, next: Next) -> Response {
    match request_refusal(QUERY_PARAMETERS, &request) {
        Some(refused) => ApiError::InvalidQuery(refused).into_response(),
        None => next.run(request).await,
    }
}
