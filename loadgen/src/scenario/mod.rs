//! The scenarios, and what they share: raising the open-file limit, the
//! engine's process and metrics, waiting for the last acks and deliveries,
//! and the chat-traffic run behind `fanout` and `rooms`.

mod chaos;
mod chat_traffic;
mod closed_loop;
mod http_publish;
mod idle;
mod reads;
mod reconnect;
mod search;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::cli::{Command, Common};
use crate::provision::Provisioner;
use crate::stats::Shared;
use crate::sys;

/// Runs a scenario; Ok(true) when every check passed.
pub async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Fanout(args) => chat_traffic::fanout(args).await,
        Command::Rooms(args) => chat_traffic::rooms(args).await,
        Command::Idle(args) => idle::run(args).await,
        Command::Reconnect(args) => reconnect::run(args).await,
        Command::HttpPublish(args) => http_publish::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
        Command::Reads(args) => reads::run(args).await,
        Command::Search(args) => search::run(args).await,
    }
}

/// Raises the open-file limit for `connections` sockets (plus margin) and
/// checks the engine's; fails early when ours cannot hold them.
pub fn prepare_fds(connections: usize, engine_pid: Option<u32>) -> anyhow::Result<()> {
    let want = connections as u64 + 1_024;
    let have = sys::raise_nofile(want.max(65_536));
    if have < want {
        bail!(
            "{connections} connections need about {want} open files, but the limit is {have} \
             (raise it with `ulimit -n`, as root `ulimit -Hn` too)"
        );
    }
    if let Some(pid) = engine_pid
        && let Some(limit) = sys::nofile_of(pid)
        && limit < want
    {
        eprintln!(
            "warning: the engine (pid {pid}) may open only {limit} files; {connections} connections \
             need more: start `chat up` after `ulimit -n {}`",
            want.max(65_536)
        );
    }
    Ok(())
}

/// The engine's counters worth comparing before and after a run.
const ENGINE_COUNTERS: &[&str] = &[
    "chat_engine_connections",
    "chat_engine_deliveries_total",
    "chat_engine_messages_committed_total",
    "chat_engine_slow_consumer_closes_total",
    "chat_engine_overloaded_total",
    "chat_engine_batch_retries_total",
    "chat_engine_frames_out_total",
    "chat_engine_syncs_from_ring_total",
    "chat_engine_syncs_from_store_total",
    "chat_engine_commit_latency_us_sum",
    "chat_engine_commit_latency_us_count",
    "chat_engine_batch_messages_sum",
    "chat_engine_batch_messages_count",
];
/// The persistence API's, for the share of the commit spent in the store.
const API_COUNTERS: &[&str] = &[
    "chat_api_batch_commit_seconds_sum",
    "chat_api_batch_commit_seconds_count",
];

/// Histograms whose quantiles over a run are reported: the engine's (in
/// microseconds) and the API's store commit (in seconds).
const ENGINE_HISTOGRAMS: &[&str] = &[
    "chat_engine_commit_latency_us",
    "chat_engine_commit_api_us",
    "chat_engine_reactor_lag_us",
    "chat_engine_reactor_lag_on_cpu_us",
];
const API_HISTOGRAMS: &[&str] = &["chat_api_batch_commit_seconds"];

/// One reading of the engine's and the API's metrics: the counters above,
/// and the histograms' cumulative buckets.
#[derive(Default)]
pub struct Counters {
    values: HashMap<&'static str, f64>,
    histograms: HashMap<&'static str, Vec<(f64, f64)>>,
}

impl Counters {
    pub fn get(&self, name: &str) -> Option<&f64> {
        self.values.get(name)
    }
}

pub async fn engine_counters(prov: &Provisioner) -> Counters {
    let mut out = Counters::default();
    let texts = [
        (
            prov.engine_metrics().await,
            ENGINE_COUNTERS,
            ENGINE_HISTOGRAMS,
        ),
        (prov.api_metrics().await, API_COUNTERS, API_HISTOGRAMS),
    ];
    for (text, counters, histograms) in texts {
        let Some(text) = text else { continue };
        for name in counters {
            if let Some(value) = sys::metric_sum(&text, name) {
                out.values.insert(*name, value);
            }
        }
        for name in histograms {
            out.histograms
                .insert(*name, sys::histogram_buckets(&text, name));
        }
    }
    out
}

