//! The embedded store's commit log (see `store::commit_log`): keyspace
//! `commit_log`, key = position (big-endian u64, so key order is position
//! order), value = a [`CommitLogRecord`] naming the message ranges the batch
//! stored. The entry is inserted by the batch's own transaction, so it is
//! durable exactly when the batch is: an acknowledged batch always has its
//! entry, and an entry always names messages that exist.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use fjall::{Readable, SingleWriterTxDatabase, SingleWriterWriteTx};

use super::records::{CommitLogRecord, MessageRange, MessageRecord, decode, encode};
use super::{EmbeddedStore, Inner, Keyspaces, keys};
use crate::store::{CommitLog, LoggedBatch, LoggedMessage, MessageSpan, StoreError, StoreResult};

/// The head at open: the meta key, or the last entry if it is somehow ahead.
pub(super) fn stored_head(db: &SingleWriterTxDatabase, keyspaces: &Keyspaces) -> StoreResult<u64> {
    let snapshot = db.read_tx();
    let meta = snapshot
        .get(&keyspaces.meta, keys::COMMIT_LOG_HEAD)?
        .map(|bytes| {
            keys::decode_u64(&bytes).ok_or_else(|| StoreError::Corrupt("commit log head".into()))
        })
        .transpose()?
        .unwrap_or(0);
    let last = match snapshot.last_key_value(&keyspaces.commit_log) {
        Some(guard) => keys::decode_u64(&guard.key()?)
            .ok_or_else(|| StoreError::Corrupt("commit log key".into()))?,
        None => 0,
    };
    Ok(meta.max(last))
}

/// Adds the next entry inside the batch's transaction; returns its position.
/// The position is read from the transaction itself (the meta key), under
/// fjall's single-writer lock: two commits can never take the same one, and
/// a commit that fails leaves no trace. (An in-memory counter would not do:
/// the lock is released when `commit` returns, before the counter could be
/// raised, and the next batch would take the same position.)
pub(super) fn append(
    inner: &Inner,
    tx: &mut SingleWriterWriteTx<'_>,
    ranges: Vec<MessageRange>,
) -> StoreResult<u64> {
    let ks = &inner.keyspaces;
    let head = tx
        .get(&ks.meta, keys::COMMIT_LOG_HEAD)?
        .map(|bytes| {
            keys::decode_u64(&bytes).ok_or_else(|| StoreError::Corrupt("commit log head".into()))
        })
        .transpose()?
        .unwrap_or(0);
    let position = head
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt("commit log position overflows".into()))?;
    let record = CommitLogRecord {
        committed_at_us: crate::clock::now_us(),
        ranges,
    };
    tx.insert(&ks.commit_log, position.to_be_bytes(), encode(&record));
    tx.insert(&ks.meta, keys::COMMIT_LOG_HEAD, position.to_be_bytes());
    Ok(position)
}

fn read_after(
    inner: &Inner,
    position: u64,
    batches_max: usize,
    messages_max: usize,
) -> StoreResult<Vec<LoggedBatch>> {
    let ks = &inner.keyspaces;
    let snapshot = inner.db.read_tx();
    let range = (
        Bound::Excluded(position.to_be_bytes()),
        Bound::Unbounded::<[u8; 8]>,
    );
    let mut batches = Vec::new();
    let mut messages_total = 0usize;
    for guard in snapshot.range(&ks.commit_log, range) {
        if batches.len() >= batches_max || (messages_total >= messages_max && !batches.is_empty()) {
            break;
        }
        let (key, value) = guard.into_inner()?;
        let position =
            keys::decode_u64(&key).ok_or_else(|| StoreError::Corrupt("commit log key".into()))?;
        let record = decode::<CommitLogRecord>(&value)?;
        let mut messages = Vec::new();
        for range in &record.ranges {
            let low = keys::message(range.app, range.chat, range.first);
            let high = keys::message(range.app, range.chat, range.last);
            for guard in snapshot.range(&ks.messages, low..=high) {
                let (key, value) = guard.into_inner()?;
                let number = keys::message_number_of(&key)
                    .ok_or_else(|| StoreError::Corrupt("message key".into()))?;
                messages.push(LoggedMessage {
                    app: range.app,
                    chat: range.chat,
                    message: decode::<MessageRecord>(&value)?.into_message(number),
                });
            }
        }
        messages_total += messages.len();
        batches.push(LoggedBatch {
            position,
            committed_at_us: record.committed_at_us,
            messages,
        });
    }
    Ok(batches)
}

