//! The reference model of the model-based test (`model.rs`): what a run
//! recorded, and the judgement of it against the documented semantics.
//!
//! Time is a global sequence of ticks taken by the driver: a tick before a
//! request leaves and after its answer arrives, one for every frame
//! received. The real effect of a request (a commit, a membership change)
//! lies somewhere between its two ticks, and nothing more is known; so the
//! model does not decide *the* membership at a commit, only which states
//! were possible in that window, and accepts exactly the outcomes one of
//! them allows. Changes of one (chat, user) pair are serialised by the
//! driver, so their windows never overlap and each has a definite state
//! before and after it.
//!
//! The rules, from docs/PROTOCOL.md and docs/API.md:
//! - Membership is the store's, judged when a message commits and when a
//!   sync or a history read asks.
//! - Live: a message goes to its sender's connections, and to the
//!   subscribers at its commit (those of them named in `to`, when given).
//! - Reading (sync, history with a user token): a member now sees what it
//!   sent, what went to everyone, and what was addressed to it.
//! - A connection is never sent one message twice; a sync sends everything
//!   the user may see up to the number it reports.
//! - Numbers per chat are gapless; an ack carries the stored number; a
//!   resend with the same id answers the original number; a non-member's
//!   send is refused with `not_subscribed` and stores nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A tick of the driver's global clock.
pub type Seq = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipKind {
    /// `PUT /v1/chats/{n}/subscribers/{user}`.
    Subscribe,
    /// `DELETE /v1/chats/{n}/subscribers/{user}`.
    Unsubscribe,
    /// The user's own `leave` frame.
    Leave,
}

#[derive(Debug, Clone)]
pub struct MembershipOp {
    pub chat: u64,
    pub user: String,
    pub kind: MembershipKind,
    pub start: Seq,
    pub end: Seq,
    /// The HTTP status (`201`, `200`, `204`, `404`) or the frame's answer
    /// (`left`, or an error code).
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A `send` frame on this connection.
    Socket { conn: usize },
    /// HTTP publish with the app token.
    Publish,
}

/// One attempt to send a message; resends are attempts of the same body.
#[derive(Debug, Clone)]
pub struct SendAttempt {
    pub via: Via,
    pub sender: String,
    pub chat: u64,
    pub body: String,
    pub to: Option<Vec<String>>,
    pub id: Option<String>,
    pub start: Seq,
    pub end: Seq,
    /// The acked number, or the error code (HTTP publish: `status code`;
    /// [`UNANSWERED`]: the connection was dropped before an answer).
    pub outcome: Result<u64, String>,
}

/// The outcome of a send whose connection the client dropped before the
/// answer: it may or may not have been stored.
pub const UNANSWERED: &str = "unanswered";

#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: Seq,
    pub chat: u64,
    pub number: u64,
    pub from: String,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct ConnRecord {
    pub user: String,
    /// After the upgrade answered: the engine registers the connection
    /// before it answers 101.
    pub opened: Seq,
    /// When the driver dropped it; `None` while it lived to the end.
    pub closed: Option<Seq>,
    /// Message frames, in arrival order.
    pub frames: Vec<Frame>,
    /// A close or error the engine caused (a close reason, a read error).
    pub lost: Option<String>,
    /// When the final sync from 0 was asked for.
    pub final_sync_start: Option<Seq>,
}

#[derive(Debug, Clone)]
pub struct SyncRecord {
    pub conn: usize,
    pub chats: Vec<(u64, u64)>,
    pub start: Seq,
    pub end: Seq,
    /// `(chat, code)` of each error frame before `synced`.
    pub errors: Vec<(Option<u64>, String)>,
    /// The `synced` frame's chats; `None` when none came.
    pub reached: Option<BTreeMap<u64, u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub number: u64,
    pub from: String,
    pub body: String,
    pub to: Option<Vec<String>>,
    pub id: Option<String>,
}

