//! The Redis read cache (optional: `CHAT_REDIS_URL`): every chat's most
//! recent messages, written after each durable commit and read by history
//! pages, so that reads of recent history take no store read.
//!
//! Exactness first. The cache never answers what the store would not:
//! - it holds, per chat, one contiguous range `lo..=hi` whose `hi` is the
//!   chat's newest message (`scripts`), and a page is answered only when
//!   every message the store's scan would look at is in it (`page`);
//! - the commit path queues the batch's messages for the writer task and
//!   counts them per chat; a read of a chat with a queued write not yet
//!   applied goes to the store, so an acknowledged message is never missing
//!   from an answer;
//! - any write that fails or times out makes the whole cache unusable at
//!   once, and the next use starts a new generation (every key name holds
//!   it): nothing written before a lost write is ever read again. The same
//!   happens at start, so a crash between a commit and its cache write
//!   leaves nothing stale behind;
//! - one API process writes a Redis: a lease (renewed every
//!   `LEASE_RENEW_MS`) keeps a second from using it while the first lives.
//!
//! Availability second: Redis down, slow or flushed never fails or slows a
//! write (the commit only queues, and a full queue drops the cache, not
//! the write) and never fails a read (each Redis call is bounded by
//! `timeout_ms`, then the store answers). A flushed Redis holds no range,
//! so it reads as a miss.
//!
//! Sizing: one cached message is its JSON record (about 60 bytes plus the
//! body, the sender and the recipients) in a sorted set (about 80 bytes of
//! Redis overhead), so a chat of the default 200 messages of 200-byte bodies
//! takes about 70 KB, and Redis's memory is bounded by the chats read or
//! written within the expiry (`ttl_s`, renewed by every write).

mod chat_members;
mod connection;
mod memberships;
mod page;
mod record;
mod scripts;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chat_wire::Batch;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, mpsc};

use self::connection::RedisConnection;
use self::page::CachedRange;
use crate::metrics::OutcomeLabels;
use crate::store::{
    AppId, BatchReceipt, ChatNumber, HistoryQuery, Message, MessageNumber, Page, Store, StoreResult,
};

/// Messages cached per chat (`CHAT_CACHE_CHAT_MESSAGES`).
pub const CHAT_MESSAGES_DEFAULT: usize = 200;
/// Seconds a chat's cache lives after its last write (`CHAT_CACHE_TTL_S`).
pub const TTL_S_DEFAULT: u64 = 86_400;
/// Longest wait for one Redis call (`CHAT_REDIS_TIMEOUT_MS`); past it a
/// read goes to the store and a write drops the cache.
pub const TIMEOUT_MS_DEFAULT: u64 = 20;
/// Batches queued for the writer task; past it the cache is dropped (the
/// write itself never waits).
const WRITE_QUEUE_MAX: usize = 4_096;
/// A fill older than this when the writer gets to it is dropped: the chat
/// writes it was checked against are forgotten after `CHAT_WRITES_KEPT`.
const FILL_AGE_MAX: Duration = Duration::from_secs(5);
/// How long a chat's write counts are kept after its last write.
const CHAT_WRITES_KEPT: Duration = Duration::from_secs(60);
const LEASE_TTL_MS: u64 = 15_000;
const LEASE_RENEW_MS: u64 = 5_000;
/// Between attempts to start a generation while Redis is away.
const RETRY_MS: u64 = 1_000;
/// At most one warning about Redis per this many seconds.
const WARN_EVERY_S: u64 = 10;
/// The first part of every key (`CHAT_CACHE_NAMESPACE`): deployments that
/// share a Redis each take their own.
pub const NAMESPACE_DEFAULT: &str = "chat";

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    pub namespace: String,
    pub chat_messages_max: usize,
    pub ttl_s: u64,
    pub timeout_ms: u64,
}