fn trim_through(inner: &Inner, position: u64) -> StoreResult<()> {
    let ks = &inner.keyspaces;
    // Found before the writer lock is taken, so batch commits wait only for
    // the removals. Nothing appends at or below `position` any more.
    let stale: Vec<_> = inner
        .db
        .read_tx()
        .range(&ks.commit_log, ..=position.to_be_bytes())
        .map(|guard| guard.key().map(|key| key.to_vec()))
        .collect::<Result<_, _>>()?;
    if stale.is_empty() {
        return Ok(());
    }
    // Not synced: a trim lost in a crash leaves entries the follower skips.
    let mut tx = inner.db.write_tx().durability(None);
    for key in stale {
        tx.remove(&ks.commit_log, key);
    }
    tx.commit()?;
    Ok(())
}

impl EmbeddedStore {
    /// Logs messages already stored, as one entry (for rebuilding a search
    /// index from the store: `search::reindex`); returns its position.
    pub async fn log_stored(&self, spans: Vec<MessageSpan>) -> StoreResult<u64> {
        self.run(move |inner| {
            let ranges = spans
                .into_iter()
                .map(|span| MessageRange {
                    app: span.app,
                    chat: span.chat,
                    first: span.first,
                    last: span.last,
                })
                .collect();
            let mut tx = inner.db.write_tx().durability(super::migrations::DURABLE);
            let position = append(inner, &mut tx, ranges)?;
            tx.commit()?;
            inner.commit_log_head.fetch_max(position, Ordering::AcqRel);
            Ok(position)
        })
        .await
    }
}

#[async_trait]
impl CommitLog for EmbeddedStore {
    async fn read_after(
        &self,
        position: u64,
        batches_max: usize,
        messages_max: usize,
    ) -> StoreResult<Vec<LoggedBatch>> {
        self.run(move |inner| read_after(inner, position, batches_max, messages_max))
            .await
    }

    fn head(&self) -> u64 {
        self.inner.commit_log_head.load(Ordering::Acquire)
    }

    async fn trim_through(&self, position: u64) -> StoreResult<()> {
        self.run(move |inner| trim_through(inner, position)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EmbeddedOptions, Store};

    fn batch(app: u64, chat: u64, numbers: std::ops::RangeInclusive<u64>) -> chat_wire::Batch {
        chat_wire::Batch {
            batch_id: *numbers.start(),
            chats: vec![],
            messages: numbers
                .map(|number| chat_wire::NewMessage {
                    app,
                    chat,
                    number,
                    sender: "ann".into(),
                    recipients: None,
                    body: format!("m{number}"),
                    client_id: None,
                    sent_at_us: 1,
                    as_app: true,
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn each_commit_logs_its_new_messages_once_and_trims() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions { commit_log: true };
        let store = EmbeddedStore::open_with(dir.path(), options).unwrap();
        store.migrate().await.unwrap();
        let app = store.create_app("a".into(), [1; 32], 1).await.unwrap().id;
        let chat = store.create_chat(app, None, 1).await.unwrap().number;
        store.commit_batch(batch(app, chat, 1..=3)).await.unwrap();
        // A replay stores nothing new, so it logs nothing.
        store.commit_batch(batch(app, chat, 1..=3)).await.unwrap();
        store.commit_batch(batch(app, chat, 4..=4)).await.unwrap();
        assert_eq!(store.head(), 2);
        let read = store.read_after(0, 10, 1_000).await.unwrap();
        let numbers: Vec<Vec<u64>> = read
            .iter()
            .map(|b| b.messages.iter().map(|m| m.message.number).collect())
            .collect();
        assert_eq!(numbers, [vec![1, 2, 3], vec![4]]);
        assert_eq!(read[1].position, 2);
        store.trim_through(1).await.unwrap();
        let read = store.read_after(0, 10, 1_000).await.unwrap();
        assert_eq!(read.len(), 1);
        store.trim_through(2).await.unwrap();
        drop(store);
        // The head survives a reopen with the log trimmed empty.
        let store = EmbeddedStore::open_with(dir.path(), options).unwrap();
        assert_eq!(store.head(), 2);
        store.commit_batch(batch(app, chat, 5..=5)).await.unwrap();
        assert_eq!(store.head(), 3);
    }

    #[tokio::test]
    async fn without_the_option_nothing_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.migrate().await.unwrap();
        let app = store.create_app("a".into(), [1; 32], 1).await.unwrap().id;
        let chat = store.create_chat(app, None, 1).await.unwrap().number;
        store.commit_batch(batch(app, chat, 1..=3)).await.unwrap();
        assert_eq!(store.head(), 0);
        assert!(store.read_after(0, 10, 1_000).await.unwrap().is_empty());
    }
}
