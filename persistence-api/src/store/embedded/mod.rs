//! The embedded backend: fjall, an LSM key-value store, in the data dir.
//!
//! Why fjall: it is pure Rust, crash-safe (a journal replayed on open), has
//! ordered range reads in both directions (history paging) and atomic
//! cross-keyspace write transactions with a single writer, which is exactly
//! the serialisation that gapless numbering needs. Its LSM shape is Scylla's.
//!
//! Durability: every write transaction commits with `PersistMode::SyncAll`
//! (an fsync of the journal) before the call returns, so an acknowledged
//! write survives kill -9. The engine's group commit amortises that fsync
//! over many messages; single REST writes pay one each.
//!
//! Blocking: fjall's calls block, so every operation runs on tokio's
//! blocking pool and the async trait methods only await it.

mod commit_log;
mod keys;
mod migrations;
mod read_positions;
mod recent_log;
mod records;
mod write;

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chat_wire::Batch;
use fjall::{
    KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace,
};

use self::records::{AppRecord, ChatRecord, MessageRecord, MigrationRecord, decode, encode};
use super::{
    App, AppId, BatchReceipt, Chat, ChatNumber, ChatState, HISTORY_SCAN_MAX, HistoryQuery, Message,
    MessageNumber, Page, Store, StoreError, StoreResult, TokenHash,
};

pub use migrations::latest_version;
pub use recent_log::RECENT_LOG_MESSAGES_MAX_DEFAULT;

/// The keyspaces (fjall's column families) of the layout; see `keys` for the keys.
pub struct Keyspaces {
    meta: SingleWriterTxKeyspace,
    schema_migrations: SingleWriterTxKeyspace,
    apps: SingleWriterTxKeyspace,
    app_tokens: SingleWriterTxKeyspace,
    chats: SingleWriterTxKeyspace,
    subscribers: SingleWriterTxKeyspace,
    user_chats: SingleWriterTxKeyspace,
    messages: SingleWriterTxKeyspace,
    /// `app | chat | user` → the member's read position (u64, big-endian).
    read_positions: SingleWriterTxKeyspace,
    /// Position → the message ranges one batch commit stored (`commit_log`).
    commit_log: SingleWriterTxKeyspace,
}

struct Inner {
    db: SingleWriterTxDatabase,
    keyspaces: Keyspaces,
    /// Whether batch commits write the commit log (search is on).
    commit_log_enabled: bool,
    /// The newest durable commit log position, published after each batch
    /// commit (the position itself is taken inside the transaction).
    commit_log_head: std::sync::atomic::AtomicU64,
    /// The newest entries with their messages, for the follower.
    recent_log: recent_log::RecentLog,
}

/// How to open the embedded store.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedOptions {
    /// Write the commit log that the search indexer follows. Off, nothing
    /// would trim it, so it is on only while search is.
    pub commit_log: bool,
    /// Messages of the newest commit log entries kept in memory for the
    /// follower (`recent_log`); 0 reads every entry back from the store.
    pub recent_log_messages_max: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            commit_log: false,
            recent_log_messages_max: RECENT_LOG_MESSAGES_MAX_DEFAULT,
        }
    }
}

#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl From<fjall::Error> for StoreError {
    fn from(error: fjall::Error) -> Self {
        StoreError::Engine(error.to_string())
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store under `dir`. Refuses a store whose
    /// schema is newer than this build knows, before touching anything else.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// [`Self::open`] with options.
    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> StoreResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Engine(format!("{}: {e}", dir.display())))?;
        let db = SingleWriterTxDatabase::builder(dir.join("fjall")).open()?;
        let open = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        let schema_migrations = open("schema_migrations")?;
        let found = applied_version(&db, &schema_migrations)?;
        let known = latest_version();
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        let keyspaces = Keyspaces {
            meta: open("meta")?,
            schema_migrations,
            apps: open("apps")?,
            app_tokens: open("app_tokens")?,
            chats: open("chats")?,
            subscribers: open("subscribers")?,
            user_chats: open("user_chats")?,
            messages: open("messages")?,
            read_positions: open("read_positions")?,
            commit_log: open("commit_log")?,
        };
        let head = commit_log::stored_head(&db, &keyspaces)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                keyspaces,
                commit_log_enabled: options.commit_log,
                commit_log_head: std::sync::atomic::AtomicU64::new(head),
                recent_log: recent_log::RecentLog::new(match options.commit_log {
                    true => options.recent_log_messages_max,
                    false => 0,
                }),
            }),
        })
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> StoreResult<u32> {
        applied_version(&self.inner.db, &self.inner.keyspaces.schema_migrations)
    }

    async fn run<T, F>(&self, operation: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || operation(&inner))
            .await
            .map_err(|e| StoreError::Engine(format!("store task failed: {e}")))?
    }
}

