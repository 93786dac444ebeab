//! Limits that more than one process enforces. Each is the default; the
//! processes expose the adjustable ones as flags and never go above these
//! hard caps on the wire.

/// Largest app id, chat number and message number anywhere: 2^53 - 1, the
/// largest integer that every JSON parser (JavaScript's doubles among them)
/// reads exactly. Every entrance refuses a larger one, so no arithmetic on
/// these numbers can overflow a `u64` (or the ScyllaDB backend's `bigint`).
pub const NUMBER_MAX: u64 = (1 << 53) - 1;

/// How far above the app's highest chat number a user's message may create a
/// chat implicitly. A user cannot move an app's numbering to a value of their
/// choosing: `POST /v1/chats` keeps handing out the next numbers. The app
/// token (HTTP publish) may create any number up to [`NUMBER_MAX`]: the app
/// owns its numbering.
pub const IMPLICIT_CHAT_NUMBERS_AHEAD_MAX: u64 = 1_000;

/// Largest message body in bytes (UTF-8), the default for `--message-body-bytes-max`.
pub const MESSAGE_BODY_BYTES_MAX: usize = 4 * 1024;

/// Longest user id in bytes. User ids are ASCII, so bytes are characters.
pub const USER_ID_BYTES_MAX: usize = 128;

/// Longest client idempotency id in bytes.
pub const CLIENT_ID_BYTES_MAX: usize = 128;

/// Most explicit recipients (`to`) one message may name.
pub const RECIPIENTS_PER_MESSAGE_MAX: usize = 1_000;

/// Most messages in one batch. The engine flushes at a smaller size by
/// default; this bounds the work of one commit on the API side.
pub const BATCH_MESSAGES_MAX: usize = 4_096;

/// Most implicitly created chats in one batch.
pub const BATCH_CHATS_MAX: usize = 4_096;

/// Most initial subscribers of one implicitly created chat (sender plus `to`).
pub const IMPLICIT_CHAT_SUBSCRIBERS_MAX: usize = RECIPIENTS_PER_MESSAGE_MAX + 1;

/// Largest encoded batch in bytes: every message at its largest fits with room to spare.
pub const BATCH_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Latest timestamp a batch may carry, in microseconds since the Unix epoch:
/// the last microsecond of year 9999, the end of RFC 3339's four-digit years.
pub const TIMESTAMP_US_MAX: i64 = 253_402_300_799_999_999;

/// Most chats one WebSocket `sync` frame may name; also the most chats the
/// persistence API's membership check takes in one request.
pub const SYNC_CHATS_MAX: usize = 1_000;
