//! Group commit: numbered messages wait in their chat until a batch slot
//! is free (at most `in_flight_max` batches in flight per shard); then every
//! ready chat goes into the next batch, up to its size bounds, and the batch
//! goes to the persistence API, retried (the identical bytes) until it is
//! durable. Only then are senders answered and the messages fanned out.
//!
//! When no batch of the shard is in flight, a message leaves at once: a
//! wait for company would only add to its latency. When one is, the store
//! is busy with it (the embedded store makes batches durable one after
//! another, an fsync each), so a new batch waits `linger_us` for company
//! before it takes a free slot; with every slot busy, messages gather until
//! a batch returns. Measured (docs/BENCHMARKS.md): leaving at once always
//! cost about 30% of the throughput of 4 publishes in flight to one chat,
//! each its own batch and fsync. `linger_always` waits even when nothing
//! is in flight, for stores that pay far more per batch than per message.
//!
//! Order: a chat may be in several batches in flight. They leave numbered
//! in the shard's stream (`chat-batch-stream`, `chat-batch-seq`, and the
//! oldest not yet settled, `chat-batch-unsettled-from`), and the API
//! applies a stream's batches in that order, so a chat's batches commit in
//! number order; the store refuses any that would leave a gap in a chat's
//! numbers, so order never rests on the API's wait alone. Answers are
//! settled in the order the batches left, each batch's fan-out enqueued
//! before the next one's, so every shard sees a chat's messages in order.
//! A chat refused in one batch is refused in its later batches in flight
//! too (their numbers follow a gap now); its refusal is settled once all
//! of them are back (`Refusing`), and only then is it read again.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_wire::limits::IMPLICIT_CHAT_NUMBERS_AHEAD_MAX;
use chat_wire::{
    BATCH_SEQ_HEADER, BATCH_STREAM_HEADER, BATCH_UNSETTLED_FROM_HEADER, Batch, BatchReceipt,
    NewMessage, Refusal,
};
use hyper::header::HeaderValue;

use super::chat::{Disposition, Refusing, Waiting};
use super::{Owner, OwnerShard};
use crate::error::EngineError;
use crate::frames;
use crate::limits::{RETRY_BACKOFF_MAX_MS, RETRY_BACKOFF_MIN_MS};
use crate::router::{ChatKey, Delivery, SendRequest, Targets, ToHome};

const BATCH_CONTENT_TYPE: &str = "application/x-rkyv";

/// Starts a batch: at once when none is in flight (or a full one waits),
/// after the linger when a slot is free; with every slot busy, leaves the
/// messages to the next batch that returns.
pub(super) fn schedule(shard: &Rc<OwnerShard>, owner: &mut Owner) {
    let batch = &shard.config.batch;
    if owner.pending_messages == 0 || owner.flush_armed {
        return;
    }
    let full = owner.pending_messages >= batch.messages_max;
    if owner.batches_in_flight >= batch.in_flight_max && !full {
        // The commit that frees a slot flushes (see `commit`).
        return;
    }
    owner.flush_armed = true;
    let shard = Rc::clone(shard);
    let at_once = full || (owner.batches_in_flight == 0 && !batch.linger_always);
    let linger = Duration::from_micros(if at_once { 0 } else { batch.linger_us });
    // Not inline: the caller holds the owner's state. The spawned task runs
    // in this scheduler pass, behind the work already queued.
    crate::task::spawn(async move {
        if !linger.is_zero() {
            glommio::timer::sleep(linger).await;
        }
        shard.chats.borrow_mut().flush_armed = false;
        flush(&shard);
    });
}

/// Bytes a message adds to an encoded batch, over-estimated: its strings
/// and a fixed allowance for the archive's fields, offsets and padding.
fn encoded_bytes_estimate(message: &NewMessage) -> usize {
    const FIXED_BYTES: usize = 128;
    let recipients: usize = message
        .recipients
        .iter()
        .flatten()
        .map(|user| user.len() + 16)
        .sum();
    FIXED_BYTES
        + message.body.len()
        + message.sender.len()
        + message.client_id.as_ref().map_or(0, String::len)
        + recipients
}

