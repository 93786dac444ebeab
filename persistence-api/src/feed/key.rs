//! The feed's order: newest first by the time the engine stamped a message,
//! then by chat and number, so every message has one place. A chat's owner
//! stamps its messages in number order, so inside one chat this order is
//! the number order (the chat scan relies on it to search by number).

use std::fmt;

use chat_wire::limits::{NUMBER_MAX, TIMESTAMP_US_MAX};

use crate::store::{ChatNumber, Message, MessageNumber};

/// A message's place in the feed; the `before` cursor is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedKey {
    pub sent_at_us: i64,
    pub chat: ChatNumber,
    pub number: MessageNumber,
}

impl FeedKey {
    pub fn of(chat: ChatNumber, message: &Message) -> Self {
        Self {
            sent_at_us: message.sent_at_us,
            chat,
            number: message.number,
        }
    }

    /// Reads the form [`fmt::Display`] writes: `<sent_at_us>.<chat>.<number>`,
    /// decimal digits only, each part in its range.
    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.split('.');
        let sent_at_us = digits(parts.next()?)?;
        let chat = digits(parts.next()?)?;
        let number = digits(parts.next()?)?;
        if parts.next().is_some()
            || sent_at_us > TIMESTAMP_US_MAX as u64
            || !(1..=NUMBER_MAX).contains(&chat)
            || !(1..=NUMBER_MAX).contains(&number)
        {
            return None;
        }
        Some(Self {
            sent_at_us: sent_at_us as i64,
            chat,
            number,
        })
    }
}

impl fmt::Display for FeedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.sent_at_us, self.chat, self.number)
    }
}

/// A decimal without sign, leading zeros or anything else `u64::from_str`
/// would also take, so that one key has one spelling.
fn digits(part: &str) -> Option<u64> {
    let canonical = !part.is_empty()
        && part.len() <= 20
        && part.bytes().all(|b| b.is_ascii_digit())
        && (part == "0" || !part.starts_with('0'));
    canonical.then(|| part.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_every_other_spelling() {
        let key = FeedKey {
            sent_at_us: 1_700_000_000_000_000,
            chat: 3,
            number: 42,
        };
        assert_eq!(FeedKey::parse(&key.to_string()), Some(key));
        let max = format!("{TIMESTAMP_US_MAX}.{NUMBER_MAX}.{NUMBER_MAX}");
        assert!(FeedKey::parse(&max).is_some());
        for bad in [
            "",
            "1.2",
            "1.2.3.4",
            "1.0.3",
            "1.2.0",
            "-1.2.3",
            "+1.2.3",
            "01.2.3",
            "1.2.3 ",
            "1..3",
            "1.2.9007199254740992",
            "253402300800000000.1.1",
            "99999999999999999999999.1.1",
            "١.2.3",
        ] {
            assert_eq!(FeedKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn orders_by_time_then_chat_then_number() {
        let key = |sent_at_us, chat, number| FeedKey {
            sent_at_us,
            chat,
            number,
        };
        let mut keys = vec![key(2, 1, 1), key(1, 9, 9), key(2, 1, 2), key(2, 2, 1)];
        keys.sort();
        assert_eq!(
            keys,
            [key(1, 9, 9), key(2, 1, 1), key(2, 1, 2), key(2, 2, 1)]
        );
    }
}
