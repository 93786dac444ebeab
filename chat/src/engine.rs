//! `chat engine`: flags and the engine's life cycle in this process.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use chat_engine::limits as engine_limits;
use chat_engine::{BatchConfig, Engine, EngineConfig, EngineLimits};
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Address every shard listens on (SO_REUSEPORT spreads connections).
    #[arg(long, env = "CHAT_ENGINE_ADDR", default_value = "127.0.0.1:8080")]
    engine_addr: SocketAddr,
    /// Shards (executors, one per core); default: the number of cores.
    #[arg(long, env = "CHAT_SHARDS")]
    shards: Option<usize>,
    /// Locked memory each shard registers for io_uring, in bytes.
    #[arg(long, env = "CHAT_IO_MEMORY_BYTES", default_value_t = engine_limits::IO_MEMORY_BYTES)]
    io_memory_bytes: usize,
    /// Submission entries of each io_uring ring of a shard (at least 1).
    #[arg(long, env = "CHAT_RING_DEPTH", default_value_t = engine_limits::RING_DEPTH)]
    ring_depth: usize,
    /// The persistence API the engine commits to.
    #[arg(long, env = "CHAT_API_ADDR", default_value = "127.0.0.1:8081")]
    api_addr: SocketAddr,
    /// The operator key, which authenticates the engine to the persistence API.
    #[arg(long, env = "CHAT_OPERATOR_KEY", hide_env_values = true)]
    operator_key: String,
    /// The auth service, whose keys verify user tokens and whose log revokes them.
    #[arg(long, env = "CHAT_AUTH_ADDR")]
    auth_addr: Option<SocketAddr>,
    /// Instead of the auth service: public keys that verify user tokens,
    /// comma-separated `kid=base64url` (no revocation without the service).
    #[arg(long, env = "CHAT_USER_TOKEN_PUBLIC_KEYS")]
    user_token_public_keys: Option<String>,
    /// Group commit: most messages in one batch.
    #[arg(long, env = "CHAT_BATCH_MESSAGES_MAX", default_value_t = engine_limits::BATCH_MESSAGES_MAX)]
    batch_messages_max: usize,
    /// Group commit: most encoded bytes in one batch (estimated).
    #[arg(long, env = "CHAT_BATCH_BYTES_MAX", default_value_t = engine_limits::BATCH_BYTES_MAX)]
    batch_bytes_max: usize,
    /// Group commit: how long a new batch waits for company while another is
    /// in flight, in microseconds (with none in flight it leaves at once).
    #[arg(long, env = "CHAT_BATCH_LINGER_US", default_value_t = engine_limits::BATCH_LINGER_US)]
    batch_linger_us: u64,
    /// Group commit: wait the linger even when no batch is in flight, for
    /// stores where each batch costs far more than each message (ScyllaDB's
    /// pays lightweight transactions per chat and batch).
    #[arg(long, env = "CHAT_BATCH_LINGER_ALWAYS", default_value_t = false)]
    batch_linger_always: bool,
    /// Batches of one shard in flight at once.
    #[arg(long, env = "CHAT_BATCHES_IN_FLIGHT_MAX", default_value_t = engine_limits::BATCHES_IN_FLIGHT_MAX)]
    batches_in_flight_max: usize,
    /// Messages of one shard accepted but not durable before senders get `overloaded`.
    #[arg(long, env = "CHAT_BACKLOG_MESSAGES_MAX", default_value_t = engine_limits::BACKLOG_MESSAGES_MAX)]
    backlog_messages_max: usize,
    /// Recent messages each chat keeps in memory for sync.
    #[arg(long, env = "CHAT_RING_MESSAGES", default_value_t = engine_limits::RING_MESSAGES)]
    ring_messages: usize,
    /// Recent client ids each chat remembers for idempotent resends.
    #[arg(long, env = "CHAT_IDEMPOTENCY_WINDOW", default_value_t = engine_limits::IDEMPOTENCY_WINDOW)]
    idempotency_window: usize,
    /// Largest WebSocket frame a client may send, in bytes.
    #[arg(long, env = "CHAT_FRAME_BYTES_MAX", default_value_t = engine_limits::FRAME_BYTES_MAX)]
    frame_bytes_max: usize,
    /// Largest HTTP publish body, in bytes.
    #[arg(long, env = "CHAT_HTTP_BODY_BYTES_MAX", default_value_t = engine_limits::HTTP_BODY_BYTES_MAX)]
    http_body_bytes_max: usize,
    /// Largest message body, in bytes of UTF-8.
    #[arg(long, env = "CHAT_MESSAGE_BODY_BYTES_MAX", default_value_t = chat_persistence::limits::wire::MESSAGE_BODY_BYTES_MAX)]
    message_body_bytes_max: usize,
    /// Most users one message's `to` may name.
    #[arg(long, env = "CHAT_RECIPIENTS_MAX", default_value_t = chat_persistence::limits::wire::RECIPIENTS_PER_MESSAGE_MAX)]
    recipients_max: usize,
    /// Most connections of one user on one shard.
    #[arg(long, env = "CHAT_CONNECTIONS_PER_USER_MAX", default_value_t = engine_limits::CONNECTIONS_PER_USER_MAX)]
    connections_per_user_max: usize,
    /// Sustained sends per second of one connection (bursts of twice this).
    #[arg(long, env = "CHAT_SENDS_PER_SECOND_MAX", default_value_t = engine_limits::SENDS_PER_SECOND_MAX)]
    sends_per_second_max: u32,
    /// Typing indicators one connection relays per chat: one per this many
    /// milliseconds (0: all), the rest dropped.
    #[arg(long, env = "CHAT_TYPING_INTERVAL_MS", default_value_t = engine_limits::TYPING_INTERVAL_MS)]
    typing_interval_ms: u64,
    /// How long clients show a typing indicator unless another comes, in
    /// milliseconds (sent in each indicator).
    #[arg(long, env = "CHAT_TYPING_EXPIRES_MS", default_value_t = engine_limits::TYPING_EXPIRES_MS)]
    typing_expires_ms: u64,
    /// A chat's read positions moved within this many milliseconds reach
    /// its online members in one `reads` event.
    #[arg(long, env = "CHAT_READ_EVENTS_INTERVAL_MS", default_value_t = engine_limits::READ_EVENTS_INTERVAL_MS)]
    read_events_interval_ms: u64,
    /// Chats with more members get no `reads` events (0: none at all).
    #[arg(long, env = "CHAT_READ_EVENTS_MEMBERS_MAX", default_value_t = engine_limits::READ_EVENTS_MEMBERS_MAX)]
    read_events_members_max: usize,
    /// Longest stretch of fan-out writes, in microseconds, before a shard
    /// lets its control work (commit answers, acks, other shards) run.
    #[arg(long, env = "CHAT_FLUSHER_SLICE_US", default_value_t = engine_limits::FLUSHER_SLICE_US)]
    flusher_slice_us: u64,
    /// Microseconds an idle shard polls for work before its thread sleeps
    /// (0: sleeps at once). Covers the short sleep that ends a slice.
    #[arg(long, env = "CHAT_SPIN_BEFORE_PARK_US", default_value_t = engine_limits::SPIN_BEFORE_PARK_US)]
    spin_before_park_us: u64,
    /// Sends of one connection awaiting their ack.
    #[arg(long, env = "CHAT_SENDS_IN_FLIGHT_MAX", default_value_t = engine_limits::SENDS_IN_FLIGHT_PER_CONNECTION_MAX)]
    sends_in_flight_max: usize,
    /// Outbound frames queued for one connection before it is cut off as a slow consumer.
    #[arg(long, env = "CHAT_OUTBOUND_FRAMES_MAX", default_value_t = engine_limits::OUTBOUND_FRAMES_MAX)]
    outbound_frames_max: usize,
    /// Outbound bytes queued for one connection before it is cut off as a slow consumer.
    #[arg(long, env = "CHAT_OUTBOUND_BYTES_MAX", default_value_t = engine_limits::OUTBOUND_BYTES_MAX)]
    outbound_bytes_max: usize,
    /// Seconds a closing connection gets to take its close frame; a client
    /// that does not read by then is dropped without it.
    #[arg(long, env = "CHAT_CLOSE_WRITE_S", default_value_t = engine_limits::CLOSE_WRITE_SECONDS)]
    close_write_s: u64,
    #[command(flatten)]
    connections: crate::cli::ConnArgs,
    /// Seconds without a successful poll of the auth service's revocation
    /// log after which user tokens are refused (`revocations_stale`) until
    /// a poll succeeds.
    #[arg(long, env = "CHAT_REVOCATIONS_STALE_S", default_value_t = engine_limits::REVOCATIONS_STALE_S)]
    revocations_stale_s: u64,
    /// The auth service's longest user token life, in seconds (the same
    /// variable as the auth service's): revocations older than it are forgotten.
    #[arg(long, env = "CHAT_TOKEN_TTL_MAX_S", default_value_t = chat_auth::limits::TOKEN_TTL_MAX_S)]
    token_ttl_max_s: u64,
    /// Test only: this shard panics a moment after start, to prove that a
    /// dead shard stops the engine.
    #[arg(long, env = "CHAT_FAULT_PANIC_SHARD", hide = true)]
    fault_panic_shard: Option<usize>,
}

