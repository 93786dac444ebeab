//! The engine: a glommio executor per core ("shard"), each with its own
//! listener on the same port (SO_REUSEPORT), so a connection lives on the
//! shard that accepted it. Each chat has one owner shard, which numbers its
//! messages, batches them to the persistence API (group commit), and after
//! each batch is durable acknowledges the senders and fans the messages out.
//! Shards share nothing mutable: the only way between them is a flume
//! channel (`router`).
//!
//! Map: `shard` (life cycle, entrance, inbox loop) → `http` (upgrade,
//! publish, health, metrics) and `session` (one WebSocket's reader) → the
//! shard's two parts, which talk only by messages: `home` (the data path:
//! connections, outbound queues, flusher, sync merge) and `owner` (the
//! control path: chat state, numbering, batcher, loader). `router` carries
//! everything between shards; `frames` is the WebSocket protocol.

mod api_client;
mod auth;
mod auth_sync;
pub mod config;
pub mod error;
pub mod frames;
mod health;
#[doc(hidden)] // public for the criterion suites in bench/
pub mod home;
mod http;
mod io;
pub mod limits;
pub mod metrics;
mod owner;
mod reactor_lag;
#[doc(hidden)] // public for the fuzz targets in fuzz/
pub mod requests;
pub mod router;
mod session;
mod shard;
mod task;
mod token_checks;
mod validate;
pub mod ws_frame;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, bail};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};

pub use config::{BatchConfig, EngineConfig, EngineLimits};

use crate::metrics::ShardMetrics;
use crate::router::{Router, ShardMessage};
use crate::shard::ShardSetup;

/// A running engine.
pub struct Engine {
    router: Router,
    threads: PoolThreadHandles<()>,
    exits: Option<std::sync::mpsc::Receiver<ShardExit>>,
    stopping: Arc<AtomicBool>,
}

/// A shard's thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardExit {
    pub shard: usize,
    /// Whether [`Engine::shutdown`] had been asked for; if not, the shard
    /// died (a panic, or a return that should not happen) and the engine
    /// cannot serve its chats: the process should stop.
    pub expected: bool,
}

/// Hears every shard thread's end, however it ends. Blocking: read it on a
/// thread of its own.
pub struct ShardExits(std::sync::mpsc::Receiver<ShardExit>);

impl ShardExits {
    /// The next shard to end; `None` once every shard has ended and been reported.
    pub fn next(&self) -> Option<ShardExit> {
        self.0.recv().ok()
    }
}

/// Reports its shard's end when its thread's locals are destroyed: that
/// happens on a return and after a panic has unwound the executor (a panic
/// in any task of a shard kills its thread), so no exit goes unheard.
/// Thread-local to the shard's thread, not a process-wide panic hook, so
/// in-crate tests that panic on purpose are untouched.
struct ExitGuard {
    shard: usize,
    exits: std::sync::mpsc::Sender<ShardExit>,
    stopping: Arc<AtomicBool>,
    metrics: Arc<ShardMetrics>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.metrics.alive.set(0);
        let _ = self.exits.send(ShardExit {
            shard: self.shard,
            expected: self.stopping.load(Ordering::SeqCst),
        });
    }
}

thread_local! {
    static EXIT_GUARD: std::cell::RefCell<Option<ExitGuard>> = const { std::cell::RefCell::new(None) };
}

impl Engine {
    /// Starts every shard; returns once each listens (or fails if one cannot).
    pub fn start(config: EngineConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        // Static keys, when given; with an auth service each shard reads its JWKS.
        let verifier = if config.user_token_keys.is_empty() {
            None
        } else {
            let keys = config.user_token_keys.clone();
            Some(Arc::new(
                chat_token::Verifier::new(keys).context("user token keys")?,
            ))
        };
        let shards = config.shards;
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| flume::bounded::<ShardMessage>(limits::SHARD_CHANNEL_CAPACITY))
            .unzip();
        let router = Router::new(senders);
        let all_metrics: Arc<Vec<Arc<ShardMetrics>>> =
            Arc::new((0..shards).map(|_| Arc::default()).collect());
        let handshakes = chat_http_conn::Handshakes::new(config.connections.handshakes_max);
        let config = Arc::new(config);
        let next_id = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (exit_tx, exit_rx) = std::sync::mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let guard_stopping = Arc::clone(&stopping);

        // More shards than cores (tests force 3 on 2) cannot all be pinned.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let placement = if shards <= cores {
            PoolPlacement::MaxSpread(shards, None)
        } else {
            PoolPlacement::Unbound(shards)
        };
        let builder_router = router.clone();
        let threads = LocalExecutorPoolBuilder::new(placement)
            .io_memory(config.io_memory_bytes)
            .ring_depth(config.ring_depth)
            .spin_before_park(std::time::Duration::from_micros(config.spin_before_park_us))
            .name("chat-shard")
            .on_all_shards(move || {
                let id = next_id.fetch_add(1, Ordering::SeqCst);
                all_metrics[id].alive.set(1);
                EXIT_GUARD.with(|slot| {
                    *slot.borrow_mut() = Some(ExitGuard {
                        shard: id,
                        exits: exit_tx.clone(),
                        stopping: Arc::clone(&guard_stopping),
                        metrics: Arc::clone(&all_metrics[id]),
                    })
                });
                let setup = ShardSetup {
                    id,
                    config: Arc::clone(&config),
                    router: builder_router.clone(),
                    inbox: receivers[id].clone(),
                    all_inboxes: receivers.clone(),
                    verifier: verifier.clone(),
                    all_metrics: Arc::clone(&all_metrics),
                    handshakes: Arc::clone(&handshakes),
                };
                let ready = ready_tx.clone();
                async move { shard::run(setup, ready).await }
            })
            .map_err(|error| {
                anyhow::anyhow!("starting the shard executors (glommio needs io_uring and locked memory, see ulimit -l): {error}")
            })?;
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    let engine = Engine {
                        router,
                        threads,
                        exits: None,
                        stopping,
                    };
                    engine.shutdown();
                    let _ = engine.join();
                    bail!(message);
                }
                Err(_) => bail!("a shard stopped during start-up"),
            }
        }
        Ok(Engine {
            router,
            threads,
            exits: Some(exit_rx),
            stopping,
        })
    }

    /// Every shard's end, reported as it happens (once; later calls get `None`).
    pub fn shard_exits(&mut self) -> Option<ShardExits> {
        self.exits.take().map(ShardExits)
    }

    /// Asks every shard to drain and stop.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for shard in 0..self.router.shards() {
            self.router.try_send_to(shard, ShardMessage::Shutdown);
        }
    }

    /// Waits for every shard to stop.
    pub fn join(self) -> anyhow::Result<()> {
        for result in self.threads.join_all() {
            if result.is_err() {
                bail!("a shard thread failed");
            }
        }
        Ok(())
    }
}
