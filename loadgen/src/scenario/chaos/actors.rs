//! The traffic of a chaos run, each piece a task that outlives any service:
//! WebSocket publishers, HTTP publishers, syncing readers and a
//! subscription churner per chat. Every one of them retries through
//! outages (connection refused, closed sockets, 5xx, 429): a publisher
//! resends each unanswered message with its idempotency id until it is
//! answered, so after any kill every message ends acknowledged (once) or
//! refused for a reason the summary shows.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use super::ledger::{Delivered, Ledger, bump, digest};

/// First wait before a retry; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1_000);
/// Wait before resending a send the engine answered with a passing error
/// (`overloaded`, `going_away`, ...).
const RESEND_AFTER: Duration = Duration::from_millis(200);
/// Longest HTTP request (a publish waits for the commit, which waits for a
/// killed API to come back): past it the request is sent again, same id.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest WebSocket connect plus handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Codes of a WebSocket `error` frame that mean "try again": the engine is
/// busy, going down, or cannot reach a service that is being restarted.
const RETRYABLE_CODES: &[&str] = &[
    "overloaded",
    "going_away",
    "unavailable",
    "revocations_stale",
    "rate_limited",
    "too_many_in_flight",
    "sync_in_progress",
    "internal",
];

/// What every task needs: where the services are, the app token, the ledger.
pub struct Ctx {
    pub ledger: Rc<Ledger>,
    pub http: reqwest::Client,
    pub api: String,
    pub auth: String,
    pub engine: String,
    pub engine_ws: String,
    pub app_token: String,
    pub body_bytes: usize,
    /// Readers stop when this is set (after the final check).
    pub readers_stop: std::cell::Cell<bool>,
    pub stop: tokio::sync::Notify,
}

/// The answer to a request that was sent until it got one that is not a
/// passing failure.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Whether an HTTP status means "a service is down or busy: try again".
fn retryable_status(status: u16) -> bool {
    status >= 500 || status == 429
}

