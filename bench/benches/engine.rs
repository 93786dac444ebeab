//! The engine's hot paths, in process:
//! - decoding a client `send` frame, encoding a `message` frame;
//! - rkyv encode and decode of a batch of 1024 messages of 200 bytes;
//! - fan-out of one message to 1,000 local connections: queueing the shared
//!   frame on each connection's outbound queue, then the flusher's round
//!   writing each queue to its socket (Unix socket pairs, read back by the
//!   benchmark outside the timing).

use std::collections::HashSet;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_bench::batch;
use chat_engine::frames;
use chat_engine::home::Home;
use chat_engine::home::flusher::Flusher;
use chat_engine::home::outbound::Outbound;
use chat_engine::metrics::ShardMetrics;
use chat_engine::router::{Delivery, Targets};
use chat_wire::limits::MESSAGE_BODY_BYTES_MAX;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BODY: &str = "The quick brown fox jumps over the lazy dog while the engine fans the message out to every \
                    member of the room, encoded once and shared by all of their connections, two hundred bytes";

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frames");
    group.throughput(Throughput::Elements(1));
    let send =
        format!(r#"{{"type":"send","chat":7,"body":"{BODY}","to":["bob","carol"],"id":"c-123"}}"#);
    group.bench_function("decode_send", |b| {
        b.iter(|| frames::parse_client_frame(&send).unwrap())
    });
    let sent_at = frames::rfc3339(1_764_000_000_000_000);
    group.bench_function("encode_message", |b| {
        b.iter(|| frames::message(7, 42, "alice", BODY, &sent_at))
    });
    group.finish();
}

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_1024x200b");
    let body_bytes = 200;
    let sample = batch(1, 1, 1, 1024, body_bytes);
    let encoded = chat_wire::encode_batch(&sample, MESSAGE_BODY_BYTES_MAX).unwrap();
    group.throughput(Throughput::Elements(1024));
    group.bench_function("rkyv_encode", |b| {
        b.iter(|| chat_wire::encode_batch(&sample, MESSAGE_BODY_BYTES_MAX).unwrap())
    });
    group.bench_function("rkyv_decode", |b| {
        b.iter(|| chat_wire::decode_batch(&encoded, MESSAGE_BODY_BYTES_MAX).unwrap())
    });
    group.finish();
}

/// Raises the open-file limit to its hard limit: the fan-out bench holds
/// two descriptors per connection.
fn raise_open_files() {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn fanout(c: &mut Criterion) {
    const MEMBERS: usize = 1_000;
    raise_open_files();
    let metrics = ShardMetrics::default();
    let flusher = Rc::new(Flusher::default());
    let mut home = Home::default();
    let mut peers = Vec::with_capacity(MEMBERS);
    let mut sockets = Vec::with_capacity(MEMBERS);
    let mut members = HashSet::with_capacity(MEMBERS);
    for index in 0..MEMBERS {
        let user = format!("user-{index}");
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        let outbound = Rc::new(Outbound::new(1 << 20, 1 << 30, Rc::clone(&flusher)));
        outbound.attach(ours.as_raw_fd());
        home.register(1, &user, 0, outbound, 16).unwrap();
        sockets.push(ours);
        peers.push(theirs);
        members.insert(user);
    }
    let members = Arc::new(members);
    let sent_at = frames::rfc3339(1_764_000_000_000_000);
    let mut number = 0;
    let mut received = vec![0u8; 64 * 1024];
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    // Queueing the shared frame on every connection and one flusher round
    // writing each to its socket; the peers read outside the timing.
    group.bench_function("one_message_to_1000_local_sockets", |b| {
        b.iter_custom(|iterations| {
            let mut measured = Duration::ZERO;
            for _ in 0..iterations {
                number += 1;
                let delivery = Arc::new(Delivery {
                    app: 1,
                    chat: 1,
                    number,
                    sender: "user-0".into(),
                    recipients: None,
                    frame: frames::message(1, number, "user-0", BODY, &sent_at),
                    targets: Targets::Subscribers(Arc::clone(&members)),
                });
                let started = Instant::now();
                home.deliver(&delivery, &metrics);
                let written = flusher.flush_all();
                measured += started.elapsed();
                assert_eq!(written.frames, MEMBERS as u64);
                for peer in &mut peers {
                    peer.read_exact(&mut received[..delivery.frame.len()])
                        .expect("the frame arrived");
                }
            }
            measured
        });
    });
    group.finish();
}

criterion_group!(benches, frames, batches, fanout);
criterion_main!(benches);
