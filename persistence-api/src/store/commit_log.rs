//! The commit log: a durable, ordered record of which messages each batch
//! commit stored, written in the same transaction as the batch itself, so
//! that a follower (the search indexer) can resume exactly where it stopped.
//!
//! Positions start at 1 and grow by one per batch commit that stored at least
//! one new message; they are never reused, so "everything up to position p" is
//! a complete, exact description of what a follower has applied. A follower
//! trims the log behind the position it made durable on its own side.
//!
//! Only the embedded store keeps one (and only when search is on, since an
//! untrimmed log would grow without bound); a clustered store feeds an
//! external search engine by other means.

use async_trait::async_trait;

use super::{AppId, ChatNumber, Message, StoreResult};

/// One batch commit's new messages, read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedBatch {
    pub position: u64,
    /// When the store committed the batch: the start of the index lag.
    pub committed_at_us: i64,
    pub messages: Vec<LoggedMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedMessage {
    pub app: AppId,
    pub chat: ChatNumber,
    pub message: Message,
}

/// Consecutive messages `first..=last` of one chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSpan {
    pub app: AppId,
    pub chat: ChatNumber,
    pub first: super::MessageNumber,
    pub last: super::MessageNumber,
}

#[async_trait]
pub trait CommitLog: Send + Sync + 'static {
    /// The batches logged after `position`, in position order, at most
    /// `batches_max` of them and at most `messages_max` messages in all (but
    /// always at least one batch when one exists, however large).
    async fn read_after(
        &self,
        position: u64,
        batches_max: usize,
        messages_max: usize,
    ) -> StoreResult<Vec<LoggedBatch>>;

    /// When the entry right after `position` was committed (`None`: there
    /// is none). A look, not a read: what `read_after` hands out next
    /// stays where it is.
    async fn committed_at_after(&self, position: u64) -> StoreResult<Option<i64>>;

    /// The newest position written (0 before the first).
    fn head(&self) -> u64;

    /// Forgets the entries up to `position`, which the follower has made
    /// durable. Needs no fsync: an entry that survives a crash is read again
    /// and skipped, since the follower resumes after its own position.
    async fn trim_through(&self, position: u64) -> StoreResult<()>;

    /// Entries read so far, by where they came from.
    fn entries_read(&self) -> EntriesRead;
}

/// Commit log entries handed to the follower since the store opened: from
/// the store's memory of its newest commits, or read back from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntriesRead {
    pub from_memory: u64,
    pub from_store: u64,
}
