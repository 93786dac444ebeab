//! Presence at the chat's owner: it holds the member set, so it answers it
//! (to the member asking, or the app) for the engine's presence route to
//! ask every shard which of them are connected there. Nothing about who is
//! online is kept: it is read from the live connections at each ask, so an
//! engine that restarted knows only who reconnected.

use std::rc::Rc;

use super::chat::Waiting;
use super::{Owner, OwnerShard, WAITING_PER_CHAT_MAX, load_if_absent, refresh_then_retry};
use crate::error::EngineError;
use crate::router::{ChatKey, PresenceRequest};

pub fn handle(shard: &Rc<OwnerShard>, request: PresenceRequest) {
    let key = (request.app, request.chat);
    let mut owner = shard.chats.borrow_mut();
    let state = load_if_absent(shard, &mut owner, key);
    if state.loading {
        if state.waiting.len() >= WAITING_PER_CHAT_MAX {
            let _ = request.reply.try_send(Err(EngineError::Overloaded));
            return;
        }
        state.waiting.push_back(Waiting::Presence {
            request,
            refreshed: false,
        });
        return;
    }
    accept(&mut owner, key, request, false, shard);
}

/// Answers the member set, or refuses an unknown chat or a viewer who is not
/// a member (after reading the chat again once: the set may be older than
/// a subscription or the chat).
pub fn accept(
    owner: &mut Owner,
    key: ChatKey,
    request: PresenceRequest,
    refreshed: bool,
    shard: &Rc<OwnerShard>,
) {
    let Some(state) = owner.chats.get_mut(&key) else {
        let _ = request.reply.try_send(Err(EngineError::ChatNotFound));
        return;
    };
    let member = request
        .viewer
        .as_ref()
        .is_none_or(|viewer| state.subscribers.contains(viewer));
    if !state.exists || !member {
        if !refreshed {
            let waiting = Waiting::Presence {
                request,
                refreshed: true,
            };
            return refresh_then_retry(shard, state, key, waiting);
        }
        // A user hears the same for a chat that does not exist as for one
        // they are not in: existence does not leak.
        let refusal = match (&request.viewer, state.exists) {
            (None, false) => EngineError::ChatNotFound,
            _ => EngineError::NotSubscribed,
        };
        let _ = request.reply.try_send(Err(refusal));
        return;
    }
    state.used_at = std::time::Instant::now();
    let _ = request
        .reply
        .try_send(Ok(std::sync::Arc::clone(&state.subscribers)));
}
