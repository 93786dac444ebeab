//! Command-line interface. Every flag falls back to an environment variable
//! named `CHAT_<FLAG>`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use chat_persistence::limits::{self, Limits};
use chat_persistence::search;
use chat_persistence::store::StoreLocation;
use chat_persistence::{ApiConfig, Server, shutdown_signal};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chat",
    version,
    about = "A real-time chat engine: every service in one binary."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the whole system on the embedded store (the quickstart).
    Up(UpArgs),
    /// Run the persistence API: REST, history, and the engine's batch endpoint.
    Api(ApiArgs),
    /// Run the real-time engine: WebSocket connections, numbering, fan-out.
    Engine(crate::engine::EngineArgs),
    /// Run the auth service: user tokens, key rotation, revocation.
    Auth(crate::auth::AuthArgs),
    /// Apply pending schema migrations and exit.
    Migrate(StoreArgs),
    /// Mark messages the store lost (below a chat's count, no row) as lost,
    /// so that the chat's history and its engine load work again. Run it
    /// while the API is stopped, or at least while nothing writes the chat.
    Repair(RepairArgs),
    /// Rebuild the embedded search index from the store, with a progress
    /// bar: after the index was lost, or for history written while search
    /// was off. Run it while the API is stopped (it refuses otherwise).
    Reindex(ReindexArgs),
}

#[derive(Args, Clone)]
pub struct ReindexArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    search: SearchArgs,
}

#[derive(Args, Clone)]
pub struct RepairArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The app whose chats to repair.
    #[arg(long)]
    app: u64,
    /// One chat; without it, every chat of the app.
    #[arg(long)]
    chat: Option<u64>,
}

#[derive(Args, Clone)]
pub struct StoreArgs {
    /// Directory of the embedded store.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `embedded` (the default), or a ScyllaDB/Cassandra keyspace:
    /// `scylla://host:port[,host:port…]/keyspace[?replication=simple:N|DC:N,…]`.
    #[arg(long, env = "CHAT_STORE", default_value = "embedded")]
    pub store: String,
}

impl StoreArgs {
    /// Where the data lives: the embedded store in `--data-dir`, or the
    /// ScyllaDB/Cassandra keyspace of a `scylla://` URL.
    pub fn location(&self) -> anyhow::Result<StoreLocation> {
        StoreLocation::parse(&self.store, &self.data_dir).map_err(anyhow::Error::msg)
    }
}

#[derive(Args, Clone)]
pub struct CacheArgs {
    /// A Redis for the read cache of recent history, `redis://host:port[/db]`;
    /// without it there is no cache. Redis being down never fails a request.
    #[arg(long, env = "CHAT_REDIS_URL")]
    pub redis_url: Option<String>,
    /// The first part of the cache's keys: deployments sharing a Redis take
    /// one each.
    #[arg(long, env = "CHAT_CACHE_NAMESPACE", default_value = chat_persistence::cache::NAMESPACE_DEFAULT)]
    cache_namespace: String,
    /// Most recent messages cached per chat.
    #[arg(long, env = "CHAT_CACHE_CHAT_MESSAGES", default_value_t = chat_persistence::cache::CHAT_MESSAGES_DEFAULT)]
    cache_chat_messages: usize,
    /// Seconds a chat's cached messages live after its last write.
    #[arg(long, env = "CHAT_CACHE_TTL_S", default_value_t = chat_persistence::cache::TTL_S_DEFAULT)]
    cache_ttl_s: u64,
    /// Longest wait for Redis, in milliseconds, before a read goes to the
    /// store (and a write turns the cache off until Redis answers again).
    #[arg(long, env = "CHAT_REDIS_TIMEOUT_MS", default_value_t = chat_persistence::cache::TIMEOUT_MS_DEFAULT)]
    redis_timeout_ms: u64,
}

impl CacheArgs {
    fn config(&self) -> Option<chat_persistence::cache::CacheConfig> {
        let url = self.redis_url.clone().filter(|url| !url.is_empty())?;
        Some(chat_persistence::cache::CacheConfig {
            url,
            namespace: self.cache_namespace.clone(),
            chat_messages_max: self.cache_chat_messages,
            ttl_s: self.cache_ttl_s,
            timeout_ms: self.redis_timeout_ms,
        })
    }
}

