//! The owner side of a shard: the chats whose hash lands here. Only the
//! owner numbers a chat's messages, so numbering needs no lock; it batches
//! them (group commit), and after each batch is durable it answers the
//! senders and fans the messages out to every shard.
//!
//! Numbers on the hot path (this 2-core machine): an fsynced commit costs
//! about 0.3 ms plus 5 µs a message, so one shard commits ~150k messages/s
//! in batches of 1024. A message leaves for the store at once when no
//! batch is in flight; under load batches fill while they wait (`batcher`).

mod backfill;
mod batcher;
pub mod chat;
mod loader;
mod presence;
mod read_events;
mod typing;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use chat_wire::limits::NUMBER_MAX;
use chat_wire::{NewChat, NewMessage};

use self::chat::{ChatState, Waiting};
use crate::api_client::ApiClient;
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::home::HomeShard;
use crate::limits::SYNC_MESSAGES_MAX;
use crate::metrics::ShardMetrics;
use crate::router::{
    ChatKey, Delivery, Reply, Router, SendOutcome, SendRequest, ShardMessage, SyncRequest,
    SyncResult, ToHome, ToOwner,
};

pub use batcher::flush;

/// Requests one chat may hold while it loads.
const WAITING_PER_CHAT_MAX: usize = 10_000;
/// Chats one owner shard holds in memory; past it the idlest tenth is
/// forgotten (and read again from the store on next use). With the default
/// ring of 256 messages of ~500 bytes that bounds rings to ~13 GB worst case
/// for full rings, ~100 MB for typical ones of a few messages.
const CHATS_HELD_MAX: usize = 100_000;

/// The owner part of a shard: the chats it owns, their batches and the
/// commit stream to the API. It talks to connections only by [`ToHome`]
/// messages (`to_home`): its own shard's home part gets them directly, the
/// others' over their inboxes. Nothing of the home part (connections,
/// flusher) is reachable from here but that one entrance.
pub struct OwnerShard {
    pub id: usize,
    pub config: Arc<EngineConfig>,
    pub router: Router,
    pub api: ApiClient,
    pub metrics: Arc<ShardMetrics>,
    pub chats: RefCell<Owner>,
    /// This shard's home part, for the answers and deliveries to its own
    /// connections.
    home: Rc<HomeShard>,
    shutting_down: Cell<bool>,
}

impl OwnerShard {
    pub fn new(
        id: usize,
        config: Arc<EngineConfig>,
        router: Router,
        metrics: Arc<ShardMetrics>,
        home: Rc<HomeShard>,
    ) -> Self {
        Self {
            id,
            api: ApiClient::new(config.api_addr, &config.internal_key),
            chats: RefCell::new(Owner::new(id, config.batch.in_flight_max)),
            config,
            router,
            metrics,
            home,
            shutting_down: Cell::new(false),
        }
    }

    /// The one entrance for requests from connections and publishes.
    pub fn handle(self: &Rc<Self>, message: ToOwner) {
        match message {
            ToOwner::Send(request) => handle_send(self, request),
            ToOwner::Sync(request) => handle_sync(self, request),
            ToOwner::Typing(request) => typing::handle(self, request),
            ToOwner::Presence(request) => presence::handle(self, request),
            ToOwner::ReadMoved(moved) => read_events::handle(self, moved),
        }
    }

