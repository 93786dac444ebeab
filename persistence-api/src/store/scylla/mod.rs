//! The ScyllaDB backend: the `scylla` driver against ScyllaDB or Apache
//! Cassandra (CQL only, no ScyllaDB-only syntax), for deployments on many
//! machines. The layout is `migrations/0001_initial.cql`; every statement is
//! prepared once (DDL aside) and every write is batched per partition.
//!
//! # What Cassandra gives, and what it does not
//!
//! Cassandra has no transactions across partitions. It has lightweight
//! transactions (LWT: `IF` conditions, Paxos), which are linearizable per
//! partition, and batches, which are atomic and isolated when they touch one
//! partition. So the design puts every number that must not race (a
//! sequence, a count, a chat's last message number) in one partition
//! together with whatever must change with it, changes it only by LWT, and
//! orders the writes to other partitions so that a crash at any point leaves
//! a state that is either invisible or finished by the next writer.
//! Validation comes before any write, so a refused batch writes nothing.
//!
//! # App ids
//!
//! `meta.app_sequence` is advanced by `IF value = old`; the winner owns the
//! id. The app row is written before its token, so a token always names an
//! app. A crash in between burns an id (app ids may have gaps; nothing
//! counts them).
//!
//! # Chats: numbers and counts, by roll-forward intents
//!
//! An app's `chats_count` and `chat_sequence` live in its row and change by
//! LWT. Creating chats (one by `POST /v1/chats`, or the implicit chats of a
//! batch) goes:
//! 1. write the intent's data (`chat_intents`: title, time, subscribers) and
//!    the listing index rows, all idempotent upserts that nothing shows yet;
//! 2. LWT on the app row: `chat_sequence` moves past the new numbers and
//!    `pending_chats` records {number -> intent}, `IF chat_sequence = old AND
//!    pending_chats = null`. This is the commit point: two creators cannot
//!    both take a number, and once it applied the creation will happen;
//! 3. apply each intent: one conditional batch on the chat's partition
//!    inserts the chat (`IF NOT EXISTS`, recording the intent id) with its
//!    initial subscriber rows and count;
//! 4. LWT on the app row: clear `pending_chats` and add to `chats_count` the
//!    chats whose partition carries this intent's id, `IF pending_chats = P
//!    AND chats_count = old`.
//!
//! Anyone who finds `pending_chats` set (a creator that died after step 2,
//! or one still running) finishes it with steps 3 and 4 before doing its own
//! work: every step is idempotent and its outcome does not depend on who
//! runs it, so finishing another's intent is safe. Until then a reader
//! counts the pending chats that exist, so `chats_count` always equals the
//! chats one can see. Within one process the creations of an app also take
//! an in-process lock (striped by app), so they do not fight over Paxos.
//!
//! # Messages: claim, write, commit
//!
//! A chat's partition holds `last_number` (= `messages_count`) and a write
//! claim: `fence`, which only grows, and `claim`, the id of the current
//! claimant. Message rows above `last_number` are invisible: every read is
//! bounded by it. Committing a batch:
//! 1. read every chat of the batch with a serial (linearizable) read and
//!    every stored message that the batch repeats; validate the whole batch
//!    exactly as the embedded store does (reuse with the same content:
//!    skip; other content or a gap or an unknown chat: refuse). A refusal
//!    happens here, before any write, so a refused batch writes nothing;
//! 2. create the implicit chats (above), then start over from 1 so the new
//!    chats are read like the others. (The second validation can only
//!    refuse if another writer changed those chats in between, which the
//!    engine's one-owner-per-chat rule excludes; then the chats stay
//!    created, as an implicit creation is idempotent anyway);
//! 3. claim each chat that gets new messages: `SET fence = f', claim = id IF
//!    fence = f AND last_number = L`, with f' > f. A claim fails if anything
//!    claimed since the read, so the validation still holds;
//! 4. write the new messages (upserts by app, chat, number; unlogged batches
//!    per bucket partition) with `USING TIMESTAMP f'`;
//! 5. commit each chat: `SET last_number = new, claim = 0 IF claim = id`.
//!
//! Why this is safe:
//! - A crash between 4 and 5 leaves rows above `last_number`: invisible, and
//!   the engine's retry of the same batch writes the same content over them
//!   and commits. A different writer later takes the numbers with a newer
//!   claim and overwrites them.
//! - Two writers at once (two engines that both think they own a chat, or an
//!   engine's retry racing its own first attempt): the later claim wins and
//!   the earlier claimant's commit fails, so only the last claimant's rows
//!   can become visible. Its rows cannot be overwritten by a slower,
//!   superseded writer because Cassandra resolves writes by timestamp and
//!   the superseded writer's fence is lower; without the fence a loser's
//!   late upserts could replace a winner's committed messages.
//! - A commit that fails (superseded) starts the batch over from 1: what the
//!   other writer committed is then compared like any stored message.
//!
//! A batch touching several chats commits chat by chat; a crash between two
//! chats' commits leaves some committed and the engine's retry of the whole
//! batch (same bytes) completes the rest, each step being idempotent.
//!
//! # Subscribers
//!
//! A chat's subscribers are clustering rows of its own partition, next to
//! its count and version in static columns, so one conditional batch (`IF
//! version = v`) adds or removes a row and moves the count and the version
//! atomically. `user_chats`, the reverse index, is another partition: written
//! before the subscription and deleted after the unsubscription, so a crash
//! can leave an entry too many but never one missing; readers confirm an
//! entry against the chat.
//!
//! # Durability
//!
//! A write is acknowledged after the replicas that the consistency level
//! names (QUORUM, SERIAL for LWT) have it in their commit log. Whether that
//! commit log is fsynced before the acknowledgement is the cluster's
//! `commitlog_sync` setting: for the guarantee the embedded store gives,
//! run replicas on several machines or use `batch` or `group`.
//!
//! # Limits of this backend
//!
//! Chat and message numbers are u64 in the API and bigint here: numbers
//! above 2^63 - 1 do not exist in this store (reads answer not found, and a
//! batch naming one is refused as a conflict).

