//! HTTP/1 connection hygiene, alike in every service: how long a
//! connection may take to send its request head, its request, or nothing
//! at all between requests, and how many connections may be in their
//! handshake (accepted, first request head not yet read) at once.
//!
//! Why not hyper's own `header_read_timeout`: in hyper 1.x its timer
//! starts when the connection begins reading a head, which is right after
//! accept and again as soon as a response is written, so it is one timer
//! for "idle between requests" and "slow head" alike; an idle keep-alive
//! limit longer than the head limit cannot be expressed with it (and with
//! no timer set, as axum::serve and the engine did, it does nothing). So
//! each connection carries a [`Watch`]: its phase and one deadline, moved
//! on by the connection's own reads and its service calls, and a watchdog
//! future ([`expired`]) that the serve loop races against the connection;
//! when the watchdog wins the connection is dropped, which closes it.
//!
//! Phases and their limits:
//! - head: from accept (or the first byte after an idle spell) until the
//!   request head is complete: `header_read_timeout`, so a connection that
//!   sends nothing at all is closed like one that trickles;
//! - request: from the head to the service's answer (body read and
//!   handling): `request_timeout`;
//! - idle: between an answer and the next request's first byte:
//!   `idle_timeout`.
//!
//! An upgraded connection (the engine's WebSockets) leaves hyper, and with
//! it this watch: WebSocket liveness is the engine's business.
//!
//! [`Handshakes`] counts connections in their first head phase, for the
//! whole service; past its cap a new connection is closed at once. The
//! runtime glue is the caller's: the engine's on glommio, and behind the
//! `tokio` feature [`serve`] for the axum services.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod query_rules;
#[cfg(feature = "tokio")]
mod serve;
#[cfg(feature = "tokio")]
pub use serve::serve;

/// Default time to send a whole request head, counted from accept.
pub const HEADER_READ_TIMEOUT_S: u64 = 10;
/// Default time from a request's head to its answer (body included).
pub const REQUEST_TIMEOUT_S: u64 = 30;
/// Default time a keep-alive connection may sit idle between requests.
pub const IDLE_TIMEOUT_S: u64 = 60;
/// Default cap on connections still in their handshake, per service. A
/// client that opens connections and sends nothing holds one slot each for
/// at most the header-read timeout; 1,024 is far above any honest burst
/// of new connections and far below the descriptor limit.
pub const HANDSHAKES_MAX: usize = 1_024;
/// Longest any timeout may be configured: a day.
pub const TIMEOUT_S_MAX: u64 = 86_400;
/// At most one warning this often when the handshake cap refuses
/// connections (an attack would otherwise flood the log).
const REFUSED_WARN_INTERVAL_MS: u64 = 10_000;

/// The limits of one service's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_read_timeout_s: u64,
    pub request_timeout_s: u64,
    pub idle_timeout_s: u64,
    pub handshakes_max: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_s: HEADER_READ_TIMEOUT_S,
            request_timeout_s: REQUEST_TIMEOUT_S,
            idle_timeout_s: IDLE_TIMEOUT_S,
            handshakes_max: HANDSHAKES_MAX,
        }
    }
}

impl ConnLimits {
    /// Refuses limits that would close every connection or none.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("header read timeout", self.header_read_timeout_s),
            ("request timeout", self.request_timeout_s),
            ("idle timeout", self.idle_timeout_s),
        ] {
            if value == 0 || value > TIMEOUT_S_MAX {
                return Err(format!(
                    "the {name} must be from 1 to {TIMEOUT_S_MAX} seconds, got {value}"
                ));
            }
        }
        if self.handshakes_max == 0 {
            return Err("at least one connection must be allowed in its handshake".into());
        }
        Ok(())
    }
}

