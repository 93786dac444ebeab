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
use self::chat_scan::{ChatScan, ScanContext};
pub use self::key::FeedKey;
use crate::cache::{ChatsLookup, ReadCache};
use crate::store::{AppId, ChatNumber, Message, MessageNumber, Store, StoreResult};

/// Chats scanned at once for one feed page.
const CHATS_IN_FLIGHT: usize = 64;

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
    let chats = chats_of(store, cache, query.app, &query.user).await?;
    let context = ScanContext {
        store,
        cache,
        app: query.app,
        viewer: &query.user,
        cursor: query.before,
    };
    let mut scans: Vec<ChatScan> = chats
        .iter()
        .map(|&chat| ChatScan::new(chat, query.before))
        .collect();
    // First a few from every chat (together about twice the page), then
    // more only from the chats that may still hold part of the page.
    let mut want = (query.limit * 2)
        .div_ceil(scans.len().max(1))
        .max(2)
        .min(query.limit);
    let mut extending: Vec<&mut ChatScan> = scans.iter_mut().collect();
    while !extending.is_empty() {
        let reads: Vec<_> = extending
            .into_iter()
            .map(|scan| scan.extend(&context, want))
            .collect();
        stream::iter(reads)
            .buffer_unordered(CHATS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        want = (want * 4).min(query.limit);
        extending = still_needed(&mut scans, query.limit);
    }
    Ok(merge(scans, query.limit))
}

/// The open scans whose unread part may still hold a message of the page:
/// none once the page is certain, every open one while there are fewer
/// candidates than the page holds, else those whose frontier is at or above
/// the page's last candidate (`None` frontier: nothing read, so above).
fn still_needed(scans: &mut [ChatScan], limit: usize) -> Vec<&mut ChatScan> {
    let frontier = highest_frontier(scans);
    let mut keys: Vec<FeedKey> = scans
        .iter()
        .flat_map(|scan| scan.candidates.iter().map(|(key, _)| *key))
        .collect();
    let certain = keys
        .iter()
        .filter(|key| frontier.is_none_or(|frontier| **key >= frontier))
        .count();
    if certain >= limit {
        return Vec::new();
    }
    let threshold = if keys.len() >= limit {
        keys.select_nth_unstable_by_key(limit - 1, |key| std::cmp::Reverse(*key));
        Some(keys[limit - 1])
    } else {
        None
    };
    scans
        .iter_mut()
        .filter(|scan| scan.is_open())
        .filter(|scan| match (threshold, scan.frontier) {
            (Some(threshold), Some(frontier)) => frontier >= threshold,
            _ => true,
        })
        .collect()
}

/// The highest frontier of the scans not read to their start; the highest
/// possible key for one that has read nothing yet.
fn highest_frontier(scans: &[ChatScan]) -> Option<FeedKey> {
    scans
        .iter()
        .filter(|scan| !scan.exhausted)
        .map(|scan| {
            scan.frontier.unwrap_or(FeedKey {
                sent_at_us: i64::MAX,
                chat: ChatNumber::MAX,
                number: MessageNumber::MAX,
            })
        })
        .max()
}

/// The member's chats now: from the cache when it holds them whole, else
/// from the store (filling the cache).
async fn chats_of(
    store: &Arc<dyn Store>,
    cache: Option<&Arc<ReadCache>>,
    app: AppId,
    user: &str,
) -> StoreResult<Vec<ChatNumber>> {
    let Some(cache) = cache else {
        return member_chats(store, app, user).await;
    };
    match cache.user_chats(app, user).await {
        ChatsLookup::Hit(chats) => Ok(chats),
        ChatsLookup::Miss(ticket) => {
            let chats = member_chats(store, app, user).await?;
            if let Some(ticket) = ticket {
                cache.fill_user_chats(ticket, chats.clone());
            }
            Ok(chats)
        }
    }
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

/// The page: the newest `limit` candidates at or above the highest
/// frontier (below it some chat was not read).
fn merge(scans: Vec<ChatScan>, limit: usize) -> FeedPage {
    let frontier = highest_frontier(&scans);
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
