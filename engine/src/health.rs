//! What `/healthz` answers: 200 only if every shard runs and no shard's
//! batch commits have been failing for longer than
//! [`COMMIT_FAILING_UNHEALTHY_MS`]. Read from the per-shard atomics of
//! `metrics`, so any shard answers for all of them without a message.

use std::sync::Arc;

use crate::metrics::ShardMetrics;

/// How long a shard's commits may fail (transport errors, 5xx) before the
/// engine reports itself unhealthy: longer than a few retries of a blip,
/// short enough for a load balancer to notice a store that refuses writes.
pub const COMMIT_FAILING_UNHEALTHY_MS: u64 = 3_000;

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// `Err` names what is wrong.
pub fn check(shards: &[Arc<ShardMetrics>]) -> Result<(), String> {
    let now_ms = now_unix_ms();
    for (shard, metrics) in shards.iter().enumerate() {
        if metrics.alive.get() == 0 {
            return Err(format!("shard {shard} is not running"));
        }
        let failing_ms = metrics.commit_failing_ms(now_ms);
        if failing_ms > COMMIT_FAILING_UNHEALTHY_MS {
            return Err(format!(
                "shard {shard}'s batch commits have failed for {} s: the persistence API or its store refuses writes",
                failing_ms / 1_000
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_shard_or_failing_commits_are_unhealthy() {
        let shards: Vec<Arc<ShardMetrics>> = (0..2).map(|_| Arc::default()).collect();
        assert!(check(&shards).is_err(), "not started yet");
        for metrics in &shards {
            metrics.alive.set(1);
        }
        assert_eq!(check(&shards), Ok(()));
        // A failure streak that just began is still healthy...
        shards[1].commit_failing_since_ms.set(now_unix_ms());
        assert_eq!(check(&shards), Ok(()));
        // ...one older than the bound is not.
        shards[1]
            .commit_failing_since_ms
            .set(now_unix_ms() - COMMIT_FAILING_UNHEALTHY_MS - 1_000);
        assert!(check(&shards).unwrap_err().contains("shard 1"));
        shards[1].commit_failing_since_ms.set(0);
        shards[0].alive.set(0);
        assert!(check(&shards).unwrap_err().contains("shard 0"));
    }
}
