//! Search metrics in `/metrics` (prefix `chat_api_search_`): how far the
//! index trails the store, how much it indexed, and how queries fare.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chat_http_metrics::latency_histogram;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::OutcomeLabels;
use crate::store::EntriesRead;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

pub struct SearchMetrics {
    /// The commit log position durably indexed.
    pub indexed_position: Gauge,
    /// The newest commit log position (the store's side), raised by every
    /// batch commit before it is answered.
    pub log_head_position: Gauge,
    /// Commit log entries (batch commits) not yet searchable.
    pub lag_entries: Gauge,
    /// Seconds since the oldest batch that is not yet searchable was
    /// committed (0 when the index is current).
    pub lag_seconds: Gauge<f64, AtomicU64>,
    pub documents_indexed: Counter,
    pub index_failures: Counter,
    /// Commit log entries the indexer read, by source (memory, store).
    log_entries_read: Family<SourceLabels, Counter>,
    query_seconds: Histogram,
    queries: Family<OutcomeLabels, Counter>,
}

impl SearchMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            indexed_position: Gauge::default(),
            log_head_position: Gauge::default(),
            lag_entries: Gauge::default(),
            lag_seconds: Gauge::default(),
            documents_indexed: Counter::default(),
            index_failures: Counter::default(),
            log_entries_read: Family::default(),
            query_seconds: latency_histogram(),
            queries: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("search");
        registry.register(
            "indexed_position",
            "The commit log position whose batches (and all before) are durably indexed",
            metrics.indexed_position.clone(),
        );
        registry.register(
            "log_head_position",
            "The newest commit log position: indexed_position catches up to it",
            metrics.log_head_position.clone(),
        );
        registry.register(
            "lag_entries",
            "Batch commits not yet searchable",
            metrics.lag_entries.clone(),
        );
        registry.register(
            "lag_seconds",
            "Age of the oldest committed batch that is not yet searchable (0 when current)",
            metrics.lag_seconds.clone(),
        );
        registry.register(
            "documents_indexed",
            "Messages made searchable",
            metrics.documents_indexed.clone(),
        );
        registry.register(
            "index_failures",
            "Indexing steps that failed (the index rolled back and resumed)",
            metrics.index_failures.clone(),
        );
        registry.register(
            "log_entries_read",
            "Commit log entries the indexer read: from the store's memory of its newest \
             commits, or read back from the store (CHAT_SEARCH_LOG_MEMORY_MESSAGES_MAX)",
            metrics.log_entries_read.clone(),
        );
        registry.register(
            "query_seconds",
            "Search query latency, from parsed request to page",
            metrics.query_seconds.clone(),
        );
        registry.register(
            "queries",
            "Search requests by outcome (ok, refused, unavailable)",
            metrics.queries.clone(),
        );
        metrics
    }

    /// Raises the head gauge to `head` (never lowers it: batch commits
    /// answer concurrently).
    pub fn raise_head(&self, head: u64) {
        let head = i64::try_from(head).unwrap_or(i64::MAX);
        self.log_head_position
            .inner()
            .fetch_max(head, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn observe_lag(&self, head: u64, indexed: u64, oldest_committed_at_us: Option<i64>) {
        self.raise_head(head);
        self.lag_entries
            .set(i64::try_from(head.saturating_sub(indexed)).unwrap_or(i64::MAX));
        let lag_us = match oldest_committed_at_us {
            Some(at_us) if head > indexed => (crate::clock::now_us() - at_us).max(0),
            _ => 0,
        };
        self.lag_seconds.set(lag_us as f64 / 1e6);
    }

    /// Brings the read counters up to the log's totals (the indexer is
    /// their only writer).
    pub fn observe_log_reads(&self, read: EntriesRead) {
        for (source, total) in [("memory", read.from_memory), ("store", read.from_store)] {
            let counter = self
                .log_entries_read
                .get_or_create(&SourceLabels { source });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    pub fn observe_query(&self, elapsed: Duration, outcome: &'static str) {
        self.query_seconds.observe(elapsed.as_secs_f64());
        self.queries.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn count_outcome(&self, outcome: &'static str) {
        self.queries.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}
