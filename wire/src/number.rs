//! The one reader of numbers that arrive as text (path segments, query
//! parameters, JSON object keys): canonical decimal only, so that `7`, `07`
//! and `+7` cannot name the same chat twice or slip past a check that
//! compares text, and bounded by [`NUMBER_MAX`] so that JSON clients read
//! every number back exactly.

use crate::limits::NUMBER_MAX;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("{what} must be a whole number from {min} to {NUMBER_MAX}, got {raw:?}")]
    NotCanonical {
        what: &'static str,
        min: u64,
        raw: String,
    },
}

/// Parses `raw` as a number from 1 to [`NUMBER_MAX`]: ASCII digits, no sign,
/// no leading zero, no white space.
pub fn parse_positive(raw: &str, what: &'static str) -> Result<u64, NumberError> {
    parse_in(raw, what, 1)
}

/// Like [`parse_positive`], but 0 is allowed (a cursor before the first).
pub fn parse_cursor(raw: &str, what: &'static str) -> Result<u64, NumberError> {
    parse_in(raw, what, 0)
}

fn parse_in(raw: &str, what: &'static str, min: u64) -> Result<u64, NumberError> {
    let canonical = !raw.is_empty()
        && raw.len() <= 16
        && raw.bytes().all(|b| b.is_ascii_digit())
        && (raw == "0" || !raw.starts_with('0'));
    match canonical.then(|| raw.parse::<u64>().ok()).flatten() {
        Some(number) if (min..=NUMBER_MAX).contains(&number) => Ok(number),
        _ => Err(NumberError::NotCanonical {
            what,
            min,
            raw: raw.chars().take(40).collect(),
        }),
    }
}

/// Checks a number that arrived as a JSON number (already a `u64`).
pub fn check_positive(number: u64, what: &'static str) -> Result<u64, NumberError> {
    check_in(number, what, 1)
}

/// Like [`check_positive`], but 0 is allowed.
pub fn check_cursor(number: u64, what: &'static str) -> Result<u64, NumberError> {
    check_in(number, what, 0)
}

fn check_in(number: u64, what: &'static str, min: u64) -> Result<u64, NumberError> {
    if (min..=NUMBER_MAX).contains(&number) {
        Ok(number)
    } else {
        Err(NumberError::NotCanonical {
            what,
            min,
            raw: number.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_decimals_in_range_parse() {
        let ok = |raw: &str| parse_positive(raw, "n").ok();
        assert_eq!(ok("1"), Some(1));
        assert_eq!(ok("9007199254740991"), Some(NUMBER_MAX));
        for bad in [
            "",
            "0",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "0x10",
            "9007199254740992",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "١",
        ] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
        assert_eq!(parse_cursor("0", "n"), Ok(0));
        assert!(parse_cursor("00", "n").is_err());
        assert_eq!(check_positive(NUMBER_MAX, "n"), Ok(NUMBER_MAX));
        assert!(check_positive(NUMBER_MAX + 1, "n").is_err());
        assert!(check_positive(0, "n").is_err());
        assert_eq!(check_cursor(0, "n"), Ok(0));
    }
}
