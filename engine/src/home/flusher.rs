//! The shard's flusher: one task that writes every connection queue that
//! got frames since its last round, one `sendmsg` per connection.
//!
//! Why one task rather than a writer per connection: a message to a chat of
//! 5,000 local members would otherwise wake 5,000 tasks, each polled once to
//! write one frame. Here fan-out only lists the queues; the round after a
//! burst of deliveries writes each listed queue once, with everything it got
//! meanwhile (many messages per write when the shard is busy, which is when
//! it counts).

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use super::outbound::{Outbound, Written};
use crate::metrics::ShardMetrics;

/// Queues written before the flusher lets the shard's other tasks run: about
/// 2 ms of writes at one frame each (9 µs per `sendmsg` measured here).
const QUEUES_PER_TURN: usize = 256;

#[derive(Default)]
pub struct Flusher {
    dirty: RefCell<Vec<Rc<Outbound>>>,
    task: RefCell<Option<Waker>>,
}

impl Flusher {
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

    /// Runs for the shard's life: waits for listed queues and writes them.
    pub async fn run(self: Rc<Self>, metrics: Arc<ShardMetrics>) {
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
            std::mem::swap(&mut round, &mut *self.dirty.borrow_mut());
            let (mut frames, mut bytes) = (0, 0);
            for (index, queue) in round.drain(..).enumerate() {
                let written = queue.flush_dirty();
                frames += written.frames;
                bytes += written.bytes;
                if index % QUEUES_PER_TURN == QUEUES_PER_TURN - 1 {
                    // A round over thousands of connections takes tens of
                    // milliseconds; the commit answers, acks and inbox
                    // messages that arrived meanwhile go first. glommio runs
                    // a task that yielded again only after it has looked at
                    // finished I/O.
                    glommio::executor().yield_now().await;
                }
            }
            metrics.frames_out.add(frames);
            metrics.bytes_out.add(bytes);
        }
    }
}
