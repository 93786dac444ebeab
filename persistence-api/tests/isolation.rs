//! Tenant isolation and credentials: one app's token never reads or changes
//! another app's chats, each credential works only where it is meant to, and
//! every refusal leaves the other app's state exactly as it was.

mod common;

use common::{OPERATOR_KEY, TestApi, assert_error, batch, message};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Two apps sharing one server. A has chats 1 to 3; B has only chat 1, so
/// chat 1 exists in both and chats 2 and 3 exist only in A.
struct TwoApps {
    api: TestApi,
    a: String,
    a_id: u64,
    b: String,
    b_id: u64,
}

const A_BODIES: [&str; 3] = ["a secret one", "a secret two", "a secret three"];
const B_BODY: &str = "b hello";

async fn two_apps() -> TwoApps {
    let api = TestApi::start().await;
    let (a, a_id) = api.create_app("App A").await;
    let (b, b_id) = api.create_app("App B").await;
    for _ in 0..3 {
        api.create_chat(&a).await;
    }
    assert_eq!(api.create_chat(&b).await, 1);
    for (chat, user) in [(1, "alice"), (1, "bob"), (2, "carol"), (3, "dave")] {
        api.subscribe(&a, chat, user).await;
    }
    api.subscribe(&b, 1, "zed").await;
    let committed = [
        batch(
            1,
            vec![
                message(a_id, 1, 1, "alice", A_BODIES[0]),
                message(a_id, 1, 2, "bob", A_BODIES[1]),
                message(a_id, 2, 1, "carol", A_BODIES[2]),
            ],
        ),
        batch(2, vec![message(b_id, 1, 1, "zed", B_BODY)]),
    ];
    for batch in &committed {
        let answer = api.post_batch(batch).await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    }
    TwoApps {
        api,
        a,
        a_id,
        b,
        b_id,
    }
}

impl TwoApps {
    /// Both apps' snapshots, for "nothing changed" checks.
    async fn snapshots(&self) -> (Value, Value) {
        (
            self.api.snapshot(&self.a).await,
            self.api.snapshot(&self.b).await,
        )
    }

    async fn assert_a_unchanged(&self, before: &Value) {
        assert_eq!(
            &self.api.snapshot(&self.a).await,
            before,
            "app A's state changed"
        );
    }
}

/// Every route an app token is for, with a body where the route takes one.
fn app_routes(chat: u64) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/v1/app".into(), None),
        (
            Method::PATCH,
            "/v1/app".into(),
            Some(json!({ "title": "renamed" })),
        ),
        (Method::POST, "/v1/chats".into(), Some(json!({}))),
        (Method::GET, "/v1/chats".into(), None),
        (Method::GET, format!("/v1/chats/{chat}"), None),
        (Method::GET, format!("/v1/chats/{chat}/subscribers"), None),
        (
            Method::PUT,
            format!("/v1/chats/{chat}/subscribers/mallory"),
            None,
        ),
        (
            Method::DELETE,
            format!("/v1/chats/{chat}/subscribers/alice"),
            None,
        ),
        (Method::GET, format!("/v1/chats/{chat}/messages"), None),
        (
            Method::GET,
            format!("/v1/chats/{chat}/messages?after=0"),
            None,
        ),
    ]
}

/// The engine's internal reads, all about app A: A's chat 1 and the lookup
/// of A's token by its digest.
fn internal_reads(w: &TwoApps) -> Vec<String> {
    let digest: String = chat_persistence::credentials::digest(&w.a)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    vec![
        format!("/internal/v1/apps/{}/chats/1", w.a_id),
        format!("/internal/v1/apps/{}/chats/1/messages?after=0", w.a_id),
        format!(
            "/internal/v1/apps/{}/chats/1/messages?after=0&user=alice",
            w.a_id
        ),
        format!("/internal/v1/app-tokens/{digest}"),
    ]
}

/// The operator's routes: app provisioning and the engine's internal interface.
fn operator_routes(w: &TwoApps) -> Vec<(Method, String, Option<Value>)> {
    let mut routes = vec![
        (
            Method::POST,
            "/v1/apps".into(),
            Some(json!({ "title": "intruder" })),
        ),
        (Method::POST, "/internal/v1/batches".into(), None),
    ];
    routes.extend(
        internal_reads(w)
            .into_iter()
            .map(|path| (Method::GET, path, None)),
    );
    routes
}