/// Connections of one service accepted but not past their first request
/// head. Shared by every listener of the service (the engine's shards
/// included): one relaxed atomic per accept and per first request.
#[derive(Debug)]
pub struct Handshakes {
    in_progress: AtomicUsize,
    max: usize,
    refused: AtomicU64,
    origin: Instant,
    /// When the last refusal was logged, in ms since `origin`; `u64::MAX`: never.
    refused_warned_ms: AtomicU64,
}

impl Handshakes {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            in_progress: AtomicUsize::new(0),
            max,
            refused: AtomicU64::new(0),
            origin: Instant::now(),
            refused_warned_ms: AtomicU64::new(u64::MAX),
        })
    }

    /// Connections in their handshake now.
    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::Relaxed)
    }

    /// Connections closed at once because the cap was reached, so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn try_enter(&self) -> bool {
        let before = self.in_progress.fetch_add(1, Ordering::Relaxed);
        if before < self.max {
            return true;
        }
        self.in_progress.fetch_sub(1, Ordering::Relaxed);
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = self.origin.elapsed().as_millis() as u64;
        let last = self.refused_warned_ms.load(Ordering::Relaxed);
        if (last == u64::MAX || now_ms.saturating_sub(last) >= REFUSED_WARN_INTERVAL_MS)
            && self
                .refused_warned_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                handshakes_max = self.max,
                refused_total = refused,
                "too many connections in their handshake; closing new ones at once"
            );
        }
        false
    }

    fn leave(&self) {
        self.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

const PHASE_HEAD: u8 = 0;
const PHASE_REQUEST: u8 = 1;
const PHASE_IDLE: u8 = 2;

/// One connection's phase and deadline; cheap to clone (one `Arc`), `Send`
/// and `Sync`, so the I/O adapter, the service and the watchdog each hold
/// one. Dropping the last clone gives back a handshake slot still held.
#[derive(Debug, Clone)]
pub struct Watch(Arc<WatchState>);

#[derive(Debug)]
struct WatchState {
    origin: Instant,
    header_read: Duration,
    request: Duration,
    idle: Duration,
    phase: AtomicU8,
    /// Milliseconds since `origin`.
    deadline_ms: AtomicU64,
    handshakes: Arc<Handshakes>,
    in_handshake: AtomicBool,
}

impl Drop for WatchState {
    fn drop(&mut self) {
        if self.in_handshake.swap(false, Ordering::Relaxed) {
            self.handshakes.leave();
        }
    }
}

impl Watch {
    /// A just-accepted connection's watch, in its head phase; `None` when
    /// the service's handshake cap is reached (close the connection).
    pub fn admit(handshakes: &Arc<Handshakes>, limits: &ConnLimits) -> Option<Self> {
        if !handshakes.try_enter() {
            return None;
        }
        let header_read = Duration::from_secs(limits.header_read_timeout_s);
        Some(Self(Arc::new(WatchState {
            origin: Instant::now(),
            header_read,
            request: Duration::from_secs(limits.request_timeout_s),
            idle: Duration::from_secs(limits.idle_timeout_s),
            phase: AtomicU8::new(PHASE_HEAD),
            deadline_ms: AtomicU64::new(header_read.as_millis() as u64),
            handshakes: Arc::clone(handshakes),
            in_handshake: AtomicBool::new(true),
        })))
    }

    fn now_ms(&self) -> u64 {
        self.0.origin.elapsed().as_millis() as u64
    }

    fn enter(&self, phase: u8, limit: Duration) {
        self.0.phase.store(phase, Ordering::Relaxed);
        self.0
            .deadline_ms
            .store(self.now_ms() + limit.as_millis() as u64, Ordering::Relaxed);
    }

    /// The connection read `bytes`: the first bytes after an idle spell
    /// start the next request's head, and its header-read limit.
    pub fn on_read(&self, bytes: usize) {
        if bytes > 0 && self.0.phase.load(Ordering::Relaxed) == PHASE_IDLE {
            self.enter(PHASE_HEAD, self.0.header_read);
        }
    }

    /// A request head is complete (the service is called): the request
    /// limit runs, and a first request ends the handshake.
    pub fn on_request(&self) {
        self.enter(PHASE_REQUEST, self.0.request);
        if self.0.in_handshake.swap(false, Ordering::Relaxed) {
            self.0.handshakes.leave();
        }
    }

    /// The service answered: the connection is idle until the next byte.
    pub fn on_response(&self) {
        self.enter(PHASE_IDLE, self.0.idle);
    }

    /// Which limit runs now, for logs.
    pub fn phase(&self) -> &'static str {
        match self.0.phase.load(Ordering::Relaxed) {
            PHASE_HEAD => "header read",
            PHASE_REQUEST => "request",
            _ => "idle",
        }
    }

    /// Time left before the current deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        let deadline = self.0.deadline_ms.load(Ordering::Relaxed);
        Duration::from_millis(deadline.saturating_sub(self.now_ms()))
    }
}

