//! Prometheus metrics of the auth service, served at `GET /metrics`:
//! requests and latency by route and status, tokens minted, revocations,
//! key rotations, app token lookups by outcome, and gauges of the keys and
//! revocations held.

use std::sync::atomic::AtomicI64;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chat_http_metrics::RequestMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::http::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: RequestMetrics,
    pub tokens_minted: Counter,
    pub revocations: Counter,
    pub key_rotations: Counter,
    pub keys_retired: Counter,
    app_token_lookups: Family<OutcomeLabels, Counter>,
    pub verifying_keys: Gauge<i64, AtomicI64>,
    pub live_revocations: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chat_auth");
        let requests = RequestMetrics::register(&mut registry);
        let tokens_minted = Counter::default();
        let revocations = Counter::default();
        let key_rotations = Counter::default();
        let keys_retired = Counter::default();
        let app_token_lookups = Family::<OutcomeLabels, Counter>::default();
        let verifying_keys = Gauge::<i64, AtomicI64>::default();
        let live_revocations = Gauge::<i64, AtomicI64>::default();
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
