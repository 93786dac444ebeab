//! Test harness: a real persistence API on a loopback port over a real store
//! (by default the embedded store in a temporary directory; `start_on` takes
//! any store location, e.g. a Cassandra keyspace), and a real HTTP client.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chat_persistence::limits::Limits;
use chat_persistence::store::StoreLocation;
use chat_persistence::{ApiConfig, Server};
use chat_wire::{Batch, NewChat, NewMessage};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const OPERATOR_KEY: &str = "op_test_operator_key";

pub struct TestApi {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    /// The store this server runs on; `start_on` it again to test restarts.
    pub location: StoreLocation,
    _dir: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApi {
    pub async fn start() -> Self {
        Self::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut api = Self::start_in(dir.path(), limits).await;
        api._dir = Some(dir);
        api
    }

    /// Starts on an existing data dir (to test restarts); the caller owns the dir.
    pub async fn start_in(data_dir: &Path, limits: Limits) -> Self {
        Self::start_on(&StoreLocation::Embedded(data_dir.to_path_buf()), limits).await
    }

    /// Starts on the store at `location`; the caller owns what it points to.
    pub async fn start_on(location: &StoreLocation, limits: Limits) -> Self {
        Self::start_on_with(location, limits, None).await
    }

    /// Starts on the store at `location` with the Redis read cache `cache`.
    pub async fn start_on_with(
        location: &StoreLocation,
        limits: Limits,
        cache: Option<chat_persistence::cache::CacheConfig>,
    ) -> Self {
        Self::start_configured(location, limits, cache, |_| {}).await
    }

    /// Starts on `location` with the configuration changed by `configure`
    /// (an auth service's address, search settings).
    pub async fn start_configured(
        location: &StoreLocation,
        limits: Limits,
        cache: Option<chat_persistence::cache::CacheConfig>,
        configure: impl FnOnce(&mut ApiConfig),
    ) -> Self {
        let data_dir = match location {
            StoreLocation::Embedded(dir) => dir.clone(),
            StoreLocation::Scylla(_) => PathBuf::new(),
        };
        let config = ApiConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.clone(),
            operator_key: OPERATOR_KEY.into(),
            limits,
            auth_addr: None,
            connections: Default::default(),
            revocations_stale_s: chat_persistence::user_tokens::REVOCATIONS_STALE_S,
            token_ttl_max_s: 86_400,
            cache,
            // Search runs on the embedded store only, until OpenSearch exists.
            search: chat_persistence::search::SearchConfig {
                mode: match location {
                    StoreLocation::Embedded(_) => chat_persistence::search::SearchMode::Embedded,
                    StoreLocation::Scylla(_) => chat_persistence::search::SearchMode::Off,
                },
                ..Default::default()
            },
        };
        let mut config = config;
        configure(&mut config);
        let server = Server::bind_to(config, location).await.expect("bind");
        let base = format!("http://{}", server.local_addr().unwrap());
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stop.await;
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            data_dir,
            location: location.clone(),
            _dir: None,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// A client of an API that runs elsewhere (another process); `stop`
    /// does not apply to it.
    pub fn remote(base: String) -> Self {
        Self {
            base,
            client: reqwest::Client::new(),
            data_dir: PathBuf::new(),
            location: StoreLocation::Embedded(PathBuf::new()),
            _dir: None,
            shutdown: None,
            task: None,
        }
    }

    /// The value of one unlabelled metric of `GET /metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// Waits (10 s at most) until the Redis read cache is in use.
    pub async fn wait_for_cache(&self) {
        for _ in 0..200 {
            if self.metric("chat_api_cache_ready").await == Some(1.0) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the read cache did not come into use within 10 s");
    }

    /// Graceful stop: drains requests and flushes the store.
    pub async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    /// Sends raw bytes as the body, for malformed input.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// Creates an app; returns its token and id.
    pub async fn create_app(&self, title: &str) -> (String, u64) {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/apps",
                Some(OPERATOR_KEY),
                Some(json!({ "title": title })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["token"].as_str().unwrap().to_string(),
            body["id"].as_u64().unwrap(),
        )
    }

    pub async fn create_chat(&self, token: &str) -> u64 {
        let (status, body) = self
            .call(Method::POST, "/v1/chats", Some(token), Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["number"].as_u64().unwrap()
    }

    pub async fn subscribe(&self, token: &str, chat: u64, user: &str) {
        let path = format!("/v1/chats/{chat}/subscribers/{user}");
        let (status, body) = self.call(Method::PUT, &path, Some(token), None).await;
        assert!(status.is_success(), "{status} {body}");
    }

    /// Posts a batch. A receipt's `api_us` (the API's time on the request)
    /// is checked to be there and taken out, so that receipts compare by
    /// what they say of the store.
    pub async fn post_batch(&self, batch: &Batch) -> (StatusCode, Value) {
        self.post_batch_with(batch, &[]).await
    }

    /// Posts a batch as batch `seq` of an engine shard's `stream`, every
    /// batch of it from 1 on not yet settled.
    pub async fn post_batch_in_stream(
        &self,
        batch: &Batch,
        stream: u64,
        seq: u64,
    ) -> (StatusCode, Value) {
        let place = [
            (chat_wire::BATCH_STREAM_HEADER, stream.to_string()),
            (chat_wire::BATCH_SEQ_HEADER, seq.to_string()),
            (chat_wire::BATCH_UNSETTLED_FROM_HEADER, "1".to_string()),
        ];
        self.post_batch_with(batch, &place).await
    }

    pub async fn post_batch_with(
        &self,
        batch: &Batch,
        headers: &[(&str, String)],
    ) -> (StatusCode, Value) {
        let bytes =
            chat_wire::encode_batch(batch, chat_wire::limits::MESSAGE_BODY_BYTES_MAX).unwrap();
        let mut request = self
            .client
            .post(format!("{}/internal/v1/batches", self.base))
            .bearer_auth(OPERATOR_KEY)
            .body(bytes);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let (status, mut answer) = read(request.send().await.expect("request")).await;
        if status == StatusCode::OK {
            let api_us = answer.as_object_mut().and_then(|o| o.remove("api_us"));
            assert!(
                api_us.as_ref().is_some_and(Value::is_u64),
                "a receipt reports the API's time: {answer}"
            );
        }
        (status, answer)
    }

    /// A state snapshot for "nothing changed" checks: the app, every chat,
    /// and every chat's subscribers and history.
    pub async fn snapshot(&self, token: &str) -> Value {
        let (_, app) = self.get("/v1/app", token).await;
        let (_, chats) = self.get("/v1/chats?limit=1000", token).await;
        let mut details = Vec::new();
        for chat in chats["chats"].as_array().unwrap() {
            let n = chat["number"].as_u64().unwrap();
            let (_, subscribers) = self
                .get(&format!("/v1/chats/{n}/subscribers?limit=1000"), token)
                .await;
            let (_, messages) = self
                .get(&format!("/v1/chats/{n}/messages?after=0&limit=1000"), token)
                .await;
            let (_, reads) = self
                .get(&format!("/v1/chats/{n}/reads?limit=1000"), token)
                .await;
            details.push(json!({
                "chat": chat,
                "subscribers": subscribers,
                "messages": messages,
                "reads": reads,
            }));
        }
        json!({ "app": app, "chats": details })
    }
}

async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

pub fn message(app: u64, chat: u64, number: u64, sender: &str, body: &str) -> NewMessage {
    NewMessage {
        app,
        chat,
        number,
        sender: sender.into(),
        recipients: None,
        body: body.into(),
        client_id: None,
        sent_at_us: 1_700_000_000_000_000 + number as i64,
        // Published by the app, so the store's tests need no subscriptions;
        // `member_message` is a user's.
        as_app: true,
    }
}

/// A message a user sent over the WebSocket: the store checks membership.
pub fn member_message(app: u64, chat: u64, number: u64, sender: &str, body: &str) -> NewMessage {
    NewMessage {
        as_app: false,
        ..message(app, chat, number, sender, body)
    }
}

pub fn batch(batch_id: u64, messages: Vec<NewMessage>) -> Batch {
    Batch {
        batch_id,
        chats: vec![],
        messages,
    }
}

pub fn implicit_chat(app: u64, number: u64, subscribers: &[&str]) -> NewChat {
    NewChat {
        app,
        number,
        subscribers: subscribers.iter().map(|s| s.to_string()).collect(),
        created_at_us: 1,
        by_app: true,
    }
}

/// An implicit creation by a user's message: the number is bounded.
pub fn user_implicit_chat(app: u64, number: u64, subscribers: &[&str]) -> NewChat {
    NewChat {
        by_app: false,
        ..implicit_chat(app, number, subscribers)
    }
}

/// Asserts an error answer: the status and the documented code.
pub fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(response.0, status, "{}", response.1);
    assert_eq!(response.1["error"]["code"], code, "{}", response.1);
    assert!(
        response.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        response.1
    );
}
