//! One chat as its owner shard holds it: subscribers, numbering, the ring of
//! recent durable messages, the idempotency window, and the messages waiting
//! for a batch.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_wire::{NewChat, NewMessage};

use crate::error::EngineError;
use crate::router::{Delivery, PresenceRequest, Reply, SendRequest, SyncRequest, TypingRequest};

/// A request that waits until its chat is loaded or refreshed.
pub enum Waiting {
    Send {
        request: SendRequest,
        refreshed: bool,
    },
    Sync {
        request: SyncRequest,
        refreshed: bool,
    },
    Typing {
        request: TypingRequest,
        refreshed: bool,
    },
    Presence {
        request: PresenceRequest,
        refreshed: bool,
    },
}

pub struct ChatState {
    /// The chat's state is being read from the persistence API; requests wait.
    pub loading: bool,
    pub waiting: VecDeque<Waiting>,
    /// Whether numbering, ring and window were read from the store; false at
    /// first and after a refused batch, when the store is the truth again.
    pub numbering_known: bool,
    /// Whether the chat exists (in the store, or created by a pending batch).
    pub exists: bool,
    /// An implicit creation to commit with the next batch of this chat.
    pub create: Option<NewChat>,
    pub subscribers: Arc<HashSet<String>>,
    pub version: u64,
    /// Highest number handed out; numbers above `last_durable` are in flight.
    pub last_assigned: u64,
    pub last_durable: u64,
    /// The time stamped on the last number handed out: the next is never
    /// earlier, so a chat's times rise with its numbers even when the wall
    /// clock steps back while this owner holds the chat (the member feed's
    /// bisection relies on it; across a reload only the clock keeps it).
    pub last_sent_at_us: i64,
    pub ring: Ring,
    pub ids: IdempotencyWindow,
    /// Numbered messages not yet in a batch.
    pub pending: Vec<NewMessage>,
    /// Batches with this chat's messages in flight (up to the owner's
    /// limit). The API applies them in the order they left (`batcher`).
    pub batches_in_flight: usize,
    /// Set when a batch in flight was refused for this chat while later
    /// ones still are: nothing more of it is batched until they are all
    /// back, then the refusal is settled at once for all of them.
    pub refusing: Option<Refusing>,
    /// In the owner's queue of chats ready to flush.
    pub queued: bool,
    /// Who waits for each number's ack.
    pub waiters: HashMap<u64, Vec<Reply>>,
    /// When a request last touched the chat; the idlest are evicted first.
    pub used_at: std::time::Instant,
    /// Syncs waiting for the store read that extends the ring back
    /// (`backfill`); `Some` while that read runs, one at a time per chat.
    pub backfill: Option<Vec<SyncRequest>>,
    /// Set by a refused batch: the number up to which this owner fanned
    /// messages out. The reload fans out what the store holds above it,
    /// which no engine did (the late batch of one that died), so members
    /// online see no gap.
    pub fan_out_above: Option<u64>,
    /// Read positions moved since the chat's last `reads` event, by user
    /// (`read_events`), and whether a flush of them is on its way.
    pub read_events: std::collections::BTreeMap<String, u64>,
    pub read_events_armed: bool,
}

impl ChatState {
    pub fn new(ring_messages: usize, ring_depth_max: usize, window: usize) -> Self {
        Self {
            loading: true,
            waiting: VecDeque::new(),
            numbering_known: false,
            exists: false,
            create: None,
            subscribers: Arc::new(HashSet::new()),
            version: 0,
            last_assigned: 0,
            last_durable: 0,
            last_sent_at_us: 0,
            ring: Ring::new(ring_messages, ring_depth_max),
            ids: IdempotencyWindow::new(window),
            pending: Vec::new(),
            batches_in_flight: 0,
            refusing: None,
            queued: false,
            waiters: HashMap::new(),
            used_at: std::time::Instant::now(),
            backfill: None,
            fan_out_above: None,
            read_events: std::collections::BTreeMap::new(),
            read_events_armed: false,
        }
    }

    /// Whether forgetting the chat loses nothing: it can be loaded again.
    pub fn is_idle(&self) -> bool {
        !self.loading
            && self.batches_in_flight == 0
            && !self.has_pending()
            && self.waiting.is_empty()
            && self.waiters.is_empty()
            && self.backfill.is_none()
            && self.last_assigned == self.last_durable
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.create.is_some()
    }

    /// Whether the chat's pending messages may go into a batch now.
    pub fn may_batch(&self, batches_in_flight_max: usize) -> bool {
        !self.loading
            && self.refusing.is_none()
            && self.batches_in_flight < batches_in_flight_max
            && self.has_pending()
    }
}

/// A refusal of a chat waiting for its later batches in flight.
pub struct Refusing {
    /// What the first refusal decided for the chat's messages.
    pub disposition: Disposition,
    /// Its messages from every batch back so far, not durable.
    pub messages: Vec<NewMessage>,
}

