//! The persistence API: the single source of truth. It owns the schema and
//! its migrations, is the only process that writes durable state, serves the
//! REST interface of apps, chats, subscriptions and history, and commits the
//! engine's batches.
//!
//! Map: `server` (life cycle) → `http` (routes, extractors, views) →
//! `store` (the `Store` trait and its backends), with `cache` (the optional
//! Redis read cache of recent history) in front of it, and `search` (the
//! full-text index, fed from the store's commit log) beside it. `credentials`, `limits`,
//! `metrics`, `clock` and `error` serve all of them.

pub mod app_tokens;
pub mod batch_order;
pub mod cache;
pub mod clock;
pub mod credentials;
pub mod error;
pub mod feed;
pub mod health;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod search;
pub mod server;
pub mod store;
pub mod unread;
pub mod user_tokens;

pub use server::{ApiConfig, Server, shutdown_signal};
