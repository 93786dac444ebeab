//! Rebuilding the search index (embedded or OpenSearch, whichever
//! `CHAT_SEARCH` names) from the embedded store (`chat reindex`): for a
//! data dir whose index was lost, or that ran with search off (its commit
//! log then holds nothing for those messages), or after an upgrade that
//! adds search to existing history.
//!
//! Steps, each safe to interrupt (run it again):
//! 1. open the index first: its writer lock fails while an API serves this
//!    data dir, so the rebuild never races live indexing (for OpenSearch,
//!    which has no such lock, the store's own lock on the data dir does);
//! 2. trim the commit log through its head `h` and clear the index with
//!    payload `h`: nothing older will be replayed, nothing older is left;
//! 3. log every stored message again, in entries of
//!    [`ENTRY_MESSAGES_MAX`], chat by chat (positions after `h`);
//! 4. run the ordinary indexer until it has committed the last of them.
//!
//! An interruption after step 2 leaves a cleared index and a log the next
//! API start finishes indexing (a partial entry set, then: run it again).
//! Recency of rebuilt messages is their chat-by-chat scan order, not the
//! original commit order across chats (within a chat it is the same).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::indexer::{Feed, Indexer};
use super::metrics::SearchMetrics;
use super::{SearchConfig, SearchError};
use crate::store::{CommitLog, EmbeddedOptions, EmbeddedStore, MessageSpan, Store, StoreError};

/// Messages per commit log entry written by a rebuild.
pub const ENTRY_MESSAGES_MAX: u64 = 1_024;
/// How often the rebuild reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    #[error("the search index: {0}")]
    Search(#[from] SearchError),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reindexed {
    /// Messages logged again (lost placeholders included; they are skipped
    /// by the indexer).
    pub messages: u64,
    pub chats: u64,
}

/// Rebuilds the search index `config` names from the store in `data_dir`, calling
/// `progress(documents indexed, messages to index)` as it goes.
pub async fn reindex(
    data_dir: &Path,
    config: &SearchConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<Reindexed, ReindexError> {
    let Some(index) = super::open_index(config, data_dir).await? else {
        return Err(
            SearchError::Unavailable("search is off: there is no index to rebuild".into()).into(),
        );
    };
    let store = Arc::new(EmbeddedStore::open_with(
        data_dir,
        EmbeddedOptions {
            commit_log: true,
            ..EmbeddedOptions::default()
        },
    )?);
    let old_head = store.head();
    store.trim_through(old_head).await?;
    index.clear(old_head).await?;

    let mut done = Reindexed {
        messages: 0,
        chats: 0,
    };
    let mut spans = Vec::new();
    let mut in_entry = 0u64;
    // App ids run 1, 2, 3, … and apps are never removed.
    for app in 1.. {
        if store.app(app).await?.is_none() {
            break;
        }
        let mut after = 0;
        loop {
            let page = store
                .chats(app, after, crate::limits::PAGE_SIZE_MAX)
                .await?;
            for chat in &page.items {
                done.chats += 1;
                let mut first = 1;
                while first <= chat.messages_count {
                    let take = (chat.messages_count - first + 1).min(ENTRY_MESSAGES_MAX - in_entry);
                    spans.push(MessageSpan {
                        app,
                        chat: chat.number,
                        first,
                        last: first + take - 1,
                    });
                    in_entry += take;
                    done.messages += take;
                    first += take;
                    if in_entry == ENTRY_MESSAGES_MAX {
                        store.log_stored(std::mem::take(&mut spans)).await?;
                        in_entry = 0;
                    }
                }
            }
            match page.items.last() {
                Some(last) if page.has_more => after = last.number,
                _ => break,
            }
        }
    }
    if !spans.is_empty() {
        store.log_stored(spans).await?;
    }
    let head = store.head();

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(SearchMetrics::register(&mut registry));
    let feed = Arc::new(Feed::default());
    let indexer = Indexer {
        log: Arc::clone(&store) as Arc<dyn CommitLog>,
        index: Arc::clone(&index),
        feed: Arc::clone(&feed),
        metrics: Arc::clone(&metrics),
        config: config.indexer,
    };
    let task = tokio::spawn(indexer.run());
    loop {
        progress(metrics.documents_indexed.get(), done.messages);
        let indexed = u64::try_from(metrics.indexed_position.get()).unwrap_or(0);
        if indexed >= head || task.is_finished() {
            break;
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
    feed.stop();
    let _ = task.await;
    let indexed = index.indexed_position().await?;
    if indexed < head {
        return Err(SearchError::Unavailable(format!(
            "the rebuild stopped at position {indexed} of {head}"
        ))
        .into());
    }
    progress(metrics.documents_indexed.get(), done.messages);
    store.flush().await?;
    Ok(done)
}
