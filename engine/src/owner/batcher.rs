//! Group commit: numbered messages wait in their chat until the shard's
//! batch reaches its size or its linger runs out; then up to
//! `in_flight_max` batches go to the persistence API at once, each retried
//! (the identical bytes) until it is durable. Only then are senders answered
//! and the messages fanned out.
//!
//! Order: a chat is in at most one batch in flight, so its batches commit in
//! number order; its fan-out is enqueued before its next batch may start,
//! so every shard sees its messages in order.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_wire::{Batch, BatchReceipt};

use super::Owner;
use crate::error::EngineError;
use crate::frames;
use crate::limits::{RETRY_BACKOFF_MAX_MS, RETRY_BACKOFF_MIN_MS};
use crate::router::{ChatKey, Delivery, ShardMessage, Targets};
use crate::shard::Shard;

const BATCH_CONTENT_TYPE: &str = "application/x-rkyv";

/// Flushes now when a full batch waits, or arms the linger timer.
pub(super) fn schedule(shard: &Rc<Shard>, owner: &mut Owner) {
    if owner.pending_messages == 0 {
        return;
    }
    if owner.pending_messages >= shard.config.batch.messages_max {
        let shard = Rc::clone(shard);
        // Not inline: the caller holds the owner's state.
        crate::task::spawn(async move { flush(&shard) });
        return;
    }
    if !owner.linger_armed {
        owner.linger_armed = true;
        let shard = Rc::clone(shard);
        let linger = Duration::from_micros(shard.config.batch.linger_us);
        crate::task::spawn(async move {
            glommio::timer::sleep(linger).await;
            shard.owner.borrow_mut().linger_armed = false;
            flush(&shard);
        });
    }
}

/// Starts as many batches as the in-flight limit allows.
pub fn flush(shard: &Rc<Shard>) {
    let max = shard.config.batch.messages_max;
    loop {
        let mut owner = shard.owner.borrow_mut();
        if owner.batches_in_flight >= shard.config.batch.in_flight_max {
            return;
        }
        owner.next_batch_id += 1;
        let batch_id = ((shard.id as u64) << 48) | owner.next_batch_id;
        let mut batch = Batch {
            batch_id,
            chats: Vec::new(),
            messages: Vec::new(),
        };
        let mut keys = Vec::new();
        while batch.messages.len() < max {
            let Some(key) = owner.ready.pop_front() else {
                break;
            };
            let state = owner.chats.get_mut(&key).expect("a ready chat exists");
            state.queued = false;
            if state.in_flight || state.loading || !state.has_pending() {
                continue;
            }
            if let Some(create) = state.create.take() {
                batch.chats.push(create);
            }
            let take = state.pending.len().min(max - batch.messages.len());
            batch.messages.extend(state.pending.drain(..take));
            state.in_flight = true;
            keys.push(key);
        }
        if keys.is_empty() {
            return;
        }
        owner.pending_messages -= batch.messages.len();
        owner.batches_in_flight += 1;
        drop(owner);
        let shard = Rc::clone(shard);
        crate::task::spawn(async move { commit(shard, batch, keys).await });
    }
}

