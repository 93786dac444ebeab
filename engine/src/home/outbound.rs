//! A connection's outbound queue of ready WebSocket frames, bounded in
//! frames and bytes, and the writes that empty it.
//!
//! Who writes: fan-out pushes frames and marks the queue dirty; the shard's
//! [`Flusher`](super::flusher::Flusher) then writes every dirty queue with
//! one `sendmsg` each, without waking a task per connection. Only a socket
//! that is full hands its queue to the connection's own writer task, which
//! waits until the socket drains. One writer at a time: the flusher writes
//! only `Dirty` queues, the writer task only `Blocked` or closing ones.
//!
//! A consumer that falls behind past either bound is cut off
//! (`slow_consumer`) rather than allowed to grow memory.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::flusher::Flusher;
use crate::ws_frame;

/// Why the engine closes a connection; the text is the close frame's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The answer to a client's close.
    Normal,
    SlowConsumer,
    GoingAway,
    FrameTooLarge,
    InvalidUtf8,
    TokenRevoked,
    /// The session's token expired and no fresh one was presented.
    TokenExpired,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Normal => 1000,
            CloseReason::SlowConsumer | CloseReason::TokenRevoked | CloseReason::TokenExpired => {
                1008
            }
            CloseReason::GoingAway => 1001,
            CloseReason::FrameTooLarge => 1009,
            CloseReason::InvalidUtf8 => 1007,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Normal => "",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::GoingAway => "going_away",
            CloseReason::FrameTooLarge => "frame_too_large",
            CloseReason::InvalidUtf8 => "invalid_utf8",
            CloseReason::TokenRevoked => "token_revoked",
            CloseReason::TokenExpired => "token_expired",
        }
    }
}

/// Who writes the queue next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Nothing to write, or no socket yet.
    Idle,
    /// In the flusher's list.
    Dirty,
    /// The socket was full: the connection's writer task waits for it.
    Blocked,
    /// The socket failed or is gone: nothing is written any more.
    Broken,
}

/// What one attempt to empty the queue did.
#[derive(Debug, PartialEq, Eq)]
pub enum Drain {
    /// Everything queued is on the socket.
    Empty,
    /// The socket took less than offered: wait until it drains.
    Full,
    /// The socket failed.
    Failed,
}

/// Frames written and their bytes, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub frames: u64,
    pub bytes: u64,
}

/// Frames one `sendmsg` carries at most.
const FRAMES_PER_WRITE: usize = 64;

pub struct Outbound {
    /// Complete frames; the head's first `head_written` bytes are already
    /// on the socket.
    frames: RefCell<VecDeque<Bytes>>,
    head_written: Cell<usize>,
    /// Bytes queued and not yet written.
    bytes: Cell<usize>,
    frames_max: usize,
    bytes_max: usize,
    /// Set once: the close frame is queued and nothing follows it.
    closing: Cell<Option<CloseReason>>,
    writer: Cell<Writer>,
    socket: Cell<Option<RawFd>>,
    flusher: Rc<Flusher>,
    /// The connection's writer task, waiting for `Blocked` or a close.
    task: RefCell<Option<Waker>>,
}

impl Outbound {
    pub fn new(frames_max: usize, bytes_max: usize, flusher: Rc<Flusher>) -> Self {
        assert!(frames_max > 0 && bytes_max > 0);
        Self {
            frames: RefCell::new(VecDeque::new()),
            head_written: Cell::new(0),
            bytes: Cell::new(0),
            frames_max,
            bytes_max,
            closing: Cell::new(None),
            writer: Cell::new(Writer::Idle),
            socket: Cell::new(None),
            flusher,
            task: RefCell::new(None),
        }
    }

