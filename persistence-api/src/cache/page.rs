//! A history page computed from a cached range, with exactly the answer the
//! store gives (`Store::messages`): the same messages, the same `has_more`,
//! the same scan bound. `None` when the range does not hold every message
//! the store would look at, so the read goes to the store.
//!
//! What makes it possible: message numbers are gapless, so a chat whose
//! newest number is `hi` holds every number from 1 to `hi`, and the store's
//! `has_more` ("another stored message lies past the page") is a question of
//! numbers alone. Only the messages themselves must come from the range.

use crate::store::{HISTORY_SCAN_MAX, HistoryQuery, Message, MessageNumber, Page};

/// Consecutive messages from `first` on (ascending) of a chat whose newest
/// message is `hi`.
pub struct CachedRange<'a> {
    pub first: MessageNumber,
    pub hi: MessageNumber,
    pub messages: &'a [Message],
}

impl CachedRange<'_> {
    fn get(&self, number: MessageNumber) -> Option<&Message> {
        let index = number.checked_sub(self.first)?;
        let message = self.messages.get(usize::try_from(index).ok()?)?;
        debug_assert_eq!(message.number, number);
        Some(message)
    }
}

/// The page the store would answer `query` with, if `range` holds it.
pub fn page(range: &CachedRange<'_>, query: &HistoryQuery) -> Option<Page<Message>> {
    debug_assert!(
        range.messages.len() as u64 <= range.hi + 1 - range.first,
        "a cached range ends at the chat's newest message at most"
    );
    // The numbers the store's scan walks, in its direction: (after, before)
    // within 1..=hi.
    let first = query.after.unwrap_or(0).saturating_add(1);
    let last = query
        .before
        .map_or(range.hi, |before| before.saturating_sub(1).min(range.hi));
    let mut items = Vec::with_capacity(query.limit.min(range.messages.len()));
    let mut has_more = false;
    if first <= last {
        let numbers: Box<dyn Iterator<Item = MessageNumber>> = if query.is_forward() {
            Box::new(first..=last)
        } else {
            Box::new((first..=last).rev())
        };
        for (scanned, number) in numbers.enumerate() {
            if scanned >= HISTORY_SCAN_MAX || items.len() == query.limit {
                has_more = true;
                break;
            }
            let message = range.get(number)?;
            if query
                .viewer
                .as_deref()
                .is_none_or(|viewer| message.is_visible_to(viewer))
            {
                items.push(message.clone());
            }
        }
    }
    if !query.is_forward() {
        items.reverse();
    }
    Some(Page { items, has_more })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(number: u64) -> Message {
        let recipients = number.is_multiple_of(3).then(|| vec!["bob".to_string()]);
        Message {
            number,
            sender: if number.is_multiple_of(2) {
                "alice"
            } else {
                "carol"
            }
            .into(),
            recipients,
            body: format!("m{number}"),
            client_id: None,
            sent_at_us: number as i64,
        }
    }

    /// The store's own algorithm over a full chat of `count` messages.
    fn store_page(count: u64, query: &HistoryQuery) -> Page<Message> {
        let all: Vec<Message> = (1..=count).map(message).collect();
        let range = CachedRange {
            first: 1,
            hi: count,
            messages: &all,
        };
        page(&range, query).expect("the whole chat is cached")
    }

    fn query(
        after: Option<u64>,
        before: Option<u64>,
        limit: usize,
        viewer: Option<&str>,
    ) -> HistoryQuery {
        HistoryQuery {
            after,
            before,
            limit,
            viewer: viewer.map(str::to_owned),
        }
    }

    #[test]
    fn a_range_that_holds_the_page_answers_like_the_whole_chat() {
        let count = 40;
        let cached: Vec<Message> = (21..=count).map(message).collect();
        let range = CachedRange {
            first: 21,
            hi: count,
            messages: &cached,
        };
        for viewer in [None, Some("bob"), Some("alice")] {
            for limit in [1, 5, 19, 20] {
                for before in [None, Some(41), Some(35), Some(30)] {
                    let q = query(None, before, limit, viewer);
                    if let Some(page) = page(&range, &q) {
                        assert_eq!(page, store_page(count, &q), "{q:?}");
                    }
                }
                for after in [20, 25, 39, 40, 45] {
                    let q = query(Some(after), None, limit, viewer);
                    let answered = page(&range, &q).expect("inside the range");
                    assert_eq!(answered, store_page(count, &q), "{q:?}");
                }
            }
        }
    }

    #[test]
    fn a_page_that_reaches_below_the_range_is_not_answered() {
        let cached: Vec<Message> = (21..=40).map(message).collect();
        let range = CachedRange {
            first: 21,
            hi: 40,
            messages: &cached,
        };
        assert!(page(&range, &query(None, None, 21, None)).is_none());
        assert!(page(&range, &query(Some(10), None, 5, None)).is_none());
        // A viewer who sees few messages makes the scan go further down.
        assert!(page(&range, &query(None, None, 15, Some("dave"))).is_none());
        assert!(page(&range, &query(None, None, 13, Some("dave"))).is_some());
        // Exactly the range: answered, and the store would say there is more.
        let newest = page(&range, &query(None, None, 20, None)).expect("the whole range");
        assert!(newest.has_more);
        assert_eq!(newest.items.first().map(|m| m.number), Some(21));
    }

    #[test]
    fn a_range_from_the_first_message_answers_every_page() {
        let count = 12;
        let cached: Vec<Message> = (1..=count).map(message).collect();
        let range = CachedRange {
            first: 1,
            hi: count,
            messages: &cached,
        };
        let q = query(None, None, 100, Some("bob"));
        let answered = page(&range, &q).expect("from the first message");
        assert!(!answered.has_more);
        assert!(answered.items.iter().all(|m| m.is_visible_to("bob")));
    }
}
