//! Harness for end-to-end tests: real `chat api` and `chat engine`
//! processes on loopback ports, a real store in a temp dir, and real
//! WebSocket clients.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const OPERATOR_KEY: &str = "op_engine_test";
/// How long a test waits for one expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Process {
    pub child: Child,
    pub base: String,
}

impl Process {
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process stays, its sockets still take connections and
    /// bytes, and nothing is answered until `resume`.
    pub fn pause(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

pub struct System {
    pub dir: tempfile::TempDir,
    pub api: Process,
    pub engine: Process,
    /// The auth service, when the options asked for one.
    pub auth: Option<Process>,
    pub auth_port: u16,
    pub api_port: u16,
    pub engine_port: u16,
    pub key: chat_token::SigningKey,
    /// What the processes were started with, to restart them alike.
    pub options: Options,
    pub app: u64,
    pub app_token: String,
    pub http: reqwest::Client,
}

#[derive(Clone)]
pub struct Options {
    pub shards: usize,
    pub extra_engine_env: Vec<(&'static str, String)>,
    /// Run the auth service: tokens come from it, and the engine and the API
    /// verify with its keys and revocations. Otherwise the engine trusts a
    /// test key and the API accepts no user token.
    pub auth: bool,
    pub extra_auth_env: Vec<(&'static str, String)>,
    pub extra_api_env: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            shards: 2,
            extra_engine_env: Vec::new(),
            auth: false,
            extra_auth_env: Vec::new(),
            extra_api_env: Vec::new(),
        }
    }
}

pub fn spawn_api(data_dir: &Path, port: u16, auth_port: Option<u16>) -> Process {
    spawn_api_with(data_dir, port, auth_port, &[])
}

/// `chat api` with extra environment variables.
pub fn spawn_api_with(
    data_dir: &Path,
    port: u16,
    auth_port: Option<u16>,
    env: &[(&'static str, String)],
) -> Process {
    let mut command = api_command(data_dir, port, auth_port, env);
    Process {
        child: command.spawn().expect("spawn chat api"),
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// The command that runs `chat api`, not spawned yet (a test may add to it).
pub fn api_command(
    data_dir: &Path,
    port: u16,
    auth_port: Option<u16>,
    env: &[(&'static str, String)],
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
    if let Some(auth_port) = auth_port {
        command.env("CHAT_AUTH_ADDR", format!("127.0.0.1:{auth_port}"));
    }
    command
        .arg("api")
        .env("CHAT_API_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAT_DATA_DIR", data_dir)
        .env("CHAT_OPERATOR_KEY", OPERATOR_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

pub fn spawn_auth(data_dir: &Path, port: u16, api_port: u16, options: &Options) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
    command
        .arg("auth")
        .env("CHAT_AUTH_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAT_API_ADDR", format!("127.0.0.1:{api_port}"))
        .env("CHAT_DATA_DIR", data_dir)
        .env("CHAT_OPERATOR_KEY", OPERATOR_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (name, value) in &options.extra_auth_env {
        command.env(name, value);
    }
    Process {
        child: command.spawn().expect("spawn chat auth"),
        base: format!("http://127.0.0.1:{port}"),
    }
}

pub fn spawn_engine(
    port: u16,
    api_port: u16,
    auth_port: Option<u16>,
    key: &chat_token::SigningKey,
    options: &Options,
) -> Process {
    let public = key.public();
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
    match auth_port {
        Some(auth_port) => command.env("CHAT_AUTH_ADDR", format!("127.0.0.1:{auth_port}")),
        None => command.env(
            "CHAT_USER_TOKEN_PUBLIC_KEYS",
            format!("{}={}", public.kid(), public.to_base64url()),
        ),
    };
    command
        .arg("engine")
        .env("CHAT_ENGINE_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAT_API_ADDR", format!("127.0.0.1:{api_port}"))
        .env("CHAT_OPERATOR_KEY", OPERATOR_KEY)
        .env("CHAT_SHARDS", options.shards.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (name, value) in &options.extra_engine_env {
        command.env(name, value);
    }
    Process {
        child: command.spawn().expect("spawn chat engine"),
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// Creates an app with the operator key; the API's answer (id, token, ...).
pub async fn create_app(http: &reqwest::Client, api_base: &str, title: &str) -> Value {
    http.post(format!("{api_base}/v1/apps"))
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({ "title": title }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn wait_healthy(http: &reqwest::Client, process: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        assert!(
            process.child.try_wait().unwrap().is_none(),
            "{} exited during start-up",
            process.base
        );
        if http
            .get(format!("{}/healthz", process.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} did not become healthy", process.base);
}

impl System {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let (api_port, engine_port, auth_port) = (free_port(), free_port(), free_port());
        let auth_port_used = options.auth.then_some(auth_port);
        let mut api = spawn_api_with(dir.path(), api_port, auth_port_used, &options.extra_api_env);
        wait_healthy(&http, &mut api).await;
        let auth = if options.auth {
            let mut auth = spawn_auth(dir.path(), auth_port, api_port, &options);
            wait_healthy(&http, &mut auth).await;
            Some(auth)
        } else {
            None
        };
        let key = chat_token::SigningKey::generate("test-key").unwrap();
        let mut engine = spawn_engine(engine_port, api_port, auth_port_used, &key, &options);
        wait_healthy(&http, &mut engine).await;
        let created = create_app(&http, &api.base, "engine test").await;
        Self {
            dir,
            api,
            engine,
            auth,
            auth_port,
            api_port,
            engine_port,
            key,
            options,
            app: created["id"].as_u64().unwrap(),
            app_token: created["token"].as_str().unwrap().to_string(),
            http,
        }
    }

    /// Kills the engine (SIGKILL) and starts it again on the same port.
    pub async fn restart_engine(&mut self) {
        self.engine.kill_hard();
        let auth_port = self.auth.is_some().then_some(self.auth_port);
        self.engine = spawn_engine(
            self.engine_port,
            self.api_port,
            auth_port,
            &self.key,
            &self.options,
        );
        wait_healthy(&self.http, &mut self.engine).await;
    }

    /// Restarts the persistence API on the same port and data dir.
    pub async fn restart_api(&mut self) {
        let auth_port = self.auth.is_some().then_some(self.auth_port);
        self.api = spawn_api_with(
            self.dir.path(),
            self.api_port,
            auth_port,
            &self.options.extra_api_env,
        );
        wait_healthy(&self.http, &mut self.api).await;
    }

    /// Starts the auth service again on its port and data dir (after a
    /// kill), with the options' environment and `extra_env` on top.
    pub async fn restart_auth(&mut self, extra_env: &[(&'static str, String)]) {
        let mut options = self.options.clone();
        options.extra_auth_env.extend(extra_env.iter().cloned());
        let mut auth = spawn_auth(self.dir.path(), self.auth_port, self.api_port, &options);
        wait_healthy(&self.http, &mut auth).await;
        self.auth = Some(auth);
    }

    pub fn user_token(&self, user: &str) -> String {
        let now = chrono_now();
        self.key.mint(self.app, user, now, now + 3600).unwrap()
    }

    /// A user token: minted by the auth service when it runs, else by the test key.
    pub async fn token(&self, user: &str) -> String {
        let Some(auth) = &self.auth else {
            return self.user_token(user);
        };
        let minted: Value = self
            .http
            .post(format!("{}/v1/tokens", auth.base))
            .bearer_auth(&self.app_token)
            .json(&json!({"user": user}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        minted["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {minted}"))
            .to_string()
    }

    pub async fn connect(&self, user: &str) -> Client {
        Client::connect(self.engine_port, &self.token(user).await).await
    }

    pub async fn create_chat(&self) -> u64 {
        let chat: Value = self
            .http
            .post(format!("{}/v1/chats", self.api.base))
            .bearer_auth(&self.app_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        chat["number"].as_u64().unwrap()
    }

    pub async fn subscribe(&self, chat: u64, user: &str) {
        let response = self
            .http
            .put(format!(
                "{}/v1/chats/{chat}/subscribers/{user}",
                self.api.base
            ))
            .bearer_auth(&self.app_token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// Every message of a chat, from the persistence API.
    pub async fn history(&self, chat: u64) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page: Value = self
                .http
                .get(format!(
                    "{}/v1/chats/{chat}/messages?after={after}&limit=1000",
                    self.api.base
                ))
                .bearer_auth(&self.app_token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let messages = page["messages"].as_array().unwrap().clone();
            let more = page["has_more"].as_bool().unwrap();
            if let Some(last) = messages.last() {
                after = last["number"].as_u64().unwrap();
            }
            all.extend(messages);
            if !more {
                return all;
            }
        }
    }

    /// The engine's `/metrics` text.
    pub async fn engine_metrics(&self) -> String {
        let url = format!("{}/metrics", self.engine.base);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the engine's shards hold `count` batches in flight (the
    /// API paused, say) and none of its sends is left unbatched.
    pub async fn wait_batches_in_flight(&self, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let metrics = self.engine_metrics().await;
            let in_flight = metric_sum(&metrics, "chat_engine_batches_in_flight");
            if in_flight == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{in_flight} batches in flight, not {count}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A GET of `url` with `token`: the status and the JSON body (null when
    /// it is not JSON).
    pub async fn get_json(&self, url: &str, token: &str) -> (u16, Value) {
        let response = self.http.get(url).bearer_auth(token).send().await.unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// HTTP publish with the app token.
    pub async fn publish(&self, chat: u64, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/chats/{chat}/messages", self.engine.base))
            .bearer_auth(&self.app_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// The sum of one metric over all its label sets (every shard's).
pub fn metric_sum(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub struct Client {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(port: u16, token: &str) -> Self {
        let url = format!("ws://127.0.0.1:{port}/v1/ws?token={token}");
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket connect");
        Self { socket }
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.unwrap();
    }

    /// The next text frame as JSON; panics on timeout or close.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(FRAME_TIMEOUT)
            .await
            .expect("a frame before the timeout")
    }

    /// The next text frame, `None` on timeout. Panics on a close.
    pub async fn try_recv(&mut self, limit: Duration) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(limit, self.socket.next()).await.ok()?;
            match next {
                Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame, which must be an error with `code`; returns it.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], "error", "{frame}");
        assert_eq!(frame["code"], code, "{frame}");
        frame
    }

    /// Asserts that nothing arrives for a moment.
    pub async fn expect_silence(&mut self) {
        if let Some(frame) = self.try_recv(Duration::from_millis(300)).await {
            panic!("expected nothing, got {frame}");
        }
    }

    /// Waits for the close frame; returns its reason.
    pub async fn closed_reason(&mut self) -> Option<String> {
        loop {
            match tokio::time::timeout(FRAME_TIMEOUT, self.socket.next())
                .await
                .ok()?
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Sends and waits for both the ack and the sender's own copy of the
    /// message (the ack may come first); returns the number.
    pub async fn send_and_ack(&mut self, chat: u64, body: &str) -> u64 {
        self.send(json!({"type": "send", "chat": chat, "body": body}))
            .await;
        let (mut acked, mut echoed) = (None, None);
        while acked.is_none() || echoed != acked {
            let frame = self.recv().await;
            match frame["type"].as_str() {
                Some("ack") => acked = frame["number"].as_u64(),
                Some("message") if frame["chat"] == chat && frame["body"] == body => {
                    echoed = frame["number"].as_u64()
                }
                _ => panic!("expected an ack and the message, got {frame}"),
            }
        }
        acked.unwrap()
    }
}
