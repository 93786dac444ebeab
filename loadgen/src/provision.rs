//! Provisioning through the public APIs: the run's own app (operator key),
//! its chats and subscriptions (persistence API, app token), user tokens
//! (auth service, app token), and the engine's HTTP publish and metrics.
//! Many requests run with bounded concurrency behind a progress bar.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::cli::Common;
use crate::report;

/// Attempts of one provisioning request before the run gives up.
const ATTEMPTS: u32 = 5;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Provisioner {
    pub http: reqwest::Client,
    api: String,
    auth: String,
    engine: String,
    pub app_id: u64,
    pub app_token: String,
    ttl_s: u64,
    concurrency: usize,
}

#[derive(Deserialize)]
struct CreatedApp {
    token: String,
    id: u64,
}

#[derive(Deserialize)]
struct ChatView {
    number: u64,
    #[serde(default)]
    messages_count: u64,
}

#[derive(Deserialize)]
struct MintedToken {
    token: String,
}

#[derive(Deserialize)]
struct Published {
    number: u64,
}

impl Provisioner {
    /// Creates the run's app with the operator key.
    pub async fn new(common: &Common, title: &str) -> anyhow::Result<Self> {
        if common.operator_key.is_empty() {
            bail!("the operator key is required (--operator-key or CHAT_OPERATOR_KEY)");
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        let api = format!("http://{}", common.api_addr);
        let response = http
            .post(format!("{api}/v1/apps"))
            .bearer_auth(&common.operator_key)
            .json(&json!({ "title": title }))
            .send()
            .await
            .with_context(|| format!("creating the app at {api}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("creating the app: {status} {body}");
        }
        let app: CreatedApp = response.json().await.context("reading the created app")?;
        Ok(Self {
            http,
            api,
            auth: format!("http://{}", common.auth_addr),
            engine: format!("http://{}", common.engine_addr),
            app_id: app.id,
            app_token: app.token,
            ttl_s: common.token_ttl_s,
            concurrency: common.provision_concurrency.max(1),
        })
    }

    /// Sends a request made by `make`, retrying connection errors and 5xx /
    /// 429 answers with a short backoff; returns the successful response.
    async fn send_retrying(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let mut backoff = Duration::from_millis(50);
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match make().send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response)
                    if response.status().is_server_error() || response.status().as_u16() == 429 =>
                {
                    last = format!(
                        "{} {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    );
                }
                Ok(response) => {
                    let status = response.status();
                    bail!(
                        "{what}: {status} {}",
                        response.text().await.unwrap_or_default()
                    );
                }
                Err(error) => last = error.to_string(),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        bail!("{what}: gave up after {ATTEMPTS} attempts: {last}")
    }

    /// Creates `count` chats; returns their numbers.
    pub async fn create_chats(&self, count: usize) -> anyhow::Result<Vec<u64>> {
        let bar = report::counter_bar(count as u64, "chats");
        let numbers: Vec<anyhow::Result<u64>> = futures_util::stream::iter(0..count)
            .map(|i| {
                let bar = &bar;
                async move {
                    let response = self
                        .send_retrying("creating a chat", || {
                            self.http
                                .post(format!("{}/v1/chats", self.api))
                                .bearer_auth(&self.app_token)
                                .json(&json!({ "title": format!("loadgen {i}") }))
                        })
                        .await?;
                    let chat: ChatView = response.json().await?;
                    bar.inc(1);
                    Ok(chat.number)
                }
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        bar.finish_and_clear();
        numbers.into_iter().collect()
    }

    /// Subscribes each (chat, user).
    pub async fn subscribe(&self, pairs: &[(u64, String)]) -> anyhow::Result<()> {
        let bar = report::counter_bar(pairs.len() as u64, "subscriptions");
        let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(pairs)
            .map(|(chat, user)| {
                let bar = &bar;
                async move {
                    self.send_retrying("subscribing", || {
                        self.http
                            .put(format!("{}/v1/chats/{chat}/subscribers/{user}", self.api))
                            .bearer_auth(&self.app_token)
                    })
                    .await?;
                    bar.inc(1);
                    Ok(())
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        bar.finish_and_clear();
        results.into_iter().collect()
    }

    /// Mints one user token per user, in the users' order.
    pub async fn mint_tokens(&self, users: &[String]) -> anyhow::Result<Vec<String>> {
        let bar = report::counter_bar(users.len() as u64, "user tokens");
        let tokens: Vec<anyhow::Result<String>> = futures_util::stream::iter(users)
            .map(|user| {
                let bar = &bar;
                async move {
                    let response = self
                        .send_retrying("minting a user token", || {
                            self.http
                                .post(format!("{}/v1/tokens", self.auth))
                                .bearer_auth(&self.app_token)
                                .json(&json!({ "user": user, "ttl_s": self.ttl_s }))
                        })
                        .await?;
                    let minted: MintedToken = response.json().await?;
                    bar.inc(1);
                    Ok(minted.token)
                }
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        bar.finish_and_clear();
        tokens.into_iter().collect()
    }

    /// The number of messages a chat holds in the store (its last number).
    pub async fn messages_count(&self, chat: u64) -> anyhow::Result<u64> {
        let response = self
            .send_retrying("reading a chat", || {
                self.http
                    .get(format!("{}/v1/chats/{chat}", self.api))
                    .bearer_auth(&self.app_token)
            })
            .await?;
        let view: ChatView = response.json().await?;
        debug_assert_eq!(view.number, chat);
        Ok(view.messages_count)
    }

    /// The stored message count of each chat, with bounded concurrency.
    pub async fn messages_counts(&self, chats: &[u64]) -> anyhow::Result<Vec<u64>> {
        let counts: Vec<anyhow::Result<u64>> = futures_util::stream::iter(chats)
            .map(|chat| self.messages_count(*chat))
            .buffered(self.concurrency)
            .collect()
            .await;
        counts.into_iter().collect()
    }

    /// The URL of a path on the persistence API.
    pub fn api_url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// The URL of the engine's HTTP publish for a chat.
    pub fn publish_url(&self, chat: u64) -> String {
        format!("{}/v1/chats/{chat}/messages", self.engine)
    }

    /// Publishes once over HTTP (no retry: a failure is the caller's to
    /// count). Returns the message's number.
    pub async fn publish(&self, url: &str, body: &str, from: &str) -> Result<u64, String> {
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.app_token)
            .json(&json!({ "body": body, "from": from }))
            .send()
            .await
            .map_err(|error| format!("request: {error}"))?;
        let status = response.status();
        if status.as_u16() != 201 {
            let text = response.text().await.unwrap_or_default();
            return Err(error_code(status.as_u16(), &text));
        }
        let published: Published = response
            .json()
            .await
            .map_err(|error| format!("answer: {error}"))?;
        Ok(published.number)
    }

    /// GETs `url` with the app token (no retry: a failure is the caller's
    /// to count); the 200 answer's JSON, or why not.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.app_token)
            .send()
            .await
            .map_err(|error| format!("request: {error}"))?;
        let status = response.status();
        if status.as_u16() != 200 {
            let text = response.text().await.unwrap_or_default();
            return Err(format!("{status}: {text}"));
        }
        response
            .json()
            .await
            .map_err(|error| format!("answer: {error}"))
    }

    /// Whether the engine answers its health check.
    pub async fn engine_healthy(&self) -> bool {
        self.http
            .get(format!("{}/healthz", self.engine))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    }

    /// The engine's /metrics text, if it answers.
    pub async fn engine_metrics(&self) -> Option<String> {
        self.metrics(&self.engine).await
    }

    /// The persistence API's /metrics text, if it answers.
    pub async fn api_metrics(&self) -> Option<String> {
        self.metrics(&self.api).await
    }

    async fn metrics(&self, base: &str) -> Option<String> {
        let response = self
            .http
            .get(format!("{base}/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        response.text().await.ok()
    }
}

/// `<status> <code>` of an error answer, e.g. "429 rate_limited".
fn error_code(status: u16, body: &str) -> String {
    #[derive(Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        code: String,
    }
    match serde_json::from_str::<Outer>(body) {
        Ok(outer) => format!("{status} {}", outer.error.code),
        Err(_) => format!("{status}"),
    }
}
