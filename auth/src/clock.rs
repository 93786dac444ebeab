//! Wall-clock time in whole seconds since the Unix epoch (the resolution of
//! JWT `iat` and `exp`), and as shown (RFC 3339 in UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_s() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

/// Seconds until the start of second `at` (zero if it has begun).
pub fn until_s(at: i64) -> Duration {
    let target = UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
    target
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// The last second of year 9999: RFC 3339 has four-digit years.
const SECONDS_MAX: i64 = 253_402_300_799;

pub fn rfc3339(seconds: i64) -> String {
    let seconds = seconds.clamp(0, SECONDS_MAX) as u64;
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_seconds() {
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn until_a_past_second_is_zero() {
        assert_eq!(until_s(0), Duration::ZERO);
        assert!(until_s(now_s() + 2) > Duration::from_secs(1));
    }
}
