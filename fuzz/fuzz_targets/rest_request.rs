//! The persistence API's router, in process (`chat_fuzz::api_harness`), on
//! requests read two ways (`chat_fuzz::mode`):
//! - as text, a request written like HTTP (see [`parse_text`]), which is
//!   what the seeds are;
//! - structure-aware: method, path (from the routes' own words and numbers,
//!   or any text), query, `Authorization` (none, the operator key, an app
//!   token, a user token, or any text) and body (empty, any bytes, a JSON
//!   object of the routes' field names, or an encoded batch).
//!
//! Checks, on every answer: no 5xx but the documented 503s; every error body
//! is exactly `{"error":{"code","message"}}` with a non-empty message and a
//! code docs/ERRORS.md lists for the persistence API with that very status;
//! every JSON answer parses. (Whether a message shows a memory address is
//! checked where it is made, in the `batch` target: messages here echo the
//! request, whose text can look like an address.)

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::Request;
use chat_fuzz::api_harness::{Answer, Harness, OPERATOR_KEY};
use chat_fuzz::batch_spec::{self, BatchSpec};
use chat_fuzz::codes::Documented;
use chat_fuzz::mode::{self, Mode};
use chat_persistence::credentials::{digest, digest_hex};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

static HARNESS: LazyLock<Harness> = LazyLock::new(Harness::start);
static API_CODES: LazyLock<Documented> = LazyLock::new(|| Documented::section("Persistence API"));

/// The 5xx codes the document allows: the store or the auth service is
/// away; retry.
const RETRY_CODES: [&str; 2] = ["unavailable", "revocations_stale"];

#[derive(Arbitrary, Debug)]
struct Input {
    method: Method,
    path: Path,
    query: Query,
    auth: Auth,
    body: BodySpec,
}

#[derive(Arbitrary, Debug)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Path {
    Segments(Vec<Segment>),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Segment {
    Word(u8),
    Number(batch_spec::Number),
    Text(String),
}

/// The words the routes are made of, and the values their parameters take.
const WORDS: [&str; 16] = [
    "v1",
    "internal",
    "apps",
    "app",
    "chats",
    "subscribers",
    "messages",
    "app-tokens",
    "users",
    "memberships",
    "batches",
    "healthz",
    "metrics",
    "alice",
    "bob",
    "",
];