impl CacheConfig {
    pub fn new(url: String) -> Self {
        Self {
            url,
            namespace: NAMESPACE_DEFAULT.into(),
            chat_messages_max: CHAT_MESSAGES_DEFAULT,
            ttl_s: TTL_S_DEFAULT,
            timeout_ms: TIMEOUT_MS_DEFAULT,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.chat_messages_max == 0 || self.chat_messages_max > 100_000 {
            return Err("the cache holds 1 to 100000 messages per chat".into());
        }
        let namespace_ok = !self.namespace.is_empty()
            && self.namespace.len() <= 64
            && self
                .namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !namespace_ok {
            return Err("the cache namespace is 1 to 64 of a-z, A-Z, 0-9, _ and -".into());
        }
        if self.ttl_s == 0 || self.timeout_ms == 0 {
            return Err("the cache's expiry and timeout must be above 0".into());
        }
        Ok(())
    }
}

type ChatKey = (AppId, ChatNumber);
type UserKey = (AppId, String);

/// One membership that may have changed: `user` joined or left `chat`.
#[derive(Debug, Clone)]
pub struct MembershipChange {
    pub app: AppId,
    pub chat: ChatNumber,
    pub user: String,
}

pub use self::chat_members::MEMBERS_CACHED_MAX;
pub use self::memberships::ChatsLookup;

/// A batch's messages by chat, copied (once) before the store takes the
/// batch, for `ReadCache::after_commit`.
pub struct BatchMessages {
    by_chat: HashMap<ChatKey, Vec<Message>>,
    /// The members of the batch's implicit chat creations: whether or not
    /// a creation took effect, their cached chat sets are forgotten.
    joined: Vec<MembershipChange>,
}

impl BatchMessages {
    pub fn of(batch: &Batch) -> Self {
        let mut by_chat: HashMap<ChatKey, Vec<Message>> = HashMap::new();
        for message in &batch.messages {
            by_chat
                .entry((message.app, message.chat))
                .or_default()
                .push(Message {
                    number: message.number,
                    sender: message.sender.clone(),
                    recipients: message.recipients.clone(),
                    body: message.body.clone(),
                    client_id: message.client_id.clone(),
                    sent_at_us: message.sent_at_us,
                });
        }
        let joined = batch
            .chats
            .iter()
            .flat_map(|chat| {
                chat.subscribers.iter().map(|user| MembershipChange {
                    app: chat.app,
                    chat: chat.number,
                    user: user.clone(),
                })
            })
            .collect();
        Self { by_chat, joined }
    }
}

pub struct ReadCache {
    connection: RedisConnection,
    config: CacheConfig,
    state: Mutex<State>,
    writes: mpsc::Sender<Write>,
    /// Wakes the keeper to start a new generation.
    dropped: Notify,
    /// This process's lease value.
    owner: String,
    /// Set by `stop`: the keeper ends and takes no lease again.
    stopped: AtomicBool,
    metrics: CacheMetrics,
    last_warning: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct State {
    /// The generation in use; `None` while the cache is dropped.
    generation: Option<u64>,
    chats: HashMap<ChatKey, Writes>,
    /// Per member, the membership changes queued and applied (`memberships`).
    members: HashMap<UserKey, Writes>,
    /// Per chat, the changes of its member set queued and applied.
    chat_members: HashMap<ChatKey, Writes>,
    /// Chats whose fill from the store is under way.
    filling: HashSet<ChatKey>,
}

/// Writes queued and applied for one chat or one member: a read while one
/// is queued goes to the store.
struct Writes {
    queued: u64,
    applied: u64,
    queued_at: Instant,
}

impl Writes {
    /// Counts one more write queued for the entry's chat or member.
    fn count_queued<K>(entry: std::collections::hash_map::Entry<'_, K, Writes>, now: Instant) {
        let writes = entry.or_insert(Writes {
            queued: 0,
            applied: 0,
            queued_at: now,
        });
        writes.queued += 1;
        writes.queued_at = now;
    }

    fn is_pending(&self) -> bool {
        self.queued > self.applied
    }

