//! Command-line interface. The addresses and the operator key fall back to
//! the same environment variables as `chat` (`CHAT_ENGINE_ADDR`, ...).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for the chat engine: provisions its own app, chats, \
             subscriptions and user tokens through the public APIs, drives \
             WebSocket and HTTP traffic, checks every delivery (no gap, no \
             duplicate, nothing lost) and reports throughput and latency."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// One chat of M members (one WebSocket each); P of them publish.
    Fanout(FanoutArgs),
    /// Holds N idle connections; reports the connect rate and the engine's
    /// memory per connection.
    Idle(IdleArgs),
    /// Many small chats; traffic spread uniformly or Zipf-distributed.
    Rooms(RoomsArgs),
    /// K clients go offline, M messages are published, all reconnect and
    /// sync at once; measures the time until every one has caught up.
    Reconnect(ReconnectArgs),
    /// An app server publishes over HTTP; receivers listen over WebSocket.
    HttpPublish(HttpPublishArgs),
    /// Starts the three services itself, kills them with SIGKILL at random
    /// moments under traffic, restarts them, and checks that every
    /// acknowledged message is in history exactly once.
    Chaos(ChaosArgs),
    /// Concurrent readers of the persistence API: newest history pages,
    /// then a member's feed across many chats (with and without Redis).
    Reads(ReadsArgs),
    /// Full-text search at scale: seeds a corpus through the API's batch
    /// route, then measures queries, the index lag under a steady ingest,
    /// and that every acknowledged message is indexed once.
    Search(SearchArgs),
}

#[derive(Args, Clone)]
pub struct Common {
    /// The engine (WebSocket and HTTP publish).
    #[arg(long, env = "CHAT_ENGINE_ADDR", default_value = "127.0.0.1:8080")]
    pub engine_addr: SocketAddr,
    /// The persistence API (apps, chats, subscriptions).
    #[arg(long, env = "CHAT_API_ADDR", default_value = "127.0.0.1:8081")]
    pub api_addr: SocketAddr,
    /// The auth service (user tokens).
    #[arg(long, env = "CHAT_AUTH_ADDR", default_value = "127.0.0.1:8082")]
    pub auth_addr: SocketAddr,
    /// The operator key, which creates the run's app.
    #[arg(long, env = "CHAT_OPERATOR_KEY", hide_env_values = true)]
    pub operator_key: String,
    /// The engine's pid, for its memory and CPU time; default: the one
    /// `chat engine` process found in /proc.
    #[arg(long)]
    pub engine_pid: Option<u32>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw throughput and p99 latency over time (one point a second) to this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Provisioning requests (token mints, subscriptions) in flight at once.
    #[arg(long, default_value_t = 32)]
    pub provision_concurrency: usize,
    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Spread client sockets over this many source addresses 127.0.0.2,
    /// 127.0.0.3, ... (loopback engines only); 0: automatic, one per
    /// 10,000 connections once past 10,000.
    #[arg(long, default_value_t = 0)]
    pub source_ips: u8,
    /// After the traffic stops: longest wait for the last acks and for every
    /// receiver to get every message.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Life of the minted user tokens, in seconds (at most the auth
    /// service's maximum, 1 day by default).
    #[arg(long, default_value_t = 3_600)]
    pub token_ttl_s: u64,
}

/// How senders are paced: a total rate, or a window of unacknowledged sends.
#[derive(Args, Clone)]
pub struct Pacing {
    /// Total messages per second over all senders; without it, senders
    /// send as fast as acks allow, within --window.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Sends one connection may have awaiting their ack (the engine allows 1,024).
    #[arg(long, default_value_t = 64)]
    pub window: u32,
    /// Message body size in bytes (at least the timestamp and sequence
    /// number, about 24 bytes; at most 4,096).
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
}

#[derive(Args, Clone)]
pub struct FanoutArgs {
    /// Members of the chat, one connection each.
    #[arg(long, default_value_t = 1_000)]
    pub members: usize,
    /// Members that publish.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Read positions per second, moved by the publishers in turn, each to
    /// the newest number it has (as members reading the chat would); each
    /// is a durable write at the API and a frame to the member's
    /// connections. 0: none.
    #[arg(long, default_value_t = 0.0)]
    pub read_rate: f64,
    #[command(flatten)]
    pub pacing: Pacing,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Clone)]
pub struct RoomsArgs {
    /// Number of chats.
    #[arg(long, default_value_t = 100)]
    pub chats: usize,
    /// Members per chat, one connection each; every member may send.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Zipf exponent of the traffic over chats (0: uniform).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// Total sends awaiting their ack (without --rate).
    #[arg(long, default_value_t = 1_024)]
    pub in_flight_max: u32,
    #[command(flatten)]
    pub pacing: Pacing,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Clone)]
