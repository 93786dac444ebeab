//! Typing indicators at the chat's owner: a member's `typing` goes to the
//! chat's other members connected to any shard, as the owner holds the
//! member set; nothing is stored or numbered. A user the set does not name
//! is asked of the store once (the set may be older than a subscription),
//! then refused.

use std::rc::Rc;
use std::sync::Arc;

use super::chat::Waiting;
use super::{Owner, OwnerShard, WAITING_PER_CHAT_MAX, load_if_absent, refresh_then_retry};
use crate::error::EngineError;
use crate::frames;
use crate::router::{ChatKey, MembersFrame, ToHome, TypingRequest};

/// A typing request arrives at its chat's owner.
pub fn handle(shard: &Rc<OwnerShard>, request: TypingRequest) {
    let key = (request.app, request.chat);
    let mut owner = shard.chats.borrow_mut();
    let state = load_if_absent(shard, &mut owner, key);
    if state.loading {
        if state.waiting.len() < WAITING_PER_CHAT_MAX {
            state.waiting.push_back(Waiting::Typing {
                request,
                refreshed: false,
            });
        }
        // An indicator that cannot wait is dropped: the next one, a second
        // later, stands for it.
        return;
    }
    accept(shard, &mut owner, key, request, false);
}

/// Relays the indicator, or refuses a user who is not a member.
pub fn accept(
    shard: &Rc<OwnerShard>,
    owner: &mut Owner,
    key: ChatKey,
    request: TypingRequest,
    refreshed: bool,
) {
    let Some(state) = owner.chats.get_mut(&key) else {
        return;
    };
    if !state.exists || !state.subscribers.contains(&request.user) {
        if refreshed {
            let frame = frames::error(&EngineError::NotSubscribed, None, Some(request.chat));
            let shard = Rc::clone(shard);
            crate::task::spawn(async move {
                shard
                    .to_home(request.home, ToHome::ToConn(request.conn, frame))
                    .await
            });
            return;
        }
        let waiting = Waiting::Typing {
            request,
            refreshed: true,
        };
        return refresh_then_retry(shard, state, key, waiting);
    }
    state.used_at = std::time::Instant::now();
    shard.metrics.typing_relayed.inc();
    let frame = Arc::new(MembersFrame {
        app: request.app,
        members: Arc::clone(&state.subscribers),
        frame: frames::typing(
            request.chat,
            &request.user,
            shard.config.limits.typing_expires_ms,
        ),
        except: request.user,
    });
    let shard = Rc::clone(shard);
    crate::task::spawn(async move {
        shard
            .to_every_home(|| ToHome::ToMembers(Arc::clone(&frame)))
            .await
    });
}
