//! Spawning on the shard's executor, and ending a scheduler pass.
//!
//! glommio may run a newly spawned task at once, inside `spawn_local`; the
//! shard's state lives in `RefCell`s that the spawner often still holds, so
//! every task here first yields once and starts only after the spawner has
//! returned to the executor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub fn spawn(future: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(async move {
        YieldOnce(false).await;
        future.await;
    })
    .detach();
}

struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Waits until the executor has polled its rings once, whatever else is
/// runnable: the way for a long task to let I/O completions, timers and
/// other shards' messages in.
///
/// glommio 0.9 (verified in its `executor/mod.rs` and `sys/uring.rs`) runs
/// task queues in passes and polls the rings, the timers and the wake-ups
/// from other threads only between passes; a pass ends when no task is
/// runnable or the preempt timer fires. `yield_now` requeues the task
/// behind the others of the same pass, and `yield_task_queue_now` moves on
/// to the next queue of the same pass: neither reaches the rings. A task
/// asleep on a timer is not runnable, so the pass ends once the rest of
/// the runnable work is done, and the timer, due by then, fires in the
/// poll that follows. The timer is made and polled in one go: a timer is
/// ready on its first poll when its deadline has passed, and a deadline
/// of 1 µs passes before a debug build gets to poll it (measured: every
/// slice of the flusher ran on without a pass end). 5 µs is never missed
/// that way. When nothing else was runnable the executor would sleep
/// until the timer; the shard's `spin_before_park` makes it poll instead
/// (`limits::SPIN_BEFORE_PARK_US`).
pub fn end_pass() -> EndPass {
    EndPass(None)
}

pub struct EndPass(Option<glommio::timer::Timer>);

/// See `end_pass`.
const END_PASS_TIMER: Duration = Duration::from_micros(5);

impl Future for EndPass {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let timer = self
            .0
            .get_or_insert_with(|| glommio::timer::Timer::new(END_PASS_TIMER));
        Pin::new(timer).poll(cx).map(|_| ())
    }
}

/// A stretch of work that ends the scheduler pass (`end_pass`) whenever it
/// has run for its limit, so that a long loop of short steps (writes to
/// sockets, deliveries to local connections, inbox messages) never holds
/// the shard's I/O, timers and other shards' messages for much longer.
pub struct Slice {
    started: Instant,
    limit: Duration,
}

impl Slice {
    pub fn new(limit: Duration) -> Self {
        Self {
            started: Instant::now(),
            limit,
        }
    }

    /// Starts the slice afresh: after a wait, which ended a pass anyway.
    pub fn restart(&mut self) {
        self.started = Instant::now();
    }

    /// Call between steps: ends the pass once the limit is spent, and
    /// starts the next slice. Returns whether it did.
    pub async fn step(&mut self) -> bool {
        if self.started.elapsed() < self.limit {
            return false;
        }
        end_pass().await;
        self.started = Instant::now();
        true
    }
}

/// A timer due in `after`, spawned now; the task's output is how late it
/// fired (the tests' measure of how long the shard's work held it).
#[cfg(test)]
pub fn spawn_timer_lateness(after: Duration) -> glommio::Task<Duration> {
    glommio::spawn_local(async move {
        let due = Instant::now() + after;
        glommio::timer::sleep(after).await;
        Instant::now().saturating_duration_since(due)
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{end_pass, spawn_timer_lateness};

    /// How late a 1 ms timer fires while another task keeps the executor
    /// busy for 60 ms in 100 µs steps, letting go with `let_go` each step.
    fn timer_lateness_behind_busy_task<F, Fut>(let_go: F) -> Duration
    where
        F: Fn() -> Fut + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let executor = glommio::LocalExecutorBuilder::default()
            .make()
            .expect("an executor");
        executor.run(async move {
            let timer = spawn_timer_lateness(Duration::from_millis(1));
            let busy = glommio::spawn_local(async move {
                let started = Instant::now();
                while started.elapsed() < Duration::from_millis(60) {
                    let step = Instant::now();
                    while step.elapsed() < Duration::from_micros(100) {
                        std::hint::spin_loop();
                    }
                    let_go().await;
                }
            });
            busy.await;
            timer.await
        })
    }

    /// The reason `end_pass` exists, checked against the glommio in use:
    /// `yield_now` does not let a due timer fire, `end_pass` does.
    #[test]
    fn end_pass_lets_timers_fire_where_yield_now_does_not() {
        let behind_yield =
            timer_lateness_behind_busy_task(|| async { glommio::executor().yield_now().await });
        let behind_end_pass = timer_lateness_behind_busy_task(end_pass);
        assert!(
            behind_yield >= Duration::from_millis(40),
            "yield_now let the timer in after {behind_yield:?}: glommio changed, \
             revisit task::end_pass"
        );
        // A step is 100 µs: the timer fires at the pass end after the one
        // in which it fell due (plus whatever the machine adds).
        assert!(
            behind_end_pass < Duration::from_millis(5),
            "end_pass held the timer {behind_end_pass:?}"
        );
    }
}