#[derive(Args, Clone)]
pub struct SearchArgs {
    /// Full-text search: `embedded` (tantivy in <data-dir>/search, fed by
    /// the embedded store; the default),
    /// `opensearch://host:port[,host:port…]/index-prefix` (an OpenSearch
    /// cluster, fed by the embedded store; hosts tried in turn) or `off`
    /// (the search routes answer 503 search_unavailable). The ScyllaDB
    /// store needs `off` for now.
    #[arg(long, env = "CHAT_SEARCH", default_value = "embedded")]
    search: String,
    /// Longest wait for one OpenSearch request, in milliseconds (a search
    /// that waits longer answers 503 search_unavailable; indexing retries).
    #[arg(long, env = "CHAT_SEARCH_OPENSEARCH_TIMEOUT_MS", default_value_t = search::opensearch::config::REQUEST_TIMEOUT_MS_DEFAULT)]
    search_opensearch_timeout_ms: u64,
    /// Longest wait for a connection to one OpenSearch host, in
    /// milliseconds, before the next host is tried.
    #[arg(long, env = "CHAT_SEARCH_OPENSEARCH_CONNECT_TIMEOUT_MS", default_value_t = search::opensearch::config::CONNECT_TIMEOUT_MS_DEFAULT)]
    search_opensearch_connect_timeout_ms: u64,
    /// Longest wait, in milliseconds, before indexed messages become
    /// searchable (the index commits at least this often while busy).
    #[arg(long, env = "CHAT_SEARCH_COMMIT_INTERVAL_MS", default_value_t = search::indexer::COMMIT_INTERVAL_MS_DEFAULT)]
    search_commit_interval_ms: u64,
    /// Messages after which the index commits without waiting for the interval.
    #[arg(long, env = "CHAT_SEARCH_COMMIT_DOCUMENTS_MAX", default_value_t = search::indexer::COMMIT_DOCUMENTS_MAX_DEFAULT)]
    search_commit_documents_max: usize,
    /// Messages of the newest batch commits kept in memory for the indexer,
    /// so it need not read them back from the store (about 350 bytes each
    /// for 200-byte bodies); 0 reads every one back.
    #[arg(long, env = "CHAT_SEARCH_LOG_MEMORY_MESSAGES_MAX", default_value_t = chat_persistence::store::RECENT_LOG_MESSAGES_MAX_DEFAULT)]
    search_log_memory_messages_max: usize,
    /// Indexing threads of the embedded index.
    #[arg(long, env = "CHAT_SEARCH_WRITER_THREADS", default_value_t = search::embedded::WRITER_THREADS_DEFAULT)]
    search_writer_threads: usize,
    /// Memory of the embedded index's writer, in bytes, shared by its
    /// threads (at least 15 MB per thread).
    #[arg(long, env = "CHAT_SEARCH_WRITER_HEAP_BYTES", default_value_t = search::embedded::WRITER_HEAP_BYTES_DEFAULT)]
    search_writer_heap_bytes: usize,
    /// Longest search query, in characters.
    #[arg(long, env = "CHAT_SEARCH_QUERY_CHARS_MAX", default_value_t = search::limits::QUERY_CHARS_MAX)]
    search_query_chars_max: usize,
    /// Most terms (words and quoted phrases) in one query.
    #[arg(long, env = "CHAT_SEARCH_QUERY_TERMS_MAX", default_value_t = search::limits::QUERY_TERMS_MAX)]
    search_query_terms_max: usize,
    /// Most words in one quoted phrase.
    #[arg(long, env = "CHAT_SEARCH_PHRASE_WORDS_MAX", default_value_t = search::limits::PHRASE_WORDS_MAX)]
    search_phrase_words_max: usize,
    /// Hits per page when the request names no limit.
    #[arg(long, env = "CHAT_SEARCH_PAGE_SIZE_DEFAULT", default_value_t = search::limits::PAGE_SIZE_DEFAULT)]
    search_page_size_default: usize,
    /// Largest `limit` of a search page.
    #[arg(long, env = "CHAT_SEARCH_PAGE_SIZE_MAX", default_value_t = search::limits::PAGE_SIZE_MAX)]
    search_page_size_max: usize,
    /// Most chat numbers in a `chats=` list.
    #[arg(long, env = "CHAT_SEARCH_CHATS_FILTER_MAX", default_value_t = search::limits::CHATS_FILTER_MAX)]
    search_chats_filter_max: usize,
    /// Most chats a user token searches across (the lowest numbered).
    #[arg(long, env = "CHAT_SEARCH_USER_CHATS_MAX", default_value_t = search::limits::USER_CHATS_MAX)]
    search_user_chats_max: usize,
    /// Most index candidates one page verifies; past it the page ends early
    /// with a cursor.
    #[arg(long, env = "CHAT_SEARCH_CANDIDATES_SCAN_MAX", default_value_t = search::limits::CANDIDATES_SCAN_MAX)]
    search_candidates_scan_max: usize,
    /// Most indexed words one prefix term expands to.
    #[arg(long, env = "CHAT_SEARCH_PREFIX_EXPANSIONS_MAX", default_value_t = search::limits::PREFIX_EXPANSIONS_MAX)]
    search_prefix_expansions_max: u32,
}