impl Ctx {
    /// Sends the request `make` builds until it gets an answer other than
    /// a transport error, a 5xx or a 429, or `deadline` passes (`None`).
    pub async fn request(
        &self,
        what: &str,
        deadline: Duration,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Option<Answer> {
        let until = Instant::now() + deadline;
        let mut backoff = BACKOFF_MIN;
        loop {
            match make().timeout(HTTP_TIMEOUT).send().await {
                Ok(response) if !retryable_status(response.status().as_u16()) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    return Some(Answer { status, body });
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let code = error_code(&response.text().await.unwrap_or_default());
                    self.ledger.retryable(&format!("{what}: {status} {code}"));
                }
                Err(error) => {
                    let kind = if error.is_timeout() {
                        "timeout"
                    } else if error.is_connect() {
                        "connect"
                    } else {
                        "transport"
                    };
                    self.ledger.retryable(&format!("{what}: {kind}"));
                }
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// A user token from the auth service, retried through its outages.
    pub async fn mint(&self, user: &str, deadline: Duration) -> Option<String> {
        let answer = self
            .request("mint", deadline, || {
                self.http
                    .post(format!("{}/v1/tokens", self.auth))
                    .bearer_auth(&self.app_token)
                    .json(&json!({ "user": user, "ttl_s": 86_400 }))
            })
            .await?;
        if answer.status != 201 {
            self.ledger.violation(format!(
                "minting a token for {user}: {} {}",
                answer.status, answer.body
            ));
            return None;
        }
        bump(&self.ledger.counters.tokens_minted);
        answer.body["token"].as_str().map(str::to_string)
    }

    /// The body of message `id`: the id, then padding to `body_bytes`.
    fn body(&self, id: &str) -> String {
        let mut body = format!("{id} ");
        while body.len() < self.body_bytes {
            body.push('x');
        }
        body
    }
}

fn error_code(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One WebSocket connection attempt; the error is "refused", "401 ..." etc.
async fn connect(ctx: &Ctx, token: &str) -> Result<Ws, String> {
    let url = format!("{}?token={token}", ctx.engine_ws);
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Err(_) => Err("timeout".into()),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let code = response
                .body()
                .as_ref()
                .map(|b| error_code(&String::from_utf8_lossy(b)))
                .unwrap_or_default();
            Err(format!("{status} {code}"))
        }
        Ok(Err(_)) => Err("transport".into()),
    }
}

/// Connects, retrying passing failures with backoff; mints a fresh token
/// when the engine refuses the current one (a violation: tokens live a day,
/// and the auth service's keys must survive its restarts). `None` when
/// told to stop.
async fn connect_retrying(
    ctx: &Ctx,
    user: &str,
    token: &mut String,
    stop: impl Fn() -> bool,
) -> Option<Ws> {
    let mut backoff = BACKOFF_MIN;
    loop {
        if stop() {
            return None;
        }
        match connect(ctx, token).await {
            Ok(ws) => return Some(ws),
            Err(kind) if kind.starts_with("401") => {
                ctx.ledger
                    .violation(format!("{user}: the engine refused its token: {kind}"));
                if let Some(fresh) = ctx.mint(user, Duration::from_secs(60)).await {
                    *token = fresh;
                }
            }
            Err(kind) => ctx.ledger.retryable(&format!("ws connect: {kind}")),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The sequence number at the end of an id "<user>-<seq>".
fn seq_of(id: &str) -> Option<u64> {
    id.rsplit('-').next()?.parse().ok()
}

/// A member that sends over WebSocket at `pace`, at most `window` messages
/// unanswered; resends them all (same ids) on every new connection.
pub async fn ws_publisher(ctx: Rc<Ctx>, chat: u64, user: String, pace: Duration, window: usize) {
    let ledger = ctx.ledger.clone();
    let Some(mut token) = ctx.mint(&user, Duration::from_secs(120)).await else {
        ledger.violation(format!("{user}: no token"));
        return;
    };
    // seq → the send frame, for every message not answered yet.
    let mut unanswered: BTreeMap<u64, String> = BTreeMap::new();
    let mut seq = 0u64;
    let mut connections = 0u64;
    let done = |unanswered: &BTreeMap<u64, String>| ledger.stopping.get() && unanswered.is_empty();
    loop {
        let Some(ws) = connect_retrying(&ctx, &user, &mut token, || done(&unanswered)).await else {
            return;
        };
        connections += 1;
        if connections > 1 {
            bump(&ledger.counters.ws_reconnects);
        }
        let (mut sink, mut stream) = ws.split();
        let mut alive = true;
        for frame in unanswered.values() {
            bump(&ledger.counters.ws_resends);
            if sink.feed(Message::text(frame.clone())).await.is_err() {
                alive = false;
                break;
            }
        }
        if alive && sink.flush().await.is_err() {
            alive = false;
        }
        let mut tick = tokio::time::interval(pace);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Sends to resend after a passing error, and when.
        let mut resend: Vec<u64> = Vec::new();
        let mut resend_at = Instant::now();
        while alive {
            if done(&unanswered) {
                let _ = sink.close().await;
                return;
            }
            let may_send =
                !ledger.paused.get() && !ledger.stopping.get() && unanswered.len() < window;
            tokio::select! {
                frame = stream.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => continue,
                    };
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                        ledger.violation(format!("{user}: unreadable frame {text:.200}"));
                        continue;
                    };
                    let id = frame["id"].as_str().unwrap_or("");
                    match frame["type"].as_str() {
                        Some("ack") => {
                            let number = frame["number"].as_u64().unwrap_or(0);
                            let frame_chat = frame["chat"].as_u64().unwrap_or(0);
                            ledger.record_ack(id, frame_chat, number);
                            if let Some(seq) = seq_of(id) {
                                unanswered.remove(&seq);
                            }
                        }
                        Some("error") if !id.is_empty() => {
                            let code = frame["code"].as_str().unwrap_or("");
                            let Some(seq) = seq_of(id) else { continue };
                            if RETRYABLE_CODES.contains(&code) {
                                ledger.retryable(&format!("ws send: {code}"));
                                if !resend.contains(&seq) {
                                    resend.push(seq);
                                }
                                resend_at = Instant::now() + RESEND_AFTER;
                            } else {
                                ledger.violation(format!("{user}: {id} refused: {frame}"));
                                ledger.record_refused(id);
                                unanswered.remove(&seq);
                            }
                        }
                        Some("error") => {
                            ledger.violation(format!("{user}: error frame {frame}"));
                        }
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(resend_at), if !resend.is_empty() => {
                    for seq in std::mem::take(&mut resend) {
                        if let Some(frame) = unanswered.get(&seq) {
                            bump(&ledger.counters.ws_resends);
                            if sink.send(Message::text(frame.clone())).await.is_err() {
                                alive = false;
                                break;
                            }
                        }
                    }
                }
                _ = tick.tick(), if may_send => {
                    seq += 1;
                    let id = format!("{user}-{seq}");
                    let body = ctx.body(&id);
                    ledger.record_send(&id, chat, &user, &body);
                    let frame = json!({"type": "send", "chat": chat, "body": body, "id": id})
                        .to_string();
                    unanswered.insert(seq, frame.clone());
                    bump(&ledger.counters.ws_sent);
                    if sink.send(Message::text(frame)).await.is_err() {
                        alive = false;
                    }
                }
                _ = ledger.changed.notified() => {}
            }
        }
        tokio::time::sleep(BACKOFF_MIN).await;
    }
}

/// An app server that publishes as `user` over HTTP at `pace`, one request
/// at a time, each retried with its id until it gets an answer.
pub async fn http_publisher(ctx: Rc<Ctx>, chat: u64, user: String, pace: Duration) {
    let ledger = ctx.ledger.clone();
    let url = format!("{}/v1/chats/{chat}/messages", ctx.engine);
    let mut tick = tokio::time::interval(pace);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        if ledger.stopping.get() {
            return;
        }
        if ledger.paused.get() {
            continue;
        }
        seq += 1;
        let id = format!("{user}-{seq}");
        let body = ctx.body(&id);
        ledger.record_send(&id, chat, &user, &body);
        let attempts = std::cell::Cell::new(0u64);
        let answer = ctx
            .request("http publish", Duration::from_secs(120), || {
                bump(&attempts);
                ctx.http
                    .post(&url)
                    .bearer_auth(&ctx.app_token)
                    .json(&json!({ "body": body, "from": user, "id": id }))
            })
            .await;
        let counters = &ledger.counters;
        counters
            .http_publishes
            .set(counters.http_publishes.get() + 1);
        let retries = attempts.get().saturating_sub(1);
        counters
            .http_retries
            .set(counters.http_retries.get() + retries);
        match answer {
            Some(Answer { status: 201, body }) => {
                let number = body["number"].as_u64().unwrap_or(0);
                let answered_chat = body["chat"].as_u64().unwrap_or(0);
                ledger.record_ack(&id, answered_chat, number);
            }
            Some(Answer { status, body }) => {
                ledger.violation(format!("{user}: publish {id} refused: {status} {body}"));
                ledger.record_refused(&id);
            }
            None => {
                ledger.violation(format!("{user}: publish {id} had no answer for 120 s"));
                ledger.record_refused(&id);
            }
        }
    }
}

/// A member that reads over WebSocket: syncs from the last number it has
/// on every connection, checks that numbers come one by one (no gap, no
/// duplicate across reconnects), keeps a digest of each delivery for the
/// comparison with history, and drops its connection on purpose every
/// `reconnect_every` so syncs race live traffic (and kills).
pub async fn reader(
    ctx: Rc<Ctx>,
    index: usize,
    chat: u64,
    user: String,
    reconnect_every: Duration,
) {
    let ledger = ctx.ledger.clone();
    let Some(mut token) = ctx.mint(&user, Duration::from_secs(120)).await else {
        ledger.violation(format!("{user}: no token"));
        return;
    };
    let mut connections = 0u64;
    loop {
        let Some(ws) = connect_retrying(&ctx, &user, &mut token, || ctx.readers_stop.get()).await
        else {
            return;
        };
        connections += 1;
        if connections > 1 {
            bump(&ledger.counters.reader_reconnects);
        }
        let (mut sink, mut stream) = ws.split();
        let sync = |last: u64| {
            Message::text(json!({"type": "sync", "chats": { chat.to_string(): last }}).to_string())
        };
        let last = ledger.readers.borrow()[index].1.last;
        if sink.send(sync(last)).await.is_err() {
            continue;
        }
        let until = Instant::now() + reconnect_every;
        let mut sync_again_at: Option<Instant> = None;
        // The connection's last frames, quoted when a check fails.
        let mut recent: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let mut order = Order::default();
        note(
            &mut recent,
            format!("conn {connections}: sync after {last}"),
        );
        loop {
            if ctx.readers_stop.get() {
                let _ = sink.close().await;
                return;
            }
            tokio::select! {
                frame = stream.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => continue,
                    };
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                        ledger.violation(format!("{user}: unreadable frame {text:.200}"));
                        continue;
                    };
                    note(&mut recent, summary(&frame));
                    match frame["type"].as_str() {
                        Some("message") => {
                            on_message(&ledger, index, &user, &frame, &mut order, &recent);
                        }
                        Some("synced") => {
                            order.synced = true;
                            if let Some(first) = order.early.keys().next() {
                                let last = ledger.readers.borrow()[index].1.last;
                                ledger.violation(format!(
                                    "{user}: chat {chat} synced with a gap: #{first} came, #{} never did",
                                    last + 1
                                ));
                            }
                        }
                        Some("error") => {
                            let code = frame["code"].as_str().unwrap_or("");
                            if RETRYABLE_CODES.contains(&code) {
                                ledger.retryable(&format!("sync: {code}"));
                                sync_again_at = Some(Instant::now() + RESEND_AFTER);
                            } else {
                                ledger.violation(format!("{user}: sync refused: {frame}"));
                            }
                        }
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(sync_again_at.unwrap_or(until)), if sync_again_at.is_some() => {
                    sync_again_at = None;
                    let last = ledger.readers.borrow()[index].1.last;
                    note(&mut recent, format!("sync again after {last}"));
                    if sink.send(sync(last)).await.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(until) => {
                    // On purpose: the next connection syncs from `last`.
                    let _ = sink.close().await;
                    break;
                }
                _ = ctx.stop.notified() => {}
            }
        }
        // Every third connection with a token minted now: tokens of a
        // restarted auth service must verify like the ones of before.
        if connections.is_multiple_of(3)
            && let Some(fresh) = ctx.mint(&user, Duration::from_secs(5)).await
        {
            token = fresh;
        }
    }
}

/// Frames a reader remembers for a violation's description.
const RECENT_FRAMES_MAX: usize = 12;

fn note(recent: &mut std::collections::VecDeque<String>, what: String) {
    if recent.len() == RECENT_FRAMES_MAX {
        recent.pop_front();
    }
    recent.push_back(what);
}

fn summary(frame: &Value) -> String {
    match frame["type"].as_str() {
        Some("message") => format!("message #{}", frame["number"]),
        Some("synced") => format!("synced {}", frame["chats"]),
        Some("error") => format!("error {} {}", frame["code"], frame["message"]),
        _ => frame.to_string(),
    }
}

/// One connection's view of the order rule: until its `synced`, live
/// messages that reached it before the sync was under way may come ahead
/// of older ones the sync sends (kept in `early` until the gap fills);
/// from `synced` on numbers come one by one.
#[derive(Default)]
struct Order {
    synced: bool,
    early: BTreeMap<u64, u64>,
}

fn on_message(
    ledger: &Ledger,
    index: usize,
    user: &str,
    frame: &Value,
    order: &mut Order,
    recent: &std::collections::VecDeque<String>,
) {
    let describe = || {
        let recent: Vec<&str> = recent.iter().map(String::as_str).collect();
        recent.join(", ")
    };
    let number = frame["number"].as_u64().unwrap_or(0);
    let from = frame["from"].as_str().unwrap_or("");
    let body = frame["body"].as_str().unwrap_or("");
    let mut readers = ledger.readers.borrow_mut();
    let (chat, delivered): &mut (u64, Delivered) = &mut readers[index];
    let chat = *chat;
    bump(&ledger.counters.deliveries);
    if frame["chat"].as_u64() != Some(chat) {
        drop(readers);
        ledger.violation(format!("{user}: a message of another chat: {frame}"));
        return;
    }
    if number <= delivered.last || order.early.contains_key(&number) {
        let last = delivered.last;
        drop(readers);
        ledger.violation(format!(
            "{user}: chat {chat} #{number} delivered again (had up to #{last}); last frames: {}",
            describe()
        ));
        return;
    }
    if number > delivered.last + 1 {
        if !order.synced {
            order.early.insert(number, digest(from, body));
            return;
        }
        let last = delivered.last;
        // Keep index n-1 for number n; the missing ones never match history.
        delivered.digests.resize(number as usize - 1, 0);
        delivered.last = number - 1;
        drop(readers);
        ledger.violation(format!(
            "{user}: chat {chat} gap after synced: #{number} after #{last}; last frames: {}",
            describe()
        ));
        readers = ledger.readers.borrow_mut();
    }
    let delivered = &mut readers[index].1;
    delivered.last = number;
    delivered.digests.push(digest(from, body));
    while let Some(next) = order.early.remove(&(delivered.last + 1)) {
        delivered.last += 1;
        delivered.digests.push(next);
    }
}

/// Subscribes and unsubscribes `user` in `chat` over REST, one request at
/// a time, each retried until answered; the ledger's expected subscribers
/// follow each definitive answer. Starts nothing new while paused.
pub async fn churner(ctx: Rc<Ctx>, chat: u64, user: String, pace: Duration) {
    let ledger = ctx.ledger.clone();
    let url = format!("{}/v1/chats/{chat}/subscribers/{user}", ctx.api);
    let mut subscribe = true;
    let mut tick = tokio::time::interval(pace);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if ledger.stopping.get() {
            return;
        }
        if ledger.paused.get() {
            continue;
        }
        ledger.outstanding.set(ledger.outstanding.get() + 1);
        let answer = ctx
            .request("subscription", Duration::from_secs(120), || {
                let request = if subscribe {
                    ctx.http.put(&url)
                } else {
                    ctx.http.delete(&url)
                };
                request.bearer_auth(&ctx.app_token)
            })
            .await;
        // 200/201 for a subscription (new or existing), 204 for a removal,
        // 404 for a removal whose first attempt had already removed it.
        let ok = match (&answer, subscribe) {
            (Some(a), true) => a.status == 200 || a.status == 201,
            (Some(a), false) => a.status == 204 || a.status == 404,
            (None, _) => false,
        };
        if ok {
            let mut subscribers = ledger.subscribers.borrow_mut();
            let set = subscribers.entry(chat).or_default();
            if subscribe {
                set.insert(user.clone());
            } else {
                set.remove(&user);
            }
            subscribe = !subscribe;
        } else {
            let what = answer
                .map(|a| format!("{} {}", a.status, a.body))
                .unwrap_or_else(|| "no answer for 120 s".into());
            ledger.violation(format!(
                "{} {user} in chat {chat}: {what}",
                if subscribe {
                    "subscribing"
                } else {
                    "unsubscribing"
                }
            ));
        }
        ledger.outstanding.set(ledger.outstanding.get() - 1);
        ledger.changed.notify_waiters();
    }
}
