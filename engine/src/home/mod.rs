//! The home side of a shard: the connections it accepted, indexed by (app,
//! user), and what arrives for them: live deliveries from every owner
//! shard, and sync results.
//!
//! Sync without gap or duplicate: while a chat of a connection syncs, its
//! live messages are held back. When the sync's result arrives (everything
//! up to the number the owner had made durable), the result and the held
//! messages go out merged in number order, without those the connection was
//! already sent (`delivered`: the numbers sent per chat, live or by earlier
//! syncs). A live message still on its way when the result went out is then
//! dropped by the same record; one at or below the number the client said
//! it had seen is dropped by a "floor", forgotten at the first live message
//! above it (per-chat order makes later ones higher).

mod delivered;
pub mod flusher;
pub mod outbound;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use chat_wire::ReadState;

use self::delivered::Delivered;
use self::flusher::Flusher;
use self::outbound::{CloseReason, Outbound};
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::frames;
use crate::limits::SYNC_BUFFER_MAX;
use crate::metrics::ShardMetrics;
use crate::router::{
    Answer, AppId, ChatKey, ChatNumber, ConnId, Delivery, MembersFrame, SyncResult, Targets,
    ToHome, UserFrame,
};

/// The maps fan-out touches for every receiver: foldhash, not SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Chats whose local members are remembered; past it the memory starts over.
const MEMBER_LISTS_MAX: usize = 16_384;

pub struct Conn {
    pub app: AppId,
    pub user: String,
    /// The `iat` of the token the connection was opened with, for revocation.
    pub issued_at: i64,
    pub out: Rc<Outbound>,
    /// Sends routed to their owners and not yet answered.
    sends_in_flight: usize,
    /// Chats syncing now: the sync they belong to, and their held live messages.
    syncing: FastMap<ChatNumber, Syncing>,
    /// Live messages at or below this number are dropped: the client said it
    /// has them. Forgotten at the first live message above it.
    floors: FastMap<ChatNumber, u64>,
    /// The numbers sent per chat, live or by syncs.
    delivered: FastMap<ChatNumber, Delivered>,
    /// Sync frames in progress, by their number.
    syncs: HashMap<u64, SyncFrame>,
    next_sync: u64,
}

#[derive(Default)]
pub struct Home {
    /// Boxed: the map then moves 16 bytes per connection when it grows,
    /// not the 232 of a `Conn`. Growing past 2,000 connections held one
    /// shard for 36 ms of CPU in a debug build (a larger map to allocate,
    /// fault in and fill at once, in one scheduler pass).
    conns: FastMap<ConnId, Box<Conn>>,
    users: FastMap<AppId, FastMap<String, Vec<ConnId>>>,
    next_id: ConnId,
    /// Changes whenever a connection comes or goes: member lists computed
    /// before are stale.
    epoch: u64,
    /// Per chat, the local connections of its subscribers, so that a message
    /// to a big chat walks a list instead of hashing every member's name.
    members: FastMap<ChatKey, MemberList>,
}

/// Connections a message goes to on this shard (see `Home::receivers`).
#[derive(Default)]
pub struct Receivers {
    listed: Rc<[ConnId]>,
    sender: Vec<ConnId>,
}

/// Connections whose frames are queued between two looks at the clock.
const DELIVERY_CHUNK: usize = 32;

/// The home part of a shard: its connections and the flusher that writes
/// them. It hears from owners only by [`ToHome`] messages (from another
/// shard's owner over the inbox, from its own shard's owner directly) and
/// never reaches into the owner part, so nothing here waits on a commit.
pub struct HomeShard {
    pub id: usize,
    pub config: Arc<EngineConfig>,
    pub metrics: Arc<ShardMetrics>,
    pub connections: RefCell<Home>,
    /// Writes the connections' queues after fan-out (see `flusher`).
    pub flusher: Rc<Flusher>,
}

impl HomeShard {
    pub fn new(id: usize, config: Arc<EngineConfig>, metrics: Arc<ShardMetrics>) -> Self {
        Self {
            id,
            config,
            metrics,
            connections: RefCell::new(Home::default()),
            flusher: Rc::new(Flusher::default()),
        }
    }