fn parse_public_keys(list: &str) -> anyhow::Result<Vec<chat_token::PublicKey>> {
    let mut keys = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((kid, x)) = entry.split_once('=') else {
            bail!("user token public key {entry:?} is not `kid=base64url`");
        };
        keys.push(
            chat_token::PublicKey::from_base64url(kid, x)
                .with_context(|| format!("user token public key {kid:?}"))?,
        );
    }
    Ok(keys)
}

impl EngineArgs {
    pub fn into_config(self) -> anyhow::Result<EngineConfig> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(EngineConfig {
            addr: self.engine_addr,
            shards: self.shards.unwrap_or(cores),
            io_memory_bytes: self.io_memory_bytes,
            ring_depth: self.ring_depth,
            api_addr: self.api_addr,
            internal_key: self.operator_key,
            user_token_keys: match (&self.user_token_public_keys, self.auth_addr) {
                (Some(list), _) => parse_public_keys(list)?,
                (None, Some(_)) => Vec::new(),
                (None, None) => bail!(
                    "name the auth service (--auth-addr) or user token keys (--user-token-public-keys)"
                ),
            },
            auth_addr: if self.user_token_public_keys.is_some() {
                None
            } else {
                self.auth_addr
            },
            limits: EngineLimits {
                frame_bytes_max: self.frame_bytes_max,
                http_body_bytes_max: self.http_body_bytes_max,
                message_body_bytes_max: self.message_body_bytes_max,
                recipients_max: self.recipients_max,
                connections_per_user_max: self.connections_per_user_max,
                sends_per_second_max: self.sends_per_second_max,
                sends_in_flight_per_connection_max: self.sends_in_flight_max,
                outbound_frames_max: self.outbound_frames_max,
                outbound_bytes_max: self.outbound_bytes_max,
                close_write_s: self.close_write_s,
                typing_interval_ms: self.typing_interval_ms,
                typing_expires_ms: self.typing_expires_ms,
                read_events_interval_ms: self.read_events_interval_ms,
                read_events_members_max: self.read_events_members_max,
            },
            batch: BatchConfig {
                messages_max: self.batch_messages_max,
                bytes_max: self.batch_bytes_max,
                linger_us: self.batch_linger_us,
                linger_always: self.batch_linger_always,
                in_flight_max: self.batches_in_flight_max,
                backlog_messages_max: self.backlog_messages_max,
            },
            ring_messages: self.ring_messages,
            idempotency_window: self.idempotency_window,
            flusher_slice_us: self.flusher_slice_us,
            spin_before_park_us: self.spin_before_park_us,
            connections: self.connections.into(),
            fault_panic_shard: self.fault_panic_shard,
            revocations_stale_s: self.revocations_stale_s,
            token_ttl_max_s: self.token_ttl_max_s,
        })
    }
}