#[derive(Arbitrary, Debug)]
enum Query {
    None,
    Pairs(Vec<(QueryKey, QueryValue)>),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum QueryKey {
    Known(u8),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum QueryValue {
    Number(batch_spec::Number),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Auth {
    None,
    Operator,
    App,
    OtherApp,
    User(u8),
    Bearer(String),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum BodySpec {
    Empty,
    Raw(Vec<u8>),
    Object(Vec<(u8, Field)>),
    Batch(BatchSpec),
}

#[derive(Arbitrary, Debug)]
enum Field {
    Null,
    Bool(bool),
    Number(batch_spec::Number),
    Text(String),
    Numbers(Vec<batch_spec::Number>),
    Texts(Vec<String>),
}

const FIELD_NAMES: [&str; 8] = ["title", "chats", "user", "from", "body", "to", "id", "x"];

fuzz_target!(|bytes: &[u8]| {
    let request = match mode::read::<Input>(bytes) {
        Some(Mode::Text(text)) => parse_text(text),
        Some(Mode::Structured(input)) => build(&input),
        None => None,
    };
    let Some(request) = request else {
        return;
    };
    let head = request.method() == axum::http::Method::HEAD;
    let shown = format!("{} {}", request.method(), request.uri());
    let answer = HARNESS.send(request);
    if *SHOW {
        let body = String::from_utf8_lossy(&answer.body);
        eprintln!("{shown} -> {} {body:.300}", answer.status);
    }
    check(&answer, head, &shown);
});

/// `CHAT_FUZZ_SHOW=1` prints every request and its answer, to see what a
/// corpus reaches: `cargo fuzz run -s none rest_request corpus/rest_request
/// -- -runs=0` with it set replays the corpus once.
static SHOW: LazyLock<bool> = LazyLock::new(|| std::env::var_os("CHAT_FUZZ_SHOW").is_some());

/// A request written like HTTP, without the version and with one line for
/// the credentials:
///
/// ```text
/// METHOD TARGET
/// AUTH
///
/// BODY
/// ```
///
/// AUTH is `-` (none), `operator`, `app`, `other-app`, `user N` (the Nth of
/// the harness's user tokens) or else the whole `Authorization` value.
/// Missing lines are empty.
fn parse_text(text: &[u8]) -> Option<Request<Body>> {
    let (head, body) = match text.windows(2).position(|pair| pair == b"\n\n") {
        Some(at) => (&text[..at], &text[at + 2..]),
        None => (text, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n');
    let (method, target) = lines.next()?.split_once(' ')?;
    let auth = match lines.next().unwrap_or("-") {
        "-" | "" => Auth::None,
        "operator" => Auth::Operator,
        "app" => Auth::App,
        "other-app" => Auth::OtherApp,
        other => match other.strip_prefix("user ").map(str::parse) {
            Some(Ok(i)) => Auth::User(i),
            _ => Auth::Raw(other.to_owned()),
        },
    };
    let mut request = Request::builder().method(method).uri(target);
    if let Some(value) = authorization(&auth) {
        request = request.header("authorization", value);
    }
    request.body(Body::from(body.to_vec())).ok()
}

fn check(answer: &Answer, head: bool, input: &str) {
    let status = answer.status.as_u16();
    let is_json = answer
        .content_type
        .as_deref()
        .is_some_and(|kind| kind.starts_with("application/json"));
    if head || (status < 400 && !is_json) {
        // A HEAD answer has no body; a success may be text (/healthz, /metrics).
        assert!(status < 500, "{status} for {input}");
        return;
    }
    let body: Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|error| panic!("{status}: a body that is not JSON ({error}): {input}"));
    if status < 400 {
        return;
    }
    let code = error_code(&body).unwrap_or_else(|| panic!("{status}: {body} for {input}"));
    assert!(
        API_CODES.has_with_status(code, status),
        "{status} {code} is not documented: {body} for {input}"
    );
    assert!(
        status < 500 || RETRY_CODES.contains(&code),
        "{status}: {body} for {input}"
    );
}

/// The code of a body shaped exactly `{"error":{"code","message"}}`.
fn error_code(body: &Value) -> Option<&str> {
    let outer = body.as_object().filter(|outer| outer.len() == 1)?;
    let error = outer.get("error")?.as_object()?;
    let message = error.get("message")?.as_str()?;
    (error.len() == 2 && !message.is_empty())
        .then(|| error.get("code")?.as_str())
        .flatten()
}

fn build(input: &Input) -> Option<Request<Body>> {
    let method = match &input.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        Method::Other(text) => text,
    };
    let mut uri = path(&input.path);
    if let Some(query) = query(&input.query) {
        uri.push('?');
        uri.push_str(&query);
    }
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(value) = authorization(&input.auth) {
        request = request.header("authorization", value);
    }
    request.body(body(&input.body)).ok()
}

fn path(path: &Path) -> String {
    match path {
        Path::Raw(text) => text.clone(),
        Path::Segments(segments) => {
            let mut out = String::new();
            for segment in segments {
                out.push('/');
                match segment {
                    Segment::Word(i) => out.push_str(word(*i)),
                    Segment::Number(n) => out.push_str(&n.value().to_string()),
                    Segment::Text(text) => percent_encode(text, &mut out),
                }
            }
            if out.is_empty() {
                out.push('/');
            }
            out
        }
    }
}

/// A word of the routes, or the digest of app 1's token (the internal
/// lookup by digest).
fn word(i: u8) -> &'static str {
    static DIGEST: LazyLock<String> = LazyLock::new(|| digest_hex(&digest(&HARNESS.app_token)));
    WORDS
        .get(usize::from(i) % (WORDS.len() + 1))
        .copied()
        .unwrap_or(&DIGEST)
}

fn query(query: &Query) -> Option<String> {
    const KEYS: [&str; 5] = ["limit", "after", "before", "token", "x"];
    match query {
        Query::None => None,
        Query::Raw(text) => Some(text.clone()),
        Query::Pairs(pairs) => {
            let mut out = form_urlencoded::Serializer::new(String::new());
            for (key, value) in pairs {
                let key = match key {
                    QueryKey::Known(i) => KEYS[usize::from(*i) % KEYS.len()].to_owned(),
                    QueryKey::Text(text) => text.clone(),
                };
                let value = match value {
                    QueryValue::Number(n) => n.value().to_string(),
                    QueryValue::Text(text) => text.clone(),
                };
                out.append_pair(&key, &value);
            }
            Some(out.finish())
        }
    }
}

fn authorization(auth: &Auth) -> Option<String> {
    let bearer = |token: &str| Some(format!("Bearer {token}"));
    match auth {
        Auth::None => None,
        Auth::Operator => bearer(OPERATOR_KEY),
        Auth::App => bearer(&HARNESS.app_token),
        Auth::OtherApp => bearer(&HARNESS.other_app_token),
        Auth::User(i) => {
            let tokens = &HARNESS.user_tokens;
            bearer(&tokens[usize::from(*i) % tokens.len()])
        }
        Auth::Bearer(text) => bearer(text),
        Auth::Raw(text) => Some(text.clone()),
    }
}

fn body(spec: &BodySpec) -> Body {
    match spec {
        BodySpec::Empty => Body::empty(),
        BodySpec::Raw(bytes) => Body::from(bytes.clone()),
        BodySpec::Object(fields) => {
            let mut object = Map::new();
            for (name, field) in fields {
                let name = FIELD_NAMES[usize::from(*name) % FIELD_NAMES.len()];
                object.insert(name.to_owned(), field_value(field));
            }
            Body::from(Value::Object(object).to_string())
        }
        BodySpec::Batch(spec) => {
            let bytes =
                chat_wire::encode_batch(&spec.build(), chat_wire::limits::MESSAGE_BODY_BYTES_MAX)
                    .unwrap_or_default();
            Body::from(bytes)
        }
    }
}

fn field_value(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Number(n) => Value::from(n.value()),
        Field::Text(text) => Value::String(text.clone()),
        Field::Numbers(numbers) => numbers.iter().map(|n| Value::from(n.value())).collect(),
        Field::Texts(texts) => texts.iter().cloned().map(Value::String).collect(),
    }
}

/// Percent-encodes every byte outside RFC 3986's unreserved set, so any text
/// reaches the router's decoding as one segment.
fn percent_encode(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}
