//! The indexer: follows the store's commit log into the search index.
//!
//! Loop: read the batches after the position fed so far, add them, and
//! commit the index (recording the position) every `commit_interval_ms` or
//! `commit_documents_max` documents, whichever comes first; then trim the
//! log behind the committed position. A batch commit wakes it at once
//! (`Feed::notify`), so when idle it sleeps; when busy it runs back to
//! back, and the lag stays near one commit interval.
//!
//! Errors: the index rolls back to its last commit and the loop resumes
//! from that commit's position after a pause, so a failure can delay
//! search but never skips or repeats a batch. The pause doubles with each
//! failure in a row (from `RETRY_PAUSE_MS_MIN` to `RETRY_PAUSE_MS_MAX`)
//! and starts again after a commit: a remote backend that is down for a
//! while is asked a few times a minute, not hammered, and indexing
//! resumes within `RETRY_PAUSE_MS_MAX` of its return. Meanwhile batch
//! commits go on (they never wait for the indexer) and the commit log
//! keeps what is not indexed yet; it is trimmed only behind a commit.
//!
//! Back of the envelope: a 200-byte message is ~35 words and ~150
//! trigrams; at 100k messages/s that is 20 MB/s of text and ~19M tokens/s
//! into tantivy's per-thread arenas, which is why tokens are built once,
//! documents are never deleted or updated, and the writer is never reopened.
//! An index commit itself costs a few ms of CPU (a fresh segment per
//! indexing thread that got documents: its term table, term dictionary and
//! files, several fsyncs, a reader reload) whatever it holds, so a trickle
//! of messages pays up to 1,000 / `commit_interval_ms` of them a second,
//! and an idle index none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::index::SearchIndex;
use super::metrics::SearchMetrics;
use crate::store::CommitLog;

/// Longest wait between index commits, in milliseconds: the bound on how
/// long an indexed message waits to become searchable.
pub const COMMIT_INTERVAL_MS_DEFAULT: u64 = 200;
/// Documents after which the index commits without waiting for the interval.
pub const COMMIT_DOCUMENTS_MAX_DEFAULT: usize = 200_000;
/// Most batches read from the log in one step.
pub const LOG_READ_BATCHES_MAX: usize = 1_024;
/// Most messages read from the log in one step (bounds the memory of a step).
pub const LOG_READ_MESSAGES_MAX: usize = 20_000;
/// Longest sleep with nothing to index (the lag gauges refresh then).
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// How often the lag gauges are refreshed from the log while indexing
/// fails (a read of one log entry each time).
const LAG_REFRESH_WHILE_FAILING: Duration = Duration::from_millis(250);
/// Pause after a first failure before trying again, in milliseconds.
pub const RETRY_PAUSE_MS_MIN: u64 = 250;
/// Longest pause between tries while failures go on, in milliseconds.
pub const RETRY_PAUSE_MS_MAX: u64 = 5_000;

#[derive(Debug, Clone, Copy)]
pub struct IndexerConfig {
    pub commit_interval_ms: u64,
    pub commit_documents_max: usize,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        Self {
            commit_interval_ms: COMMIT_INTERVAL_MS_DEFAULT,
            commit_documents_max: COMMIT_DOCUMENTS_MAX_DEFAULT,
        }
    }
}

/// The batch commit's side of the indexer: a wake-up, and the stop signal.
#[derive(Default)]
pub struct Feed {
    wake: Notify,
    stopping: AtomicBool,
}

impl Feed {
    /// A batch was committed: there is something to read.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// The pause after `failures` failures in a row.
fn retry_pause_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_PAUSE_MS_MIN
        .saturating_mul(1 << doublings)
        .min(RETRY_PAUSE_MS_MAX)
}

pub struct Indexer {
    pub log: Arc<dyn CommitLog>,
    pub index: Arc<dyn SearchIndex>,
    pub feed: Arc<Feed>,
    pub metrics: Arc<SearchMetrics>,
    pub config: IndexerConfig,
}

/// What has been added to the index but not yet committed.
struct Pending {
    position: u64,
    documents: usize,
    /// When the store committed the oldest batch not yet searchable.
    oldest_committed_at_us: Option<i64>,
    since: Instant,
}

