//! The engine's bad-input corpus: one table of WebSocket frames and one of
//! HTTP publish requests, each with the code (and status) it must get,
//! numbers at every boundary, strings with controls and separators,
//! repeated keys, unknown fields, oversize everything. After the whole
//! table the state is read back: nothing was stored or created, and every
//! connection and service still writes. (The persistence API's REST routes
//! and batch endpoint have their table in persistence-api/tests/bad_input.rs.)

mod common;

use std::time::Duration;

use common::System;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const NUMBERS_REFUSED_AS_NUMBERS: [&str; 4] = [
    "0",
    "9007199254740992",
    "9223372036854775808",
    "18446744073709551615",
];
const NUMBERS_REFUSED_AS_JSON: [&str; 9] = [
    "-1",
    "1.5",
    "1e3",
    "18446744073709551616",
    "\"1\"",
    "null",
    "true",
    "[]",
    "{}",
];
const BAD_USER_IDS: [&str; 9] = [
    "",
    "no spaces",
    "tab\\t",
    "nul\\u0000",
    "caf\\u00e9",
    "slash/",
    "question?",
    "percent%20",
    "ÿ",
];
const BAD_CLIENT_IDS: [&str; 5] = ["", "has space", "new\\nline", "\\u00e9", "del\\u007f"];

