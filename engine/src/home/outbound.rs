//! A connection's outbound queue, bounded in frames and bytes. Fan-out
//! pushes without waiting; the connection's writer drains everything queued
//! into one write. A consumer that falls behind past either bound is cut
//! off (`slow_consumer`) rather than allowed to grow memory.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use async_tungstenite::tungstenite::Utf8Bytes;

/// Why the engine closes a connection; the text is the close frame's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    SlowConsumer,
    GoingAway,
    FrameTooLarge,
    InvalidUtf8,
    TokenRevoked,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            CloseReason::SlowConsumer | CloseReason::TokenRevoked => 1008,
            CloseReason::GoingAway => 1001,
            CloseReason::FrameTooLarge => 1009,
            CloseReason::InvalidUtf8 => 1007,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::GoingAway => "going_away",
            CloseReason::FrameTooLarge => "frame_too_large",
            CloseReason::InvalidUtf8 => "invalid_utf8",
            CloseReason::TokenRevoked => "token_revoked",
        }
    }
}

/// What the writer does next.
pub enum Burst {
    Frames(Vec<Utf8Bytes>),
    Close(CloseReason),
}

/// Frames one write may carry: bounds the writer's burst vector.
const BURST_FRAMES_MAX: usize = 1_024;

pub struct Outbound {
    frames: RefCell<VecDeque<Utf8Bytes>>,
    bytes: Cell<usize>,
    frames_max: usize,
    bytes_max: usize,
    closing: Cell<Option<CloseReason>>,
    writer: RefCell<Option<Waker>>,
}

impl Outbound {
    pub fn new(frames_max: usize, bytes_max: usize) -> Self {
        assert!(frames_max > 0 && bytes_max > 0);
        Self {
            frames: RefCell::new(VecDeque::new()),
            bytes: Cell::new(0),
            frames_max,
            bytes_max,
            closing: Cell::new(None),
            writer: RefCell::new(None),
        }
    }

    /// Queues a frame. Returns false when the connection is closing, or when
    /// this frame overflowed the queue, which starts a `slow_consumer` close.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        if self.closing.get().is_some() {
            return false;
        }
        let mut frames = self.frames.borrow_mut();
        let bytes = self.bytes.get() + frame.len();
        if frames.len() >= self.frames_max || bytes > self.bytes_max {
            drop(frames);
            self.close(CloseReason::SlowConsumer);
            return false;
        }
        frames.push_back(frame);
        self.bytes.set(bytes);
        drop(frames);
        self.wake();
        true
    }

    /// Starts closing: queued frames are dropped and the close frame goes out
    /// next. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if self.closing.get().is_none() {
            self.closing.set(Some(reason));
            self.frames.borrow_mut().clear();
            self.bytes.set(0);
            self.wake();
        }
    }

    pub fn is_closing(&self) -> bool {
        self.closing.get().is_some()
    }

    fn wake(&self) {
        if let Some(waker) = self.writer.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Ready when there is something to write or the connection is closing.
    pub fn poll_burst(&self, cx: &mut Context<'_>) -> Poll<Burst> {
        if let Some(reason) = self.closing.get() {
            return Poll::Ready(Burst::Close(reason));
        }
        let mut frames = self.frames.borrow_mut();
        if frames.is_empty() {
            *self.writer.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let count = frames.len().min(BURST_FRAMES_MAX);
        let burst: Vec<Utf8Bytes> = frames.drain(..count).collect();
        let drained: usize = burst.iter().map(|f| f.len()).sum();
        self.bytes.set(self.bytes.get() - drained);
        Poll::Ready(Burst::Frames(burst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(outbound: &Outbound) -> Poll<Burst> {
        outbound.poll_burst(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn drains_everything_queued_in_one_burst() {
        let outbound = Outbound::new(10, 1_000);
        assert!(matches!(poll(&outbound), Poll::Pending));
        for _ in 0..3 {
            assert!(outbound.push(Utf8Bytes::from_static("abc")));
        }
        match poll(&outbound) {
            Poll::Ready(Burst::Frames(frames)) => assert_eq!(frames.len(), 3),
            _ => panic!("expected a burst"),
        }
        assert!(matches!(poll(&outbound), Poll::Pending));
    }

    #[test]
    fn overflow_by_frames_or_bytes_closes_as_slow_consumer() {
        let by_frames = Outbound::new(2, 1_000);
        assert!(by_frames.push(Utf8Bytes::from_static("a")));
        assert!(by_frames.push(Utf8Bytes::from_static("a")));
        assert!(!by_frames.push(Utf8Bytes::from_static("a")));
        assert!(matches!(
            poll(&by_frames),
            Poll::Ready(Burst::Close(CloseReason::SlowConsumer))
        ));

        let by_bytes = Outbound::new(100, 5);
        assert!(by_bytes.push(Utf8Bytes::from_static("abc")));
        assert!(!by_bytes.push(Utf8Bytes::from_static("abc")));
        assert!(by_bytes.is_closing());
        assert!(
            !by_bytes.push(Utf8Bytes::from_static("a")),
            "nothing is queued after the close"
        );
    }
}
