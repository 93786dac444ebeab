//! Numbers in text (path segments, query parameters, JSON keys), against an
//! independent statement of the rule: accepted exactly when the text is a
//! canonical decimal (ASCII digits, no sign, no leading zero but "0" itself)
//! whose value is in range (1 or 0 to 2^53-1); then the value is the one
//! written. And every number in range, written with `to_string`, reads back
//! as itself; every one out of range is refused.

#![no_main]

use chat_wire::limits::NUMBER_MAX;
use chat_wire::number::{check_cursor, check_positive, parse_cursor, parse_positive};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        check_text(text);
    }
    check_text(&String::from_utf8_lossy(bytes));
    let mut word = [0u8; 8];
    let used = bytes.len().min(8);
    word[..used].copy_from_slice(&bytes[..used]);
    let number = u64::from_le_bytes(word);
    check_number(number);
    // The interesting values sit at the edges of the range.
    check_number(number % 4);
    check_number(NUMBER_MAX.wrapping_add(number % 4).wrapping_sub(2));
});

fn check_text(text: &str) {
    for (min, parsed) in [(1, parse_positive(text, "n")), (0, parse_cursor(text, "n"))] {
        assert_eq!(parsed.ok(), expected(text, min), "{text:?}, min {min}");
    }
}

/// The rule, stated without the code under test's shortcuts (its length cap
/// is an optimisation the range implies).
fn expected(text: &str, min: u64) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = digits && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return None;
    }
    // Any run of digits longer than 2^53-1's 16 is out of range.
    let value: u128 = if text.len() > 20 {
        u128::MAX
    } else {
        text.parse().ok()?
    };
    (u128::from(min)..=u128::from(NUMBER_MAX))
        .contains(&value)
        .then_some(value as u64)
}

fn check_number(number: u64) {
    let text = number.to_string();
    let positive = (1..=NUMBER_MAX).contains(&number).then_some(number);
    let cursor = (number <= NUMBER_MAX).then_some(number);
    assert_eq!(parse_positive(&text, "n").ok(), positive, "{text}");
    assert_eq!(parse_cursor(&text, "n").ok(), cursor, "{text}");
    assert_eq!(check_positive(number, "n").ok(), positive, "{number}");
    assert_eq!(check_cursor(number, "n").ok(), cursor, "{number}");
}
