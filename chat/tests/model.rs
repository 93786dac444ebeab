//! Model-based concurrency test: several clients drive the real engine,
//! API and auth processes at once with random, seeded operations (create a
//! chat, subscribe and unsubscribe over REST, send over the WebSocket with
//! and without `to` and ids, resend, publish over HTTP, sync from the last
//! number seen or from 0, leave, reconnect, read history with the app token
//! and with user tokens), and a reference model (`model_oracle`) judges
//! every answer, delivery and page the run recorded.
//!
//! Each client's operations run one after another; the clients run at once
//! (tokio tasks on two threads), so real races happen between them. The
//! seed (`CHAT_MODEL_SEED`, a fixed default otherwise) decides each
//! client's stream of random choices; the interleaving (and so which chats
//! exist when a client picks one) is the machine's. On a failure the
//! seed, the violations and the operation log (ticks of the model's clock)
//! are printed. `scripts/model.sh` runs many seeds.

mod common;
mod model_oracle;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Options, System};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use model_oracle::{
    ConnRecord, Frame, HistoryRead, MembershipKind, MembershipOp, SendAttempt, Seq, StoredMessage,
    SyncRecord, Trace, Via,
};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The seed CI runs; `CHAT_MODEL_SEED` picks another.
const SEED_DEFAULT: u64 = 1;
/// Operations of a whole run, over all clients (`CHAT_MODEL_OPS`).
const OPS_DEFAULT: usize = 600;
/// The app's users; `zed` is named in `to` lists but never subscribed.
const USERS: [&str; 5] = ["ann", "bob", "cat", "dan", "eve"];
const STRANGER: &str = "zed";
/// One driving client each; ann twice, so one user has two connections.
const CLIENT_USERS: [&str; 6] = ["ann", "bob", "cat", "dan", "eve", "ann"];
/// Few chats, so that operations collide on them.
const CHATS_MAX: usize = 5;
const CHATS_AT_START: usize = 2;
/// How long a client waits for the answer to one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pages one history walk reads at most.
const HISTORY_PAGES_MAX: usize = 200;
/// Deliveries may trail the answers (an ack goes to the sender first): the
/// run waits until no frame has come for this long...
const QUIET: Duration = Duration::from_millis(300);
/// ...but not for longer than this in all.
const QUIET_WAIT_MAX: Duration = Duration::from_secs(10);

/// splitmix64: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

type PairLock = Arc<tokio::sync::Mutex<()>>;

/// What every client shares: the system, the model's clock and the trace.
struct Shared {
    system: System,
    clock: AtomicU64,
    trace: Mutex<Trace>,
    log: Mutex<Vec<(Seq, String)>>,
    chats: Mutex<Vec<u64>>,
    /// One lock per (chat, user): membership changes of one pair never
    /// overlap, so the model knows the state before and after each.
    pair_locks: Mutex<HashMap<(u64, String), PairLock>>,
    user_tokens: tokio::sync::Mutex<HashMap<String, String>>,
}