/// Sends a request with a raw `Authorization` header (or none), to test
/// header shapes that `TestApi::call`'s bearer auth cannot produce.
async fn call_with_header(
    api: &TestApi,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = api.client.request(method, format!("{}{path}", api.base));
    if let Some(authorization) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// One field of every item of a page's list.
fn pluck(page: &Value, list: &str, field: &str) -> Vec<Value> {
    page[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].clone())
        .collect()
}

fn bodies(page: &Value) -> Vec<String> {
    pluck(page, "messages", "body")
        .iter()
        .map(|body| body.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn chats_of_another_app_are_not_found() {
    let w = two_apps().await;
    let (a_before, b_before) = w.snapshots().await;
    for chat in [2, 3] {
        let requests = [
            (Method::GET, format!("/v1/chats/{chat}")),
            (Method::GET, format!("/v1/chats/{chat}/subscribers")),
            (Method::GET, format!("/v1/chats/{chat}/messages")),
            (Method::GET, format!("/v1/chats/{chat}/messages?after=0")),
            (Method::PUT, format!("/v1/chats/{chat}/subscribers/mallory")),
            (Method::PUT, format!("/v1/chats/{chat}/subscribers/carol")),
            (
                Method::DELETE,
                format!("/v1/chats/{chat}/subscribers/carol"),
            ),
            (Method::DELETE, format!("/v1/chats/{chat}/subscribers/dave")),
        ];
        for (method, path) in requests {
            let answer = w.api.call(method.clone(), &path, Some(&w.b), None).await;
            assert_eq!(
                answer.0,
                StatusCode::NOT_FOUND,
                "{method} {path} with B's token: {}",
                answer.1
            );
            assert_error(&answer, StatusCode::NOT_FOUND, "chat_not_found");
        }
    }
    w.assert_a_unchanged(&a_before).await;
    assert_eq!(
        w.api.snapshot(&w.b).await,
        b_before,
        "app B's state changed"
    );
}

#[tokio::test]
async fn the_listing_shows_only_the_apps_own_chats() {
    let w = two_apps().await;
    for query in ["", "?limit=1000", "?after=1", "?limit=1"] {
        let (status, page) = w.api.get(&format!("/v1/chats{query}"), &w.b).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let expected: Vec<Value> = if query == "?after=1" {
            vec![]
        } else {
            vec![json!(1)]
        };
        assert_eq!(
            pluck(&page, "chats", "number"),
            expected,
            "B's /v1/chats{query}: {page}"
        );
        assert_eq!(page["has_more"], false, "{query}: {page}");
    }
    let (_, page) = w.api.get("/v1/chats", &w.a).await;
    assert_eq!(
        pluck(&page, "chats", "number"),
        [json!(1), json!(2), json!(3)]
    );

    let (_, app) = w.api.get("/v1/app", &w.b).await;
    assert_eq!(
        (
            app["id"].as_u64(),
            app["title"].as_str(),
            app["chats_count"].as_u64()
        ),
        (Some(w.b_id), Some("App B"), Some(1))
    );
    let (_, app) = w.api.get("/v1/app", &w.a).await;
    assert_eq!(
        (app["id"].as_u64(), app["chats_count"].as_u64()),
        (Some(w.a_id), Some(3))
    );
}

#[tokio::test]
async fn a_shared_chat_number_shows_each_app_its_own_chat() {
    let w = two_apps().await;
    let a_before = w.api.snapshot(&w.a).await;

    let (_, chat) = w.api.get("/v1/chats/1", &w.b).await;
    assert_eq!(
        (
            chat["messages_count"].as_u64(),
            chat["subscribers_count"].as_u64()
        ),
        (Some(1), Some(1)),
        "{chat}"
    );
    let (_, subscribers) = w.api.get("/v1/chats/1/subscribers", &w.b).await;
    assert_eq!(subscribers["subscribers"], json!(["zed"]));
    for query in ["", "?after=0", "?before=3", "?after=0&limit=1000"] {
        let (status, page) = w
            .api
            .get(&format!("/v1/chats/1/messages{query}"), &w.b)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            bodies(&page),
            [B_BODY],
            "B's history{query} must hold only B's message: {page}"
        );
    }

    // B's writes on its chat 1 land in B's chat 1 and nowhere else.
    let gone = w
        .api
        .call(
            Method::DELETE,
            "/v1/chats/1/subscribers/alice",
            Some(&w.b),
            None,
        )
        .await;
    assert_error(&gone, StatusCode::NOT_FOUND, "subscription_not_found");
    let (status, _) = w
        .api
        .call(
            Method::PUT,
            "/v1/chats/1/subscribers/alice",
            Some(&w.b),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = w
        .api
        .call(
            Method::DELETE,
            "/v1/chats/1/subscribers/alice",
            Some(&w.b),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = w
        .api
        .call(Method::PUT, "/v1/chats/1/subscribers/bob", Some(&w.b), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = w
        .api
        .call(
            Method::PATCH,
            "/v1/app",
            Some(&w.b),
            Some(json!({ "title": "B renamed" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        w.api.create_chat(&w.b).await,
        2,
        "B numbers its chats on its own"
    );

    w.assert_a_unchanged(&a_before).await;
    let (_, subscribers) = w.api.get("/v1/chats/1/subscribers", &w.b).await;
    assert_eq!(subscribers["subscribers"], json!(["bob", "zed"]));
}

#[tokio::test]
async fn the_operator_key_is_forbidden_on_app_routes() {
    let w = two_apps().await;
    let (a_before, b_before) = w.snapshots().await;
    for (method, path, body) in app_routes(1) {
        let answer = w
            .api
            .call(method.clone(), &path, Some(OPERATOR_KEY), body)
            .await;
        assert_eq!(
            answer.0,
            StatusCode::FORBIDDEN,
            "{method} {path} with the operator key: {}",
            answer.1
        );
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(w.snapshots().await, (a_before, b_before));
}

#[tokio::test]
async fn an_app_token_cannot_create_apps() {
    let w = two_apps().await;
    let (a_before, b_before) = w.snapshots().await;
    for token in [&w.a, &w.b] {
        let answer = w
            .api
            .call(
                Method::POST,
                "/v1/apps",
                Some(token),
                Some(json!({ "title": "mine now" })),
            )
            .await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(w.snapshots().await, (a_before, b_before));
    let (_, next) = w.api.create_app("next").await;
    assert_eq!(next, w.b_id + 1, "a refused POST /v1/apps created an app");
}

#[tokio::test]
async fn internal_endpoints_refuse_app_tokens() {
    let w = two_apps().await;
    let (a_before, b_before) = w.snapshots().await;
    // A batch that would write into A's chat 1 if B's token were let through.
    let intrusion = batch(9, vec![message(w.a_id, 1, 3, "mallory", "planted")]);
    let bytes =
        chat_wire::encode_batch(&intrusion, chat_wire::limits::MESSAGE_BODY_BYTES_MAX).unwrap();
    for token in [&w.b, &w.a] {
        let answer = w
            .api
            .call_raw(
                Method::POST,
                "/internal/v1/batches",
                Some(token),
                bytes.clone(),
            )
            .await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
        for path in internal_reads(&w) {
            let answer = w.api.get(&path, token).await;
            assert_eq!(
                answer.0,
                StatusCode::FORBIDDEN,
                "GET {path} with an app token: {}",
                answer.1
            );
            assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
        }
    }
    assert_eq!(w.snapshots().await, (a_before, b_before));
}

#[tokio::test]
async fn wrong_credentials_are_invalid_credentials() {
    let w = two_apps().await;
    let (a_before, b_before) = w.snapshots().await;
    let unknown_token = format!("app_{}", "0".repeat(64));
    let headers = [
        format!("Bearer {unknown_token}"),
        format!("Bearer {OPERATOR_KEY}x"),
        format!("Bearer {}x", w.a),
        format!("Bearer {}", &w.b[..w.b.len() - 1]),
        format!("Basic {}", w.a),
        w.a.clone(),
        format!("Bearer{}", w.a),
    ];
    let routes = app_routes(1).into_iter().chain(operator_routes(&w));
    for (method, path, body) in routes {
        for header in &headers {
            let answer =
                call_with_header(&w.api, method.clone(), &path, Some(header), body.as_ref()).await;
            assert_eq!(
                answer.0,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {header:?}: {}",
                answer.1
            );
            assert_error(&answer, StatusCode::UNAUTHORIZED, "invalid_credentials");
        }
    }
    assert_eq!(w.snapshots().await, (a_before, b_before));
}

#[tokio::test]
async fn no_credentials_are_missing_credentials() {
    let w = two_apps().await;
    let (a_before, b_before) = w.snapshots().await;
    let routes = app_routes(1).into_iter().chain(operator_routes(&w));
    for (method, path, body) in routes {
        let answer = call_with_header(&w.api, method.clone(), &path, None, body.as_ref()).await;
        assert_eq!(
            answer.0,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without credentials: {}",
            answer.1
        );
        assert_error(&answer, StatusCode::UNAUTHORIZED, "missing_credentials");
    }
    assert_eq!(w.snapshots().await, (a_before, b_before));
}