impl Indexer {
    /// Runs until [`Feed::stop`]; commits what it added before returning.
    pub async fn run(self) {
        // Failures since the last commit.
        let mut failures = 0u32;
        loop {
            match self.follow(&mut failures).await {
                Ok(()) => return,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let pause_ms = retry_pause_ms(failures);
                    tracing::warn!(
                        %error,
                        failures,
                        pause_ms,
                        "search indexing failed; resuming from the last commit"
                    );
                    self.metrics.index_failures.inc();
                    if self.feed.stopping() {
                        return;
                    }
                    // A stop ends the pause; batch commits' wake-ups do not.
                    // The lag gauges keep counting meanwhile (nothing else
                    // updates them while every try fails).
                    let pause = tokio::time::sleep(Duration::from_millis(pause_ms));
                    tokio::pin!(pause);
                    let mut refresh = tokio::time::interval(LAG_REFRESH_WHILE_FAILING);
                    loop {
                        tokio::select! {
                            () = &mut pause => break,
                            _ = refresh.tick() => self.refresh_lag().await,
                            () = self.feed.wake.notified() => {
                                if self.feed.stopping() {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sets the lag gauges from the log alone: the age of the first batch
    /// after the committed position. For the pauses after a failure, when
    /// the loop that otherwise keeps them current does not run.
    async fn refresh_lag(&self) {
        let indexed = u64::try_from(self.metrics.indexed_position.get()).unwrap_or(0);
        let head = self.log.head();
        let oldest_committed_at_us = if head > indexed {
            match self.log.committed_at_after(indexed).await {
                Ok(committed_at_us) => committed_at_us,
                Err(error) => {
                    tracing::debug!(%error, "reading the commit log for the lag gauge");
                    return;
                }
            }
        } else {
            None
        };
        self.metrics
            .observe_lag(head, indexed, oldest_committed_at_us);
    }

    async fn follow(
        &self,
        failures: &mut u32,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let committed = self.index.rollback().await?;
        self.metrics.indexed_position.set(committed as i64);
        let interval = Duration::from_millis(self.config.commit_interval_ms);
        let mut fed = committed;
        let mut pending = Pending {
            position: committed,
            documents: 0,
            oldest_committed_at_us: None,
            since: Instant::now(),
        };
        loop {
            let head = self.log.head();
            // Stopping: commit what was added, read nothing more (a backlog
            // is the next start's to replay, not the shutdown's).
            let stopping = self.feed.stopping();
            let batches = if head > fed && !stopping {
                let batches = self
                    .log
                    .read_after(fed, LOG_READ_BATCHES_MAX, LOG_READ_MESSAGES_MAX)
                    .await?;
                self.metrics.observe_log_reads(self.log.entries_read());
                batches
            } else {
                Vec::new()
            };
            let read_nothing = batches.is_empty();
            // Positions have no holes (each is taken inside its commit's
            // transaction), so a jump means trimmed entries: see below.
            let jumped = batches.first().is_some_and(|b| b.position != fed + 1);
            if !stopping && (jumped || (read_nothing && head > fed)) {
                // The log says there is more but holds none of it: it was
                // trimmed past this index's position (the index was replaced
                // or removed). Those messages cannot be replayed from the
                // log; rebuilding from the store can.
                tracing::error!(
                    indexed = fed,
                    head,
                    "the commit log no longer holds what the search index lacks; \
                     those messages are not searchable until the index is rebuilt"
                );
                self.metrics.index_failures.inc();
            }
            if let Some(last) = batches.last() {
                if fed == pending.position {
                    // The first uncommitted batch: the commit interval and
                    // the lag start now.
                    pending.since = Instant::now();
                    pending.oldest_committed_at_us = batches.first().map(|b| b.committed_at_us);
                }
                fed = last.position;
                pending.documents += self.index.add(batches).await?;
            }
            // After the read: the oldest batch not yet searchable is the
            // first one read since the last commit, even when this step
            // is the first to read it.
            self.metrics
                .observe_lag(head, pending.position, pending.oldest_committed_at_us);
            let due = pending.since.elapsed() >= interval
                || pending.documents >= self.config.commit_documents_max;
            if fed > pending.position && (due || stopping) {
                self.index.commit(fed).await?;
                self.metrics
                    .documents_indexed
                    .inc_by(pending.documents as u64);
                self.metrics.indexed_position.set(fed as i64);
                self.log.trim_through(fed).await?;
                *failures = 0;
                pending = Pending {
                    position: fed,
                    documents: 0,
                    oldest_committed_at_us: None,
                    since: Instant::now(),
                };
                continue;
            }
            if stopping {
                return Ok(());
            }
            if read_nothing {
                fed = fed.max(head);
                // Caught up: sleep until a batch commit wakes us, or until
                // the pending documents are due.
                let wait = if fed > pending.position {
                    interval.saturating_sub(pending.since.elapsed())
                } else {
                    IDLE_WAKE
                };
                let _ = tokio::time::timeout(wait, self.feed.wake.notified()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_pause_doubles_up_to_its_bound() {
        assert_eq!(retry_pause_ms(1), RETRY_PAUSE_MS_MIN);
        assert_eq!(retry_pause_ms(2), 2 * RETRY_PAUSE_MS_MIN);
        assert_eq!(retry_pause_ms(3), 4 * RETRY_PAUSE_MS_MIN);
        assert_eq!(retry_pause_ms(u32::MAX), RETRY_PAUSE_MS_MAX);
    }
}
