//! What the axum services measure alike: every request counted and timed
//! by method, route template and status, and the `GET /metrics` answer.
//! Each service registers these in its own registry (its own prefix) next
//! to its own metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// Buckets for request and commit latencies: 50 µs (a cached answer) to
/// about 13 s (an fsync on a slow disk, a stuck request).
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

pub struct RequestMetrics {
    requests: Family<RouteLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram>,
}

impl RequestMetrics {
    /// Registers `requests` and `request_seconds` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RouteLabels, Counter>::default();
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
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
        Self {
            requests,
            request_seconds,
        }
    }

    /// The body of a middleware: runs the request, then counts and times it
    /// by its route template (not the raw path) and a known method, so that
    /// what clients send cannot grow the label set.
    pub async fn track(&self, request: Request, next: Next) -> Response {
        let started = Instant::now();
        let method = method_label(request.method());
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
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        response
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The registry in Prometheus text, as `GET /metrics` answers it.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("writing to a String");
    text
}

/// The `GET /metrics` response for a registry.
pub fn render(registry: &Registry) -> Response {
    ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], encode(registry)).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn counts_by_route_template_and_folds_unknown_methods() {
        let mut registry = Registry::with_prefix("test");
        let metrics = Arc::new(RequestMetrics::register(&mut registry));
        let tracked = Arc::clone(&metrics);
        let app = Router::new()
            .route("/v1/chats/{chat}", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(move |request, next| {
                let metrics = Arc::clone(&tracked);
                async move { metrics.track(request, next).await }
            }));
        for (method, path) in [
            ("GET", "/v1/chats/1"),
            ("GET", "/v1/chats/2"),
            ("BREW", "/v1/chats/3"),
            ("GET", "/nowhere"),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let text = encode(&registry);
        let line = |needle: &str| {
            text.lines()
                .find(|line| line.starts_with("test_requests_total") && line.contains(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
                .to_string()
        };
        assert!(
            line(r#"method="GET",route="/v1/chats/{chat}",status="200""#).ends_with(" 2"),
            "{text}"
        );
        assert!(line(r#"method="other",route="/v1/chats/{chat}""#).ends_with(" 1"));
        assert!(line(r#"route="unmatched",status="404""#).ends_with(" 1"));
        assert!(!text.contains("BREW"), "{text}");
    }
}
