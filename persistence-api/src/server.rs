//! The persistence API's life cycle: open the store, apply migrations, serve
//! until a shutdown signal, drain in-flight requests, flush the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chat_http_conn::ConnLimits;
use tokio::net::TcpListener;

use crate::credentials::OperatorKey;
use crate::http::{AppState, router};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::store::{CommitLog, EmbeddedOptions, EmbeddedStore, ScyllaStore, Store, StoreLocation};

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub addr: SocketAddr,
    /// The embedded store's directory, for [`Server::bind`];
    /// [`Server::bind_to`] takes the store's location instead.
    pub data_dir: PathBuf,
    pub operator_key: String,
    pub limits: Limits,
    /// The auth service, whose keys let members read with their user token.
    pub auth_addr: Option<SocketAddr>,
    /// Timeouts and the handshake cap of every HTTP connection.
    pub connections: ConnLimits,
    /// Past this long without a successful revocation poll (or before the
    /// first), user tokens are refused.
    pub revocations_stale_s: u64,
    /// The auth service's longest token life, to forget old revocations.
    pub token_ttl_max_s: u64,
    /// The Redis read cache, if any (`CHAT_REDIS_URL`).
    pub cache: Option<crate::cache::CacheConfig>,
    /// Full-text search (`CHAT_SEARCH`): embedded by default.
    pub search: crate::search::SearchConfig,
}

/// An opened store, with its commit log when it keeps one (the embedded
/// store with search on).
pub struct OpenedStore {
    pub store: Arc<dyn Store>,
    pub commit_log: Option<Arc<dyn CommitLog>>,
}

/// Opens the store at `location`: the embedded store in a directory, or a
/// ScyllaDB/Cassandra keyspace. Refuses a schema newer than this build knows.
pub async fn open_store(location: &StoreLocation) -> anyhow::Result<Arc<dyn Store>> {
    Ok(open_store_with(location, false, 0).await?.store)
}

/// [`open_store`], with the embedded store writing its commit log when
/// `commit_log` (search is on), the messages of its newest
/// `recent_log_messages_max` entries kept in memory for the indexer;
/// refuses a commit log on ScyllaDB, which keeps none yet (so neither
/// search backend can be fed there).
pub async fn open_store_with(
    location: &StoreLocation,
    commit_log: bool,
    recent_log_messages_max: usize,
) -> anyhow::Result<OpenedStore> {
    Ok(match location {
        StoreLocation::Embedded(dir) => {
            let options = EmbeddedOptions {
                commit_log,
                recent_log_messages_max,
            };
            let store = Arc::new(
                EmbeddedStore::open_with(dir, options)
                    .with_context(|| format!("opening the store in {}", dir.display()))?,
            );
            OpenedStore {
                commit_log: commit_log.then(|| Arc::clone(&store) as Arc<dyn CommitLog>),
                store,
            }
        }
        StoreLocation::Scylla(_) if commit_log => anyhow::bail!(
            "search (CHAT_SEARCH=embedded, the default, or opensearch://…) is fed from the \
             embedded store's commit log, which the ScyllaDB store does not keep yet; \
             with CHAT_STORE=scylla://… set CHAT_SEARCH=off"
        ),
        StoreLocation::Scylla(config) => OpenedStore {
            store: Arc::new(
                ScyllaStore::connect(config.clone())
                    .await
                    .with_context(|| format!("opening the store at {config}"))?,
            ),
            commit_log: None,
        },
    })
}

/// A bound, migrated server that has not started serving yet; binding first
/// lets a caller learn the port (tests bind port 0) before it serves.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    connections: ConnLimits,
}

impl Server {
    /// Binds with the embedded store in `config.data_dir`.
    pub async fn bind(config: ApiConfig) -> anyhow::Result<Self> {
        let location = StoreLocation::Embedded(config.data_dir.clone());
        Self::bind_to(config, &location).await
    }

    /// Binds with the store at `location`, after applying its pending migrations.
    pub async fn bind_to(config: ApiConfig, location: &StoreLocation) -> anyhow::Result<Self> {
        config.limits.validate().map_err(anyhow::Error::msg)?;
        config.connections.validate().map_err(anyhow::Error::msg)?;
        let search_on = config.search.mode.is_on();
        let OpenedStore { store, commit_log } =
            open_store_with(location, search_on, config.search.log_memory_messages_max).await?;
        let version = store.migrate().await.context("applying migrations")?;
        tracing::info!(version, "schema is current");
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let mut metrics = Metrics::default();
        let cache = match config.cache {
            Some(cache) => Some(crate::cache::ReadCache::start(
                cache,
                metrics.registry_mut(),
            )?),
            None => None,
        };
        let index = crate::search::open_index(&config.search, &config.data_dir)
            .await
            .context("opening the search index")?;
        let search = match (commit_log, index) {
            (Some(log), Some(index)) => Some(
                crate::search::Search::start(
                    &config.search,
                    index,
                    log,
                    &config.operator_key,
                    metrics.registry_mut(),
                )
                .context("starting the search indexer")?,
            ),
            _ => None,
        };
        let metrics = Arc::new(metrics);
        let user_tokens = match config.auth_addr {
            Some(addr) => crate::user_tokens::start(
                addr,
                config.operator_key.clone(),
                crate::user_tokens::PollSettings {
                    revocations_stale_s: config.revocations_stale_s,
                    token_ttl_max_s: config.token_ttl_max_s,
                    failures: metrics.revocation_poll_failures.clone(),
                    stale: metrics.revocations_stale.clone(),
                },
            )?,
            None => Arc::default(),
        };
        let state = AppState {
            user_tokens,
            store,
            operator: OperatorKey::new(&config.operator_key),
            limits: Arc::new(config.limits),
            metrics,
            health: Arc::default(),
            batch_order: Arc::default(),
            app_tokens: Arc::default(),
            cache,
            search,
        };
        Ok(Self {
            listener,
            state,
            connections: config.connections,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests (and
    /// so their commits) finish, and flushes the store.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let store = Arc::clone(&self.state.store);
        let cache = self.state.cache.clone();
        let search = self.state.search.clone();
        tracing::info!(addr = %self.local_addr()?, "persistence API listening");
        chat_http_conn::serve(
            self.listener,
            router(self.state),
            self.connections,
            shutdown,
        )
        .await
        .context("serving HTTP")?;
        if let Some(cache) = cache {
            cache.stop().await;
        }
        if let Some(search) = search {
            search.stop().await;
        }
        store.flush().await.context("flushing the store")?;
        tracing::info!("persistence API stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}
