//! The HTTP surface: routes, shared state, and the fallbacks that keep every
//! answer, even for an unknown route, in the documented error shape.

mod apps;
mod chats;
mod extract;
mod feed;
mod internal;
mod messages;
mod query_rules;
mod reads;
mod search;
mod subscribers;
mod validate;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

use crate::credentials::OperatorKey;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::metrics::{self, Metrics};
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub operator: OperatorKey,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub user_tokens: Arc<crate::user_tokens::UserTokens>,
    pub health: Arc<crate::health::HealthProbe>,
    /// Each engine shard's batches, applied in the order it numbered them.
    pub batch_order: Arc<crate::batch_order::BatchOrder>,
    /// Which app each token seen belongs to (`app_tokens`).
    pub app_tokens: Arc<crate::app_tokens::AppTokens>,
    /// The Redis read cache of recent history, when configured.
    pub cache: Option<Arc<crate::cache::ReadCache>>,
    /// Full-text search; `None` when it is off (its routes answer 503).
    pub search: Option<Arc<crate::search::Search>>,
}

pub fn router(state: AppState) -> Router {
    let batch_limit = DefaultBodyLimit::max(state.limits.batch_body_bytes_max);
    let json_limit = DefaultBodyLimit::max(state.limits.request_body_bytes_max);
    let public = Router::new()
        .route("/v1/apps", post(apps::create))
        .route("/v1/app", get(apps::show).patch(apps::rename))
        .route("/v1/chats", post(chats::create).get(chats::list))
        .route("/v1/chats/{n}", get(chats::show))
        .route("/v1/chats/{n}/subscribers", get(subscribers::list))
        .route(
            "/v1/chats/{n}/subscribers/{user}",
            put(subscribers::subscribe).delete(subscribers::unsubscribe),
        )
        .route("/v1/chats/{n}/messages", get(messages::history))
        .route("/v1/chats/{n}/read", put(reads::mark).get(reads::show))
        .route("/v1/chats/{n}/reads", get(reads::list))
        .route("/v1/chats/{n}/messages/search", get(search::in_chat))
        .route("/v1/messages/search", get(search::across_chats))
        .route("/v1/users/{user}/messages", get(feed::of_user))
        .route("/v1/me/messages", get(feed::of_me))
        .route(
            "/internal/v1/app-tokens/{digest}",
            get(internal::app_by_token_hash),
        )
        .route(
            "/internal/v1/apps/{app}/chats/{n}",
            get(internal::chat_state),
        )
        .route(
            "/internal/v1/apps/{app}/chats/{n}/messages",
            get(internal::visible_messages),
        )
        .route(
            "/internal/v1/apps/{app}/users/{user}/memberships",
            post(internal::memberships),
        )
        .route(
            "/internal/v1/apps/{app}/memberships",
            post(internal::membership_checks),
        )
        .route(
            "/internal/v1/apps/{app}/chats/{n}/reads/{user}",
            put(reads::mark_internal).get(reads::show_internal),
        )
        .route(
            "/internal/v1/apps/{app}/chats/{n}/subscribers/{user}",
            axum::routing::delete(internal::leave),
        )
        .layer(json_limit);
    let batches = Router::new()
        .route("/internal/v1/batches", post(internal::commit_batch))
        .layer(batch_limit);
    public
        .merge(batches)
        .route("/healthz", get(crate::health::healthz))
        .route("/metrics", get(metrics::render))
        .layer(axum::middleware::from_fn(query_rules::check))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}