impl Shared {
    fn tick(&self) -> Seq {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn log(&self, seq: Seq, line: String) {
        self.log.lock().unwrap().push((seq, line));
    }

    fn fail(&self, line: String) {
        let seq = self.tick();
        self.log(seq, format!("FAILURE {line}"));
        self.trace.lock().unwrap().driver_failures.push(line);
    }

    fn chats(&self) -> Vec<u64> {
        self.chats.lock().unwrap().clone()
    }

    fn pair_lock(&self, chat: u64, user: &str) -> PairLock {
        let mut locks = self.pair_locks.lock().unwrap();
        Arc::clone(locks.entry((chat, user.to_string())).or_default())
    }

    async fn user_token(&self, user: &str) -> String {
        let mut tokens = self.user_tokens.lock().await;
        if let Some(token) = tokens.get(user) {
            return token.clone();
        }
        let token = self.system.token(user).await;
        tokens.insert(user.to_string(), token.clone());
        token
    }
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// A WebSocket of one client: the client writes, a reader task records
/// every message frame in the trace and hands the other frames (answers)
/// to the client with their tick.
struct Socket {
    conn: usize,
    sink: Sink,
    answers: mpsc::UnboundedReceiver<(Seq, Value)>,
    reader: tokio::task::JoinHandle<()>,
}

impl Socket {
    async fn open(shared: &Arc<Shared>, user: &str) -> Socket {
        let token = shared.system.token(user).await;
        let client = common::Client::connect(shared.system.engine_port, &token).await;
        let opened = shared.tick();
        let conn = {
            let mut trace = shared.trace.lock().unwrap();
            trace.conns.push(ConnRecord {
                user: user.to_string(),
                opened,
                closed: None,
                frames: Vec::new(),
                lost: None,
                final_sync_start: None,
            });
            trace.conns.len() - 1
        };
        shared.log(opened, format!("{user} connected as connection {conn}"));
        let (sink, mut stream) = client.socket.split();
        let (answers_in, answers) = mpsc::unbounded_channel();
        let shared = Arc::clone(shared);
        let reader = tokio::spawn(async move {
            let lost = loop {
                let Some(next) = stream.next().await else {
                    break "the engine ended the stream".to_string();
                };
                let seq = shared.tick();
                let text = match next {
                    Ok(Message::Text(text)) => text,
                    Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                    Ok(other) => break format!("{other:?}"),
                    Err(error) => break error.to_string(),
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    break format!("not JSON: {text}");
                };
                if frame["type"] != "message" {
                    let _ = answers_in.send((seq, frame));
                    continue;
                }
                let parsed = (|| {
                    Some(Frame {
                        seq,
                        chat: frame["chat"].as_u64()?,
                        number: frame["number"].as_u64()?,
                        from: frame["from"].as_str()?.to_string(),
                        body: frame["body"].as_str()?.to_string(),
                    })
                })();
                match parsed {
                    Some(parsed) => shared.trace.lock().unwrap().conns[conn].frames.push(parsed),
                    None => break format!("a malformed message frame: {frame}"),
                }
            };
            shared.trace.lock().unwrap().conns[conn].lost = Some(lost);
        });
        Socket {
            conn,
            sink,
            answers,
            reader,
        }
    }

    async fn send(&mut self, frame: &Value) -> bool {
        self.sink
            .send(Message::text(frame.to_string()))
            .await
            .is_ok()
    }

    /// The next answer frame, or `None` (recorded as a failure) on timeout.
    async fn answer(&mut self, shared: &Shared, what: &str) -> Option<(Seq, Value)> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.answers.recv()).await {
            Ok(Some(answer)) => Some(answer),
            _ => {
                shared.fail(format!("connection {}: no answer to {what}", self.conn));
                None
            }
        }
    }

    /// Drops the connection; its reader stops first, so the close is not
    /// taken for one the engine made.
    async fn close(mut self, shared: &Shared) {
        let closed = shared.tick();
        self.reader.abort();
        let _ = (&mut self.reader).await;
        shared.trace.lock().unwrap().conns[self.conn].closed = Some(closed);
        let _ = self.sink.close().await;
    }
}

/// A message a client sent, kept to resend it.
#[derive(Clone)]
struct Sent {
    chat: u64,
    body: String,
    to: Option<Vec<String>>,
    id: Option<String>,
    /// Published over HTTP as this user, else a WebSocket send.
    published_as: Option<String>,
}

struct Client {
    index: usize,
    user: &'static str,
    rng: Rng,
    shared: Arc<Shared>,
    socket: Socket,
    /// The highest number seen per chat, on this connection or earlier ones.
    seen: HashMap<u64, u64>,
    sent: Vec<Sent>,
    ops: usize,
}

impl Client {
    fn fresh_body(&mut self) -> String {
        self.ops += 1;
        format!(
            "c{}-o{}-{:x}",
            self.index,
            self.ops,
            self.rng.next() & 0xffff
        )
    }

    fn pick_chat(&mut self) -> Option<u64> {
        let chats = self.shared.chats();
        (!chats.is_empty()).then(|| chats[self.rng.below(chats.len())])
    }

