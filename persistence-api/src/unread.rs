//! Unread counts: the messages of a chat after a member's read position
//! that the member may see and did not send. Numbering has no gaps, so the
//! window is exactly the numbers from the position to the chat's count; the
//! count reads that window (through the read cache when there is one) and
//! applies the visibility rule of history to each message, so it is exact
//! by construction.
//!
//! Its cost grows with the window, and every sync asks for one, so a window
//! is read only as far as its newest [`UNREAD_WINDOW_MAX`] numbers: past
//! that the count is of those alone and says it is capped (a lower bound,
//! shown as "10,000+"). A member who reads keeps the window small.

use std::sync::Arc;

use chat_wire::ReadState;

use crate::cache::ReadCache;
use crate::store::{AppId, ChatNumber, HistoryQuery, MessageNumber, Store, StoreResult};

/// Messages read per step of a count: one history page's worth.
const UNREAD_PAGE_MESSAGES: usize = 1_000;

/// Most message numbers one count reads: the newest this many of a window.
pub const UNREAD_WINDOW_MAX: u64 = 10_000;

/// An unread count, and whether the window was wider than it could read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unread {
    pub count: u64,
    /// The window had more than [`UNREAD_WINDOW_MAX`] numbers: `count`
    /// covers the newest of them only.
    pub capped: bool,
}

/// The unread count of `user` in the chat whose newest message is `last`,
/// with the read position `position`.
pub async fn count(
    cache: Option<&Arc<ReadCache>>,
    store: &Arc<dyn Store>,
    app: AppId,
    chat: ChatNumber,
    user: &str,
    position: MessageNumber,
    last: MessageNumber,
) -> StoreResult<Unread> {
    let start = position.max(last.saturating_sub(UNREAD_WINDOW_MAX));
    let mut unread = Unread {
        count: 0,
        capped: start > position,
    };
    let mut cursor = start;
    while cursor < last {
        let query = HistoryQuery {
            after: Some(cursor),
            before: Some(last + 1),
            limit: UNREAD_PAGE_MESSAGES,
            // Read as the app: a page of messages the member may not see
            // must still move the cursor.
            viewer: None,
        };
        let page = crate::cache::messages(cache, store, app, chat, query).await?;
        let Some(newest) = page.items.last() else {
            // Gapless numbering leaves nothing to skip; a store that lost
            // messages holds placeholders for them (`chat repair`).
            break;
        };
        cursor = newest.number;
        unread.count += page
            .items
            .iter()
            .filter(|message| message.sender != user && message.is_visible_to(user))
            .count() as u64;
    }
    Ok(unread)
}

/// `user`'s read position in the chat and their unread messages up to
/// `seen`, the last number their client has: what a sync needs besides the
/// messages after `seen`, which it sends (and the engine counts).
pub async fn read_state(
    cache: Option<&Arc<ReadCache>>,
    store: &Arc<dyn Store>,
    app: AppId,
    chat: ChatNumber,
    user: &str,
    seen: MessageNumber,
) -> StoreResult<ReadState> {
    let positions = store
        .read_positions(app, chat, vec![user.to_owned()])
        .await?;
    let number = positions[0];
    let unread = count(cache, store, app, chat, user, number, seen).await?;
    Ok(ReadState {
        number,
        unread_through_seen: unread.count,
        capped: unread.capped,
    })
}