/// Starts as many batches as the in-flight limit allows. A batch is bounded
/// by messages and by bytes, so it always encodes within the wire format's
/// and the API's limits.
pub fn flush(shard: &Rc<OwnerShard>) {
    let max = shard.config.batch.messages_max;
    let bytes_max = shard.config.batch.bytes_max;
    loop {
        let mut owner = shard.chats.borrow_mut();
        if owner.batches_in_flight >= shard.config.batch.in_flight_max {
            return;
        }
        let seq = owner.batch_seq + 1;
        let batch_id = ((shard.id as u64) << 48) | seq;
        let mut batch = Batch {
            batch_id,
            chats: Vec::new(),
            messages: Vec::new(),
        };
        let mut keys = Vec::new();
        let mut bytes = 0;
        while batch.messages.len() < max && bytes < bytes_max {
            let Some(key) = owner.ready.pop_front() else {
                break;
            };
            let chat_max = owner.chat_batches_in_flight_max;
            let state = owner.chats.get_mut(&key).expect("a ready chat exists");
            state.queued = false;
            if !state.may_batch(chat_max) {
                continue;
            }
            if let Some(create) = state.create.take() {
                bytes += create
                    .subscribers
                    .iter()
                    .map(|u| u.len() + 16)
                    .sum::<usize>();
                batch.chats.push(create);
            }
            // At least one message, so a chat always makes progress.
            let mut take = 0;
            for message in state.pending.iter().take(max - batch.messages.len()) {
                let size = encoded_bytes_estimate(message);
                if take > 0 && bytes + size > bytes_max {
                    break;
                }
                bytes += size;
                take += 1;
            }
            batch.messages.extend(state.pending.drain(..take));
            state.batches_in_flight += 1;
            keys.push(key);
        }
        if keys.is_empty() {
            return;
        }
        owner.pending_messages -= batch.messages.len();
        owner.batches_in_flight += 1;
        shard
            .metrics
            .batches_in_flight
            .set(owner.batches_in_flight as u64);
        owner.batch_seq = seq;
        // A chat with more than one batch's worth may go on in the next.
        for &key in &keys {
            owner.mark_ready(key);
        }
        let (settled, settled_signal) = flume::bounded::<()>(1);
        let turn = Turn {
            stream: owner.batch_stream,
            seq,
            after: owner.last_settled.replace(settled_signal),
            settled,
        };
        drop(owner);
        let shard = Rc::clone(shard);
        crate::task::spawn(async move { commit(shard, batch, keys, turn).await });
    }
}

/// A batch's place in the shard's stream.
struct Turn {
    stream: u64,
    seq: u64,
    /// Closed once the batch before this one is settled.
    after: Option<flume::Receiver<()>>,
    /// Dropped once this one is: the next may settle.
    settled: flume::Sender<()>,
}

async fn commit(shard: Rc<OwnerShard>, batch: Batch, keys: Vec<ChatKey>, turn: Turn) {
    let started = Instant::now();
    let outcome = match chat_wire::encode_batch(&batch, shard.config.limits.message_body_bytes_max)
    {
        Ok(bytes) => commit_until_durable(&shard, Bytes::from(bytes), batch.batch_id, &turn).await,
        Err(error) => Err(EngineError::Internal(format!("encoding batch: {error}"))),
    };
    shard
        .metrics
        .commit_latency_us
        .observe(started.elapsed().as_micros() as u64);
    shard
        .metrics
        .batch_messages
        .observe(batch.messages.len() as u64);
    if let Some(after) = &turn.after {
        // Never sent: the earlier batch's task drops its sender when done.
        let _ = after.recv_async().await;
    }
    settle(&shard, batch, &keys, outcome).await;
    drop(turn.settled);
    {
        let mut owner = shard.chats.borrow_mut();
        assert_eq!(
            owner.unsettled_from(),
            turn.seq,
            "batches settle in the order they left"
        );
        owner.batches_in_flight -= 1;
        shard
            .metrics
            .batches_in_flight
            .set(owner.batches_in_flight as u64);
    }
    flush(&shard);
}

