//! Wall-clock time as stored (microseconds since the Unix epoch) and as shown
//! (RFC 3339 in UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_us() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

/// The last microsecond of year 9999: RFC 3339 has four-digit years.
pub const TIMESTAMP_US_MAX: i64 = chat_wire::limits::TIMESTAMP_US_MAX;

pub fn rfc3339(us: i64) -> String {
    // Stored times are validated on the way in; clamping keeps a corrupt one
    // from taking a reader down.
    let us = us.clamp(0, TIMESTAMP_US_MAX);
    let time = UNIX_EPOCH + Duration::from_micros(us as u64);
    humantime::format_rfc3339_micros(time).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_with_microseconds() {
        assert_eq!(
            super::rfc3339(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