fn applied_version(
    db: &SingleWriterTxDatabase,
    schema_migrations: &SingleWriterTxKeyspace,
) -> StoreResult<u32> {
    let snapshot = db.read_tx();
    match snapshot.last_key_value(schema_migrations) {
        None => Ok(0),
        Some(guard) => {
            let key = guard.key()?;
            let bytes: [u8; 4] = key
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("schema_migrations key".into()))?;
            Ok(u32::from_be_bytes(bytes))
        }
    }
}

impl Inner {
    fn migrate(&self) -> StoreResult<u32> {
        let current = applied_version(&self.db, &self.keyspaces.schema_migrations)?;
        for migration in migrations::MIGRATIONS
            .iter()
            .filter(|m| m.version > current)
        {
            let mut tx = self.db.write_tx().durability(migrations::DURABLE);
            (migration.apply)(&mut tx, &self.keyspaces)?;
            let record = MigrationRecord {
                name: migration.name.to_string(),
                applied_at_us: crate::clock::now_us(),
            };
            tx.insert(
                &self.keyspaces.schema_migrations,
                migration.version.to_be_bytes(),
                encode(&record),
            );
            tx.commit()?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applied migration"
            );
        }
        applied_version(&self.db, &self.keyspaces.schema_migrations)
    }

    fn app(&self, reader: &impl Readable, app: AppId) -> StoreResult<Option<AppRecord>> {
        reader
            .get(&self.keyspaces.apps, keys::app(app))?
            .map(|bytes| decode::<AppRecord>(&bytes))
            .transpose()
    }

    fn chat(
        &self,
        reader: &impl Readable,
        app: AppId,
        chat: ChatNumber,
    ) -> StoreResult<Option<ChatRecord>> {
        reader
            .get(&self.keyspaces.chats, keys::chat(app, chat))?
            .map(|bytes| decode::<ChatRecord>(&bytes))
            .transpose()
    }

    fn messages(
        &self,
        app: AppId,
        chat: ChatNumber,
        query: &HistoryQuery,
    ) -> StoreResult<Page<Message>> {
        let snapshot = self.db.read_tx();
        if self.chat(&snapshot, app, chat)?.is_none() {
            return Err(StoreError::ChatNotFound);
        }
        let low = keys::message(app, chat, query.after.unwrap_or(0).saturating_add(1));
        let high = match query.before {
            Some(before) => Bound::Excluded(keys::message(app, chat, before)),
            None => Bound::Included(keys::message(app, chat, u64::MAX)),
        };
        let range = snapshot.range(&self.keyspaces.messages, (Bound::Included(low), high));
        let entries: Box<dyn Iterator<Item = fjall::Guard>> = if query.is_forward() {
            Box::new(range)
        } else {
            Box::new(range.rev())
        };
        let mut items = Vec::with_capacity(query.limit.min(1024));
        let mut has_more = false;
        for (scanned, guard) in entries.enumerate() {
            if scanned >= HISTORY_SCAN_MAX || items.len() == query.limit {
                has_more = true;
                break;
            }
            let (key, value) = guard.into_inner()?;
            let number = keys::message_number_of(&key)
                .ok_or_else(|| StoreError::Corrupt("message key".into()))?;
            let message = decode::<MessageRecord>(&value)?.into_message(number);
            if query
                .viewer
                .as_deref()
                .is_none_or(|viewer| message.is_visible_to(viewer))
            {
                items.push(message);
            }
        }
        if !query.is_forward() {
            items.reverse();
        }
        debug_assert!(items.windows(2).all(|w| w[0].number < w[1].number));
        Ok(Page { items, has_more })
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn migrate(&self) -> StoreResult<u32> {
        self.run(|inner| inner.migrate()).await
    }

    async fn create_app(
        &self,
        title: String,
        token_hash: TokenHash,
        now_us: i64,
    ) -> StoreResult<App> {
        self.run(move |inner| write::create_app(inner, title, token_hash, now_us))
            .await
    }

    async fn app(&self, app: AppId) -> StoreResult<Option<App>> {
        self.run(move |inner| {
            Ok(inner
                .app(&inner.db.read_tx(), app)?
                .map(|r| r.into_app(app)))
        })
        .await
    }

    async fn app_by_token(&self, token_hash: TokenHash) -> StoreResult<Option<App>> {
        self.run(move |inner| {
            let snapshot = inner.db.read_tx();
            let Some(id) = snapshot.get(&inner.keyspaces.app_tokens, token_hash)? else {
                return Ok(None);
            };
            let id =
                keys::decode_u64(&id).ok_or_else(|| StoreError::Corrupt("app token".into()))?;
            let record = inner
                .app(&snapshot, id)?
                .ok_or_else(|| StoreError::Corrupt("token of a missing app".into()))?;
            Ok(Some(record.into_app(id)))
        })
        .await
    }

    async fn rename_app(&self, app: AppId, title: String) -> StoreResult<App> {
        self.run(move |inner| write::rename_app(inner, app, title))
            .await
    }

    async fn create_chat(
        &self,
        app: AppId,
        title: Option<String>,
        now_us: i64,
    ) -> StoreResult<Chat> {
        self.run(move |inner| write::create_chat(inner, app, title, now_us))
            .await
    }

    async fn chat(&self, app: AppId, chat: ChatNumber) -> StoreResult<Option<Chat>> {
        self.run(move |inner| {
            Ok(inner
                .chat(&inner.db.read_tx(), app, chat)?
                .map(|r| r.to_chat(app, chat)))
        })
        .await
    }

    async fn chats(&self, app: AppId, after: ChatNumber, limit: usize) -> StoreResult<Page<Chat>> {
        self.run(move |inner| {
            let snapshot = inner.db.read_tx();
            let range = (
                Bound::Excluded(keys::chat(app, after)),
                Bound::Included(keys::chat(app, u64::MAX)),
            );
            let mut items = Vec::with_capacity(limit.min(1024));
            let mut has_more = false;
            for guard in snapshot.range(&inner.keyspaces.chats, range) {
                if items.len() == limit {
                    has_more = true;
                    break;
                }
                let (key, value) = guard.into_inner()?;
                let number = keys::chat_number_of(&key)
                    .ok_or_else(|| StoreError::Corrupt("chat key".into()))?;
                items.push(decode::<ChatRecord>(&value)?.to_chat(app, number));
            }
            Ok(Page { items, has_more })
        })
        .await
    }

    async fn subscribe(&self, app: AppId, chat: ChatNumber, user: String) -> StoreResult<bool> {
        self.run(move |inner| write::subscribe(inner, app, chat, &user))
            .await
    }

    async fn unsubscribe(&self, app: AppId, chat: ChatNumber, user: String) -> StoreResult<bool> {
        self.run(move |inner| write::unsubscribe(inner, app, chat, &user))
            .await
    }

    async fn subscribers(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Option<String>,
        limit: usize,
    ) -> StoreResult<Page<String>> {
        self.run(move |inner| {
            let snapshot = inner.db.read_tx();
            if inner.chat(&snapshot, app, chat)?.is_none() {
                return Err(StoreError::ChatNotFound);
            }
            let page = subscriber_page(inner, &snapshot, app, chat, after.as_deref(), limit)?;
            Ok(page)
        })
        .await
    }

    async fn is_subscribed(&self, app: AppId, chat: ChatNumber, user: String) -> StoreResult<bool> {
        self.run(move |inner| {
            let snapshot = inner.db.read_tx();
            if inner.chat(&snapshot, app, chat)?.is_none() {
                return Err(StoreError::ChatNotFound);
            }
            Ok(snapshot.contains_key(
                &inner.keyspaces.subscribers,
                keys::subscriber(app, chat, &user),
            )?)
        })
        .await
    }

    async fn memberships(
        &self,
        app: AppId,
        user: String,
        chats: Vec<ChatNumber>,
    ) -> StoreResult<Vec<ChatNumber>> {
        self.run(move |inner| {
            let snapshot = inner.db.read_tx();
            let mut member = Vec::with_capacity(chats.len());
            for chat in chats {
                let key = keys::subscriber(app, chat, &user);
                if snapshot.contains_key(&inner.keyspaces.subscribers, key)? {
                    member.push(chat);
                }
            }
            member.sort_unstable();
            member.dedup();
            Ok(member)
        })
        .await
    }

    async fn user_chats(
        &self,
        app: AppId,
        user: String,
        after: ChatNumber,
        limit: usize,
    ) -> StoreResult<Page<ChatNumber>> {
        self.run(move |inner| {
            let snapshot = inner.db.read_tx();
            // Written in the subscription's own transaction, so the index is
            // exact here: no entry needs confirming against the chat.
            let low = Bound::Excluded(keys::user_chat(app, &user, after));
            let prefix = keys::user_chats_of(app, &user);
            prefix_page(
                &snapshot,
                &inner.keyspaces.user_chats,
                low,
                &prefix,
                limit,
                |key| keys::user_chat_number_of(key, prefix.len()),
                "user chat key",
            )
        })
        .await
    }

    async fn chat_state(&self, app: AppId, chat: ChatNumber) -> StoreResult<Option<ChatState>> {
        self.run(move |inner| {
            let snapshot = inner.db.read_tx();
            let Some(record) = inner.chat(&snapshot, app, chat)? else {
                return Ok(None);
            };
            let all = subscriber_page(
                inner,
                &snapshot,
                app,
                chat,
                None,
                super::SUBSCRIBERS_PER_CHAT_MAX,
            )?;
            if all.items.len() as u64 != record.subscribers_count {
                return Err(StoreError::Corrupt(format!(
                    "chat {app}/{chat}: {} subscriber rows, count {}",
                    all.items.len(),
                    record.subscribers_count
                )));
            }
            Ok(Some(ChatState {
                chat: record.to_chat(app, chat),
                subscribers: all.items,
            }))
        })
        .await
    }

    async fn mark_read(
        &self,
        app: AppId,
        chat: ChatNumber,
        user: String,
        number: MessageNumber,
    ) -> StoreResult<MessageNumber> {
        self.run(move |inner| read_positions::mark_read(inner, app, chat, &user, number))
            .await
    }

    async fn read_positions(
        &self,
        app: AppId,
        chat: ChatNumber,
        users: Vec<String>,
    ) -> StoreResult<Vec<MessageNumber>> {
        self.run(move |inner| read_positions::of_users(inner, app, chat, &users))
            .await
    }

    async fn commit_batch(&self, batch: Batch) -> StoreResult<BatchReceipt> {
        self.run(move |inner| write::commit_batch(inner, &batch))
            .await
    }

    async fn messages(
        &self,
        app: AppId,
        chat: ChatNumber,
        query: HistoryQuery,
    ) -> StoreResult<Page<Message>> {
        self.run(move |inner| inner.messages(app, chat, &query))
            .await
    }

    async fn repair_chat(&self, app: AppId, chat: ChatNumber) -> StoreResult<Vec<u64>> {
        self.run(move |inner| write::repair_chat(inner, app, chat))
            .await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.run(|inner| Ok(inner.db.persist(PersistMode::SyncAll)?))
            .await
    }

    /// One key of `meta`, rewritten with the time in a synced transaction.
    async fn probe_write(&self) -> StoreResult<()> {
        self.run(|inner| {
            let mut tx = inner.db.write_tx().durability(migrations::DURABLE);
            let now_us = crate::clock::now_us();
            tx.insert(
                &inner.keyspaces.meta,
                HEALTH_PROBE_KEY,
                now_us.to_be_bytes(),
            );
            Ok(tx.commit()?)
        })
        .await
    }
}

