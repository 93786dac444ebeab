//! Bad input: every malformed, oversized or out-of-range request gets a 4xx
//! with its documented code (src/error.rs, docs/ERRORS.md), and the state
//! read back afterwards is exactly what it was before.

mod common;

use chat_persistence::limits::{Limits, REQUEST_BODY_BYTES_MAX};
use chat_wire::limits::MESSAGE_BODY_BYTES_MAX;
use chat_wire::{Batch, NewMessage};
use common::{OPERATOR_KEY, TestApi, assert_error, batch, implicit_chat, message};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The answer a case expects: its status and documented code.
type Expected = (StatusCode, &'static str);

const MALFORMED_JSON: Expected = (StatusCode::BAD_REQUEST, "malformed_json");
const UNKNOWN_FIELD: Expected = (StatusCode::BAD_REQUEST, "unknown_field");
const INVALID_REQUEST: Expected = (StatusCode::BAD_REQUEST, "invalid_request");
const INVALID_NUMBER: Expected = (StatusCode::BAD_REQUEST, "invalid_number");
const INVALID_QUERY: Expected = (StatusCode::BAD_REQUEST, "invalid_query");
const INVALID_BATCH: Expected = (StatusCode::BAD_REQUEST, "invalid_batch");
const ROUTE_NOT_FOUND: Expected = (StatusCode::NOT_FOUND, "route_not_found");
const CHAT_NOT_FOUND: Expected = (StatusCode::NOT_FOUND, "chat_not_found");
const METHOD_NOT_ALLOWED: Expected = (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
const BODY_TOO_LARGE: Expected = (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
const INVALID_TITLE: Expected = (StatusCode::UNPROCESSABLE_ENTITY, "invalid_title");
const INVALID_USER_ID: Expected = (StatusCode::UNPROCESSABLE_ENTITY, "invalid_user_id");
const INVALID_LIMIT: Expected = (StatusCode::UNPROCESSABLE_ENTITY, "invalid_limit");

#[derive(Clone, Copy, Debug)]
enum Who {
    Operator,
    App,
}

/// One request that must be refused as `expected`.
struct Case {
    method: Method,
    path: String,
    who: Who,
    body: Vec<u8>,
    expected: Expected,
}

impl Case {
    fn new(
        method: Method,
        path: impl Into<String>,
        who: Who,
        body: impl Into<Vec<u8>>,
        expected: Expected,
    ) -> Self {
        Self {
            method,
            path: path.into(),
            who,
            body: body.into(),
            expected,
        }
    }

    fn get(path: impl Into<String>, expected: Expected) -> Self {
        Self::new(Method::GET, path, Who::App, [], expected)
    }

    fn batch(body: Vec<u8>) -> Self {
        Self::new(
            Method::POST,
            "/internal/v1/batches",
            Who::Operator,
            body,
            INVALID_BATCH,
        )
    }

    fn describe(&self) -> String {
        let body: String = String::from_utf8_lossy(&self.body)
            .chars()
            .take(80)
            .collect();
        format!(
            "{} {} as {:?} with {} body bytes {body:?}",
            self.method,
            self.path,
            self.who,
            self.body.len()
        )
    }
}

/// The routes that take a JSON `{"title"}` body, each with its credential.
/// The first two require a body; `POST /v1/chats` may have none.
fn title_routes() -> [(Method, &'static str, Who); 3] {
    [
        (Method::POST, "/v1/apps", Who::Operator),
        (Method::PATCH, "/v1/app", Who::App),
        (Method::POST, "/v1/chats", Who::App),
    ]
}

/// Every body sent to every route, all expecting the same answer.
fn matrix<B: AsRef<[u8]>>(
    routes: &[(Method, &'static str, Who)],
    bodies: &[B],
    expected: Expected,
) -> Vec<Case> {
    routes
        .iter()
        .flat_map(|(method, path, who)| {
            bodies
                .iter()
                .map(move |body| Case::new(method.clone(), *path, *who, body.as_ref(), expected))
        })
        .collect()
}

fn title_body(title: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "title": title })).unwrap()
}

/// A syntactically valid `{"title"}` body of exactly `len` bytes.
fn title_body_of_size(len: usize) -> Vec<u8> {
    let frame = title_body("").len();
    title_body(&"x".repeat(len - frame))
}

/// The batch the fixture committed: replaying it is a no-op.
fn stored_batch(app: u64) -> Batch {
    batch(
        1,
        vec![
            message(app, 1, 1, "alice", "first"),
            message(app, 1, 2, "bob", "second"),
        ],
    )
}

/// A valid batch that would commit message 3 of chat 1 if it were accepted.
fn next_batch(app: u64) -> Batch {
    let mut next = message(app, 1, 3, "alice", "third");
    next.recipients = Some(vec!["bob".into()]);
    next.client_id = Some("c-3".into());
    batch(2, vec![next])
}

fn encoded(batch: &Batch) -> Vec<u8> {
    chat_wire::encode_batch(batch, MESSAGE_BODY_BYTES_MAX).unwrap()
}

/// Encodes without validating, for batches that `encode_batch` refuses to build.
fn encoded_unchecked(batch: &Batch) -> Vec<u8> {
    rkyv::to_bytes::<rkyv::rancor::Error>(batch)
        .unwrap()
        .into_vec()
}

/// Deterministic pseudo-random bytes (xorshift64), so a failure reproduces.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// One app with chat 1: titled, two subscribers, two messages.
struct Fixture {
    api: TestApi,
    token: String,
    app: u64,
    /// The highest app id so far: the next app created must get this plus 1.
    last_app: u64,
}

async fn fixture() -> Fixture {
    fixture_with(Limits::default()).await
}

async fn fixture_with(limits: Limits) -> Fixture {
    let api = TestApi::start_with(limits).await;
    let (token, app) = api.create_app("Bad input").await;
    let created = api
        .call(
            Method::POST,
            "/v1/chats",
            Some(&token),
            Some(json!({ "title": "general" })),
        )
        .await;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.1);
    for user in ["alice", "bob"] {
        api.subscribe(&token, 1, user).await;
    }
    let answer = api.post_batch(&stored_batch(app)).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    Fixture {
        api,
        token,
        app,
        last_app: app,
    }
}

impl Fixture {
    fn token(&self, who: Who) -> &str {
        match who {
            Who::Operator => OPERATOR_KEY,
            Who::App => &self.token,
        }
    }

    async fn send(&self, case: &Case) -> (StatusCode, Value) {
        self.api
            .call_raw(
                case.method.clone(),
                &case.path,
                Some(self.token(case.who)),
                case.body.clone(),
            )
            .await
    }

    /// Sends every case and checks its answer, then that the state read back
    /// is unchanged and that no app was created.
    async fn assert_refused(&mut self, cases: &[Case]) {
        assert!(!cases.is_empty());
        println!("bad-input corpus: {} cases", cases.len());
        let before = self.api.snapshot(&self.token).await;
        for case in cases {
            let answer = self.send(case).await;
            let (status, code) = case.expected;
            assert_eq!(
                (answer.0, answer.1["error"]["code"].as_str()),
                (status, Some(code)),
                "{}: {}",
                case.describe(),
                answer.1
            );
            assert_error(&answer, status, code);
        }
        assert_eq!(
            self.api.snapshot(&self.token).await,
            before,
            "a refused request changed the state"
        );
        self.assert_no_app_created().await;
    }

    async fn assert_no_app_created(&mut self) {
        let (_, id) = self.api.create_app("probe").await;
        assert_eq!(id, self.last_app + 1, "a refused request created an app");
        self.last_app = id;
    }
}

#[tokio::test]
async fn malformed_json_is_malformed_json() {
    let mut f = fixture().await;
    let bodies: [&[u8]; 9] = [
        b"{\"title\":",
        b"{\"title\": \"x\"",
        b"{\"title\": \"unterminated}",
        b"{title: \"x\"}",
        b"{\"title\": 'x'}",
        b"{\"title\": \"x\",}",
        b"{\"title\": \"x\"} trailing",
        b"{\"title\": \"caf\xe9\"}",
        b"\xff\xfe{}",
    ];
    let mut cases = matrix(&title_routes(), &bodies, MALFORMED_JSON);
    cases.extend(matrix(&title_routes()[..2], &[b""], MALFORMED_JSON));
    f.assert_refused(&cases).await;
}

#[tokio::test]
async fn unknown_fields_are_unknown_field() {
    let mut f = fixture().await;
    let bodies = [
        r#"{"title": "x", "extra": 1}"#,
        r#"{"name": "x"}"#,
        r#"{"extra": null, "title": "x"}"#,
        r#"{"Title": "x"}"#,
    ];
    f.assert_refused(&matrix(&title_routes(), &bodies, UNKNOWN_FIELD))
        .await;
}

#[tokio::test]
async fn wrong_types_are_invalid_request() {
    let mut f = fixture().await;
    let everywhere = [
        r#"{"title": 5}"#,
        r#"{"title": true}"#,
        r#"{"title": ["x"]}"#,
        r#"{"title": {"text": "x"}}"#,
        r#"{"title": "a", "title": "b"}"#,
        r#""x""#,
        "5",
        "null",
    ];
    let mut cases = matrix(&title_routes(), &everywhere, INVALID_REQUEST);
    // An app's title is required, so null or none is wrong; a chat's is optional.
    cases.extend(matrix(
        &title_routes()[..2],
        &[r#"{"title": null}"#, "{}"],
        INVALID_REQUEST,
    ));
    f.assert_refused(&cases).await;
}

#[tokio::test]
async fn array_bodies_are_invalid_request() {
    let mut f = fixture().await;
    let bodies = ["[]", r#"["x"]"#, r#"["x", "y"]"#];
    f.assert_refused(&matrix(&title_routes(), &bodies, INVALID_REQUEST))
        .await;
}

#[tokio::test]
async fn oversize_bodies_are_body_too_large() {
    let mut f = fixture().await;
    let oversize = [
        title_body_of_size(REQUEST_BODY_BYTES_MAX + 1),
        title_body_of_size(4 * REQUEST_BODY_BYTES_MAX),
    ];
    let mut cases = matrix(&title_routes(), &oversize, BODY_TOO_LARGE);
    // At exactly the limit the body is read, and its title is what is wrong.
    cases.extend(matrix(
        &title_routes(),
        &[title_body_of_size(REQUEST_BODY_BYTES_MAX)],
        INVALID_TITLE,
    ));
    f.assert_refused(&cases).await;
}

/// A batch's place in its stream: both headers or neither, each once, a
/// canonical number from 1 to the JSON-safe maximum.
#[tokio::test]
async fn a_bad_batch_stream_header_is_invalid_batch() {
    let f = fixture().await;
    let (stream, seq, from) = (
        chat_wire::BATCH_STREAM_HEADER,
        chat_wire::BATCH_SEQ_HEADER,
        chat_wire::BATCH_UNSETTLED_FROM_HEADER,
    );
    let too_big = (chat_wire::limits::NUMBER_MAX + 1).to_string();
    let place = |s: &str, q: &str, f: &str| -> Vec<(&'static str, String)> {
        vec![(stream, s.into()), (seq, q.into()), (from, f.into())]
    };
    let mut bad: Vec<Vec<(&str, String)>> = vec![
        vec![(stream, "1".into())],
        vec![(seq, "1".into())],
        vec![(stream, "1".into()), (seq, "1".into())],
        vec![(seq, "1".into()), (from, "1".into())],
        place("1", "1", "2"),
    ];
    for wrong in ["0", "01", "+1", "-1", "1 2", "x", too_big.as_str()] {
        bad.push(place(wrong, "1", "1"));
        bad.push(place("1", wrong, "1"));
        bad.push(place("1", "5", wrong));
    }
    for twice in [stream, seq, from] {
        let mut headers = place("1", "1", "1");
        headers.push((twice, "1".into()));
        bad.push(headers);
    }
    let before = f.api.snapshot(&f.token).await;
    for headers in &bad {
        let answer = f.api.post_batch_with(&next_batch(f.app), headers).await;
        assert_eq!(answer.0, INVALID_BATCH.0, "{headers:?}: {}", answer.1);
        assert_error(&answer, INVALID_BATCH.0, INVALID_BATCH.1);
    }
    assert_eq!(
        f.api.snapshot(&f.token).await,
        before,
        "a refused batch changed the state"
    );
    // Good headers, the same batch: it commits.
    let good = place("9", "1", "1");
    let (status, receipt) = f.api.post_batch_with(&next_batch(f.app), &good).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["messages"], 1, "{receipt}");
}

#[tokio::test]
async fn an_oversize_batch_is_body_too_large() {
    let mut f = fixture_with(Limits {
        batch_body_bytes_max: 512,
        ..Limits::default()
    })
    .await;
    let mut big = next_batch(f.app);
    big.messages[0].body = "x".repeat(1024);
    f.assert_refused(&[Case::new(
        Method::POST,
        "/internal/v1/batches",
        Who::Operator,
        encoded(&big),
        BODY_TOO_LARGE,
    )])
    .await;
}

/// Every route with a number in its path, that number being `n`.
fn numbered_routes(n: &str) -> [(Method, String, Who); 9] {
    [
        (Method::GET, format!("/v1/chats/{n}"), Who::App),
        (Method::GET, format!("/v1/chats/{n}/reads"), Who::App),
        (
            Method::GET,
            format!("/internal/v1/apps/1/chats/{n}/reads/alice"),
            Who::Operator,
        ),
        (Method::GET, format!("/v1/chats/{n}/messages"), Who::App),
        (Method::GET, format!("/v1/chats/{n}/subscribers"), Who::App),
        (
            Method::PUT,
            format!("/v1/chats/{n}/subscribers/alice"),
            Who::App,
        ),
        (
            Method::DELETE,
            format!("/v1/chats/{n}/subscribers/alice"),
            Who::App,
        ),
        (
            Method::GET,
            format!("/internal/v1/apps/{n}/chats/1"),
            Who::Operator,
        ),
        (
            Method::GET,
            format!("/internal/v1/apps/1/chats/{n}"),
            Who::Operator,
        ),
    ]
}

#[tokio::test]
async fn invalid_numbers_in_paths_are_invalid_number() {
    let mut f = fixture().await;
    // Every number past 2^53 - 1 is refused, up to and beyond u64's
    // range, and so is every non-canonical spelling (`01` must not name
    // chat 1 a second way).
    let numbers = [
        "0",
        "00",
        "01",
        "007",
        "-1",
        "9007199254740992",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "abc",
        "1.5",
        "1e3",
        "0x1",
        "%2B1",
        "%20",
        "1%20",
    ];
    let mut cases: Vec<Case> = numbers
        .iter()
        .flat_map(|n| numbered_routes(n))
        .map(|(method, path, who)| Case::new(method, path, who, [], INVALID_NUMBER))
        .collect();
    // The largest number is a number, just not a chat.
    cases.extend(
        numbered_routes(&chat_wire::limits::NUMBER_MAX.to_string())
            .into_iter()
            .filter(|(_, path, _)| path.starts_with("/v1/"))
            .map(|(method, path, who)| Case::new(method, path, who, [], CHAT_NOT_FOUND)),
    );
    f.assert_refused(&cases).await;
}

#[tokio::test]
async fn non_utf8_path_segments_get_their_documented_codes() {
    let mut f = fixture().await;
    let mut cases: Vec<Case> = numbered_routes("%FF")
        .into_iter()
        .map(|(method, path, who)| Case::new(method, path, who, [], INVALID_NUMBER))
        .collect();
    for method in [Method::PUT, Method::DELETE] {
        cases.push(Case::new(
            method,
            "/v1/chats/1/subscribers/a%FF",
            Who::App,
            [],
            INVALID_USER_ID,
        ));
    }
    f.assert_refused(&cases).await;
}

#[tokio::test]
async fn invalid_query_values_are_refused() {
    let mut f = fixture().await;
    let mut cases = Vec::new();
    for route in [
        "/v1/chats",
        "/v1/chats/1/messages",
        "/v1/chats/1/subscribers",
        "/v1/chats/1/reads",
    ] {
        for limit in [
            "0",
            "-1",
            "abc",
            "1.5",
            "",
            "100000",
            "1001",
            "18446744073709551616",
        ] {
            cases.push(Case::get(format!("{route}?limit={limit}"), INVALID_LIMIT));
        }
        for unknown in [
            "unknown=1",
            "q=hello",
            "Limit=5",
            "before=1&after=0&page=2",
            "limit=1&limit=2",
        ] {
            cases.push(Case::get(format!("{route}?{unknown}"), INVALID_QUERY));
        }
    }
    for route in ["/v1/chats", "/v1/chats/1/messages"] {
        for after in ["abc", "-1", "1.5", "18446744073709551616", "", "%2B1"] {
            cases.push(Case::get(format!("{route}?after={after}"), INVALID_NUMBER));
        }
    }
    for before in ["0", "abc", "-1", ""] {
        cases.push(Case::get(
            format!("/v1/chats/1/messages?before={before}"),
            INVALID_NUMBER,
        ));
    }
    // `before` must be a positive number above `after`.
    for (after, before) in [(5, 5), (7, 3), (1, 1), (0, 0)] {
        let expected = if before == 0 {
            INVALID_NUMBER
        } else {
            INVALID_QUERY
        };
        cases.push(Case::get(
            format!("/v1/chats/1/messages?after={after}&before={before}"),
            expected,
        ));
    }
    // The cursor of the subscribers and of their read positions is a user id.
    for route in ["/v1/chats/1/subscribers", "/v1/chats/1/reads"] {
        for after in ["a%20b", "%C3%A4", "a%2Fb", "", &"a".repeat(129)] {
            cases.push(Case::get(format!("{route}?after={after}"), INVALID_USER_ID));
        }
    }
    for route in [
        "/v1/chats/1/read",
        "/internal/v1/apps/1/chats/1/reads/alice",
    ] {
        cases.push(Case::get(format!("{route}?limit=1"), INVALID_QUERY));
    }
    f.assert_refused(&cases).await;
}

#[tokio::test]
async fn the_chat_listing_accepts_after_zero() {
    let f = fixture().await;
    let (status, page) = f.api.get("/v1/chats?after=0", &f.token).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["chats"][0]["number"], 1, "{page}");
}

#[tokio::test]
async fn invalid_titles_are_invalid_title() {
    let mut f = fixture().await;
    let titles = [
        String::new(),
        " ".into(),
        "  \t \n ".into(),
        "\u{a0}\u{3000}".into(),
        "x".repeat(201),
        "ä".repeat(201),
        "bell\u{7}".into(),
        "line\nbreak".into(),
        "nul\0".into(),
        "del\u{7f}".into(),
        "c1\u{85}".into(),
    ];
    let bodies: Vec<Vec<u8>> = titles.iter().map(|title| title_body(title)).collect();
    f.assert_refused(&matrix(&title_routes(), &bodies, INVALID_TITLE))
        .await;
}

#[tokio::test]
async fn invalid_user_ids_are_invalid_user_id() {
    let mut f = fixture().await;
    let long = "a".repeat(129);
    let users = [
        "a%20b",
        "%C3%A4",
        "a%2Fb",
        "%20",
        "%09",
        "%00",
        "a%3Fb",
        "a%23b",
        "a+b",
        "a%25b",
        "%2E%2E%2F",
        &long,
    ];
    let cases: Vec<Case> = users
        .iter()
        .flat_map(|user| {
            [Method::PUT, Method::DELETE].map(|method| {
                Case::new(
                    method,
                    format!("/v1/chats/1/subscribers/{user}"),
                    Who::App,
                    [],
                    INVALID_USER_ID,
                )
            })
        })
        .collect();
    f.assert_refused(&cases).await;
}

#[tokio::test]
async fn corrupt_batches_are_invalid_batch() {
    let mut f = fixture().await;
    let valid = encoded(&next_batch(f.app));
    let mut bodies: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0; 64],
        vec![0xff; 256],
        br#"{"batch_id": 1}"#.to_vec(),
    ];
    bodies.extend((1..=8).map(|seed| noise(seed, 16 * seed as usize)));
    // Every truncation, from the empty body to one byte short.
    bodies.extend((0..valid.len()).map(|len| valid[..len].to_vec()));
    f.assert_refused(&bodies.into_iter().map(Case::batch).collect::<Vec<_>>())
        .await;
}