/// (frame text, the error code it must get)
fn frame_cases(chat: u64) -> Vec<(String, &'static str)> {
    let mut cases: Vec<(String, &'static str)> = Vec::new();
    let mut add = |text: String, code: &'static str| cases.push((text, code));
    for text in [
        "",
        "{",
        "nul",
        "{]",
        r#"{"type":}"#,
        r#"{"type":"ping"} x"#,
        r#"{"type":"ping"}{}"#,
        r#"{'type':'ping'}"#,
        r#"{"type":"ping",}"#,
        r#"{"type":"\ud800"}"#,
    ] {
        add(text.into(), "malformed_frame");
    }
    for text in ["[]", "1", "null", "\"ping\"", "{}", r#"{"Type":"ping"}"#] {
        add(text.into(), "invalid_frame");
    }
    for kind in ["dance", "SEND", "send ", "", "pong", "ack", "message"] {
        add(format!(r#"{{"type":"{kind}"}}"#), "unknown_type");
    }
    for kind in ["1", "null", "[\"send\"]", "{}"] {
        add(format!(r#"{{"type":{kind}}}"#), "invalid_frame");
    }
    // Repeated keys, at the top and nested, the same or different values.
    for text in [
        r#"{"type":"ping","type":"ping"}"#.to_string(),
        format!(r#"{{"type":"ping","type":"send","chat":{chat},"body":"x"}}"#),
        format!(r#"{{"type":"send","chat":{chat},"chat":{chat},"body":"x"}}"#),
        format!(r#"{{"type":"send","chat":{chat},"body":"x","body":"y"}}"#),
        format!(r#"{{"type":"send","chat":{chat},"body":"x","id":"a","id":"b"}}"#),
        format!(r#"{{"type":"send","chat":{chat},"body":"x","to":["a"],"to":["b"]}}"#),
        format!(r#"{{"type":"sync","chats":{{"{chat}":0,"{chat}":1}}}}"#),
        r#"{"type":"sync","chats":{},"chats":{}}"#.to_string(),
        r#"{"type":"ping","x":{"a":1,"a":2}}"#.to_string(),
        r#"{"type":"ping","typ\u0065":"send"}"#.to_string(),
    ] {
        add(text, "invalid_frame");
    }
    // Send: the chat number at every boundary.
    for number in NUMBERS_REFUSED_AS_NUMBERS {
        add(
            format!(r#"{{"type":"send","chat":{number},"body":"x"}}"#),
            "invalid_number",
        );
        add(
            format!(r#"{{"type":"leave","chat":{number}}}"#),
            "invalid_number",
        );
    }
    for number in NUMBERS_REFUSED_AS_JSON {
        add(
            format!(r#"{{"type":"send","chat":{number},"body":"x"}}"#),
            "invalid_frame",
        );
        add(
            format!(r#"{{"type":"leave","chat":{number}}}"#),
            "invalid_frame",
        );
    }
    // Send: body, to, id, fields.
    let send = |rest: &str| format!(r#"{{"type":"send","chat":{chat}{rest}}}"#);
    add(send(r#","body":"""#), "empty_body");
    add(
        send(&format!(r#","body":"{}""#, "x".repeat(4097))),
        "body_too_large",
    );
    add(
        send(&format!(r#","body":"{}""#, "é".repeat(2049))),
        "body_too_large",
    );
    for body in ["1", "null", "[\"x\"]", "{}", "true"] {
        add(send(&format!(r#","body":{body}"#)), "invalid_frame");
    }
    add(send(""), "invalid_frame");
    add(r#"{"type":"send","body":"x"}"#.into(), "invalid_frame");
    for user in BAD_USER_IDS {
        add(
            send(&format!(r#","body":"x","to":["{user}"]"#)),
            "invalid_user_id",
        );
    }
    add(
        send(&format!(r#","body":"x","to":["{}"]"#, "u".repeat(129))),
        "invalid_user_id",
    );
    for to in ["\"bob\"", "1", "[1]", "[null]", "{}"] {
        add(send(&format!(r#","body":"x","to":{to}"#)), "invalid_frame");
    }
    let many: Vec<String> = (0..1001).map(|i| format!("\"u{i}\"")).collect();
    add(
        send(&format!(r#","body":"x","to":[{}]"#, many.join(","))),
        "too_many_recipients",
    );
    for id in BAD_CLIENT_IDS {
        add(send(&format!(r#","body":"x","id":"{id}""#)), "invalid_id");
    }
    add(
        send(&format!(r#","body":"x","id":"{}""#, "i".repeat(129))),
        "invalid_id",
    );
    for id in ["1", "[]", "{}", "true"] {
        add(send(&format!(r#","body":"x","id":{id}"#)), "invalid_frame");
    }
    for extra in [
        r#","extra":1"#,
        r#","from":"mallory""#,
        r#","number":1"#,
        r#","as_app":true"#,
    ] {
        add(send(&format!(r#","body":"x"{extra}"#)), "invalid_frame");
    }
    // Sync: keys, values, shape, size.
    for key in [
        "0",
        "00",
        "01",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1.0",
        "1e3",
        "9007199254740992",
        "18446744073709551615",
        "18446744073709551616",
        "abc",
        "",
        "\\u0031\\u0000",
    ] {
        add(
            format!(r#"{{"type":"sync","chats":{{"{key}":0}}}}"#),
            "invalid_number",
        );
    }
    for value in ["9007199254740992", "18446744073709551615"] {
        add(
            format!(r#"{{"type":"sync","chats":{{"{chat}":{value}}}}}"#),
            "invalid_number",
        );
    }
    for value in NUMBERS_REFUSED_AS_JSON {
        add(
            format!(r#"{{"type":"sync","chats":{{"{chat}":{value}}}}}"#),
            "invalid_frame",
        );
    }
    for chats in ["[]", "1", "\"1\"", "null", "[[1,0]]"] {
        add(
            format!(r#"{{"type":"sync","chats":{chats}}}"#),
            "invalid_frame",
        );
    }
    add(r#"{"type":"sync"}"#.into(), "invalid_frame");
    add(
        r#"{"type":"sync","chats":{},"x":1}"#.into(),
        "invalid_frame",
    );
    let too_many: Vec<String> = (1..=1001).map(|i| format!("\"{i}\":0")).collect();
    add(
        format!(r#"{{"type":"sync","chats":{{{}}}}}"#, too_many.join(",")),
        "too_many_chats",
    );
    // Ping, refresh, leave.
    add(r#"{"type":"ping","x":1}"#.into(), "invalid_frame");
    add(r#"{"type":"refresh"}"#.into(), "invalid_frame");
    add(r#"{"type":"refresh","token":1}"#.into(), "invalid_frame");
    add(r#"{"type":"refresh","token":""}"#.into(), "token_malformed");
    add(
        r#"{"type":"refresh","token":"a.b.c"}"#.into(),
        "token_malformed",
    );
    add(r#"{"type":"leave"}"#.into(), "invalid_frame");
    add(
        format!(r#"{{"type":"leave","chat":{chat},"x":1}}"#),
        "invalid_frame",
    );
    cases
}

/// (path, body, status, code) for `POST /v1/chats/{n}/messages` with the app token.
fn publish_cases(chat: u64) -> Vec<(String, String, u16, &'static str)> {
    let mut cases = Vec::new();
    let path = format!("/v1/chats/{chat}/messages");
    let ok_body = r#"{"body":"x","from":"alice"}"#.to_string();
    for number in NUMBERS_REFUSED_AS_NUMBERS.iter().chain(&[
        "01",
        "-1",
        "+1",
        "1.5",
        "abc",
        "18446744073709551616",
        "%20",
    ]) {
        cases.push((
            format!("/v1/chats/{number}/messages"),
            ok_body.clone(),
            400,
            "invalid_number",
        ));
    }
    let mut add = |body: String, status: u16, code: &'static str| {
        cases.push((path.clone(), body, status, code));
    };
    for body in ["", "{", "nul", r#"{"body":"x"} x"#, "\u{0}"] {
        add(body.into(), 400, "malformed_json");
    }
    for body in ["[]", "1", "null", "\"x\""] {
        add(body.into(), 400, "invalid_request");
    }
    add(
        r#"{"body":"x","from":"alice","body":"y"}"#.into(),
        400,
        "invalid_request",
    );
    add(
        r#"{"body":"x","from":"alice","from":"bob"}"#.into(),
        400,
        "invalid_request",
    );
    add(r#"{"body":"x"}"#.into(), 400, "invalid_request");
    add(r#"{"from":"alice"}"#.into(), 400, "invalid_request");
    add(
        r#"{"body":1,"from":"alice"}"#.into(),
        400,
        "invalid_request",
    );
    add(
        r#"{"body":"x","from":"alice","extra":1}"#.into(),
        400,
        "unknown_field",
    );
    add(r#"{"body":"","from":"alice"}"#.into(), 422, "empty_body");
    add(
        format!(r#"{{"body":"{}","from":"alice"}}"#, "x".repeat(4097)),
        422,
        "body_too_large",
    );
    add(
        format!(r#"{{"body":"{}","from":"alice"}}"#, "x".repeat(70 * 1024)),
        413,
        "body_too_large",
    );
    for user in BAD_USER_IDS {
        add(
            format!(r#"{{"body":"x","from":"{user}"}}"#),
            422,
            "invalid_user_id",
        );
        add(
            format!(r#"{{"body":"x","from":"alice","to":["{user}"]}}"#),
            422,
            "invalid_user_id",
        );
    }
    for id in BAD_CLIENT_IDS {
        add(
            format!(r#"{{"body":"x","from":"alice","id":"{id}"}}"#),
            422,
            "invalid_id",
        );
    }
    let many: Vec<String> = (0..1001).map(|i| format!("\"u{i}\"")).collect();
    add(
        format!(r#"{{"body":"x","from":"alice","to":[{}]}}"#, many.join(",")),
        422,
        "too_many_recipients",
    );
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_frame_and_publish_gets_its_code_and_changes_nothing() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    system.subscribe(chat, "bob").await;
    let mut alice = system.connect("alice").await;
    let mut bob = system.connect("bob").await;
    let chats_before = chats_of(&system).await;

    let frames = frame_cases(chat);
    for (text, code) in &frames {
        alice.send_raw(Message::text(text.clone())).await;
        let answer = alice.recv().await;
        assert_eq!(
            (answer["type"].as_str(), answer["code"].as_str()),
            (Some("error"), Some(*code)),
            "frame {}: {answer}",
            shorten(text)
        );
    }
    alice.send_raw(Message::binary(vec![0xff, 0, 1])).await;
    assert_eq!(alice.recv().await["code"], "binary_frame");

    let publishes = publish_cases(chat);
    for (path, body, status, code) in &publishes {
        let response = system
            .http
            .post(format!("{}{path}", system.engine.base))
            .bearer_auth(&system.app_token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let got = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (*status, Some(*code)),
            "POST {path} {}: {answer}",
            shorten(body)
        );
    }
    let credentials: [(Option<&str>, u16, &str); 4] = [
        (None, 401, "missing_credentials"),
        (Some("app_not_a_token"), 401, "invalid_credentials"),
        (Some(""), 401, "missing_credentials"),
        (Some("a.b.c"), 401, "invalid_credentials"),
    ];
    for (token, status, code) in credentials {
        let mut request = system
            .http
            .post(format!("{}/v1/chats/{chat}/messages", system.engine.base))
            .body(r#"{"body":"x","from":"alice"}"#);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{token:?}"
        );
    }
    println!(
        "corpus: {} frames, {} publishes, 1 binary frame, 4 credentials",
        frames.len(),
        publishes.len()
    );

    // Nothing changed, nobody heard anything, and everything still writes.
    assert!(system.history(chat).await.is_empty());
    assert_eq!(chats_of(&system).await, chats_before);
    if let Some(frame) = bob.try_recv(Duration::from_millis(300)).await {
        panic!("bob heard {frame}");
    }
    assert_eq!(alice.send_and_ack(chat, "still here").await, 1);
    assert_eq!(bob.recv().await["number"], 1);
    let (status, _) = system
        .publish(chat, json!({"body": "and publish", "from": "bob"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(system.create_chat().await, chat + 1);
}

async fn chats_of(system: &System) -> Value {
    system
        .http
        .get(format!("{}/v1/chats?limit=1000", system.api.base))
        .bearer_auth(&system.app_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn shorten(text: &str) -> String {
    if text.len() <= 120 {
        text.to_string()
    } else {
        let head: String = text.chars().take(120).collect();
        format!("{head}… ({} bytes)", text.len())
    }
}
