//! One chat's part of a member's feed: its newest messages the member may
//! see that come before the cursor, and how far down the scan got.

use std::sync::Arc;

use super::key::FeedKey;
use crate::cache::ReadCache;
use crate::store::{AppId, ChatNumber, HistoryQuery, Message, MessageNumber, Store, StoreResult};

/// Most stored messages one chat's scan reads for one feed page; past it
/// the scan stops with a frontier, and the page ends there.
pub const FEED_SCAN_PER_CHAT_MAX: usize = 10_000;

/// The largest read of one scan step; steps grow from the page's limit.
const SCAN_STEP_MAX: usize = 1_000;

pub struct ChatScan {
    /// Visible messages before the cursor, newest first, at most the want.
    pub candidates: Vec<(FeedKey, Message)>,
    /// Every message of the chat from this key up to the cursor has been
    /// read; below it some may not have been. `None`: the chat is read to
    /// its first message.
    pub frontier: Option<FeedKey>,
}

pub struct ScanRequest<'a> {
    pub app: AppId,
    pub chat: ChatNumber,
    pub viewer: &'a str,
    pub cursor: Option<FeedKey>,
    pub want: usize,
}

/// Reads the chat newest first as the app (so a page never ends early on
/// messages the viewer may not see) and keeps what the viewer may see.
pub async fn scan(
    store: &Arc<dyn Store>,
    cache: Option<&Arc<ReadCache>>,
    request: ScanRequest<'_>,
) -> StoreResult<ChatScan> {
    let ScanRequest {
        app,
        chat,
        viewer,
        cursor,
        want,
    } = request;
    // In the cursor's own chat the cursor is a number already.
    let mut before = cursor.filter(|c| c.chat == chat).map(|c| c.number);
    // Whether the cursor's place in this chat is known (or there is none).
    let mut placed = cursor.is_none() || before.is_some();
    let mut step = want.clamp(1, SCAN_STEP_MAX);
    let mut scanned = 0;
    let mut candidates = Vec::new();
    let mut frontier = None;
    loop {
        let query = HistoryQuery {
            after: None,
            before,
            limit: step,
            viewer: None,
        };
        let page = crate::cache::messages(cache, store, app, chat, query).await?;
        let Some(oldest) = page.items.first() else {
            return Ok(ChatScan {
                candidates,
                frontier: None,
            });
        };
        if let (false, Some(cursor)) = (placed, cursor) {
            placed = true;
            if page.has_more && FeedKey::of(chat, oldest) >= cursor {
                // The whole newest page is at or after the cursor: a busy
                // chat and a deep page. Find the cursor's place by number.
                let boundary = last_before(store, app, chat, cursor, oldest.number).await?;
                if boundary == 0 {
                    return Ok(ChatScan {
                        candidates,
                        frontier: None,
                    });
                }
                before = Some(boundary + 1);
                continue;
            }
        }
        for message in page.items.iter().rev() {
            scanned += 1;
            let key = FeedKey::of(chat, message);
            if cursor.is_some_and(|cursor| key >= cursor) {
                continue;
            }
            // A lost placeholder has no time; it must not pull the
            // frontier below messages not read yet.
            if !message.is_lost() {
                frontier = Some(key);
            }
            if message.is_visible_to(viewer) {
                candidates.push((key, message.clone()));
                if candidates.len() == want {
                    return Ok(ChatScan {
                        candidates,
                        frontier,
                    });
                }
            }
        }
        if !page.has_more {
            return Ok(ChatScan {
                candidates,
                frontier: None,
            });
        }
        if scanned >= FEED_SCAN_PER_CHAT_MAX {
            return Ok(ChatScan {
                candidates,
                frontier,
            });
        }
        before = Some(oldest.number);
        step = (step * 4).min(SCAN_STEP_MAX);
    }
}

/// The highest number below `above` whose key is before `cursor` (0: none),
/// by bisection over numbers, which inside one chat are in key order. A
/// lost placeholder counts as before the cursor: the search may then land
/// too high, which the scan's own key check absorbs, never too low.
async fn last_before(
    store: &Arc<dyn Store>,
    app: AppId,
    chat: ChatNumber,
    cursor: FeedKey,
    above: MessageNumber,
) -> StoreResult<MessageNumber> {
    let (mut low, mut high) = (0, above);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        let query = HistoryQuery {
            after: Some(middle - 1),
            before: None,
            limit: 1,
            viewer: None,
        };
        let page = store.messages(app, chat, query).await?;
        let before_cursor = page
            .items
            .first()
            .is_none_or(|m| m.is_lost() || FeedKey::of(chat, m) < cursor);
        if before_cursor {
            low = middle;
        } else {
            high = middle;
        }
    }
    Ok(low)
}