    /// Whether the entry must stay: a write is pending, or a ticket taken
    /// against it may still come back to be checked.
    fn is_kept(&self, now: Instant) -> bool {
        self.is_pending() || now.duration_since(self.queued_at) < CHAT_WRITES_KEPT
    }
}

/// What a read saw of one chat's or one member's writes, for a fill from
/// the store's answer to it: the fill lands only if nothing was queued
/// for it since, in the same generation, and soon enough.
pub struct Ticket<K> {
    generation: u64,
    key: K,
    queued: u64,
    taken_at: Instant,
}

impl<K> Ticket<K> {
    /// `None` while a write is pending: the store must answer, and its
    /// answer may not fill.
    fn take(generation: u64, key: K, writes: Option<&Writes>) -> Option<Self> {
        if writes.is_some_and(Writes::is_pending) {
            return None;
        }
        Some(Self {
            generation,
            key,
            queued: writes.map_or(0, |w| w.queued),
            taken_at: Instant::now(),
        })
    }

    fn is_current(&self, generation: Option<u64>, writes: Option<&Writes>) -> bool {
        generation == Some(self.generation)
            && writes.map_or(0, |w| w.queued) == self.queued
            && self.taken_at.elapsed() < FILL_AGE_MAX
    }
}

enum Write {
    Append {
        generation: u64,
        chats: Vec<(ChatKey, Vec<Message>)>,
    },
    Fill(Fill),
    /// Members whose chats changed: their cached chat sets are deleted.
    Forget {
        generation: u64,
        changes: Vec<MembershipChange>,
    },
    FillMembers(chat_members::MembersFill),
    FillChats(memberships::ChatsFill),
}

struct Fill {
    ticket: FillTicket,
    messages: Vec<Message>,
}

/// What a history read saw of its chat.
pub type FillTicket = Ticket<ChatKey>;

pub enum Lookup {
    Hit(Page<Message>),
    /// Not answerable from the cache; the ticket lets the store's answer
    /// fill it.
    Miss(Option<FillTicket>),
}

impl ReadCache {
    /// Connects lazily: the API starts whether or not Redis is up, and the
    /// cache comes into use once a generation has started.
    pub fn start(config: CacheConfig, registry: &mut Registry) -> anyhow::Result<Arc<Self>> {
        config.validate().map_err(anyhow::Error::msg)?;
        let connection = RedisConnection::open(
            &config.url,
            Duration::from_millis(config.timeout_ms),
            Duration::from_millis(RETRY_MS),
        )?;
        let (writes, queue) = mpsc::channel(WRITE_QUEUE_MAX);
        let mut owner = [0u8; 16];
        getrandom::fill(&mut owner).map_err(|error| anyhow::anyhow!("random lease: {error}"))?;
        let cache = Arc::new(Self {
            connection,
            config,
            state: Mutex::default(),
            writes,
            dropped: Notify::new(),
            owner: owner.iter().map(|b| format!("{b:02x}")).collect(),
            stopped: AtomicBool::new(false),
            metrics: CacheMetrics::register(registry),
            last_warning: Mutex::new(None),
        });
        tokio::spawn(Arc::clone(&cache).keep());
        tokio::spawn(Arc::clone(&cache).write_all(queue));
        Ok(cache)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves plain counters: still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    /// Queues a committed batch's messages (those of the chats the store did
    /// not refuse) for the writer. Never waits.
    pub fn after_commit(&self, messages: BatchMessages, receipt: &BatchReceipt) {
        let BatchMessages {
            mut by_chat,
            joined,
        } = messages;
        self.forget_memberships(joined);
        for refused in &receipt.refused {
            by_chat.remove(&(refused.app, refused.chat));
        }
        if by_chat.is_empty() {
            return;
        }
        let mut state = self.state();
        let Some(generation) = state.generation else {
            return;
        };
        let now = Instant::now();
        for chat in by_chat.keys() {
            Writes::count_queued(state.chats.entry(*chat), now);
        }
        let write = Write::Append {
            generation,
            chats: by_chat.into_iter().collect(),
        };
        if self.writes.try_send(write).is_err() {
            drop(state);
            self.drop_cache("the write queue is full");
        }
    }

    /// A batch the store failed to commit may still have created its
    /// implicit chats: their members' cached chats are forgotten.
    pub fn after_failed_commit(&self, messages: BatchMessages) {
        self.forget_memberships(messages.joined);
    }

    /// Looks a history page up. A miss says whether the store's answer may
    /// fill the cache.
    pub async fn read(&self, app: AppId, chat: ChatNumber, query: &HistoryQuery) -> Lookup {
        let ticket = {
            let state = self.state();
            let Some(generation) = state.generation else {
                self.metrics.read("off");
                return Lookup::Miss(None);
            };
            let Some(ticket) = Ticket::take(generation, (app, chat), state.chats.get(&(app, chat)))
            else {
                self.metrics.read("writing");
                return Lookup::Miss(None);
            };
            ticket
        };
        let keys = self.keys(ticket.generation, app, chat);
        let (min, max, rev) = match (query.after, query.before) {
            (Some(after), before) => (
                after.saturating_add(1),
                before.map_or(u64::MAX, |b| b.saturating_sub(1)),
                false,
            ),
            (None, before) => (1, before.map_or(u64::MAX, |b| b.saturating_sub(1)), true),
        };
        // Without a viewer the page is the next `limit` numbers; with one,
        // the scan may go through everything the chat holds.
        let count = if query.viewer.is_none() {
            query.limit
        } else {
            self.config.chat_messages_max
        };
        let started = Instant::now();
        let mut invocation = scripts::READ.prepare_invoke();
        invocation
            .key(&keys.range)
            .key(&keys.messages)
            .arg(min)
            .arg(max)
            .arg(count)
            .arg(u8::from(rev));
        let mut connection = self.connection.clone();
        let answer = tokio::time::timeout(
            self.timeout(),
            invocation.invoke_async::<Vec<Vec<u8>>>(&mut connection),
        )
        .await;
        self.metrics.observe_redis(started.elapsed());
        let Some(members) = self.answer_of(answer, "reading the cache", |outcome| {
            self.metrics.read(outcome);
        }) else {
            return Lookup::Miss(None);
        };
        match answer_from(&members, rev, query) {
            Some(page) => {
                self.metrics.read("hit");
                Lookup::Hit(page)
            }
            None => {
                self.metrics.read("miss");
                Lookup::Miss(Some(ticket))
            }
        }
    }

    /// Fills the cache with the store's newest messages of a chat (`newest`:
    /// ascending, contiguous, ending at the chat's newest then), unless the
    /// chat was written since the read (the writer checks).
    fn fill(&self, ticket: FillTicket, newest: Vec<Message>) {
        let chat = ticket.key;
        let contiguous = newest.windows(2).all(|w| w[0].number + 1 == w[1].number);
        let queued = !newest.is_empty()
            && contiguous
            && self
                .writes
                .try_send(Write::Fill(Fill {
                    ticket,
                    messages: newest,
                }))
                .is_ok();
        if !queued {
            self.state().filling.remove(&chat);
        }
    }

    /// The writer task: applies queued writes in order, one batch (all its
    /// chats at once, pipelined on the one connection) at a time, so a
    /// chat's writes reach Redis in commit order.
    async fn write_all(self: Arc<Self>, mut queue: mpsc::Receiver<Write>) {
        while let Some(write) = queue.recv().await {
            match write {
                Write::Append { generation, chats } => self.append(generation, chats).await,
                Write::Fill(fill) => self.apply_fill(fill).await,
                Write::Forget {
                    generation,
                    changes,
                } => self.forget(generation, changes).await,
                Write::FillMembers(fill) => self.apply_members_fill(fill).await,
                Write::FillChats(fill) => self.apply_chats_fill(fill).await,
            }
        }
    }

    async fn append(&self, generation: u64, chats: Vec<(ChatKey, Vec<Message>)>) {
        if self.state().generation != Some(generation) {
            return;
        }
        let keep = self.config.chat_messages_max;
        let ttl_s = self.config.ttl_s;
        let started = Instant::now();
        let calls = chats.iter().map(|((app, chat), messages)| {
            let keys = self.keys(generation, *app, *chat);
            let mut connection = self.connection.clone();
            async move {
                let (first, last) = span(messages);
                let mut invocation = scripts::APPEND.prepare_invoke();
                invocation
                    .key(&keys.range)
                    .key(&keys.messages)
                    .arg(first)
                    .arg(last)
                    .arg(keep)
                    .arg(ttl_s);
                for message in messages {
                    invocation.arg(record::encode(message));
                }
                invocation.invoke_async::<i64>(&mut connection).await
            }
        });
        let outcome =
            tokio::time::timeout(self.timeout(), futures_util::future::join_all(calls)).await;
        self.metrics.observe_redis(started.elapsed());
        let failure = match outcome {
            Err(_) => Some("writing the cache timed out".to_string()),
            Ok(results) => results
                .into_iter()
                .find_map(|result| result.err())
                .map(|error| format!("writing the cache failed: {error}")),
        };
        if let Some(reason) = failure {
            self.metrics.write("error");
            return self.drop_cache(&reason);
        }
        self.metrics.write("ok");
        let mut state = self.state();
        if state.generation == Some(generation) {
            for (chat, _) in &chats {
                if let Some(writes) = state.chats.get_mut(chat) {
                    writes.applied += 1;
                }
            }
            let now = Instant::now();
            state.chats.retain(|_, w| w.is_kept(now));
        }
    }

    async fn apply_fill(&self, fill: Fill) {
        let ticket = &fill.ticket;
        let valid = {
            let mut state = self.state();
            state.filling.remove(&ticket.key);
            ticket.is_current(state.generation, state.chats.get(&ticket.key))
        };
        if !valid {
            self.metrics.write("fill_dropped");
            return;
        }
        let (first, last) = span(&fill.messages);
        let (app, chat) = ticket.key;
        let keys = self.keys(ticket.generation, app, chat);
        let mut invocation = scripts::FILL.prepare_invoke();
        invocation
            .key(&keys.range)
            .key(&keys.messages)
            .arg(first)
            .arg(last)
            .arg(self.config.chat_messages_max)
            .arg(self.config.ttl_s);
        for message in &fill.messages {
            invocation.arg(record::encode(message));
        }
        let mut connection = self.connection.clone();
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            self.timeout(),
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await;
        self.metrics.observe_redis(started.elapsed());
        // A fill that failed only leaves the cache holding less: no drop.
        match outcome {
            Ok(Ok(_)) => self.metrics.write("fill"),
            _ => self.metrics.write("fill_error"),
        }
    }

    /// Makes the cache unusable until the keeper starts a new generation.
    fn drop_cache(&self, reason: &str) {
        {
            let mut state = self.state();
            if state.generation.take().is_none() {
                return;
            }
            state.chats.clear();
            state.members.clear();
            state.chat_members.clear();
            state.filling.clear();
        }
        self.metrics.ready.set(0);
        self.metrics.drops.inc();
        self.warn(&format!(
            "{reason}; the cache is off until Redis answers again"
        ));
        self.dropped.notify_one();
    }

    /// Keeps a generation in use: takes the lease and a new generation
    /// number, then renews the lease; starts over whenever the cache was
    /// dropped or the lease could not be renewed.
    async fn keep(self: Arc<Self>) {
        while !self.stopped.load(Ordering::SeqCst) {
            let generation = loop {
                if self.stopped.load(Ordering::SeqCst) {
                    return;
                }
                match self.begin().await {
                    Ok(Some(generation)) => break generation,
                    Ok(None) => self
                        .warn("another API process holds the cache's lease; the cache stays off"),
                    Err(error) => self.warn(&format!("Redis is unavailable: {error}")),
                }
                tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
            };
            {
                let mut state = self.state();
                if self.stopped.load(Ordering::SeqCst) {
                    return;
                }
                state.chats.clear();
                state.members.clear();
                state.chat_members.clear();
                state.chat_members.clear();
                state.filling.clear();
                state.generation = Some(generation);
            }
            self.metrics.ready.set(1);
            tracing::info!(generation, "the read cache is in use");
            loop {
                let renew = tokio::time::sleep(Duration::from_millis(LEASE_RENEW_MS));
                tokio::select! {
                    () = renew => {}
                    () = self.dropped.notified() => break,
                }
                if self.stopped.load(Ordering::SeqCst) {
                    return;
                }
                if !matches!(self.lease().await, Ok(true)) {
                    self.drop_cache("the cache's lease could not be renewed");
                    break;
                }
            }
        }
    }

    /// On shutdown: stops using the cache and hands the lease back, so the
    /// next API process takes it at once instead of after `LEASE_TTL_MS`.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.drop_cache("the API is stopping");
        self.dropped.notify_one();
        let mut invocation = scripts::RELEASE.prepare_invoke();
        invocation
            .key(format!("{}:cache:lease", self.config.namespace))
            .arg(&self.owner);
        let mut connection = self.connection.clone();
        let _ = tokio::time::timeout(
            Duration::from_millis(RETRY_MS),
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await;
    }

    /// Takes the lease and a new generation; `None` when another process
    /// holds the lease.
    async fn begin(&self) -> Result<Option<u64>, String> {
        if !self.lease().await? {
            return Ok(None);
        }
        let mut connection = self.connection.clone();
        let generation = tokio::time::timeout(
            Duration::from_millis(RETRY_MS),
            redis::cmd("INCR")
                .arg(format!("{}:cache:generation", self.config.namespace))
                .query_async::<u64>(&mut connection),
        )
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|error| error.to_string())?;
        Ok(Some(generation))
    }