#[tokio::test]
async fn flipped_batches_never_fail_the_server() {
    let f = fixture().await;
    // Flips of a replay: one that still decodes is most often a replay or a
    // conflict, but may be a valid new batch; whatever it is, never a 5xx.
    let valid = encoded(&stored_batch(f.app));
    for index in 0..valid.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut flipped = valid.clone();
            flipped[index] ^= mask;
            let (status, body) = f
                .api
                .call_raw(
                    Method::POST,
                    "/internal/v1/batches",
                    Some(OPERATOR_KEY),
                    flipped,
                )
                .await;
            assert!(
                !status.is_server_error(),
                "byte {index} ^ {mask:#x}: {status} {body}"
            );
            assert!(
                status.is_success() || body["error"]["code"].is_string(),
                "byte {index} ^ {mask:#x}: {body}"
            );
        }
    }
    let (status, _) = f.api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/app",
        "/v1/chats",
        "/v1/chats/1",
        "/v1/chats/1/subscribers",
        "/v1/chats/1/messages?after=0",
    ] {
        let (status, body) = f.api.get(path, &f.token).await;
        assert_eq!(status, StatusCode::OK, "GET {path} after the flips: {body}");
    }
}

/// Batches that decode but fail `Batch::validate`, each named for its flaw.
fn invalid_batches(app: u64) -> Vec<(&'static str, Batch)> {
    let with = |change: fn(&mut NewMessage)| {
        let mut b = next_batch(app);
        change(&mut b.messages[0]);
        b
    };
    let with_chats = |chats: Vec<chat_wire::NewChat>| Batch {
        chats,
        ..next_batch(app)
    };
    let mut gap = next_batch(app);
    gap.messages.push(message(app, 1, 5, "alice", "gap"));
    vec![
        ("message number 0", with(|m| m.number = 0)),
        ("message chat 0", with(|m| m.chat = 0)),
        ("message app 0", with(|m| m.app = 0)),
        ("empty body", with(|m| m.body.clear())),
        (
            "oversize body",
            with(|m| m.body = "x".repeat(MESSAGE_BODY_BYTES_MAX + 1)),
        ),
        ("invalid sender", with(|m| m.sender = "a b".into())),
        ("empty sender", with(|m| m.sender.clear())),
        (
            "invalid recipient",
            with(|m| m.recipients = Some(vec!["bob".into(), "ä".into()])),
        ),
        (
            "too many recipients",
            with(|m| m.recipients = Some(vec!["bob".into(); 1001])),
        ),
        (
            "empty client id",
            with(|m| m.client_id = Some(String::new())),
        ),
        (
            "client id with a space",
            with(|m| m.client_id = Some("c 3".into())),
        ),
        ("a gap inside the batch", gap),
        (
            "a chat created twice",
            with_chats(vec![
                implicit_chat(app, 2, &["alice"]),
                implicit_chat(app, 2, &["bob"]),
            ]),
        ),
        (
            "an invalid implicit subscriber",
            with_chats(vec![implicit_chat(app, 2, &["not valid"])]),
        ),
        (
            "implicit chat 0",
            with_chats(vec![implicit_chat(app, 0, &["alice"])]),
        ),
        ("an empty batch", batch(3, vec![])),
    ]
}

