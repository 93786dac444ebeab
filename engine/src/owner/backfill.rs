//! Syncs past the ring, served together: a reconnect storm (every member of
//! a chat coming back after an engine restart or a network blip, each
//! having missed more than the ring holds) would otherwise read the same
//! range from the store once per client. Instead the first such sync reads
//! the range once, unfiltered, and extends the chat's ring back with it;
//! the syncs that arrive meanwhile wait for that read, and then every one
//! of them is served from the ring, filtered per user as a ring sync is.
//!
//! Bounded: one read per chat at a time, an extension of at most
//! `SYNC_MESSAGES_MAX` messages per chat (no sync may need more), at most
//! `EXTENDED_CHATS_MAX` chats extended per shard (past it syncs read the
//! store each, as before), and an extension no sync read for
//! `EXTENSION_IDLE` shrinks back to the ring's size.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::loader::{PAGE_MESSAGES_MAX, fetch_page, spawn_sync_from_store};
use super::{Owner, OwnerShard, reply_from_ring, reply_sync};
use crate::error::EngineError;
use crate::router::{ChatKey, Delivery, SyncRequest};

/// Chats of one shard whose rings may be extended at once: with 4,096
/// messages of about 500 bytes each, at most about 130 MB.
const EXTENDED_CHATS_MAX: usize = 64;
/// How long an extension stays without a sync reading it.
const EXTENSION_IDLE: Duration = Duration::from_secs(30);
/// Syncs that may wait for one chat's read.
const WAITING_MAX: usize = 10_000;

/// A sync the ring cannot serve: joins the chat's read in flight, starts
/// one, or (past the bounds) reads the store on its own.
pub(super) fn sync_past_ring(
    shard: &Rc<OwnerShard>,
    owner: &mut Owner,
    key: ChatKey,
    request: SyncRequest,
    up_to: u64,
) {
    let state = owner.chats.get_mut(&key).expect("syncing a known chat");
    if let Some(waiting) = &mut state.backfill {
        if waiting.len() < WAITING_MAX {
            waiting.push(request);
            return;
        }
        return spawn_sync_from_store(shard, request, up_to);
    }
    let Some(below) = state.ring.first_number() else {
        return spawn_sync_from_store(shard, request, up_to);
    };
    if !room_to_extend(owner, key) {
        return spawn_sync_from_store(shard, request, up_to);
    }
    let state = owner.chats.get_mut(&key).expect("syncing a known chat");
    state.ring.pin();
    let after = request.after;
    state.backfill = Some(vec![request]);
    owner.extended.insert(key);
    shard.metrics.sync_backfill_reads.inc();
    let shard = Rc::clone(shard);
    crate::task::spawn(async move {
        let read = read_range(&shard, key, after, below).await;
        finish(&shard, key, read);
    });
}

/// Whether one more chat may be extended; forgets the extensions that
/// shrank or whose chats are gone first.
fn room_to_extend(owner: &mut Owner, key: ChatKey) -> bool {
    let Owner {
        extended, chats, ..
    } = owner;
    extended.retain(|key| {
        chats
            .get_mut(key)
            .is_some_and(|state| !state.ring.shrink_if_idle(EXTENSION_IDLE))
    });
    extended.contains(&key) || extended.len() < EXTENDED_CHATS_MAX
}

/// Every message numbered above `after` and below `below`, all users'.
async fn read_range(
    shard: &OwnerShard,
    key: ChatKey,
    after: u64,
    below: u64,
) -> Result<Vec<Arc<Delivery>>, EngineError> {
    let mut read = Vec::new();
    let mut after = after;
    while after + 1 < below {
        let limit = ((below - after - 1) as usize).min(PAGE_MESSAGES_MAX);
        let page = fetch_page(shard, key, &format!("after={after}&limit={limit}")).await?;
        let Some(last) = page.messages.last().map(|m| m.number) else {
            break;
        };
        if last <= after {
            return Err(EngineError::Internal(format!(
                "history of {key:?} answered {last} for after={after}"
            )));
        }
        read.extend(
            page.messages
                .into_iter()
                .filter(|m| m.number < below)
                .map(|m| m.into_delivery(key.0, key.1)),
        );
        if !page.has_more {
            break;
        }
        after = last;
    }
    Ok(read)
}

/// The read is back: extend the ring with it, then serve every waiting
/// sync from the ring, or, when the ring still does not reach back far
/// enough (the read did not join: the chat was read afresh meanwhile),
/// from the store one by one.
fn finish(shard: &Rc<OwnerShard>, key: ChatKey, read: Result<Vec<Arc<Delivery>>, EngineError>) {
    let mut owner = shard.chats.borrow_mut();
    let Some(state) = owner.chats.get_mut(&key) else {
        return;
    };
    let waiting = state.backfill.take().unwrap_or_default();
    let older = match read {
        Ok(older) => older,
        Err(error) => {
            state.ring.unpin();
            for request in waiting {
                reply_sync(shard, request, Err(error.clone()));
            }
            return;
        }
    };
    if !state.ring.extend_back(older) {
        tracing::debug!(?key, "a sync backfill did not join the ring");
    }
    let up_to = state.last_durable;
    for request in waiting {
        if let Some(request) = reply_from_ring(shard, &state.ring, request, up_to) {
            spawn_sync_from_store(shard, request, up_to);
        }
    }
}