    fn pick_to(&mut self) -> Option<Vec<String>> {
        if self.rng.percent(55) {
            return None;
        }
        let mut to: Vec<String> = (0..1 + self.rng.below(2))
            .map(|_| self.rng.pick(&USERS).to_string())
            .collect();
        if self.rng.percent(15) {
            to.push(STRANGER.to_string());
        }
        Some(to)
    }

    fn update_seen(&mut self) {
        let trace = self.shared.trace.lock().unwrap();
        for frame in &trace.conns[self.socket.conn].frames {
            let seen = self.seen.entry(frame.chat).or_insert(0);
            *seen = (*seen).max(frame.number);
        }
    }

    /// One random operation; `None` when the client cannot go on.
    async fn step(&mut self) -> Option<()> {
        let roll = self.rng.below(100);
        match roll {
            0..=27 => {
                let sent = self.new_message(None);
                self.send_over_socket(sent, false).await
            }
            28..=35 => {
                let again: Vec<Sent> = self
                    .sent
                    .iter()
                    .filter(|s| s.id.is_some())
                    .cloned()
                    .collect();
                if again.is_empty() {
                    return Some(());
                }
                let sent = again[self.rng.below(again.len())].clone();
                match &sent.published_as {
                    Some(_) => self.publish(sent).await,
                    None => {
                        let twice = self.rng.percent(40);
                        self.send_over_socket(sent, twice).await
                    }
                }
            }
            36..=45 => {
                let from = self.rng.pick(&USERS);
                let sent = self.new_message(Some(from.to_string()));
                self.publish(sent).await
            }
            46..=57 => {
                let user = self.rng.pick(&USERS);
                self.membership(user, MembershipKind::Subscribe).await
            }
            58..=65 => {
                let user = self.rng.pick(&USERS);
                self.membership(user, MembershipKind::Unsubscribe).await
            }
            66..=70 => self.membership(self.user, MembershipKind::Leave).await,
            71..=76 => self.pipeline().await,
            77..=81 => {
                let chats = self.shared.chats();
                let from_zero = self.rng.percent(30);
                let picked: Vec<u64> = chats.into_iter().filter(|_| self.rng.percent(60)).collect();
                self.sync(&picked, from_zero, false).await
            }
            82..=86 => self.reconnect().await,
            87..=91 => self.read_history_as_app().await,
            92..=96 => self.read_history_as_user().await,
            _ => self.create_chat().await,
        }
    }

    fn new_message(&mut self, published_as: Option<String>) -> Sent {
        let chat = self.pick_chat().unwrap_or(1);
        let body = self.fresh_body();
        let to = self.pick_to();
        let id = self
            .rng
            .percent(50)
            .then(|| format!("c{}-i{}", self.index, self.ops));
        let sent = Sent {
            chat,
            body,
            to,
            id,
            published_as,
        };
        self.sent.push(sent.clone());
        sent
    }

    async fn send_over_socket(&mut self, sent: Sent, twice: bool) -> Option<()> {
        let frame = send_frame(&sent);
        let start = self.shared.tick();
        let copies = if twice { 2 } else { 1 };
        for _ in 0..copies {
            if !self.socket.send(&frame).await {
                self.shared
                    .fail(format!("connection {}: the send failed", self.socket.conn));
                return None;
            }
        }
        for copy in 0..copies {
            let (end, answer) = self.socket.answer(&self.shared, "a send").await?;
            let outcome = match answer["type"].as_str() {
                Some("ack") if answer["chat"] == sent.chat && answer["id"] == json!(sent.id) => {
                    answer["number"].as_u64().ok_or_else(|| format!("{answer}"))
                }
                Some("error") if answer["id"] == json!(sent.id) => {
                    Err(answer["code"].as_str().unwrap_or("no code").to_string())
                }
                _ => {
                    self.shared.fail(format!(
                        "connection {}: {answer} answered a send of {:?}",
                        self.socket.conn, sent.body
                    ));
                    Err(format!("{answer}"))
                }
            };
            self.shared.log(
                start,
                format!(
                    "{} on connection {} sends {:?} to chat {} to {:?} id {:?}{} -> {outcome:?} at {end}",
                    self.user,
                    self.socket.conn,
                    sent.body,
                    sent.chat,
                    sent.to,
                    sent.id,
                    if twice {
                        format!(" (copy {copy} of a double send)")
                    } else {
                        String::new()
                    }
                ),
            );
            self.shared.trace.lock().unwrap().sends.push(SendAttempt {
                via: Via::Socket {
                    conn: self.socket.conn,
                },
                sender: self.user.to_string(),
                chat: sent.chat,
                body: sent.body.clone(),
                to: sent.to.clone(),
                id: sent.id.clone(),
                start,
                end,
                outcome,
            });
        }
        Some(())
    }

