//! Spawning on the shard's executor. glommio may run a newly spawned task
//! at once, inside `spawn_local`; the shard's state lives in `RefCell`s that
//! the spawner often still holds, so every task here first yields once and
//! starts only after the spawner has returned to the executor.
//!
//! A task lands in its spawner's task queue unless [`spawn_into`] names one.
//! A shard has two (see `shard.rs`): the control queue (inbox, owner, group
//! commit, calls to the persistence API) and the connections queue (HTTP,
//! WebSocket readers and writers), so that an answer from the API is not
//! served behind thousands of connection writers woken by one fan-out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub fn spawn(future: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(async move {
        YieldOnce(false).await;
        future.await;
    })
    .detach();
}

/// Spawns into a given task queue; it starts at that queue's next turn.
pub fn spawn_into(queue: glommio::TaskQueueHandle, future: impl Future<Output = ()> + 'static) {
    glommio::spawn_local_into(future, queue)
        .expect("the shard's task queues live as long as the shard")
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