/// Settles a batch the API answered (or that could not be sent): answers,
/// fan-out, and refusals, in the order the batches left.
async fn settle(
    shard: &Rc<OwnerShard>,
    batch: Batch,
    keys: &[ChatKey],
    outcome: Result<BatchReceipt, EngineError>,
) {
    let receipt = match outcome {
        Ok(receipt) => receipt,
        Err(error) => {
            tracing::error!(batch_id = batch.batch_id, %error, "batch refused; reloading its chats");
            return on_refused(shard, keys, batch.messages, |_| {
                Disposition::Fail(error.clone())
            });
        }
    };
    shard.metrics.commit_api_us.observe(receipt.api_us);
    let refused: HashMap<ChatKey, Refusal> = receipt
        .refused
        .iter()
        .map(|r| ((r.app, r.chat), r.reason.clone()))
        .collect();
    let (committed, refused_messages): (Vec<NewMessage>, Vec<NewMessage>) = batch
        .messages
        .into_iter()
        .partition(|m| !refused.contains_key(&(m.app, m.chat)));
    if receipt.messages as usize != committed.len() {
        // The API's answer disagrees with its own refusals: trust neither
        // half and read every chat again from the store.
        let error = EngineError::Internal(format!(
            "batch {} receipt counts {} messages, {} committed",
            receipt.batch_id,
            receipt.messages,
            committed.len()
        ));
        let all = committed.into_iter().chain(refused_messages).collect();
        return on_refused(shard, keys, all, |_| Disposition::Fail(error.clone()));
    }
    let (ok_keys, refused_keys): (Vec<ChatKey>, Vec<ChatKey>) =
        keys.iter().partition(|key| !refused.contains_key(key));
    if !refused_keys.is_empty() {
        tracing::info!(batch_id = receipt.batch_id, refused = ?receipt.refused, "chats refused");
        on_refused(shard, &refused_keys, refused_messages, |key| {
            disposition(&refused[key])
        });
    }
    // A chat refused in an earlier batch cannot have committed in this one
    // (its numbers follow a gap): if the store says it did, the store is
    // the truth, and nothing of the chat in flight is sent again.
    let (late_keys, ok_keys): (Vec<ChatKey>, Vec<ChatKey>) = {
        let owner = shard.chats.borrow();
        ok_keys
            .into_iter()
            .partition(|key| owner.chats.get(key).is_some_and(|s| s.refusing.is_some()))
    };
    let committed = if late_keys.is_empty() {
        committed
    } else {
        let (late, committed): (Vec<NewMessage>, Vec<NewMessage>) = committed
            .into_iter()
            .partition(|m| late_keys.contains(&(m.app, m.chat)));
        fail_late_commits(shard, receipt.batch_id, &late_keys, late);
        committed
    };
    on_durable(shard, committed, &ok_keys, receipt).await;
}

/// Posts the batch until the API answers: a receipt, or a refusal that a
/// retry cannot change. Transport errors and 5xx are retried forever with
/// capped exponential backoff; the backlog bound keeps memory in check.
async fn commit_until_durable(
    shard: &Rc<OwnerShard>,
    bytes: Bytes,
    batch_id: u64,
    turn: &Turn,
) -> Result<BatchReceipt, EngineError> {
    let mut backoff = Duration::from_millis(RETRY_BACKOFF_MIN_MS);
    loop {
        // Read at every attempt: an API that restarted meanwhile learns
        // from it which batches of the stream no longer come.
        let unsettled_from = shard.chats.borrow().unsettled_from();
        let place = [
            (BATCH_STREAM_HEADER, HeaderValue::from(turn.stream)),
            (BATCH_SEQ_HEADER, HeaderValue::from(turn.seq)),
            (
                BATCH_UNSETTLED_FROM_HEADER,
                HeaderValue::from(unsettled_from),
            ),
        ];
        let posted = shard
            .api
            .post_with(
                "/internal/v1/batches",
                bytes.clone(),
                BATCH_CONTENT_TYPE,
                &place,
            )
            .await;
        // The health check's view of the store: a streak of failed commits
        // starts at its first failure and ends at the next success.
        match &posted {
            Ok(response) if response.status.is_success() => {
                shard.metrics.commit_failing_since_ms.set(0)
            }
            Ok(response) if response.status.is_client_error() => {}
            _ => {
                if shard.metrics.commit_failing_since_ms.get() == 0 {
                    let now = crate::health::now_unix_ms();
                    shard.metrics.commit_failing_since_ms.set(now);
                }
            }
        }
        match posted {
            Ok(response) if response.status.is_success() => {
                return serde_json::from_slice(&response.body).map_err(|error| {
                    EngineError::Internal(format!("unreadable batch receipt: {error}"))
                });
            }
            Ok(response) if response.status.is_client_error() => {
                let body = String::from_utf8_lossy(&response.body).into_owned();
                tracing::error!(batch_id, status = %response.status, %body, "batch refused");
                return Err(EngineError::Refused(body));
            }
            Ok(response) => {
                tracing::warn!(batch_id, status = %response.status, "batch not committed; retrying")
            }
            Err(error) => tracing::warn!(batch_id, %error, "batch not committed; retrying"),
        }
        shard.metrics.batch_retries.inc();
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(RETRY_BACKOFF_MAX_MS));
    }
}

