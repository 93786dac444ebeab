//! The run's shared state: latency histograms, counters, the per-second
//! timeline, and the per-receiver delivery check (no gap, no duplicate,
//! nothing missing at the end). Everything runs on one thread, so it lives
//! in a `RefCell` behind an `Rc` and costs no locking.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

/// Largest latency recorded, in microseconds (an hour); larger saturate.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;
/// Problems described one by one; past this only counted.
const PROBLEMS_SHOWN: usize = 20;

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// The send timestamp at the start of a body: "<unix_micros> <seq> <padding>".
pub fn body_timestamp(body: &str) -> Option<u64> {
    let digits = body.as_bytes().iter().take_while(|b| b.is_ascii_digit());
    let mut value: u64 = 0;
    let mut count = 0;
    for digit in digits {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
        count += 1;
    }
    (count > 0).then_some(value)
}

/// One receiving connection's view of its chat (kept across reconnects).
#[derive(Debug, Clone)]
pub struct Receiver {
    pub chat: u64,
    /// The highest number received in order.
    pub last: u64,
    pub received: u64,
    pub open: bool,
    /// The last number a `synced` frame reported, if any.
    pub synced_to: Option<u64>,
}

impl Receiver {
    pub fn new(chat: u64) -> Self {
        Self {
            chat,
            last: 0,
            received: 0,
            open: false,
            synced_to: None,
        }
    }
}

/// About one second of the run (the interval since the previous sample).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    /// Seconds since the start, at the end of the interval.
    pub t_s: f64,
    /// Length of the interval in seconds (a busy runtime stretches it).
    pub interval_s: f64,
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    pub sent: u64,
    pub sent_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

pub struct Stats {
    pub latency: Histogram<u64>,
    interval_latency: Histogram<u64>,
    /// HTTP publish answer times (http-publish, reconnect).
    pub publish_latency: Histogram<u64>,
    /// How late the generator's own 10 ms timer fires: a starved or busy
    /// generator (or machine) shows here, not in the engine.
    pub lag: Histogram<u64>,
    pub deliveries: u64,
    interval_deliveries: u64,
    pub sent: u64,
    interval_sent: u64,
    pub acked: u64,
    pub receivers: Vec<Receiver>,
    /// Numbers skipped over (seen as gaps while running).
    pub gaps: u64,
    /// Numbers received again or out of order.
    pub duplicates: u64,
    /// Messages of a chat the receiver is not in, or unparseable frames.
    pub misrouted: u64,
    pub problems: Vec<String>,
    pub problems_total: u64,
    /// Error frames by code.
    pub errors: BTreeMap<String, u64>,
    /// Connections that ended while they should have stayed open, by reason.
    pub closes: BTreeMap<String, u64>,
    /// Highest acknowledged number per chat.
    pub chat_acked: HashMap<u64, u64>,
    pub timeline: Vec<Sample>,
    /// Unix microseconds of the last delivery (0: none yet).
    pub last_delivery_us: u64,
    pub pongs: u64,
    /// `read` frames received: this member's read position moved.
    pub read_events: u64,
    /// `reads` frames received: other members' positions moved.
    pub reads_events: u64,
}

impl Stats {
    pub fn new(receivers: Vec<Receiver>) -> Self {
        Self {
            latency: histogram(),
            interval_latency: histogram(),
            publish_latency: histogram(),
            lag: histogram(),
            deliveries: 0,
            interval_deliveries: 0,
            sent: 0,
            interval_sent: 0,
            acked: 0,
            receivers,
            gaps: 0,
            duplicates: 0,
            misrouted: 0,
            problems: Vec::new(),
            problems_total: 0,
            errors: BTreeMap::new(),
            closes: BTreeMap::new(),
            chat_acked: HashMap::new(),
            timeline: Vec::new(),
            last_delivery_us: 0,
            pongs: 0,
            read_events: 0,
            reads_events: 0,
        }
    }