    /// From now on sends are refused (`shutting_down`); what was accepted
    /// still commits.
    pub fn stop_accepting(&self) {
        self.shutting_down.set(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// Whether every accepted message is durable and answered.
    pub fn is_drained(&self) -> bool {
        let owner = self.chats.borrow();
        owner.backlog == 0 && owner.batches_in_flight() == 0
    }

    /// Hands a message to a connection's home shard: this shard's home part
    /// directly (no hop through its own inbox, which would queue it behind
    /// whatever the inbox holds), another's over its inbox.
    async fn to_home(&self, home: usize, message: ToHome) {
        if home == self.id {
            self.home.handle(message).await;
        } else {
            let _ = self.router.send_to(home, ShardMessage::Home(message)).await;
        }
    }

    /// Hands every shard's home part a message `make` builds for it (a
    /// frame for a user's or a chat's connections, a question), this one's
    /// last. A shard that stopped has no connections left to tell.
    pub async fn to_every_home(&self, make: impl Fn() -> ToHome) {
        for home in (0..self.router.shards()).filter(|&home| home != self.id) {
            let _ = self.router.send_to(home, ShardMessage::Home(make())).await;
        }
        self.home.handle(make()).await;
    }
}

pub struct Owner {
    pub chats: HashMap<ChatKey, ChatState>,
    /// Chats whose pending messages may go into a batch, in arrival order.
    ready: VecDeque<ChatKey>,
    /// Numbered messages not yet in a batch.
    pending_messages: usize,
    batches_in_flight: usize,
    /// Numbered messages not yet durable (pending and in flight).
    pub backlog: usize,
    /// A flush task is spawned and has not run yet.
    flush_armed: bool,
    /// Chats whose rings a sync backfill extended (`backfill`).
    extended: HashSet<ChatKey>,
    /// This shard's batch stream: its batches, numbered from 1, are
    /// applied by the API in that order (`batcher`).
    batch_stream: u64,
    /// The sequence number of the last batch that left.
    batch_seq: u64,
    /// Closed when the last batch that left has been settled: the next
    /// one's answer waits for it, so answers are settled in order.
    last_settled: Option<flume::Receiver<()>>,
    /// Batches one chat may have in flight (as many as the shard may).
    chat_batches_in_flight_max: usize,
}

impl Owner {
    pub fn new(shard: usize, batches_in_flight_max: usize) -> Self {
        Self {
            chats: HashMap::new(),
            ready: VecDeque::new(),
            pending_messages: 0,
            batches_in_flight: 0,
            backlog: 0,
            flush_armed: false,
            extended: HashSet::new(),
            batch_stream: batch_stream(shard),
            batch_seq: 0,
            last_settled: None,
            chat_batches_in_flight_max: batches_in_flight_max,
        }
    }

    fn mark_ready(&mut self, key: ChatKey) {
        let state = self
            .chats
            .get_mut(&key)
            .expect("a chat marked ready exists");
        if !state.queued && state.may_batch(self.chat_batches_in_flight_max) {
            state.queued = true;
            self.ready.push_back(key);
        }
    }

    pub fn batches_in_flight(&self) -> usize {
        self.batches_in_flight
    }

    /// The oldest batch of the stream not yet settled (the next to leave
    /// when none is in flight): batches settle in the order they left, so
    /// the ones in flight are the last `batches_in_flight` numbered.
    fn unsettled_from(&self) -> u64 {
        self.batch_seq + 1 - self.batches_in_flight as u64
    }
}

/// A stream id no other shard or process of this engine uses: the start
/// time in microseconds, with the shard in the low bits, within the
/// numbers the API accepts (1 to `NUMBER_MAX`).
fn batch_stream(shard: usize) -> u64 {
    const SHARD_BITS: u32 = 10;
    let started_us = u64::try_from(now_us()).unwrap_or(0);
    let slots = (NUMBER_MAX >> SHARD_BITS) - 1;
    let stream =
        ((started_us % slots + 1) << SHARD_BITS) | (shard as u64 & ((1 << SHARD_BITS) - 1));
    debug_assert!((1..=NUMBER_MAX).contains(&stream));
    stream
}

fn now_us() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// Answers a send now (a refusal, or a resend of a durable message): no
/// delivery of it follows, so the answer may take its own way.
pub(crate) fn answer(shard: &Rc<OwnerShard>, reply: Reply, outcome: SendOutcome) {
    if let Some((home, answer)) = reply.resolve(outcome) {
        let shard = Rc::clone(shard);
        crate::task::spawn(async move { shard.to_home(home, ToHome::Answer(answer)).await });
    }
}

/// Sends durable messages (each chat's in number order) to the connections
/// of every shard: the other shards first, over their inboxes, so that they
/// work on them while this one does; then this shard's own connections,
/// directly, without the hop through its own inbox (which would queue them
/// behind whatever the inbox holds), ending the scheduler pass every slice.
/// Every delivery of a chat to a shard takes one way, so each shard sees a
/// chat's messages in number order; a sync result, which a spawned task
/// carries, may pass a delivery or be passed by one, and the home merges
/// either way (`home` module).
async fn fan_out(shard: &Rc<OwnerShard>, deliveries: &[Arc<Delivery>]) {
    for target in (0..shard.router.shards()).filter(|&target| target != shard.id) {
        for delivery in deliveries {
            let message = ShardMessage::Home(ToHome::Deliver(Arc::clone(delivery)));
            let _ = shard.router.send_to(target, message).await;
        }
    }
    let limit = std::time::Duration::from_micros(shard.config.flusher_slice_us);
    let mut slice = crate::task::Slice::new(limit);
    for delivery in deliveries {
        shard
            .to_home(shard.id, ToHome::Deliver(Arc::clone(delivery)))
            .await;
        slice.step().await;
    }
}

/// A send arrives at its chat's owner.
fn handle_send(shard: &Rc<OwnerShard>, request: SendRequest) {
    let key = (request.app, request.chat);
    debug_assert_eq!(shard.router.owner_of(key.0, key.1), shard.id);
    if shard.is_shutting_down() {
        return answer(shard, request.reply, Err(EngineError::ShuttingDown));
    }
    let mut owner = shard.chats.borrow_mut();
    if owner.backlog >= shard.config.batch.backlog_messages_max {
        shard.metrics.overloaded.inc();
        return answer(shard, request.reply, Err(EngineError::Overloaded));
    }
    let state = load_if_absent(shard, &mut owner, key);
    if state.loading {
        if state.waiting.len() >= WAITING_PER_CHAT_MAX {
            shard.metrics.overloaded.inc();
            return answer(shard, request.reply, Err(EngineError::Overloaded));
        }
        state.waiting.push_back(Waiting::Send {
            request,
            refreshed: false,
        });
        return;
    }
    accept_send(shard, &mut owner, key, request, false);
}

/// A sync arrives at its chat's owner.
fn handle_sync(shard: &Rc<OwnerShard>, request: SyncRequest) {
    let key = (request.app, request.chat);
    let mut owner = shard.chats.borrow_mut();
    let state = load_if_absent(shard, &mut owner, key);
    if state.loading {
        if state.waiting.len() >= WAITING_PER_CHAT_MAX {
            return reply_sync(shard, request, Err(EngineError::Overloaded));
        }
        state.waiting.push_back(Waiting::Sync {
            request,
            refreshed: false,
        });
        return;
    }
    accept_sync(shard, &mut owner, key, request, false);
}

fn load_if_absent<'a>(
    shard: &Rc<OwnerShard>,
    owner: &'a mut Owner,
    key: ChatKey,
) -> &'a mut ChatState {
    if owner.chats.len() >= CHATS_HELD_MAX && !owner.chats.contains_key(&key) {
        evict_idlest(owner, CHATS_HELD_MAX / 10);
    }
    owner.chats.entry(key).or_insert_with(|| {
        loader::spawn_load(shard, key);
        ChatState::new(
            shard.config.ring_messages,
            shard.config.ring_messages + SYNC_MESSAGES_MAX,
            shard.config.idempotency_window,
        )
    })
}