/// The `meta` key the health probe rewrites; nothing reads it.
const HEALTH_PROBE_KEY: &[u8] = b"health_probe";

fn subscriber_page(
    inner: &Inner,
    reader: &impl Readable,
    app: AppId,
    chat: ChatNumber,
    after: Option<&str>,
    limit: usize,
) -> StoreResult<Page<String>> {
    let low = match after {
        Some(user) => Bound::Excluded(keys::subscriber(app, chat, user)),
        None => Bound::Included(keys::subscriber(app, chat, "")),
    };
    prefix_page(
        reader,
        &inner.keyspaces.subscribers,
        low,
        &keys::chat(app, chat),
        limit,
        keys::subscriber_user_of,
        "subscriber key",
    )
}

/// Up to `limit` keys of `keyspace` from `low` on that start with `prefix`,
/// each decoded by `decode` (a key it refuses is corrupt: `what` names it).
fn prefix_page<T>(
    reader: &impl Readable,
    keyspace: &SingleWriterTxKeyspace,
    low: Bound<Vec<u8>>,
    prefix: &[u8],
    limit: usize,
    decode: impl Fn(&[u8]) -> Option<T>,
    what: &str,
) -> StoreResult<Page<T>> {
    let mut items = Vec::with_capacity(limit.min(1024));
    let mut has_more = false;
    for guard in reader.range(keyspace, (low, Bound::Unbounded)) {
        let key = guard.key()?;
        if !key.starts_with(prefix) {
            break;
        }
        if items.len() == limit {
            has_more = true;
            break;
        }
        items.push(decode(&key).ok_or_else(|| StoreError::Corrupt(what.into()))?);
    }
    Ok(Page { items, has_more })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_apply_once_and_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), 0);
        assert_eq!(store.migrate().await.unwrap(), latest_version());
        assert_eq!(store.migrate().await.unwrap(), latest_version());
        let recorded = store
            .inner
            .keyspaces
            .schema_migrations
            .inner()
            .iter()
            .count();
        assert_eq!(recorded, migrations::MIGRATIONS.len());
    }

    /// The embedded store fsyncs before it answers, so it cannot lose a
    /// message; if a file was damaged all the same, the repair path is the
    /// one the ScyllaDB store uses.
    #[tokio::test]
    async fn repair_marks_missing_messages_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.migrate().await.unwrap();
        let app = store.create_app("a".into(), [1; 32], 1).await.unwrap().id;
        let chat = store.create_chat(app, None, 1).await.unwrap().number;
        let messages = (1..=5)
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
            .collect();
        let batch = Batch {
            batch_id: 1,
            chats: vec![],
            messages,
        };
        store.commit_batch(batch).await.unwrap();
        assert_eq!(
            store.repair_chat(app, chat).await.unwrap(),
            Vec::<u64>::new()
        );
        for number in [1, 4] {
            store
                .inner
                .keyspaces
                .messages
                .inner()
                .remove(keys::message(app, chat, number))
                .unwrap();
        }
        assert_eq!(store.repair_chat(app, chat).await.unwrap(), vec![1, 4]);
        let query = HistoryQuery {
            after: Some(0),
            before: None,
            limit: 100,
            viewer: Some("ann".into()),
        };
        let page = store.messages(app, chat, query).await.unwrap();
        let numbers: Vec<u64> = page.items.iter().map(|m| m.number).collect();
        assert_eq!(numbers, [2, 3, 5], "a user never sees a lost placeholder");
        assert_eq!(
            store.repair_chat(app, chat).await.unwrap(),
            Vec::<u64>::new()
        );
    }

    #[tokio::test]
    async fn user_chats_page_over_the_members_current_chats() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.migrate().await.unwrap();
        let app = store.create_app("a".into(), [1; 32], 1).await.unwrap().id;
        let other = store.create_app("b".into(), [2; 32], 1).await.unwrap().id;
        for _ in 0..5 {
            let chat = store.create_chat(app, None, 1).await.unwrap().number;
            store.subscribe(app, chat, "bob".into()).await.unwrap();
            store.subscribe(app, chat, "bo".into()).await.unwrap();
            let theirs = store.create_chat(other, None, 1).await.unwrap().number;
            store.subscribe(other, theirs, "bob".into()).await.unwrap();
        }
        store.unsubscribe(app, 3, "bob".into()).await.unwrap();
        let first = store.user_chats(app, "bob".into(), 0, 2).await.unwrap();
        assert_eq!(
            (first.items.as_slice(), first.has_more),
            (&[1, 2][..], true)
        );
        let rest = store.user_chats(app, "bob".into(), 2, 10).await.unwrap();
        assert_eq!((rest.items.as_slice(), rest.has_more), (&[4, 5][..], false));
        let nobody = store.user_chats(app, "b".into(), 0, 10).await.unwrap();
        assert!(nobody.items.is_empty() && !nobody.has_more);
    }

    #[tokio::test]
    async fn refuses_to_open_a_schema_newer_than_it_knows() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.migrate().await.unwrap();
            let future = MigrationRecord {
                name: "from a newer build".into(),
                applied_at_us: 0,
            };
            let keyspace = &store.inner.keyspaces.schema_migrations;
            keyspace
                .insert((latest_version() + 1).to_be_bytes(), encode(&future))
                .unwrap();
            store.flush().await.unwrap();
        }
        match EmbeddedStore::open(dir.path()) {
            Err(StoreError::SchemaTooNew { found, known }) => {
                assert_eq!((found, known), (latest_version() + 1, latest_version()));
            }
            Err(other) => panic!("expected SchemaTooNew, got {other}"),
            Ok(_) => panic!("a newer schema was opened"),
        }
    }
}
