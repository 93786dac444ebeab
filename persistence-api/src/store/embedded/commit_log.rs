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
use crate::store::{
    CommitLog, EntriesRead, LoggedBatch, LoggedMessage, MessageSpan, StoreError, StoreResult,
};

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

/// Adds the next entry inside the batch's transaction; returns its position
/// and the commit time it records.
/// The position is read from the transaction itself (the meta key), under
/// fjall's single-writer lock: two commits can never take the same one, and
/// a commit that fails leaves no trace. (An in-memory counter would not do:
/// the lock is released when `commit` returns, before the counter could be
/// raised, and the next batch would take the same position.)
pub(super) fn append(
    inner: &Inner,
    tx: &mut SingleWriterWriteTx<'_>,
    ranges: Vec<MessageRange>,
) -> StoreResult<(u64, i64)> {
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
    let committed_at_us = crate::clock::now_us();
    let record = CommitLogRecord {
        committed_at_us,
        ranges,
    };
    tx.insert(&ks.commit_log, position.to_be_bytes(), encode(&record));
    tx.insert(&ks.meta, keys::COMMIT_LOG_HEAD, position.to_be_bytes());
    Ok((position, committed_at_us))
}

/// The entries after `position`: those still in memory (`recent_log`),
/// then, from the first that is not, the store's.
fn read_after(
    inner: &Inner,
    position: u64,
    batches_max: usize,
    messages_max: usize,
) -> StoreResult<Vec<LoggedBatch>> {
    let mut batches = inner
        .recent_log
        .take_after(position, batches_max, messages_max);
    let messages: usize = batches.iter().map(|b| b.messages.len()).sum();
    let batches_left = batches_max.saturating_sub(batches.len());
    let full = !batches.is_empty() && (batches_left == 0 || messages >= messages_max);
    if !full {
        // The same bounds go on: the store adds entries while the total is
        // below `messages_max` (so at least one, as the total is).
        let after = batches.last().map_or(position, |b| b.position);
        let messages_left = messages_max.saturating_sub(messages);
        let mut stored = read_stored_after(inner, after, batches_left, messages_left)?;
        inner.recent_log.count_read_from_store(stored.len());
        batches.append(&mut stored);
    }
    Ok(batches)
}

fn read_stored_after(
    inner: &Inner,
    position: u64,
    batches_max: usize,
    messages_max: usize,
) -> StoreResult<Vec<LoggedBatch>> {
    let ks = &inner.keyspaces;
    let snapshot = inner.db.read_tx();
    let mut batches = Vec::new();
    let mut messages_total = 0usize;
    for entry in records_after(&snapshot, ks, position) {
        if batches.len() >= batches_max || (messages_total >= messages_max && !batches.is_empty()) {
            break;
        }
        let (position, record) = entry?;
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

/// The stored entries after `position`, in position order, without their
/// messages.
fn records_after<'a>(
    snapshot: &'a fjall::Snapshot,
    ks: &'a Keyspaces,
    position: u64,
) -> impl Iterator<Item = StoreResult<(u64, CommitLogRecord)>> + 'a {
    let range = (
        Bound::Excluded(position.to_be_bytes()),
        Bound::Unbounded::<[u8; 8]>,
    );
    snapshot.range(&ks.commit_log, range).map(|guard| {
        let (key, value) = guard.into_inner()?;
        let position =
            keys::decode_u64(&key).ok_or_else(|| StoreError::Corrupt("commit log key".into()))?;
        Ok((position, decode::<CommitLogRecord>(&value)?))
    })
}

