//! The engine's limits and tuning defaults, each a named constant that a flag
//! can change (`chat engine --help`). Back-of-the-envelope numbers for the
//! defaults are in the comments.

/// Largest WebSocket frame (and message) a client may send.
pub const FRAME_BYTES_MAX: usize = 64 * 1024;
/// Largest HTTP request body (publish).
pub const HTTP_BODY_BYTES_MAX: usize = 64 * 1024;
/// Most connections one user may hold on one shard.
pub const CONNECTIONS_PER_USER_MAX: usize = 16;
/// Sustained sends per second per connection; bursts may reach twice this.
pub const SENDS_PER_SECOND_MAX: u32 = 200;
/// Sends of one connection awaiting their ack.
pub const SENDS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 1_024;
/// Outbound frames queued for one connection before it is a slow consumer.
pub const OUTBOUND_FRAMES_MAX: usize = 8_192;
/// Outbound bytes queued for one connection before it is a slow consumer:
/// 2,000 messages of 500 bytes, a few seconds of a busy room.
pub const OUTBOUND_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Typing indicators one connection relays per chat: at most one in this
/// interval; the others are dropped (a client sends one per keystroke).
pub const TYPING_INTERVAL_MS: u64 = 1_000;
/// How long a client shows a typing indicator unless another one comes:
/// a few intervals, so one dropped frame does not blink it off.
pub const TYPING_EXPIRES_MS: u64 = 5_000;
/// Longest typing interval or expiry, or read events' interval, in
/// milliseconds, that a flag may set.
pub const EVENT_MS_MAX: u64 = 60_000;
/// Chats whose last typing time one connection remembers; past it the
/// memory starts over (at worst one indicator too many per chat).
pub const TYPING_CHATS_PER_CONNECTION_MAX: usize = 64;
/// A chat's `reads` event carries the read positions moved in this long:
/// one frame per chat per interval, however many members read.
pub const READ_EVENTS_INTERVAL_MS: u64 = 250;
/// Chats with more members than this get no `reads` events (each would go
/// to every member); their positions are read with `GET /v1/chats/{n}/reads`.
pub const READ_EVENTS_MEMBERS_MAX: usize = 1_000;
/// Users one presence answer lists; `online_count` counts them all.
pub const PRESENCE_LIST_MAX: usize = 1_000;
/// Chats one `sync` frame may name.
pub use chat_wire::limits::SYNC_CHATS_MAX;
/// Most messages one chat's sync may return; past it the client reads
/// history over REST first and syncs from a nearer number. Below the
/// outbound queue's frame bound, so a whole sync fits in the queue.
pub const SYNC_MESSAGES_MAX: usize = 4_096;
/// Live messages held for one chat of one connection while its sync runs.
pub const SYNC_BUFFER_MAX: usize = 10_000;

/// Group commit: flush a shard's batch at this many messages...
pub const BATCH_MESSAGES_MAX: usize = 1_024;
/// ...or at this many encoded bytes (a batch of 1,024 messages of 4 KiB is
/// about 4.3 MB: the message bound comes first for most traffic), well below
/// the wire format's 32 MiB and the API's body limit...
pub const BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// How long a new batch waits for company while another of the shard's is
/// in flight (with none in flight it leaves at once). An fsync costs about
/// 250 µs here and the embedded store makes batches durable one after
/// another, so a wait of the order of one commit lets the messages that
/// arrive meanwhile share the next.
pub const BATCH_LINGER_US: u64 = 500;
/// Batches of one shard in flight to the persistence API at once.
pub const BATCHES_IN_FLIGHT_MAX: usize = 4;
/// Messages of one shard accepted but not yet durable; past it senders get
/// `overloaded`. 100,000 messages of 4 KiB at most is 400 MiB worst case.
pub const BACKLOG_MESSAGES_MAX: usize = 100_000;
/// Recent messages each chat keeps in memory for sync.
pub const RING_MESSAGES: usize = 256;
/// Recent client ids each chat remembers for idempotent resends.
pub const IDEMPOTENCY_WINDOW: usize = 1_024;
/// Retry backoff of a batch the persistence API did not commit.
pub const RETRY_BACKOFF_MIN_MS: u64 = 10;
pub const RETRY_BACKOFF_MAX_MS: u64 = 1_000;
/// Longest stretch of socket writes of the shard's flusher before it lets
/// the owner's control work run: about 25 single-frame writes over
/// loopback TCP here (9 µs per `sendmsg`). Ending a pass and starting the
/// next costs a few microseconds, so a round of 500 writes pays about 2%.
pub const FLUSHER_SLICE_US: u64 = 250;
/// How long a shard with nothing runnable polls its rings before it
/// sleeps. `task::end_pass` leaves the ending task asleep on a 5 µs timer;
/// when nothing else was runnable, glommio would otherwise put the thread
/// to sleep for those microseconds, and a virtual CPU takes far longer
/// than that to wake. The cost: this much spinning before each real sleep,
/// about 1% of a core for an idle shard (500 probe wake-ups a second).
pub const SPIN_BEFORE_PARK_US: u64 = 20;
/// Messages in the channel between two shards; a full channel makes the
/// sender wait (backpressure), never drops.
pub const SHARD_CHANNEL_CAPACITY: usize = 65_536;
/// How long an app token's lookup is cached.
pub const APP_TOKEN_CACHE_SECONDS: u64 = 30;
/// Entries of the app token cache of one shard.
pub const APP_TOKEN_CACHE_ENTRIES_MAX: usize = 10_000;
/// Submission entries of each of a shard's io_uring rings (glommio's default
/// is 128). The kernel sizes a ring's table of pending polls from it
/// (`ilog2(cq_entries) - 5` bits, the completion queue being twice the
/// submissions): at 128, 8 buckets, so with 5,000 connections each waiting
/// in a poll every cancellation walked about 600 of them, and glommio
/// cancels the timeout of each sleep it wakes from early. 4,096 makes 256
/// buckets; its rings take about 1 MiB of memory per shard.
pub const RING_DEPTH: usize = 4096;
/// Locked memory glommio registers per executor for io_uring buffers. 1 MiB
/// per shard fits the common 8 MiB memlock limit with room to spare.
pub const IO_MEMORY_BYTES: usize = 1024 * 1024;
/// How long a closing connection may take to accept its last frames and the
/// close frame before it is dropped. Long enough for a slow client to read
/// its way to the close frame and learn why; bounded because a client that
/// stopped reading would otherwise hold its socket forever.
pub const CLOSE_WRITE_SECONDS: u64 = 30;
/// How long a shard may go without a successful poll of the auth
/// service's revocation log before it refuses user tokens
/// (`revocations_stale`): twenty polls, so a restart of the auth service
/// or a blip does not refuse anyone, while a revocation is never ignored
/// for longer than this.
pub const REVOCATIONS_STALE_S: u64 = 10;

/// How long shutdown waits for batches to become durable.
pub const SHUTDOWN_DRAIN_SECONDS: u64 = 10;
