//! The auth service's table of query parameters per route, checked by
//! `chat_http_conn::query_rules` before any handler runs: every route but
//! the revocation log reads none (docs/ERRORS.md `invalid_query`).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chat_http_conn::query_rules::{QueryTable, refusal};

use crate::error::AuthError;

const QUERY_PARAMETERS: QueryTable = &[("GET", "/internal/v1/revocations", &["after"])];

pub async fn check(request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        if let Some(refused) = refusal(QUERY_PARAMETERS, request.method().as_str(), route, query) {
            return AuthError::InvalidQuery(refused).into_response();
        }
    }
    next.run(request).await
}
