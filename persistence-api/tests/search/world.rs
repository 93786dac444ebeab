//! The search tests' world: a persistence API with search on (embedded,
//! or a real OpenSearch node), an auth service it trusts for user tokens,
//! one app, and helpers to publish messages (as engine batches) and search.
//!
//! The conformance tests run on both backends (`on_both_backends!`): the
//! OpenSearch variants need `CHAT_TEST_OPENSEARCH` (`host:port` of a node,
//! e.g. `scripts/opensearch.sh start`'s `127.0.0.1:9200`) and are skipped
//! with a notice without it. Each world gets its own index prefix, so tests
//! run in parallel on one node, and removes its indices when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_persistence::limits::Limits;
use chat_persistence::search::SearchMode;
use chat_persistence::search::opensearch::OpenSearchConfig;
use chat_persistence::store::StoreLocation;
use chat_wire::NewMessage;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{OPERATOR_KEY, TestApi, batch, message};

/// Longest wait for the index to catch up with what was acknowledged (a
/// bound for failures only: waits end as soon as it has). OpenSearch on a
/// busy 2-core machine, with the whole workspace's tests beside it, took
/// over 20 s to index the kill -9 test's ~25,000 messages once.
pub const INDEX_WAIT: Duration = Duration::from_secs(60);

/// The node the OpenSearch variants run against (`host:port[,host:port]`).
pub const OPENSEARCH_VARIABLE: &str = "CHAT_TEST_OPENSEARCH";

/// Which search backend a world runs.
#[derive(Debug, Clone)]
pub enum Backend {
    Embedded,
    OpenSearch(OpenSearchConfig),
}

impl Backend {
    /// OpenSearch under a fresh index prefix, if `CHAT_TEST_OPENSEARCH`
    /// names a node.
    pub fn opensearch() -> Option<Self> {
        let hosts = opensearch_hosts()?;
        Some(Self::OpenSearch(opensearch_config(&hosts)))
    }

    /// A guard that removes this backend's OpenSearch indices when dropped.
    pub fn cleanup(&self) -> RemoveOnDrop {
        match self {
            Self::Embedded => RemoveOnDrop(None),
            Self::OpenSearch(config) => RemoveOnDrop(Some(config.clone())),
        }
    }

    pub fn mode(&self) -> SearchMode {
        match self {
            Self::Embedded => SearchMode::Embedded,
            Self::OpenSearch(config) => SearchMode::OpenSearch(config.clone()),
        }
    }
}

/// The OpenSearch hosts that `CHAT_TEST_OPENSEARCH` names, if any.
pub fn opensearch_hosts() -> Option<String> {
    std::env::var(OPENSEARCH_VARIABLE)
        .ok()
        .filter(|hosts| !hosts.is_empty())
}

/// [`opensearch_hosts`], or `None` after a notice that `what` is skipped.
pub fn opensearch_hosts_or_skip(what: &str) -> Option<String> {
    let hosts = opensearch_hosts();
    if hosts.is_none() {
        eprintln!("skipped: set {OPENSEARCH_VARIABLE} to run {what}");
    }
    hosts
}

/// `hosts` under an index prefix no other test (of this run or an earlier
/// one on the same node) uses.
pub fn opensearch_config(hosts: &str) -> OpenSearchConfig {
    static WORLDS: AtomicU64 = AtomicU64::new(0);
    let started_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let prefix = format!(
        "chat-test-{started_us}-{}-{}",
        std::process::id(),
        WORLDS.fetch_add(1, Ordering::Relaxed)
    );
    OpenSearchConfig::parse(&format!("opensearch://{hosts}/{prefix}")).expect("the OpenSearch URL")
}

/// Runs `$test(backend)` as two tests, `$test::embedded` and
/// `$test::opensearch` (skipped with a notice without a node).
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    super::$test(crate::world::Backend::Embedded).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn opensearch() {
                    match crate::world::Backend::opensearch() {
                        Some(backend) => super::$test(backend).await,
                        None => eprintln!(
                            "skipped: set {} to run {} on OpenSearch",
                            crate::world::OPENSEARCH_VARIABLE,
                            stringify!($test)
                        ),
                    }
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;

/// Removes the indices of an OpenSearch prefix (best effort: a test's
/// leftovers must not fill the shared node).
pub fn remove_indices(config: &OpenSearchConfig) {
    let config = config.clone();
    // Drop runs inside the test's runtime; a thread of its own may block.
    let removal = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let client = reqwest::Client::new();
            // The first host that answers (a test may list a dead one first).
            for host in &config.hosts {
                let removed = client
                    .delete(format!("http://{host}/{}-*", config.index_prefix))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                if removed.is_ok() {
                    return;
                }
            }
        });
    });
    let _ = removal.join();
}

/// Removes a prefix's indices when dropped, also when the test panics.
pub struct RemoveOnDrop(pub Option<OpenSearchConfig>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(config) = &self.0 {
            remove_indices(config);
        }
    }
}