impl SearchArgs {
    fn config(&self) -> anyhow::Result<search::SearchConfig> {
        let mut mode = search::SearchMode::parse(&self.search).map_err(anyhow::Error::msg)?;
        if let search::SearchMode::OpenSearch(remote) = &mut mode {
            if self.search_opensearch_timeout_ms == 0
                || self.search_opensearch_connect_timeout_ms == 0
            {
                anyhow::bail!("the OpenSearch timeouts must be at least 1 ms");
            }
            remote.request_timeout_ms = self.search_opensearch_timeout_ms;
            remote.connect_timeout_ms = self.search_opensearch_connect_timeout_ms;
        }
        Ok(search::SearchConfig {
            mode,
            limits: search::SearchLimits {
                query_chars_max: self.search_query_chars_max,
                query_terms_max: self.search_query_terms_max,
                phrase_words_max: self.search_phrase_words_max,
                page_size_default: self.search_page_size_default,
                page_size_max: self.search_page_size_max,
                chats_filter_max: self.search_chats_filter_max,
                user_chats_max: self.search_user_chats_max,
                candidates_scan_max: self.search_candidates_scan_max,
                prefix_expansions_max: self.search_prefix_expansions_max,
            },
            indexer: search::indexer::IndexerConfig {
                commit_interval_ms: self.search_commit_interval_ms,
                commit_documents_max: self.search_commit_documents_max,
            },
            writer_threads: self.search_writer_threads,
            writer_heap_bytes: self.search_writer_heap_bytes,
            log_memory_messages_max: self.search_log_memory_messages_max,
        })
    }
}

#[derive(Args, Clone)]
pub struct LimitArgs {
    /// Largest JSON request body, in bytes.
    #[arg(long, env = "CHAT_REQUEST_BODY_BYTES_MAX", default_value_t = limits::REQUEST_BODY_BYTES_MAX)]
    request_body_bytes_max: usize,
    /// Largest batch body from the engine, in bytes.
    #[arg(long, env = "CHAT_BATCH_BODY_BYTES_MAX", default_value_t = chat_wire_limits::BATCH_BYTES_MAX)]
    batch_body_bytes_max: usize,
    /// Longest app or chat title, in characters.
    #[arg(long, env = "CHAT_TITLE_CHARS_MAX", default_value_t = limits::TITLE_CHARS_MAX)]
    title_chars_max: usize,
    /// Longest user id, in bytes (at most 128; letters, digits and . _ - @ :).
    #[arg(long, env = "CHAT_USER_ID_BYTES_MAX", default_value_t = chat_wire_limits::USER_ID_BYTES_MAX)]
    user_id_bytes_max: usize,
    /// Largest message body, in bytes of UTF-8.
    #[arg(long, env = "CHAT_MESSAGE_BODY_BYTES_MAX", default_value_t = chat_wire_limits::MESSAGE_BODY_BYTES_MAX)]
    message_body_bytes_max: usize,
    /// Page size of listings when the request names none.
    #[arg(long, env = "CHAT_PAGE_SIZE_DEFAULT", default_value_t = limits::PAGE_SIZE_DEFAULT)]
    page_size_default: usize,
    /// Largest page a listing request may ask for.
    #[arg(long, env = "CHAT_PAGE_SIZE_MAX", default_value_t = limits::PAGE_SIZE_MAX)]
    page_size_max: usize,
}

