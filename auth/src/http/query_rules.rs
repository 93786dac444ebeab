//! The auth service's table of query parameters per route, checked by
//! `chat_http_conn::query_rules` before any handler runs: every route but
//! the revocation log reads none (docs/ERRORS.md `invalid_query`).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chat_http_conn::query_rules::{QueryTable, request_refusal};

use crate::error::AuthError;

const QUERY_PARAMETERS: QueryTable = &[("GET", "/internal/v1/revocations", &["after"])];

pub async fn check(request: Request, next: Next) -> Response {
    match request_refusal(QUERY_PARAMETERS, &request) {
        Some(refused) => AuthError::InvalidQuery(refused).into_response(),
        None => next.run(request).await,
    }
}