/// What happens to the not yet durable messages of a refused chat.
#[derive(Clone)]
pub enum Disposition {
    /// Every one fails with this error.
    Fail(EngineError),
    /// The messages of this sender (not published by the app) fail with
    /// `not_subscribed`; the others are sent again once the chat is read
    /// afresh from the store, renumbered: their senders had no answer yet.
    RefuseSender(String),
    /// Every one is sent again once the chat is read afresh from the
    /// store, renumbered (or answered from the idempotency window): the
    /// store holds numbers this owner did not commit, the late batch of an
    /// engine that died after sending it.
    Again,
}

/// The newest durable messages of a chat, in number order, bounded.
///
/// Normally `capacity` messages. A reconnect storm may extend it back with
/// older messages read once from the store (`backfill`), up to `depth_max`;
/// the extension then slides forward with new messages (one out for each
/// in) until `shrink_if_idle` takes it back to `capacity`.
pub struct Ring {
    messages: VecDeque<Arc<Delivery>>,
    capacity: usize,
    /// The length past which the oldest message leaves: `capacity`, or the
    /// length an extension reached.
    depth: usize,
    depth_max: usize,
    /// A read to extend it back is in flight: nothing leaves (up to
    /// `depth_max`), so the read's messages still join the oldest held.
    pinned: bool,
    /// When a sync last read from an extended ring.
    extension_used_at: Cell<Instant>,
}

impl Ring {
    pub fn new(capacity: usize, depth_max: usize) -> Self {
        assert!(capacity > 0 && depth_max >= capacity);
        Self {
            messages: VecDeque::with_capacity(capacity.min(64)),
            capacity,
            depth: capacity,
            depth_max,
            pinned: false,
            extension_used_at: Cell::new(Instant::now()),
        }
    }

    pub fn push(&mut self, delivery: Arc<Delivery>) {
        if let Some(last) = self.messages.back() {
            assert_eq!(
                delivery.number,
                last.number + 1,
                "the ring must stay gapless"
            );
        }
        let bound = if self.pinned {
            self.depth_max
        } else {
            self.depth
        };
        while self.messages.len() >= bound {
            self.messages.pop_front();
        }
        self.messages.push_back(delivery);
    }

    /// Pushes a message read back from the store. The store's answer is
    /// not trusted to be gapless: a gap restarts the ring at this message,
    /// so the ring never claims a range it does not hold.
    pub fn push_loaded(&mut self, delivery: Arc<Delivery>) {
        if self
            .messages
            .back()
            .is_some_and(|last| last.number.checked_add(1) != Some(delivery.number))
        {
            tracing::warn!(
                chat = delivery.chat,
                number = delivery.number,
                "history read back with a gap; the ring starts over"
            );
            self.messages.clear();
        }
        self.push(delivery);
    }

    pub fn clear(&mut self) {
        self.messages.clear();
        self.depth = self.capacity;
    }

    /// The oldest number held.
    pub fn first_number(&self) -> Option<u64> {
        self.messages.front().map(|d| d.number)
    }

    pub fn is_extended(&self) -> bool {
        self.depth > self.capacity
    }

    /// Keeps every message until `extend_back` or `unpin`.
    pub fn pin(&mut self) {
        self.pinned = true;
    }

    /// Ends a pin without an extension: back to the depth it had.
    pub fn unpin(&mut self) {
        self.pinned = false;
        self.shrink_to(self.depth);
    }

    /// Puts `older` (ascending, read back from the store) in front and ends
    /// the pin. It joins only if it is gapless and ends right below the
    /// oldest message held; otherwise the ring is unchanged (and unpinned).
    pub fn extend_back(&mut self, older: Vec<Arc<Delivery>>) -> bool {
        self.pinned = false;
        let joins = match (older.last(), self.messages.front()) {
            (Some(last), Some(first)) => {
                last.number.checked_add(1) == Some(first.number)
                    && older.windows(2).all(|w| w[0].number + 1 == w[1].number)
            }
            _ => false,
        };
        if !joins {
            self.shrink_to(self.depth);
            return false;
        }
        let room = self.depth_max.saturating_sub(self.messages.len());
        let skip = older.len().saturating_sub(room);
        for delivery in older.into_iter().skip(skip).rev() {
            self.messages.push_front(delivery);
        }
        self.depth = self.messages.len().max(self.capacity);
        self.extension_used_at.set(Instant::now());
        true
    }

    /// Back to `capacity` once no sync has read the extension for `idle`;
    /// true when it is not extended (any more).
    pub fn shrink_if_idle(&mut self, idle: Duration) -> bool {
        if self.pinned {
            return false;
        }
        if self.is_extended() && self.extension_used_at.get().elapsed() >= idle {
            self.shrink_to(self.capacity);
        }
        !self.is_extended()
    }

    fn shrink_to(&mut self, depth: usize) {
        self.depth = depth.clamp(self.capacity, self.depth_max);
        while self.messages.len() > self.depth {
            self.messages.pop_front();
        }
    }