    /// Queues a frame. Returns false when the connection is closing, or when
    /// this frame overflowed the queue, which starts a `slow_consumer` close.
    pub fn push(self: &Rc<Self>, frame: Bytes) -> bool {
        if self.closing.get().is_some() || self.writer.get() == Writer::Broken {
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
        if self.writer.get() == Writer::Idle && self.socket.get().is_some() {
            self.writer.set(Writer::Dirty);
            self.flusher.add(Rc::clone(self));
        }
        true
    }

    /// Starts closing: queued frames are dropped (all but one already partly
    /// on the socket) and the close frame goes out next. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if self.closing.get().is_some() {
            return;
        }
        self.closing.set(Some(reason));
        let mut frames = self.frames.borrow_mut();
        let keep = usize::from(self.head_written.get() > 0).min(frames.len());
        frames.truncate(keep);
        frames.push_back(ws_frame::close(reason.code(), reason.text()));
        self.bytes
            .set(frames.iter().map(Bytes::len).sum::<usize>() - self.head_written.get());
        drop(frames);
        self.wake_task();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.get().is_some()
    }

    /// The socket frames go to, once the upgrade is done. Frames queued
    /// before it (a delivery racing the handshake) are written now.
    pub fn attach(self: &Rc<Self>, socket: RawFd) {
        assert!(self.socket.get().is_none(), "a queue has one socket");
        self.socket.set(Some(socket));
        if self.writer.get() == Writer::Idle && !self.frames.borrow().is_empty() {
            self.writer.set(Writer::Dirty);
            self.flusher.add(Rc::clone(self));
        }
    }

    /// Forgets the socket before it is closed: a queue still in the
    /// flusher's list must not write to a descriptor number reused since.
    pub fn detach(&self) {
        self.socket.set(None);
        self.writer.set(Writer::Broken);
    }

    /// Called by the flusher for a queue it listed.
    pub fn flush_dirty(&self) -> Written {
        if self.writer.get() != Writer::Dirty {
            return Written::default();
        }
        if self.closing.get().is_some() {
            // The writer task finishes a closing connection.
            self.writer.set(Writer::Blocked);
            self.wake_task();
            return Written::default();
        }
        let (drain, written) = self.write_now();
        self.writer.set(match drain {
            Drain::Empty => Writer::Idle,
            Drain::Full => Writer::Blocked,
            Drain::Failed => Writer::Broken,
        });
        if drain != Drain::Empty {
            self.wake_task();
        }
        written
    }

    /// Writes as much as the socket takes without waiting.
    pub fn write_now(&self) -> (Drain, Written) {
        let Some(socket) = self.socket.get() else {
            return (Drain::Failed, Written::default());
        };
        let mut written = Written::default();
        loop {
            if self.frames.borrow().is_empty() {
                return (Drain::Empty, written);
            }
            let (offered, result) = {
                let frames = self.frames.borrow();
                let mut slices = [io::IoSlice::new(&[]); FRAMES_PER_WRITE];
                let mut count = 0;
                let mut offered = 0;
                for (index, frame) in frames.iter().take(FRAMES_PER_WRITE).enumerate() {
                    let start = if index == 0 {
                        self.head_written.get()
                    } else {
                        0
                    };
                    slices[index] = io::IoSlice::new(&frame[start..]);
                    offered += frame.len() - start;
                    count += 1;
                }
                (offered, send_vectored(socket, &slices[..count]))
            };
            match result {
                Ok(sent) => {
                    written = written.plus(self.advance(sent));
                    if sent < offered {
                        return (Drain::Full, written);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return (Drain::Full, written);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return (Drain::Failed, written),
            }
        }
    }

    /// The head frame's unwritten bytes, for the writer task to wait on.
    pub fn head(&self) -> Option<Bytes> {
        let frames = self.frames.borrow();
        frames
            .front()
            .map(|frame| frame.slice(self.head_written.get()..))
    }

    /// Records `count` bytes as written: whole frames leave the queue.
    pub fn advance(&self, mut count: usize) -> Written {
        let mut frames = self.frames.borrow_mut();
        let mut written = Written {
            frames: 0,
            bytes: count as u64,
        };
        self.bytes.set(self.bytes.get() - count);
        while count > 0 {
            let head = frames.front().expect("no more written than queued");
            let left = head.len() - self.head_written.get();
            if count < left {
                self.head_written.set(self.head_written.get() + count);
                break;
            }
            count -= left;
            self.head_written.set(0);
            frames.pop_front();
            written.frames += 1;
        }
        written
    }

    /// Ready when the writer task has work: a full socket or a close.
    pub fn poll_task(&self, cx: &mut Context<'_>) -> Poll<TaskWork> {
        if self.writer.get() == Writer::Broken {
            return Poll::Ready(TaskWork::Stop);
        }
        if self.closing.get().is_some() {
            // The flusher leaves a closing queue alone from here on.
            self.writer.set(Writer::Blocked);
            return Poll::Ready(TaskWork::Close);
        }
        if self.writer.get() == Writer::Blocked {
            return Poll::Ready(TaskWork::Drain);
        }
        *self.task.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The writer task emptied a blocked queue: the flusher takes over again.
    pub fn unblock(&self) {
        debug_assert_eq!(self.writer.get(), Writer::Blocked);
        if self.closing.get().is_none() {
            self.writer.set(Writer::Idle);
        }
    }

    /// The writer task saw the socket fail.
    pub fn broken(&self) {
        self.writer.set(Writer::Broken);
    }

    fn wake_task(&self) {
        if let Some(waker) = self.task.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// What the connection's writer task does next.
#[derive(Debug, PartialEq, Eq)]
pub enum TaskWork {
    /// Wait for the socket, then write until the queue is empty.
    Drain,
    /// Write everything up to and including the close frame, then stop.
    Close,
    /// The socket is gone.
    Stop,
}

impl Written {
    pub fn plus(self, other: Written) -> Written {
        Written {
            frames: self.frames + other.frames,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// `sendmsg` without waiting and without SIGPIPE (a closed peer is an error).
fn send_vectored(socket: RawFd, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: a zeroed msghdr is valid; the iovecs point into `slices`, which
    // outlive the call (IoSlice is ABI-compatible with iovec).
    let sent = unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = slices.as_ptr() as *mut libc::iovec;
        header.msg_iovlen = slices.len() as _;
        libc::sendmsg(socket, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn queue(frames_max: usize, bytes_max: usize) -> Rc<Outbound> {
        Rc::new(Outbound::new(
            frames_max,
            bytes_max,
            Rc::new(Flusher::default()),
        ))
    }

    fn frame(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn overflow_by_frames_or_bytes_closes_as_slow_consumer() {
        let by_frames = queue(2, 1_000);
        assert!(by_frames.push(frame("a")));
        assert!(by_frames.push(frame("a")));
        assert!(!by_frames.push(frame("a")));
        assert_eq!(by_frames.closing.get(), Some(CloseReason::SlowConsumer));

        let by_bytes = queue(100, 5);
        assert!(by_bytes.push(frame("abc")));
        assert!(!by_bytes.push(frame("abc")));
        assert!(by_bytes.is_closing());
        assert!(
            !by_bytes.push(frame("a")),
            "nothing is queued after the close"
        );
    }

    #[test]
    fn writes_everything_queued_in_order_and_lists_itself_once() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let out = queue(100, 10_000);
        assert!(out.push(frame("early ")), "queued before the socket exists");
        assert!(out.flusher.is_empty(), "no socket: nothing to flush yet");
        out.attach(ours.as_raw_fd());
        assert!(out.push(frame("one ")));
        assert!(out.push(frame("two")));
        assert_eq!(out.flusher.len(), 1, "listed once however many frames");
        let written = out.flush_dirty();
        assert_eq!(
            written,
            Written {
                frames: 3,
                bytes: 13
            }
        );
        let mut received = [0u8; 13];
        theirs.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"early one two");
        assert_eq!(out.writer.get(), Writer::Idle);
        out.detach();
    }

    #[test]
    fn a_full_socket_blocks_the_queue_and_keeps_the_partial_frame() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let out = queue(10_000, 1 << 30);
        out.attach(ours.as_raw_fd());
        let big = Bytes::from(vec![7u8; 64 * 1024]);
        for _ in 0..64 {
            assert!(out.push(big.clone()));
        }
        out.flush_dirty();
        assert_eq!(out.writer.get(), Writer::Blocked, "4 MiB does not fit");
        let queued_before = out.bytes.get();
        assert!(queued_before > 0);
        // A close keeps the partly written head so the stream stays framed.
        out.close(CloseReason::GoingAway);
        let head_left = out.head().map_or(0, |head| head.len());
        let close = ws_frame::close(1001, "going_away");
        assert_eq!(out.bytes.get(), head_left + close.len());
        // The peer reads; the rest goes out.
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            theirs.read_to_end(&mut all).unwrap();
            all
        });
        loop {
            match out.write_now().0 {
                Drain::Empty => break,
                Drain::Full => std::thread::sleep(std::time::Duration::from_millis(1)),
                Drain::Failed => panic!("the socket failed"),
            }
        }
        out.detach();
        drop(ours);
        let all = reader.join().unwrap();
        assert!(all.ends_with(&close), "the close frame comes last, whole");
        assert_eq!(
            (all.len() - close.len()) % big.len(),
            0,
            "only whole frames before it"
        );
    }
}
