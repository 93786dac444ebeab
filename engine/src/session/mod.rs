//! One WebSocket connection's life: a reader that parses client frames and
//! routes sends and syncs to owner shards, and a writer that steps in when
//! the socket is full or the connection closes (the shard's flusher writes
//! everything else). When either ends, both do.
//!
//! A session stands at the shard's entrance: it checks tokens and asks the
//! API about memberships (`membership`), registers with the home part
//! (`home`) and reaches owners only through the router, like any shard.

mod membership;
mod rate;
mod read_position;
mod typing;

pub use self::membership::MembershipChecks;

use std::cell::{Cell, RefCell};
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

use self::rate::TokenBucket;
use crate::error::EngineError;
use crate::frames::{self, ClientFrame};
use crate::home::outbound::{CloseReason, Drain, Outbound, TaskWork};
use crate::io::{ConnIo, with_timeout};
use crate::limits::SYNC_CHATS_MAX;
use crate::metrics::ShardMetrics;
use crate::router::{
    AppId, ConnId, Reply, SendRequest, ShardMessage, SyncRequest, SyncResult, ToOwner,
    TypingRequest,
};
use crate::shard::Shard;

pub struct Session {
    pub shard: Rc<Shard>,
    pub conn: ConnId,
    pub app: AppId,
    pub user: String,
    pub out: Rc<Outbound>,
    /// The `exp` of the session's newest token, in seconds since the epoch:
    /// the connection closes with `token_expired` then, unless a `refresh`
    /// frame brought a later one.
    pub expires_at: Cell<i64>,
}

impl Session {
    /// The connection is gone: it leaves the home part and the open count.
    /// Every registered session ends here once, upgraded or not.
    pub fn end(&self) {
        self.shard
            .home
            .connections
            .borrow_mut()
            .unregister(self.conn);
        self.shard.metrics.connections_open.sub(1);
    }
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
    let close_limit = Duration::from_secs(session.shard.config.limits.close_write_s);
    let writer = write_when_needed(&out, &socket, &metrics, close_limit);
    let reader = async {
        let mut reader = Reader {
            session: &session,
            bucket: TokenBucket::new(session.shard.config.limits.sends_per_second_max),
            typing: typing::TypingThrottle::default(),
        };
        loop {
            // The wait is bounded by the token's expiry, read again at every
            // frame: a refresh moves it.
            let left_s = session.expires_at.get() - crate::auth::now_s();
            if left_s <= 0 {
                return session.out.close(CloseReason::TokenExpired);
            }
            let wait = Duration::from_secs(left_s.unsigned_abs());
            let Some(next) = with_timeout(wait, stream.next()).await else {
                continue;
            };
            let Some(message) = next else {
                return;
            };
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
            let _ = with_timeout(close_limit, writer).await;
        }
        _ => {}
    }
    session.end();
}

struct DetachOnDrop<'a>(&'a Outbound);

impl Drop for DetachOnDrop<'_> {
    fn drop(&mut self) {
        self.0.detach();
    }
}

