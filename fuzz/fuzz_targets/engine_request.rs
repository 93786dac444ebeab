//! What the engine reads from an HTTP request before anything else
//! (`chat_engine::requests`): the credentials of a WebSocket upgrade and of
//! a publish, the chat a publish path names, and a publish's JSON body.
//!
//! The input, as text: the request target (path and query) on the first
//! line, the `Authorization` header's value on the second, the body after
//! it. Read structure-aware (`chat_fuzz::mode`), the same three parts are
//! arbitrary bytes, with the body built as JSON from fields the fuzzer
//! picks.
//!
//! Checks: no panic; every refusal has a code docs/ERRORS.md documents for
//! the engine, with the HTTP status the engine answers it with, and one
//! that step may give; a token that is taken is non-empty and trimmed, and
//! is the header's when there is one; a chat that is taken is the
//! canonical decimal the path spelled; an accepted body, written back as
//! JSON, is accepted again as the same body.

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use chat_engine::config::EngineLimits;
use chat_engine::error::EngineError;
use chat_engine::requests::{self, PublishBody};
use chat_fuzz::codes::Documented;
use chat_fuzz::mode::{self, Mode};
use http::Uri;
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

static ENGINE_CODES: LazyLock<Documented> = LazyLock::new(|| Documented::section("Engine"));
static LIMITS: LazyLock<EngineLimits> = LazyLock::new(EngineLimits::default);

const TOKEN_CODES: [&str; 3] = ["missing_credentials", "invalid_query", "token_in_query"];
const CHAT_CODES: [&str; 1] = ["invalid_number"];
const BODY_CODES: [&str; 10] = [
    "malformed_json",
    "invalid_request",
    "unknown_field",
    "invalid_number",
    "empty_body",
    "body_too_large",
    "too_many_recipients",
    "invalid_user_id",
    "invalid_id",
    "invalid_query",
];

#[derive(Arbitrary, Debug)]
struct Request {
    target: String,
    authorization: Option<Vec<u8>>,
    body: Body,
}

#[derive(Arbitrary, Debug)]
enum Body {
    Raw(Vec<u8>),
    Fields {
        body: Option<Value2>,
        from: Option<Value2>,
        to: Option<Vec<Value2>>,
        id: Option<Value2>,
        extra: Option<(String, Value2)>,
    },
}

/// A JSON value of the kinds a field may wrongly hold.
#[derive(Arbitrary, Debug)]
enum Value2 {
    Text(String),
    Number(i64),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<String>),
}

impl Value2 {
    fn json(&self) -> Value {
        match self {
            Value2::Text(text) => json!(text),
            Value2::Number(number) => json!(number),
            Value2::Float(number) => json!(number),
            Value2::Bool(value) => json!(value),
            Value2::Null => Value::Null,
            Value2::List(items) => json!(items),
        }
    }
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Raw(bytes) => bytes.clone(),
            Body::Fields {
                body,
                from,
                to,
                id,
                extra,
            } => {
                let mut object = serde_json::Map::new();
                let fields = [("body", body), ("from", from), ("id", id)];
                for (name, value) in fields {
                    if let Some(value) = value {
                        object.insert(name.into(), value.json());
                    }
                }
                if let Some(to) = to {
                    object.insert("to".into(), to.iter().map(Value2::json).collect());
                }
                if let Some((name, value)) = extra {
                    object.insert(name.clone(), value.json());
                }
                Value::Object(object).to_string().into_bytes()
            }
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    match mode::read::<Request>(bytes) {
        Some(Mode::Text(text)) => {
            let mut parts = text.splitn(3, |&b| b == b'\n');
            let target = parts.next().unwrap_or_default();
            let authorization = parts.next();
            let body = parts.next().unwrap_or_default();
            check(&String::from_utf8_lossy(target), authorization, body);
        }
        Some(Mode::Structured(request)) => check(
            &request.target,
            request.authorization.as_deref(),
            &request.body.bytes(),
        ),
        None => {}
    }
});

fn check(target: &str, authorization: Option<&[u8]>, body: &[u8]) {
    // What hyper refuses before any handler runs is not the engine's to check.
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Some(value) = authorization {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return;
        };
        headers.insert(AUTHORIZATION, value);
    }
    let header_token = requests::bearer_token(&headers);
    if let Some(token) = &header_token {
        assert_taken_token(token);
    }
    for (step, outcome) in [
        ("upgrade", requests::upgrade_token(&headers, &uri)),
        ("publish", requests::token_without_query(&headers, &uri)),
    ] {
        match outcome {
            Ok(token) => {
                assert_taken_token(&token);
                if let Some(header) = &header_token {
                    assert_eq!(&token, header, "{step}: the header's token comes first");
                }
            }
            Err(error) => assert_refusal(&error, &TOKEN_CODES, step),
        }
    }
    let chat = match requests::chat_of_path(uri.path()) {
        Some(segment) => match requests::publish_chat(segment) {
            Ok(chat) => {
                assert_eq!(chat.to_string(), segment, "a chat number is canonical");
                chat
            }
            Err(error) => {
                assert_refusal(&error, &CHAT_CODES, "chat");
                1
            }
        },
        None => 1,
    };
    match requests::publish_body(chat, body, &LIMITS) {
        Ok(accepted) => {
            let again = to_json(&accepted).to_string();
            assert_eq!(
                requests::publish_body(chat, again.as_bytes(), &LIMITS).as_ref(),
                Ok(&accepted),
                "{body:?} was accepted, its re-encoding {again:?} not the same"
            );
        }
        Err(error) => assert_refusal(&error, &BODY_CODES, "body"),
    }
}

fn assert_taken_token(token: &str) {
    assert!(!token.is_empty(), "an empty token was taken");
    assert_eq!(token, token.trim(), "a token was taken untrimmed");
}

fn assert_refusal(error: &EngineError, codes: &[&str], step: &str) {
    let code = error.code();
    assert!(
        codes.contains(&code),
        "{step}: {code} is not a code this step gives"
    );
    assert!(
        ENGINE_CODES.has_with_status(code, error.status().as_u16()),
        "{step}: {code} with status {} is not in docs/ERRORS.md",
        error.status()
    );
}

fn to_json(body: &PublishBody) -> Value {
    let mut value = json!({"body": body.body, "from": body.from});
    if let Some(to) = &body.to {
        value["to"] = json!(to);
    }
    if let Some(id) = &body.id {
        value["id"] = json!(id);
    }
    value
}
