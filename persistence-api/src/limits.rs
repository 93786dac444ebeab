//! The limits of the persistence API, each a named default that a flag can
//! change (see `chat api --help`).

use chat_wire::limits::{BATCH_BYTES_MAX, MESSAGE_BODY_BYTES_MAX, USER_ID_BYTES_MAX};

/// Largest JSON request body.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Longest app or chat title, in characters.
pub const TITLE_CHARS_MAX: usize = 200;
/// Page size when the request names none.
pub const PAGE_SIZE_DEFAULT: usize = 100;
/// Largest page a request may ask for.
pub const PAGE_SIZE_MAX: usize = 1_000;

#[derive(Debug, Clone)]
pub struct Limits {
    pub request_body_bytes_max: usize,
    pub batch_body_bytes_max: usize,
    pub title_chars_max: usize,
    pub user_id_bytes_max: usize,
    pub message_body_bytes_max: usize,
    pub page_size_default: usize,
    pub page_size_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_body_bytes_max: REQUEST_BODY_BYTES_MAX,
            batch_body_bytes_max: BATCH_BYTES_MAX,
            title_chars_max: TITLE_CHARS_MAX,
            user_id_bytes_max: USER_ID_BYTES_MAX,
            message_body_bytes_max: MESSAGE_BODY_BYTES_MAX,
            page_size_default: PAGE_SIZE_DEFAULT,
            page_size_max: PAGE_SIZE_MAX,
        }
    }
}

impl Limits {
    /// Checks that the configured limits fit the hard caps of the wire format.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                self.batch_body_bytes_max <= BATCH_BYTES_MAX,
                "batch body",
                BATCH_BYTES_MAX,
            ),
            (
                self.user_id_bytes_max <= USER_ID_BYTES_MAX,
                "user id length",
                USER_ID_BYTES_MAX,
            ),
            (
                self.page_size_default <= self.page_size_max,
                "default page size",
                self.page_size_max,
            ),
        ];
        for (ok, what, cap) in checks {
            if !ok {
                return Err(format!("{what} limit is above its cap of {cap}"));
            }
        }
        let positive = [
            self.request_body_bytes_max,
            self.batch_body_bytes_max,
            self.title_chars_max,
            self.user_id_bytes_max,
            self.message_body_bytes_max,
            self.page_size_default,
            self.page_size_max,
        ];
        if positive.contains(&0) {
            return Err("limits must be at least 1".into());
        }
        Ok(())
    }
}

/// The wire crate's limits, re-exported for the binaries that configure them.
pub use chat_wire::limits as wire;
