//! The limits and defaults of the auth service, each a named constant; the
//! ones operators tune are fields of [`AuthConfig`](crate::AuthConfig).

/// Life of a token when the request names no `ttl_s`: one hour.
pub const TOKEN_TTL_DEFAULT_S: u64 = 3_600;
/// Longest life a request may ask for, by default: one day.
pub const TOKEN_TTL_MAX_S: u64 = 86_400;
/// Cap on the configurable longest life: a year. Every retired key and
/// every revocation is kept this long after it stops mattering, so the cap
/// bounds how much of either the service can be made to keep.
pub const TOKEN_TTL_MAX_CAP_S: u64 = 365 * 86_400;
/// How often a new signing key is made, by default: daily.
pub const KEY_ROTATION_S: u64 = 86_400;
/// Largest JSON request body. The two bodies the service reads are a user
/// id and a number, so a few KiB is generous.
pub const REQUEST_BODY_BYTES_MAX: usize = 16 * 1024;

/// Revocations one app may record per clock minute, by default (see
/// `revocation_quota`): far above what a product revokes (logouts, bans),
/// and it bounds the log at 100 × 1,440 = 144,000 entries per app for
/// the default day-long token life.
pub const REVOCATIONS_PER_MINUTE_MAX: u32 = 100;

/// Revocations in one page of `GET /internal/v1/revocations`.
pub const REVOCATIONS_PAGE_MAX: usize = 1_000;

/// How long a positive app token check is trusted, as in the engine.
pub const APP_TOKEN_CACHE_SECONDS: u64 = 30;
/// Most cached app token checks; when full, expired entries go first, then
/// everything (a refill costs one lookup per token in use).
pub const APP_TOKEN_CACHE_ENTRIES_MAX: usize = 10_000;
/// Longest bearer credential looked up at all. App tokens are 68 bytes;
/// anything much longer is refused without asking the persistence API.
pub const PRESENTED_CREDENTIAL_BYTES_MAX: usize = 1_024;
/// How long one call to the persistence API may take, connection included.
pub const API_CALL_TIMEOUT_S: u64 = 5;

/// The grace of every retirement computation; see `chat_token::RETIRE_GRACE_S`.
pub use chat_token::RETIRE_GRACE_S;

/// Longest a mint waits for the second of a fresh revocation to begin (see
/// [`crate::revocation`]); normally under one second, longer only if the
/// wall clock stepped back.
pub const MINT_WAIT_MAX_S: u64 = 2;

/// Shortest pause of the maintenance timer, so that a failing rotation (a
/// full disk) is retried without spinning.
pub const MAINTENANCE_RETRY_MS: u64 = 1_000;
/// Longest pause of the maintenance timer: it also forgets expired
/// revocations, so it runs at least this often.
pub const MAINTENANCE_INTERVAL_MAX_S: u64 = 3_600;
