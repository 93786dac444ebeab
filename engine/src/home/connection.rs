//! One WebSocket connection's life: a reader that parses client frames and
//! routes sends and syncs to owner shards, and a writer that drains the
//! outbound queue, one flush per burst. When either ends, both do.

use std::cell::Cell;
use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::time::Instant;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::{SinkExt, StreamExt};

use super::outbound::{Burst, CloseReason, Outbound};
use super::rate::TokenBucket;
use crate::error::EngineError;
use crate::frames::{self, ClientFrame};
use crate::io::PrefixedStream;
use crate::limits::SYNC_CHATS_MAX;
use crate::router::{AppId, ConnId, SendRequest, ShardMessage, SyncRequest};
use crate::shard::Shard;

pub struct Session {
    pub shard: Rc<Shard>,
    pub conn: ConnId,
    pub app: AppId,
    pub user: String,
    pub out: Rc<Outbound>,
}

pub async fn run(session: Session, socket: WebSocketStream<PrefixedStream>) {
    let (mut sink, mut stream) = StreamExt::split(socket);
    let metrics = Rc::clone(&session.shard).metrics.clone();
    let out = Rc::clone(&session.out);
    let writer = async {
        loop {
            match poll_fn(|cx| out.poll_burst(cx)).await {
                Burst::Frames(frames) => {
                    let count = frames.len() as u64;
                    let bytes: usize = frames.iter().map(|frame| frame.len()).sum();
                    for frame in frames {
                        if sink.feed(Message::Text(frame)).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                    metrics.frames_out.add(count);
                    metrics.bytes_out.add(bytes as u64);
                }
                Burst::Close(reason) => {
                    let frame = CloseFrame {
                        code: CloseCode::from(reason.code()),
                        reason: reason.text().into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    let _ = sink.close().await;
                    return;
                }
            }
        }
    };
    let reader = async {
        let mut reader = Reader {
            session: &session,
            bucket: TokenBucket::new(session.shard.config.limits.sends_per_second_max),
            in_flight: Rc::new(Cell::new(0)),
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
                Ok(Message::Close(_)) => return,
                Ok(_) => {} // ping and pong: tungstenite answers pings itself
                Err(WsError::Capacity(_)) => return session.out.close(CloseReason::FrameTooLarge),
                Err(WsError::Utf8(_)) => return session.out.close(CloseReason::InvalidUtf8),
                Err(_) => return,
            }
        }
    };
    // The writer finishes the close handshake after the reader asks for it,
    // so a reader that ended by closing waits for the writer.
    let mut writer = pin!(writer);
    match futures_util::future::select(pin!(reader), writer.as_mut()).await {
        futures_util::future::Either::Left(((), _)) if session.out.is_closing() => writer.await,
        _ => {}
    }
    session.shard.home.borrow_mut().unregister(session.conn);
    session.shard.metrics.connections_open.sub(1);
}

struct Reader<'a> {
    session: &'a Session,
    bucket: TokenBucket,
    /// Sends awaiting their ack; shared with the tasks that await them.
    in_flight: Rc<Cell<usize>>,
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
        if self.in_flight.get() >= shard.config.limits.sends_in_flight_per_connection_max {
            return Err(fail(EngineError::TooManyInFlight, &id));
        }
        let (reply, answer) = flume::bounded(1);
        let request = SendRequest {
            app: self.session.app,
            chat,
            sender: self.session.user.clone(),
            to,
            body,
            client_id: id.clone(),
            as_app: false,
            reply,
        };
        let owner = shard.router.owner_of(self.session.app, chat);
        shard
            .router
            .send_to(owner, ShardMessage::Send(request))
            .await
            .map_err(|e| fail(e, &id))?;
        self.in_flight.set(self.in_flight.get() + 1);
        let (in_flight, out) = (Rc::clone(&self.in_flight), Rc::clone(&self.session.out));
        crate::task::spawn(async move {
            let outcome = answer
                .recv_async()
                .await
                .unwrap_or(Err(EngineError::ShuttingDown));
            in_flight.set(in_flight.get() - 1);
            out.push(match outcome {
                Ok(number) => frames::ack(id.as_deref(), chat, number),
                Err(error) => frames::error(&error, id.as_deref(), Some(chat)),
            });
        });
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
