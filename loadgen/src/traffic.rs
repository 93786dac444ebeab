//! Paced sending over WebSocket: which chat (uniform or Zipf), which of its
//! members sends, and when (a total rate, or as fast as a window of
//! unacknowledged sends allows). Also the once-a-second sampler that feeds
//! the progress bar and the timeline.

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use crate::report;
use crate::stats::{SenderSlot, Shared, now_us};

/// splitmix64: small, fast, good enough to pick chats and senders.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Chooses a chat index: uniformly, or Zipf(s) with chat 0 the hottest.
pub enum Picker {
    Uniform(usize),
    Zipf(Vec<f64>),
}

impl Picker {
    pub fn new(chats: usize, exponent: f64) -> Self {
        if exponent <= 0.0 || chats <= 1 {
            return Self::Uniform(chats.max(1));
        }
        let mut cdf = Vec::with_capacity(chats);
        let mut total = 0.0;
        for rank in 1..=chats {
            total += 1.0 / (rank as f64).powf(exponent);
            cdf.push(total);
        }
        for value in &mut cdf {
            *value /= total;
        }
        Self::Zipf(cdf)
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        match self {
            Self::Uniform(n) => rng.below(*n),
            Self::Zipf(cdf) => {
                let u = rng.unit();
                cdf.partition_point(|p| *p <= u).min(cdf.len() - 1)
            }
        }
    }

    /// The share of traffic of the hottest chat.
    pub fn top_share(&self) -> f64 {
        match self {
            Self::Uniform(n) => 1.0 / *n as f64,
            Self::Zipf(cdf) => cdf[0],
        }
    }
}

pub struct ChatSenders {
    pub chat: u64,
    pub senders: Vec<Rc<SenderSlot>>,
}

pub struct Driver {
    pub chats: Vec<ChatSenders>,
    pub picker: Picker,
    pub rate: Option<f64>,
    /// Unacknowledged sends per connection.
    pub window: u32,
    /// Unacknowledged sends over all connections.
    pub in_flight_max: u64,
    pub body_bytes: usize,
    pub duration: Duration,
    pub rng: Rng,
}

pub struct Driven {
    pub sent: u64,
    /// Sends due (rate mode) that found no sender with room in its window.
    pub window_full: u64,
    /// Due sends dropped because the schedule fell more than a second behind.
    pub behind_dropped: u64,
    pub elapsed: Duration,
}

