//! The revocation quota: at most `per_minute_max` revocations recorded per
//! app per clock minute (`POST /v1/tokens/revoke` answers 429
//! `too_many_revocations` past it). Every revocation stays in the log, and
//! in every verifier's list, for a whole token life; the quota is what
//! bounds both: at most `per_minute_max × token life in minutes` entries
//! per app.
//!
//! Fixed windows (the clock minute) rather than a sliding one: one counter
//! per app, and a burst at a minute's edge can reach twice the quota, which
//! the bound above tolerates.

use std::collections::HashMap;
use std::sync::Mutex;

/// Apps tracked at once before windows of past minutes are dropped, so the
/// map stays bounded by the apps active in one minute.
const TRACKED_APPS_MAX: usize = 10_000;

pub struct RevocationQuota {
    per_minute_max: u32,
    /// app → (minute since the epoch, revocations in it).
    windows: Mutex<HashMap<u64, (i64, u32)>>,
}

impl RevocationQuota {
    pub fn new(per_minute_max: u32) -> Self {
        Self {
            per_minute_max,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_minute_max(&self) -> u32 {
        self.per_minute_max
    }

    /// Takes one revocation of `app` at `now_s` from the quota; `false`
    /// when the app has used its quota for this minute.
    pub fn try_take(&self, app: u64, now_s: i64) -> bool {
        let minute = now_s.div_euclid(60);
        // A poisoned lock only means another request panicked mid-update
        // of a counter; the counts are still usable.
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() >= TRACKED_APPS_MAX && !windows.contains_key(&app) {
            windows.retain(|_, (at, _)| *at == minute);
        }
        let window = windows.entry(app).or_insert((minute, 0));
        if window.0 != minute {
            *window = (minute, 0);
        }
        if window.1 >= self.per_minute_max {
            return false;
        }
        window.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_app_per_minute() {
        let quota = RevocationQuota::new(2);
        let t = 6_000;
        assert!(quota.try_take(1, t));
        assert!(quota.try_take(1, t + 1));
        assert!(!quota.try_take(1, t + 2));
        assert!(quota.try_take(2, t + 2), "another app has its own quota");
        assert!(quota.try_take(1, t + 60), "the next minute starts afresh");
    }
}