    /// Several sends to one chat and a sync of it, without waiting in
    /// between: the sync races commits of the very chat it reads, and its
    /// answers interleave with the acks (told apart by their ids).
    async fn pipeline(&mut self) -> Option<()> {
        let chat = self.pick_chat()?;
        self.update_seen();
        let after = if self.rng.percent(40) {
            0
        } else {
            self.seen.get(&chat).copied().unwrap_or(0)
        };
        let mut pending: Vec<(Sent, Seq)> = Vec::new();
        let mut sync_start = None;
        let sends = 2 + self.rng.below(4);
        let sync_at = self.rng.below(sends + 1);
        for index in 0..=sends {
            if index == sync_at {
                sync_start = Some(self.shared.tick());
                let frame = json!({"type": "sync", "chats": {chat.to_string(): after}});
                if !self.socket.send(&frame).await {
                    return self.socket_failed("a sync");
                }
            }
            if index == sends {
                break;
            }
            let mut sent = self.new_message(None);
            sent.chat = chat;
            sent.id = Some(format!("c{}-p{}", self.index, self.ops));
            if let Some(last) = self.sent.last_mut() {
                *last = sent.clone();
            }
            let start = self.shared.tick();
            if !self.socket.send(&send_frame(&sent)).await {
                return self.socket_failed("a send");
            }
            pending.push((sent, start));
        }
        let sync_start = sync_start.expect("the loop sends the sync");
        let mut errors = Vec::new();
        let mut synced = None;
        let mut answered: Vec<Option<(Seq, Result<u64, String>)>> = vec![None; pending.len()];
        while synced.is_none() || answered.iter().any(Option::is_none) {
            let (seq, answer) = self.socket.answer(&self.shared, "a pipeline").await?;
            let slot = pending
                .iter()
                .position(|(sent, _)| answer["id"] == json!(sent.id));
            let code = answer["code"].as_str().unwrap_or("no code").to_string();
            match (answer["type"].as_str(), slot) {
                (Some("ack"), Some(slot)) if answer["chat"] == chat => {
                    let outcome = answer["number"].as_u64().ok_or_else(|| format!("{answer}"));
                    answered[slot] = Some((seq, outcome));
                }
                (Some("error"), Some(slot)) => answered[slot] = Some((seq, Err(code))),
                (Some("error"), None) => {
                    let chat = answer["chat"].as_u64();
                    errors.push((chat, code));
                    if chat.is_none() {
                        synced = Some((seq, None));
                    }
                }
                (Some("synced"), None) => synced = Some((seq, parse_synced(&answer))),
                _ => {
                    self.shared.fail(format!(
                        "connection {}: {answer} during a pipeline",
                        self.socket.conn
                    ));
                    return None;
                }
            }
        }
        let (sync_end, reached) = synced.expect("the loop waits for it");
        self.shared.log(
            sync_start,
            format!(
                "{} on connection {} syncs chat {chat} from {after} among sends -> errors \
                 {errors:?} reached {reached:?} at {sync_end}",
                self.user, self.socket.conn
            ),
        );
        let mut trace = self.shared.trace.lock().unwrap();
        trace.syncs.push(SyncRecord {
            conn: self.socket.conn,
            chats: vec![(chat, after)],
            start: sync_start,
            end: sync_end,
            errors,
            reached,
        });
        for ((sent, start), answer) in pending.into_iter().zip(answered) {
            let (end, outcome) = answer.expect("the loop waits for every answer");
            self.shared.log(
                start,
                format!(
                    "{} on connection {} sends {:?} to chat {chat} to {:?} id {:?} (pipelined) \
                     -> {outcome:?} at {end}",
                    self.user, self.socket.conn, sent.body, sent.to, sent.id
                ),
            );
            trace.sends.push(SendAttempt {
                via: Via::Socket {
                    conn: self.socket.conn,
                },
                sender: self.user.to_string(),
                chat,
                body: sent.body,
                to: sent.to,
                id: sent.id,
                start,
                end,
                outcome,
            });
        }
        Some(())
    }

