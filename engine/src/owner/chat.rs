//! One chat as its owner shard holds it: subscribers, numbering, the ring of
//! recent durable messages, the idempotency window, and the messages waiting
//! for a batch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chat_wire::{NewChat, NewMessage};

use crate::router::{Delivery, Reply, SendRequest, SyncRequest};

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
    pub ring: Ring,
    pub ids: IdempotencyWindow,
    /// Numbered messages not yet in a batch.
    pub pending: Vec<NewMessage>,
    /// A batch with this chat's messages is in flight; the next waits for it,
    /// so batches of one chat commit in number order.
    pub in_flight: bool,
    /// In the owner's queue of chats ready to flush.
    pub queued: bool,
    /// Who waits for each number's ack.
    pub waiters: HashMap<u64, Vec<Reply>>,
    /// When a request last touched the chat; the idlest are evicted first.
    pub used_at: std::time::Instant,
    /// Set by a refused batch: the number up to which this owner fanned
    /// messages out. The reload fans out what the store holds above it,
    /// which no engine did (the late batch of one that died), so members
    /// online see no gap.
    pub fan_out_above: Option<u64>,
}

impl ChatState {
    pub fn new(ring_messages: usize, window: usize) -> Self {
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
            ring: Ring::new(ring_messages),
            ids: IdempotencyWindow::new(window),
            pending: Vec::new(),
            in_flight: false,
            queued: false,
            waiters: HashMap::new(),
            used_at: std::time::Instant::now(),
            fan_out_above: None,
        }
    }

    /// Whether forgetting the chat loses nothing: it can be loaded again.
    pub fn is_idle(&self) -> bool {
        !self.loading
            && !self.in_flight
            && !self.has_pending()
            && self.waiting.is_empty()
            && self.waiters.is_empty()
            && self.last_assigned == self.last_durable
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.create.is_some()
    }
}

/// The newest durable messages of a chat, in number order, bounded.
pub struct Ring {
    messages: VecDeque<Arc<Delivery>>,
    capacity: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0);
        Self {
            messages: VecDeque::with_capacity(capacity.min(64)),
            capacity,
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
        if self.messages.len() == self.capacity {
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
        let mut ring = Ring::new(3);
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
