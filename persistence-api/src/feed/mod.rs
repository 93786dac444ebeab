//! A member's feed: the newest messages they may see across every chat they
//! are a member of now, newest first, paged with a cursor.
//!
//! Each chat is scanned on its own (`chat_scan`) and the scans are merged.
//! A scan that stopped early (its bound) leaves a frontier: below it that
//! chat was not read, so the page holds only messages at or above the
//! highest frontier, and the next page starts there. Nothing is skipped and
//! nothing repeats; a page may come back short (even empty) with `has_more`
//! when a scan hit its bound.

mod chat_scan;
mod key;

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};

pub use self::chat_scan::FEED_SCAN_PER_CHAT_MAX;
pub use self::key::FeedKey;
use crate::cache::{ChatsLookup, ReadCache};
use crate::store::{AppId, ChatNumber, Message, Store, StoreResult};

/// Chats scanned at once for one feed page.
const CHATS_IN_FLIGHT: usize = 16;

/// The user's chats are listed from the store this many at a time.
const MEMBERSHIP_PAGE: usize = 1_000;

pub struct FeedItem {
    pub chat: ChatNumber,
    pub message: Message,
}

pub struct FeedPage {
    pub items: Vec<FeedItem>,
    /// Where the next page starts (pass it as `before`); `None`: the end.
    pub next: Option<FeedKey>,
}

pub struct FeedQuery {
    pub app: AppId,
    pub user: String,
    pub before: Option<FeedKey>,
    pub limit: usize,
}

pub async fn feed(
    store: &Arc<dyn Store>,
    cache: Option<&Arc<ReadCache>>,
    query: FeedQuery,
) -> StoreResult<FeedPage> {
    let chats = match cache {
        Some(cache) => match cache.user_chats(query.app, &query.user).await {
            ChatsLookup::Hit(chats) => chats,
            ChatsLookup::Miss(ticket) => {
                let chats = member_chats(store, query.app, &query.user).await?;
                if let Some(ticket) = ticket {
                    cache.fill_user_chats(ticket, chats.clone());
                }
                chats
            }
        },
        None => member_chats(store, query.app, &query.user).await?,
    };
    let scans: Vec<chat_scan::ChatScan> = stream::iter(chats)
        .map(|chat| {
            let request = chat_scan::ScanRequest {
                app: query.app,
                chat,
                viewer: &query.user,
                cursor: query.before,
                want: query.limit,
            };
            chat_scan::scan(store, cache, request)
        })
        .buffer_unordered(CHATS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(merge(scans, query.limit))
}

async fn member_chats(
    store: &Arc<dyn Store>,
    app: AppId,
    user: &str,
) -> StoreResult<Vec<ChatNumber>> {
    let mut chats = Vec::new();
    loop {
        let after = chats.last().copied().unwrap_or(0);
        let page = store
            .user_chats(app, user.to_owned(), after, MEMBERSHIP_PAGE)
            .await?;
        chats.extend(page.items);
        if !page.has_more {
            return Ok(chats);
        }
    }
}

fn merge(scans: Vec<chat_scan::ChatScan>, limit: usize) -> FeedPage {
    let frontier = scans.iter().filter_map(|scan| scan.frontier).max();
    let mut candidates: Vec<(FeedKey, Message)> = scans
        .into_iter()
        .flat_map(|scan| scan.candidates)
        .filter(|(key, _)| frontier.is_none_or(|frontier| *key >= frontier))
        .collect();
    candidates.sort_unstable_by_key(|(key, _)| std::cmp::Reverse(*key));
    let more_candidates = candidates.len() > limit;
    candidates.truncate(limit);
    let next = if candidates.len() == limit && (more_candidates || frontier.is_some()) {
        candidates.last().map(|(key, _)| *key)
    } else {
        // Short of the limit: every chat is read to its end, or the page
        // ends at the highest frontier.
        frontier
    };
    debug_assert!(candidates.windows(2).all(|w| w[0].0 > w[1].0));
    FeedPage {
        items: candidates
            .into_iter()
            .map(|(key, message)| FeedItem {
                chat: key.chat,
                message,
            })
            .collect(),
        next,
    }
}
