//! Errors the engine answers with, on WebSocket (`{"type":"error",...}`) and
//! HTTP (`{"error":{...}}`). Each has a stable code (docs/ERRORS.md) and an
//! HTTP status for the publish endpoint and the upgrade.

use bytes::Bytes;
use hyper::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the frame is not valid JSON: {0}")]
    MalformedFrame(String),
    #[error("binary frames are not part of the protocol; send JSON text")]
    BinaryFrame,
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    #[error("{0}")]
    InvalidFrame(String),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    UnknownField(String),
    #[error("{0}")]
    InvalidNumber(String),
    #[error("the message body is empty")]
    EmptyBody,
    #[error("the message body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("`to` names more than {0} users")]
    TooManyRecipients(usize),
    #[error("{0}")]
    InvalidUserId(String),
    #[error("`id` must be 1 to 128 printable ASCII characters")]
    InvalidClientId,
    #[error("the sender is not subscribed to the chat")]
    NotSubscribed,
    #[error("too many sends: at most {0} per second")]
    RateLimited(u32),
    #[error("too many sends awaiting their ack")]
    TooManyInFlight,
    #[error("the engine is overloaded; retry later")]
    Overloaded,
    #[error("a sync of this chat is already running")]
    SyncInProgress,
    #[error("more than {0} messages to sync; read history over REST first")]
    SyncTooLarge(usize),
    #[error("a sync may name at most {0} chats")]
    TooManyChats(usize),
    #[error("missing credentials: send a token")]
    MissingCredentials,
    #[error("the credentials are not valid")]
    InvalidCredentials,
    #[error("credentials go in the Authorization header, never in the URL")]
    TokenInQuery,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{message}")]
    InvalidToken { code: &'static str, message: String },
    #[error("the token is for another user or app than the session's")]
    TokenMismatch,
    #[error("this user has too many connections")]
    TooManyConnections,
    #[error("the request body is larger than {0} bytes")]
    BodyTooLargeHttp(usize),
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("this route needs a WebSocket upgrade")]
    UpgradeRequired,
    #[error("the persistence API refused the write: {0}")]
    Refused(String),
    #[error("the chat was created meanwhile by someone else; the message was not stored")]
    ChatExists,
    #[error("{0}")]
    ChatNumberTooHigh(String),
    #[error("the chat has used every message number")]
    ChatFull,
    #[error("{0}")]
    ReadBeyondLast(String),
    #[error("chat not found")]
    ChatNotFound,
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(
        "user tokens cannot be checked against revocations: the auth service's log was not read for {0} s; retry"
    )]
    RevocationsStale(u64),
    #[error("internal error")]
    Internal(String),
}

impl EngineError {
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::MalformedFrame(_) => "malformed_frame",
            EngineError::BinaryFrame => "binary_frame",
            EngineError::UnknownType(_) => "unknown_type",
            EngineError::InvalidFrame(_) => "invalid_frame",
            EngineError::MalformedJson(_) => "malformed_json",
            EngineError::InvalidRequest(_) => "invalid_request",
            EngineError::UnknownField(_) => "unknown_field",
            EngineError::InvalidNumber(_) => "invalid_number",
            EngineError::EmptyBody => "empty_body",
            EngineError::BodyTooLarge(_) => "body_too_large",
            EngineError::TooManyRecipients(_) => "too_many_recipients",
            EngineError::InvalidUserId(_) => "invalid_user_id",
            EngineError::InvalidClientId => "invalid_id",
            EngineError::NotSubscribed => "not_subscribed",
            EngineError::RateLimited(_) => "rate_limited",
            EngineError::TooManyInFlight => "too_many_in_flight",
            EngineError::Overloaded => "overloaded",
            EngineError::SyncInProgress => "sync_in_progress",
            EngineError::SyncTooLarge(_) => "sync_too_large",
            EngineError::TooManyChats(_) => "too_many_chats",
            EngineError::MissingCredentials => "missing_credentials",
            EngineError::InvalidCredentials => "invalid_credentials",
            EngineError::TokenInQuery => "token_in_query",
            EngineError::InvalidQuery(_) => "invalid_query",
            EngineError::InvalidToken { code, .. } => code,
            EngineError::TooManyConnections => "too_many_connections",
            EngineError::TokenMismatch => "token_mismatch",
            EngineError::BodyTooLargeHttp(_) => "body_too_large",
            EngineError::RouteNotFound => "route_not_found",
            EngineError::MethodNotAllowed => "method_not_allowed",
            EngineError::UpgradeRequired => "upgrade_required",
            EngineError::Refused(_) => "refused",
            EngineError::ChatExists => "chat_exists",
            EngineError::ChatNumberTooHigh(_) => "chat_number_too_high",
            EngineError::ChatFull => "chat_full",
            EngineError::ReadBeyondLast(_) => "read_beyond_last",
            EngineError::ChatNotFound => "chat_not_found",
            EngineError::ShuttingDown => "going_away",
            EngineError::Unavailable(_) => "unavailable",
            EngineError::RevocationsStale(_) => "revocations_stale",
            EngineError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            EngineError::MalformedFrame(_)
            | EngineError::BinaryFrame
            | EngineError::UnknownType(_)
            | EngineError::InvalidFrame(_)
            | EngineError::MalformedJson(_)
            | EngineError::InvalidRequest(_)
            | EngineError::UnknownField(_)
            | EngineError::InvalidNumber(_)
            | EngineError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            EngineError::MissingCredentials
            | EngineError::InvalidCredentials
            | EngineError::TokenInQuery
            | EngineError::InvalidToken { .. }
            | EngineError::TokenMismatch => StatusCode::UNAUTHORIZED,
            EngineError::NotSubscribed => StatusCode::FORBIDDEN,
            EngineError::RouteNotFound | EngineError::ChatNotFound => StatusCode::NOT_FOUND,
            EngineError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            EngineError::Refused(_) | EngineError::ChatExists | EngineError::ChatFull => {
                StatusCode::CONFLICT
            }
            EngineError::BodyTooLargeHttp(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EngineError::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            EngineError::EmptyBody
            | EngineError::BodyTooLarge(_)
            | EngineError::TooManyRecipients(_)
            | EngineError::InvalidUserId(_)
            | EngineError::InvalidClientId
            | EngineError::SyncTooLarge(_)
            | EngineError::ChatNumberTooHigh(_)
            | EngineError::ReadBeyondLast(_)
            | EngineError::TooManyChats(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::RateLimited(_)
            | EngineError::TooManyInFlight
            | EngineError::TooManyConnections
            | EngineError::SyncInProgress => StatusCode::TOO_MANY_REQUESTS,
            EngineError::Overloaded
            | EngineError::ShuttingDown
            | EngineError::Unavailable(_)
            | EngineError::RevocationsStale(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `{"error":{"code","message"}}` body of an HTTP answer.
    pub fn http_body(&self) -> Bytes {
        let body =
            serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } });
        Bytes::from(body.to_string())
    }
}

impl From<chat_token::TokenError> for EngineError {
    fn from(error: chat_token::TokenError) -> Self {
        EngineError::InvalidToken {
            code: error.code(),
            message: error.to_string(),
        }
    }
}
