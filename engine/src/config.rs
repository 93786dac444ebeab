//! The engine's configuration, filled from flags by the `chat` binary.

use std::net::SocketAddr;

use crate::limits;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Every shard listens here (SO_REUSEPORT spreads connections).
    pub addr: SocketAddr,
    pub shards: usize,
    pub io_memory_bytes: usize,
    /// Submission entries of each io_uring ring of a shard.
    pub ring_depth: usize,
    /// The persistence API.
    pub api_addr: SocketAddr,
    /// The operator key, which authenticates the engine's internal calls.
    pub internal_key: String,
    /// Public keys that verify user tokens, when no auth service is named.
    pub user_token_keys: Vec<chat_token::PublicKey>,
    /// The auth service: its JWKS verifies user tokens, its log revokes them.
    pub auth_addr: Option<SocketAddr>,
    pub limits: EngineLimits,
    pub batch: BatchConfig,
    pub ring_messages: usize,
    pub idempotency_window: usize,
    /// The flusher's longest stretch of writes between scheduler passes.
    pub flusher_slice_us: u64,
    /// How long an idle shard polls its rings before its thread sleeps.
    pub spin_before_park_us: u64,
    /// Timeouts and the handshake cap of the HTTP connections (all shards).
    pub connections: chat_http_conn::ConnLimits,
    /// Past this long without a successful revocation poll, user tokens
    /// are refused (with an auth service configured).
    pub revocations_stale_s: u64,
    /// The auth service's longest token life: revocations older than it
    /// (plus the grace) revoke nothing alive and are forgotten.
    pub token_ttl_max_s: u64,
    /// Fault injection for the tests of shard death: this shard panics a
    /// moment after it starts serving. Read from the environment at start
    /// only (`CHAT_FAULT_PANIC_SHARD`, hidden from `--help`); nothing on
    /// the network can set it.
    pub fault_panic_shard: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct EngineLimits {
    pub frame_bytes_max: usize,
    pub http_body_bytes_max: usize,
    pub message_body_bytes_max: usize,
    pub recipients_max: usize,
    pub connections_per_user_max: usize,
    pub sends_per_second_max: u32,
    pub sends_in_flight_per_connection_max: usize,
    pub outbound_frames_max: usize,
    pub outbound_bytes_max: usize,
    pub close_write_s: u64,
    /// One typing indicator per chat per connection in this interval.
    pub typing_interval_ms: u64,
    /// How long clients show an indicator (sent in each one).
    pub typing_expires_ms: u64,
    /// A chat's moved read positions go to its members in one `reads`
    /// event per this interval...
    pub read_events_interval_ms: u64,
    /// ...for chats of at most this many members (0: no events).
    pub read_events_members_max: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            frame_bytes_max: limits::FRAME_BYTES_MAX,
            http_body_bytes_max: limits::HTTP_BODY_BYTES_MAX,
            message_body_bytes_max: chat_wire::limits::MESSAGE_BODY_BYTES_MAX,
            recipients_max: chat_wire::limits::RECIPIENTS_PER_MESSAGE_MAX,
            connections_per_user_max: limits::CONNECTIONS_PER_USER_MAX,
            sends_per_second_max: limits::SENDS_PER_SECOND_MAX,
            sends_in_flight_per_connection_max: limits::SENDS_IN_FLIGHT_PER_CONNECTION_MAX,
            outbound_frames_max: limits::OUTBOUND_FRAMES_MAX,
            outbound_bytes_max: limits::OUTBOUND_BYTES_MAX,
            close_write_s: limits::CLOSE_WRITE_SECONDS,
            typing_interval_ms: limits::TYPING_INTERVAL_MS,
            typing_expires_ms: limits::TYPING_EXPIRES_MS,
            read_events_interval_ms: limits::READ_EVENTS_INTERVAL_MS,
            read_events_members_max: limits::READ_EVENTS_MEMBERS_MAX,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub messages_max: usize,
    /// Encoded bytes of one batch (estimated from its messages' sizes).
    pub bytes_max: usize,
    pub linger_us: u64,
    /// Wait `linger_us` for company even when no batch is in flight.
    pub linger_always: bool,
    pub in_flight_max: usize,
    pub backlog_messages_max: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            messages_max: limits::BATCH_MESSAGES_MAX,
            bytes_max: limits::BATCH_BYTES_MAX,
            linger_us: limits::BATCH_LINGER_US,
            linger_always: false,
            in_flight_max: limits::BATCHES_IN_FLIGHT_MAX,
            backlog_messages_max: limits::BACKLOG_MESSAGES_MAX,
        }
    }
}

impl EngineConfig {
    /// Checks the configuration against the hard caps of the wire format.
    pub fn validate(&self) -> Result<(), String> {
        if self.shards == 0 {
            return Err("at least one shard is needed".into());
        }
        if self.batch.messages_max == 0
            || self.batch.messages_max > chat_wire::limits::BATCH_MESSAGES_MAX
        {
            return Err(format!(
                "batch size must be from 1 to {}",
                chat_wire::limits::BATCH_MESSAGES_MAX
            ));
        }
        // Room for one largest message: a chat always makes progress.
        let one_message_max = self.limits.message_body_bytes_max + 64 * 1024;
        if self.batch.bytes_max < one_message_max
            || self.batch.bytes_max > chat_wire::limits::BATCH_BYTES_MAX / 2
        {
            return Err(format!(
                "batch bytes must be from {one_message_max} to {}",
                chat_wire::limits::BATCH_BYTES_MAX / 2
            ));
        }
        if self.batch.in_flight_max == 0 || self.batch.backlog_messages_max == 0 {
            return Err("batches in flight and the backlog must be at least 1".into());
        }
        if self.limits.recipients_max > chat_wire::limits::RECIPIENTS_PER_MESSAGE_MAX {
            return Err(format!(
                "recipients per message may be at most {}",
                chat_wire::limits::RECIPIENTS_PER_MESSAGE_MAX
            ));
        }
        // glommio asserts a positive depth; the kernel takes at most 32,768.
        if !(1..=32_768).contains(&self.ring_depth) {
            return Err("the io_uring ring depth must be from 1 to 32768".into());
        }
        if self.limits.typing_interval_ms > limits::EVENT_MS_MAX
            || !(1..=limits::EVENT_MS_MAX).contains(&self.limits.typing_expires_ms)
        {
            return Err(format!(
                "the typing interval must be from 0 and its expiry from 1 to {} ms",
                limits::EVENT_MS_MAX
            ));
        }
        if !(1..=limits::EVENT_MS_MAX).contains(&self.limits.read_events_interval_ms) {
            return Err(format!(
                "the read events' interval must be from 1 to {} ms",
                limits::EVENT_MS_MAX
            ));
        }
        if self.flusher_slice_us == 0 {
            return Err("the flusher's slice must be at least 1 µs".into());
        }
        if self.ring_messages == 0 || self.idempotency_window == 0 {
            return Err("the ring and the idempotency window must hold at least 1 message".into());
        }
        if self.limits.outbound_frames_max <= limits::SYNC_MESSAGES_MAX {
            return Err(format!(
                "the outbound queue must hold more than a whole sync ({} frames)",
                limits::SYNC_MESSAGES_MAX
            ));
        }
        self.connections.validate()?;
        if self.revocations_stale_s == 0 || self.token_ttl_max_s == 0 {
            return Err(
                "the revocation staleness bound and the token life must be at least 1 s".into(),
            );
        }
        if self.user_token_keys.is_empty() && self.auth_addr.is_none() {
            return Err(
                "user tokens need the auth service's address or at least one public key".into(),
            );
        }
        Ok(())
    }
}