    fn socket_failed(&self, what: &str) -> Option<()> {
        self.shared.fail(format!(
            "connection {}: writing {what} failed",
            self.socket.conn
        ));
        None
    }

    async fn publish(&mut self, sent: Sent) -> Option<()> {
        let from = sent.published_as.clone().unwrap_or_default();
        let mut body = json!({"body": sent.body, "from": from});
        if let Some(to) = &sent.to {
            body["to"] = json!(to);
        }
        if let Some(id) = &sent.id {
            body["id"] = json!(id);
        }
        let start = self.shared.tick();
        let (status, answer) = self.shared.system.publish(sent.chat, body).await;
        let end = self.shared.tick();
        let outcome = match (status, answer["number"].as_u64()) {
            (201, Some(number)) if answer["chat"] == sent.chat => Ok(number),
            _ => Err(format!("{status} {answer}")),
        };
        self.shared.log(
            start,
            format!(
                "publish as {from} of {:?} to chat {} to {:?} id {:?} -> {outcome:?} at {end}",
                sent.body, sent.chat, sent.to, sent.id
            ),
        );
        self.shared.trace.lock().unwrap().sends.push(SendAttempt {
            via: Via::Publish,
            sender: from,
            chat: sent.chat,
            body: sent.body,
            to: sent.to,
            id: sent.id,
            start,
            end,
            outcome,
        });
        Some(())
    }

    async fn membership(&mut self, user: &str, kind: MembershipKind) -> Option<()> {
        let chat = self.pick_chat()?;
        let lock = self.shared.pair_lock(chat, user);
        let _serialised = lock.lock().await;
        let start = self.shared.tick();
        let (end, outcome) = match kind {
            MembershipKind::Leave => {
                if !self
                    .socket
                    .send(&json!({"type": "leave", "chat": chat}))
                    .await
                {
                    self.shared
                        .fail(format!("connection {}: the leave failed", self.socket.conn));
                    return None;
                }
                let (end, answer) = self.socket.answer(&self.shared, "a leave").await?;
                let outcome = match answer["type"].as_str() {
                    Some("left") if answer["chat"] == chat => "left".to_string(),
                    Some("error") if answer["chat"] == chat => {
                        answer["code"].as_str().unwrap_or("no code").to_string()
                    }
                    _ => format!("{answer}"),
                };
                (end, outcome)
            }
            MembershipKind::Subscribe | MembershipKind::Unsubscribe => {
                let system = &self.shared.system;
                let url = format!("{}/v1/chats/{chat}/subscribers/{user}", system.api.base);
                let request = match kind {
                    MembershipKind::Subscribe => system.http.put(url),
                    _ => system.http.delete(url),
                };
                let status = match request.bearer_auth(&system.app_token).send().await {
                    Ok(response) => response.status().as_u16().to_string(),
                    Err(error) => error.to_string(),
                };
                (self.shared.tick(), status)
            }
        };
        self.shared.log(
            start,
            format!("{kind:?} {user} in chat {chat} -> {outcome} at {end}"),
        );
        self.shared
            .trace
            .lock()
            .unwrap()
            .memberships
            .push(MembershipOp {
                chat,
                user: user.to_string(),
                kind,
                start,
                end,
                outcome,
            });
        Some(())
    }

