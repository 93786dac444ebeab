//! Reading a chat from the persistence API: its subscribers and version, and
//! on first use (or after a refused batch) its last number and recent
//! messages, from which the ring and the idempotency window are rebuilt, so
//! that a restarted engine still recognises a resend.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use serde::Deserialize;

use super::{OwnerShard, drain_waiting, reply_sync};
use crate::error::EngineError;
use crate::frames;
use crate::router::{ChatKey, Delivery, SyncRequest, Targets};

/// Largest page the API serves.
pub(super) const PAGE_MESSAGES_MAX: usize = 1_000;

#[derive(Deserialize)]
struct ChatStateView {
    last_number: u64,
    version: u64,
    subscribers: Vec<String>,
}

/// A chat's state as the owner keeps it: the subscriber set built.
struct ChatState {
    last_number: u64,
    version: u64,
    subscribers: Arc<HashSet<String>>,
}

impl From<ChatStateView> for ChatState {
    fn from(view: ChatStateView) -> Self {
        Self {
            last_number: view.last_number,
            version: view.version,
            subscribers: Arc::new(view.subscribers.into_iter().collect()),
        }
    }
}

/// Answers up to this size are decoded on the shard; larger ones on its
/// blocking thread (`decode`).
const DECODE_ON_SHARD_BYTES_MAX: usize = 16 * 1024;

/// Decodes an answer of the API, and builds what the owner keeps of it.
///
/// A chat of many members is a long list to decode and hash (up to 100 ms
/// of a shard's CPU for 20,000 members in a debug build, measured), and a
/// page of history is up to 1,000 messages: one synchronous call the
/// scheduler cannot cut, so on the shard it would hold every timer, answer
/// and socket for its whole length, at every load and at every refresh
/// after a membership change. glommio gives each executor a thread for
/// such work (`spawn_blocking`, one thread per shard by default, verified
/// in its `executor/mod.rs`); the hop there and back wakes two threads, so
/// small answers stay here. Neither decoding nor building the set can
/// panic on what the API sends, which matters: glommio catches no panic
/// on that thread (verified in its `sys/blocking.rs`), so the thread would
/// end and the read would wait for its answer forever.
async fn decode<T, R>(body: bytes::Bytes) -> Result<R, serde_json::Error>
where
    T: serde::de::DeserializeOwned + 'static,
    R: From<T> + Send + 'static,
{
    let on_shard = body.len() <= DECODE_ON_SHARD_BYTES_MAX;
    let decode = move || serde_json::from_slice::<T>(&body).map(R::from);
    if on_shard {
        decode()
    } else {
        glommio::executor().spawn_blocking(decode).await
    }
}

#[derive(Deserialize)]
pub(super) struct MessagesPage {
    pub messages: Vec<MessageView>,
    pub has_more: bool,
}

#[derive(Deserialize)]
pub(super) struct MessageView {
    pub number: u64,
    from: String,
    body: String,
    #[serde(default)]
    to: Option<Vec<String>>,
    #[serde(default)]
    id: Option<String>,
    sent_at: String,
}

impl MessageView {
    pub fn into_delivery(self, app: u64, chat: u64) -> Arc<Delivery> {
        Arc::new(Delivery {
            app,
            chat,
            number: self.number,
            frame: frames::message(chat, self.number, &self.from, &self.body, &self.sent_at),
            sender: self.from,
            recipients: self.to,
            // Read back for sync only; live fan-out never sees it.
            targets: Targets::Users(Vec::new()),
        })
    }
}

/// A message read back from the store, as a live delivery to the chat's
/// subscribers (or its `to` users among them).
fn live(read: &Delivery, subscribers: &Arc<HashSet<String>>) -> Arc<Delivery> {
    let targets = match &read.recipients {
        None => Targets::Subscribers(Arc::clone(subscribers)),
        // As at a commit: live to the `to` users who are subscribers now.
        Some(users) => Targets::Users(
            users
                .iter()
                .filter(|user| subscribers.contains(*user))
                .cloned()
                .collect(),
        ),
    };
    Arc::new(Delivery {
        app: read.app,
        chat: read.chat,
        number: read.number,
        sender: read.sender.clone(),
        recipients: read.recipients.clone(),
        frame: read.frame.clone(),
        targets,
    })
}

