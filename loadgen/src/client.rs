//! WebSocket clients: connecting (optionally from one of several loopback
//! source addresses), reading frames into the shared statistics, and the
//! writer task of a sending connection.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, Stream, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::stats::{SenderSlot, Shared, now_us};

pub type Ws = WebSocketStream<TcpStream>;

/// Client connections per source address before the next one is used. One
/// source address has the 28,232 ephemeral ports of Linux's default range
/// towards the engine's address, and the TIME_WAIT sockets of earlier runs
/// hold ports for a minute: measured here, 18,900 connections from one
/// address after such a run opened at 877/s with handshakes up to 13.6 s
/// (the kernel's port search, charged to the generator's CPU), from four
/// addresses at 1,842/s with none over 0.51 s.
const CONNECTIONS_PER_SOURCE: usize = 10_000;
/// Longest TCP connect plus WebSocket handshake.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens WebSocket connections to the engine.
pub struct Connector {
    engine: SocketAddr,
    sources: Vec<IpAddr>,
    config: WebSocketConfig,
}

impl Connector {
    /// `total`: how many connections the run opens (chooses the number of
    /// source addresses when `source_ips` is 0). `read_buffer`: bytes of
    /// each connection's read buffer (allocated up front by tungstenite).
    pub fn new(engine: SocketAddr, total: usize, source_ips: u8, read_buffer: usize) -> Self {
        let count = if source_ips > 0 {
            usize::from(source_ips)
        } else if total > CONNECTIONS_PER_SOURCE {
            total.div_ceil(CONNECTIONS_PER_SOURCE)
        } else {
            0
        };
        let sources = if engine.ip().is_loopback() && engine.is_ipv4() {
            (0..count.min(250))
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
                .collect()
        } else {
            Vec::new()
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .write_buffer_size(16 * 1024)
            .max_message_size(Some(1 << 20))
            .max_frame_size(Some(1 << 20));
        Self {
            engine,
            sources,
            config,
        }
    }

    pub fn sources(&self) -> &[IpAddr] {
        &self.sources
    }

    /// Connects connection number `index` with a user token. The error is
    /// a short description fit for counting ("429 Too Many Requests", ...).
    pub async fn connect(&self, index: usize, token: &str) -> Result<Ws, String> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.try_connect(index, token)).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {CONNECT_TIMEOUT:?}")),
        }
    }

    async fn try_connect(&self, index: usize, token: &str) -> Result<Ws, String> {
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {}", io_kind(&e)))?;
        if !self.sources.is_empty() {
            let source = self.sources[index % self.sources.len()];
            // Let connect() pick the port from the whole 4-tuple, so each
            // source address has its own range of ephemeral ports.
            let one: libc::c_int = 1;
            // SAFETY: setsockopt on a socket we own, with a valid int option.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(|e| format!("bind {source}: {}", io_kind(&e)))?;
        }
        let stream = socket
            .connect(self.engine)
            .await
            .map_err(|e| format!("connect: {}", io_kind(&e)))?;
        let _ = stream.set_nodelay(true);
        let url = format!("ws://{}/v1/ws?token={token}", self.engine);
        match tokio_tungstenite::client_async_with_config(url, stream, Some(self.config)).await {
            Ok((ws, _response)) => Ok(ws),
            Err(WsError::Http(response)) => Err(format!("HTTP {}", response.status())),
            Err(WsError::Io(error)) => Err(format!("handshake: {}", io_kind(&error))),
            Err(error) => Err(format!("handshake: {error}")),
        }
    }
}

fn io_kind(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => format!("{} (os error {code})", error.kind()),
        None => error.kind().to_string(),
    }
}

/// The fields of a server frame the load generator needs; the rest (sent_at,
/// from, message) are skipped without allocating.
#[derive(Deserialize)]
struct InFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    chat: Option<u64>,
    #[serde(default)]
    number: u64,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    code: Option<&'a str>,
    #[serde(default, borrow)]
    chats: Option<BTreeMap<&'a str, u64>>,
}