/// Messages the store committed behind a refusal of their chat: the store
/// holds them, so none is sent again; their senders hear an error, and the
/// chat's reload fans out what the store holds.
fn fail_late_commits(
    shard: &Rc<OwnerShard>,
    batch_id: u64,
    keys: &[ChatKey],
    late: Vec<NewMessage>,
) {
    let error = EngineError::Internal(format!(
        "batch {batch_id} committed messages of a chat refused in an earlier batch"
    ));
    tracing::error!(batch_id, chats = ?keys, "{error}");
    {
        let mut owner = shard.chats.borrow_mut();
        for key in keys {
            if let Some(refusing) = owner.chats.get_mut(key).and_then(|s| s.refusing.as_mut()) {
                refusing.disposition = Disposition::Fail(error.clone());
            }
        }
    }
    on_refused(shard, keys, late, |_| Disposition::Fail(error.clone()));
}

async fn on_durable(
    shard: &Rc<OwnerShard>,
    messages: Vec<NewMessage>,
    keys: &[ChatKey],
    receipt: BatchReceipt,
) {
    // A subscriber set that changed since it was loaded is read again before
    // fan-out, so a subscription acknowledged before this commit applies to it.
    let stale: Vec<ChatKey> = {
        let owner = shard.chats.borrow();
        receipt
            .chat_versions
            .iter()
            .filter(|v| {
                owner
                    .chats
                    .get(&(v.app, v.chat))
                    .is_some_and(|state| state.version != v.version)
            })
            .map(|v| (v.app, v.chat))
            .collect()
    };
    for key in stale {
        super::loader::refresh_subscribers(shard, key).await;
    }

    let mut deliveries = Vec::with_capacity(messages.len());
    let mut answers = Vec::new();
    {
        let mut owner = shard.chats.borrow_mut();
        for message in messages {
            let key = (message.app, message.chat);
            let state = owner.chats.get_mut(&key).expect("a committed chat is held");
            assert_eq!(
                message.number,
                state.last_durable + 1,
                "durable numbers advance by one"
            );
            state.last_durable = message.number;
            // The subscribers as of this commit (read again above when the
            // receipt showed a change): live messages go to them only.
            let targets = match &message.recipients {
                None => Targets::Subscribers(Arc::clone(&state.subscribers)),
                Some(users) => Targets::Users(
                    users
                        .iter()
                        .filter(|user| state.subscribers.contains(*user))
                        .cloned()
                        .collect(),
                ),
            };
            let sent_at = frames::rfc3339(message.sent_at_us);
            let delivery = Arc::new(Delivery {
                app: message.app,
                chat: message.chat,
                number: message.number,
                frame: frames::message(
                    message.chat,
                    message.number,
                    &message.sender,
                    &message.body,
                    &sent_at,
                ),
                sender: message.sender,
                recipients: message.recipients,
                targets,
            });
            state.ring.push(Arc::clone(&delivery));
            let replies = state.waiters.remove(&delivery.number).into_iter().flatten();
            answers.extend(replies.filter_map(|reply| reply.resolve(Ok(delivery.number))));
            deliveries.push(delivery);
        }
        owner.backlog -= deliveries.len();
        shard.metrics.owner_backlog.set(owner.backlog as u64);
        shard
            .metrics
            .messages_committed
            .add(deliveries.len() as u64);
    }

    // Acks first, on the way the deliveries take next: a sender's
    // connection gets the ack before its own message.
    for (home, answer) in answers {
        shard.to_home(home, ToHome::Answer(answer)).await;
    }
    // The chats stay in flight until their whole fan-out is on its way, so
    // a pass ended on the way cannot let a later message of one of them
    // overtake these.
    super::fan_out(shard, &deliveries).await;

    let mut owner = shard.chats.borrow_mut();
    for &key in keys {
        if let Some(state) = owner.chats.get_mut(&key) {
            state.batches_in_flight -= 1;
        }
        owner.mark_ready(key);
    }
}

fn disposition(reason: &Refusal) -> Disposition {
    match reason {
        Refusal::NotSubscribed { sender } => Disposition::RefuseSender(sender.clone()),
        Refusal::ChatExists => Disposition::Fail(EngineError::ChatExists),
        Refusal::ChatNumberTooHigh => Disposition::Fail(EngineError::ChatNumberTooHigh(format!(
            "a user may create a chat at most {IMPLICIT_CHAT_NUMBERS_AHEAD_MAX} above the app's \
             highest chat number"
        ))),
        Refusal::AppNotFound => Disposition::Fail(EngineError::Refused("app not found".into())),
        Refusal::ChatNotFound => Disposition::Fail(EngineError::Refused("chat not found".into())),
        Refusal::Conflict => Disposition::Again,
    }
}