fn trim_through(inner: &Inner, position: u64) -> StoreResult<()> {
    inner.recent_log.trim_through(position);
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
            let (position, _) = append(inner, &mut tx, ranges)?;
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

    async fn committed_at_after(&self, position: u64) -> StoreResult<Option<i64>> {
        let next = position.saturating_add(1);
        if let Some(at_us) = self.inner.recent_log.committed_at(next) {
            return Ok(Some(at_us));
        }
        self.run(move |inner| {
            let snapshot = inner.db.read_tx();
            let first = records_after(&snapshot, &inner.keyspaces, position).next();
            Ok(first.transpose()?.map(|(_, record)| record.committed_at_us))
        })
        .await
    }

    fn head(&self) -> u64 {
        self.inner.commit_log_head.load(Ordering::Acquire)
    }

    async fn trim_through(&self, position: u64) -> StoreResult<()> {
        self.run(move |inner| trim_through(inner, position)).await
    }

    fn entries_read(&self) -> EntriesRead {
        self.inner.recent_log.entries_read()
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
        let options = EmbeddedOptions {
            commit_log: true,
            ..EmbeddedOptions::default()
        };
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

    /// Entries taken from memory, alone or followed by the store's, are
    /// the store's own: the same reads on the same data dir reopened with
    /// nothing in memory give the same batches.
    #[tokio::test]
    async fn entries_from_memory_are_the_stores() {
        let dir = tempfile::tempdir().unwrap();
        let in_memory = EmbeddedOptions {
            commit_log: true,
            recent_log_messages_max: 6,
        };
        let store = EmbeddedStore::open_with(dir.path(), in_memory).unwrap();
        store.migrate().await.unwrap();
        let app = store.create_app("a".into(), [1; 32], 1).await.unwrap().id;
        let chats = [
            store.create_chat(app, None, 1).await.unwrap().number,
            store.create_chat(app, None, 1).await.unwrap().number,
        ];
        // Five entries of three messages over both chats, some addressed,
        // some with client ids.
        for round in 0..5u64 {
            let mut mixed = batch(app, chats[0], 2 * round + 1..=2 * round + 2);
            mixed.messages[0].recipients = Some(vec!["bo".into(), "cy".into()]);
            mixed.messages[1].client_id = Some(format!("c{round}"));
            mixed
                .messages
                .extend(batch(app, chats[1], round + 1..=round + 1).messages);
            store.commit_batch(mixed).await.unwrap();
        }
        let memory = |store: &EmbeddedStore| store.inner.recent_log.positions();
        // The bound keeps the newest six messages: entries 4 and 5.
        assert_eq!(memory(&store), [4, 5]);
        // Looks take nothing, from memory or from the store.
        let first = store.committed_at_after(0).await.unwrap();
        let fifth = store.committed_at_after(4).await.unwrap();
        assert!(first.is_some() && fifth >= first);
        assert_eq!(store.committed_at_after(5).await.unwrap(), None);
        assert_eq!(memory(&store), [4, 5]);
        let reads = [(0, 10, 1_000), (4, 1, 1_000), (3, 10, 4), (1, 2, 1_000)];
        let mut got = Vec::new();
        for (position, batches_max, messages_max) in reads {
            got.push(
                store
                    .read_after(position, batches_max, messages_max)
                    .await
                    .unwrap(),
            );
        }
        // 1: not in memory, all from the store; 2: entry 5 from memory;
        // 3: entry 4 from memory, then 5 from the store; 4: the store.
        assert!(memory(&store).is_empty());
        let positions: Vec<Vec<u64>> = got
            .iter()
            .map(|read| read.iter().map(|b| b.position).collect())
            .collect();
        assert_eq!(
            positions,
            [vec![1, 2, 3, 4, 5], vec![5], vec![4, 5], vec![2, 3]]
        );
        let read = EntriesRead {
            from_memory: 2,
            from_store: 5 + 1 + 2,
        };
        assert_eq!(store.entries_read(), read);
        drop(store);
        let stored_only = EmbeddedOptions {
            commit_log: true,
            recent_log_messages_max: 0,
        };
        let store = EmbeddedStore::open_with(dir.path(), stored_only).unwrap();
        for ((position, batches_max, messages_max), got) in reads.into_iter().zip(got) {
            let stored = store
                .read_after(position, batches_max, messages_max)
                .await
                .unwrap();
            assert_eq!(
                got, stored,
                "read_after({position}, {batches_max}, {messages_max})"
            );
        }
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