#[tokio::test]
async fn batches_failing_validation_are_invalid_batch() {
    let mut f = fixture().await;
    for (what, batch) in invalid_batches(f.app) {
        assert!(
            batch.validate(MESSAGE_BODY_BYTES_MAX).is_err(),
            "{what} should be invalid"
        );
        f.assert_refused(&[Case::batch(encoded_unchecked(&batch))])
            .await;
    }
}

#[tokio::test]
async fn out_of_range_timestamps_are_invalid_batch() {
    let mut f = fixture().await;
    let mut late_message = next_batch(f.app);
    late_message.messages[0].sent_at_us = i64::MAX;
    let mut late_chat = batch(4, vec![message(f.app, 2, 1, "alice", "hi")]);
    late_chat.chats = vec![implicit_chat(f.app, 2, &["alice"])];
    late_chat.chats[0].created_at_us = 253_402_300_800_000_000; // 10000-01-01
    f.assert_refused(&[
        Case::batch(encoded_unchecked(&late_message)),
        Case::batch(encoded_unchecked(&late_chat)),
    ])
    .await;
}

#[tokio::test]
async fn unknown_routes_are_route_not_found() {
    let mut f = fixture().await;
    let paths = [
        "/",
        "/v1",
        "/v1/nope",
        "/v2/app",
        "/v1/app/",
        "/v1/chats/",
        "/v1/chats/1/",
        "/v1/chats/1/nope",
        "/v1/chats/1/subscribers/",
        "/v1/chats/1/subscribers/alice/extra",
        "/v1/apps/1",
        "/internal/v1/nope",
        "/V1/APP",
    ];
    let cases: Vec<Case> = paths
        .iter()
        .flat_map(|path| {
            [Who::App, Who::Operator]
                .map(|who| Case::new(Method::GET, *path, who, [], ROUTE_NOT_FOUND))
        })
        .collect();
    f.assert_refused(&cases).await;
    // Without credentials too: an unknown route is not a question of who asks.
    assert_error(
        &f.api.call(Method::GET, "/v1/nope", None, None).await,
        ROUTE_NOT_FOUND.0,
        ROUTE_NOT_FOUND.1,
    );
}