pub struct World {
    pub api: TestApi,
    auth_base: String,
    pub token: String,
    pub app: u64,
    next_batch: u64,
    pub backend: Backend,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    _auth_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Backend::OpenSearch(config) = &self.backend {
            remove_indices(config);
        }
    }
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl World {
    /// The API (search on `backend`) and an auth service, each knowing the other.
    pub async fn start(backend: Backend) -> Self {
        Self::start_configured(backend, |_| {}).await
    }

    /// [`Self::start`], with the API's configuration changed by `configure`.
    pub async fn start_configured(
        backend: Backend,
        configure: impl FnOnce(&mut chat_persistence::ApiConfig),
    ) -> Self {
        let data = tempfile::tempdir().unwrap();
        let auth_dir = tempfile::tempdir().unwrap();
        let auth_addr = free_addr();
        let location = StoreLocation::Embedded(data.path().to_path_buf());
        let api = TestApi::start_configured(&location, Limits::default(), None, |config| {
            config.auth_addr = Some(auth_addr);
            // Short commits keep the tests' waits short.
            config.search.indexer.commit_interval_ms = 50;
            config.search.writer_threads = 1;
            config.search.writer_heap_bytes = 32 * 1024 * 1024;
            config.search.mode = backend.mode();
            configure(config);
        })
        .await;
        let api_addr: SocketAddr = api.base.trim_start_matches("http://").parse().unwrap();
        let config = chat_auth::AuthConfig::new(auth_addr, auth_dir.path(), OPERATOR_KEY, api_addr);
        let server = chat_auth::Server::bind(config).await.expect("bind auth");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let (token, app) = api.create_app("Search").await;
        Self {
            api,
            auth_base: format!("http://{auth_addr}"),
            token,
            app,
            next_batch: 1,
            backend,
            _dirs: (data, auth_dir),
            _auth_stop: Some(stop),
        }
    }

    /// A user token for `user` of this world's app, once the API accepts
    /// tokens (its first key fetch and revocation poll are done).
    pub async fn user_token(&self, user: &str) -> String {
        self.user_token_of(&self.token, user).await
    }

    pub async fn user_token_of(&self, app_token: &str, user: &str) -> String {
        let response = self
            .api
            .client
            .post(format!("{}/v1/tokens", self.auth_base))
            .bearer_auth(app_token)
            .json(&serde_json::json!({ "user": user }))
            .send()
            .await
            .expect("mint");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        let token = body["token"].as_str().unwrap().to_owned();
        // Wait until the API verifies it (it polls the auth service).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _) = self.api.get("/v1/messages/search?q=probe", &token).await;
            if status == StatusCode::OK {
                return token;
            }
            assert!(
                Instant::now() < deadline,
                "the API never accepted a user token: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A chat with these members.
    pub async fn chat_with(&self, members: &[&str]) -> u64 {
        let chat = self.api.create_chat(&self.token).await;
        for member in members {
            self.api.subscribe(&self.token, chat, member).await;
        }
        chat
    }

    /// Commits `messages` as one engine batch.
    pub async fn publish(&mut self, messages: Vec<NewMessage>) {
        let id = self.next_batch;
        self.next_batch += 1;
        let (status, receipt) = self.api.post_batch(&batch(id, messages)).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert!(
            receipt["refused"].as_array().is_none_or(Vec::is_empty),
            "{receipt}"
        );
    }

    /// Commits one message per body into `chat`, numbered after `last`,
    /// all from `from`; returns the last number.
    pub async fn say(&mut self, chat: u64, last: u64, from: &str, bodies: &[&str]) -> u64 {
        let messages = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| message(self.app, chat, last + 1 + i as u64, from, body))
            .collect();
        self.publish(messages).await;
        last + bodies.len() as u64
    }

    /// Waits until the index has everything acknowledged so far.
    pub async fn wait_indexed(&self) {
        wait_indexed(&self.api).await;
    }

    pub async fn search(&self, path_and_query: &str, token: &str) -> (StatusCode, Value) {
        self.api.get(path_and_query, token).await
    }

    /// A search that must answer 200; its body.
    pub async fn hits(&self, path_and_query: &str, token: &str) -> Value {
        let (status, body) = self.search(path_and_query, token).await;
        assert_eq!(status, StatusCode::OK, "{path_and_query}: {body}");
        body
    }
}

/// Waits until the index holds every batch commit acknowledged so far: the
/// head gauge is raised before a commit is answered, the indexed position
/// after the index commit is searchable.
pub async fn wait_indexed(api: &TestApi) {
    let deadline = Instant::now() + INDEX_WAIT;
    let head = api
        .metric("chat_api_search_log_head_position")
        .await
        .expect("the head gauge");
    loop {
        let position = api.metric("chat_api_search_indexed_position").await;
        if position.is_some_and(|position| position >= head) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the index did not reach position {head} within {INDEX_WAIT:?} (at {position:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(chat, number)` of each hit, in order.
pub fn keys(page: &Value) -> Vec<(u64, u64)> {
    page["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| {
            (
                hit["chat"].as_u64().unwrap(),
                hit["number"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The bodies of the hits, in order.
pub fn bodies(page: &Value) -> Vec<String> {
    page["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["body"].as_str().unwrap().to_owned())
        .collect()
}

/// Percent-encodes a query parameter value.
pub fn enc(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