/// One page of REST history.
#[derive(Debug, Clone)]
pub struct HistoryRead {
    pub chat: u64,
    /// `None`: the app token; else the user whose token read.
    pub reader: Option<String>,
    pub after: u64,
    pub limit: u64,
    pub start: Seq,
    pub end: Seq,
    pub status: u16,
    pub code: Option<String>,
    pub messages: Vec<StoredMessage>,
    pub has_more: bool,
}

#[derive(Debug, Default)]
pub struct Trace {
    pub memberships: Vec<MembershipOp>,
    pub sends: Vec<SendAttempt>,
    pub conns: Vec<ConnRecord>,
    pub syncs: Vec<SyncRecord>,
    pub histories: Vec<HistoryRead>,
    /// Every chat created, with the tick its creation was answered.
    pub chats: Vec<u64>,
    /// Each chat's whole history with the app token, read at the end.
    pub final_history: BTreeMap<u64, Vec<StoredMessage>>,
    /// Failures the driver saw itself (a missing answer, a broken socket).
    pub driver_failures: Vec<String>,
}

/// A (chat, user) pair's membership changes, in order, none overlapping.
#[derive(Debug, Clone, Copy)]
struct Change {
    start: Seq,
    end: Seq,
    before: bool,
    after: bool,
}

#[derive(Default)]
struct Membership {
    changes: HashMap<(u64, String), Vec<Change>>,
}

/// Which membership states were possible at some instant of a window.
#[derive(Debug, Clone, Copy, Default)]
struct Possible {
    member: bool,
    outsider: bool,
}

impl Possible {
    fn add(&mut self, member: bool) {
        if member {
            self.member = true;
        } else {
            self.outsider = true;
        }
    }
}

impl Membership {
    fn possible(&self, chat: u64, user: &str, start: Seq, end: Seq) -> Possible {
        let mut possible = Possible::default();
        let Some(changes) = self.changes.get(&(chat, user.to_string())) else {
            possible.add(false);
            return possible;
        };
        let at_start = changes
            .iter()
            .rev()
            .find(|change| change.end < start)
            .is_some_and(|change| change.after);
        possible.add(at_start);
        for change in changes {
            if change.start <= end && change.end >= start {
                possible.add(change.before);
                possible.add(change.after);
            }
        }
        possible
    }

    /// The state after every change.
    fn last(&self, chat: u64, user: &str) -> bool {
        self.changes
            .get(&(chat, user.to_string()))
            .and_then(|changes| changes.last())
            .is_some_and(|change| change.after)
    }
}

/// What the model knows of one stored message.
struct Known<'a> {
    chat: u64,
    stored: &'a StoredMessage,
    /// The commit lies in this window: from the first attempt's request to
    /// the first sign that it was durable (an ack, a frame, a history page).
    commit_start: Seq,
    commit_end: Seq,
    /// The first sign that the engine knew it durable (an ack or a frame,
    /// both sent only after its owner counted it): a history page can show
    /// a message a moment before that, while the batch's answer travels.
    announced: Seq,
}

fn visible(user: &str, message: &StoredMessage) -> bool {
    message.from == user
        || message
            .to
            .as_ref()
            .is_none_or(|to| to.iter().any(|u| u == user))
}

fn normalized(to: &Option<Vec<String>>) -> Option<Vec<String>> {
    to.as_ref().map(|to| {
        let set: BTreeSet<&String> = to.iter().collect();
        set.into_iter().cloned().collect()
    })
}

/// Judges a run; every violation found, as a sentence.
pub fn check(trace: &Trace) -> Vec<String> {
    let mut failures = trace.driver_failures.clone();
    let membership = check_memberships(trace, &mut failures);
    let known = check_history(trace, &mut failures);
    check_sends(trace, &membership, &known, &mut failures);
    check_frames(trace, &membership, &known, &mut failures);
    check_syncs(trace, &membership, &known, &mut failures);
    check_history_reads(trace, &membership, &known, &mut failures);
    failures
}

