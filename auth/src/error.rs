//! The errors the auth service answers with. Each variant has a stable
//! `code` (clients match on it) and an HTTP status; the body is
//! `{"error":{"code","message"}}`, as everywhere in the system. The codes
//! and their meaning are those of the persistence API where they overlap.
//!
//! | code | status | when |
//! |---|---|---|
//! | `malformed_json` | 400 | the body is not JSON (syntax, truncated, not UTF-8, empty) |
//! | `unknown_field` | 400 | the JSON has a field the route does not know |
//! | `invalid_request` | 400 | JSON but not an object, a field of the wrong type or repeated, a required field missing |
//! | `invalid_number` | 400 | `after` is not a whole number from 0 to 2^64-1 |
//! | `invalid_query` | 400 | an unknown or repeated query parameter |
//! | `missing_credentials` | 401 | no `Authorization: Bearer ...` header |
//! | `invalid_credentials` | 401 | the token or key is not one the system knows |
//! | `forbidden` | 403 | valid credentials of the wrong kind: the operator key on a token route, an app token on an internal route |
//! | `route_not_found` | 404 | no such route |
//! | `method_not_allowed` | 405 | the route exists, the method does not |
//! | `body_too_large` | 413 | the body is larger than the configured limit |
//! | `invalid_user_id` | 422 | a user id is empty, longer than 128 bytes, or has a character outside `A-Z a-z 0-9 . _ - @ :` |
//! | `invalid_ttl` | 422 | `ttl_s` is not a whole number from 1 to the configured maximum |
//! | `too_many_revocations` | 429 | the app has recorded its quota of revocations this minute (`CHAT_REVOCATIONS_PER_MINUTE_MAX`) |
//! | `unavailable` | 503 | the persistence API (app token checks) or the disk failed; retry |
//! | `internal` | 500 | a bug; the log has the detail |

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    UnknownField(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidNumber(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("missing credentials: send Authorization: Bearer <key>")]
    MissingCredentials,
    #[error("the credentials are not valid")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("{0}")]
    InvalidUserId(String),
    #[error("{0}")]
    InvalidTtl(String),
    #[error("this app may record at most {0} revocations a minute; retry in a minute")]
    TooManyRevocations(u32),
    #[error("a dependency is unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MalformedJson(_) => "malformed_json",
            AuthError::UnknownField(_) => "unknown_field",
            AuthError::InvalidRequest(_) => "invalid_request",
            AuthError::InvalidNumber(_) => "invalid_number",
            AuthError::InvalidQuery(_) => "invalid_query",
            AuthError::MissingCredentials => "missing_credentials",
            AuthError::InvalidCredentials => "invalid_credentials",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::RouteNotFound => "route_not_found",
            AuthError::MethodNotAllowed => "method_not_allowed",
            AuthError::BodyTooLarge(_) => "body_too_large",
            AuthError::InvalidUserId(_) => "invalid_user_id",
            AuthError::InvalidTtl(_) => "invalid_ttl",
            AuthError::TooManyRevocations(_) => "too_many_revocations",
            AuthError::Unavailable(_) => "unavailable",
            AuthError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MalformedJson(_)
            | AuthError::UnknownField(_)
            | AuthError::InvalidRequest(_)
            | AuthError::InvalidNumber(_)
            | AuthError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            AuthError::MissingCredentials | AuthError::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::RouteNotFound => StatusCode::NOT_FOUND,
            AuthError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AuthError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AuthError::InvalidUserId(_) | AuthError::InvalidTtl(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AuthError::TooManyRevocations(_) => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Internal details go to the log, not to the client.
        let message = match &self {
            AuthError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                self.to_string()
            }
            AuthError::Unavailable(detail) => {
                tracing::warn!(%detail, "unavailable");
                "a dependency of the auth service is unavailable, retry later".to_string()
            }
            _ => self.to_string(),
        };
        let body = serde_json::json!({ "error": { "code": self.code(), "message": message } });
        (status, Json(body)).into_response()
    }
}

impl From<chat_wire::json::JsonBodyError> for AuthError {
    fn from(error: chat_wire::json::JsonBodyError) -> Self {
        use chat_wire::json::JsonBodyError;
        match error {
            JsonBodyError::Malformed(detail) => AuthError::MalformedJson(detail),
            JsonBodyError::NotAnObject => AuthError::InvalidRequest(error.to_string()),
            JsonBodyError::DuplicateKey(detail) => AuthError::InvalidRequest(detail),
            JsonBodyError::UnknownField(detail) => AuthError::UnknownField(detail),
            JsonBodyError::Invalid(detail) => AuthError::InvalidRequest(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_statuses_fit() {
        let all = [
            AuthError::MalformedJson(String::new()),
            AuthError::UnknownField(String::new()),
            AuthError::InvalidRequest(String::new()),
            AuthError::InvalidNumber(String::new()),
            AuthError::InvalidQuery(String::new()),
            AuthError::MissingCredentials,
            AuthError::InvalidCredentials,
            AuthError::Forbidden(""),
            AuthError::RouteNotFound,
            AuthError::MethodNotAllowed,
            AuthError::BodyTooLarge(1),
            AuthError::InvalidUserId(String::new()),
            AuthError::InvalidTtl(String::new()),
            AuthError::Unavailable(String::new()),
            AuthError::Internal(String::new()),
        ];
        let mut seen = std::collections::HashSet::new();
        for error in &all {
            assert!(seen.insert(error.code()), "duplicate {}", error.code());
            assert!(error.status().is_client_error() || error.status().is_server_error());
        }
        assert_eq!(
            AuthError::InvalidTtl(String::new()).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