#[tokio::test]
async fn wrong_methods_are_method_not_allowed() {
    let mut f = fixture().await;
    let table = [
        (Method::GET, "/v1/apps"),
        (Method::DELETE, "/v1/apps"),
        (Method::POST, "/v1/app"),
        (Method::DELETE, "/v1/app"),
        (Method::PUT, "/v1/chats"),
        (Method::DELETE, "/v1/chats"),
        (Method::POST, "/v1/chats/1"),
        (Method::DELETE, "/v1/chats/1"),
        (Method::PATCH, "/v1/chats/1"),
        (Method::POST, "/v1/chats/1/subscribers"),
        (Method::GET, "/v1/chats/1/subscribers/alice"),
        (Method::PATCH, "/v1/chats/1/subscribers/alice"),
        (Method::POST, "/v1/chats/1/messages"),
        (Method::DELETE, "/v1/chats/1/messages"),
        (Method::GET, "/internal/v1/batches"),
        (Method::PUT, "/internal/v1/batches"),
        (Method::POST, "/internal/v1/apps/1/chats/1"),
    ];
    let cases: Vec<Case> = table
        .into_iter()
        .flat_map(|(method, path)| {
            [Who::App, Who::Operator].map(|who| {
                Case::new(
                    method.clone(),
                    path,
                    who,
                    b"{}".to_vec(),
                    METHOD_NOT_ALLOWED,
                )
            })
        })
        .collect();
    f.assert_refused(&cases).await;
}

