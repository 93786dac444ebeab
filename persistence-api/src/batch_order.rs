//! Applies each engine shard's batches in the order it numbered them.
//!
//! An owner shard keeps several batches in flight, a chat's messages in
//! more than one of them, over several HTTP connections: the requests may
//! reach the API in any order. Each batch names its stream (one per owner
//! shard and process, `chat-batch-stream`), its place in it
//! (`chat-batch-seq`, from 1), and the oldest batch of the stream its engine
//! has not yet seen settled (`chat-batch-unsettled-from`): every batch below
//! that one is settled, whatever this process remembers (it may have just
//! started). A batch waits here until every earlier batch of its stream is
//! settled: committed (with or without refused chats) or refused as a
//! whole. A batch the store could not commit (a 5xx) is not settled: the
//! engine sends it again, and the later ones wait for it.
//!
//! The order is a courtesy, not the guard: the store refuses a message that
//! would leave a gap in its chat's numbers (`conflict`), whatever arrives
//! first. So the wait is bounded (`BATCH_ORDER_WAIT_MS`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a batch waits for the earlier batches of its stream before it
/// goes to the store anyway. The engine retries a batch the store could not
/// commit within a second (its backoff's cap), so a wait this long means
/// the earlier batch is gone, with its engine.
pub const BATCH_ORDER_WAIT_MS: u64 = 2_000;
/// Streams not heard from for this long are forgotten (their engine went).
const STREAM_IDLE_S: u64 = 600;
/// Streams held before the idle ones are looked for.
const STREAMS_SWEEP_AT: usize = 1_024;

/// Where a batch stands in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub stream: u64,
    pub seq: u64,
    /// Every batch of the stream below this one is settled (`<= seq`).
    pub unsettled_from: u64,
}

/// How a batch's turn came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Every earlier batch of the stream was settled (at once or after a wait).
    InOrder { waited: bool },
    /// The wait ran out; the store judges the batch as it is.
    TimedOut,
}

#[derive(Default)]
pub struct BatchOrder {
    streams: Mutex<HashMap<u64, Stream>>,
}

struct Stream {
    /// Every batch up to this one is settled.
    settled_through: u64,
    settled: Arc<Notify>,
    used_at: Instant,
}

impl BatchOrder {
    /// Waits until the batches before `place` are settled, or the wait runs
    /// out. A batch at or below the settled point (a replay) goes at once.
    pub async fn wait_turn(&self, place: Place, wait_max: Duration) -> Turn {
        let deadline = tokio::time::Instant::now() + wait_max;
        let mut waited = false;
        loop {
            let settled: Arc<Notify>;
            let notified;
            {
                let mut streams = self.streams.lock().expect("batch order lock");
                let stream = stream_mut(&mut streams, place.stream);
                let known_settled = place.unsettled_from.saturating_sub(1);
                stream.settled_through = stream.settled_through.max(known_settled);
                if stream.settled_through.saturating_add(1) >= place.seq {
                    return Turn::InOrder { waited };
                }
                settled = Arc::clone(&stream.settled);
                // Made under the lock `settle` notifies under: every settle
                // after this check reaches it (`notify_waiters` wakes each
                // future made before the call, polled or not).
                notified = settled.notified();
            }
            waited = true;
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Turn::TimedOut;
            }
        }
    }

    /// The batch at `place` is settled: the later ones may go. (It may not
    /// have waited at all: refused before its turn, say.)
    pub fn settle(&self, place: Place) {
        let mut streams = self.streams.lock().expect("batch order lock");
        let stream = stream_mut(&mut streams, place.stream);
        if place.seq > stream.settled_through {
            // A batch that timed out of its wait may settle before the one
            // it waited for: the stream moves past both.
            stream.settled_through = place.seq;
            stream.settled.notify_waiters();
        }
    }
}

/// The stream, new if unknown (forgetting the long idle ones when many
/// are held), marked as used now.
fn stream_mut(streams: &mut HashMap<u64, Stream>, id: u64) -> &mut Stream {
    let now = Instant::now();
    if !streams.contains_key(&id) && streams.len() >= STREAMS_SWEEP_AT {
        let idle = Duration::from_secs(STREAM_IDLE_S);
        streams.retain(|_, stream| now.duration_since(stream.used_at) < idle);
    }
    let stream = streams.entry(id).or_insert_with(|| Stream {
        settled_through: 0,
        settled: Arc::new(Notify::new()),
        used_at: now,
    });
    stream.used_at = now;
    stream
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn place(seq: u64) -> Place {
        Place {
            stream: 7,
            seq,
            unsettled_from: 1,
        }
    }

    #[tokio::test]
    async fn a_batch_waits_for_the_one_before_it() {
        let order = Arc::new(BatchOrder::default());
        assert_eq!(
            order.wait_turn(place(1), WAIT).await,
            Turn::InOrder { waited: false }
        );
        let second = tokio::spawn({
            let order = Arc::clone(&order);
            async move { order.wait_turn(place(3), WAIT).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "3 went before 2 was settled");
        order.settle(place(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "3 went before 2 was settled");
        order.settle(place(2));
        assert_eq!(second.await.unwrap(), Turn::InOrder { waited: true });
    }

    #[tokio::test]
    async fn a_replay_and_a_stream_settled_below_go_at_once() {
        let order = BatchOrder::default();
        // First heard of at 40, everything below it settled (the API
        // restarted, say): it goes.
        let fortieth = Place {
            unsettled_from: 40,
            ..place(40)
        };
        assert_eq!(
            order.wait_turn(fortieth, WAIT).await,
            Turn::InOrder { waited: false }
        );
        order.settle(fortieth);
        assert_eq!(
            order.wait_turn(place(12), WAIT).await,
            Turn::InOrder { waited: false }
        );
        // Unsettled from 41 on, 43 waits for 41 and 42; word that they
        // were settled elsewhere lets it go.
        let behind = Place {
            unsettled_from: 41,
            ..place(43)
        };
        assert_eq!(
            order.wait_turn(behind, Duration::from_millis(50)).await,
            Turn::TimedOut
        );
        let caught_up = Place {
            unsettled_from: 43,
            ..place(43)
        };
        assert_eq!(
            order.wait_turn(caught_up, WAIT).await,
            Turn::InOrder { waited: false }
        );
    }

    #[tokio::test]
    async fn the_wait_is_bounded() {
        let order = BatchOrder::default();
        order.wait_turn(place(1), WAIT).await;
        let started = Instant::now();
        assert_eq!(
            order.wait_turn(place(3), Duration::from_millis(100)).await,
            Turn::TimedOut
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        // The late batch settles; the stream moves on past the missing one.
        order.settle(place(3));
        assert_eq!(
            order.wait_turn(place(4), WAIT).await,
            Turn::InOrder { waited: false }
        );
    }
}
