//! `reads` events: the chat's members online hear whose read position
//! moved, for "seen by" receipts. Coalesced per chat: the positions moved
//! within `--read-events-interval-ms` (250) go out in one frame (the
//! highest of each user), so a busy chat sends its members at most four a
//! second. Best effort, as presence is: a chat not held by the owner, or
//! larger than `--read-events-members-max` (1,000), gets none; the positions themselves are
//! durable and read with `GET /v1/chats/{n}/reads`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::OwnerShard;
use crate::frames;
use crate::router::{ChatKey, MembersFrame, ReadMoved, ToHome};

pub fn handle(shard: &Rc<OwnerShard>, moved: ReadMoved) {
    let key = (moved.app, moved.chat);
    let mut owner = shard.chats.borrow_mut();
    let Some(state) = owner.chats.get_mut(&key) else {
        return;
    };
    let members_max = shard.config.limits.read_events_members_max;
    if state.loading || !state.exists || state.subscribers.len() > members_max {
        return;
    }
    let number = state.read_events.entry(moved.user).or_default();
    *number = (*number).max(moved.number);
    if !state.read_events_armed {
        state.read_events_armed = true;
        crate::task::spawn(flush_later(Rc::clone(shard), key));
    }
}

async fn flush_later(shard: Rc<OwnerShard>, key: ChatKey) {
    let interval = Duration::from_millis(shard.config.limits.read_events_interval_ms);
    glommio::timer::sleep(interval).await;
    let frame = {
        let mut owner = shard.chats.borrow_mut();
        let Some(state) = owner.chats.get_mut(&key) else {
            return; // forgotten meanwhile: its events with it
        };
        state.read_events_armed = false;
        let moved = std::mem::take(&mut state.read_events);
        if moved.is_empty() {
            return;
        }
        Arc::new(MembersFrame {
            app: key.0,
            members: Arc::clone(&state.subscribers),
            // No user id is empty: every member hears it, the readers too.
            except: String::new(),
            frame: frames::reads(key.1, &moved),
        })
    };
    shard
        .to_every_home(|| ToHome::ToMembers(Arc::clone(&frame)))
        .await;
}
