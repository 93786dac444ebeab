//! One connection's typing indicators: at most one per chat per interval
//! (`--typing-interval-ms`) goes on to the chat's owner; the rest are dropped
//! here, before they cost a hop (a client sends one per keystroke).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::limits::TYPING_CHATS_PER_CONNECTION_MAX;
use crate::router::ChatNumber;

#[derive(Default)]
pub struct TypingThrottle {
    /// When each chat's last indicator went on.
    last: HashMap<ChatNumber, Instant>,
}

impl TypingThrottle {
    /// Whether an indicator for `chat` at `now` goes on.
    pub fn admit(&mut self, chat: ChatNumber, now: Instant, interval: Duration) -> bool {
        if let Some(last) = self.last.get(&chat)
            && now.saturating_duration_since(*last) < interval
        {
            return false;
        }
        if self.last.len() >= TYPING_CHATS_PER_CONNECTION_MAX && !self.last.contains_key(&chat) {
            self.last
                .retain(|_, last| now.saturating_duration_since(*last) < interval);
            if self.last.len() >= TYPING_CHATS_PER_CONNECTION_MAX {
                self.last.clear();
            }
        }
        self.last.insert(chat, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_chat_per_interval_and_bounded_memory() {
        let mut throttle = TypingThrottle::default();
        let start = Instant::now();
        let interval = Duration::from_millis(crate::limits::TYPING_INTERVAL_MS);
        assert!(throttle.admit(1, start, interval));
        assert!(!throttle.admit(1, start + Duration::from_millis(999), interval));
        assert!(throttle.admit(2, start + Duration::from_millis(10), interval));
        assert!(throttle.admit(1, start + Duration::from_millis(1_000), interval));
        for chat in 10..10 + 10 * TYPING_CHATS_PER_CONNECTION_MAX as u64 {
            assert!(throttle.admit(chat, start + Duration::from_millis(1_500), interval));
            assert!(throttle.last.len() <= TYPING_CHATS_PER_CONNECTION_MAX);
        }
    }
}