    /// Starts the measured phase afresh: deliveries, latency and the
    /// timeline (the per-receiver checks carry on).
    pub fn reset_measurements(&mut self) {
        self.latency.reset();
        self.interval_latency.reset();
        self.deliveries = 0;
        self.interval_deliveries = 0;
        self.interval_sent = 0;
        self.timeline.clear();
        self.last_delivery_us = 0;
    }

    /// From `start_us` to the last delivery (None when nothing arrived).
    pub fn delivery_window(&self, start_us: u64) -> Option<Duration> {
        (self.last_delivery_us > start_us)
            .then(|| Duration::from_micros(self.last_delivery_us - start_us))
    }

    pub fn problem(&mut self, text: impl FnOnce() -> String) {
        self.problems_total += 1;
        if self.problems.len() < PROBLEMS_SHOWN {
            self.problems.push(text());
        }
    }

    /// A `message` frame for receiver `id`.
    pub fn on_message(&mut self, id: usize, chat: u64, number: u64, body: &str, now: u64) {
        let receiver = &mut self.receivers[id];
        if chat != receiver.chat {
            self.misrouted += 1;
            let expected = receiver.chat;
            self.problem(|| {
                format!(
                    "receiver {id}: message {number} of chat {chat}, but it is in chat {expected}"
                )
            });
            return;
        }
        let last = receiver.last;
        if number <= last {
            self.duplicates += 1;
            self.problem(|| {
                format!(
                    "receiver {id}, chat {chat}: number {number} again or out of order (had {last})"
                )
            });
            return;
        }
        receiver.last = number;
        receiver.received += 1;
        if number > last + 1 {
            self.gaps += number - last - 1;
            self.problem(|| format!("receiver {id}, chat {chat}: gap, got {number} after {last}"));
        }
        self.deliveries += 1;
        self.interval_deliveries += 1;
        self.last_delivery_us = now;
        if let Some(sent) = body_timestamp(body) {
            let latency = now.saturating_sub(sent).max(1);
            self.latency.saturating_record(latency);
            self.interval_latency.saturating_record(latency);
        }
    }

    pub fn on_sent(&mut self, count: u64) {
        self.sent += count;
        self.interval_sent += count;
    }

    pub fn on_ack(&mut self, chat: u64, number: u64) {
        self.acked += 1;
        let highest = self.chat_acked.entry(chat).or_insert(0);
        *highest = (*highest).max(number);
    }

    pub fn on_error(&mut self, code: &str) {
        match self.errors.get_mut(code) {
            Some(count) => *count += 1,
            None => {
                self.errors.insert(code.to_string(), 1);
            }
        }
    }

    /// A connection ended that should have stayed open.
    pub fn on_closed(&mut self, id: usize, reason: String) {
        if let Some(receiver) = self.receivers.get_mut(id) {
            receiver.open = false;
        }
        *self.closes.entry(reason).or_insert(0) += 1;
    }

    /// Closes a second of the timeline: `t_s` seconds since the start.
    pub fn sample(&mut self, t_s: f64) -> Sample {
        let previous = self.timeline.last().map_or(0.0, |s| s.t_s);
        let interval_s = (t_s - previous).max(1e-3);
        let per_sec = |count: u64| (count as f64 / interval_s).round();
        let sample = Sample {
            t_s: (t_s * 1_000.0).round() / 1_000.0,
            interval_s: (interval_s * 1_000.0).round() / 1_000.0,
            deliveries: self.interval_deliveries,
            deliveries_per_sec: per_sec(self.interval_deliveries),
            sent: self.interval_sent,
            sent_per_sec: per_sec(self.interval_sent),
            p50_us: quantile(&self.interval_latency, 0.5),
            p99_us: quantile(&self.interval_latency, 0.99),
            max_us: self.interval_latency.max(),
        };
        self.interval_latency.reset();
        self.interval_deliveries = 0;
        self.interval_sent = 0;
        self.timeline.push(sample.clone());
        sample
    }

