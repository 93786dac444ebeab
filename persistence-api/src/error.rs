//! The errors the API answers with. Each variant has a stable `code` (the
//! contract: clients match on it; docs/ERRORS.md lists them all) and an HTTP
//! status; the body is `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
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
    #[error("{0}")]
    InvalidBatch(String),
    #[error("missing credentials: send Authorization: Bearer <key>")]
    MissingCredentials,
    #[error("the credentials are not valid")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such route")]
    RouteNotFound,
    #[error("app not found")]
    AppNotFound,
    #[error("chat not found")]
    ChatNotFound,
    #[error("the user is not subscribed to the chat")]
    SubscriptionNotFound,
    #[error("only members of the chat may read it")]
    NotSubscribed,
    #[error("{message}")]
    InvalidToken { code: &'static str, message: String },
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("{0}")]
    BatchConflict(String),
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("{0}")]
    InvalidTitle(String),
    #[error("{0}")]
    InvalidUserId(String),
    #[error("{0}")]
    InvalidLimit(String),
    #[error(
        "the app has used every chat number up to {}",
        chat_wire::limits::NUMBER_MAX
    )]
    ChatNumbersExhausted,
    #[error("a chat may have at most {0} subscribers")]
    TooManySubscribers(usize),
    #[error("{0}")]
    HistoryDamaged(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    RevocationsStale(String),
    #[error("{0}")]
    QueryEmpty(String),
    #[error("{0}")]
    QueryTooLong(String),
    #[error("{0}")]
    QueryTooManyTerms(String),
    #[error("{0}")]
    QueryUnbalancedQuote(String),
    #[error("{0}")]
    InvalidSort(String),
    #[error("{0}")]
    InvalidCursor(String),
    #[error("{0}")]
    InvalidChats(String),
    #[error("search is unavailable: {0}")]
    SearchUnavailable(String),
    #[error("{0}")]
    ReadBeyondLast(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::UnknownField(_) => "unknown_field",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidNumber(_) => "invalid_number",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidBatch(_) => "invalid_batch",
            ApiError::MissingCredentials => "missing_credentials",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::AppNotFound => "app_not_found",
            ApiError::ChatNotFound => "chat_not_found",
            ApiError::SubscriptionNotFound => "subscription_not_found",
            ApiError::NotSubscribed => "not_subscribed",
            ApiError::InvalidToken { code, .. } => code,
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::BatchConflict(_) => "batch_conflict",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::InvalidTitle(_) => "invalid_title",
            ApiError::InvalidUserId(_) => "invalid_user_id",
            ApiError::InvalidLimit(_) => "invalid_limit",
            ApiError::TooManySubscribers(_) => "too_many_subscribers",
            ApiError::ChatNumbersExhausted => "chat_numbers_exhausted",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::HistoryDamaged(_) => "history_damaged",
            ApiError::RevocationsStale(_) => "revocations_stale",
            ApiError::QueryEmpty(_) => "query_empty",
            ApiError::QueryTooLong(_) => "query_too_long",
            ApiError::QueryTooManyTerms(_) => "query_too_many_terms",
            ApiError::QueryUnbalancedQuote(_) => "query_unbalanced_quote",
            ApiError::InvalidSort(_) => "invalid_sort",
            ApiError::InvalidCursor(_) => "invalid_cursor",
            ApiError::InvalidChats(_) => "invalid_chats",
            ApiError::SearchUnavailable(_) => "search_unavailable",
            ApiError::ReadBeyondLast(_) => "read_beyond_last",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_)
            | ApiError::UnknownField(_)
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidNumber(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidBatch(_)
            | ApiError::QueryUnbalancedQuote(_)
            | ApiError::InvalidSort(_)
            | ApiError::InvalidCursor(_)
            | ApiError::InvalidChats(_) => StatusCode::BAD_REQUEST,
            ApiError::MissingCredentials
            | ApiError::InvalidCredentials
            | ApiError::InvalidToken { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RouteNotFound
            | ApiError::AppNotFound
            | ApiError::ChatNotFound
            | ApiError::SubscriptionNotFound => StatusCode::NOT_FOUND,
            ApiError::NotSubscribed => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BatchConflict(_) | ApiError::ChatNumbersExhausted => StatusCode::CONFLICT,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InvalidTitle(_)
            | ApiError::InvalidUserId(_)
            | ApiError::InvalidLimit(_)
            | ApiError::TooManySubscribers(_)
            | ApiError::QueryEmpty(_)
            | ApiError::QueryTooLong(_)
            | ApiError::QueryTooManyTerms(_)
            | ApiError::ReadBeyondLast(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_)
            | ApiError::RevocationsStale(_)
            | ApiError::SearchUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::HistoryDamaged(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AppNotFound => ApiError::AppNotFound,
            StoreError::ChatNotFound => ApiError::ChatNotFound,
            StoreError::Conflict(message) => ApiError::BatchConflict(message),
            StoreError::TooManySubscribers(max) => ApiError::TooManySubscribers(max),
            StoreError::NumbersExhausted => ApiError::ChatNumbersExhausted,
            StoreError::Engine(message) => ApiError::Unavailable(message),
            StoreError::MessagesLost { .. } => ApiError::HistoryDamaged(error.to_string()),
            StoreError::Corrupt(_) | StoreError::SchemaTooNew { .. } => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Internal details go to the log, not to the client.
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                self.to_string()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                "the store is unavailable, retry later".to_string()
            }
            ApiError::SearchUnavailable(detail) => {
                tracing::warn!(%detail, "search unavailable");
                "search is unavailable, retry later".to_string()
            }
            _ => self.to_string(),
        };
        let body = serde_json::json!({ "error": { "code": self.code(), "message": message } });
        (status, Json(body)).into_response()
    }
}

