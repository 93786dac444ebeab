//! Full-text search of message history.
//!
//! Map: `query` parses what a client typed into folded terms (`fold`,
//! `words`); a backend behind [`SearchIndex`] (`index`) fetches the
//! candidates that the shared keyset walk (`pager`) asks for, tier by tier,
//! and `matching` verifies each against its body, so every hit is exact
//! and carries its highlights; `cursor` signs the keyset position of the
//! next page. `indexer` feeds the backend from the store's commit log,
//! which the batch commit writes in the same transaction as the messages,
//! so the index trails the store by a bounded lag and recovers exactly from
//! a crash. `embedded` is the tantivy backend in `<data_dir>/search`;
//! `opensearch` the OpenSearch one, for clusters, fed the same way.
//!
//! Visibility is the history rule, enforced twice: the route checks the
//! reader's membership now (a member who left finds nothing at once), and
//! every backend query carries the app id and the viewer's audience filter.

mod ascii_words;
pub mod cursor;
pub mod embedded;
pub mod fold;
pub mod index;
pub mod indexer;
pub mod limits;
pub mod matching;
pub mod metrics;
pub mod opensearch;
pub mod pager;
pub mod query;
pub mod reindex;
pub mod words;

use std::sync::Arc;

pub use index::{SearchError, SearchIndex};
pub use limits::SearchLimits;

use self::cursor::CursorKey;
use self::embedded::{EmbeddedSearchConfig, TantivyIndex};
use self::indexer::{Feed, Indexer, IndexerConfig};
use self::metrics::SearchMetrics;
use self::opensearch::{OpenSearchConfig, OpenSearchIndex};
use crate::store::CommitLog;

/// Which search backend runs (`--search`, `CHAT_SEARCH`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// tantivy in `<data_dir>/search`, fed by the embedded store.
    #[default]
    Embedded,
    /// An OpenSearch cluster (`opensearch://host:port[,…]/index-prefix`),
    /// fed by the embedded store's commit log.
    OpenSearch(OpenSearchConfig),
    /// No search: the routes answer 503 `search_unavailable`.
    Off,
}

impl SearchMode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "embedded" => Ok(Self::Embedded),
            "off" => Ok(Self::Off),
            url if OpenSearchConfig::is_url(url) => {
                OpenSearchConfig::parse(url).map(Self::OpenSearch)
            }
            other => Err(format!(
                "search {other:?} is none of `embedded`, `off` and \
                 `opensearch://host:port[,host:port…]/index-prefix`"
            )),
        }
    }

    /// Whether a backend runs (and so the store must keep a commit log).
    pub fn is_on(&self) -> bool {
        !matches!(self, Self::Off)
    }
}

#[derive(Debug, Clone)]
pub struct SearchConfig {
    pub mode: SearchMode,
    pub limits: SearchLimits,
    pub indexer: IndexerConfig,
    pub writer_threads: usize,
    pub writer_heap_bytes: usize,
    /// Messages of the newest commit log entries the embedded store keeps
    /// in memory for the indexer (0: every entry is read back).
    pub log_memory_messages_max: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            mode: SearchMode::default(),
            limits: SearchLimits::default(),
            indexer: IndexerConfig::default(),
            writer_threads: embedded::WRITER_THREADS_DEFAULT,
            writer_heap_bytes: embedded::WRITER_HEAP_BYTES_DEFAULT,
            log_memory_messages_max: crate::store::RECENT_LOG_MESSAGES_MAX_DEFAULT,
        }
    }
}

/// What the routes and the batch commit hold: the backend, its feed, and
/// what every query needs.
pub struct Search {
    pub index: Arc<dyn SearchIndex>,
    pub feed: Arc<Feed>,
    pub metrics: Arc<SearchMetrics>,
    pub limits: SearchLimits,
    pub cursors: CursorKey,
    log: Arc<dyn CommitLog>,
    indexer: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Opens the backend `config.mode` names (`None` when search is off):
/// the embedded index in `<data_dir>/search`, or an OpenSearch cluster,
/// whose indices are created or checked now if it answers (if it does not,
/// by the first request that gets through).
pub async fn open_index(
    config: &SearchConfig,
    data_dir: &std::path::Path,
) -> Result<Option<Arc<dyn SearchIndex>>, SearchError> {
    config.limits.validate().map_err(SearchError::Unavailable)?;
    Ok(match &config.mode {
        SearchMode::Off => None,
        SearchMode::Embedded => Some(Arc::new(TantivyIndex::open(&EmbeddedSearchConfig {
            dir: TantivyIndex::dir_in(data_dir),
            writer_threads: config.writer_threads,
            writer_heap_bytes: config.writer_heap_bytes,
            limits: config.limits.clone(),
        })?)),
        SearchMode::OpenSearch(remote) => {
            let index = OpenSearchIndex::new(remote, config.limits.clone())?;
            match index.prepare().await {
                Ok(()) => {}
                Err(SearchError::Unavailable(why)) => tracing::warn!(
                    opensearch = %remote,
                    %why,
                    "OpenSearch does not answer yet; search answers 503 and indexing waits \
                     until it does"
                ),
                Err(error) => return Err(error),
            }
            Some(Arc::new(index))
        }
    })
}

impl Search {
    /// Starts feeding `index` from `log`.
    pub fn start(
        config: &SearchConfig,
        index: Arc<dyn SearchIndex>,
        log: Arc<dyn CommitLog>,
        cursor_secret: &str,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Arc<Self>, SearchError> {
        config.limits.validate().map_err(SearchError::Unavailable)?;
        let metrics = Arc::new(SearchMetrics::register(registry));
        let feed = Arc::new(Feed::default());
        metrics.raise_head(log.head());
        let indexer = Indexer {
            log: Arc::clone(&log),
            index: Arc::clone(&index),
            feed: Arc::clone(&feed),
            metrics: Arc::clone(&metrics),
            config: config.indexer,
        };
        let task = tokio::spawn(indexer.run());
        Ok(Arc::new(Self {
            index,
            feed,
            metrics,
            limits: config.limits.clone(),
            cursors: CursorKey::derive(cursor_secret),
            log,
            indexer: tokio::sync::Mutex::new(Some(task)),
        }))
    }

    /// A batch commit is durable: record the log's new head (before the
    /// commit is answered, so a client that saw the answer can wait for
    /// `indexed_position` to reach it) and wake the indexer.
    pub fn after_commit(&self) {
        self.metrics.raise_head(self.log.head());
        self.feed.notify();
    }

    /// Stops the indexer after it commits what it has read.
    pub async fn stop(&self) {
        self.feed.stop();
        if let Some(task) = self.indexer.lock().await.take() {
            let _ = task.await;
        }
    }
}