pub struct IdleArgs {
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Connections per user (at most 16: the engine's per-user limit per shard).
    #[arg(long, default_value_t = 1)]
    pub connections_per_user: usize,
    /// Chats to spread the users over (each user subscribed to one); 0: none.
    #[arg(long, default_value_t = 0)]
    pub chats: usize,
    /// How long to hold the connections once all are open.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub hold: Duration,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Clone)]
pub struct ReconnectArgs {
    /// Clients (users, one connection each) of the chat.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Messages published while they are offline (the engine syncs at most
    /// 10,000 per chat).
    #[arg(long, default_value_t = 500)]
    pub missed: usize,
    /// HTTP publishes in flight at once while they are offline.
    #[arg(long, default_value_t = 32)]
    pub publish_concurrency: usize,
    /// Reconnect handshakes in flight at once; 0: all clients at once.
    #[arg(long, default_value_t = 0)]
    pub reconnect_concurrency: usize,
    /// A shell command that restarts the engine, run after the missed
    /// messages are published and before the clients come back (then the
    /// run waits for the engine's /healthz): the clients sync from an engine
    /// with empty rings, so every sync reads the store (or its cache).
    #[arg(long)]
    pub restart_engine: Option<String>,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Clone)]
pub struct HttpPublishArgs {
    /// Publishes per second (total).
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Chats published to, round robin.
    #[arg(long, default_value_t = 1)]
    pub chats: usize,
    /// Receivers (WebSocket connections) per chat.
    #[arg(long, default_value_t = 100)]
    pub receivers: usize,
    /// HTTP publishes in flight at once (each on its own keep-alive connection).
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Clone)]
pub struct ReadsArgs {
    /// Chats, each with one reader (whose feed is read) as a member.
    #[arg(long, default_value_t = 50)]
    pub chats: usize,
    /// Messages published to each chat before the reads.
    #[arg(long, default_value_t = 200)]
    pub messages: usize,
    /// How long each phase (history, feed) reads.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests in flight at once (each on its own keep-alive connection).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Messages per history page.
    #[arg(long, default_value_t = 100)]
    pub page: usize,
    /// Messages per feed page.
    #[arg(long, default_value_t = 50)]
    pub feed: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 200)]
    pub body_bytes: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Clone)]
pub struct SearchArgs {
    /// Chats of the corpus.
    #[arg(long, default_value_t = 1_000)]
    pub chats: usize,
    /// Messages seeded into each chat.
    #[arg(long, default_value_t = 1_000)]
    pub messages: usize,
    /// Message body size in bytes (64 to 4,096).
    #[arg(long, default_value_t = 200)]
    pub body_bytes: usize,
    /// Messages per batch while seeding.
    #[arg(long, default_value_t = 1_024)]
    pub batch: usize,
    /// Batches in flight at once (each lane owns its share of the chats).
    #[arg(long, default_value_t = 4)]
    pub lanes: usize,
    /// How long each query phase runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Queries in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Hits per page.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Messages per second of the steady ingest that the lag is measured
    /// under; 0 skips that phase.
    #[arg(long, default_value_t = 50_000.0)]
    pub ingest_rate: f64,
    /// How long the steady ingest runs.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub ingest_duration: Duration,
    /// One probe message per interval during the steady ingest.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub probe_interval: Duration,
    /// A probe not found this long after its acknowledgement counts as lost.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub probe_timeout: Duration,
    /// Longest wait for the index to reach the commit log's head.
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub catch_up_timeout: Duration,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Clone)]
pub struct ChaosArgs {
    /// SIGKILLs in the run, each followed by a restart of the killed service.
    #[arg(long, default_value_t = 100)]
    pub kills: u32,
    /// Seed of the kill schedule (which service, when, how long down);
    /// default: from the clock. Printed at the start, to replay a run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The `chat` binary; default: the one next to this executable.
    #[arg(long)]
    pub chat_bin: Option<PathBuf>,
    /// The services' data dir (fresh, or one this command made); default:
    /// a new directory under the system's temp dir, removed after a run
    /// that found nothing.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The persistence API's store: `embedded` or `scylla://host:port/keyspace`.
    #[arg(long, env = "CHAT_STORE", default_value = "embedded")]
    pub store: String,
    /// Engine shards.
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// Chats; each has its own publishers, readers and churned member.
    #[arg(long, default_value_t = 4)]
    pub chats: usize,
    /// WebSocket publishers per chat.
    #[arg(long, default_value_t = 2)]
    pub ws_publishers: usize,
    /// HTTP publishers per chat (one request at a time each).
    #[arg(long, default_value_t = 1)]
    pub http_publishers: usize,
    /// Syncing readers per chat.
    #[arg(long, default_value_t = 2)]
    pub readers: usize,
    /// New messages per second over all publishers (resends not counted).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Unanswered sends one WebSocket publisher may have. Keep the sum
    /// per chat far below the engine's idempotency window (1,024
    /// messages), or a resend after a long outage may find its id forgotten.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Message body size in bytes (at least the id).
    #[arg(long, default_value_t = 48)]
    pub body_bytes: usize,
    /// Traffic between a service being back and the next kill: uniform
    /// in [min, max] milliseconds.
    #[arg(long, default_value_t = 300)]
    pub kill_gap_ms_min: u64,
    #[arg(long, default_value_t = 1_500)]
    pub kill_gap_ms_max: u64,
    /// How long a killed service stays down: uniform in [0, max] milliseconds.
    #[arg(long, default_value_t = 300)]
    pub down_ms_max: u64,
    /// A full check at rest after every this many kills (0: only at the end).
    #[arg(long, default_value_t = 10)]
    pub checkpoint_every: u32,
    /// Readers drop their connection and sync again this often.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub reader_reconnect: Duration,
    /// Longest a service may take to answer /healthz after a (re)start.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub ready_timeout: Duration,
    /// Longest time without a new acknowledgement after a restart before
    /// the system counts as wedged.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub stall_timeout: Duration,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// "20", "20s", "1.5s", "500ms", "2m".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 20, 20s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "s" | "" => value,
        "ms" => value / 1_000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3_600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    if !seconds.is_finite() || !(0.0..=7.0 * 86_400.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }
}