impl From<crate::user_tokens::UserTokenError> for ApiError {
    fn from(error: crate::user_tokens::UserTokenError) -> Self {
        use crate::user_tokens::UserTokenError;
        match error {
            UserTokenError::NotConfigured => ApiError::InvalidCredentials,
            UserTokenError::KeysNotLoaded => ApiError::Unavailable(error.to_string()),
            UserTokenError::RevocationsStale(_) => ApiError::RevocationsStale(error.to_string()),
            UserTokenError::Token(token) => ApiError::InvalidToken {
                code: token.code(),
                message: token.to_string(),
            },
            UserTokenError::Revoked => ApiError::InvalidToken {
                code: "token_revoked",
                message: "the token was revoked".into(),
            },
        }
    }
}

impl From<chat_wire::json::JsonBodyError> for ApiError {
    fn from(error: chat_wire::json::JsonBodyError) -> Self {
        use chat_wire::json::JsonBodyError;
        match error {
            JsonBodyError::Malformed(detail) => ApiError::MalformedJson(detail),
            JsonBodyError::NotAnObject => ApiError::InvalidRequest(error.to_string()),
            JsonBodyError::DuplicateKey(detail) => ApiError::InvalidRequest(detail),
            JsonBodyError::UnknownField(detail) => ApiError::UnknownField(detail),
            JsonBodyError::Invalid(detail) => ApiError::InvalidRequest(detail),
        }
    }
}

impl From<crate::search::query::QueryError> for ApiError {
    fn from(error: crate::search::query::QueryError) -> Self {
        use crate::search::query::QueryError;
        let message = error.to_string();
        match error {
            QueryError::Empty => ApiError::QueryEmpty(message),
            QueryError::TooLong { .. } => ApiError::QueryTooLong(message),
            QueryError::TooManyTerms(_) => ApiError::QueryTooManyTerms(message),
            QueryError::UnbalancedQuote => ApiError::QueryUnbalancedQuote(message),
        }
    }
}

impl From<crate::search::SearchError> for ApiError {
    fn from(error: crate::search::SearchError) -> Self {
        use crate::search::SearchError;
        match error {
            SearchError::Unavailable(detail) => ApiError::SearchUnavailable(detail),
            SearchError::Corrupt(_) | SearchError::Refused(_) | SearchError::Malformed(_) => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}