/// after − before of each counter, the means, and the histograms' p50,
/// p99 and p99.9 over the run (each the upper bound of its bucket), as JSON.
pub fn counters_delta(before: &Counters, after: &Counters) -> Value {
    let mut map = serde_json::Map::new();
    for name in ENGINE_COUNTERS.iter().chain(API_COUNTERS) {
        if let (Some(a), Some(b)) = (after.get(name), before.get(name)) {
            map.insert((*name).to_string(), json!(a - b));
        }
    }
    let delta = |name: &str| {
        after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    let batches = delta("chat_engine_commit_latency_us_count");
    if batches > 0.0 {
        let mean_commit = delta("chat_engine_commit_latency_us_sum") / batches;
        let mean_batch = delta("chat_engine_batch_messages_sum") / batches;
        map.insert("mean_commit_latency_us".into(), json!(mean_commit.round()));
        map.insert(
            "mean_batch_messages".into(),
            json!((mean_batch * 10.0).round() / 10.0),
        );
    }
    let api_commits = delta("chat_api_batch_commit_seconds_count");
    if api_commits > 0.0 {
        let mean = delta("chat_api_batch_commit_seconds_sum") / api_commits * 1e6;
        map.insert("mean_api_commit_us".into(), json!(mean.round()));
    }
    for name in ENGINE_HISTOGRAMS.iter().chain(API_HISTOGRAMS) {
        let (Some(b), Some(a)) = (before.histograms.get(name), after.histograms.get(name)) else {
            continue;
        };
        // Reported in microseconds whatever the histogram's unit.
        let (key, scale) = match name.strip_suffix("_seconds") {
            Some(stem) => (format!("{stem}_us"), 1e6),
            None => ((*name).to_string(), 1.0),
        };
        for (label, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
            if let Some(bound) = sys::histogram_quantile(b, a, q) {
                let value = if bound.is_finite() {
                    json!((bound * scale).round())
                } else {
                    json!("+Inf")
                };
                map.insert(format!("{key}_{label}"), value);
            }
        }
    }
    Value::Object(map)
}

/// CPU time of the engine process so far, if known.
pub fn engine_cpu(pid: Option<u32>) -> Option<Duration> {
    pid.and_then(sys::cpu_of)
}

/// After the traffic: waits for the last acks, reads each chat's stored
/// message count (the truth every receiver must reach), then waits for the
/// receivers to catch up. Returns chat → last number.
pub async fn settle(
    shared: &Shared,
    prov: &Provisioner,
    chats: &[u64],
    grace: Duration,
) -> anyhow::Result<HashMap<u64, u64>> {
    let deadline = Instant::now() + grace;
    while shared.in_flight.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unanswered = shared.in_flight.get();
    let counts = prov.messages_counts(chats).await?;
    let expected: HashMap<u64, u64> = chats.iter().copied().zip(counts).collect();
    {
        let mut stats = shared.stats.borrow_mut();
        if unanswered > 0 {
            stats.problem(|| {
                format!("{unanswered} sends had no answer (ack or error) after the grace period")
            });
        }
        let acked: Vec<(u64, u64)> = stats.chat_acked.iter().map(|(c, n)| (*c, *n)).collect();
        for (chat, number) in acked {
            let stored = expected.get(&chat).copied().unwrap_or(0);
            if number > stored {
                stats.misrouted += 1;
                stats.problem(|| {
                    format!(
                        "chat {chat}: number {number} was acknowledged but the store holds {stored}"
                    )
                });
            }
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        let (behind, _) = shared.stats.borrow().behind(&expected);
        if behind == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(expected)
}

/// Fails with the kinds of connect errors, if any.
pub fn check_connects<T>(results: Vec<Result<T, String>>) -> anyhow::Result<Vec<T>> {
    let mut ok = Vec::with_capacity(results.len());
    let mut failures: HashMap<String, usize> = HashMap::new();
    for result in results {
        match result {
            Ok(value) => ok.push(value),
            Err(kind) => *failures.entry(kind).or_insert(0) += 1,
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} connections failed: {failures:?}",
            failures.values().sum::<usize>(),
            ok.len() + failures.values().sum::<usize>()
        );
    }
    Ok(ok)
}

/// Tokens of `common` as `&str`s, for the connector.
pub fn as_strs(tokens: &[String]) -> Vec<&str> {
    tokens.iter().map(String::as_str).collect()
}

pub fn check_common(common: &Common) -> anyhow::Result<()> {
    for (name, addr) in [
        ("engine", common.engine_addr),
        ("API", common.api_addr),
        ("auth", common.auth_addr),
    ] {
        if !addr.ip().is_loopback() {
            eprintln!("note: the {name} address {addr} is not on loopback");
        }
    }
    Ok(())
}