    /// The one entrance for what owners send back.
    pub async fn handle(&self, message: ToHome) {
        match message {
            ToHome::Answer(answer) => self.connections.borrow_mut().answer(answer),
            ToHome::Deliver(delivery) => self.deliver(&delivery).await,
            ToHome::SyncResult(result) => self
                .connections
                .borrow_mut()
                .sync_result(result, &self.metrics),
            ToHome::ToUser(frame) => self.connections.borrow().to_user(&frame),
            ToHome::ToMembers(frame) => self.connections.borrow().to_members(&frame),
            ToHome::ToConn(id, frame) => self.connections.borrow().to_conn(id, frame),
            ToHome::Online(query) => {
                let online = self
                    .connections
                    .borrow()
                    .online_of(query.app, &query.members);
                // The asker may have gone (a closed HTTP connection).
                let _ = query.reply.try_send(online);
            }
        }
    }

    /// Queues a durable message for this shard's connections of its
    /// receivers, a chunk at a time, ending the scheduler pass every
    /// `flusher_slice_us`: a message to thousands of local members costs
    /// about 0.3 µs each here (ten times that in a debug build), which must
    /// not hold the shard's I/O and timers any more than the writes do. The
    /// receivers are fixed when it starts: a connection that opens meanwhile
    /// gets the message by its sync, one that closes is skipped. Every
    /// delivery of a chat to this shard takes one sequential path (the inbox
    /// loop, or the owner's fan-out, which settles a chat's batches one
    /// after another), so none overtakes another of its chat.
    async fn deliver(&self, delivery: &Arc<Delivery>) {
        let receivers = self.connections.borrow_mut().receivers(delivery);
        let _delivering = self.flusher.delivering();
        let limit = std::time::Duration::from_micros(self.config.flusher_slice_us);
        let mut slice = crate::task::Slice::new(limit);
        let chunks = receivers
            .listed
            .chunks(DELIVERY_CHUNK)
            .chain(receivers.sender.chunks(DELIVERY_CHUNK));
        for chunk in chunks {
            self.connections
                .borrow_mut()
                .deliver_to(chunk, delivery, &self.metrics);
            slice.step().await;
        }
    }
}

/// One chat of a sync in progress.
struct Syncing {
    sync: u64,
    /// The number the client said it had seen.
    after: u64,
    held: Vec<Arc<Delivery>>,
    /// The user's read state from the membership check, once it answered.
    read: Option<ReadState>,
}

/// A sync frame in progress: its chats still to answer, and what the
/// answered ones reached, for its `synced` frame.
struct SyncFrame {
    remaining: usize,
    reached: BTreeMap<String, u64>,
    reads: BTreeMap<String, frames::SyncedRead>,
}

struct MemberList {
    /// The subscriber set the list was computed from (compared by address).
    subscribers: Arc<HashSet<String>>,
    epoch: u64,
    conns: Rc<[ConnId]>,
}

impl Home {
    /// Registers a connection; refuses one past the user's limit on this shard.
    pub fn register(
        &mut self,
        app: AppId,
        user: &str,
        issued_at: i64,
        out: Rc<Outbound>,
        per_user_max: usize,
    ) -> Result<ConnId, EngineError> {
        let ids = self
            .users
            .entry(app)
            .or_default()
            .entry(user.to_string())
            .or_default();
        if ids.len() >= per_user_max {
            return Err(EngineError::TooManyConnections);
        }
        self.next_id += 1;
        self.epoch += 1;
        let id = self.next_id;
        ids.push(id);
        let conn = Conn {
            app,
            user: user.to_string(),
            issued_at,
            out,
            sends_in_flight: 0,
            syncing: FastMap::default(),
            floors: FastMap::default(),
            delivered: FastMap::default(),
            syncs: HashMap::new(),
            next_sync: 0,
        };
        self.conns.insert(id, Box::new(conn));
        Ok(id)
    }

