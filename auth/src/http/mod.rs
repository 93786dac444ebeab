//! The HTTP surface: routes, shared state, and the fallbacks that keep every
//! answer, even for an unknown route, in the documented error shape.
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `POST /v1/tokens` `{"user","ttl_s"?}` | app token | 201 `{"token","expires_at"}` |
//! | `POST /v1/tokens/revoke` `{"user"}` | app token | 200 `{"user","revoked_at"}` once durable |
//! | `GET /v1/keys` | anyone | the JWKS of every key that still verifies |
//! | `GET /internal/v1/revocations?after=<seq>` | operator key | a [`RevocationsPage`](crate::RevocationsPage) |
//! | `GET /healthz`, `GET /metrics` | anyone | liveness, Prometheus text |

mod extract;
mod internal;
mod query_rules;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use tokens::{MintedToken, RevokedUser};

use crate::app_tokens::AppTokens;
use crate::credentials::OperatorKey;
use crate::error::AuthError;
use crate::keys::KeyStore;
use crate::metrics::{self, Metrics};
use crate::revocation_log::RevocationLog;

/// The request-time settings, from [`AuthConfig`](crate::AuthConfig).
#[derive(Debug, Clone)]
pub struct Settings {
    pub token_ttl_default_s: u64,
    pub token_ttl_max_s: u64,
    pub request_body_bytes_max: usize,
}

#[derive(Clone)]
pub struct AppState {
    pub keys: Arc<KeyStore>,
    pub revocations: Arc<RevocationLog>,
    pub app_tokens: Arc<AppTokens>,
    pub operator: OperatorKey,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub revocation_quota: Arc<crate::revocation_quota::RevocationQuota>,
}

pub fn router(state: AppState) -> Router {
    let body_limit = DefaultBodyLimit::max(state.settings.request_body_bytes_max);
    Router::new()
        .route("/v1/tokens", post(tokens::mint))
        .route("/v1/tokens/revoke", post(tokens::revoke))
        .route("/v1/keys", get(tokens::keys))
        .route("/internal/v1/revocations", get(internal::revocations))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::render))
        .layer(axum::middleware::from_fn(query_rules::check))
        .fallback(|| async { AuthError::RouteNotFound })
        .method_not_allowed_fallback(|| async { AuthError::MethodNotAllowed })
        .layer(body_limit)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}
