//! A token bucket per connection: `rate` sends per second sustained, bursts
//! of up to twice that.

use std::time::Instant;

pub struct TokenBucket {
    tokens: f64,
    capacity: f64,
    rate_per_second: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_second: u32) -> Self {
        let capacity = f64::from(rate_per_second.max(1)) * 2.0;
        Self {
            tokens: capacity,
            capacity,
            rate_per_second: f64::from(rate_per_second.max(1)),
            refilled_at: Instant::now(),
        }
    }

    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_second).min(self.capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10);
        let taken = (0..100).filter(|_| bucket.try_take(start)).count();
        assert_eq!(taken, 20, "a burst of twice the rate");
        assert!(!bucket.try_take(start));
        assert!(
            bucket.try_take(start + Duration::from_millis(100)),
            "one token per 100 ms"
        );
    }
}