    async fn lease(&self) -> Result<bool, String> {
        let mut invocation = scripts::LEASE.prepare_invoke();
        invocation
            .key(format!("{}:cache:lease", self.config.namespace))
            .arg(&self.owner)
            .arg(LEASE_TTL_MS);
        let mut connection = self.connection.clone();
        tokio::time::timeout(
            Duration::from_millis(RETRY_MS),
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await
        .map_err(|_| "timed out".to_string())?
        .map(|taken| taken == 1)
        .map_err(|error| error.to_string())
    }

    /// A chat's two keys in a generation. The braces are a Redis Cluster
    /// hash tag: both keys of a chat live on one node, as a script needs.
    fn keys(&self, generation: u64, app: AppId, chat: ChatNumber) -> Keys {
        let namespace = &self.config.namespace;
        Keys {
            range: format!("{namespace}:cache:{{{app}:{chat}}}:{generation}:range"),
            messages: format!("{namespace}:cache:{{{app}:{chat}}}:{generation}:messages"),
        }
    }

    /// A read's answer, or `None` when Redis failed it or did not answer
    /// in time: counted (`error`, `timeout`) with `count` and warned of.
    fn answer_of<T>(
        &self,
        answer: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
        what: &str,
        count: impl Fn(&'static str),
    ) -> Option<T> {
        match answer {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                count("error");
                self.warn(&format!("{what} failed: {error}"));
                None
            }
            Err(_) => {
                count("timeout");
                self.warn(&format!("{what} timed out"));
                None
            }
        }
    }

    /// A warning at most every `WARN_EVERY_S`.
    fn warn(&self, message: &str) {
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(WARN_EVERY_S)) {
            *last = Some(Instant::now());
            tracing::warn!("read cache: {message}");
        }
    }
}

/// The page `query` asks for from a READ script's answer, if it holds it.
fn answer_from(members: &[Vec<u8>], rev: bool, query: &HistoryQuery) -> Option<Page<Message>> {
    let [lo, hi, members @ ..] = members else {
        return None;
    };
    let number = |bytes: &[u8]| -> Option<u64> { std::str::from_utf8(bytes).ok()?.parse().ok() };
    let (lo, hi) = (number(lo)?, number(hi)?);
    let mut messages = members
        .iter()
        .map(|member| record::decode(member))
        .collect::<Option<Vec<Message>>>()?;
    if rev {
        messages.reverse();
    }
    let contiguous = messages.windows(2).all(|w| w[0].number + 1 == w[1].number);
    let first = messages.first().map_or(hi + 1, |m| m.number);
    let within = messages.last().is_none_or(|m| m.number <= hi) && first >= lo;
    if !contiguous || !within {
        return None;
    }
    page::page(
        &CachedRange {
            first,
            hi,
            messages: &messages,
        },
        query,
    )
}

fn span(messages: &[Message]) -> (MessageNumber, MessageNumber) {
    let first = messages.first().map_or(0, |m| m.number);
    let last = messages.last().map_or(0, |m| m.number);
    assert_eq!(
        last + 1 - first,
        messages.len() as u64,
        "a chat's messages in a batch or a fill are consecutive"
    );
    (first, last)
}

struct Keys {
    range: String,
    messages: String,
}

/// History through the cache when there is one: a hit answers, a miss asks
/// the store, and a newest page the store answered fills the cache (for a
/// member's page, filtered, by one unfiltered read of the chat's newest).
pub async fn messages(
    cache: Option<&Arc<ReadCache>>,
    store: &Arc<dyn Store>,
    app: AppId,
    chat: ChatNumber,
    query: HistoryQuery,
) -> StoreResult<Page<Message>> {
    let Some(cache) = cache else {
        return store.messages(app, chat, query).await;
    };
    let ticket = match cache.read(app, chat, &query).await {
        Lookup::Hit(page) => return Ok(page),
        Lookup::Miss(ticket) => ticket,
    };
    let newest = query.after.is_none() && query.before.is_none();
    let page = store.messages(app, chat, query.clone()).await?;
    let Some(ticket) = ticket.filter(|_| newest) else {
        return Ok(page);
    };
    if query.viewer.is_none() {
        cache.fill(ticket, page.items.clone());
    } else if cache.state().filling.insert(ticket.key) {
        let cache = Arc::clone(cache);
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let all = HistoryQuery {
                after: None,
                before: None,
                limit: cache.config.chat_messages_max,
                viewer: None,
            };
            match store.messages(app, chat, all).await {
                Ok(newest) => cache.fill(ticket, newest.items),
                Err(_) => {
                    cache.state().filling.remove(&ticket.key);
                }
            }
        });
    }
    Ok(page)
}