/// Forgets up to `count` idle chats, least recently used first.
fn evict_idlest(owner: &mut Owner, count: usize) {
    let mut idle: Vec<(std::time::Instant, ChatKey)> = owner
        .chats
        .iter()
        .filter(|(_, state)| state.is_idle() && !state.queued)
        .map(|(key, state)| (state.used_at, *key))
        .collect();
    idle.sort_unstable();
    for (_, key) in idle.into_iter().take(count) {
        owner.chats.remove(&key);
    }
}

/// Queues a request behind a refresh of the chat's subscribers, so that a
/// subscription made a moment ago is seen before the request is refused.
fn refresh_then_retry(
    shard: &Rc<OwnerShard>,
    state: &mut ChatState,
    key: ChatKey,
    waiting: Waiting,
) {
    state.waiting.push_back(waiting);
    if !state.loading {
        state.loading = true;
        loader::spawn_load(shard, key);
    }
}

fn accept_send(
    shard: &Rc<OwnerShard>,
    owner: &mut Owner,
    key: ChatKey,
    request: SendRequest,
    refreshed: bool,
) {
    let state = owner
        .chats
        .get_mut(&key)
        .expect("accepting for a known chat");
    state.used_at = std::time::Instant::now();
    if let Some(id) = &request.client_id
        && let Some(number) = state.ids.get(&request.sender, id)
    {
        // A resend: the original's number, now or when it is durable.
        if number <= state.last_durable {
            return answer(shard, request.reply, Ok(number));
        }
        state.waiters.entry(number).or_default().push(request.reply);
        return;
    }
    if state.exists {
        if !request.as_app && !state.subscribers.contains(&request.sender) {
            if refreshed {
                return answer(shard, request.reply, Err(EngineError::NotSubscribed));
            }
            return refresh_then_retry(
                shard,
                state,
                key,
                Waiting::Send {
                    request,
                    refreshed: true,
                },
            );
        }
    } else {
        // The chat may have been made over REST since the engine looked:
        // read the store again before creating it. (The store still judges
        // the creation at commit: `chat_exists` if it lost a race.)
        if !refreshed {
            return refresh_then_retry(
                shard,
                state,
                key,
                Waiting::Send {
                    request,
                    refreshed: true,
                },
            );
        }
        // Implicit creation: the sender and the `to` users are its members.
        let mut members = vec![request.sender.clone()];
        members.extend(request.to.iter().flatten().cloned());
        members.sort_unstable();
        members.dedup();
        state.subscribers = Arc::new(members.iter().cloned().collect::<HashSet<_>>());
        state.create = Some(NewChat {
            app: key.0,
            number: key.1,
            subscribers: members,
            created_at_us: now_us(),
            by_app: request.as_app,
        });
        state.exists = true;
    }
    let Some(number) = state
        .last_assigned
        .checked_add(1)
        .filter(|&number| number <= NUMBER_MAX)
    else {
        return answer(shard, request.reply, Err(EngineError::ChatFull));
    };
    // Kept as given: the subscribers cached here may be older than the
    // store's (a REST change reaches the cache only with the chat's next
    // commit), so the live targets are cut to the subscribers after the
    // commit (`batcher::on_durable`), not now.
    let recipients = request.to.map(|mut to| {
        to.sort_unstable();
        to.dedup();
        to
    });
    state.last_assigned = number;
    state.last_sent_at_us = now_us().max(state.last_sent_at_us);
    if let Some(id) = &request.client_id {
        state.ids.insert(&request.sender, id, number);
    }
    state.pending.push(NewMessage {
        app: key.0,
        chat: key.1,
        number,
        sender: request.sender,
        recipients,
        body: request.body,
        client_id: request.client_id,
        sent_at_us: state.last_sent_at_us,
        as_app: request.as_app,
    });
    state.waiters.entry(number).or_default().push(request.reply);
    owner.backlog += 1;
    owner.pending_messages += 1;
    shard.metrics.owner_backlog.set(owner.backlog as u64);
    owner.mark_ready(key);
    batcher::schedule(shard, owner);
}