    pub fn unregister(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        self.epoch += 1;
        let Some(users) = self.users.get_mut(&conn.app) else {
            return;
        };
        if let Some(ids) = users.get_mut(&conn.user) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                users.remove(&conn.user);
            }
        }
        if users.is_empty() {
            self.users.remove(&conn.app);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn close_all(&self, reason: CloseReason) {
        for conn in self.conns.values() {
            conn.out.close(reason);
        }
    }

    /// Queues a frame on every connection of the user on this shard.
    pub fn to_user(&self, frame: &UserFrame) {
        let ids = self
            .users
            .get(&frame.app)
            .and_then(|users| users.get(&frame.user));
        for id in ids.into_iter().flatten() {
            if let Some(conn) = self.conns.get(id) {
                conn.out.push(frame.frame.clone());
            }
        }
    }

    /// Queues a frame on this shard's connections of the chat's members,
    /// but those of `except`.
    pub fn to_members(&self, frame: &MembersFrame) {
        let Some(users) = self.users.get(&frame.app) else {
            return;
        };
        for_each_local_member(users, &frame.members, |user, ids| {
            if *user == frame.except {
                return;
            }
            for id in ids {
                if let Some(conn) = self.conns.get(id) {
                    conn.out.push(frame.frame.clone());
                }
            }
        });
    }

    /// Which of `members` have a connection on this shard (a refused
    /// registration may leave a user with none).
    pub fn online_of(&self, app: AppId, members: &HashSet<String>) -> Vec<String> {
        let mut online = Vec::new();
        if let Some(users) = self.users.get(&app) {
            for_each_local_member(users, members, |user, ids| {
                if !ids.is_empty() {
                    online.push(user.clone());
                }
            });
        }
        online
    }

    /// Queues a frame on one connection, if it is still open.
    pub fn to_conn(&self, id: ConnId, frame: bytes::Bytes) {
        if let Some(conn) = self.conns.get(&id) {
            conn.out.push(frame);
        }
    }

    /// Closes the user's connections opened with a token issued before
    /// `revoked_at` (the revocation rule of `chat_token::RevocationList`).
    pub fn close_revoked(&self, app: AppId, user: &str, revoked_at: i64) {
        let ids = self.users.get(&app).and_then(|users| users.get(user));
        for id in ids.into_iter().flatten() {
            if let Some(conn) = self.conns.get(id)
                && conn.issued_at < revoked_at
            {
                conn.out.close(CloseReason::TokenRevoked);
            }
        }
    }

    /// This shard's connections that receive a message live: its targets'
    /// (from the chat's member list), and the sender's own when it is not
    /// a target.
    pub fn receivers(&mut self, delivery: &Delivery) -> Receivers {
        let Some(users) = self.users.get(&delivery.app) else {
            return Receivers::default();
        };
        // The sender gets its own message even when not a target.
        let sender_too;
        let listed: Rc<[ConnId]> = match &delivery.targets {
            Targets::Subscribers(subscribers) => {
                sender_too = !subscribers.contains(&delivery.sender);
                let key = (delivery.app, delivery.chat);
                match self.members.get(&key) {
                    Some(list)
                        if list.epoch == self.epoch
                            && Arc::ptr_eq(&list.subscribers, subscribers) =>
                    {
                        Rc::clone(&list.conns)
                    }
                    _ => {
                        let conns: Rc<[ConnId]> = local_members(users, subscribers).into();
                        if self.members.len() >= MEMBER_LISTS_MAX {
                            self.members.clear();
                        }
                        let list = MemberList {
                            subscribers: Arc::clone(subscribers),
                            epoch: self.epoch,
                            conns: Rc::clone(&conns),
                        };
                        self.members.insert(key, list);
                        conns
                    }
                }
            }
            Targets::Users(list) => {
                sender_too = !list.contains(&delivery.sender);
                list.iter()
                    .flat_map(|user| users.get(user).into_iter().flatten())
                    .copied()
                    .collect()
            }
        };
        let sender: &[ConnId] = match users.get(&delivery.sender) {
            Some(ids) if sender_too => ids,
            _ => &[],
        };
        Receivers {
            listed,
            sender: sender.to_vec(),
        }
    }

    /// Queues a message for these connections (those still open).
    pub fn deliver_to(&mut self, ids: &[ConnId], delivery: &Arc<Delivery>, metrics: &ShardMetrics) {
        for id in ids {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.deliver(delivery, metrics);
            }
        }
    }

    /// Queues a message for all its receivers at once (the benchmarks').
    pub fn deliver(&mut self, delivery: &Arc<Delivery>, metrics: &ShardMetrics) {
        let receivers = self.receivers(delivery);
        self.deliver_to(&receivers.listed, delivery, metrics);
        self.deliver_to(&receivers.sender, delivery, metrics);
    }

    /// The session presented a fresh token: revocations now judge its `iat`.
    pub fn set_issued_at(&mut self, id: ConnId, issued_at: i64) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.issued_at = issued_at;
        }
    }

    /// Sends of the connection awaiting their answer.
    pub fn sends_in_flight(&self, id: ConnId) -> usize {
        self.conns.get(&id).map_or(0, |conn| conn.sends_in_flight)
    }

    /// Counts a send routed to its owner; its answer uncounts it.
    pub fn send_started(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.sends_in_flight += 1;
        }
    }

    /// A send's routing failed: it gets no answer.
    pub fn send_abandoned(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.sends_in_flight = conn.sends_in_flight.saturating_sub(1);
        }
    }

    /// A send's outcome: the ack, or the error, for the sending connection.
    pub fn answer(&mut self, answer: Answer) {
        let Some(conn) = self.conns.get_mut(&answer.conn) else {
            return; // the connection has gone
        };
        debug_assert!(conn.sends_in_flight > 0, "an answer to a send in flight");
        conn.sends_in_flight = conn.sends_in_flight.saturating_sub(1);
        let id = answer.id.as_deref();
        conn.out.push(match answer.outcome {
            Ok(number) => frames::ack(id, answer.chat, number),
            Err(error) => frames::error(&error, id, Some(answer.chat)),
        });
    }

    /// Marks the chats of a sync frame as syncing. Refuses the whole frame
    /// if one of them is already syncing or named twice.
    pub fn start_sync(
        &mut self,
        id: ConnId,
        chats: &[(ChatNumber, u64)],
    ) -> Result<(), EngineError> {
        let conn = self.conns.get_mut(&id).ok_or(EngineError::ShuttingDown)?;
        if chats
            .iter()
            .any(|(chat, _)| conn.syncing.contains_key(chat))
        {
            return Err(EngineError::SyncInProgress);
        }
        let distinct: HashSet<ChatNumber> = chats.iter().map(|&(chat, _)| chat).collect();
        if distinct.len() != chats.len() {
            return Err(EngineError::InvalidFrame(
                "a sync names one chat twice".into(),
            ));
        }
        if chats.is_empty() {
            conn.out
                .push(frames::synced(&BTreeMap::new(), &BTreeMap::new()));
            return Ok(());
        }
        conn.next_sync += 1;
        let sync = conn.next_sync;
        for &(chat, after) in chats {
            let syncing = Syncing {
                sync,
                after,
                held: Vec::new(),
                read: None,
            };
            conn.syncing.insert(chat, syncing);
        }
        let frame = SyncFrame {
            remaining: chats.len(),
            reached: BTreeMap::new(),
            reads: BTreeMap::new(),
        };
        conn.syncs.insert(sync, frame);
        Ok(())
    }

    /// The read states the membership check answered, for the chats of a
    /// sync in progress.
    pub fn set_sync_reads(&mut self, id: ConnId, reads: &HashMap<ChatNumber, ReadState>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        for (chat, read) in reads {
            if let Some(syncing) = conn.syncing.get_mut(chat) {
                syncing.read = Some(*read);
            }
        }
    }

    /// Ends a sync frame that is refused whole after `start_sync` (its
    /// membership check failed): the chats stop syncing, their held live
    /// messages go out as they would have without the sync, and no
    /// `synced` follows (the caller answers with the frame's error).
    pub fn abandon_sync(&mut self, id: ConnId, chats: &[ChatNumber], metrics: &ShardMetrics) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        for chat in chats {
            let Some(Syncing { sync, held, .. }) = conn.syncing.remove(chat) else {
                continue;
            };
            conn.syncs.remove(&sync);
            conn.send_held(*chat, held, metrics);
        }
    }

    pub fn sync_result(&mut self, result: SyncResult, metrics: &ShardMetrics) {
        let Some(conn) = self.conns.get_mut(&result.conn) else {
            return;
        };
        let Some(Syncing {
            sync,
            after,
            held,
            read,
        }) = conn.syncing.remove(&result.chat)
        else {
            return;
        };
        let mut reached = None;
        let mut synced_read = None;
        match result.outcome {
            Ok((missed, up_to)) => {
                let mut merged: Vec<Arc<Delivery>> = missed.into_iter().chain(held).collect();
                merged.sort_by_key(|delivery| delivery.number);
                merged.dedup_by_key(|delivery| delivery.number);
                // Unread up to what the sync reached: the API counted up to
                // what the client had seen; the rest is every message the
                // sync brings (all the user may see past `after`) above the
                // read position, but the user's own.
                synced_read = read.map(|read| {
                    let floor = read.number.max(after);
                    let brought = merged
                        .iter()
                        .filter(|delivery| delivery.number > floor && delivery.sender != conn.user)
                        .count() as u64;
                    frames::SyncedRead {
                        number: read.number,
                        unread_count: read.unread_through_seen + brought,
                        unread_capped: read.capped,
                    }
                });
                let delivered = conn.delivered.entry(result.chat).or_default();
                let mut highest = up_to;
                let mut to_send = Vec::with_capacity(merged.len());
                for delivery in merged {
                    if delivered.contains(delivery.number) {
                        continue; // sent before, live or by an earlier sync
                    }
                    delivered.insert(delivery.number);
                    highest = highest.max(delivery.number);
                    to_send.push(delivery);
                }
                // Everything the user may see in (after, up_to] has been sent.
                delivered.insert_range(after.saturating_add(1), up_to);
                for delivery in to_send {
                    conn.push(&delivery, metrics);
                }
                if after > 0 {
                    conn.floors.insert(result.chat, after);
                }
                reached = Some(highest);
            }
            Err(error) => {
                conn.out
                    .push(frames::error(&error, None, Some(result.chat)));
                conn.send_held(result.chat, held, metrics);
            }
        }
        let Some(frame) = conn.syncs.get_mut(&sync) else {
            return;
        };
        if let Some(reached) = reached {
            frame.reached.insert(result.chat.to_string(), reached);
        }
        if let Some(read) = synced_read {
            frame.reads.insert(result.chat.to_string(), read);
        }
        frame.remaining -= 1;
        if frame.remaining == 0 {
            let synced = frames::synced(&frame.reached, &frame.reads);
            conn.syncs.remove(&sync);
            conn.out.push(synced);
        }
    }
}

