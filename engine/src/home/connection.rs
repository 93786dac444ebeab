//! One WebSocket connection's life: a reader that parses client frames and
//! routes sends and syncs to owner shards, and a writer that steps in when
//! the socket is full or the connection closes (the shard's flusher writes
//! everything else). When either ends, both do.

use std::cell::RefCell;
use std::future::poll_fn;
use std::os::fd::AsRawFd;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::StreamExt;
use futures_util::io::AsyncWrite;
use glommio::net::TcpStream;

use super::outbound::{CloseReason, Drain, Outbound, TaskWork};
use super::rate::TokenBucket;
use crate::error::EngineError;
use crate::frames::{self, ClientFrame};
use crate::io::{ConnIo, with_timeout};
use crate::limits::{CLOSE_WRITE_SECONDS, SYNC_CHATS_MAX};
use crate::metrics::ShardMetrics;
use crate::router::{AppId, ConnId, Reply, SendRequest, ShardMessage, SyncRequest};
use crate::shard::Shard;

pub struct Session {
    pub shard: Rc<Shard>,
    pub conn: ConnId,
    pub app: AppId,
    pub user: String,
    pub out: Rc<Outbound>,
}

pub async fn run(
    session: Session,
    socket: Rc<RefCell<TcpStream>>,
    mut stream: WebSocketStream<ConnIo>,
) {
    let metrics = Arc::clone(&session.shard.metrics);
    let out = Rc::clone(&session.out);
    out.attach(socket.borrow().as_raw_fd());
    // Dropped before `socket` (a parameter, dropped last): the queue forgets
    // the descriptor before it is closed.
    let _detach = DetachOnDrop(&out);
    let writer = write_when_needed(&out, &socket, &metrics);
    let reader = async {
        let mut reader = Reader {
            session: &session,
            bucket: TokenBucket::new(session.shard.config.limits.sends_per_second_max),
        };
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Text(text)) => {
                    metrics.frames_in.inc();
                    metrics.bytes_in.add(text.len() as u64);
                    reader.on_text(&text).await;
                }
                Ok(Message::Binary(_)) => {
                    metrics.frames_in.inc();
                    session
                        .out
                        .push(frames::error(&EngineError::BinaryFrame, None, None));
                }
                Ok(Message::Close(_)) => return session.out.close(CloseReason::Normal),
                Ok(_) => {} // ping and pong: tungstenite answers pings itself
                Err(WsError::Capacity(_)) => return session.out.close(CloseReason::FrameTooLarge),
                Err(WsError::Utf8(_)) => return session.out.close(CloseReason::InvalidUtf8),
                Err(_) => return,
            }
        }
    };
    // A reader that ended by closing lets the writer send the close frame.
    let mut writer = pin!(writer);
    match futures_util::future::select(pin!(reader), writer.as_mut()).await {
        futures_util::future::Either::Left(((), _)) if session.out.is_closing() => {
            let _ = with_timeout(Duration::from_secs(CLOSE_WRITE_SECONDS), writer).await;
        }
        _ => {}
    }
    session.shard.home.borrow_mut().unregister(session.conn);
    session.shard.metrics.connections_open.sub(1);
}

struct DetachOnDrop<'a>(&'a Outbound);

impl Drop for DetachOnDrop<'_> {
    fn drop(&mut self) {
        self.0.detach();
    }
}

/// The connection's own writer: idle while the shard's flusher keeps up;
/// it waits for a full socket to drain, and it writes the close.
async fn write_when_needed(out: &Outbound, socket: &RefCell<TcpStream>, metrics: &ShardMetrics) {
    loop {
        let work = poll_fn(|cx| out.poll_task(cx)).await;
        if work == TaskWork::Stop {
            return;
        }
        loop {
            let (drain, written) = out.write_now();
            metrics.frames_out.add(written.frames);
            metrics.bytes_out.add(written.bytes);
            match drain {
                Drain::Empty => break,
                Drain::Failed => return out.broken(),
                Drain::Full => {}
            }
            // glommio's write tries once more, then waits until the socket
            // can take bytes. The head is read again at every poll: a close
            // may have replaced the queue meanwhile.
            let result = poll_fn(|cx| match out.head() {
                None => Poll::Ready(Ok(0)),
                Some(head) => Pin::new(&mut *socket.borrow_mut()).poll_write(cx, &head),
            })
            .await;
            match result {
                Ok(count) => {
                    let written = out.advance(count);
                    metrics.frames_out.add(written.frames);
                    metrics.bytes_out.add(written.bytes);
                }
                Err(_) => return out.broken(),
            }
        }
        if work == TaskWork::Close {
            let _ = poll_fn(|cx| Pin::new(&mut *socket.borrow_mut()).poll_close(cx)).await;
            return;
        }
        out.unblock();
    }
}

