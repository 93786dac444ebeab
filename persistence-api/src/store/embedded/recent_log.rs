//! The newest commit log entries with their messages, kept in memory as
//! their batch commits wrote them, so the follower (the search indexer)
//! takes what was just committed without reading it back: a read of the
//! log from the store costs a range scan of the messages keyspace per chat
//! of each batch, about as much CPU as writing them did.
//!
//! Only a cache: every entry here is also in the store, byte for byte the
//! same messages (built from the very records the commit encoded), so a
//! read served from here equals one served from the store. An entry is
//! inserted after its transaction committed and before the head that
//! announces it is published; a reader takes entries in position order
//! while they are here and reads the rest from the store. Entries are
//! taken, not copied: the follower reads each once, and after a failure it
//! resumes from its own durable position, which the store serves. Memory
//! is bounded by `messages_max`: the oldest entries go first, and the store
//! serves them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::{EntriesRead, LoggedBatch};

/// Messages kept when the flag names no other bound (about 350 bytes each
/// for 200-byte bodies: ~35 MB, two seconds of ingest at 50,000/s).
pub const RECENT_LOG_MESSAGES_MAX_DEFAULT: usize = 100_000;

pub struct RecentLog {
    messages_max: usize,
    inner: Mutex<Entries>,
    taken: AtomicU64,
    read_from_store: AtomicU64,
}

#[derive(Default)]
struct Entries {
    by_position: BTreeMap<u64, LoggedBatch>,
    messages: usize,
}

impl RecentLog {
    pub fn new(messages_max: usize) -> Self {
        Self {
            messages_max,
            inner: Mutex::new(Entries::default()),
            taken: AtomicU64::new(0),
            read_from_store: AtomicU64::new(0),
        }
    }

    /// Whether entries are kept at all.
    pub fn is_on(&self) -> bool {
        self.messages_max > 0
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves at worst a missing entry,
        // which the store serves: the contents stay usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A committed batch's entry; the oldest entries go past the bound.
    pub fn insert(&self, batch: LoggedBatch) {
        if !self.is_on() {
            return;
        }
        let mut entries = self.entries();
        entries.messages += batch.messages.len();
        entries.by_position.insert(batch.position, batch);
        while entries.messages > self.messages_max {
            let Some((_, oldest)) = entries.by_position.pop_first() else {
                break;
            };
            entries.messages -= oldest.messages.len();
        }
    }

    /// Takes the entries right after `position`, consecutive, while they
    /// are here and within the bounds of `CommitLog::read_after` (at least
    /// one entry when one is here).
    pub fn take_after(
        &self,
        position: u64,
        batches_max: usize,
        messages_max: usize,
    ) -> Vec<LoggedBatch> {
        let mut entries = self.entries();
        let mut taken: Vec<LoggedBatch> = Vec::new();
        let mut messages = 0usize;
        let mut next = position.saturating_add(1);
        while taken.len() < batches_max && (taken.is_empty() || messages < messages_max) {
            let Some(batch) = entries.by_position.remove(&next) else {
                break;
            };
            entries.messages -= batch.messages.len();
            messages += batch.messages.len();
            taken.push(batch);
            next = next.saturating_add(1);
        }
        self.taken.fetch_add(taken.len() as u64, Ordering::Relaxed);
        taken
    }

    /// When the entry at `position` was committed, if it is here.
    pub fn committed_at(&self, position: u64) -> Option<i64> {
        self.entries()
            .by_position
            .get(&position)
            .map(|batch| batch.committed_at_us)
    }

    /// Counts entries the store served instead.
    pub fn count_read_from_store(&self, entries: usize) {
        self.read_from_store
            .fetch_add(entries as u64, Ordering::Relaxed);
    }

    pub fn entries_read(&self) -> EntriesRead {
        EntriesRead {
            from_memory: self.taken.load(Ordering::Relaxed),
            from_store: self.read_from_store.load(Ordering::Relaxed),
        }
    }

    #[cfg(test)]
    pub fn positions(&self) -> Vec<u64> {
        self.entries().by_position.keys().copied().collect()
    }

    /// Forgets the entries up to `position` (the follower has them).
    pub fn trim_through(&self, position: u64) {
        let mut entries = self.entries();
        let kept = entries.by_position.split_off(&position.saturating_add(1));
        let dropped = std::mem::replace(&mut entries.by_position, kept);
        entries.messages -= dropped.values().map(|b| b.messages.len()).sum::<usize>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(position: u64, messages: usize) -> LoggedBatch {
        LoggedBatch {
            position,
            committed_at_us: 0,
            messages: (0..messages)
                .map(|i| crate::store::LoggedMessage {
                    app: 1,
                    chat: 1,
                    message: crate::store::Message {
                        number: i as u64 + 1,
                        sender: "ann".into(),
                        recipients: None,
                        body: "hi".into(),
                        client_id: None,
                        sent_at_us: 0,
                    },
                })
                .collect(),
        }
    }

    fn positions(batches: &[LoggedBatch]) -> Vec<u64> {
        batches.iter().map(|b| b.position).collect()
    }

    #[test]
    fn takes_consecutive_entries_within_the_bounds() {
        let log = RecentLog::new(100);
        for position in [1, 2, 3, 5] {
            log.insert(batch(position, 10));
        }
        // A look takes nothing.
        assert_eq!(log.committed_at(2), Some(0));
        assert_eq!(log.committed_at(4), None);
        // Stops at the gap (4 is not here: not yet inserted, or evicted).
        assert_eq!(positions(&log.take_after(0, 10, 1_000)), [1, 2, 3]);
        assert!(log.take_after(3, 10, 1_000).is_empty());
        log.insert(batch(4, 10));
        log.insert(batch(6, 10));
        // Bounds: batches, then messages (at least one entry).
        assert_eq!(positions(&log.take_after(3, 1, 1_000)), [4]);
        assert_eq!(positions(&log.take_after(4, 10, 5)), [5]);
        assert_eq!(positions(&log.take_after(5, 10, 1_000)), [6]);
        assert_eq!(log.entries().messages, 0);
    }

    #[test]
    fn the_oldest_go_past_the_bound_and_behind_a_trim() {
        let log = RecentLog::new(25);
        for position in 1..=4 {
            log.insert(batch(position, 10));
        }
        // 40 messages over a bound of 25: 1 and 2 are gone.
        assert_eq!(log.entries().messages, 20);
        assert!(log.take_after(0, 10, 1_000).is_empty());
        log.trim_through(3);
        assert_eq!(log.entries().messages, 10);
        assert_eq!(positions(&log.take_after(3, 10, 1_000)), [4]);
        let off = RecentLog::new(0);
        off.insert(batch(1, 1));
        assert!(off.take_after(0, 10, 1_000).is_empty());
    }
}