    async fn sync(&mut self, chats: &[u64], from_zero: bool, last: bool) -> Option<()> {
        self.update_seen();
        let chats: Vec<(u64, u64)> = chats
            .iter()
            .map(|&chat| {
                let after = if from_zero {
                    0
                } else {
                    self.seen.get(&chat).copied().unwrap_or(0)
                };
                (chat, after)
            })
            .collect();
        let frame: serde_json::Map<String, Value> = chats
            .iter()
            .map(|(chat, after)| (chat.to_string(), json!(after)))
            .collect();
        let start = self.shared.tick();
        if last {
            self.shared.trace.lock().unwrap().conns[self.socket.conn].final_sync_start =
                Some(start);
        }
        if !self
            .socket
            .send(&json!({"type": "sync", "chats": frame}))
            .await
        {
            self.shared
                .fail(format!("connection {}: the sync failed", self.socket.conn));
            return None;
        }
        let mut errors = Vec::new();
        let (end, reached) = loop {
            let (seq, answer) = self.socket.answer(&self.shared, "a sync").await?;
            match answer["type"].as_str() {
                Some("error") => {
                    let code = answer["code"].as_str().unwrap_or("no code").to_string();
                    let chat = answer["chat"].as_u64();
                    errors.push((chat, code));
                    if chat.is_none() {
                        break (seq, None);
                    }
                }
                Some("synced") => break (seq, parse_synced(&answer)),
                _ => {
                    self.shared.fail(format!(
                        "connection {}: {answer} during a sync",
                        self.socket.conn
                    ));
                    break (seq, None);
                }
            }
        };
        self.shared.log(
            start,
            format!(
                "{} on connection {} syncs {chats:?}{} -> errors {errors:?} reached {reached:?} at {end}",
                self.user,
                self.socket.conn,
                if last { " (final)" } else { "" }
            ),
        );
        self.shared.trace.lock().unwrap().syncs.push(SyncRecord {
            conn: self.socket.conn,
            chats,
            start,
            end,
            errors,
            reached,
        });
        Some(())
    }

    async fn reconnect(&mut self) -> Option<()> {
        self.update_seen();
        // Sometimes a send is still on its way: a later resend of it (same
        // id, a new connection) must answer its number if it was stored.
        let unanswered = if self.rng.percent(30) {
            let sent = self.new_message(None);
            let start = self.shared.tick();
            let _ = self.socket.send(&send_frame(&sent)).await;
            Some((sent, start))
        } else {
            None
        };
        let fresh = Socket::open(&self.shared, self.user).await;
        let old = std::mem::replace(&mut self.socket, fresh);
        let old_conn = old.conn;
        old.close(&self.shared).await;
        if let Some((sent, start)) = unanswered {
            let end = self.shared.tick();
            self.shared.log(
                start,
                format!(
                    "{} on connection {old_conn} sends {:?} to chat {} to {:?} id {:?} and drops the connection",
                    self.user, sent.body, sent.chat, sent.to, sent.id
                ),
            );
            self.shared.trace.lock().unwrap().sends.push(SendAttempt {
                via: Via::Socket { conn: old_conn },
                sender: self.user.to_string(),
                chat: sent.chat,
                body: sent.body,
                to: sent.to,
                id: sent.id,
                start,
                end,
                outcome: Err(model_oracle::UNANSWERED.to_string()),
            });
        }
        let seq = self.shared.tick();
        self.shared.log(
            seq,
            format!(
                "{} dropped connection {old_conn} for {}",
                self.user, self.socket.conn
            ),
        );
        let chats = self.shared.chats();
        self.sync(&chats, false, false).await
    }

    async fn read_history_as_app(&mut self) -> Option<()> {
        let chat = self.pick_chat()?;
        let limit = self.rng.pick(&[1, 3, 10, 1000]);
        let mut after = if self.rng.percent(70) {
            0
        } else {
            self.seen.get(&chat).copied().unwrap_or(0) / 2
        };
        for _ in 0..HISTORY_PAGES_MAX {
            let page = read_page(&self.shared, chat, None, after, limit).await;
            let more = page.status == 200 && page.has_more;
            let last = page.messages.last().map(|m| m.number);
            self.shared.trace.lock().unwrap().histories.push(page);
            match (more, last) {
                (true, Some(last)) => after = last,
                _ => break,
            }
        }
        Some(())
    }

    async fn read_history_as_user(&mut self) -> Option<()> {
        let chat = self.pick_chat()?;
        let page = read_page(&self.shared, chat, Some(self.user), 0, 1000).await;
        self.shared.trace.lock().unwrap().histories.push(page);
        Some(())
    }