/// The API refused these chats in one batch: nothing of them in it was
/// written. A chat with later batches in flight waits for them (their
/// messages follow a gap and are refused too); once none is left, every
/// message of it not yet durable is settled at once (`settle_refusal`).
/// The first refusal's disposition decides for all of them.
fn on_refused(
    shard: &Rc<OwnerShard>,
    keys: &[ChatKey],
    in_flight: Vec<NewMessage>,
    disposition: impl Fn(&ChatKey) -> Disposition,
) {
    let mut owner = shard.chats.borrow_mut();
    let mut in_flight_by_chat: HashMap<ChatKey, Vec<NewMessage>> = HashMap::new();
    for message in in_flight {
        in_flight_by_chat
            .entry((message.app, message.chat))
            .or_default()
            .push(message);
    }
    for &key in keys {
        let Some(state) = owner.chats.get_mut(&key) else {
            continue;
        };
        let messages = in_flight_by_chat.remove(&key).unwrap_or_default();
        let refusing = state.refusing.get_or_insert_with(|| Refusing {
            disposition: disposition(&key),
            messages: Vec::new(),
        });
        refusing.messages.extend(messages);
        state.batches_in_flight -= 1;
        if state.batches_in_flight == 0 {
            settle_refusal(shard, &mut owner, key);
        }
    }
}

/// Fails or queues again every message of a refused chat not yet durable
/// (from its batches in flight, and pending behind them), as the refusal's
/// disposition decides, and reads the chat again from the store: the store
/// is the truth.
fn settle_refusal(shard: &Rc<OwnerShard>, owner: &mut Owner, key: ChatKey) {
    let state = owner.chats.get_mut(&key).expect("a refused chat is held");
    debug_assert_eq!(state.batches_in_flight, 0);
    let Refusing {
        disposition: rule,
        mut messages,
    } = state.refusing.take().expect("a refusal to settle");
    let unsent = state.pending.len();
    messages.append(&mut state.pending);
    messages.sort_unstable_by_key(|m| m.number);
    let mut again = VecDeque::new();
    for message in messages {
        let replies = state.waiters.remove(&message.number).unwrap_or_default();
        let error = match &rule {
            Disposition::Fail(error) => Some(error.clone()),
            Disposition::RefuseSender(sender) if !message.as_app && message.sender == *sender => {
                Some(EngineError::NotSubscribed)
            }
            Disposition::RefuseSender(_) | Disposition::Again => None,
        };
        for reply in replies {
            match &error {
                Some(error) => super::answer(shard, reply, Err(error.clone())),
                None => again.push_back(Waiting::Send {
                    request: SendRequest {
                        app: message.app,
                        chat: message.chat,
                        sender: message.sender.clone(),
                        to: message.recipients.clone(),
                        body: message.body.clone(),
                        client_id: message.client_id.clone(),
                        as_app: message.as_app,
                        reply,
                    },
                    refreshed: true,
                }),
            }
        }
    }
    // Anyone still waiting on a number above the durable one waited on
    // a message that is gone: it cannot be answered with a number.
    let numbers: Vec<u64> = state
        .waiters
        .keys()
        .copied()
        .filter(|&n| n > state.last_durable)
        .collect();
    for number in numbers {
        for reply in state.waiters.remove(&number).into_iter().flatten() {
            super::answer(shard, reply, Err(EngineError::Refused("resend".into())));
        }
    }
    // The store may hold messages above what this owner made durable
    // (a dead engine's late batch): the reload fans them out.
    state.fan_out_above = Some(state.last_durable);
    let failed = (state.last_assigned - state.last_durable) as usize;
    state.create = None;
    state.last_assigned = state.last_durable;
    state.ids.forget_above(state.last_durable);
    state.ring.clear();
    state.numbering_known = false;
    // The requests sent again go first: they are older than any waiting.
    again.append(&mut state.waiting);
    state.waiting = again;
    if !state.loading {
        state.loading = true;
        super::loader::spawn_load(shard, key);
    }
    owner.pending_messages -= unsent;
    owner.backlog -= failed;
    shard.metrics.owner_backlog.set(owner.backlog as u64);
}