/// Every route refuses query parameters it does not read, including the
/// routes that read none (they used to ignore them).
#[tokio::test]
async fn every_route_refuses_unknown_query_parameters() {
    let mut f = fixture().await;
    let routes: [(Method, &str, Who); 12] = [
        (Method::GET, "/v1/app", Who::App),
        (Method::PATCH, "/v1/app", Who::App),
        (Method::POST, "/v1/chats", Who::App),
        (Method::GET, "/v1/chats/1", Who::App),
        (Method::PUT, "/v1/chats/1/subscribers/alice", Who::App),
        (Method::DELETE, "/v1/chats/1/subscribers/alice", Who::App),
        (Method::POST, "/v1/apps", Who::Operator),
        (Method::POST, "/internal/v1/batches", Who::Operator),
        (Method::GET, "/internal/v1/apps/1/chats/1", Who::Operator),
        (
            Method::POST,
            "/internal/v1/apps/1/users/alice/memberships",
            Who::Operator,
        ),
        (
            Method::POST,
            "/internal/v1/apps/1/memberships",
            Who::Operator,
        ),
        (Method::GET, "/healthz", Who::App),
    ];
    let mut cases = Vec::new();
    for (method, path, who) in routes {
        for query in ["admin=1", "x=1", "token=abc", "after=0"] {
            cases.push(Case::new(
                method.clone(),
                format!("{path}?{query}"),
                who,
                [],
                INVALID_QUERY,
            ));
        }
    }
    f.assert_refused(&cases).await;
}