    async fn create_chat(&mut self) -> Option<()> {
        if self.shared.chats().len() >= CHATS_MAX {
            return Some(());
        }
        create_chat(&self.shared).await;
        Some(())
    }
}

async fn create_chat(shared: &Shared) -> u64 {
    let start = shared.tick();
    let chat = shared.system.create_chat().await;
    shared.log(start, format!("chat {chat} created"));
    shared.trace.lock().unwrap().chats.push(chat);
    shared.chats.lock().unwrap().push(chat);
    chat
}

fn send_frame(sent: &Sent) -> Value {
    let mut frame = json!({"type": "send", "chat": sent.chat, "body": sent.body});
    if let Some(to) = &sent.to {
        frame["to"] = json!(to);
    }
    if let Some(id) = &sent.id {
        frame["id"] = json!(id);
    }
    frame
}

/// A `synced` frame's chats and the numbers they reached.
fn parse_synced(answer: &Value) -> Option<BTreeMap<u64, u64>> {
    answer["chats"].as_object().map(|chats| {
        chats
            .iter()
            .filter_map(|(chat, n)| Some((chat.parse().ok()?, n.as_u64()?)))
            .collect()
    })
}

fn stored_message(value: &Value) -> Option<StoredMessage> {
    let strings = |field: &str| -> Option<Vec<String>> {
        value[field].as_array().map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
    };
    Some(StoredMessage {
        number: value["number"].as_u64()?,
        from: value["from"].as_str()?.to_string(),
        body: value["body"].as_str()?.to_string(),
        to: strings("to"),
        id: value["id"].as_str().map(str::to_string),
    })
}

/// One page of a chat's REST history, with the app token or a user's.
async fn read_page(
    shared: &Shared,
    chat: u64,
    reader: Option<&str>,
    after: u64,
    limit: u64,
) -> HistoryRead {
    let token = match reader {
        Some(user) => shared.user_token(user).await,
        None => shared.system.app_token.clone(),
    };
    let start = shared.tick();
    let response = shared
        .system
        .http
        .get(format!(
            "{}/v1/chats/{chat}/messages?after={after}&limit={limit}",
            shared.system.api.base
        ))
        .bearer_auth(token)
        .send()
        .await;
    let (status, body) = match response {
        Ok(response) => (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap_or(Value::Null),
        ),
        Err(_) => (0, Value::Null),
    };
    let end = shared.tick();
    let messages: Vec<StoredMessage> = body["messages"]
        .as_array()
        .map(|items| items.iter().filter_map(stored_message).collect())
        .unwrap_or_default();
    let read = HistoryRead {
        chat,
        reader: reader.map(str::to_string),
        after,
        limit,
        start,
        end,
        status,
        code: body["error"]["code"].as_str().map(str::to_string),
        messages,
        has_more: body["has_more"].as_bool().unwrap_or(false),
    };
    shared.log(
        start,
        format!(
            "history of chat {chat} after {after} limit {limit} as {} -> {status} {:?} has_more {} at {end}",
            reader.unwrap_or("the app"),
            read.messages.iter().map(|m| m.number).collect::<Vec<_>>(),
            read.has_more
        ),
    );
    read
}

/// A chat's whole history with the app token, page by page.
async fn whole_history(shared: &Shared, chat: u64) -> Vec<StoredMessage> {
    let mut all = Vec::new();
    let mut after = 0;
    for _ in 0..HISTORY_PAGES_MAX {
        let page = read_page(shared, chat, None, after, 1000).await;
        assert_eq!(page.status, 200, "reading the history of chat {chat}");
        let more = page.has_more;
        all.extend(page.messages);
        match all.last() {
            Some(last) if more => after = last.number,
            _ => break,
        }
    }
    all
}

async fn wait_until_quiet(shared: &Shared) {
    let frames = || -> usize {
        let trace = shared.trace.lock().unwrap();
        trace.conns.iter().map(|conn| conn.frames.len()).sum()
    };
    let deadline = Instant::now() + QUIET_WAIT_MAX;
    let mut seen = frames();
    while Instant::now() < deadline {
        tokio::time::sleep(QUIET).await;
        let now = frames();
        if now == seen {
            return;
        }
        seen = now;
    }
}