fn check_memberships(trace: &Trace, failures: &mut Vec<String>) -> Membership {
    let mut membership = Membership::default();
    let mut ops: Vec<&MembershipOp> = trace.memberships.iter().collect();
    ops.sort_by_key(|op| op.start);
    for op in ops {
        let changes = membership
            .changes
            .entry((op.chat, op.user.clone()))
            .or_default();
        let before = changes.last().is_some_and(|change| change.after);
        if let Some(last) = changes.last() {
            assert!(
                last.end < op.start,
                "the driver serialises a pair's changes"
            );
        }
        let (expected, after) = match op.kind {
            MembershipKind::Subscribe => (if before { "200" } else { "201" }, true),
            MembershipKind::Unsubscribe => (if before { "204" } else { "404" }, false),
            MembershipKind::Leave => (if before { "left" } else { "not_subscribed" }, false),
        };
        if op.outcome != expected {
            failures.push(format!(
                "{:?} of {} to chat {} at {}..{} answered {}, but the user was {} (expected {expected})",
                op.kind,
                op.user,
                op.chat,
                op.start,
                op.end,
                op.outcome,
                if before { "a member" } else { "not a member" },
            ));
        }
        changes.push(Change {
            start: op.start,
            end: op.end,
            before,
            after,
        });
    }
    membership
}

/// Checks the final history (gapless, each body once, as it was sent) and
/// returns what is known of each message, by (chat, number).
fn check_history<'a>(
    trace: &'a Trace,
    failures: &mut Vec<String>,
) -> HashMap<(u64, u64), Known<'a>> {
    let mut attempts: HashMap<&str, Vec<&SendAttempt>> = HashMap::new();
    for attempt in &trace.sends {
        attempts.entry(&attempt.body).or_default().push(attempt);
    }
    let see = |seen: &mut HashMap<(u64, u64), Seq>, key: (u64, u64), seq: Seq| {
        let entry = seen.entry(key).or_insert(seq);
        *entry = (*entry).min(seq);
    };
    let mut first_frame: HashMap<(u64, u64), Seq> = HashMap::new();
    for conn in &trace.conns {
        for frame in &conn.frames {
            see(&mut first_frame, (frame.chat, frame.number), frame.seq);
        }
    }
    let mut first_read: HashMap<(u64, u64), Seq> = HashMap::new();
    for read in &trace.histories {
        for message in &read.messages {
            see(&mut first_read, (read.chat, message.number), read.end);
        }
    }
    let mut known = HashMap::new();
    for (&chat, messages) in &trace.final_history {
        let mut bodies = HashSet::new();
        for (index, message) in messages.iter().enumerate() {
            if message.number != index as u64 + 1 {
                failures.push(format!(
                    "chat {chat}: history has number {} at position {} (a gap or a duplicate)",
                    message.number,
                    index + 1
                ));
            }
            if !bodies.insert(&message.body) {
                failures.push(format!(
                    "chat {chat}: body {:?} stored twice (number {})",
                    message.body, message.number
                ));
            }
            let Some(tries) = attempts.get(message.body.as_str()) else {
                failures.push(format!(
                    "chat {chat}: message {} ({:?}) was never sent",
                    message.number, message.body
                ));
                continue;
            };
            let first = tries[0];
            if first.chat != chat || first.sender != message.from {
                failures.push(format!(
                    "chat {chat}: message {} is stored from {} in chat {chat}; it was sent by {} to chat {}",
                    message.number, message.from, first.sender, first.chat
                ));
            }
            if normalized(&message.to) != normalized(&first.to) || message.id != first.id {
                failures.push(format!(
                    "chat {chat}: message {} stored with to {:?} id {:?}; sent with to {:?} id {:?}",
                    message.number, message.to, message.id, first.to, first.id
                ));
            }
            let unanswered =
                |t: &&SendAttempt| t.outcome.as_ref().err().is_some_and(|e| e == UNANSWERED);
            if !tries.iter().any(|t| t.outcome.is_ok() || unanswered(t)) {
                failures.push(format!(
                    "chat {chat}: message {} ({:?}) is stored, but every attempt was refused: {:?}",
                    message.number,
                    message.body,
                    tries.iter().map(|t| &t.outcome).collect::<Vec<_>>()
                ));
            }
            let commit_start = tries.iter().map(|t| t.start).min().unwrap_or(0);
            let acked = tries
                .iter()
                .filter(|t| t.outcome.is_ok())
                .map(|t| t.end)
                .min();
            let key = (chat, message.number);
            let announced = [acked, first_frame.get(&key).copied()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(Seq::MAX);
            let commit_end = first_read
                .get(&key)
                .map_or(announced, |&read| read.min(announced));
            known.insert(
                (chat, message.number),
                Known {
                    chat,
                    stored: message,
                    commit_start,
                    commit_end,
                    announced,
                },
            );
        }
        // A chat's batches commit in number order: a message is durable
        // by the time any later one is seen durable.
        let (mut later_end, mut later_announced) = (Seq::MAX, Seq::MAX);
        for number in (1..=messages.len() as u64).rev() {
            if let Some(message) = known.get_mut(&(chat, number)) {
                message.commit_end = message.commit_end.min(later_end);
                message.announced = message.announced.min(later_announced);
                later_end = message.commit_end;
                later_announced = message.announced;
            }
        }
    }
    known
}

