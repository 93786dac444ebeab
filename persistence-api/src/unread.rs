//! Unread counts: the messages of a chat after a member's read position
//! that the member may see and did not send. Numbering has no gaps, so the
//! window is exactly the numbers from the position to the chat's count; the
//! count reads that window (through the read cache when there is one) and
//! applies the visibility rule of history to each message, so it is exact
//! by construction, at a cost that grows with the window.

use std::sync::Arc;

use crate::cache::ReadCache;
use crate::store::{AppId, ChatNumber, HistoryQuery, MessageNumber, Store, StoreResult};

/// Messages read per step of a count: one history page's worth.
const UNREAD_PAGE_MESSAGES: usize = 1_000;

/// The unread count of `user` in the chat whose newest message is `last`,
/// with the read position `position` (at most `last`).
pub async fn count(
    cache: Option<&Arc<ReadCache>>,
    store: &Arc<dyn Store>,
    app: AppId,
    chat: ChatNumber,
    user: &str,
    position: MessageNumber,
    last: MessageNumber,
) -> StoreResult<u64> {
    let mut unread = 0;
    let mut cursor = position;
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
        unread += page
            .items
            .iter()
            .filter(|message| message.sender != user && message.is_visible_to(user))
            .count() as u64;
    }
    Ok(unread)
}
