//! The reactor-lag probe: a timer due every `PERIOD_US` whose lateness is
//! recorded in `chat_engine_reactor_lag_us`. Lateness is how long the shard
//! went without polling its rings, so it bounds how long an API answer, a
//! socket read or another shard's message waited to be seen.
//!
//! It is also the shard's heartbeat. glommio 0.9 can park a thread that has
//! runnable tasks: `run_task_queues` returns "nothing ran" when its preempt
//! flag is already set before the first queue runs (the preempt timer,
//! armed at the end of each poll, fired while the thread was descheduled),
//! and `run()` then sleeps until the next I/O or timer (verified in its
//! `executor/mod.rs`). The engine never sets a short preempt timer (the
//! default is 100 ms, and the flusher ends its passes itself), so this needs
//! a 100 ms descheduling; a pending timer is what ends such a sleep, and
//! this one is always pending, so a shard parked that way wakes within one
//! period, and the lateness shows it.
//!
//! Lateness on this shared virtual machine also has causes outside the
//! process: another process holding the core, a virtual CPU that wakes
//! from idle 10 ms late. `chat_engine_reactor_lag_on_cpu_us` is the part
//! of each probe's lateness that the thread certainly spent on a core: its
//! CPU time since the previous probe less the period (the most it can have
//! used before the timer was due), at most the lateness. That is what the
//! engine's scheduling answers for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::ShardMetrics;

/// The probe's period: the heartbeat's bound on a wrongful park, at a cost
/// of 500 wake-ups a second per shard when idle (a few µs each).
pub const PERIOD_US: u64 = 2_000;

/// A probe this late on a core is logged (at most once a second), so that
/// a stall can be matched with what the shard was doing then.
const STALL_LOG_MIN: Duration = Duration::from_millis(10);
const STALL_LOG_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(metrics: Arc<ShardMetrics>) {
    let period = Duration::from_micros(PERIOD_US);
    let mut due = Instant::now() + period;
    let mut cpu_before = thread_cpu();
    let mut last_stall_log = None;
    loop {
        glommio::timer::sleep(due.saturating_duration_since(Instant::now())).await;
        let now = Instant::now();
        let late = now.saturating_duration_since(due);
        let cpu_now = thread_cpu();
        // Of the thread's CPU time since the previous probe, at most one
        // period went before the timer was due; the rest fell within the
        // lateness. Whatever of the lateness that does not explain the
        // thread spent off a core (another process ran, or the virtual CPU
        // woke late). Counting the whole CPU time instead would charge a
        // busy shard's period to its lateness.
        let cpu_since_due = cpu_now.saturating_sub(cpu_before).saturating_sub(period);
        let on_cpu = late.min(cpu_since_due);
        cpu_before = cpu_now;
        if on_cpu >= STALL_LOG_MIN
            && last_stall_log.is_none_or(|at: Instant| at.elapsed() >= STALL_LOG_INTERVAL)
        {
            // The log says when; the histogram says how often.
            tracing::warn!(
                late_us = micros(late),
                on_cpu_us = micros(on_cpu),
                "the shard ran this long without looking at its I/O and timers"
            );
            last_stall_log = Some(now);
        }
        metrics.reactor_lag_us.observe(micros(late));
        metrics.reactor_lag_on_cpu_us.observe(micros(on_cpu));
        // The next deadline from now, not from the missed one: after a long
        // stall one late sample says how long, not a burst of catch-ups.
        due = now + period;
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The CPU time this thread has used (user and system).
fn thread_cpu() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(time.tv_sec).unwrap_or(0),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}