/// The newest `want` messages up to `last_number`, oldest first, paging
/// back as far as needed: the idempotency window promises its whole size
/// after a restart, which can be more than one page.
async fn fetch_newest(
    shard: &OwnerShard,
    key: ChatKey,
    want: usize,
    last_number: u64,
) -> Result<Vec<MessageView>, EngineError> {
    let mut newest_first: Vec<MessageView> = Vec::with_capacity(want.min(4 * PAGE_MESSAGES_MAX));
    let mut before = last_number.saturating_add(1);
    while newest_first.len() < want && before > 1 {
        let limit = (want - newest_first.len()).min(PAGE_MESSAGES_MAX);
        let page = fetch_page(shard, key, &format!("limit={limit}&before={before}")).await?;
        let Some(oldest) = page.messages.first().map(|m| m.number) else {
            break;
        };
        if oldest >= before {
            return Err(EngineError::Internal(format!(
                "history of {key:?} answered {oldest} for before={before}"
            )));
        }
        let has_more = page.has_more;
        newest_first.extend(page.messages.into_iter().rev());
        if !has_more {
            break;
        }
        before = oldest;
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// `None`: the chat does not exist.
async fn fetch_state(
    shard: &OwnerShard,
    (app, chat): ChatKey,
) -> Result<Option<ChatState>, EngineError> {
    let response = shard
        .api
        .get(&format!("/internal/v1/apps/{app}/chats/{chat}"))
        .await
        .map_err(|error| unavailable(&error))?;
    match response.status.as_u16() {
        200 => {
            shard.metrics.subscriber_reads.inc();
            decode::<ChatStateView, ChatState>(response.body)
                .await
                .map(Some)
                .map_err(|error| EngineError::Internal(format!("unreadable chat state: {error}")))
        }
        404 => Ok(None),
        status => Err(unavailable(&format!("chat state answered {status}"))),
    }
}

pub(super) async fn fetch_page(
    shard: &OwnerShard,
    (app, chat): ChatKey,
    query: &str,
) -> Result<MessagesPage, EngineError> {
    let response = shard
        .api
        .get(&format!(
            "/internal/v1/apps/{app}/chats/{chat}/messages?{query}"
        ))
        .await
        .map_err(|error| unavailable(&error))?;
    if !response.status.is_success() {
        return Err(unavailable(&format!(
            "history answered {}",
            response.status
        )));
    }
    decode::<MessagesPage, MessagesPage>(response.body)
        .await
        .map_err(|error| EngineError::Internal(format!("unreadable history: {error}")))
}

fn unavailable(error: &dyn std::fmt::Display) -> EngineError {
    tracing::warn!(%error, "persistence API unavailable");
    EngineError::Overloaded
}

pub fn spawn_load(shard: &Rc<OwnerShard>, key: ChatKey) {
    let shard = Rc::clone(shard);
    crate::task::spawn(async move { load(&shard, key).await });
}

async fn load(shard: &Rc<OwnerShard>, key: ChatKey) {
    let numbering_known = shard
        .chats
        .borrow()
        .chats
        .get(&key)
        .is_some_and(|s| s.numbering_known);
    let fetched: Result<_, EngineError> = async {
        let Some(view) = fetch_state(shard, key).await? else {
            return Ok((None, Vec::new()));
        };
        let recent = if numbering_known || view.last_number == 0 {
            Vec::new()
        } else {
            let want = shard
                .config
                .idempotency_window
                .max(shard.config.ring_messages);
            fetch_newest(shard, key, want, view.last_number).await?
        };
        Ok((Some(view), recent))
    }
    .await;

    if let Some(late) = apply_load(shard, key, numbering_known, fetched) {
        fan_out_late(shard, key, late).await;
    }
}

type Fetched = Result<(Option<ChatState>, Vec<MessageView>), EngineError>;

/// Applies what a load read. Returns the messages to fan out first when the
/// store holds some that no engine fanned out; the chat then stays loading
/// until they are on their way.
fn apply_load(
    shard: &Rc<OwnerShard>,
    key: ChatKey,
    numbering_known: bool,
    fetched: Fetched,
) -> Option<Vec<Arc<Delivery>>> {
    let mut owner = shard.chats.borrow_mut();
    let state = owner.chats.get_mut(&key)?;
    if numbering_known && !state.numbering_known {
        // A refused batch made the store the truth again while this read
        // ran without the recent messages: read again, with them.
        drop(owner);
        spawn_load(shard, key);
        return None;
    }
    match fetched {
        Ok((view, recent)) => {
            match view {
                Some(view) => {
                    state.exists = true;
                    state.subscribers = view.subscribers;
                    state.version = view.version;
                    if !state.numbering_known {
                        state.last_durable = view.last_number;
                        state.last_assigned = view.last_number;
                    }
                }
                // A creation still in a batch keeps the chat existing.
                None => state.exists = state.create.is_some() || state.batches_in_flight > 0,
            }
            let mut late = Vec::new();
            if !state.numbering_known {
                let above = state.fan_out_above.take();
                for message in recent {
                    if let Some(id) = &message.id {
                        state.ids.insert(&message.from, id, message.number);
                    }
                    let delivery = message.into_delivery(key.0, key.1);
                    if above.is_some_and(|above| delivery.number > above) {
                        late.push(live(&delivery, &state.subscribers));
                    }
                    state.ring.push_loaded(delivery);
                }
                state.numbering_known = true;
            }
            if !late.is_empty() {
                // Still loading, so nothing is numbered meanwhile: the late
                // messages reach every shard ahead of what follows them.
                return Some(late);
            }
            state.loading = false;
            drain_waiting(shard, &mut owner, key);
        }
        Err(error) => {
            // Everyone waiting hears the error; a chat with nothing in
            // flight is forgotten so the next request loads it afresh.
            state.loading = false;
            for waiting in state.waiting.drain(..) {
                match waiting {
                    super::Waiting::Send { request, .. } => {
                        super::answer(shard, request.reply, Err(error.clone()))
                    }
                    super::Waiting::Sync { request, .. } => {
                        reply_sync(shard, request, Err(error.clone()))
                    }
                    // An indicator lost with its chat's load is not missed.
                    super::Waiting::Typing { .. } => {}
                    super::Waiting::Presence { request, .. } => {
                        let _ = request.reply.try_send(Err(error.clone()));
                    }
                }
            }
            if !state.numbering_known && state.batches_in_flight == 0 && !state.has_pending() {
                owner.chats.remove(&key);
            }
        }
    }
    None
}

/// Sends messages another engine committed to every shard, then lets the
/// chat's waiting requests in.
async fn fan_out_late(shard: &Rc<OwnerShard>, key: ChatKey, late: Vec<Arc<Delivery>>) {
    tracing::warn!(
        ?key,
        late = late.len(),
        "fanning out messages committed by another engine"
    );
    super::fan_out(shard, &late).await;
    let mut owner = shard.chats.borrow_mut();
    let Some(state) = owner.chats.get_mut(&key) else {
        return;
    };
    state.loading = false;
    drain_waiting(shard, &mut owner, key);
}

/// Reads the subscriber set again (after a commit reported a newer version).
/// On failure the old set stays: fan-out uses what it has.
pub async fn refresh_subscribers(shard: &Rc<OwnerShard>, key: ChatKey) {
    match fetch_state(shard, key).await {
        Ok(Some(view)) => {
            if let Some(state) = shard.chats.borrow_mut().chats.get_mut(&key) {
                state.subscribers = view.subscribers;
                state.version = view.version;
            }
        }
        Ok(None) => tracing::warn!(?key, "a committed chat is missing from the store"),
        Err(error) => tracing::warn!(?key, %error, "keeping a stale subscriber set"),
    }
}

/// Serves a sync the ring cannot: pages of the store's history up to `up_to`.
pub fn spawn_sync_from_store(shard: &Rc<OwnerShard>, request: SyncRequest, up_to: u64) {
    let shard = Rc::clone(shard);
    crate::task::spawn(async move {
        let key = (request.app, request.chat);
        let mut missed = Vec::new();
        let mut after = request.after;
        let outcome = loop {
            let query = format!(
                "after={after}&limit={PAGE_MESSAGES_MAX}&user={}",
                request.user
            );
            match fetch_page(&shard, key, &query).await {
                Ok(page) => {
                    let last = page.messages.last().map(|m| m.number);
                    missed.extend(
                        page.messages
                            .into_iter()
                            .filter(|m| m.number <= up_to)
                            .map(|m| m.into_delivery(key.0, key.1)),
                    );
                    match last {
                        Some(last) if page.has_more && last < up_to => after = last,
                        _ => break Ok((missed, up_to)),
                    }
                }
                Err(error) => break Err(error),
            }
        };
        reply_sync(&shard, request, outcome);
    });
}
