//! One persistence API per fuzzing process, driven in process: its router
//! over an embedded store in a temporary directory (on /dev/shm when there
//! is one: the store syncs every write, and a synced write to a RAM disk
//! costs microseconds, not a disk's fraction of a millisecond), and a stand-in
//! auth service on a loopback port that serves the fixed keys and an empty
//! revocation log, so user tokens are verified as in production. One tokio
//! current-thread runtime runs everything: each request is `block_on` of a
//! `oneshot`, and the API's revocation poll runs inside those calls.
//!
//! Made once, at the first input, with a little data of its own: two apps,
//! a chat with two subscribers and three messages, and user tokens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use chat_persistence::credentials::OperatorKey;
use chat_persistence::http::{AppState, router};
use chat_persistence::limits::Limits;
use chat_persistence::metrics::Metrics;
use chat_persistence::store::{EmbeddedStore, Store};
use chat_persistence::user_tokens::{self, PollSettings};
use chat_token::{Jwks, RevocationsPage, SigningKey};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::keys;

pub const OPERATOR_KEY: &str = "op_fuzz_operator_key";

/// Longest response body read; the API's pages are bounded well below it.
const RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    /// The token of app 1, which has chat 1 (alice and bob, 3 messages).
    pub app_token: String,
    /// The token of app 2, which has no chat.
    pub other_app_token: String,
    /// User tokens: alice and bob of app 1, alice of app 2, one signed by an
    /// unknown key, one expired.
    pub user_tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

/// A whole answer: status and body bytes.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Harness {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = temp_dir();
        let router = runtime.block_on(start_api(dir.path().to_path_buf()));
        let mut harness = Self {
            runtime,
            router,
            app_token: String::new(),
            other_app_token: String::new(),
            user_tokens: Vec::new(),
            _dir: dir,
        };
        harness.provision();
        harness
    }

    /// Sends one request and reads the whole answer.
    pub fn send(&self, request: Request<Body>) -> Answer {
        let router = self.router.clone();
        self.runtime.block_on(async move {
            let response: Response<Body> = router.oneshot(request).await.expect("infallible");
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body = http_body_util::Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .expect("a response body within the bound")
                .to_bytes()
                .to_vec();
            Answer {
                status,
                content_type,
                body,
            }
        })
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Value) -> Value {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_string()))
            .expect("a valid request");
        let answer = self.send(request);
        assert!(answer.status.is_success(), "setup {method} {path}");
        serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
    }

    fn provision(&mut self) {
        let created = self.call("POST", "/v1/apps", OPERATOR_KEY, json!({"title": "fuzz"}));
        self.app_token = created["token"].as_str().expect("a token").to_owned();
        let other = self.call("POST", "/v1/apps", OPERATOR_KEY, json!({"title": "other"}));
        self.other_app_token = other["token"].as_str().expect("a token").to_owned();
        let app = self.app_token.clone();
        self.call("POST", "/v1/chats", &app, json!({"title": "general"}));
        for user in ["alice", "bob"] {
            let path = format!("/v1/chats/1/subscribers/{user}");
            let request = Request::builder()
                .method("PUT")
                .uri(path)
                .header("authorization", format!("Bearer {app}"))
                .body(Body::empty())
                .expect("a valid request");
            assert!(self.send(request).status.is_success(), "subscribe {user}");
        }
        self.commit_messages();
        let [k1, _] = keys::signing_keys();
        let now_s = now_s();
        let day_s = 86_400;
        let stranger = keys::signing_key("k9", 0x99);
        let mint = |key: &SigningKey, app, user, iat, exp| {
            key.mint(app, user, iat, exp).expect("valid claims")
        };
        self.user_tokens = vec![
            mint(&k1, 1, "alice", now_s, now_s + day_s),
            mint(&k1, 1, "bob", now_s, now_s + day_s),
            mint(&k1, 2, "alice", now_s, now_s + day_s),
            mint(&stranger, 1, "alice", now_s, now_s + day_s),
            mint(&k1, 1, "alice", now_s - 2 * day_s, now_s - day_s),
        ];
    }

    fn commit_messages(&self) {
        let messages = (1..=3)
            .map(|number| chat_wire::NewMessage {
                app: 1,
                chat: 1,
                number,
                sender: "alice".into(),
                recipients: None,
                body: format!("message {number}"),
                client_id: None,
                sent_at_us: 1_700_000_000_000_000,
                as_app: true,
            })
            .collect();
        let batch = chat_wire::Batch {
            batch_id: 1,
            chats: vec![],
            messages,
        };
        let bytes = chat_wire::encode_batch(&batch, chat_wire::limits::MESSAGE_BODY_BYTES_MAX)
            .expect("a valid batch");
        let request = Request::builder()
            .method("POST")
            .uri("/internal/v1/batches")
            .header("authorization", format!("Bearer {OPERATOR_KEY}"))
            .body(Body::from(bytes))
            .expect("a valid request");
        assert!(self.send(request).status.is_success(), "setup batch");
    }
}

fn now_s() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds fit an i64")
}

fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let made = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("chat-fuzz-")
            .tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("chat-fuzz-").tempdir()
    };
    made.expect("a temporary directory")
}

async fn start_api(data_dir: PathBuf) -> Router {
    let store = EmbeddedStore::open(&data_dir).expect("the embedded store opens");
    let store: Arc<dyn Store> = Arc::new(store);
    store.migrate().await.expect("migrations apply");
    let metrics = Arc::new(Metrics::default());
    let auth_addr = start_auth_stand_in().await;
    let user_tokens = user_tokens::start(
        auth_addr,
        OPERATOR_KEY.into(),
        PollSettings {
            revocations_stale_s: user_tokens::REVOCATIONS_STALE_S,
            token_ttl_max_s: 86_400,
            failures: metrics.revocation_poll_failures.clone(),
            stale: metrics.revocations_stale.clone(),
        },
    )
    .expect("the user token client");
    router(AppState {
        store,
        operator: OperatorKey::new(OPERATOR_KEY),
        limits: Arc::new(Limits::default()),
        metrics,
        user_tokens,
        health: Arc::default(),
        batch_order: Arc::default(),
        app_tokens: Arc::default(),
        cache: None,
        search: None,
    })
}

/// The two routes of the auth service the API reads: its keys and an empty
/// revocation log.
async fn start_auth_stand_in() -> SocketAddr {
    let jwks = Jwks::from_public_keys(&keys::signing_keys().map(|key| key.public()));
    let jwks = serde_json::to_value(&jwks).expect("a JWKS serialises");
    let empty = RevocationsPage {
        revocations: vec![],
        last_seq: 0,
        has_more: false,
    };
    let empty = serde_json::to_value(&empty).expect("a page serialises");
    let auth = Router::new()
        .route("/v1/keys", get(move || async move { axum::Json(jwks) }))
        .route(
            "/internal/v1/revocations",
            get(move || async move { axum::Json(empty) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move { axum::serve(listener, auth).await });
    addr
}
