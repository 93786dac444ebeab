//! Glue between glommio's sockets and hyper/tungstenite.
//!
//! hyper speaks its own `rt::Read`/`rt::Write`; glommio's `TcpStream` speaks
//! futures-io. [`HyperStream`] adapts one to the other. hyper's upgrade
//! machinery boxes the connection as `Send`, which a glommio socket (bound
//! to its executor's thread) is not: [`SendWrapper`] satisfies the bound and
//! panics if the value is ever touched from another thread, which cannot
//! happen because a shard's tasks never leave its thread. After an upgrade
//! the socket is taken back out and tungstenite runs on it directly, with
//! [`PrefixedStream`] replaying any bytes hyper had read past the request.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use send_wrapper::SendWrapper;

pub struct HyperStream(SendWrapper<TcpStream>);

impl HyperStream {
    pub fn new(stream: TcpStream) -> Self {
        Self(SendWrapper::new(stream))
    }

    pub fn into_inner(self) -> TcpStream {
        self.0.take()
    }
}

impl hyper::rt::Read for HyperStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: the bytes are initialised (zeroed) before they are viewed as
        // `[u8]`, and `advance` is called with no more than the read wrote.
        unsafe {
            let spare = buf.as_mut();
            for byte in spare.iter_mut() {
                byte.write(0);
            }
            let initialised = &mut *(spare as *mut [MaybeUninit<u8>] as *mut [u8]);
            match Pin::new(&mut *self.0).poll_read(cx, initialised) {
                Poll::Ready(Ok(read)) => {
                    buf.advance(read);
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            }
        }
    }
}

impl hyper::rt::Write for HyperStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_close(cx)
    }
}

/// A socket with bytes already read from it put back in front.
pub struct PrefixedStream {
    prefix: Bytes,
    inner: TcpStream,
}

impl PrefixedStream {
    pub fn new(prefix: Bytes, inner: TcpStream) -> Self {
        Self { prefix, inner }
    }
}

impl AsyncRead for PrefixedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if !self.prefix.is_empty() {
            let count = self.prefix.len().min(buf.len());
            buf[..count].copy_from_slice(&self.prefix[..count]);
            self.prefix.advance(count);
            return Poll::Ready(Ok(count));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PrefixedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Runs `future` for at most `limit`; `None` when time ran out.
pub async fn with_timeout<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    let future = pin!(future);
    let sleep = pin!(glommio::timer::sleep(limit));
    match futures_util::future::select(future, sleep).await {
        futures_util::future::Either::Left((value, _)) => Some(value),
        futures_util::future::Either::Right(_) => None,
    }
}
