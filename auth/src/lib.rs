//! The auth service: mints short-lived user tokens (Ed25519 JWTs, see
//! `chat_token`) for apps' servers, revokes them, rotates the signing keys
//! and publishes the public ones, so the engine and the persistence API
//! verify users locally without ever calling this service on a request path.
//!
//! - `POST /v1/tokens` `{"user","ttl_s"?}` with an app token: 201
//!   `{"token","expires_at"}`. App tokens belong to the persistence API; this
//!   service checks them by digest ([`app_tokens`]).
//! - `POST /v1/tokens/revoke` `{"user"}` with an app token: 200
//!   `{"user","revoked_at"}`, once the revocation is on disk.
//! - `GET /v1/keys`: the JWKS of every key that still verifies.
//! - `GET /internal/v1/revocations?after=<seq>` with the operator key: the
//!   revocation log, which the other services poll ([`revocation`] has the
//!   rule and the client side: [`RevocationList`]).
//! - `GET /healthz`, `GET /metrics`.
//!
//! Errors have the system's shape and stable codes ([`error`]).
//!
//! # Files
//!
//! Everything lives under `<data_dir>/auth/` (0700):
//!
//! ```text
//! <data_dir>/auth/
//!     keys/<kid>.pem        the signing keys, 0600; the newest signs (keys)
//!     revocations.jsonl     the revocation log, append-only, 0600 (revocation_log)
//! ```
//!
//! Map: `server` (life cycle and the maintenance timer) → `http` (routes,
//! extractors) → `keys` (rotation), `revocation_log` (durable revocations),
//! `app_tokens` (the persistence API client). `revocation` is shared with the
//! other services; `config`, `limits`, `metrics`, `clock`, `credentials`,
//! `fsutil` and `error` serve the rest.

pub mod app_tokens;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod error;
pub mod fsutil;
pub mod http;
pub mod keys;
pub mod limits;
pub mod metrics;
/// Revocation types live in `chat-token`, which the verifiers already link.
pub use chat_token::revocation;
pub mod revocation_log;
pub mod revocation_quota;
pub mod server;

pub use chat_token::{Revocation, RevocationList, RevocationsPage};
pub use config::AuthConfig;
pub use error::AuthError;
pub use http::{MintedToken, RevokedUser};
pub use server::{Server, shutdown_signal};