    /// Receivers (open ones) still short of their chat's expected last
    /// number, and the messages they still miss.
    pub fn behind(&self, expected: &HashMap<u64, u64>) -> (usize, u64) {
        let mut receivers = 0;
        let mut messages = 0;
        for receiver in self.receivers.iter().filter(|r| r.open) {
            let want = expected.get(&receiver.chat).copied().unwrap_or(0);
            if receiver.last < want {
                receivers += 1;
                messages += want - receiver.last;
            }
        }
        (receivers, messages)
    }

    /// The end-of-run check: every receiver must have reached its chat's
    /// last number. Returns the messages lost (gaps seen while running plus
    /// what is still missing).
    pub fn verify(&mut self, expected: &HashMap<u64, u64>) -> u64 {
        let mut missing = 0;
        let mut notes = Vec::new();
        for (id, receiver) in self.receivers.iter().enumerate() {
            let want = expected.get(&receiver.chat).copied().unwrap_or(0);
            if receiver.last < want {
                missing += want - receiver.last;
                notes.push(format!(
                    "receiver {id}, chat {}: stopped at {} of {want}{}",
                    receiver.chat,
                    receiver.last,
                    if receiver.open {
                        ""
                    } else {
                        " (connection closed)"
                    }
                ));
            } else if receiver.last > want {
                notes.push(format!(
                    "receiver {id}, chat {}: received number {} but the store holds only {want}",
                    receiver.chat, receiver.last
                ));
                self.misrouted += 1;
            }
        }
        for note in notes {
            self.problem(|| note);
        }
        self.gaps + missing
    }
}

pub fn quantile(histogram: &Histogram<u64>, q: f64) -> u64 {
    if histogram.is_empty() {
        0
    } else {
        histogram.value_at_quantile(q)
    }
}

/// A sending connection: its writer's queue and its unacknowledged sends.
pub struct SenderSlot {
    pub tx: tokio::sync::mpsc::Sender<tokio_tungstenite::tungstenite::Message>,
    pub in_flight: Cell<u32>,
    pub open: Cell<bool>,
}

/// What every task of a run shares.
pub struct Shared {
    pub stats: RefCell<Stats>,
    /// Sends awaiting an ack, over all senders.
    pub in_flight: Cell<u64>,
    /// Woken on every ack or send error (a window slot opened).
    pub window_open: Notify,
}

impl Shared {
    pub fn new(receivers: Vec<Receiver>) -> std::rc::Rc<Self> {
        std::rc::Rc::new(Self {
            stats: RefCell::new(Stats::new(receivers)),
            in_flight: Cell::new(0),
            window_open: Notify::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_body_timestamp() {
        assert_eq!(
            body_timestamp("1700000000123456 7 xxxx"),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(body_timestamp("x"), None);
        assert_eq!(body_timestamp("99999999999999999999999 1"), None);
    }

    #[test]
    fn finds_gaps_duplicates_and_missing_messages() {
        let mut stats = Stats::new(vec![Receiver::new(1), Receiver::new(1)]);
        let now = now_us();
        let body = format!("{} 1 x", now - 100);
        stats.on_message(0, 1, 1, &body, now);
        stats.on_message(0, 1, 2, &body, now);
        stats.on_message(0, 1, 2, &body, now); // duplicate
        stats.on_message(1, 1, 1, &body, now);
        stats.on_message(1, 1, 3, &body, now); // gap of one
        stats.on_message(1, 2, 4, &body, now); // wrong chat
        assert_eq!(stats.deliveries, 4);
        assert_eq!(stats.duplicates, 1);
        assert_eq!(stats.gaps, 1);
        assert_eq!(stats.misrouted, 1);
        assert!(stats.latency.max() >= 100);
        let expected = HashMap::from([(1, 4)]);
        // Receiver 0 misses 3 and 4, receiver 1 misses 4; plus the gap.
        assert_eq!(stats.verify(&expected), 1 + 2 + 1);
    }
}
