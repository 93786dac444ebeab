//! What the chaos run knows for certain, kept in the load generator (which
//! is never killed): every message it sent (id, chat, sender, body), every
//! acknowledgement it got (an `ack` frame or an HTTP 201), what each reader
//! was delivered, each chat's expected subscribers, and every violation.
//!
//! An id is acknowledged at most with one number: a resend that comes back
//! with another number is a violation on the spot (the idempotency id was
//! not honoured), and so is an ack for a chat other than the send's.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use tokio::sync::Notify;

/// Violations described one by one; past this they are only counted.
const VIOLATIONS_SHOWN_MAX: usize = 50;

pub struct Sent {
    pub chat: u64,
    pub sender: String,
    pub body: String,
    /// The number it was acknowledged with, once it was.
    pub acked: Option<u64>,
    /// Refused for good (an answer that is not worth a resend); it may or
    /// may not be stored.
    pub refused: bool,
}

/// One reader's deliveries in its chat, kept across its reconnects.
#[derive(Default)]
pub struct Delivered {
    /// Highest number delivered; the next must be one more.
    pub last: u64,
    /// (sender, body) digest of each delivered number, in order: index
    /// `n - 1` holds number `n`, compared with history at checkpoints.
    pub digests: Vec<u64>,
}

#[derive(Default)]
pub struct Counters {
    pub acks: Cell<u64>,
    pub ws_sent: Cell<u64>,
    pub ws_resends: Cell<u64>,
    pub ws_reconnects: Cell<u64>,
    pub http_publishes: Cell<u64>,
    pub http_retries: Cell<u64>,
    pub reader_reconnects: Cell<u64>,
    pub deliveries: Cell<u64>,
    pub tokens_minted: Cell<u64>,
    pub retryable_errors: RefCell<HashMap<String, u64>>,
}

pub struct Ledger {
    pub sent: RefCell<HashMap<String, Sent>>,
    /// Sends not answered yet (not acked, not refused for good).
    pub outstanding: Cell<usize>,
    /// While set, no publisher starts a new message (resends go on), so the
    /// system can be checked at rest.
    pub paused: Cell<bool>,
    /// Set at the end: publishers finish their outstanding sends and stop.
    pub stopping: Cell<bool>,
    pub changed: Notify,
    pub readers: RefCell<Vec<(u64, Delivered)>>,
    /// chat → users that must be subscribed.
    pub subscribers: RefCell<HashMap<u64, BTreeSet<String>>>,
    pub counters: Counters,
    violations: RefCell<Vec<String>>,
    violations_count: Cell<u64>,
    started: std::time::Instant,
}

impl Ledger {
    pub fn new() -> Rc<Self> {
        Rc::new(Self {
            sent: RefCell::new(HashMap::new()),
            outstanding: Cell::new(0),
            paused: Cell::new(false),
            stopping: Cell::new(false),
            changed: Notify::new(),
            readers: RefCell::new(Vec::new()),
            subscribers: RefCell::new(HashMap::new()),
            counters: Counters::default(),
            violations: RefCell::new(Vec::new()),
            violations_count: Cell::new(0),
            started: std::time::Instant::now(),
        })
    }

    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn violation(&self, text: String) {
        self.violations_count.set(self.violations_count.get() + 1);
        eprintln!("[{:7.1}s] VIOLATION: {text}", self.elapsed_s());
        let mut shown = self.violations.borrow_mut();
        if shown.len() < VIOLATIONS_SHOWN_MAX {
            shown.push(text);
        }
    }

    pub fn violations_count(&self) -> u64 {
        self.violations_count.get()
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.borrow().clone()
    }

    pub fn retryable(&self, what: &str) {
        *self
            .counters
            .retryable_errors
            .borrow_mut()
            .entry(what.to_string())
            .or_default() += 1;
    }

    /// Records a new send; it is outstanding until answered.
    pub fn record_send(&self, id: &str, chat: u64, sender: &str, body: &str) {
        self.sent.borrow_mut().insert(
            id.to_string(),
            Sent {
                chat,
                sender: sender.to_string(),
                body: body.to_string(),
                acked: None,
                refused: false,
            },
        );
        self.outstanding.set(self.outstanding.get() + 1);
    }

    /// An ack (or 201) for `id`. Returns whether it was the first answer.
    pub fn record_ack(&self, id: &str, chat: u64, number: u64) -> bool {
        let mut sent = self.sent.borrow_mut();
        let Some(entry) = sent.get_mut(id) else {
            drop(sent);
            self.violation(format!(
                "ack for an id never sent: {id} (chat {chat} #{number})"
            ));
            return false;
        };
        if entry.chat != chat {
            let expected = entry.chat;
            drop(sent);
            self.violation(format!(
                "{id} was sent to chat {expected} but acknowledged in chat {chat} as #{number}"
            ));
            return false;
        }
        match entry.acked {
            Some(first) if first != number => {
                drop(sent);
                self.violation(format!(
                    "{id} acknowledged twice with different numbers in chat {chat}: #{first}, then #{number}"
                ));
                false
            }
            Some(_) => false,
            None => {
                let first_answer = !entry.refused;
                entry.acked = Some(number);
                drop(sent);
                if first_answer {
                    self.outstanding.set(self.outstanding.get() - 1);
                }
                self.counters.acks.set(self.counters.acks.get() + 1);
                self.changed.notify_waiters();
                true
            }
        }
    }

    /// A final refusal of `id` (counted as a violation by the caller when
    /// it should not have happened).
    pub fn record_refused(&self, id: &str) {
        let mut sent = self.sent.borrow_mut();
        if let Some(entry) = sent.get_mut(id)
            && entry.acked.is_none()
            && !entry.refused
        {
            entry.refused = true;
            drop(sent);
            self.outstanding.set(self.outstanding.get() - 1);
            self.changed.notify_waiters();
        }
    }

    pub fn acks(&self) -> u64 {
        self.counters.acks.get()
    }
}

/// FNV-1a over the sender and the body: what a reader keeps per delivery.
pub fn digest(sender: &str, body: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sender.bytes().chain([0]).chain(body.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The id a body starts with (every body of the run is "<id> <padding>").
pub fn id_of_body(body: &str) -> &str {
    body.split(' ').next().unwrap_or("")
}

pub fn bump(cell: &Cell<u64>) {
    cell.set(cell.get() + 1);
}
