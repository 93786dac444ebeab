//! Test harness: a real persistence API (the owner of app tokens) and a
//! real auth service, each on a loopback port over a temporary data dir,
//! and a real HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_auth::{AuthConfig, RevocationList, RevocationsPage};
use chat_persistence::ApiConfig;
use chat_persistence::limits::Limits;
use chat_token::{Claims, Jwks, PublicKey, Verifier};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const OPERATOR_KEY: &str = "op_test_operator_key";

/// A server task and the means to stop it gracefully.
struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn spawn<F>(serve: impl FnOnce(oneshot::Receiver<()>) -> F) -> Running
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (shutdown, stop) = oneshot::channel();
    Running {
        shutdown,
        task: tokio::spawn(serve(stop)),
    }
}

pub struct TestApi {
    pub addr: SocketAddr,
    running: Running,
    _dir: tempfile::TempDir,
}

impl TestApi {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = ApiConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            operator_key: OPERATOR_KEY.into(),
            limits: Limits::default(),
            auth_addr: None,
            connections: Default::default(),
            revocations_stale_s: chat_persistence::user_tokens::REVOCATIONS_STALE_S,
            token_ttl_max_s: 86_400,
            cache: None,
            search: Default::default(),
        };
        let server = chat_persistence::Server::bind(config)
            .await
            .expect("bind the API");
        let addr = server.local_addr().unwrap();
        let running = spawn(|stop| {
            server.serve(async move {
                let _ = stop.await;
            })
        });
        Self {
            addr,
            running,
            _dir: dir,
        }
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }

    /// Creates an app through the REST API; returns its token and id.
    pub async fn create_app(&self, title: &str) -> (String, u64) {
        let response = reqwest::Client::new()
            .post(format!("http://{}/v1/apps", self.addr))
            .bearer_auth(OPERATOR_KEY)
            .json(&json!({ "title": title }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        (
            body["token"].as_str().unwrap().to_owned(),
            body["id"].as_u64().unwrap(),
        )
    }
}

pub struct TestAuth {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    running: Running,
}

impl TestAuth {
    /// Starts the auth service on `data_dir` (the caller owns it, so it can
    /// restart on the same one), with the defaults changed by `configure`.
    pub async fn start(
        api: &TestApi,
        data_dir: &Path,
        configure: impl FnOnce(&mut AuthConfig),
    ) -> Self {
        let mut config = AuthConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            data_dir,
            OPERATOR_KEY,
            api.addr,
        );
        configure(&mut config);
        let server = chat_auth::Server::bind(config)
            .await
            .expect("bind the auth service");
        let base = format!("http://{}", server.local_addr().unwrap());
        let running = spawn(|stop| {
            server.serve(async move {
                let _ = stop.await;
            })
        });
        Self {
            base,
            client: reqwest::Client::new(),
            data_dir: data_dir.to_path_buf(),
            running,
        }
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|body| body.to_string().into_bytes());
        self.call_raw(method, path, token, body).await
    }

    /// Sends raw bytes as the body, for malformed input.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// Mints a token; returns the answer's body.
    pub async fn mint(&self, app_token: &str, user: &str, ttl_s: Option<u64>) -> Value {
        let mut body = json!({ "user": user });
        if let Some(ttl_s) = ttl_s {
            body["ttl_s"] = json!(ttl_s);
        }
        let response = self
            .call(Method::POST, "/v1/tokens", Some(app_token), Some(body))
            .await;
        assert_eq!(response.0, StatusCode::CREATED, "{}", response.1);
        response.1
    }

    pub async fn mint_token(&self, app_token: &str, user: &str) -> String {
        let body = self.mint(app_token, user, None).await;
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn revoke(&self, app_token: &str, user: &str) -> Value {
        let response = self
            .call(
                Method::POST,
                "/v1/tokens/revoke",
                Some(app_token),
                Some(json!({ "user": user })),
            )
            .await;
        assert_eq!(response.0, StatusCode::OK, "{}", response.1);
        response.1
    }

    pub async fn jwks(&self) -> Jwks {
        let (status, body) = self.call(Method::GET, "/v1/keys", None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    pub async fn kids(&self) -> Vec<String> {
        self.jwks().await.keys.into_iter().map(|k| k.kid).collect()
    }

    /// A verifier of every key the service publishes, as the engine builds it.
    pub async fn verifier(&self) -> Verifier {
        Verifier::from_jwks(&self.jwks().await).unwrap()
    }

    pub async fn revocations(&self, after: u64) -> RevocationsPage {
        let path = format!("/internal/v1/revocations?after={after}");
        let (status, body) = self
            .call(Method::GET, &path, Some(OPERATOR_KEY), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// Polls the revocation log into `list` as the engine does.
    pub async fn poll(&self, list: &mut RevocationList) {
        while list.apply_page(self.revocations(list.after()).await) {}
    }
}

/// A persistence API with one app, and a data dir for the auth service.
pub struct World {
    pub api: TestApi,
    pub app_token: String,
    pub app: u64,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> Self {
        let api = TestApi::start().await;
        let (app_token, app) = api.create_app("Acme").await;
        Self {
            api,
            app_token,
            app,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn auth(&self) -> TestAuth {
        self.auth_with(|_| {}).await
    }

    pub async fn auth_with(&self, configure: impl FnOnce(&mut AuthConfig)) -> TestAuth {
        TestAuth::start(&self.api, self.dir.path(), configure).await
    }
}

pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sleeps until the wall clock is at least `seconds` whole seconds past now.
pub async fn sleep_past(seconds: i64) {
    let target = now_s() + seconds;
    while now_s() < target {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn verify(verifier: &Verifier, token: &str) -> Claims {
    verifier.verify(token, now_s()).expect("the token verifies")
}

/// The kid of the key of `jwks` that signed `token`.
pub fn signer_kid(jwks: &Jwks, token: &str) -> String {
    jwks.keys
        .iter()
        .map(|k| k.kid.clone())
        .find(|kid| signed_by(jwks, kid, token))
        .expect("a published key signed the token")
}

/// Whether `token` is signed by the key `kid` of `jwks`.
pub fn signed_by(jwks: &Jwks, kid: &str, token: &str) -> bool {
    let key: PublicKey = jwks
        .public_keys()
        .unwrap()
        .into_iter()
        .find(|k| k.kid() == kid)
        .expect("the kid is published");
    Verifier::new([key]).unwrap().verify(token, now_s()).is_ok()
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
