//! User ids: the one identifier that clients choose, so its alphabet is
//! narrow enough to sit in URLs, keys and logs without escaping.

use crate::limits::USER_ID_BYTES_MAX;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    #[error("user id is empty")]
    Empty,
    #[error("user id is longer than {USER_ID_BYTES_MAX} bytes")]
    TooLong,
    #[error("user id may contain only ASCII letters, digits and . _ - @ :")]
    InvalidCharacter,
}

/// Checks a user id: 1 to [`USER_ID_BYTES_MAX`] bytes of `[A-Za-z0-9._\-@:]`.
pub fn validate_user_id(user: &str) -> Result<(), UserIdError> {
    if user.is_empty() {
        return Err(UserIdError::Empty);
    }
    if user.len() > USER_ID_BYTES_MAX {
        return Err(UserIdError::TooLong);
    }
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b':');
    if !user.bytes().all(allowed) {
        return Err(UserIdError::InvalidCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert_eq!(validate_user_id("alice.b_c-d@example.com:1"), Ok(()));
        assert_eq!(validate_user_id(&"a".repeat(USER_ID_BYTES_MAX)), Ok(()));
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(validate_user_id(""), Err(UserIdError::Empty));
        assert_eq!(
            validate_user_id(&"a".repeat(USER_ID_BYTES_MAX + 1)),
            Err(UserIdError::TooLong)
        );
        for bad in ["a b", "a/b", "ä", "a\n", "a%20", "a?b"] {
            assert_eq!(
                validate_user_id(bad),
                Err(UserIdError::InvalidCharacter),
                "{bad:?}"
            );
        }
    }
}