/// The hot path: the engine encodes message frames with a fixed field order,
/// `{"type":"message","chat":7,"number":42,"from":"alice","body":"...",...}`,
/// and user ids cannot hold a quote. Reads the chat, the number and the start
/// of the body (where the timestamp is) without a JSON parser; `None` for any
/// other shape, which then goes through serde.
fn fast_message(text: &str) -> Option<(u64, u64, &str)> {
    let rest = text.strip_prefix(r#"{"type":"message","chat":"#)?;
    let (chat, rest) = leading_number(rest)?;
    let rest = rest.strip_prefix(r#","number":"#)?;
    let (number, rest) = leading_number(rest)?;
    let rest = rest.strip_prefix(r#","from":""#)?;
    let rest = &rest[rest.find('"')?..];
    let body = rest.strip_prefix(r#"","body":""#)?;
    Some((chat, number, body))
}

/// A decimal number at the start of `text` (1 to 19 digits) and the rest.
fn leading_number(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = text[..digits].parse().ok()?;
    Some((value, &text[digits..]))
}

/// Handles one text frame of receiver `id`.
pub fn handle_text(text: &str, id: usize, shared: &Shared, sender: Option<&SenderSlot>) {
    if let Some((chat, number, body)) = fast_message(text) {
        let now = now_us();
        shared
            .stats
            .borrow_mut()
            .on_message(id, chat, number, body, now);
        return;
    }
    let frame: InFrame = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(error) => {
            let mut stats = shared.stats.borrow_mut();
            stats.misrouted += 1;
            stats.problem(|| format!("receiver {id}: unreadable frame ({error}): {text:.200}"));
            return;
        }
    };
    match frame.kind {
        "message" => {
            let now = now_us();
            shared.stats.borrow_mut().on_message(
                id,
                frame.chat.unwrap_or(0),
                frame.number,
                frame.body.as_deref().unwrap_or(""),
                now,
            );
        }
        "ack" => {
            release(shared, sender);
            shared
                .stats
                .borrow_mut()
                .on_ack(frame.chat.unwrap_or(0), frame.number);
        }
        "error" => {
            // A send's error carries its chat; it frees a window slot.
            if frame.chat.is_some() {
                release(shared, sender);
            }
            shared
                .stats
                .borrow_mut()
                .on_error(frame.code.unwrap_or("unknown"));
        }
        "synced" => {
            let mut stats = shared.stats.borrow_mut();
            let receiver = &mut stats.receivers[id];
            let chat = receiver.chat.to_string();
            let reached = frame
                .chats
                .as_ref()
                .and_then(|chats| chats.get(chat.as_str()).copied());
            receiver.synced_to = Some(reached.unwrap_or(0));
        }
        "pong" => shared.stats.borrow_mut().pongs += 1,
        "read" => shared.stats.borrow_mut().read_events += 1,
        "reads" => shared.stats.borrow_mut().reads_events += 1,
        other => {
            let other = other.to_string();
            shared
                .stats
                .borrow_mut()
                .problem(|| format!("receiver {id}: unexpected frame type {other:?}"));
        }
    }
}

fn release(shared: &Shared, sender: Option<&SenderSlot>) {
    if let Some(slot) = sender {
        slot.in_flight.set(slot.in_flight.get().saturating_sub(1));
        shared
            .in_flight
            .set(shared.in_flight.get().saturating_sub(1));
        shared.window_open.notify_one();
    }
}

/// Why a connection ended, from its close frame or error.
pub fn close_reason(item: Option<Result<Message, WsError>>) -> String {
    match item {
        Some(Ok(Message::Close(Some(frame)))) => {
            format!("closed {} {}", u16::from(frame.code), frame.reason)
        }
        Some(Ok(Message::Close(None))) => "closed without a reason".into(),
        Some(Err(error)) => format!("error: {error}"),
        Some(Ok(_)) => "unexpected frame".into(),
        None => "end of stream".into(),
    }
}

/// Reads frames until the connection ends; an end is recorded as an
/// unexpected close (the run aborts its tasks when it means to stop).
pub async fn read_loop<S>(
    mut stream: S,
    id: usize,
    shared: Rc<Shared>,
    sender: Option<Rc<SenderSlot>>,
) where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let end = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                handle_text(text.as_str(), id, &shared, sender.as_deref());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Binary(_))) => {
                shared
                    .stats
                    .borrow_mut()
                    .problem(|| format!("receiver {id}: unexpected binary frame"));
            }
            other => break close_reason(other),
        }
    };
    if let Some(slot) = &sender {
        slot.open.set(false);
        // Its unacknowledged sends will never be answered on this connection.
        let lost = u64::from(slot.in_flight.replace(0));
        shared
            .in_flight
            .set(shared.in_flight.get().saturating_sub(lost));
        shared.window_open.notify_one();
    }
    shared.stats.borrow_mut().on_closed(id, end);
}

