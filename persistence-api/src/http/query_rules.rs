//! The persistence API's table of query parameters per route, checked by
//! `chat_http_conn::query_rules` before any handler runs (docs/ERRORS.md
//! `invalid_query`).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chat_http_conn::query_rules::{QueryTable, refusal};

use crate::error::ApiError;

/// (method, route template) → the parameters it reads; every other route
/// reads none.
const QUERY_PARAMETERS: QueryTable = &[
    ("GET", "/v1/chats", &["after", "limit"]),
    ("GET", "/v1/chats/{n}/subscribers", &["after", "limit"]),
    (
        "GET",
        "/v1/chats/{n}/messages",
        &["after", "before", "limit"],
    ),
    (
        "GET",
        "/internal/v1/apps/{app}/chats/{n}/messages",
        &["after", "before", "limit", "user"],
    ),
];

pub async fn check(request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        if let Some(refused) = refusal(QUERY_PARAMETERS, request.method().as_str(), route, query) {
            return ApiError::InvalidQuery(refused).into_response();
        }
    }
    next.run(request).await
}
