//! One shard: an executor pinned to a core, its listener and the access
//! checks at its entrance (user and app tokens), and its two parts, each
//! with its own state: the home part (`home::HomeShard`: connections and
//! the flusher, the data path) and the owner part (`owner::OwnerShard`:
//! chats, batches and the commit stream, the control path). The parts talk
//! by the messages other shards send them (`ToHome`, `ToOwner`); the
//! inbox loop here is the only entrance from other shards and hands each
//! message to its part.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;

use crate::api_client::ApiClient;
use crate::auth::AppTokenCache;
use crate::config::EngineConfig;
use crate::home::HomeShard;
use crate::home::outbound::CloseReason;
use crate::limits::SHUTDOWN_DRAIN_SECONDS;
use crate::metrics::ShardMetrics;
use crate::owner::{self, OwnerShard};
use crate::router::{Router, ShardMessage};

/// How long after start a shard named by `fault_panic_shard` panics: long
/// enough to be serving, so the test sees a running engine lose a shard.
const FAULT_PANIC_DELAY: Duration = Duration::from_millis(500);

pub struct Shard {
    pub id: usize,
    pub config: Arc<EngineConfig>,
    pub router: Router,
    /// The persistence API, for what connections ask of it (memberships,
    /// leaving a chat, app tokens); commits go by the owner part's own.
    pub api: ApiClient,
    /// The syncs' membership checks waiting for a call to the API.
    pub memberships: crate::session::MembershipChecks,
    /// Verifies user tokens; replaced when the auth service's keys change.
    pub verifier: RefCell<Arc<chat_token::Verifier>>,
    /// Where the shard's handshakes and refreshes check their tokens.
    pub token_checks: crate::token_checks::TokenChecks,
    /// The auth service, when one is configured.
    pub auth: Option<ApiClient>,
    pub revocations: RefCell<chat_token::RevocationList>,
    /// When the keys were last read from the auth service.
    pub keys_read_at: Cell<Instant>,
    /// When the revocation log was last read to its end (see `auth_sync`).
    pub revocations_synced_at: Cell<Instant>,
    pub metrics: Arc<ShardMetrics>,
    pub all_metrics: Arc<Vec<Arc<ShardMetrics>>>,
    pub owner: Rc<OwnerShard>,
    pub home: Rc<HomeShard>,
    pub app_tokens: RefCell<AppTokenCache>,
    /// The engine's connections in their handshake, shared by every shard.
    pub handshakes: Arc<chat_http_conn::Handshakes>,
    inboxes: Vec<flume::Receiver<ShardMessage>>,
}

/// What a shard needs from the process that starts it.
pub struct ShardSetup {
    pub id: usize,
    pub config: Arc<EngineConfig>,
    pub router: Router,
    pub inbox: flume::Receiver<ShardMessage>,
    /// Every shard's inbox, to report their depths in metrics.
    pub all_inboxes: Vec<flume::Receiver<ShardMessage>>,
    /// Static keys; `None` when the auth service provides them.
    pub verifier: Option<Arc<chat_token::Verifier>>,
    pub all_metrics: Arc<Vec<Arc<ShardMetrics>>>,
    pub handshakes: Arc<chat_http_conn::Handshakes>,
}

impl Shard {
    pub fn is_shutting_down(&self) -> bool {
        self.owner.is_shutting_down()
    }

    /// Gauges read at render time rather than kept on the hot path.
    pub fn refresh_gauges(&self) {
        for (metrics, inbox) in self.all_metrics.iter().zip(&self.inboxes) {
            metrics.inbox_depth.set(inbox.len() as u64);
        }
    }

    async fn handle(&self, message: ShardMessage) {
        match message {
            ShardMessage::Owner(message) => self.owner.handle(message),
            ShardMessage::Home(message) => self.home.handle(message).await,
            ShardMessage::Shutdown => self.owner.stop_accepting(),
        }
    }
}