fn check_sends(
    trace: &Trace,
    membership: &Membership,
    known: &HashMap<(u64, u64), Known<'_>>,
    failures: &mut Vec<String>,
) {
    let stored_at: HashMap<&str, (u64, u64)> = known
        .values()
        .map(|k| (k.stored.body.as_str(), (k.chat, k.stored.number)))
        .collect();
    for (index, attempt) in trace.sends.iter().enumerate() {
        let stored = stored_at.get(attempt.body.as_str()).copied();
        // An earlier attempt of the same body (same id) that was acked:
        // this one is a resend and must answer the same number.
        let original = trace.sends.iter().find(|other| {
            other.body == attempt.body && other.outcome.is_ok() && other.end < attempt.start
        });
        // Any earlier attempt (the first copy of a double send too),
        // answered or not: it may have stored the message, and then this
        // one answers its number whoever is a member.
        let resend = trace.sends[..index]
            .iter()
            .any(|other| other.body == attempt.body);
        match &attempt.outcome {
            Ok(number) => {
                if stored != Some((attempt.chat, *number)) {
                    failures.push(format!(
                        "{} acked {:?} in chat {} as number {number}; history has it at {stored:?}",
                        attempt.sender, attempt.body, attempt.chat
                    ));
                }
            }
            Err(code) if code == UNANSWERED => {}
            Err(code) => {
                let possible =
                    membership.possible(attempt.chat, &attempt.sender, attempt.start, attempt.end);
                let allowed = matches!(attempt.via, Via::Socket { .. })
                    && code == "not_subscribed"
                    && possible.outsider
                    && original.is_none();
                if !allowed {
                    failures.push(format!(
                        "{} sending {:?} to chat {} at {}..{} was refused with {code} \
                         (member possible: {}, outsider possible: {}, a resend of an acked message: {})",
                        attempt.sender,
                        attempt.body,
                        attempt.chat,
                        attempt.start,
                        attempt.end,
                        possible.member,
                        possible.outsider,
                        original.is_some()
                    ));
                }
            }
        }
        // On the sending connection the ack comes before the message.
        if let (Via::Socket { conn }, Ok(number), false) = (&attempt.via, &attempt.outcome, resend)
            && let Some(frame) = trace.conns[*conn]
                .frames
                .iter()
                .find(|f| f.chat == attempt.chat && f.number == *number)
            && frame.seq < attempt.end
        {
            failures.push(format!(
                "connection {conn} got chat {} number {number} at {} before its ack at {}",
                attempt.chat, frame.seq, attempt.end
            ));
        }
        if let (Some(original), Ok(number)) = (original, &attempt.outcome)
            && original.outcome != Ok(*number)
        {
            failures.push(format!(
                "a resend of {:?} answered {number}, the original {:?}",
                attempt.body, original.outcome
            ));
        }
        // A message acked while its sender was certainly not a member, and
        // not a resend of one stored before: the store let an outsider in.
        if let Ok(number) = attempt.outcome
            && matches!(attempt.via, Via::Socket { .. })
            && !resend
            && !membership
                .possible(attempt.chat, &attempt.sender, attempt.start, attempt.end)
                .member
        {
            failures.push(format!(
                "{} was not a member of chat {} at {}..{}, yet {:?} was acked as {number}",
                attempt.sender, attempt.chat, attempt.start, attempt.end, attempt.body
            ));
        }
    }
}