async fn run(seed: u64, ops: usize) {
    let started = Instant::now();
    let system = System::start_with(Options {
        auth: true,
        ..Options::default()
    })
    .await;
    let shared = Arc::new(Shared {
        system,
        clock: AtomicU64::new(0),
        trace: Mutex::new(Trace::default()),
        log: Mutex::new(Vec::new()),
        chats: Mutex::new(Vec::new()),
        pair_locks: Mutex::new(HashMap::new()),
        user_tokens: tokio::sync::Mutex::new(HashMap::new()),
    });

    let mut clients = Vec::new();
    for (index, &user) in CLIENT_USERS.iter().enumerate() {
        let socket = Socket::open(&shared, user).await;
        clients.push(Client {
            index,
            user,
            rng: Rng(seed ^ (index as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            shared: Arc::clone(&shared),
            socket,
            seen: HashMap::new(),
            sent: Vec::new(),
            ops: 0,
        });
    }
    // A start that has something to race on: chats with a few members.
    for _ in 0..CHATS_AT_START {
        create_chat(&shared).await;
    }
    for user in USERS {
        if clients[0].rng.percent(70) {
            clients[0].membership(user, MembershipKind::Subscribe).await;
        }
    }

    let per_client = ops / clients.len();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let chats = client.shared.chats();
                client.sync(&chats, true, false).await?;
                for _ in 0..per_client {
                    client.step().await?;
                }
                Some(client)
            })
        })
        .collect();
    let mut alive = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Some(client)) => alive.push(client),
            Ok(None) => {}
            Err(error) => shared.fail(format!("a client panicked: {error}")),
        }
    }

    // Every request has been answered; the live checks wait for the
    // deliveries still on their way. Then each surviving connection syncs
    // every chat from 0, and then holds everything its user may see, once.
    wait_until_quiet(&shared).await;
    let chats = shared.chats();
    for client in &mut alive {
        client.sync(&chats, true, true).await;
    }
    // A late duplicate would come now.
    wait_until_quiet(&shared).await;
    for &chat in &chats {
        let history = whole_history(&shared, chat).await;
        shared
            .trace
            .lock()
            .unwrap()
            .final_history
            .insert(chat, history);
    }
    for client in alive {
        client.socket.close(&shared).await;
    }

    let trace = shared.trace.lock().unwrap();
    let failures = model_oracle::check(&trace);
    let messages: usize = trace.final_history.values().map(Vec::len).sum();
    let frames: usize = trace.conns.iter().map(|c| c.frames.len()).sum();
    eprintln!(
        "model seed {seed}: {ops} operations, {} chats, {messages} messages, {} sends, {} \
         syncs, {frames} frames on {} connections, {} history pages, {:.1} s",
        trace.chats.len(),
        trace.sends.len(),
        trace.syncs.len(),
        trace.conns.len(),
        trace.histories.len(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        let mut log = shared.log.lock().unwrap().clone();
        for (conn, record) in trace.conns.iter().enumerate() {
            for frame in &record.frames {
                let line = format!(
                    "  connection {conn} of {} got chat {} number {} from {} {:?}",
                    record.user, frame.chat, frame.number, frame.from, frame.body
                );
                log.push((frame.seq, line));
            }
        }
        log.sort_by_key(|(seq, _)| *seq);
        for (seq, line) in &log {
            eprintln!("{seq:>6} {line}");
        }
        for failure in &failures {
            eprintln!("VIOLATION {failure}");
        }
        panic!(
            "model seed {seed}: {} violations (replay: CHAT_MODEL_SEED={seed} cargo test -p chat --test model)",
            failures.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_agree_with_the_model() {
    let seed = env_or("CHAT_MODEL_SEED", SEED_DEFAULT);
    let ops = env_or("CHAT_MODEL_OPS", OPS_DEFAULT);
    eprintln!("model seed {seed} ({ops} operations)");
    run(seed, ops).await;
}