fn accept_sync(
    shard: &Rc<OwnerShard>,
    owner: &mut Owner,
    key: ChatKey,
    request: SyncRequest,
    refreshed: bool,
) {
    let state = owner.chats.get_mut(&key).expect("syncing a known chat");
    state.used_at = std::time::Instant::now();
    if !state.exists || !state.subscribers.contains(&request.user) {
        if refreshed {
            return reply_sync(shard, request, Err(EngineError::NotSubscribed));
        }
        return refresh_then_retry(
            shard,
            state,
            key,
            Waiting::Sync {
                request,
                refreshed: true,
            },
        );
    }
    let up_to = state.last_durable;
    if request.after >= up_to {
        return reply_sync(shard, request, Ok((Vec::new(), up_to)));
    }
    if up_to - request.after > SYNC_MESSAGES_MAX as u64 {
        return reply_sync(
            shard,
            request,
            Err(EngineError::SyncTooLarge(SYNC_MESSAGES_MAX)),
        );
    }
    let Some(request) = reply_from_ring(shard, &state.ring, request, up_to) else {
        shard.metrics.syncs_from_ring.inc();
        return;
    };
    shard.metrics.syncs_from_store.inc();
    backfill::sync_past_ring(shard, owner, key, request, up_to);
}

/// Answers a sync from the ring: what the user may see of (after, up_to].
/// Gives the request back when the ring no longer holds all of it.
fn reply_from_ring(
    shard: &Rc<OwnerShard>,
    ring: &chat::Ring,
    request: SyncRequest,
    up_to: u64,
) -> Option<SyncRequest> {
    let Some(range) = ring.range(request.after, up_to) else {
        return Some(request);
    };
    let missed = range
        .filter(|d| d.visible_to(&request.user))
        .cloned()
        .collect();
    reply_sync(shard, request, Ok((missed, up_to)));
    None
}

/// Sends a sync's result to the connection's home shard.
pub(crate) fn reply_sync(
    shard: &Rc<OwnerShard>,
    request: SyncRequest,
    outcome: Result<(Vec<Arc<crate::router::Delivery>>, u64), EngineError>,
) {
    let message = ToHome::SyncResult(SyncResult {
        conn: request.conn,
        chat: request.chat,
        outcome,
    });
    let shard = Rc::clone(shard);
    crate::task::spawn(async move { shard.to_home(request.home, message).await });
}

/// Runs the requests that waited for a load or refresh, until the chat
/// starts loading again (a request may ask for another refresh).
fn drain_waiting(shard: &Rc<OwnerShard>, owner: &mut Owner, key: ChatKey) {
    loop {
        let Some(state) = owner.chats.get_mut(&key) else {
            return;
        };
        if state.loading {
            return;
        }
        let Some(waiting) = state.waiting.pop_front() else {
            break;
        };
        match waiting {
            Waiting::Send { request, refreshed } => {
                accept_send(shard, owner, key, request, refreshed)
            }
            Waiting::Sync { request, refreshed } => {
                accept_sync(shard, owner, key, request, refreshed)
            }
            Waiting::Typing { request, refreshed } => {
                typing::accept(shard, owner, key, request, refreshed)
            }
            Waiting::Presence { request, refreshed } => {
                presence::accept(owner, key, request, refreshed, shard)
            }
        }
    }
    owner.mark_ready(key);
    batcher::schedule(shard, owner);
}
