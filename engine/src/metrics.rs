//! Per-shard metrics. Each shard writes only its own (relaxed atomics, no
//! lock, no contention); `/metrics` on any shard reads them all and renders
//! Prometheus text with a `shard` label.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A fixed-bucket histogram (Prometheus style: cumulative on render).
pub struct Histogram {
    bounds: &'static [u64],
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Self {
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "bucket bounds must increase"
        );
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        let index = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, shard: usize) {
        let mut cumulative = 0;
        for (index, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[index].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{shard=\"{shard}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "{name}_sum{{shard=\"{shard}\"}} {}",
            self.sum.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "{name}_count{{shard=\"{shard}\"}} {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// Fine below 5 ms, where the latency targets are (a p99 read from these
/// buckets is exact to the next bound), coarse above.
const LATENCY_US_BOUNDS: &[u64] = &[
    50, 100, 150, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_500, 10_000,
    15_000, 20_000, 30_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000,
];
const BATCH_SIZE_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096];

pub struct ShardMetrics {
    /// 1 while the shard's thread runs; its exit guard sets 0 (see `lib.rs`).
    pub alive: Gauge,
    /// Unix time in ms of the first failed batch commit (transport error or
    /// server error) since the last one that succeeded; 0 while commits work.
    pub commit_failing_since_ms: Gauge,
    pub connections_open: Gauge,
    pub connections_total: Counter,
    pub revocation_poll_failures: Counter,
    /// 1 while user tokens are refused for want of a recent revocation poll.
    pub revocations_stale: Gauge,
    pub frames_in: Counter,
    pub bytes_in: Counter,
    pub frames_out: Counter,
    pub bytes_out: Counter,
    pub deliveries: Counter,
    /// `read` frames whose position the API took.
    pub read_positions: Counter,
    /// `typing` frames relayed to a chat's members, and dropped by the
    /// per-connection interval.
    pub typing_relayed: Counter,
    pub typing_dropped: Counter,
    pub slow_consumer_closes: Counter,
    pub overloaded: Counter,
    pub messages_committed: Counter,
    pub batch_retries: Counter,
    pub owner_backlog: Gauge,
    /// Batches posted to the API and not yet settled.
    pub batches_in_flight: Gauge,
    pub syncs_from_ring: Counter,
    pub syncs_from_store: Counter,
    /// Store reads that extended a chat's ring for the syncs past it.
    pub sync_backfill_reads: Counter,
    /// Syncs' membership checks, and the calls to the API that answered
    /// them (fewer when syncs arrive together).
    pub membership_checks: Counter,
    pub membership_check_calls: Counter,
    /// Times the owner read a chat's subscriber set from the API: at its
    /// load, and again after each membership change a commit reported.
    pub subscriber_reads: Counter,
    pub inbox_depth: Gauge,
    pub batch_messages: Histogram,
    pub commit_latency_us: Histogram,
    /// The persistence API's own time per committed batch (its receipt's
    /// `api_us`); `commit_latency_us` minus this is the engine's wait.
    pub commit_api_us: Histogram,
    /// How late the shard's periodic probe timer fired (see `reactor_lag`):
    /// how long anything that arrived had to wait for the shard to look.
    pub reactor_lag_us: Histogram,
    /// The part of that lateness the shard's thread spent on a core.
    pub reactor_lag_on_cpu_us: Histogram,
    /// Times the flusher ended a scheduler pass mid-round to let control
    /// work in (see `home::flusher`).
    pub flusher_slices: Counter,
    /// Times a connection's socket took only part of its queue, so that its
    /// writer task waited for room (a client reading slower than it gets).
    pub sockets_full: Counter,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        Self {
            alive: Gauge::default(),
            commit_failing_since_ms: Gauge::default(),
            connections_open: Gauge::default(),
            connections_total: Counter::default(),
            revocation_poll_failures: Counter::default(),
            revocations_stale: Gauge::default(),
            frames_in: Counter::default(),
            bytes_in: Counter::default(),
            frames_out: Counter::default(),
            bytes_out: Counter::default(),
            deliveries: Counter::default(),
            read_positions: Counter::default(),
            typing_relayed: Counter::default(),
            typing_dropped: Counter::default(),
            slow_consumer_closes: Counter::default(),
            overloaded: Counter::default(),
            messages_committed: Counter::default(),
            batch_retries: Counter::default(),
            owner_backlog: Gauge::default(),
            batches_in_flight: Gauge::default(),
            syncs_from_ring: Counter::default(),
            syncs_from_store: Counter::default(),
            sync_backfill_reads: Counter::default(),
            membership_checks: Counter::default(),
            membership_check_calls: Counter::default(),
            subscriber_reads: Counter::default(),
            inbox_depth: Gauge::default(),
            batch_messages: Histogram::new(BATCH_SIZE_BOUNDS),
            commit_latency_us: Histogram::new(LATENCY_US_BOUNDS),
            commit_api_us: Histogram::new(LATENCY_US_BOUNDS),
            reactor_lag_us: Histogram::new(LATENCY_US_BOUNDS),
            reactor_lag_on_cpu_us: Histogram::new(LATENCY_US_BOUNDS),
            flusher_slices: Counter::default(),
            sockets_full: Counter::default(),
        }
    }
}

impl ShardMetrics {
    /// How long commits have been failing at `now_ms`; 0 when they work.
    pub fn commit_failing_ms(&self, now_ms: u64) -> u64 {
        match self.commit_failing_since_ms.get() {
            0 => 0,
            since => now_ms.saturating_sub(since).max(1),
        }
    }
}

/// Renders every shard's metrics as Prometheus text.
pub fn render(shards: &[std::sync::Arc<ShardMetrics>]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    type Read = fn(&ShardMetrics) -> u64;
    let scalars: &[(&str, &str, &str, Read)] = &[
        (
            "chat_engine_revocation_poll_failures_total",
            "counter",
            "failed polls of the auth service's revocation log",
            |m| m.revocation_poll_failures.get(),
        ),
        (
            "chat_engine_revocations_stale",
            "gauge",
            "1 while user tokens are refused: no successful revocation poll within the bound",
            |m| m.revocations_stale.get(),
        ),
        (
            "chat_engine_shard_up",
            "gauge",
            "1 while the shard runs",
            |m| m.alive.get(),
        ),
        (
            "chat_engine_commits_failing_ms",
            "gauge",
            "how long the shard's batch commits have been failing, 0 when they work",
            |m| m.commit_failing_ms(crate::health::now_unix_ms()),
        ),
        (
            "chat_engine_connections",
            "gauge",
            "open WebSocket connections",
            |m| m.connections_open.get(),
        ),
        (
            "chat_engine_connections_accepted_total",
            "counter",
            "WebSocket connections accepted",
            |m| m.connections_total.get(),
        ),
        (
            "chat_engine_frames_in_total",
            "counter",
            "WebSocket frames received",
            |m| m.frames_in.get(),
        ),
        (
            "chat_engine_bytes_in_total",
            "counter",
            "WebSocket payload bytes received",
            |m| m.bytes_in.get(),
        ),
        (
            "chat_engine_frames_out_total",
            "counter",
            "WebSocket frames written",
            |m| m.frames_out.get(),
        ),
        (
            "chat_engine_bytes_out_total",
            "counter",
            "WebSocket payload bytes written",
            |m| m.bytes_out.get(),
        ),
        (
            "chat_engine_deliveries_total",
            "counter",
            "messages queued to connections",
            |m| m.deliveries.get(),
        ),
        (
            "chat_engine_read_positions_total",
            "counter",
            "read frames whose position the persistence API took",
            |m| m.read_positions.get(),
        ),
        (
            "chat_engine_typing_relayed_total",
            "counter",
            "typing frames relayed to a chat's members",
            |m| m.typing_relayed.get(),
        ),
        (
            "chat_engine_typing_dropped_total",
            "counter",
            "typing frames dropped: within the interval of the connection's last for that chat",
            |m| m.typing_dropped.get(),
        ),
        (
            "chat_engine_slow_consumer_closes_total",
            "counter",
            "connections closed as slow consumers",
            |m| m.slow_consumer_closes.get(),
        ),
        (
            "chat_engine_overloaded_total",
            "counter",
            "sends refused as overloaded",
            |m| m.overloaded.get(),
        ),
        (
            "chat_engine_messages_committed_total",
            "counter",
            "messages made durable by this owner shard",
            |m| m.messages_committed.get(),
        ),
        (
            "chat_engine_batch_retries_total",
            "counter",
            "batch posts retried",
            |m| m.batch_retries.get(),
        ),
        (
            "chat_engine_owner_backlog_messages",
            "gauge",
            "messages numbered but not yet durable",
            |m| m.owner_backlog.get(),
        ),
        (
            "chat_engine_batches_in_flight",
            "gauge",
            "batches posted to the persistence API and not yet settled",
            |m| m.batches_in_flight.get(),
        ),
        (
            "chat_engine_syncs_from_ring_total",
            "counter",
            "syncs served from memory",
            |m| m.syncs_from_ring.get(),
        ),
        (
            "chat_engine_syncs_from_store_total",
            "counter",
            "syncs served from the persistence API",
            |m| m.syncs_from_store.get(),
        ),
        (
            "chat_engine_sync_backfill_reads_total",
            "counter",
            "store reads that extended a chat's ring for the syncs past it (one per storm)",
            |m| m.sync_backfill_reads.get(),
        ),
        (
            "chat_engine_membership_checks_total",
            "counter",
            "syncs whose membership was asked of the persistence API",
            |m| m.membership_checks.get(),
        ),
        (
            "chat_engine_membership_check_calls_total",
            "counter",
            "requests to the persistence API that answered the syncs' membership checks",
            |m| m.membership_check_calls.get(),
        ),
        (
            "chat_engine_subscriber_reads_total",
            "counter",
            "times the owner read a chat's subscriber set (at its load, after a membership change)",
            |m| m.subscriber_reads.get(),
        ),
        (
            "chat_engine_flusher_slices_total",
            "counter",
            "scheduler passes the flusher ended mid-round so control work could run",
            |m| m.flusher_slices.get(),
        ),
        (
            "chat_engine_sockets_full_total",
            "counter",
            "times a connection's socket took only part of its queue and its writer waited for room",
            |m| m.sockets_full.get(),
        ),
        (
            "chat_engine_inbox_depth",
            "gauge",
            "messages waiting in the shard's inbox",
            |m| m.inbox_depth.get(),
        ),
    ];
    for &(name, kind, help, read) in scalars {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (shard, metrics) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", read(metrics));
        }
    }
    type Pick = fn(&ShardMetrics) -> &Histogram;
    let histograms: &[(&str, &str, Pick)] = &[
        (
            "chat_engine_batch_messages",
            "messages per committed batch",
            |m| &m.batch_messages,
        ),
        (
            "chat_engine_commit_latency_us",
            "batch commit latency in microseconds, retries included",
            |m| &m.commit_latency_us,
        ),
        (
            "chat_engine_commit_api_us",
            "the persistence API's own time per committed batch in microseconds",
            |m| &m.commit_api_us,
        ),
        (
            "chat_engine_reactor_lag_us",
            "how late the shard's periodic probe timer fired, in microseconds",
            |m| &m.reactor_lag_us,
        ),
        (
            "chat_engine_reactor_lag_on_cpu_us",
            "the part of the probe's lateness the shard's thread spent on a core, in microseconds",
            |m| &m.reactor_lag_on_cpu_us,
        ),
    ];
    for &(name, help, histogram) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (shard, metrics) in shards.iter().enumerate() {
            histogram(metrics).render(&mut out, name, shard);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::new(&[10, 100]);
        for value in [5, 10, 50, 1_000] {
            histogram.observe(value);
        }
        let mut out = String::new();
        histogram.render(&mut out, "h", 0);
        assert!(out.contains("h_bucket{shard=\"0\",le=\"10\"} 2"), "{out}");
        assert!(out.contains("h_bucket{shard=\"0\",le=\"100\"} 3"), "{out}");
        assert!(out.contains("h_bucket{shard=\"0\",le=\"+Inf\"} 4"), "{out}");
        assert!(out.contains("h_sum{shard=\"0\"} 1065"), "{out}");
    }
}