/// The connections of `users` (one app's, on this shard) whose user is a
/// subscriber, walking whichever side is smaller.
fn local_members(
    users: &FastMap<String, Vec<ConnId>>,
    subscribers: &HashSet<String>,
) -> Vec<ConnId> {
    let mut conns = Vec::new();
    for_each_local_member(users, subscribers, |_, ids| conns.extend_from_slice(ids));
    conns
}

/// Visits each of `members` connected to this shard (`users`: an app's
/// users here) with its connections, walking whichever of the two is
/// shorter: a big chat against few local users, or the reverse.
fn for_each_local_member(
    users: &FastMap<String, Vec<ConnId>>,
    members: &HashSet<String>,
    mut visit: impl FnMut(&String, &[ConnId]),
) {
    if users.len() <= members.len() {
        for (user, ids) in users {
            if members.contains(user) {
                visit(user, ids);
            }
        }
    } else {
        for member in members {
            if let Some(ids) = users.get(member) {
                visit(member, ids);
            }
        }
    }
}

impl Conn {
    /// Sends the live messages a sync held for a chat that stopped syncing
    /// without a result to merge them with, except those already sent.
    fn send_held(&mut self, chat: ChatNumber, held: Vec<Arc<Delivery>>, metrics: &ShardMetrics) {
        let delivered = self.delivered.entry(chat).or_default();
        let fresh: Vec<_> = held
            .into_iter()
            .filter(|d| !delivered.contains(d.number))
            .collect();
        for delivery in &fresh {
            delivered.insert(delivery.number);
        }
        for delivery in fresh {
            self.push(&delivery, metrics);
        }
    }

