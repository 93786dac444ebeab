//! Prometheus metrics of the persistence API: requests and latency by route,
//! batch commit latency and batch sizes. Served at `GET /metrics`.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chat_http_metrics::{RequestMetrics, latency_histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::http::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: RequestMetrics,
    commit_seconds: Family<OutcomeLabels, Histogram>,
    batch_messages: Histogram,
    /// Batches that waited for an earlier one of their stream, by outcome.
    batch_order_waits: Family<OutcomeLabels, Counter>,
    /// Failed polls of the auth service's revocation log.
    pub revocation_poll_failures: Counter,
    /// 1 while user tokens are refused for want of a recent revocation poll.
    pub revocations_stale: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chat_api");
        let requests = RequestMetrics::register(&mut registry);
        let commit_seconds = Family::<OutcomeLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let batch_messages = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "batch_commit_seconds",
            "Batch commit latency, durable, by outcome",
            commit_seconds.clone(),
        );
        registry.register(
            "batch_messages",
            "Messages per committed batch",
            batch_messages.clone(),
        );
        let batch_order_waits = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "batch_order_waits",
            "Batches that waited for an earlier batch of their engine shard, by outcome \
             (in_order, or timed_out: the store judged them as they came)",
            batch_order_waits.clone(),
        );
        let revocation_poll_failures = Counter::default();
        let revocations_stale = Gauge::default();
        registry.register(
            "revocation_poll_failures",
            "Failed polls of the auth service's revocation log",
            revocation_poll_failures.clone(),
        );
        registry.register(
            "revocations_stale",
            "1 while user tokens are refused: no successful revocation poll within the bound",
            revocations_stale.clone(),
        );
        Self {
            registry,
            requests,
            commit_seconds,
            batch_messages,
            batch_order_waits,
            revocation_poll_failures,
            revocations_stale,
        }
    }
}

impl Metrics {
    /// For the parts that register their own metrics before serving starts
    /// (the read cache).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn observe_commit(&self, elapsed: Duration, messages: usize, committed: bool) {
        let outcome = if committed { "committed" } else { "refused" };
        self.commit_seconds
            .get_or_create(&OutcomeLabels { outcome })
            .observe(elapsed.as_secs_f64());
        if committed {
            self.batch_messages.observe(messages as f64);
        }
    }

    pub fn observe_batch_turn(&self, turn: crate::batch_order::Turn) {
        let outcome = match turn {
            crate::batch_order::Turn::InOrder { waited: false } => return,
            crate::batch_order::Turn::InOrder { waited: true } => "in_order",
            crate::batch_order::Turn::TimedOut => "timed_out",
        };
        self.batch_order_waits
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn encode(&self) -> String {
        chat_http_metrics::encode(&self.registry)
    }
}

/// Middleware: counts and times every request (see `chat_http_metrics`).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    state.metrics.requests.track(request, next).await
}

pub async fn render(State(state): State<AppState>) -> Response {
    chat_http_metrics::render(&state.metrics.registry)
}