/// The connection's own writer: idle while the shard's flusher keeps up;
/// it waits for a full socket to drain, and it writes the close. A closing
/// connection whose client does not read gets `close_limit`, then it is
/// dropped: a client that stopped reading would otherwise hold its socket
/// and this task forever.
async fn write_when_needed(
    out: &Outbound,
    socket: &RefCell<TcpStream>,
    metrics: &ShardMetrics,
    close_limit: Duration,
) {
    let mut closing_since: Option<Instant> = None;
    loop {
        let work = poll_fn(|cx| out.poll_task(cx)).await;
        if work == TaskWork::Stop {
            return;
        }
        if work == TaskWork::Drain {
            metrics.sockets_full.inc();
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
            if out.is_closing() {
                let since = *closing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= close_limit {
                    return out.broken();
                }
            }
            // glommio's write tries once more, then waits until the socket
            // can take bytes. The head is read again at every poll: a close
            // may have replaced the queue meanwhile. The wait is cut into
            // slices so that a close starting meanwhile is noticed.
            let wait = poll_fn(|cx| match out.head() {
                None => Poll::Ready(Ok(0)),
                Some(head) => Pin::new(&mut *socket.borrow_mut()).poll_write(cx, &head),
            });
            let Some(result) = with_timeout(CLOSE_WAIT_SLICE, wait).await else {
                continue;
            };
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

/// How often a writer waiting for a full socket looks whether it is closing.
const CLOSE_WAIT_SLICE: Duration = Duration::from_secs(1);

/// A frame's outcome: an error to answer with, and the `id` and `chat` it
/// concerns when known.
type FrameResult = Result<(), (EngineError, Option<String>, Option<u64>)>;

struct Reader<'a> {
    session: &'a Session,
    bucket: TokenBucket,
    typing: typing::TypingThrottle,
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
            Ok(ClientFrame::Refresh { token }) => self.on_refresh(&token).await,
            Ok(ClientFrame::Leave { chat }) => self.on_leave(chat).await,
            Ok(ClientFrame::Read { chat, number }) => self.on_read(chat, number).await,
            Ok(ClientFrame::Typing { chat }) => self.on_typing(chat).await,
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
    ) -> FrameResult {
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
        if shard.home.connections.borrow().sends_in_flight(conn)
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
        shard.home.connections.borrow_mut().send_started(conn);
        let owner = shard.router.owner_of(self.session.app, chat);
        if let Err(error) = shard
            .router
            .send_to(owner, ShardMessage::Owner(ToOwner::Send(request)))
            .await
        {
            shard.home.connections.borrow_mut().send_abandoned(conn);
            return Err(fail(error, &id));
        }
        Ok(())
    }

    /// A fresh token for the same app and user extends the session to its
    /// expiry; anything else is refused and the session keeps its old one.
    async fn on_refresh(&mut self, token: &str) -> FrameResult {
        let shard = &self.session.shard;
        let identity = crate::auth::verify_user(shard, token)
            .await
            .map_err(|e| (e, None, None))?;
        if identity.app != self.session.app || identity.user != self.session.user {
            return Err((EngineError::TokenMismatch, None, None));
        }
        if identity.expires_at > self.session.expires_at.get() {
            self.session.expires_at.set(identity.expires_at);
        }
        shard
            .home
            .connections
            .borrow_mut()
            .set_issued_at(self.session.conn, identity.issued_at);
        self.session
            .out
            .push(frames::refreshed(self.session.expires_at.get()));
        Ok(())
    }

    /// The user leaves a chat: the persistence API removes the subscription
    /// (the store then refuses the user's sends and syncs of it; live
    /// delivery stops at the next commit, which reads the changed set).
    async fn on_leave(&mut self, chat: u64) -> FrameResult {
        let fail = |error| (error, None, Some(chat));
        crate::validate::chat_number_value(chat).map_err(fail)?;
        let session = self.session;
        let path = format!(
            "/internal/v1/apps/{}/chats/{chat}/subscribers/{}",
            session.app, session.user
        );
        let response = session.shard.api.delete(&path).await.map_err(|error| {
            tracing::warn!(%error, "leave: persistence API unavailable");
            fail(EngineError::Overloaded)
        })?;
        match response.status.as_u16() {
            204 => {
                session.out.push(frames::left(chat));
                Ok(())
            }
            404 => Err(fail(EngineError::NotSubscribed)),
            status => {
                tracing::warn!(status, "leave refused by the persistence API");
                Err(fail(EngineError::Overloaded))
            }
        }
    }

    /// The user has read the chat up to `number`. Each costs the API a
    /// durable write, so reads share the connection's send budget.
    async fn on_read(&mut self, chat: u64, number: u64) -> FrameResult {
        let fail = |error| (error, None, Some(chat));
        crate::validate::chat_number_value(chat).map_err(fail)?;
        chat_wire::number::check_cursor(number, "read position")
            .map_err(|e| fail(EngineError::InvalidNumber(e.to_string())))?;
        let shard = &self.session.shard;
        if !self.bucket.try_take(Instant::now()) {
            return Err(fail(EngineError::RateLimited(
                shard.config.limits.sends_per_second_max,
            )));
        }
        let session = self.session;
        read_position::mark(shard, session.app, &session.user, chat, number)
            .await
            .map_err(fail)
    }

    /// The user is typing: on to the chat's owner, which relays it to the
    /// other members, at most once a chat per interval; the rest are dropped
    /// without an answer (an indicator has no ack).
    async fn on_typing(&mut self, chat: u64) -> FrameResult {
        crate::validate::chat_number_value(chat).map_err(|e| (e, None, Some(chat)))?;
        let shard = &self.session.shard;
        let interval = Duration::from_millis(shard.config.limits.typing_interval_ms);
        if !self.typing.admit(chat, Instant::now(), interval) {
            shard.metrics.typing_dropped.inc();
            return Ok(());
        }
        let session = self.session;
        let request = TypingRequest {
            app: session.app,
            chat,
            user: session.user.clone(),
            home: shard.id,
            conn: session.conn,
        };
        let owner = shard.router.owner_of(session.app, chat);
        shard
            .router
            .send_to(owner, ShardMessage::Owner(ToOwner::Typing(request)))
            .await
            .map_err(|e| (e, None, Some(chat)))
    }

    async fn on_sync(&mut self, chats: std::collections::BTreeMap<String, u64>) -> FrameResult {
        if chats.len() > SYNC_CHATS_MAX {
            return Err((EngineError::TooManyChats(SYNC_CHATS_MAX), None, None));
        }
        let mut parsed = Vec::with_capacity(chats.len());
        for (chat, after) in &chats {
            let number = crate::validate::chat_number(chat).map_err(|e| (e, None, None))?;
            let after =
                crate::validate::seen_number(*after).map_err(|e| (e, None, Some(number)))?;
            parsed.push((number, after));
        }
        let shard = &self.session.shard;
        let conn = self.session.conn;
        // The chats sync from now on: a live message that arrives while the
        // membership check is on its way is held with the others, not sent
        // ahead of the older ones the sync will send.
        shard
            .home
            .connections
            .borrow_mut()
            .start_sync(conn, &parsed)
            .map_err(|e| (e, None, None))?;
        if parsed.is_empty() {
            return Ok(()); // answered `synced` at once: nothing to check
        }
        let numbers: Vec<u64> = parsed.iter().map(|&(chat, _)| chat).collect();
        let members =
            match membership::member_chats(shard, self.session.app, &self.session.user, &parsed)
                .await
            {
                Ok(members) => members,
                Err(error) => {
                    shard.home.connections.borrow_mut().abandon_sync(
                        conn,
                        &numbers,
                        &shard.metrics,
                    );
                    return Err((error, None, None));
                }
            };
        parsed.retain(|&(chat, _)| {
            let member = members.contains_key(&chat);
            if !member {
                // Answered like a refusal from the owner: the error, then
                // whatever live messages were held meanwhile.
                shard.home.connections.borrow_mut().sync_result(
                    SyncResult {
                        conn,
                        chat,
                        outcome: Err(EngineError::NotSubscribed),
                    },
                    &shard.metrics,
                );
            }
            member
        });
        shard
            .home
            .connections
            .borrow_mut()
            .set_sync_reads(conn, &members);
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
                .send_to(owner, ShardMessage::Owner(ToOwner::Sync(request)))
                .await
                .map_err(|e| (e, None, Some(chat)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use bytes::Bytes;

    use super::*;
    use crate::home::flusher::Flusher;

    fn set_buffer(socket: std::os::fd::RawFd, option: libc::c_int) {
        let bytes: libc::c_int = 16 * 1024;
        // SAFETY: setsockopt on an open socket with a valid int option.
        let result = unsafe {
            libc::setsockopt(
                socket,
                libc::SOL_SOCKET,
                option,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(result, 0, "setsockopt");
    }

    /// A client that stopped reading: the socket is full, the close frame
    /// cannot be written, and the writer gives up after the limit instead of
    /// holding the socket forever.
    #[test]
    fn a_close_that_cannot_be_written_is_abandoned_after_the_limit() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let server = listener.accept().await.unwrap();
                // Fixed, small buffers: the kernel would otherwise keep growing
                // them for a while, and the "full" socket would drain.
                set_buffer(client.as_raw_fd(), libc::SO_RCVBUF);
                set_buffer(server.as_raw_fd(), libc::SO_SNDBUF);
                let out = Rc::new(Outbound::new(1 << 20, 1 << 30, Rc::new(Flusher::default())));
                out.attach(server.as_raw_fd());
                // Fill until the socket takes nothing more even after a pause
                // (the kernel grows the buffers of a busy socket for a while).
                let frame = Bytes::from(vec![b'x'; 64 * 1024]);
                loop {
                    while out.write_now().0 != Drain::Full {
                        assert!(out.push(frame.clone()));
                    }
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    let (drain, written) = out.write_now();
                    if drain == Drain::Full && written.bytes == 0 {
                        break;
                    }
                }
                out.close(CloseReason::GoingAway);
                let socket = RefCell::new(server);
                let started = Instant::now();
                let limit = Duration::from_millis(200);
                let metrics = ShardMetrics::default();
                let writer = write_when_needed(&out, &socket, &metrics, limit);
                let ended = with_timeout(Duration::from_secs(10), writer).await;
                assert!(ended.is_some(), "the writer still waits for the client");
                let took = started.elapsed();
                assert!(took >= limit, "gave up after {took:?}");
                assert!(
                    took < limit + CLOSE_WAIT_SLICE + Duration::from_secs(1),
                    "gave up only after {took:?}"
                );
                assert!(out.head().is_some(), "the close frame was not written");
                out.detach();
                drop(client);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