/// Whether the user may get the message live: its sender, or possibly a
/// subscriber at its commit and among its `to` users when it has some.
fn live_allowed(membership: &Membership, user: &str, known: &Known<'_>) -> bool {
    let message = known.stored;
    if message.from == user {
        return true;
    }
    visible(user, message)
        && membership
            .possible(known.chat, user, known.commit_start, known.commit_end)
            .member
}

/// Whether the user must get the message live on a connection opened
/// before the commit: its sender, or certainly a subscriber at the commit.
fn live_required(membership: &Membership, user: &str, known: &Known<'_>) -> bool {
    let message = known.stored;
    if message.from == user {
        return true;
    }
    visible(user, message)
        && !membership
            .possible(known.chat, user, known.commit_start, known.commit_end)
            .outsider
}

fn check_frames(
    trace: &Trace,
    membership: &Membership,
    known: &HashMap<(u64, u64), Known<'_>>,
    failures: &mut Vec<String>,
) {
    for (id, conn) in trace.conns.iter().enumerate() {
        let user = conn.user.as_str();
        if let Some(lost) = &conn.lost {
            failures.push(format!("connection {id} of {user} was lost: {lost}"));
        }
        let syncs: Vec<&SyncRecord> = trace.syncs.iter().filter(|s| s.conn == id).collect();
        let mut seen = HashSet::new();
        let mut last_live: HashMap<u64, u64> = HashMap::new();
        for frame in &conn.frames {
            let key = (frame.chat, frame.number);
            if !seen.insert(key) {
                failures.push(format!(
                    "connection {id} of {user} was sent chat {} number {} twice (again at {})",
                    frame.chat, frame.number, frame.seq
                ));
            }
            let Some(message) = known.get(&key) else {
                failures.push(format!(
                    "connection {id} of {user} got chat {} number {} ({:?}), which history lacks",
                    frame.chat, frame.number, frame.body
                ));
                continue;
            };
            if message.stored.body != frame.body || message.stored.from != frame.from {
                failures.push(format!(
                    "connection {id} of {user} got chat {} number {} as {:?} from {}; history has {:?} from {}",
                    frame.chat,
                    frame.number,
                    frame.body,
                    frame.from,
                    message.stored.body,
                    message.stored.from
                ));
            }
            // A sync of this chat was in progress: the frame may be the
            // sync's (a member then, who may see it) or a held live one.
            let syncing: Vec<&&SyncRecord> = syncs
                .iter()
                .filter(|s| {
                    s.start < frame.seq
                        && frame.seq < s.end
                        && s.chats.iter().any(|&(chat, _)| chat == frame.chat)
                })
                .collect();
            let by_sync = syncing.iter().any(|sync| {
                let after = sync
                    .chats
                    .iter()
                    .find(|&&(chat, _)| chat == frame.chat)
                    .map_or(0, |&(_, after)| after);
                let answered = sync
                    .reached
                    .as_ref()
                    .is_some_and(|reached| reached.contains_key(&frame.chat));
                answered && frame.number > after && visible(user, message.stored)
            });
            if !by_sync && !live_allowed(membership, user, message) {
                failures.push(format!(
                    "connection {id} of {user} got chat {} number {} at {} (from {}, to {:?}, \
                     committed in {}..{}), but was not a subscriber then{}",
                    frame.chat,
                    frame.number,
                    frame.seq,
                    message.stored.from,
                    message.stored.to,
                    message.commit_start,
                    message.commit_end,
                    if syncing.is_empty() {
                        ""
                    } else {
                        " nor allowed by the sync in progress"
                    }
                ));
            }
            if syncing.is_empty() {
                let last = last_live.entry(frame.chat).or_insert(0);
                if frame.number <= *last {
                    failures.push(format!(
                        "connection {id} of {user}: live chat {} number {} after {}",
                        frame.chat, frame.number, last
                    ));
                }
                *last = frame.number;
            }
        }
        // Live completeness: what was certainly for this user, committed
        // while this connection was open, arrived before the final sync.
        let Some(final_start) = conn.final_sync_start else {
            continue;
        };
        for message in known.values() {
            if message.commit_start > conn.opened
                && live_required(membership, user, message)
                && !conn.frames.iter().any(|f| {
                    f.chat == message.chat
                        && f.number == message.stored.number
                        && f.seq < final_start
                })
            {
                failures.push(format!(
                    "connection {id} of {user} (open since {}) never got chat {} number {} live \
                     (from {}, to {:?}, committed in {}..{})",
                    conn.opened,
                    message.chat,
                    message.stored.number,
                    message.stored.from,
                    message.stored.to,
                    message.commit_start,
                    message.commit_end
                ));
            }
        }
        // After the final sync from 0, a member has everything it may see,
        // each once.
        for (&chat, messages) in &trace.final_history {
            if !membership.last(chat, user) {
                continue;
            }
            let expected: BTreeSet<u64> = messages
                .iter()
                .filter(|m| visible(user, m))
                .map(|m| m.number)
                .collect();
            let got: BTreeSet<u64> = conn
                .frames
                .iter()
                .filter(|f| f.chat == chat)
                .map(|f| f.number)
                .collect();
            if expected != got {
                failures.push(format!(
                    "connection {id} of {user}, a member of chat {chat}, after the final sync: \
                     missing {:?}, not visible {:?}",
                    expected.difference(&got).collect::<Vec<_>>(),
                    got.difference(&expected).collect::<Vec<_>>()
                ));
            }
        }
    }
}