/// Builds a send frame whose body is "<unix_micros> <seq> xxx..." of
/// `body_bytes` bytes (longer if the header does not fit).
pub fn send_frame(chat: u64, seq: u64, body_bytes: usize) -> String {
    let mut frame = String::with_capacity(body_bytes + 64);
    let _ = write!(frame, r#"{{"type":"send","chat":{chat},"body":""#);
    let body_start = frame.len();
    let _ = write!(frame, "{} {seq} ", now_us());
    let body_len = frame.len() - body_start;
    for _ in body_len..body_bytes {
        frame.push('x');
    }
    frame.push_str("\"}");
    frame
}

/// A body for HTTP publish, same shape as a WebSocket send's.
pub fn body(seq: u64, body_bytes: usize) -> String {
    let mut body = String::with_capacity(body_bytes.max(32));
    let _ = write!(body, "{} {seq} ", now_us());
    while body.len() < body_bytes {
        body.push('x');
    }
    body
}

impl Driver {
    /// Sends one message to a random chat from one of its members with room
    /// in its window; false when none has room (or total in flight is at
    /// the cap).
    fn send_one(&mut self, shared: &Shared, seq: u64) -> bool {
        if shared.in_flight.get() >= self.in_flight_max {
            return false;
        }
        let index = self.picker.pick(&mut self.rng);
        let chat = &self.chats[index];
        let count = chat.senders.len();
        if count == 0 {
            return false;
        }
        let start = self.rng.below(count);
        for probe in 0..count {
            let slot = &chat.senders[(start + probe) % count];
            if !slot.open.get() || slot.in_flight.get() >= self.window {
                continue;
            }
            let frame = send_frame(chat.chat, seq, self.body_bytes);
            if slot.tx.try_send(Message::text(frame)).is_err() {
                continue;
            }
            slot.in_flight.set(slot.in_flight.get() + 1);
            shared.in_flight.set(shared.in_flight.get() + 1);
            shared.stats.borrow_mut().on_sent(1);
            return true;
        }
        false
    }

    pub async fn run(mut self, shared: &Shared) -> Driven {
        let start = Instant::now();
        let mut sent = 0u64;
        let mut window_full = 0u64;
        let mut behind_dropped = 0u64;
        match self.rate {
            Some(rate) => {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let mut issued = 0u64;
                loop {
                    tick.tick().await;
                    let elapsed = start.elapsed();
                    if elapsed >= self.duration {
                        break;
                    }
                    let target = (elapsed.as_secs_f64() * rate) as u64;
                    // Carry at most a second of backlog: past that the
                    // generator (or the engine's acks) cannot keep up.
                    let carry_max = rate.max(1.0) as u64;
                    if target > issued + carry_max {
                        behind_dropped += target - issued - carry_max;
                        issued = target - carry_max;
                    }
                    while issued < target {
                        if !self.send_one(shared, sent) {
                            window_full += 1;
                            break;
                        }
                        sent += 1;
                        issued += 1;
                    }
                }
            }
            None => loop {
                let elapsed = start.elapsed();
                if elapsed >= self.duration {
                    break;
                }
                // Bounded: at most the total window per round.
                for _ in 0..self.in_flight_max {
                    if !self.send_one(shared, sent) {
                        break;
                    }
                    sent += 1;
                }
                let _ = tokio::time::timeout(
                    Duration::from_millis(5).min(self.duration - elapsed),
                    shared.window_open.notified(),
                )
                .await;
            },
        }
        Driven {
            sent,
            window_full,
            behind_dropped,
            elapsed: start.elapsed(),
        }
    }
}

/// Sleeps 10 ms again and again and records how late each wake-up is.
pub fn spawn_lag_probe(shared: Rc<Shared>) -> tokio::task::JoinHandle<()> {
    const PERIOD: Duration = Duration::from_millis(10);
    tokio::task::spawn_local(async move {
        loop {
            let before = Instant::now();
            tokio::time::sleep(PERIOD).await;
            let late = before.elapsed().saturating_sub(PERIOD);
            shared
                .stats
                .borrow_mut()
                .lag
                .saturating_record(late.as_micros().max(1) as u64);
        }
    })
}

/// Every second: closes a timeline sample and updates the progress bar
/// (or prints a line when the bar is hidden). Runs until aborted.
pub fn spawn_sampler(
    shared: Rc<Shared>,
    start: Instant,
    bar: ProgressBar,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::from_std(start) + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let t = start.elapsed().as_secs_f64();
            let sample = shared.stats.borrow_mut().sample(t);
            let in_flight = shared.in_flight.get();
            let message = format!(
                "{:>9} deliveries/s  {:>7} sent/s  p99 {:>9}  max {:>9}  in flight {in_flight}",
                sample.deliveries_per_sec,
                sample.sent_per_sec,
                report::fmt_us(sample.p99_us),
                report::fmt_us(sample.max_us),
            );
            bar.set_position(t as u64);
            if bar.is_hidden() {
                eprintln!("[{t:>5.0}s] {message}");
            } else {
                bar.set_message(message);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_the_first_chats() {
        let picker = Picker::new(100, 1.0);
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[picker.pick(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[99]);
        // H(100) is about 5.19, so chat 0 gets about 19%.
        assert!((17_000..21_000).contains(&counts[0]), "{}", counts[0]);
        let uniform = Picker::new(10, 0.0);
        assert!((uniform.top_share() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn frames_have_the_requested_body_size() {
        let frame = send_frame(7, 42, 100);
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["chat"], 7);
        let body = value["body"].as_str().unwrap();
        assert_eq!(body.len(), 100);
        assert!(crate::stats::body_timestamp(body).is_some());
        assert_eq!(body.split(' ').nth(1), Some("42"));
        assert_eq!(self::body(3, 50).len(), 50);
        assert!(self::body(3, 1).starts_with(|c: char| c.is_ascii_digit()));
    }
}