struct Reader<'a> {
    session: &'a Session,
    bucket: TokenBucket,
}

impl Reader<'_> {
    async fn on_text(&mut self, text: &str) {
        let result = match frames::parse_client_frame(text) {
            Ok(ClientFrame::Ping {}) => {
                self.session.out.push(frames::pong());
                Ok(())
            }
            Ok(ClientFrame::Send { chat, body, to, id }) => self.on_send(chat, body, to, id).await,
            Ok(ClientFrame::Sync { chats }) => self.on_sync(chats).await,
            Err(error) => Err((error, None, None)),
        };
        if let Err((error, id, chat)) = result {
            self.session
                .out
                .push(frames::error(&error, id.as_deref(), chat));
        }
    }

    async fn on_send(
        &mut self,
        chat: u64,
        body: String,
        to: Option<Vec<String>>,
        id: Option<String>,
    ) -> Result<(), (EngineError, Option<String>, Option<u64>)> {
        let shard = &self.session.shard;
        let fail = |error: EngineError, id: &Option<String>| (error, id.clone(), Some(chat));
        crate::validate::message(
            chat,
            &body,
            to.as_deref(),
            id.as_deref(),
            &shard.config.limits,
        )
        .map_err(|e| fail(e, &id))?;
        if !self.bucket.try_take(Instant::now()) {
            return Err(fail(
                EngineError::RateLimited(shard.config.limits.sends_per_second_max),
                &id,
            ));
        }
        let conn = self.session.conn;
        if shard.home.borrow().sends_in_flight(conn)
            >= shard.config.limits.sends_in_flight_per_connection_max
        {
            return Err(fail(EngineError::TooManyInFlight, &id));
        }
        let request = SendRequest {
            app: self.session.app,
            chat,
            sender: self.session.user.clone(),
            to,
            body,
            client_id: id.clone(),
            as_app: false,
            reply: Reply::Connection {
                home: shard.id,
                conn,
                chat,
                id: id.clone(),
            },
        };
        // Counted before routing: the answer may be handled while routing waits.
        shard.home.borrow_mut().send_started(conn);
        let owner = shard.router.owner_of(self.session.app, chat);
        if let Err(error) = shard
            .router
            .send_to(owner, ShardMessage::Send(request))
            .await
        {
            shard.home.borrow_mut().send_abandoned(conn);
            return Err(fail(error, &id));
        }
        Ok(())
    }

    async fn on_sync(
        &mut self,
        chats: std::collections::BTreeMap<String, u64>,
    ) -> Result<(), (EngineError, Option<String>, Option<u64>)> {
        if chats.len() > SYNC_CHATS_MAX {
            return Err((EngineError::TooManyChats(SYNC_CHATS_MAX), None, None));
        }
        let mut parsed = Vec::with_capacity(chats.len());
        for (chat, after) in &chats {
            let number = crate::validate::chat_number(chat).map_err(|e| (e, None, None))?;
            parsed.push((number, *after));
        }
        let shard = &self.session.shard;
        shard
            .home
            .borrow_mut()
            .start_sync(self.session.conn, &parsed)
            .map_err(|e| (e, None, None))?;
        for (chat, after) in parsed {
            let request = SyncRequest {
                app: self.session.app,
                chat,
                user: self.session.user.clone(),
                after,
                home: shard.id,
                conn: self.session.conn,
            };
            let owner = shard.router.owner_of(self.session.app, chat);
            shard
                .router
                .send_to(owner, ShardMessage::Sync(request))
                .await
                .map_err(|e| (e, None, Some(chat)))?;
        }
        Ok(())
    }
}