    fn deliver(&mut self, delivery: &Arc<Delivery>, metrics: &ShardMetrics) {
        if let Some(syncing) = self.syncing.get_mut(&delivery.chat) {
            if syncing.held.len() >= SYNC_BUFFER_MAX {
                self.close_slow(metrics);
            } else {
                syncing.held.push(Arc::clone(delivery));
            }
            return;
        }
        if let Some(&floor) = self.floors.get(&delivery.chat) {
            if delivery.number <= floor {
                return;
            }
            self.floors.remove(&delivery.chat);
        }
        let delivered = self.delivered.entry(delivery.chat).or_default();
        if delivered.contains(delivery.number) {
            return; // a sync sent it while it was on its way
        }
        delivered.insert(delivery.number);
        self.push(delivery, metrics);
    }

    fn push(&self, delivery: &Delivery, metrics: &ShardMetrics) {
        let was_closing = self.out.is_closing();
        if self.out.push(delivery.frame.clone()) {
            metrics.deliveries.inc();
        } else if !was_closing {
            metrics.slow_consumer_closes.inc();
        }
    }

    fn close_slow(&self, metrics: &ShardMetrics) {
        if !self.out.is_closing() {
            metrics.slow_consumer_closes.inc();
            self.out.close(CloseReason::SlowConsumer);
        }
    }
}
