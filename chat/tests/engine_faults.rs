//! Faults: the persistence API killed mid-load, a consumer that never reads,
//! and bad input of every kind.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Client, Options, System};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WRITERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_killed_mid_load_loses_no_acknowledged_message() {
    let options = Options {
        extra_engine_env: vec![("CHAT_SENDS_PER_SECOND_MAX", "100000".to_string())],
        ..Options::default()
    };
    let mut system = System::start_with(options).await;
    let chat = system.create_chat().await;
    let writers: Vec<String> = (0..WRITERS).map(|i| format!("writer-{i}")).collect();
    for writer in &writers {
        system.subscribe(chat, writer).await;
    }
    let mut clients = Vec::new();
    for writer in &writers {
        clients.push(system.connect(writer).await);
    }

    // Each writer sends continuously for a while and records every answer.
    let stop_at = Instant::now() + Duration::from_secs(4);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, mut client)| {
            tokio::spawn(async move {
                let mut acked: BTreeMap<String, u64> = BTreeMap::new();
                let mut refused: BTreeMap<String, usize> = BTreeMap::new();
                let mut sent = 0usize;
                let mut answered = 0usize;
                while Instant::now() < stop_at || answered < sent {
                    if Instant::now() < stop_at && sent - answered < 50 {
                        let id = format!("w{index}-{sent}");
                        client
                            .send(json!({"type": "send", "chat": chat, "body": id, "id": id}))
                            .await;
                        sent += 1;
                        continue;
                    }
                    let Some(frame) = client.try_recv(Duration::from_secs(20)).await else {
                        break;
                    };
                    match frame["type"].as_str().unwrap() {
                        "ack" => {
                            acked.insert(
                                frame["id"].as_str().unwrap().to_string(),
                                frame["number"].as_u64().unwrap(),
                            );
                            answered += 1;
                        }
                        "error" => {
                            *refused
                                .entry(frame["code"].as_str().unwrap().to_string())
                                .or_default() += 1;
                            answered += 1;
                        }
                        _ => {}
                    }
                }
                assert_eq!(answered, sent, "every send was answered");
                (acked, refused)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1200)).await;
    system.api.kill_hard();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    system.restart_api().await;

    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let (writer_acked, refused) = task.await.unwrap();
        for code in refused.keys() {
            assert_eq!(
                code, "overloaded",
                "only overload may refuse a send: {refused:?}"
            );
        }
        acked.extend(writer_acked);
    }
    assert!(
        acked.len() > 100,
        "the load made progress: {} acks",
        acked.len()
    );

    let history = system.history(chat).await;
    let numbers: Vec<u64> = history
        .iter()
        .map(|m| m["number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=numbers.len() as u64).collect::<Vec<_>>(),
        "history is gapless"
    );
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    for message in &history {
        let body = message["body"].as_str().unwrap().to_string();
        assert!(
            stored
                .insert(body.clone(), message["number"].as_u64().unwrap())
                .is_none(),
            "{body} stored twice"
        );
    }
    for (id, number) in &acked {
        assert_eq!(
            stored.get(id),
            Some(number),
            "acknowledged {id} as {number} but history disagrees"
        );
    }
}

