//! Prometheus metrics of the persistence API: requests and latency by route,
//! batch commit latency and batch sizes. Served at `GET /metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::http::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram>,
    commit_seconds: Family<OutcomeLabels, Histogram>,
    batch_messages: Histogram,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 13 s: an fsync on a slow disk to a stuck request.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chat_api");
        let requests = Family::<RouteLabels, Counter>::default();
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let commit_seconds = Family::<OutcomeLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let batch_messages = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "request_seconds",
            "HTTP request latency by route",
            request_seconds.clone(),
        );
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
        Self {
            registry,
            requests,
            request_seconds,
            commit_seconds,
            batch_messages,
        }
    }
}

impl Metrics {
    pub fn observe_commit(&self, elapsed: Duration, messages: usize, committed: bool) {
        let outcome = if committed { "committed" } else { "refused" };
        self.commit_seconds
            .get_or_create(&OutcomeLabels { outcome })
            .observe(elapsed.as_secs_f64());
        if committed {
            self.batch_messages.observe(messages as f64);
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}

/// Middleware: counts and times every request by its route template (not the
/// raw path, so that label cardinality stays bounded).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    let labels = RouteLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .request_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

pub async fn render(State(state): State<AppState>) -> Response {
    let metrics: Arc<Metrics> = state.metrics;
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}