mod locks;
mod migrations;
mod read;
mod read_positions;
mod statements;
mod write;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_wire::Batch;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::{Consistency, SerialConsistency};
use tokio::sync::OnceCell;

use self::locks::Stripes;
use self::statements::Statements;
use super::{
    App, AppId, BatchReceipt, Chat, ChatNumber, ChatState, HistoryQuery, Message, MessageNumber,
    Page, Store, StoreError, StoreResult, TokenHash,
};

pub use migrations::latest_version;

/// How long one CQL request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the store is: `scylla://host:port[,host:port…]/keyspace[?replication=…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`.
    pub hosts: Vec<String>,
    pub keyspace: String,
    /// The keyspace's replication, as a CQL map literal.
    pub replication: String,
}

impl ScyllaConfig {
    /// Parses a store URL. `replication` is `simple:N` (SimpleStrategy with N
    /// replicas, the default being `simple:1`) or `DC:N[,DC:N…]`
    /// (NetworkTopologyStrategy).
    pub fn from_url(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("scylla://")
            .ok_or_else(|| format!("{url:?} is not a scylla:// URL"))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = location
            .split_once('/')
            .ok_or_else(|| format!("{url:?} names no keyspace (scylla://host:port/keyspace)"))?;
        let hosts: Vec<String> = hosts
            .split(',')
            .map(|host| {
                let host = host.trim();
                if host.is_empty() {
                    return Err(format!("{url:?} has an empty host"));
                }
                Ok(
                    if host.rsplit_once(':').is_some_and(|(_, port)| {
                        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                    }) {
                        host.to_string()
                    } else {
                        format!("{host}:9042")
                    },
                )
            })
            .collect::<Result<_, _>>()?;
        if !is_cql_identifier(keyspace) {
            return Err(format!(
                "keyspace {keyspace:?} must be 1 to 48 letters, digits or _, starting with a letter"
            ));
        }
        let mut replication = replication_literal("simple:1")?;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("replication", value)) => replication = replication_literal(value)?,
                _ => return Err(format!("unknown store URL parameter {pair:?}")),
            }
        }
        Ok(Self {
            hosts,
            keyspace: keyspace.to_string(),
            replication,
        })
    }
}

impl fmt::Display for ScyllaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scylla://{}/{}", self.hosts.join(","), self.keyspace)
    }
}

fn is_cql_identifier(name: &str) -> bool {
    (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn replication_literal(value: &str) -> Result<String, String> {
    let bad = || format!("replication {value:?} must be simple:N or DC:N[,DC:N…]");
    let factor = |n: &str| n.parse::<u8>().ok().filter(|&n| n > 0).ok_or_else(bad);
    if let Some(n) = value.strip_prefix("simple:") {
        return Ok(format!(
            "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
            factor(n)?
        ));
    }
    let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_string()];
    for dc in value.split(',') {
        let (name, n) = dc.split_once(':').ok_or_else(bad)?;
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(bad());
        }
        parts.push(format!("'{name}': {}", factor(n)?));
    }
    Ok(format!("{{{}}}", parts.join(", ")))
}

pub(super) fn engine_error(error: impl fmt::Display) -> StoreError {
    StoreError::Engine(error.to_string())
}