struct CacheMetrics {
    reads: Family<OutcomeLabels, Counter>,
    membership_reads: Family<OutcomeLabels, Counter>,
    writes: Family<OutcomeLabels, Counter>,
    redis_seconds: Histogram,
    drops: Counter,
    ready: Gauge,
}

impl CacheMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reads: Family::default(),
            membership_reads: Family::default(),
            writes: Family::default(),
            redis_seconds: chat_http_metrics::latency_histogram(),
            drops: Counter::default(),
            ready: Gauge::default(),
        };
        registry.register(
            "cache_reads",
            "History reads through the Redis cache, by outcome (hit; miss: the store \
             answered and may fill it; writing: a write of the chat was still queued; off: \
             the cache was dropped; error, timeout: Redis failed and the store answered)",
            metrics.reads.clone(),
        );
        registry.register(
            "cache_membership_reads",
            "Membership reads through the Redis cache (a member's chats for the feed, \
             a chat's members for the engine's sync check), by outcome (as cache_reads)",
            metrics.membership_reads.clone(),
        );
        registry.register(
            "cache_writes",
            "Cache writes, by outcome (ok, error; fill, fill_dropped, fill_error; forget: a \
             member's chats forgotten)",
            metrics.writes.clone(),
        );
        registry.register(
            "cache_redis_seconds",
            "Latency of the cache's Redis calls",
            metrics.redis_seconds.clone(),
        );
        registry.register(
            "cache_drops",
            "Times the cache was dropped (a failed write, a full queue, a lost lease)",
            metrics.drops.clone(),
        );
        registry.register(
            "cache_ready",
            "1 while the cache is in use",
            metrics.ready.clone(),
        );
        metrics
    }

    fn membership_read(&self, outcome: &'static str) {
        self.membership_reads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    fn read(&self, outcome: &'static str) {
        self.reads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    fn write(&self, outcome: &'static str) {
        self.writes.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    fn observe_redis(&self, elapsed: Duration) {
        self.redis_seconds.observe(elapsed.as_secs_f64());
    }
}