/// Raises the soft limit of open files to the hard one: every connection is
/// a descriptor, and the usual soft limit (1,024) would cap the engine there.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a live struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                limit = wanted;
            }
        }
    }
    tracing::info!(open_files_max = limit.rlim_cur, "open file limit");
}

pub async fn run(args: EngineArgs) -> anyhow::Result<()> {
    raise_open_file_limit();
    // The handlers are installed before the shards start: from the moment a
    // shard answers, SIGTERM must mean a graceful stop, not the default kill.
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut engine = Engine::start(args.into_config()?)?;
    let exits = engine
        .shard_exits()
        .context("the shards' exits are watched once")?;
    // A shard that ends on its own (a panic kills its thread) leaves its
    // chats without an owner and its inbox filling for ever: the process
    // must stop, loudly, so a supervisor restarts it. Senders of messages
    // that were not durable had no ack; everything acknowledged is durable.
    // A thread of its own, not tokio's blocking pool: the runtime would
    // wait for a blocking task at exit, and this one may never end.
    let (died_tx, mut died) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("chat-shard-watch".into())
        .spawn(move || {
            while let Some(exit) = exits.next() {
                if !exit.expected {
                    let _ = died_tx.send(exit.shard);
                    return;
                }
            }
        })
        .context("starting the shard watcher")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = interrupt.recv() => tracing::info!("Ctrl-C: shutting down"),
        died = &mut died => {
            if let Ok(shard) = died {
                tracing::error!(shard, "shard {shard} stopped unexpectedly; the engine cannot serve without it and exits");
                bail!("shard {shard} stopped unexpectedly (see the log above)");
            }
        }
    }
    engine.shutdown();
    tokio::task::spawn_blocking(move || engine.join())
        .await
        .context("waiting for the shards")??;
    tracing::info!("engine stopped");
    Ok(())
}