use chat_persistence::limits::wire as chat_wire_limits;

/// Every service's HTTP connection limits (`chat_http_conn`): the same
/// flags and variables on `chat api`, `chat auth` and `chat engine`.
#[derive(Args, Clone)]
pub struct ConnArgs {
    /// Seconds a connection may take to send a whole request head, from
    /// accept (or from its first byte after an idle spell); a connection
    /// that sends nothing is closed after this long too.
    #[arg(long, env = "CHAT_HEADER_READ_TIMEOUT_S", default_value_t = chat_http_conn::HEADER_READ_TIMEOUT_S)]
    header_read_timeout_s: u64,
    /// Seconds from a request's head to its answer, body included.
    #[arg(long, env = "CHAT_REQUEST_TIMEOUT_S", default_value_t = chat_http_conn::REQUEST_TIMEOUT_S)]
    request_timeout_s: u64,
    /// Seconds a keep-alive connection may sit idle between requests
    /// (an upgraded WebSocket is not subject to it).
    #[arg(long, env = "CHAT_IDLE_TIMEOUT_S", default_value_t = chat_http_conn::IDLE_TIMEOUT_S)]
    idle_timeout_s: u64,
    /// Connections accepted but not past their first request head, for the
    /// whole service; past it new connections are closed at once.
    #[arg(long, env = "CHAT_HANDSHAKES_MAX", default_value_t = chat_http_conn::HANDSHAKES_MAX)]
    handshakes_max: usize,
}

impl From<ConnArgs> for chat_http_conn::ConnLimits {
    fn from(args: ConnArgs) -> Self {
        Self {
            header_read_timeout_s: args.header_read_timeout_s,
            request_timeout_s: args.request_timeout_s,
            idle_timeout_s: args.idle_timeout_s,
            handshakes_max: args.handshakes_max,
        }
    }
}

impl From<LimitArgs> for Limits {
    fn from(args: LimitArgs) -> Self {
        Limits {
            request_body_bytes_max: args.request_body_bytes_max,
            batch_body_bytes_max: args.batch_body_bytes_max,
            title_chars_max: args.title_chars_max,
            user_id_bytes_max: args.user_id_bytes_max,
            message_body_bytes_max: args.message_body_bytes_max,
            page_size_default: args.page_size_default,
            page_size_max: args.page_size_max,
        }
    }
}

#[derive(Args, Clone)]
pub struct ApiArgs {
    /// Address the persistence API listens on.
    #[arg(long, env = "CHAT_API_ADDR", default_value = "127.0.0.1:8081")]
    api_addr: SocketAddr,
    /// The operator key: the only credential that may create apps.
    #[arg(long, env = "CHAT_OPERATOR_KEY", hide_env_values = true)]
    operator_key: String,
    /// The auth service, whose keys let members read history with their
    /// user token; without it only app tokens read.
    #[arg(long, env = "CHAT_AUTH_ADDR")]
    auth_addr: Option<SocketAddr>,
    /// Seconds without a successful poll of the auth service's revocation
    /// log after which user tokens are refused (`revocations_stale`); they
    /// are refused before the first successful poll too.
    #[arg(long, env = "CHAT_REVOCATIONS_STALE_S", default_value_t = chat_persistence::user_tokens::REVOCATIONS_STALE_S)]
    revocations_stale_s: u64,
    /// The auth service's longest user token life, in seconds (the same
    /// variable as the auth service's): revocations older than it are forgotten.
    #[arg(long, env = "CHAT_TOKEN_TTL_MAX_S", default_value_t = chat_auth::limits::TOKEN_TTL_MAX_S)]
    token_ttl_max_s: u64,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    cache: CacheArgs,
    #[command(flatten)]
    search: SearchArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    connections: ConnArgs,
}

