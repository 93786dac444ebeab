//! Checks of what clients send, shared by the WebSocket and HTTP paths.

use crate::config::EngineLimits;
use crate::error::EngineError;

pub fn message(
    chat: u64,
    body: &str,
    to: Option<&[String]>,
    id: Option<&str>,
    limits: &EngineLimits,
) -> Result<(), EngineError> {
    chat_number_value(chat)?;
    if body.is_empty() {
        return Err(EngineError::EmptyBody);
    }
    if body.len() > limits.message_body_bytes_max {
        return Err(EngineError::BodyTooLarge(limits.message_body_bytes_max));
    }
    if let Some(to) = to {
        if to.len() > limits.recipients_max {
            return Err(EngineError::TooManyRecipients(limits.recipients_max));
        }
        for user in to {
            user_id(user)?;
        }
    }
    if let Some(id) = id
        && !chat_wire::batch::is_valid_client_id(id)
    {
        return Err(EngineError::InvalidClientId);
    }
    Ok(())
}

pub fn user_id(user: &str) -> Result<(), EngineError> {
    chat_wire::validate_user_id(user)
        .map_err(|error| EngineError::InvalidUserId(format!("{user:?}: {error}")))
}

/// A chat number that arrived as a JSON number (a frame's `chat`): 1 to
/// `NUMBER_MAX`.
pub fn chat_number_value(chat: u64) -> Result<u64, EngineError> {
    chat_wire::number::check_positive(chat, "chat number")
        .map_err(|error| EngineError::InvalidNumber(error.to_string()))
}

/// A chat number from a path segment or a sync key: canonical decimal from
/// 1 to `NUMBER_MAX` (`chat_wire::number`, the reader every service shares),
/// so `1` and `01` cannot name one chat twice.
pub fn chat_number(raw: &str) -> Result<u64, EngineError> {
    chat_wire::number::parse_positive(raw, "chat number")
        .map_err(|error| EngineError::InvalidNumber(error.to_string()))
}

/// A message number the client names (the last one seen, in a sync): 0 to
/// `NUMBER_MAX`.
pub fn seen_number(number: u64) -> Result<u64, EngineError> {
    chat_wire::number::check_cursor(number, "last seen number")
        .map_err(|error| EngineError::InvalidNumber(error.to_string()))
}

/// Parses a JSON object body strictly (`chat_wire::json`).
pub fn json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EngineError> {
    chat_wire::json::parse_object(bytes).map_err(|error| {
        use chat_wire::json::JsonBodyError;
        match error {
            JsonBodyError::Malformed(detail) => EngineError::MalformedJson(detail),
            JsonBodyError::NotAnObject => EngineError::InvalidRequest(error.to_string()),
            JsonBodyError::DuplicateKey(detail) => EngineError::InvalidRequest(detail),
            JsonBodyError::UnknownField(detail) => EngineError::UnknownField(detail),
            JsonBodyError::Invalid(detail) => EngineError::InvalidRequest(detail),
        }
    })
}
