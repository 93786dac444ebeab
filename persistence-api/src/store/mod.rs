//! The `Store` trait: every durable operation of the system, behind one
//! interface with one conformance suite, so the embedded default and the
//! ScyllaDB backend are interchangeable.
//!
//! Invariants every backend keeps:
//! - chat numbers per app run 1, 2, 3, … with no duplicate; messages per chat
//!   likewise with no gap;
//! - `chats_count`, `messages_count` and `subscribers_count` equal the rows
//!   they count after every commit;
//! - a write that returned `Ok` survives a crash of the process (kill -9);
//! - a batch commits atomically: all of it, or nothing.

pub mod commit_log;
pub mod embedded;
pub mod scylla;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chat_wire::Batch;

pub use commit_log::{CommitLog, EntriesRead, LoggedBatch, LoggedMessage, MessageSpan};
pub use embedded::{EmbeddedOptions, EmbeddedStore, RECENT_LOG_MESSAGES_MAX_DEFAULT};
pub use scylla::{ScyllaConfig, ScyllaStore};

/// Which backend holds the data, from the `--store` flag (`CHAT_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded store in this directory (`embedded`, the default).
    Embedded(PathBuf),
    /// A ScyllaDB or Cassandra keyspace (`scylla://host:port[,…]/keyspace`).
    Scylla(ScyllaConfig),
}

impl StoreLocation {
    /// `embedded` (whose data lives in `data_dir`) or a `scylla://` URL.
    pub fn parse(store: &str, data_dir: &Path) -> Result<Self, String> {
        if store == "embedded" {
            Ok(Self::Embedded(data_dir.to_path_buf()))
        } else if store.starts_with("scylla://") {
            ScyllaConfig::from_url(store).map(Self::Scylla)
        } else {
            Err(format!(
                "store {store:?} is neither `embedded` nor a scylla://host:port/keyspace URL"
            ))
        }
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded(dir) => write!(f, "the embedded store in {}", dir.display()),
            Self::Scylla(config) => write!(f, "{config}"),
        }
    }
}

pub type AppId = u64;
pub type ChatNumber = u64;
pub type MessageNumber = u64;

/// The SHA-256 of an app token: tokens are stored and looked up only hashed.
pub type TokenHash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: AppId,
    pub title: String,
    pub created_at_us: i64,
    pub chats_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub app: AppId,
    pub number: ChatNumber,
    pub title: Option<String>,
    pub created_at_us: i64,
    /// Equal to the last message's number, since numbering is gapless.
    pub messages_count: u64,
    pub subscribers_count: u64,
    /// Grows by one on every change of the subscriber set, so a cache of the
    /// set (the engine's) can tell whether it is current.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub number: MessageNumber,
    pub sender: String,
    pub recipients: Option<Vec<String>>,
    pub body: String,
    pub client_id: Option<String>,
    pub sent_at_us: i64,
}

impl Message {
    /// A placeholder that `chat repair` wrote for a message the store lost:
    /// no sender (no user id is empty), addressed to nobody, so no user sees
    /// it; the app sees it with `"lost": true`.
    pub fn lost(number: MessageNumber) -> Self {
        Self {
            number,
            sender: String::new(),
            recipients: Some(Vec::new()),
            body: String::new(),
            client_id: None,
            sent_at_us: 0,
        }
    }

    pub fn is_lost(&self) -> bool {
        self.sender.is_empty()
    }

    /// Whether `user` may see this message: its sender, one of its
    /// recipients, or anyone when it is addressed to every subscriber.
    pub fn is_visible_to(&self, user: &str) -> bool {
        self.sender == user
            || self
                .recipients
                .as_ref()
                .is_none_or(|recipients| recipients.iter().any(|r| r == user))
    }
}

/// One page of an ordered listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// More items exist past the last one returned, in the paging direction.
    pub has_more: bool,
}

/// Which messages of a chat to read. Numbers are exclusive bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub after: Option<MessageNumber>,
    pub before: Option<MessageNumber>,
    pub limit: usize,
    /// Only messages this user may see; `None` reads as the app (everything).
    pub viewer: Option<String>,
}

impl HistoryQuery {
    /// With `after` the page starts right after it and moves forward; without,
    /// it ends right before `before` (or at the newest message) and the page
    /// holds the newest `limit` messages of that range. Pages are always
    /// returned in ascending number order.
    pub fn is_forward(&self) -> bool {
        self.after.is_some()
    }
}

pub use chat_wire::{BatchReceipt, ChatVersion};

