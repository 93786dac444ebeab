//! Checks of client-chosen values against the configured limits.

use crate::error::ApiError;
use crate::limits::Limits;

/// Titles: 1 to `title_chars_max` characters, not only white space, no control characters.
pub fn title(title: &str, limits: &Limits) -> Result<(), ApiError> {
    if title.trim().is_empty() {
        return Err(ApiError::InvalidTitle("title must not be empty".into()));
    }
    let chars = title.chars().count();
    if chars > limits.title_chars_max {
        return Err(ApiError::InvalidTitle(format!(
            "title is {chars} characters, more than {}",
            limits.title_chars_max
        )));
    }
    if title.chars().any(char::is_control) {
        return Err(ApiError::InvalidTitle(
            "title must not contain control characters".into(),
        ));
    }
    Ok(())
}

pub fn user_id(user: &str, limits: &Limits) -> Result<(), ApiError> {
    chat_wire::validate_user_id(user)
        .map_err(|error| ApiError::InvalidUserId(error.to_string()))?;
    if user.len() > limits.user_id_bytes_max {
        return Err(ApiError::InvalidUserId(format!(
            "user id is longer than {} bytes",
            limits.user_id_bytes_max
        )));
    }
    Ok(())
}