struct Inner {
    session: Session,
    config: ScyllaConfig,
    /// Prepared once the schema exists (after `migrate`, or at open when it does).
    statements: OnceCell<Statements>,
    /// Serialises, within this process, the writes to one app's row.
    app_locks: Stripes,
    /// Serialises, within this process, subscription changes of one chat.
    chat_locks: Stripes,
    create_app_lock: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
}

impl ScyllaStore {
    /// Connects to the cluster. Refuses a keyspace whose schema is newer than
    /// this build knows; applies nothing (see [`Store::migrate`]).
    pub async fn connect(config: ScyllaConfig) -> StoreResult<Self> {
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::Quorum)
            .serial_consistency(Some(SerialConsistency::Serial))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .build();
        let session = SessionBuilder::new()
            .known_nodes(&config.hosts)
            .default_execution_profile_handle(profile.into_handle())
            .connection_timeout(Duration::from_secs(10))
            .build()
            .await
            .map_err(|e| StoreError::Engine(format!("connecting to {config}: {e}")))?;
        let store = Self {
            inner: Arc::new(Inner {
                session,
                config,
                statements: OnceCell::new(),
                app_locks: Stripes::new(256),
                chat_locks: Stripes::new(1024),
                create_app_lock: tokio::sync::Mutex::new(()),
            }),
        };
        let found = store.schema_version().await?;
        let known = latest_version();
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        Ok(store)
    }

    pub fn config(&self) -> &ScyllaConfig {
        &self.inner.config
    }

    /// The schema version recorded in the keyspace (0 when there is none).
    pub async fn schema_version(&self) -> StoreResult<u32> {
        migrations::applied_version(&self.inner.session, &self.inner.config.keyspace).await
    }

    async fn statements(&self) -> StoreResult<&Statements> {
        self.inner
            .statements
            .get_or_try_init(|| {
                Statements::prepare(&self.inner.session, &self.inner.config.keyspace)
            })
            .await
    }
}

#[async_trait]
impl Store for ScyllaStore {
    async fn migrate(&self) -> StoreResult<u32> {
        let inner = &self.inner;
        let version = migrations::migrate(&inner.session, &inner.config).await?;
        self.statements().await?;
        Ok(version)
    }

    async fn create_app(
        &self,
        title: String,
        token_hash: TokenHash,
        now_us: i64,
    ) -> StoreResult<App> {
        write::create_app(self, title, token_hash, now_us).await
    }

    async fn app(&self, app: AppId) -> StoreResult<Option<App>> {
        read::app(self, app).await
    }

    async fn app_by_token(&self, token_hash: TokenHash) -> StoreResult<Option<App>> {
        read::app_by_token(self, token_hash).await
    }

    async fn rename_app(&self, app: AppId, title: String) -> StoreResult<App> {
        write::rename_app(self, app, title).await
    }

    async fn create_chat(
        &self,
        app: AppId,
        title: Option<String>,
        now_us: i64,
    ) -> StoreResult<Chat> {
        write::create_chat(self, app, title, now_us).await
    }

    async fn chat(&self, app: AppId, chat: ChatNumber) -> StoreResult<Option<Chat>> {
        read::chat(self, app, chat).await
    }

    async fn chats(&self, app: AppId, after: ChatNumber, limit: usize) -> StoreResult<Page<Chat>> {
        read::chats(self, app, after, limit).await
    }

    async fn subscribe(&self, app: AppId, chat: ChatNumber, user: String) -> StoreResult<bool> {
        write::subscribe(self, app, chat, user).await
    }

    async fn unsubscribe(&self, app: AppId, chat: ChatNumber, user: String) -> StoreResult<bool> {
        write::unsubscribe(self, app, chat, user).await
    }

    async fn subscribers(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Option<String>,
        limit: usize,
    ) -> StoreResult<Page<String>> {
        read::subscribers(self, app, chat, after, limit).await
    }

    async fn is_subscribed(&self, app: AppId, chat: ChatNumber, user: String) -> StoreResult<bool> {
        read::is_subscribed(self, app, chat, user).await
    }

    async fn memberships(
        &self,
        app: AppId,
        user: String,
        chats: Vec<ChatNumber>,
    ) -> StoreResult<Vec<ChatNumber>> {
        let mut chats = chats;
        chats.sort_unstable();
        chats.dedup();
        let mut reads = Vec::with_capacity(chats.len());
        for chat in chats {
            let user = user.as_str();
            reads.push(async move {
                Ok(read::member_exists(self, app, chat, user)
                    .await?
                    .then_some(chat))
            });
        }
        Ok(write::bounded(reads).await?.into_iter().flatten().collect())
    }

    async fn user_chats(
        &self,
        app: AppId,
        user: String,
        after: ChatNumber,
        limit: usize,
    ) -> StoreResult<Page<ChatNumber>> {
        read::user_chats(self, app, user, after, limit).await
    }