fn check_syncs(
    trace: &Trace,
    membership: &Membership,
    known: &HashMap<(u64, u64), Known<'_>>,
    failures: &mut Vec<String>,
) {
    for sync in &trace.syncs {
        let conn = &trace.conns[sync.conn];
        let user = conn.user.as_str();
        let Some(reached) = &sync.reached else {
            failures.push(format!(
                "sync {:?} of {user} at {} got no synced frame (errors {:?})",
                sync.chats, sync.start, sync.errors
            ));
            continue;
        };
        for error in &sync.errors {
            let allowed = error.0.is_some_and(|chat| {
                error.1 == "not_subscribed"
                    && sync.chats.iter().any(|&(c, _)| c == chat)
                    && !reached.contains_key(&chat)
            });
            if !allowed {
                failures.push(format!(
                    "sync {:?} of {user} at {}: unexpected error {error:?}",
                    sync.chats, sync.start
                ));
            }
        }
        for &(chat, after) in &sync.chats {
            let possible = membership.possible(chat, user, sync.start, sync.end);
            let Some(&up_to) = reached.get(&chat) else {
                if !possible.outsider {
                    failures.push(format!(
                        "sync of chat {chat} by {user} at {}..{} was refused, yet the user was a member",
                        sync.start, sync.end
                    ));
                }
                continue;
            };
            if !possible.member {
                failures.push(format!(
                    "sync of chat {chat} by {user} at {}..{} answered, yet the user was not a member",
                    sync.start, sync.end
                ));
            }
            // The owner answers up to what it knows durable.
            let durable_before = known
                .values()
                .filter(|k| k.chat == chat && k.announced < sync.start)
                .map(|k| k.stored.number)
                .max()
                .unwrap_or(0);
            let stored = trace.final_history.get(&chat).map_or(0, |m| m.len() as u64);
            if up_to < durable_before || up_to > stored {
                failures.push(format!(
                    "sync of chat {chat} by {user} at {} reached {up_to}; {durable_before} were \
                     durable before it, {stored} stored in the end",
                    sync.start
                ));
            }
            // Everything the user may see in (after, up_to] was sent by the
            // synced frame, on this connection.
            for number in after + 1..=up_to {
                let Some(message) = known.get(&(chat, number)) else {
                    continue;
                };
                if visible(user, message.stored)
                    && !conn
                        .frames
                        .iter()
                        .any(|f| f.chat == chat && f.number == number && f.seq < sync.end)
                {
                    failures.push(format!(
                        "sync of chat {chat} from {after} by {user} reached {up_to} without \
                         number {number} (from {}, to {:?})",
                        message.stored.from, message.stored.to
                    ));
                }
            }
        }
    }
}