fn engine_rss_kib(system: &System) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", system.engine.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_and_memory_stays_bounded() {
    let options = Options {
        extra_engine_env: vec![
            ("CHAT_OUTBOUND_BYTES_MAX", (2 * 1024 * 1024).to_string()),
            ("CHAT_SENDS_PER_SECOND_MAX", "100000".to_string()),
        ],
        ..Options::default()
    };
    let system = System::start_with(options).await;
    let chat = system.create_chat().await;
    for user in ["sender", "reader", "sleeper"] {
        system.subscribe(chat, user).await;
    }
    let mut sender = system.connect("sender").await;
    let mut reader = system.connect("reader").await;
    let mut sleeper = system.connect("sleeper").await; // never reads until the end
    let rss_before = engine_rss_kib(&system);

    // 40 MB through the chat: far more than the sleeper's socket buffers and
    // outbound bound together.
    const MESSAGES: u64 = 10_000;
    let body = "x".repeat(4_000);
    let reading = tokio::spawn(async move {
        let mut next = 1;
        while next <= MESSAGES {
            let frame = reader.recv().await;
            assert_eq!(
                frame["number"], next,
                "the reader gets every message in order"
            );
            next += 1;
        }
        reader
    });
    let mut acked = 0;
    let mut sent = 0;
    while acked < MESSAGES {
        if sent < MESSAGES && sent - acked < 100 {
            sender
                .send(json!({"type": "send", "chat": chat, "body": body}))
                .await;
            sent += 1;
            continue;
        }
        if sender.recv().await["type"] == "ack" {
            acked += 1;
        }
    }
    let _reader = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the reader kept up")
        .unwrap();
    let rss_after = engine_rss_kib(&system);
    assert!(
        rss_after < rss_before + 200 * 1024,
        "engine memory grew from {rss_before} KiB to {rss_after} KiB"
    );

    // The sleeper finds what fit in its buffers, then the close.
    let mut got = 0;
    let reason = loop {
        match tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::StreamExt::next(&mut sleeper.socket),
        )
        .await
        {
            Ok(Some(Ok(Message::Text(_)))) => got += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.reason.to_string()),
            other => panic!("expected frames then a close, got {other:?}"),
        }
    };
    assert_eq!(reason.as_deref(), Some("slow_consumer"));
    assert!(
        got < MESSAGES as usize,
        "the sleeper was cut off before the end"
    );
    let metrics = system
        .http
        .get(format!("{}/metrics", system.engine.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let closes: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("chat_engine_slow_consumer_closes_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(closes, 1, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_documented_errors_and_the_connection_stays() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    let mut alice = system.connect("alice").await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("not json"), "malformed_frame"),
        (Message::text("[1,2]"), "invalid_frame"),
        (Message::binary(vec![1u8, 2, 3]), "binary_frame"),
        (Message::text(r#"{"type":"dance"}"#), "unknown_type"),
        (Message::text(r#"{"chat":1}"#), "invalid_frame"),
        (
            Message::text(r#"{"type":"send","chat":1}"#),
            "invalid_frame",
        ),
        (
            Message::text(r#"{"type":"send","chat":1,"body":"x","extra":true}"#),
            "invalid_frame",
        ),
        (
            Message::text(r#"{"type":"send","chat":"one","body":"x"}"#),
            "invalid_frame",
        ),
        (
            Message::text(r#"{"type":"send","chat":0,"body":"x"}"#),
            "invalid_number",
        ),
        (
            Message::text(r#"{"type":"send","chat":1,"body":""}"#),
            "empty_body",
        ),
        (
            Message::text(format!(
                r#"{{"type":"send","chat":1,"body":"{}"}}"#,
                "x".repeat(4097)
            )),
            "body_too_large",
        ),
        (
            Message::text(r#"{"type":"send","chat":1,"body":"x","to":["no spaces"]}"#),
            "invalid_user_id",
        ),
        (
            Message::text(r#"{"type":"send","chat":1,"body":"x","id":""}"#),
            "invalid_id",
        ),
        (
            Message::text(r#"{"type":"sync","chats":{"zero":1}}"#),
            "invalid_number",
        ),
        (
            Message::text(r#"{"type":"sync","chats":{"1":-1}}"#),
            "invalid_frame",
        ),
    ];
    for (message, code) in cases {
        alice.send_raw(message).await;
        alice.expect_error(code).await;
    }
    let too_many_to: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    alice
        .send(json!({"type": "send", "chat": chat, "body": "x", "to": too_many_to}))
        .await;
    alice.expect_error("too_many_recipients").await;
    // Nothing of it was stored, and the connection still works.
    assert!(system.history(chat).await.is_empty());
    assert_eq!(alice.send_and_ack(chat, "still here").await, 1);

    // An oversize frame closes the connection with a reason.
    alice.send_raw(Message::text("x".repeat(70 * 1024))).await;
    assert_eq!(
        alice.closed_reason().await.as_deref(),
        Some("frame_too_large")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_at_the_upgrade() {
    let system = System::start().await;
    let now = common::chrono_now();
    let other_key = chat_token::SigningKey::generate("test-key").unwrap();
    let tokens: Vec<(String, &str)> = vec![
        (String::new(), "missing_credentials"),
        ("garbage".into(), "token_malformed"),
        (
            system
                .key
                .mint(system.app, "alice", now - 7200, now - 3600)
                .unwrap(),
            "token_expired",
        ),
        (
            other_key.mint(system.app, "alice", now, now + 60).unwrap(),
            "token_signature",
        ),
        (
            chat_token::SigningKey::generate("other-kid")
                .unwrap()
                .mint(system.app, "alice", now, now + 60)
                .unwrap(),
            "token_unknown_key",
        ),
        (
            {
                let good = system.user_token("alice");
                let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
                parts[1] = parts[1].chars().rev().collect();
                parts.join(".")
            },
            "token_signature",
        ),
    ];
    for (token, code) in tokens {
        let response = system
            .http
            .get(format!("{}/v1/ws?token={token}", system.engine.base))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{code}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_apps_users_never_touch_this_apps_chats() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    let mut alice = system.connect("alice").await;
    assert_eq!(alice.send_and_ack(chat, "app one").await, 1);

    // A user of another app, same user id, same chat number: a different chat.
    let other = common::create_app(&system.http, &system.api.base, "other").await;
    let other_app = other["id"].as_u64().unwrap();
    let now = common::chrono_now();
    let token = system.key.mint(other_app, "alice", now, now + 60).unwrap();
    let mut intruder = Client::connect(system.engine_port, &token).await;
    intruder
        .send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    intruder.expect_error("not_subscribed").await;
    intruder
        .send(json!({"type": "send", "chat": chat, "body": "app two"}))
        .await;
    let numbers: BTreeSet<u64> = async {
        let mut seen = BTreeSet::new();
        while let Some(frame) = intruder.try_recv(Duration::from_millis(500)).await {
            if frame["type"] == "ack" {
                seen.insert(frame["number"].as_u64().unwrap());
            }
        }
        seen
    }
    .await;
    assert_eq!(
        numbers,
        BTreeSet::from([1]),
        "its own chat, created implicitly in its own app"
    );
    let history = system.history(chat).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["body"], "app one");
    let crossed = alice.try_recv(Duration::from_millis(300)).await;
    assert!(crossed.is_none(), "nothing crossed apps: {crossed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_refuses_bad_requests() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    let url = |path: &str| format!("{}{path}", system.engine.base);
    let cases: Vec<(String, Option<&str>, String, u16, &str)> = vec![
        (
            format!("/v1/chats/{chat}/messages"),
            None,
            r#"{"body":"x","from":"a"}"#.into(),
            401,
            "missing_credentials",
        ),
        (
            format!("/v1/chats/{chat}/messages"),
            Some("app_wrong"),
            r#"{"body":"x","from":"a"}"#.into(),
            401,
            "invalid_credentials",
        ),
        (
            format!("/v1/chats/{chat}/messages"),
            Some(&system.app_token),
            "{".into(),
            400,
            "malformed_json",
        ),
        (
            format!("/v1/chats/{chat}/messages"),
            Some(&system.app_token),
            r#"{"body":"x","from":"a","x":1}"#.into(),
            400,
            "unknown_field",
        ),
        (
            format!("/v1/chats/{chat}/messages"),
            Some(&system.app_token),
            r#"{"body":"x"}"#.into(),
            400,
            "invalid_request",
        ),
        (
            format!("/v1/chats/{chat}/messages"),
            Some(&system.app_token),
            r#"{"body":"x","from":"a b"}"#.into(),
            422,
            "invalid_user_id",
        ),
        (
            "/v1/chats/0/messages".into(),
            Some(&system.app_token),
            r#"{"body":"x","from":"a"}"#.into(),
            400,
            "invalid_number",
        ),
        (
            "/v1/chats/abc/messages".into(),
            Some(&system.app_token),
            r#"{"body":"x","from":"a"}"#.into(),
            400,
            "invalid_number",
        ),
        (
            format!("/v1/chats/{chat}/messages"),
            Some(&system.app_token),
            format!(r#"{{"body":"{}","from":"a"}}"#, "x".repeat(70_000)),
            413,
            "body_too_large",
        ),
        (
            "/v1/nope".into(),
            Some(&system.app_token),
            "{}".into(),
            404,
            "route_not_found",
        ),
    ];
    for (path, token, body, status, code) in cases {
        let mut request = system.http.post(url(&path)).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} {code}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
    assert!(system.history(chat).await.is_empty(), "nothing was stored");
}

/// A batch of an engine that died commits late: the persistence API got it
/// before the kill and wrote it after the new engine had read the chat. The
/// new engine's next number is then taken in the store. Its senders must
/// not hear of it: the chat is read again, their messages are numbered
/// after the late ones and committed, and members online get the late
/// messages too, in order, before the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_of_a_dead_engine_is_absorbed() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    system.subscribe(chat, "bob").await;
    let mut alice = system.connect("alice").await;
    let mut bob = system.connect("bob").await;
    bob.send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    assert_eq!(bob.recv().await["type"], "synced");
    // The engine holds the chat (numbering known): one message through it.
    assert_eq!(alice.send_and_ack(chat, "first").await, 1);
    assert_eq!(bob.recv().await["number"], 1);

    // What the dead engine had sent: #2 and #3, committed behind this
    // engine's back.
    let late: Vec<chat_wire::NewMessage> = (2..=3)
        .map(|number| chat_wire::NewMessage {
            app: system.app,
            chat,
            number,
            sender: "alice".into(),
            recipients: None,
            body: format!("late {number}"),
            client_id: Some(format!("late-{number}")),
            sent_at_us: 1,
            as_app: false,
        })
        .collect();
    let bytes = chat_wire::encode_batch(
        &chat_wire::Batch {
            batch_id: 1,
            chats: vec![],
            messages: late,
        },
        chat_wire::limits::MESSAGE_BODY_BYTES_MAX,
    )
    .unwrap();
    let response = system
        .http
        .post(format!("{}/internal/v1/batches", system.api.base))
        .bearer_auth(common::OPERATOR_KEY)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    // This engine still believes #1 is the last: its next send collides.
    alice
        .send(json!({"type": "send", "chat": chat, "body": "after", "id": "a-1"}))
        .await;
    let answer = loop {
        let frame = alice.recv().await;
        if frame["type"] != "message" {
            break frame;
        }
    };
    assert_eq!(
        answer,
        json!({"type": "ack", "id": "a-1", "chat": chat, "number": 4}),
        "the send is numbered after the late messages, not refused"
    );
    // A resend of a late message's id answers with its number.
    alice
        .send(json!({"type": "send", "chat": chat, "body": "late 2", "id": "late-2"}))
        .await;
    let answer = loop {
        let frame = alice.recv().await;
        if frame["type"] != "message" {
            break frame;
        }
    };
    assert_eq!(answer["number"], 2, "{answer}");

    // Bob, live since his sync, gets #2, #3, #4 in order.
    let mut got = Vec::new();
    while got.len() < 3 {
        let frame = bob.recv().await;
        assert_eq!(frame["type"], "message", "{frame}");
        got.push((
            frame["number"].as_u64().unwrap(),
            frame["body"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        got,
        vec![
            (2, "late 2".to_string()),
            (3, "late 3".to_string()),
            (4, "after".to_string())
        ]
    );
    let numbers: Vec<u64> = system
        .history(chat)
        .await
        .iter()
        .map(|m| m["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 2, 3, 4]);
}