async fn commit(shard: Rc<Shard>, batch: Batch, keys: Vec<ChatKey>) {
    let started = Instant::now();
    let outcome = match chat_wire::encode_batch(&batch, shard.config.limits.message_body_bytes_max)
    {
        Ok(bytes) => commit_until_durable(&shard, Bytes::from(bytes), batch.batch_id).await,
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
    // The receipt comes from another process: a count that does not match
    // is its bug, not a reason to kill this shard. The chats are read again
    // from the store (which knows what was committed) and the senders hear
    // an error; a resend with the same id finds its original number.
    let outcome = outcome.and_then(|receipt| {
        if receipt.messages as usize == batch.messages.len() {
            Ok(receipt)
        } else {
            Err(EngineError::Internal(format!(
                "the batch receipt counts {} messages, the batch has {}",
                receipt.messages,
                batch.messages.len()
            )))
        }
    });
    match outcome {
        Ok(receipt) => on_durable(&shard, batch, &keys, receipt).await,
        Err(error) => on_refused(&shard, &batch, &keys, error),
    }
    shard.owner.borrow_mut().batches_in_flight -= 1;
    flush(&shard);
}

/// Posts the batch until the API answers: a receipt, or a refusal that a
/// retry cannot change. Transport errors and 5xx are retried forever with
/// capped exponential backoff; the backlog bound keeps memory in check.
async fn commit_until_durable(
    shard: &Rc<Shard>,
    bytes: Bytes,
    batch_id: u64,
) -> Result<BatchReceipt, EngineError> {
    let mut backoff = Duration::from_millis(RETRY_BACKOFF_MIN_MS);
    loop {
        let posted = shard
            .api
            .post("/internal/v1/batches", bytes.clone(), BATCH_CONTENT_TYPE)
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

async fn on_durable(shard: &Rc<Shard>, batch: Batch, keys: &[ChatKey], receipt: BatchReceipt) {
    // A subscriber set that changed since it was loaded is read again before
    // fan-out, so a subscription acknowledged before this commit applies to it.
    let stale: Vec<ChatKey> = {
        let owner = shard.owner.borrow();
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

    let mut deliveries = Vec::with_capacity(batch.messages.len());
    let mut answers = Vec::new();
    {
        let mut owner = shard.owner.borrow_mut();
        for message in batch.messages {
            let key = (message.app, message.chat);
            let state = owner.chats.get_mut(&key).expect("a committed chat is held");
            assert_eq!(
                message.number,
                state.last_durable + 1,
                "durable numbers advance by one"
            );
            state.last_durable = message.number;
            let targets = match &message.recipients {
                None => Targets::Subscribers(Arc::clone(&state.subscribers)),
                Some(users) => Targets::Users(users.clone()),
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

    // Acks first, on the channel the deliveries take next: a sender's
    // connection gets the ack before its own message.
    for (home, answer) in answers {
        let _ = shard
            .router
            .send_to(home, ShardMessage::Answer(answer))
            .await;
    }
    for delivery in deliveries {
        for target in 0..shard.router.shards() {
            let _ = shard
                .router
                .send_to(target, ShardMessage::Deliver(Arc::clone(&delivery)))
                .await;
        }
    }

    let mut owner = shard.owner.borrow_mut();
    for &key in keys {
        if let Some(state) = owner.chats.get_mut(&key) {
            state.in_flight = false;
        }
        owner.mark_ready(key);
    }
}

/// The API refused the batch: nothing of it was written. Every message of
/// those chats not yet durable fails (their numbers would now leave a gap),
/// and the chats are read again from the store.
fn on_refused(shard: &Rc<Shard>, batch: &Batch, keys: &[ChatKey], error: EngineError) {
    tracing::error!(batch_id = batch.batch_id, %error, "batch refused; reloading its chats");
    let mut owner = shard.owner.borrow_mut();
    let (mut failed, mut unsent) = (0, 0);
    for &key in keys {
        let Some(state) = owner.chats.get_mut(&key) else {
            continue;
        };
        let numbers: Vec<u64> = state
            .waiters
            .keys()
            .copied()
            .filter(|&n| n > state.last_durable)
            .collect();
        for number in numbers {
            for reply in state.waiters.remove(&number).into_iter().flatten() {
                super::answer(shard, reply, Err(error.clone()));
            }
        }
        failed += (state.last_assigned - state.last_durable) as usize;
        unsent += state.pending.len();
        state.pending.clear();
        state.create = None;
        state.last_assigned = state.last_durable;
        state.ids.forget_above(state.last_durable);
        state.in_flight = false;
        state.ring.clear();
        state.numbering_known = false;
        state.loading = true;
        super::loader::spawn_load(shard, key);
    }
    owner.pending_messages -= unsent;
    owner.backlog -= failed;
    shard.metrics.owner_backlog.set(owner.backlog as u64);
}
