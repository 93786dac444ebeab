//! Glue between glommio's sockets and hyper/tungstenite.
//!
//! hyper speaks its own `rt::Read`/`rt::Write`; glommio's `TcpStream` speaks
//! futures-io. [`HyperStream`] adapts one to the other. hyper's upgrade
//! machinery boxes the connection as `Send`, which a glommio socket (bound
//! to its executor's thread) is not: [`SendWrapper`] satisfies the bound and
//! panics if the value is ever touched from another thread, which cannot
//! happen because a shard's tasks never leave its thread. After an upgrade
//! the socket is taken back out; tungstenite reads it through [`ConnIo`],
//! and the connection's outbound queue writes it.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use send_wrapper::SendWrapper;

use crate::home::outbound::Outbound;

pub struct HyperStream {
    stream: SendWrapper<TcpStream>,
    /// A served connection's limits, told about every read; `None` on the
    /// client side (`api_client`).
    watch: Option<chat_http_conn::Watch>,
}

impl HyperStream {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream: SendWrapper::new(stream),
            watch: None,
        }
    }

    /// An accepted connection whose reads move its `watch` along.
    pub fn watched(stream: TcpStream, watch: chat_http_conn::Watch) -> Self {
        Self {
            stream: SendWrapper::new(stream),
            watch: Some(watch),
        }
    }

    pub fn into_inner(self) -> TcpStream {
        self.stream.take()
    }
}

/// The most one read of a `HyperStream` asks the socket for. hyper offers
/// all of its buffer's spare room (verified in hyper 1.12's
/// `proto/h1/io.rs`: the whole `chunk_mut`, which grows to about 400 KB
/// while a large body streams in), and that room must be zeroed before a
/// read may fill it. Zeroed a byte at a time, all of it at every read, it
/// cost 20 ms of one shard's CPU in a debug build for one 200 KB answer;
/// now it is one `memset` of at most this much.
const READ_BYTES_MAX: usize = 64 * 1024;

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
            let len = spare.len().min(READ_BYTES_MAX);
            let spare = &mut spare[..len];
            spare.as_mut_ptr().write_bytes(0, len);
            let initialised = &mut *(spare as *mut [MaybeUninit<u8>] as *mut [u8]);
            match Pin::new(&mut *self.stream).poll_read(cx, initialised) {
                Poll::Ready(Ok(read)) => {
                    if let Some(watch) = &self.watch {
                        watch.on_read(read);
                    }
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
        Pin::new(&mut *self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_close(cx)
    }
}

/// A WebSocket connection's socket as tungstenite sees it: reads come from
/// the socket, after any bytes hyper had read past the request; writes
/// (tungstenite's own pongs and close answers) join the connection's
/// outbound queue, so every byte to the client goes through that one queue
/// in order. Writes never wait: the queue's bounds apply instead.
pub struct ConnIo {
    prefix: Bytes,
    socket: Rc<RefCell<TcpStream>>,
    out: Rc<Outbound>,
}

impl ConnIo {
    pub fn new(prefix: Bytes, socket: Rc<RefCell<TcpStream>>, out: Rc<Outbound>) -> Self {
        // hyper hands over its whole read buffer (8 KiB or more) as a view
        // of the unread bytes; keeping that view would keep the buffer alive
        // for the connection's life. Copy out the few bytes instead.
        let prefix = if prefix.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&prefix)
        };
        Self {
            prefix,
            socket,
            out,
        }
    }
}

impl AsyncRead for ConnIo {
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
        Pin::new(&mut *self.socket.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Refused only when the connection is closing or over its bounds;
        // either way it is ending, and tungstenite need not hear of it.
        self.out.push(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
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