/// Resolves, with the name of the limit, once the connection's current
/// deadline passes; `sleep` is the runtime's timer. Deadlines move while
/// it sleeps, so it checks again on every wake-up instead of trusting the
/// first one.
pub async fn expired<F, S>(watch: &Watch, sleep: S) -> &'static str
where
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    loop {
        let left = watch.remaining();
        if left.is_zero() {
            return watch.phase();
        }
        sleep(left).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(handshakes_max: usize) -> ConnLimits {
        ConnLimits {
            handshakes_max,
            ..ConnLimits::default()
        }
    }

    #[test]
    fn the_cap_counts_connections_until_their_first_request() {
        let handshakes = Handshakes::new(2);
        let first = Watch::admit(&handshakes, &limits(2)).unwrap();
        let second = Watch::admit(&handshakes, &limits(2)).unwrap();
        assert!(Watch::admit(&handshakes, &limits(2)).is_none());
        assert_eq!((handshakes.in_progress(), handshakes.refused()), (2, 1));
        first.on_request();
        first.on_request();
        assert_eq!(handshakes.in_progress(), 1);
        let third = Watch::admit(&handshakes, &limits(2)).unwrap();
        drop(second);
        drop(third);
        drop(first);
        assert_eq!(handshakes.in_progress(), 0);
    }

    #[test]
    fn phases_move_the_deadline() {
        let handshakes = Handshakes::new(1);
        let limits = ConnLimits {
            header_read_timeout_s: 10,
            request_timeout_s: 30,
            idle_timeout_s: 60,
            handshakes_max: 1,
        };
        let watch = Watch::admit(&handshakes, &limits).unwrap();
        assert_eq!(watch.phase(), "header read");
        assert!(watch.remaining() <= Duration::from_secs(10));
        // Bytes of the head itself do not extend it.
        watch.on_read(10);
        assert!(watch.remaining() <= Duration::from_secs(10));
        watch.on_request();
        assert_eq!(watch.phase(), "request");
        assert!(watch.remaining() > Duration::from_secs(10));
        watch.on_response();
        assert_eq!(watch.phase(), "idle");
        assert!(watch.remaining() > Duration::from_secs(30));
        watch.on_read(0);
        assert_eq!(watch.phase(), "idle");
        watch.on_read(1);
        assert_eq!(watch.phase(), "header read");
        assert!(watch.remaining() <= Duration::from_secs(10));
    }

    #[test]
    fn validate_refuses_zero() {
        assert_eq!(ConnLimits::default().validate(), Ok(()));
        for change in [
            |l: &mut ConnLimits| l.header_read_timeout_s = 0,
            |l: &mut ConnLimits| l.idle_timeout_s = TIMEOUT_S_MAX + 1,
            |l: &mut ConnLimits| l.request_timeout_s = 0,
            |l: &mut ConnLimits| l.handshakes_max = 0,
        ] {
            let mut limits = ConnLimits::default();
            change(&mut limits);
            assert!(limits.validate().is_err());
        }
    }
}
