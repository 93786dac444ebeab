//! Prometheus metrics of the auth service, served at `GET /metrics`:
//! requests and latency by route and status, tokens minted, revocations,
//! key rotations, app token lookups by outcome, and gauges of the keys and
//! revocations held.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::http::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    method: &'static str,
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
    pub tokens_minted: Counter,
    pub revocations: Counter,
    pub key_rotations: Counter,
    pub keys_retired: Counter,
    app_token_lookups: Family<OutcomeLabels, Counter>,
    pub verifying_keys: Gauge<i64, AtomicI64>,
    pub live_revocations: Gauge<i64, AtomicI64>,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 13 s: a cached mint to a stuck lookup.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chat_auth");
        let requests = Family::<RouteLabels, Counter>::default();
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let tokens_minted = Counter::default();
        let revocations = Counter::default();
        let key_rotations = Counter::default();
        let keys_retired = Counter::default();
        let app_token_lookups = Family::<OutcomeLabels, Counter>::default();
        let verifying_keys = Gauge::<i64, AtomicI64>::default();
        let live_revocations = Gauge::<i64, AtomicI64>::default();
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
        registry.register("tokens_minted", "User tokens minted", tokens_minted.clone());
        registry.register(
            "revocations",
            "Revocations recorded (durable)",
            revocations.clone(),
        );
        registry.register("key_rotations", "Signing keys made", key_rotations.clone());
        registry.register(
            "keys_retired",
            "Signing keys retired and deleted",
            keys_retired.clone(),
        );
        registry.register(
            "app_token_lookups",
            "App token checks by outcome (cached, valid, invalid, failed)",
            app_token_lookups.clone(),
        );
        registry.register("verifying_keys", "Keys in the JWKS", verifying_keys.clone());
        registry.register(
            "live_revocations",
            "Revocations held in memory (those that can still matter)",
            live_revocations.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            tokens_minted,
            revocations,
            key_rotations,
            keys_retired,
            app_token_lookups,
            verifying_keys,
            live_revocations,
        }
    }
}

impl Metrics {
    pub fn app_token_lookup(&self, outcome: &'static str) {
        self.app_token_lookups
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
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
    // Known methods only: a client's invented ones must not grow the labels.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
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