    async fn chat_state(&self, app: AppId, chat: ChatNumber) -> StoreResult<Option<ChatState>> {
        read::chat_state(self, app, chat).await
    }

    async fn mark_read(
        &self,
        app: AppId,
        chat: ChatNumber,
        user: String,
        number: MessageNumber,
    ) -> StoreResult<MessageNumber> {
        read_positions::mark_read(self, app, chat, user, number).await
    }

    async fn read_positions(
        &self,
        app: AppId,
        chat: ChatNumber,
        users: Vec<String>,
    ) -> StoreResult<Vec<MessageNumber>> {
        read_positions::read_positions(self, app, chat, users).await
    }

    async fn commit_batch(&self, batch: Batch) -> StoreResult<BatchReceipt> {
        write::commit_batch(self, &batch).await
    }

    async fn messages(
        &self,
        app: AppId,
        chat: ChatNumber,
        query: HistoryQuery,
    ) -> StoreResult<Page<Message>> {
        read::messages(self, app, chat, &query).await
    }

    async fn repair_chat(&self, app: AppId, chat: ChatNumber) -> StoreResult<Vec<u64>> {
        write::repair_chat(self, app, chat).await
    }

    /// Nothing to do: a write returned only once the cluster acknowledged it.
    async fn flush(&self) -> StoreResult<()> {
        Ok(())
    }

    /// One row of `meta` (name `health_probe`, which nothing reads),
    /// rewritten with the time at the session's quorum consistency.
    async fn probe_write(&self) -> StoreResult<()> {
        let statement = format!(
            "INSERT INTO {}.meta (name, value) VALUES ('health_probe', ?)",
            self.inner.config.keyspace
        );
        self.inner
            .session
            .query_unpaged(statement, (crate::clock::now_us(),))
            .await
            .map_err(engine_error)?;
        Ok(())
    }
}

/// A migrated store on a fresh keyspace of the node that `CHAT_TEST_SCYLLA`
/// names, for the white-box tests of the protocols; `None` without one.
#[cfg(test)]
pub(crate) async fn test_store(name: &str) -> Option<ScyllaStore> {
    let hosts = std::env::var("CHAT_TEST_SCYLLA").ok()?;
    let config = ScyllaConfig::from_url(&format!("scylla://{hosts}/unit_{name}")).unwrap();
    // A plain session: the store itself refuses what an earlier run left
    // (a newer schema version, written by the test below).
    let session = SessionBuilder::new()
        .known_nodes(&config.hosts)
        .build()
        .await
        .unwrap();
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace), ())
        .await
        .unwrap();
    let store = ScyllaStore::connect(config).await.unwrap();
    store.migrate().await.unwrap();
    Some(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let Some(store) = test_store("migrations").await else {
            return;
        };
        assert_eq!(store.schema_version().await.unwrap(), latest_version());
        assert_eq!(store.migrate().await.unwrap(), latest_version());
        let future = latest_version() as i32 + 1;
        let record = store
            .inner
            .session
            .prepare(format!(
                "INSERT INTO {}.schema_migrations (version, name) VALUES (?, 'newer')",
                store.config().keyspace
            ))
            .await
            .unwrap();
        store
            .inner
            .session
            .execute_unpaged(&record, (future,))
            .await
            .unwrap();
        match ScyllaStore::connect(store.config().clone()).await {
            Err(StoreError::SchemaTooNew { found, known }) => {
                assert_eq!((found, known), (future as u32, latest_version()));
            }
            Err(other) => panic!("expected SchemaTooNew, got {other}"),
            Ok(_) => panic!("a newer schema was opened"),
        }
    }

    #[test]
    fn parses_store_urls() {
        let config = ScyllaConfig::from_url("scylla://127.0.0.1:9042/chat").unwrap();
        assert_eq!(config.hosts, ["127.0.0.1:9042"]);
        assert_eq!(config.keyspace, "chat");
        assert_eq!(
            config.replication,
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        let config =
            ScyllaConfig::from_url("scylla://h1:9042,h2/ks_2?replication=dc1:3,dc-2:2").unwrap();
        assert_eq!(config.hosts, ["h1:9042", "h2:9042"]);
        assert_eq!(
            config.replication,
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc-2': 2}"
        );
        assert_eq!(config.to_string(), "scylla://h1:9042,h2:9042/ks_2");
        for bad in [
            "cassandra://h/ks",
            "scylla://h",
            "scylla://h/",
            "scylla://h/1ks",
            "scylla://h/ks;drop",
            "scylla://h/ks?replication=simple:0",
            "scylla://h/ks?replication=dc'1:3",
            "scylla://h/ks?other=1",
            "scylla://,h/ks",
        ] {
            assert!(ScyllaConfig::from_url(bad).is_err(), "{bad}");
        }
    }
}
