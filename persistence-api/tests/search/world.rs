//! The search tests' world: a persistence API with search on, an auth
//! service it trusts for user tokens, one app, and helpers to publish
//! messages (as engine batches) and search.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_persistence::limits::Limits;
use chat_persistence::store::StoreLocation;
use chat_wire::NewMessage;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{OPERATOR_KEY, TestApi, batch, message};

/// Longest wait for the index to catch up with what was acknowledged.
pub const INDEX_WAIT: Duration = Duration::from_secs(20);

pub struct World {
    pub api: TestApi,
    auth_base: String,
    pub token: String,
    pub app: u64,
    next_batch: u64,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    _auth_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl World {
    /// The API (search on) and an auth service, each knowing the other.
    pub async fn start() -> Self {
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
