//! One chat's part of a member's feed: the messages the member may see
//! below the cursor, read newest first a step at a time, and how far down
//! the reading got.

use std::sync::Arc;

use super::key::FeedKey;
use crate::cache::ReadCache;
use crate::store::{AppId, ChatNumber, HistoryQuery, Message, MessageNumber, Store, StoreResult};

/// Most stored messages one chat's scan reads for one feed page; past it
/// the scan stops with a frontier, and the page ends there.
pub const FEED_SCAN_PER_CHAT_MAX: usize = 10_000;

/// The largest read of one scan step; steps grow from the first want.
const SCAN_STEP_MAX: usize = 1_000;

/// What every scan of one feed page shares.
pub struct ScanContext<'a> {
    pub store: &'a Arc<dyn Store>,
    pub cache: Option<&'a Arc<ReadCache>>,
    pub app: AppId,
    pub viewer: &'a str,
    pub cursor: Option<FeedKey>,
}

pub struct ChatScan {
    chat: ChatNumber,
    /// The next read ends below this number; `None`: at the newest.
    before: Option<MessageNumber>,
    /// Whether the cursor's place in this chat is known (or there is none).
    placed: bool,
    step: usize,
    scanned: usize,
    /// Visible messages below the cursor, newest first.
    pub candidates: Vec<(FeedKey, Message)>,
    /// Every message of the chat from this key up to the cursor has been
    /// read; below it not yet. `None` before anything (but placeholders of
    /// lost messages) was read.
    pub frontier: Option<FeedKey>,
    /// Read to the chat's first message.
    pub exhausted: bool,
    /// Stopped at `FEED_SCAN_PER_CHAT_MAX`: it reads no further this page.
    pub stopped: bool,
}

impl ChatScan {
    pub fn new(chat: ChatNumber, cursor: Option<FeedKey>) -> Self {
        // In the cursor's own chat the cursor is a number already.
        let before = cursor.filter(|c| c.chat == chat).map(|c| c.number);
        Self {
            chat,
            before,
            placed: cursor.is_none() || before.is_some(),
            step: 1,
            scanned: 0,
            candidates: Vec::new(),
            frontier: None,
            exhausted: false,
            stopped: false,
        }
    }

    /// Whether a further `extend` may find more.
    pub fn is_open(&self) -> bool {
        !self.exhausted && !self.stopped
    }

    /// Reads on until `want` more candidates are found, the chat is read to
    /// its start, or the scan reaches its bound. Reads as the app (so a page
    /// never ends early on messages the viewer may not see) and filters.
    pub async fn extend(&mut self, context: &ScanContext<'_>, want: usize) -> StoreResult<()> {
        let target = self.candidates.len() + want;
        self.step = self.step.max(want).clamp(1, SCAN_STEP_MAX);
        while self.is_open() && self.candidates.len() < target {
            let query = HistoryQuery {
                after: None,
                before: self.before,
                limit: self.step,
                viewer: None,
            };
            let page =
                crate::cache::messages(context.cache, context.store, context.app, self.chat, query)
                    .await?;
            let Some(oldest) = page.items.first() else {
                self.exhausted = true;
                break;
            };
            if let (false, Some(cursor)) = (self.placed, context.cursor) {
                self.placed = true;
                if page.has_more && FeedKey::of(self.chat, oldest) >= cursor {
                    // The whole newest page is at or after the cursor: a
                    // busy chat and a deep page. Find the cursor's place.
                    let boundary = last_before(context, self.chat, cursor, oldest.number).await?;
                    if boundary == 0 {
                        self.exhausted = true;
                        break;
                    }
                    self.before = Some(boundary + 1);
                    continue;
                }
            }
            self.take(&page.items, context);
            if !page.has_more {
                self.exhausted = true;
                break;
            }
            self.before = Some(oldest.number);
            // Not before a frontier: a run of lost placeholders has no
            // time to end a page at.
            if self.scanned >= FEED_SCAN_PER_CHAT_MAX && self.frontier.is_some() {
                self.stopped = true;
                break;
            }
            self.step = (self.step * 4).min(SCAN_STEP_MAX);
        }
        Ok(())
    }

    /// Keeps what the viewer may see of one read, newest first.
    fn take(&mut self, ascending: &[Message], context: &ScanContext<'_>) {
        for message in ascending.iter().rev() {
            self.scanned += 1;
            let key = FeedKey::of(self.chat, message);
            if context.cursor.is_some_and(|cursor| key >= cursor) {
                continue;
            }
            // A lost placeholder has no time; it must not pull the
            // frontier below messages not read yet.
            if !message.is_lost() {
                self.frontier = Some(key);
            }
            if message.is_visible_to(context.viewer) {
                self.candidates.push((key, message.clone()));
            }
        }
    }
}

/// The highest number below `above` whose key is before `cursor` (0: none),
/// by bisection over numbers, which inside one chat are in key order. A
/// lost placeholder counts as before the cursor: the search may then land
/// too high, which the scan's own key check absorbs, never too low.
async fn last_before(
    context: &ScanContext<'_>,
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
        let page = context.store.messages(context.app, chat, query).await?;
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