/// Writes queued frames, many per flush.
pub async fn write_loop(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::Receiver<Message>) {
    while let Some(message) = rx.recv().await {
        if sink.feed(message).await.is_err() {
            return;
        }
        while let Ok(message) = rx.try_recv() {
            if sink.feed(message).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// Connects `tokens.len()` clients, `concurrency` handshakes at a time,
/// behind a progress bar; results in the tokens' order.
pub async fn connect_all(
    connector: &Connector,
    tokens: &[&str],
    concurrency: usize,
    what: &str,
) -> Vec<Result<Ws, String>> {
    let bar = crate::report::counter_bar(tokens.len() as u64, what);
    let results = futures_util::stream::iter(tokens.iter().enumerate())
        .map(|(index, token)| {
            let bar = &bar;
            async move {
                let result = connector.connect(index, token).await;
                bar.inc(1);
                result
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    results
}

/// Splits a connection into a reader task and a writer task; returns the
/// sender's slot and the two tasks.
pub fn spawn_sender(
    ws: Ws,
    id: usize,
    shared: &Rc<Shared>,
    queue: usize,
) -> (Rc<SenderSlot>, [tokio::task::JoinHandle<()>; 2]) {
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(queue.max(1));
    let slot = Rc::new(SenderSlot {
        tx,
        in_flight: std::cell::Cell::new(0),
        open: std::cell::Cell::new(true),
    });
    let reader =
        tokio::task::spawn_local(read_loop(stream, id, shared.clone(), Some(slot.clone())));
    let writer = tokio::task::spawn_local(write_loop(sink, rx));
    (slot, [reader, writer])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_message_frames_without_a_parser() {
        let frame = r#"{"type":"message","chat":7,"number":42,"from":"c0m1","body":"1700000000000001 5 xx","sent_at":"2026-11-27T14:00:00.123456Z"}"#;
        let (chat, number, body) = fast_message(frame).unwrap();
        assert_eq!((chat, number), (7, 42));
        assert_eq!(
            crate::stats::body_timestamp(body),
            Some(1_700_000_000_000_001)
        );
        // Other shapes fall back to serde.
        assert!(fast_message(r#"{"type":"ack","chat":7,"number":42}"#).is_none());
        assert!(fast_message(r#"{"chat":7,"type":"message","number":42}"#).is_none());
        assert!(fast_message(r#"{"type":"message","chat":x,"number":42}"#).is_none());
        assert!(fast_message(r#"{"type":"message","chat":7,"number":42,"from":"a"}"#).is_none());
    }

    #[test]
    fn the_fast_path_and_serde_agree() {
        let shared = Shared::new(vec![crate::stats::Receiver::new(7); 2]);
        let fast =
            r#"{"type":"message","chat":7,"number":1,"from":"u","body":"100 1 x","sent_at":"t"}"#;
        let slow =
            r#"{"number":1,"type":"message","chat":7,"from":"u","body":"100 1 x","sent_at":"t"}"#;
        handle_text(fast, 0, &shared, None);
        handle_text(slow, 1, &shared, None);
        let stats = shared.stats.borrow();
        assert_eq!(stats.deliveries, 2);
        assert_eq!(stats.receivers[0].last, 1);
        assert_eq!(stats.receivers[1].last, 1);
        assert_eq!(stats.misrouted + stats.duplicates + stats.gaps, 0);
    }
}