    /// The messages numbered from `after + 1` to `up_to`, if the ring holds
    /// all of them; `None` when older ones have left it.
    pub fn range(&self, after: u64, up_to: u64) -> Option<impl Iterator<Item = &Arc<Delivery>>> {
        let take = up_to.saturating_sub(after) as usize;
        if take == 0 {
            return Some(self.messages.iter().skip(self.messages.len()).take(0));
        }
        let first = self.messages.front()?.number;
        if first > after + 1 {
            return None;
        }
        if self.is_extended() {
            self.extension_used_at.set(Instant::now());
        }
        let skip = (after + 1 - first) as usize;
        Some(self.messages.iter().skip(skip).take(take))
    }
}

/// Client ids of a chat's recent messages: (sender, id) → number. Bounded:
/// the oldest entry leaves when a new one arrives at capacity.
pub struct IdempotencyWindow {
    numbers: HashMap<(String, String), u64>,
    order: VecDeque<(String, String)>,
    capacity: usize,
}

impl IdempotencyWindow {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0);
        Self {
            numbers: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub fn get(&self, sender: &str, id: &str) -> Option<u64> {
        // A borrowed lookup would need a custom key type; ids are short.
        self.numbers
            .get(&(sender.to_string(), id.to_string()))
            .copied()
    }

    pub fn insert(&mut self, sender: &str, id: &str, number: u64) {
        let key = (sender.to_string(), id.to_string());
        if self.numbers.insert(key.clone(), number).is_none() {
            if self.order.len() == self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.numbers.remove(&oldest);
            }
            self.order.push_back(key);
        }
        assert!(self.numbers.len() <= self.capacity);
    }

    /// Forgets ids whose messages were refused (numbers above `last_durable`).
    pub fn forget_above(&mut self, last_durable: u64) {
        self.numbers.retain(|_, number| *number <= last_durable);
        let numbers = &self.numbers;
        self.order.retain(|key| numbers.contains_key(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Targets;
    use bytes::Bytes;

    fn delivery(number: u64) -> Arc<Delivery> {
        Arc::new(Delivery {
            app: 1,
            chat: 1,
            number,
            sender: "a".into(),
            recipients: None,
            frame: Bytes::from_static(b"{}"),
            targets: Targets::Users(vec![]),
        })
    }

    #[test]
    fn the_ring_serves_only_ranges_it_holds() {
        let mut ring = Ring::new(3, 3);
        for number in 1..=5 {
            ring.push(delivery(number));
        }
        let numbers = |after, up_to| {
            ring.range(after, up_to)
                .map(|r| r.map(|d| d.number).collect::<Vec<_>>())
        };
        assert_eq!(numbers(2, 5), Some(vec![3, 4, 5]));
        assert_eq!(numbers(3, 5), Some(vec![4, 5]));
        assert_eq!(numbers(5, 5), Some(vec![]));
        assert_eq!(numbers(1, 5), None, "message 2 has left the ring");
    }

    #[test]
    fn an_extension_joins_only_right_below_and_slides_until_it_shrinks() {
        let mut ring = Ring::new(3, 10);
        for number in 10..=12 {
            ring.push(delivery(number));
        }
        ring.pin();
        // Messages committed while the read runs stay: the read joins them.
        ring.push(delivery(13));
        assert_eq!(ring.first_number(), Some(10));
        assert!(ring.extend_back((5..=9).map(delivery).collect()));
        assert_eq!(ring.first_number(), Some(5));
        assert!(ring.range(4, 13).is_some());
        // Extended, it slides: one out for each in.
        ring.push(delivery(14));
        assert_eq!(ring.first_number(), Some(6));
        assert!(!ring.shrink_if_idle(Duration::from_secs(60)));
        assert!(ring.shrink_if_idle(Duration::ZERO));
        assert_eq!(ring.first_number(), Some(12));

        // A read that does not end right below the oldest held is dropped.
        ring.pin();
        assert!(!ring.extend_back((1..=5).map(delivery).collect()));
        assert_eq!(ring.first_number(), Some(12));
        // So is one with a gap, and the depth is bounded.
        ring.pin();
        assert!(!ring.extend_back(vec![delivery(9), delivery(11)]));
        ring.pin();
        assert!(ring.extend_back((1..=11).map(delivery).collect()));
        assert_eq!(ring.first_number(), Some(5), "10 at most");
    }

    #[test]
    fn the_window_forgets_the_oldest_id() {
        let mut window = IdempotencyWindow::new(2);
        window.insert("a", "1", 1);
        window.insert("a", "2", 2);
        window.insert("a", "3", 3);
        assert_eq!(window.get("a", "1"), None);
        assert_eq!(window.get("a", "3"), Some(3));
        window.forget_above(2);
        assert_eq!(window.get("a", "3"), None);
        assert_eq!(window.get("a", "2"), Some(2));
    }
}