#[derive(Args, Clone)]
pub struct UpArgs {
    /// Address of the engine (WebSocket and publish).
    #[arg(long, env = "CHAT_ENGINE_ADDR", default_value = "127.0.0.1:8080")]
    pub engine_addr: SocketAddr,
    /// Address of the persistence API.
    #[arg(long, env = "CHAT_API_ADDR", default_value = "127.0.0.1:8081")]
    pub api_addr: SocketAddr,
    /// Address of the auth service.
    #[arg(long, env = "CHAT_AUTH_ADDR", default_value = "127.0.0.1:8082")]
    pub auth_addr: SocketAddr,
    /// The operator key; when unset, one is generated and printed.
    #[arg(long, env = "CHAT_OPERATOR_KEY", hide_env_values = true)]
    pub operator_key: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Up(args) => crate::up::run(args).await,
            Command::Api(args) => run_api(args).await,
            Command::Engine(args) => crate::engine::run(args).await,
            Command::Auth(args) => crate::auth::run(args).await,
            Command::Migrate(args) => migrate(args).await,
            Command::Repair(args) => repair(args).await,
            Command::Reindex(args) => reindex(args).await,
        }
    }
}

async fn run_api(args: ApiArgs) -> anyhow::Result<()> {
    let location = args.store.location()?;
    if args.operator_key.is_empty() {
        bail!("the operator key must not be empty (--operator-key or CHAT_OPERATOR_KEY)");
    }
    let config = ApiConfig {
        addr: args.api_addr,
        data_dir: args.store.data_dir,
        operator_key: args.operator_key,
        limits: args.limits.into(),
        auth_addr: args.auth_addr,
        connections: args.connections.into(),
        revocations_stale_s: args.revocations_stale_s,
        token_ttl_max_s: args.token_ttl_max_s,
        cache: args.cache.config(),
        search: args.search.config()?,
    };
    Server::bind_to(config, &location)
        .await?
        .serve(shutdown_signal())
        .await
}

async fn repair(args: RepairArgs) -> anyhow::Result<()> {
    let location = args.store.location()?;
    let store = chat_persistence::server::open_store(&location).await?;
    let chats: Vec<u64> = match args.chat {
        Some(chat) => vec![chat],
        None => {
            let mut all = Vec::new();
            let mut after = 0;
            loop {
                let page = store.chats(args.app, after, limits::PAGE_SIZE_MAX).await?;
                all.extend(page.items.iter().map(|chat| chat.number));
                match page.items.last() {
                    Some(last) if page.has_more => after = last.number,
                    _ => break,
                }
            }
            all
        }
    };
    let progress = indicatif::ProgressBar::new(chats.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} chats {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut repaired = 0usize;
    for chat in chats {
        let lost = store.repair_chat(args.app, chat).await?;
        if !lost.is_empty() {
            repaired += lost.len();
            // Printed, not drawn: a report that must reach logs and pipes too.
            progress.suspend(|| {
                println!(
                    "chat {chat}: {} lost messages marked ({}{})",
                    lost.len(),
                    lost.iter()
                        .take(10)
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if lost.len() > 10 { ", …" } else { "" }
                )
            });
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    println!("{repaired} lost messages marked");
    store.flush().await?;
    Ok(())
}

async fn reindex(args: ReindexArgs) -> anyhow::Result<()> {
    let StoreLocation::Embedded(dir) = args.store.location()? else {
        bail!("chat reindex rebuilds the embedded index; the ScyllaDB store has none");
    };
    let config = args.search.config()?;
    let progress = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} messages indexed {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let done = search::reindex::reindex(&dir, &config, |indexed, total| {
        progress.set_length(total);
        progress.set_position(indexed);
    })
    .await
    .map_err(|error| anyhow::anyhow!("{error} (is an API running on {}?)", dir.display()))?;
    progress.finish_and_clear();
    println!(
        "search index rebuilt: {} messages of {} chats",
        done.messages, done.chats
    );
    Ok(())
}

async fn migrate(args: StoreArgs) -> anyhow::Result<()> {
    let location = args.location()?;
    let store = chat_persistence::server::open_store(&location).await?;
    let version = store.migrate().await?;
    store.flush().await?;
    println!("schema is at version {version}");
    Ok(())
}
