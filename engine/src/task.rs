//! Spawning on the shard's executor. glommio may run a newly spawned task
//! at once, inside `spawn_local`; the shard's state lives in `RefCell`s that
//! the spawner often still holds, so every task here first yields once and
//! starts only after the spawner has returned to the executor.

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
