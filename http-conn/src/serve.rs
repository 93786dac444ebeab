//! The axum services' accept loop, in place of `axum::serve` (which offers
//! no timeouts): each accepted socket is admitted against the handshake
//! cap, served by hyper's HTTP/1 connection with upgrades, and raced
//! against its [`Watch`]'s deadline. On shutdown the listener stops, every
//! connection is told to finish its request in flight and close, and the
//! loop returns once all have.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower::Service;

use crate::{ConnLimits, Handshakes, Watch, expired};

/// Pause after a failed accept (out of descriptors, most likely), so the
/// loop does not spin.
const ACCEPT_BACKOFF_MS: u64 = 50;

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let handshakes = Handshakes::new(limits.handshakes_max);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; the channel closes when the
    // last one ends.
    let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
                    continue;
                }
            },
        };
        // Past the cap the socket is dropped here: closed before it costs
        // anything but the accept.
        let Some(watch) = Watch::admit(&handshakes, &limits) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            watch,
            stop_rx.clone(),
            drain_tx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(drain_tx);
    let _ = drain_rx.recv().await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    watch: Watch,
    mut stop: watch::Receiver<bool>,
    _drain: mpsc::Sender<()>,
) {
    let io = TokioIo::new(Watched {
        inner: stream,
        watch: watch.clone(),
    });
    let service_watch = watch.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        service_watch.on_request();
        let answered = service_watch.clone();
        let mut router = router.clone();
        async move {
            let response: Result<Response<axum::body::Body>, Infallible> =
                router.call(request).await;
            answered.on_response();
            response
        }
    });
    // hyper's own head timer is off: the watch does it (see the crate docs).
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades();
    let mut connection = pin!(connection);
    let mut deadline = pin!(expired(&watch, tokio::time::sleep));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended");
                }
                return;
            }
            limit = &mut deadline => {
                tracing::debug!(limit, "closing a connection past its {limit} timeout");
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The socket as hyper reads it, telling the watch about every read.
struct Watched {
    inner: TcpStream,
    watch: Watch,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.watch.on_read(buf.filled().len() - before);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