fn check_history_reads(
    trace: &Trace,
    membership: &Membership,
    known: &HashMap<(u64, u64), Known<'_>>,
    failures: &mut Vec<String>,
) {
    for read in &trace.histories {
        let who = read.reader.as_deref().unwrap_or("the app");
        let label = format!(
            "history of chat {} after {} limit {} read by {who} at {}..{}",
            read.chat, read.after, read.limit, read.start, read.end
        );
        let possible = match &read.reader {
            Some(user) => membership.possible(read.chat, user, read.start, read.end),
            None => Possible {
                member: true,
                outsider: false,
            },
        };
        if read.status != 200 {
            let refused_ok = read.status == 403
                && read.code.as_deref() == Some("not_subscribed")
                && possible.outsider;
            if !refused_ok {
                failures.push(format!(
                    "{label}: {} {:?} (member possible: {})",
                    read.status, read.code, possible.member
                ));
            }
            continue;
        }
        if !possible.member {
            failures.push(format!("{label}: answered 200 to a non-member"));
        }
        let may_see =
            |m: &StoredMessage| read.reader.as_deref().is_none_or(|user| visible(user, m));
        for message in &read.messages {
            match known.get(&(read.chat, message.number)) {
                Some(k) if k.stored == message && may_see(message) => {}
                Some(k) if k.stored == message => failures.push(format!(
                    "{label}: shows number {} to a user it is not for",
                    message.number
                )),
                other => failures.push(format!(
                    "{label}: number {} is {message:?}; in the end history has {:?}",
                    message.number,
                    other.map(|k| k.stored)
                )),
            }
        }
        let numbers: Vec<u64> = read.messages.iter().map(|m| m.number).collect();
        if numbers.windows(2).any(|w| w[0] >= w[1])
            || numbers.first().is_some_and(|&n| n <= read.after)
        {
            failures.push(format!(
                "{label}: numbers out of order or not after {}: {numbers:?}",
                read.after
            ));
        }
        // Every message durable before the read, after `after`, that the
        // reader may see, up to the page's size.
        let expected: Vec<u64> = known
            .values()
            .filter(|k| {
                k.chat == read.chat
                    && k.stored.number > read.after
                    && k.commit_end < read.start
                    && may_see(k.stored)
            })
            .map(|k| k.stored.number)
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .take(read.limit as usize)
            .collect();
        let got: BTreeSet<u64> = numbers.iter().copied().collect();
        // Numbers are committed in order, so what was durable before the
        // read is a prefix: its first `limit` visible ones lead the page.
        let missing: Vec<&u64> = expected.iter().filter(|n| !got.contains(n)).collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{label}: lacks {missing:?}, durable before it; got {numbers:?}"
            ));
        }
        if read.reader.is_none() {
            let contiguous = numbers
                .iter()
                .enumerate()
                .all(|(i, &n)| n == read.after + 1 + i as u64);
            if !contiguous {
                failures.push(format!("{label}: a gap in {numbers:?}"));
            }
        }
    }
}