/// What a chat's owner shard needs to start serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatState {
    pub chat: Chat,
    pub subscribers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("app not found")]
    AppNotFound,
    #[error("chat not found")]
    ChatNotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(
        "the app has used every chat number up to {}",
        chat_wire::limits::NUMBER_MAX
    )]
    NumbersExhausted,
    #[error("chat has more than {0} subscribers")]
    TooManySubscribers(usize),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A message below the chat's count is gone: a store that acknowledged
    /// writes before they were on disk lost them (ScyllaDB with periodic
    /// commit-log sync). `chat repair` marks such numbers as lost.
    #[error(
        "message {chat}/{number} is missing below the chat's count: the store lost an \
         acknowledged write; `chat repair --app <app> --chat {chat}` marks lost messages"
    )]
    MessagesLost {
        chat: ChatNumber,
        number: MessageNumber,
    },
    #[error(
        "the store's schema is version {found}, newer than version {known} that this build knows"
    )]
    SchemaTooNew { found: u32, known: u32 },
    #[error("storage engine: {0}")]
    Engine(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Most subscribers one chat may have: bounds the subscriber set the engine
/// loads and keeps per chat.
pub const SUBSCRIBERS_PER_CHAT_MAX: usize = 100_000;

/// Most stored messages one history read scans to fill a page for a viewer
/// who may see only some of them; past it the page ends early with `has_more`.
pub const HISTORY_SCAN_MAX: usize = 10_000;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations; returns the schema version now in force.
    async fn migrate(&self) -> StoreResult<u32>;

    async fn create_app(
        &self,
        title: String,
        token_hash: TokenHash,
        now_us: i64,
    ) -> StoreResult<App>;
    async fn app(&self, app: AppId) -> StoreResult<Option<App>>;
    async fn app_by_token(&self, token_hash: TokenHash) -> StoreResult<Option<App>>;
    async fn rename_app(&self, app: AppId, title: String) -> StoreResult<App>;

    /// Creates the app's next chat: number = highest number so far + 1.
    async fn create_chat(
        &self,
        app: AppId,
        title: Option<String>,
        now_us: i64,
    ) -> StoreResult<Chat>;
    async fn chat(&self, app: AppId, chat: ChatNumber) -> StoreResult<Option<Chat>>;
    async fn chats(&self, app: AppId, after: ChatNumber, limit: usize) -> StoreResult<Page<Chat>>;

    /// Returns whether the subscription is new.
    async fn subscribe(&self, app: AppId, chat: ChatNumber, user: String) -> StoreResult<bool>;
    /// Returns whether a subscription existed.
    async fn unsubscribe(&self, app: AppId, chat: ChatNumber, user: String) -> StoreResult<bool>;
    async fn subscribers(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Option<String>,
        limit: usize,
    ) -> StoreResult<Page<String>>;
    /// Whether `user` is a member of the chat (`ChatNotFound` if there is no chat).
    async fn is_subscribed(&self, app: AppId, chat: ChatNumber, user: String) -> StoreResult<bool>;
    /// Which of `chats` `user` is a member of now (missing chats are not),
    /// in ascending order: what a WebSocket sync checks before it serves.
    async fn memberships(
        &self,
        app: AppId,
        user: String,
        chats: Vec<ChatNumber>,
    ) -> StoreResult<Vec<ChatNumber>>;
    /// The chats `user` is a member of now, ascending, after `after` (0 for
    /// the first page): the member's side of the subscriptions, which search
    /// and the member feed read.
    async fn user_chats(
        &self,
        app: AppId,
        user: String,
        after: ChatNumber,
        limit: usize,
    ) -> StoreResult<Page<ChatNumber>>;
    /// The chat with its whole subscriber set, for the engine.
    async fn chat_state(&self, app: AppId, chat: ChatNumber) -> StoreResult<Option<ChatState>>;

    /// Moves `user`'s read position in the chat forward to `number` (the
    /// highest message number they have read) and returns the position in
    /// force after: a `number` at or below it changes nothing. Durable when
    /// it returns. `ChatNotFound` if there is no chat; membership and the
    /// chat's count are the caller's to check. A position outlives the
    /// membership: a member who rejoins resumes from it.
    async fn mark_read(
        &self,
        app: AppId,
        chat: ChatNumber,
        user: String,
        number: MessageNumber,
    ) -> StoreResult<MessageNumber>;
    /// The read positions of `users` in the chat, in their order: 0 for a
    /// user who never marked it read. `users` is ascending without
    /// duplicates (a page of subscribers is), at most a page long.
    async fn read_positions(
        &self,
        app: AppId,
        chat: ChatNumber,
        users: Vec<String>,
    ) -> StoreResult<Vec<MessageNumber>>;

    /// Commits a validated batch atomically and durably; idempotent.
    async fn commit_batch(&self, batch: Batch) -> StoreResult<BatchReceipt>;
    async fn messages(
        &self,
        app: AppId,
        chat: ChatNumber,
        query: HistoryQuery,
    ) -> StoreResult<Page<Message>>;

    /// Fills every number below the chat's count that has no stored message
    /// with a lost placeholder ([`Message::lost`]), so that history reads and
    /// the engine's load work again; returns the numbers filled. A store
    /// that fsyncs before it acknowledges (the embedded one) never needs it.
    async fn repair_chat(&self, app: AppId, chat: ChatNumber) -> StoreResult<Vec<MessageNumber>>;

    /// Makes everything written so far durable; called on shutdown.
    async fn flush(&self) -> StoreResult<()>;

    /// Writes one tiny record as durably as every other write (the health
    /// check's probe): `Ok` only if the store can take writes now. It
    /// touches no data of any app; the record is overwritten each time.
    async fn probe_write(&self) -> StoreResult<()>;
}