/// Runs one shard until shutdown. `ready` hears whether the listener bound.
pub async fn run(setup: ShardSetup, ready: std::sync::mpsc::Sender<Result<(), String>>) {
    let auth = setup
        .config
        .auth_addr
        .map(|addr| ApiClient::new(addr, &setup.config.internal_key));
    let mut revocations = chat_token::RevocationList::new();
    let verifier = match (&auth, setup.verifier) {
        (Some(auth), _) => match crate::auth_sync::initial(auth).await {
            Ok((verifier, pages)) => {
                for page in pages {
                    revocations.apply_page(page);
                }
                Arc::new(verifier)
            }
            Err(error) => {
                let _ = ready.send(Err(format!("shard {}: {error}", setup.id)));
                return;
            }
        },
        (None, Some(verifier)) => verifier,
        (None, None) => unreachable!("the configuration was validated"),
    };
    let listener = match TcpListener::bind(setup.config.addr) {
        Ok(listener) => listener,
        Err(error) => {
            let _ = ready.send(Err(format!(
                "shard {} cannot listen on {}: {error}",
                setup.id, setup.config.addr
            )));
            return;
        }
    };
    let metrics = Arc::clone(&setup.all_metrics[setup.id]);
    let home = Rc::new(HomeShard::new(
        setup.id,
        Arc::clone(&setup.config),
        Arc::clone(&metrics),
    ));
    let owner = Rc::new(OwnerShard::new(
        setup.id,
        Arc::clone(&setup.config),
        setup.router.clone(),
        Arc::clone(&metrics),
        Rc::clone(&home),
    ));
    let token_checks = crate::token_checks::TokenChecks::start(Duration::from_micros(
        setup.config.flusher_slice_us,
    ));
    let shard = Rc::new(Shard {
        id: setup.id,
        api: ApiClient::new(setup.config.api_addr, &setup.config.internal_key),
        memberships: Default::default(),
        metrics,
        all_metrics: setup.all_metrics,
        config: setup.config,
        router: setup.router,
        verifier: RefCell::new(verifier),
        token_checks,
        auth,
        revocations: RefCell::new(revocations),
        keys_read_at: Cell::new(Instant::now()),
        revocations_synced_at: Cell::new(Instant::now()),
        owner,
        home,
        app_tokens: RefCell::new(AppTokenCache::default()),
        handshakes: setup.handshakes,
        inboxes: setup.all_inboxes,
    });
    crate::task::spawn(crate::auth_sync::run(Rc::clone(&shard)));
    if shard.config.fault_panic_shard == Some(shard.id) {
        let id = shard.id;
        crate::task::spawn(async move {
            glommio::timer::sleep(FAULT_PANIC_DELAY).await;
            panic!("shard {id}: fault injected by CHAT_FAULT_PANIC_SHARD");
        });
    }
    let _ = ready.send(Ok(()));
    tracing::info!(shard = shard.id, addr = %shard.config.addr, "shard listening");

    let acceptor = glommio::spawn_local(accept_loop(Rc::clone(&shard), listener));
    let slice = Duration::from_micros(shard.config.flusher_slice_us);
    let flusher =
        glommio::spawn_local(Rc::clone(&shard.home.flusher).run(Arc::clone(&shard.metrics), slice));
    let probe = glommio::spawn_local(crate::reactor_lag::run(Arc::clone(&shard.metrics)));
    let inbox = setup.inbox;
    // A burst of inbox messages (deliveries to many local connections each)
    // is fan-out work too: it lets the rings be polled every slice. While a
    // burst lasts, the flusher holds its next round back (a little), so that
    // each write carries every message of the burst.
    let mut slice = crate::task::Slice::new(slice);
    let mut burst = None;
    while !shard.is_shutting_down() {
        let message = match inbox.try_recv() {
            Ok(message) => message,
            Err(_) => {
                burst = None;
                let next = inbox.recv_async().await;
                slice.restart();
                match next {
                    Ok(message) => message,
                    Err(_) => break,
                }
            }
        };
        if burst.is_none() {
            burst = Some(shard.home.flusher.delivering());
        }
        shard.handle(message).await;
        slice.step().await;
    }
    drop(burst);
    acceptor.cancel().await;
    shutdown(&shard, &inbox).await;
    flusher.cancel().await;
    probe.cancel().await;
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                // Past the handshake cap the socket is dropped here, closed
                // before it costs anything but the accept.
                let Some(watch) =
                    chat_http_conn::Watch::admit(&shard.handshakes, &shard.config.connections)
                else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                crate::task::spawn(crate::http::serve(Rc::clone(&shard), stream, watch));
            }
            Err(error) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tracing::warn!(shard = shard.id, %error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Drain: commit what was accepted (the inbox keeps running so acks and
/// deliveries from other shards still arrive), then close every connection
/// with `going_away` and give the writers a moment to send the close.
async fn shutdown(shard: &Rc<Shard>, inbox: &flume::Receiver<ShardMessage>) {
    tracing::info!(shard = shard.id, "shard draining");
    owner::flush(&shard.owner);
    let deadline = Instant::now() + Duration::from_secs(SHUTDOWN_DRAIN_SECONDS);
    while !shard.owner.is_drained() && Instant::now() < deadline {
        serve_inbox_for(shard, inbox, Duration::from_millis(5)).await;
        owner::flush(&shard.owner);
    }
    if !shard.owner.is_drained() {
        tracing::warn!(
            shard = shard.id,
            backlog = shard.owner.chats.borrow().backlog,
            "shutdown with messages not durable; their senders had no ack"
        );
    }
    let connections = &shard.home.connections;
    connections.borrow().close_all(CloseReason::GoingAway);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !connections.borrow().is_empty() && Instant::now() < deadline {
        serve_inbox_for(shard, inbox, Duration::from_millis(5)).await;
    }
    tracing::info!(shard = shard.id, "shard stopped");
}

async fn serve_inbox_for(
    shard: &Rc<Shard>,
    inbox: &flume::Receiver<ShardMessage>,
    limit: Duration,
) {
    if let Some(Ok(message)) = crate::io::with_timeout(limit, inbox.recv_async()).await {
        shard.handle(message).await;
    }
}
