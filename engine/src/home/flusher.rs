//! The shard's flusher: one task that writes every connection queue that
//! got frames since its last round, one `sendmsg` per connection.
//!
//! Why one task rather than a writer per connection: a message to a chat of
//! 5,000 local members would otherwise wake 5,000 tasks, each polled once to
//! write one frame. Here fan-out only lists the queues; the round after a
//! burst of deliveries writes each listed queue once, with everything it got
//! meanwhile (many messages per write when the shard is busy, which is when
//! it counts).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::outbound::{Outbound, Written};
use crate::metrics::ShardMetrics;

/// Longest wait, in slices, for the deliveries being queued before a round.
const DEFER_SLICES_MAX: u32 = 4;

#[derive(Default)]
pub struct Flusher {
    dirty: RefCell<Vec<Rc<Outbound>>>,
    task: RefCell<Option<Waker>>,
    /// Deliveries being queued now, a chunk at a time (`HomeShard::deliver`),
    /// and bursts of the shard's inbox being handled.
    delivering: Cell<usize>,
}

/// Counts a delivery in progress for as long as it lives (see `run`).
pub struct Delivering<'a>(&'a Flusher);

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        self.0.delivering.set(self.0.delivering.get() - 1);
    }
}

impl Flusher {
    /// Marks a delivery as being queued until the guard drops.
    pub fn delivering(&self) -> Delivering<'_> {
        self.delivering.set(self.delivering.get() + 1);
        Delivering(self)
    }

    /// Lists a queue; the queue lists itself at most once until written.
    pub fn add(&self, queue: Rc<Outbound>) {
        let mut dirty = self.dirty.borrow_mut();
        dirty.push(queue);
        if dirty.len() == 1
            && let Some(waker) = self.task.borrow_mut().take()
        {
            waker.wake();
        }
    }

    pub fn len(&self) -> usize {
        self.dirty.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirty.borrow().is_empty()
    }

    /// Writes every listed queue now, in one go (the benchmarks' round).
    pub fn flush_all(&self) -> Written {
        let round = std::mem::take(&mut *self.dirty.borrow_mut());
        round
            .iter()
            .map(|queue| queue.flush_dirty())
            .fold(Written::default(), Written::plus)
    }

    /// Runs for the shard's life: waits for listed queues and writes them,
    /// in slices of about `slice` between which the scheduler pass ends
    /// (`task::end_pass`), so the owner's control work (the API's answers,
    /// acks, other shards' messages, timers) waits behind fan-out for about
    /// one slice at most (`limits::FLUSHER_SLICE_US`).
    pub async fn run(self: Rc<Self>, metrics: Arc<ShardMetrics>, slice: Duration) {
        let mut round = Vec::new();
        loop {
            poll_fn(|cx| {
                if self.dirty.borrow().is_empty() {
                    *self.task.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            // A delivery being queued a chunk at a time (it ended the pass
            // between chunks), or a burst of inbox messages, is let finish
            // first, up to a few slices: writing the first connections now
            // would send them one frame each, where a moment later each
            // write carries everything the connection got meanwhile.
            let deferred_at = Instant::now();
            while self.delivering.get() > 0 && deferred_at.elapsed() < slice * DEFER_SLICES_MAX {
                crate::task::end_pass().await;
            }
            std::mem::swap(&mut round, &mut *self.dirty.borrow_mut());
            let (mut frames, mut bytes) = (0, 0);
            let mut slice = crate::task::Slice::new(slice);
            // A queue listed again while this round runs is still marked
            // dirty here, so it is never in both lists: it lists itself
            // once more only after this round has written it.
            for queue in round.drain(..) {
                let written = queue.flush_dirty();
                frames += written.frames;
                bytes += written.bytes;
                if slice.step().await {
                    metrics.flusher_slices.inc();
                }
            }
            metrics.frames_out.add(frames);
            metrics.bytes_out.add(bytes);
        }
    }
}