/// The engine's batched membership check refuses, as a whole and before
/// any lookup, a body past any of its bounds or naming a bad user or chat.
#[tokio::test]
async fn batched_membership_checks_refuse_bad_checks() {
    use chat_wire::limits::SYNC_CHATS_MAX;
    use chat_wire::memberships::{MEMBERSHIP_CHECK_CHATS_MAX, MEMBERSHIP_CHECKS_MAX};
    let mut f = fixture().await;
    let path = "/internal/v1/apps/1/memberships";
    let checks = |checks: Vec<serde_json::Value>| {
        serde_json::to_vec(&serde_json::json!({ "checks": checks })).unwrap()
    };
    let check = |user: &str, chats: Vec<u64>| serde_json::json!({"user": user, "chats": chats});
    let good = check("alice", vec![1]);
    let bodies: Vec<(Vec<u8>, Expected)> = vec![
        (b"{".to_vec(), MALFORMED_JSON),
        (b"[]".to_vec(), INVALID_REQUEST),
        (br#"{"checks":[],"checks":[]}"#.to_vec(), INVALID_REQUEST),
        (br#"{"checks":[],"extra":1}"#.to_vec(), UNKNOWN_FIELD),
        (
            br#"{"checks":[{"user":"a","chats":[1],"x":1}]}"#.to_vec(),
            UNKNOWN_FIELD,
        ),
        (
            br#"{"checks":[{"user":"a","chats":[-1]}]}"#.to_vec(),
            INVALID_REQUEST,
        ),
        (
            br#"{"checks":[{"user":"a","chats":[18446744073709551616]}]}"#.to_vec(),
            INVALID_REQUEST,
        ),
        (br#"{"checks":[{"chats":[1]}]}"#.to_vec(), INVALID_REQUEST),
        (
            checks(vec![good.clone(), check("bad user", vec![1])]),
            INVALID_USER_ID,
        ),
        (
            checks(vec![good.clone(), check("", vec![1])]),
            INVALID_USER_ID,
        ),
        (
            checks(vec![good.clone(), check("bob", vec![1, 0])]),
            INVALID_NUMBER,
        ),
        (checks(vec![check("bob", vec![1 << 53])]), INVALID_NUMBER),
        // `seen` has one number per chat, each from 0 to 2^53 - 1.
        (
            checks(vec![
                serde_json::json!({"user": "bob", "chats": [1, 2], "seen": [0]}),
            ]),
            INVALID_REQUEST,
        ),
        (
            checks(vec![
                serde_json::json!({"user": "bob", "chats": [1], "seen": [1u64 << 53]}),
            ]),
            INVALID_NUMBER,
        ),
        (
            br#"{"checks":[{"user":"a","chats":[1],"seen":[-1]}]}"#.to_vec(),
            INVALID_REQUEST,
        ),
        (
            checks(vec![check(
                "bob",
                (1..=SYNC_CHATS_MAX as u64 + 1).collect(),
            )]),
            INVALID_REQUEST,
        ),
        (
            checks(vec![good.clone(); MEMBERSHIP_CHECKS_MAX + 1]),
            INVALID_REQUEST,
        ),
        (
            checks(
                (0..=MEMBERSHIP_CHECK_CHATS_MAX / 1_000)
                    .map(|i| check(&format!("u{i}"), (1..=1_000).collect()))
                    .collect(),
            ),
            INVALID_REQUEST,
        ),
    ];
    let mut cases: Vec<Case> = bodies
        .into_iter()
        .map(|(body, expected)| Case::new(Method::POST, path, Who::Operator, body, expected))
        .collect();
    for app in ["0", "x", "9007199254740992"] {
        cases.push(Case::new(
            Method::POST,
            format!("/internal/v1/apps/{app}/memberships"),
            Who::Operator,
            checks(vec![good.clone()]),
            INVALID_NUMBER,
        ));
    }
    f.assert_refused(&cases).await;
}

/// A read position that is not a number from 0 to the chat's count, for
/// someone who is not a member, in a chat that does not exist, or with the
/// wrong credential: refused, and no position moves (the snapshot holds
/// every member's).
#[tokio::test]
async fn bad_read_positions_are_refused() {
    let mut f = fixture().await;
    let alice = format!("/internal/v1/apps/{}/chats/1/reads/alice", f.app);
    let put = |path: &str, who: Who, body: &str, expected: Expected| {
        Case::new(Method::PUT, path, who, body.as_bytes(), expected)
    };
    let mut cases = Vec::new();
    for body in [
        r#"{"number": -1}"#,
        r#"{"number": 1.5}"#,
        r#"{"number": 1e3}"#,
        r#"{"number": "1"}"#,
        r#"{"number": null}"#,
        r#"{"number": true}"#,
        r#"{"number": 18446744073709551616}"#,
        r#"{"number": 1, "number": 2}"#,
        "{}",
        "[1]",
        "1",
    ] {
        cases.push(put(&alice, Who::Operator, body, INVALID_REQUEST));
    }
    for number in [chat_wire::limits::NUMBER_MAX + 1, 1 << 63, u64::MAX] {
        let body = format!(r#"{{"number": {number}}}"#);
        cases.push(put(&alice, Who::Operator, &body, INVALID_NUMBER));
    }
    let beyond = (StatusCode::UNPROCESSABLE_ENTITY, "read_beyond_last");
    for number in [3, 4, chat_wire::limits::NUMBER_MAX] {
        let body = format!(r#"{{"number": {number}}}"#);
        cases.push(put(&alice, Who::Operator, &body, beyond));
    }
    cases.push(put(
        &alice,
        Who::Operator,
        r#"{"number": 1, "extra": 1}"#,
        UNKNOWN_FIELD,
    ));
    cases.push(put(
        &alice,
        Who::Operator,
        r#"{"number": 1"#,
        MALFORMED_JSON,
    ));
    cases.push(put(&alice, Who::Operator, "", MALFORMED_JSON));
    let not_subscribed = (StatusCode::FORBIDDEN, "not_subscribed");
    let carol = format!("/internal/v1/apps/{}/chats/1/reads/carol", f.app);
    cases.push(put(
        &carol,
        Who::Operator,
        r#"{"number": 1}"#,
        not_subscribed,
    ));
    cases.push(Case::new(
        Method::GET,
        carol,
        Who::Operator,
        [],
        not_subscribed,
    ));
    let missing = format!("/internal/v1/apps/{}/chats/2/reads/alice", f.app);
    cases.push(put(
        &missing,
        Who::Operator,
        r#"{"number": 1}"#,
        CHAT_NOT_FOUND,
    ));
    // The internal route takes the operator key; a member's own position
    // takes their user token, not the app's.
    let forbidden = (StatusCode::FORBIDDEN, "forbidden");
    cases.push(put(&alice, Who::App, r#"{"number": 1}"#, forbidden));
    cases.push(put(
        "/v1/chats/1/read",
        Who::App,
        r#"{"number": 1}"#,
        forbidden,
    ));
    cases.push(Case::get("/v1/chats/1/read", forbidden));
    f.assert_refused(&cases).await;
}
