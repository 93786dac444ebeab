//! Limits that more than one process enforces. Each is the default; the
//! processes expose the adjustable ones as flags and never go above these
//! hard caps on the wire.

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
