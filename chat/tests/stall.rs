//! The stall test: two shards under steady fan-out to a large chat (members
//! on both shards, so every message crosses shards), HTTP publishes waiting
//! on their durable answers, and each shard's periodic probe timer
//! (`chat_engine_reactor_lag_us`, and its part spent on a core,
//! `_on_cpu_us`): no timer may fire more than 20 ms late for the engine's
//! own work, and every member gets every message.
//!
//! The load is sized so that one round of fan-out writes (2,000 members
//! per shard, about 10 µs a write in a debug build) takes longer than the
//! bound, while the machine keeps spare CPU: a timer late because the
//! operating system gave the shard's thread no core would say nothing of
//! the engine. `CHAT_TEST_STALL_S` sets the duration (default 20 s; the
//! closing runs use several minutes), `CHAT_TEST_STALL_MEMBERS` the chat's
//! size (4,000), `CHAT_TEST_STALL_RATE` the publishes per second (10).
//! With `CHAT_FLUSHER_SLICE_US=1000000` (one unbroken round of writes, as
//! before the flusher ended its passes) it fails: each round holds the
//! shard's timers, answers and inbox for the whole round.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Options, System, metric_sum};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// The bound on any timer's lateness.
const LAG_BOUND_US: u64 = 20_000;
const PUBLISHERS: usize = 4;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Per shard: (observations at or below `bound_us`, all observations) of
/// one of the probe's histograms.
fn counts(metrics: &str, histogram: &str, bound_us: u64) -> Vec<(u64, u64)> {
    let prefix = format!("{histogram}_bucket{{shard=\"");
    let mut shards: Vec<(u64, u64)> = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let (shard, rest) = rest.split_once('"').unwrap();
        let shard: usize = shard.parse().unwrap();
        let value: u64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
        if shards.len() <= shard {
            shards.resize(shard + 1, (0, 0));
        }
        if rest.contains(&format!("le=\"{bound_us}\"")) {
            shards[shard].0 = value;
        } else if rest.contains("le=\"+Inf\"") {
            shards[shard].1 = value;
        }
    }
    shards
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_timer_fires_late_under_fan_out() {
    let duration = Duration::from_secs(env_or("CHAT_TEST_STALL_S", 20));
    let members = env_or("CHAT_TEST_STALL_MEMBERS", 4_000) as usize;
    let rate_per_s = env_or("CHAT_TEST_STALL_RATE", 10).max(1);
    let mut engine_env = vec![];
    if let Ok(slice) = std::env::var("CHAT_FLUSHER_SLICE_US") {
        engine_env.push(("CHAT_FLUSHER_SLICE_US", slice));
    }
    let system = Arc::new(
        System::start_with(Options {
            extra_engine_env: engine_env,
            // The bound is the engine's own scheduling, measured with spare
            // CPU; the API's search index commits (a few ms of CPU each,
            // five a second under this trickle) would only take cores away.
            extra_api_env: vec![("CHAT_SEARCH", "off".into())],
            ..Options::default()
        })
        .await,
    );
    let chat = system.create_chat().await;
    for member in 0..members {
        system.subscribe(chat, &format!("m{member}")).await;
    }

    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for member in 0..members {
        let mut client = system.connect(&format!("m{member}")).await;
        let received = Arc::clone(&received);
        readers.push(tokio::spawn(async move {
            while let Some(frame) = client.socket.next().await {
                match frame {
                    Ok(Message::Text(text)) if text.contains("\"type\":\"message\"") => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Message::Close(close)) => panic!("member closed: {close:?}"),
                    Ok(_) => {}
                    Err(error) => panic!("member's socket: {error}"),
                }
            }
        }));
    }

    let before = system.engine_metrics().await;
    let started = Instant::now();
    let period = Duration::from_micros(1_000_000 * PUBLISHERS as u64 / rate_per_s);
    let mut publishers = Vec::new();
    for publisher in 0..PUBLISHERS {
        let system = Arc::clone(&system);
        publishers.push(tokio::spawn(async move {
            let mut published = 0u64;
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while started.elapsed() < duration {
                ticks.tick().await;
                let body = json!({
                    "from": format!("p{publisher}"),
                    "body": format!("{published} {}", "x".repeat(100)),
                });
                let (status, answer) = system.publish(chat, body).await;
                assert_eq!(status, 201, "{answer}");
                published += 1;
            }
            published
        }));
    }
    let mut published = 0;
    for publisher in publishers {
        published += publisher.await.unwrap();
    }

    let expected = published * members as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        received.load(Ordering::Relaxed),
        expected,
        "every member gets every one of the {published} messages"
    );
    let after = system.engine_metrics().await;
    let slices = metric_sum(&after, "chat_engine_flusher_slices_total")
        - metric_sum(&before, "chat_engine_flusher_slices_total");
    // Every probe: the part of its lateness the shard spent on a core (the
    // engine's own scheduling) stays within the bound. And the wall-clock
    // lateness, which adds time the thread spent off a core (other
    // processes, a virtual CPU waking late: this machine's, not the
    // engine's), stays within it for all but one probe in a thousand; a
    // shard that parked with work to do would fail that.
    for (histogram, allowed_per_mille) in [
        ("chat_engine_reactor_lag_on_cpu_us", 0),
        ("chat_engine_reactor_lag_us", 1),
    ] {
        let before = counts(&before, histogram, LAG_BOUND_US);
        let after_counts = counts(&after, histogram, LAG_BOUND_US);
        assert_eq!(after_counts.len(), 2, "{after}");
        for (shard, (&(within_0, all_0), &(within_1, all_1))) in
            before.iter().zip(&after_counts).enumerate()
        {
            let (within, all) = (within_1 - within_0, all_1 - all_0);
            // The probe fires every 2 ms: a shard that stalled would have fewer.
            assert!(
                all as f64 >= duration.as_secs_f64() * 100.0,
                "shard {shard}: only {all} probe timers fired in {duration:?}"
            );
            let buckets: Vec<&str> = after
                .lines()
                .filter(|l| l.starts_with(&format!("{histogram}_bucket{{shard=\"{shard}\"")))
                .collect();
            assert!(
                (all - within) * 1_000 <= all * allowed_per_mille,
                "shard {shard}: {} of {all} probes over {} ms in {histogram} \
                 ({published} messages to {members} members, {slices} flusher slices): \
                 {buckets:#?}",
                all - within,
                LAG_BOUND_US / 1_000
            );
        }
    }
    eprintln!(
        "{published} messages to {members} members in {:?}; {slices} flusher slices",
        started.elapsed()
    );
    for reader in readers {
        reader.abort();
    }
}
