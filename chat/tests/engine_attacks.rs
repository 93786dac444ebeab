//! Regression tests for what an attacker found over real sockets: each one
//! drives the real engine and API processes the way the attack did and
//! checks that it now gets a clear error and changes nothing.

mod common;

use std::time::Duration;

use chat_wire::limits::{IMPLICIT_CHAT_NUMBERS_AHEAD_MAX, NUMBER_MAX};
use common::{Client, Options, System};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn rest(system: &System, method: reqwest::Method, path: &str) -> (u16, Value) {
    let response = system
        .http
        .request(method, format!("{}{path}", system.api.base))
        .bearer_auth(&system.app_token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// One user sending to chat 2^64-1 or 2^63 used to move the app's chat
/// sequence to u64::MAX and then poison the store for every app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_chat_numbers_are_refused_and_numbering_stays_put() {
    let system = System::start().await;
    let first = system.create_chat().await;
    let mut mallory = system.connect("mallory").await;
    for chat in [u64::MAX, 1 << 63, NUMBER_MAX + 1] {
        mallory
            .send(json!({"type": "send", "chat": chat, "body": "boom"}))
            .await;
        mallory.expect_error("invalid_number").await;
        let (status, answer) = system
            .publish(chat, json!({"body": "x", "from": "a"}))
            .await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (400, &json!("invalid_number"))
        );
    }
    mallory
        .send_raw(Message::text(
            r#"{"type":"send","chat":18446744073709551616,"body":"x"}"#,
        ))
        .await;
    mallory.expect_error("invalid_frame").await;
    // Too far ahead of the app's numbering for a user; fine for the app.
    let far = first + IMPLICIT_CHAT_NUMBERS_AHEAD_MAX + 1;
    mallory
        .send(json!({"type": "send", "chat": far, "body": "far", "id": "f"}))
        .await;
    let refused = mallory.expect_error("chat_number_too_high").await;
    assert_eq!(refused["id"], "f");
    assert_eq!(
        rest(&system, reqwest::Method::GET, &format!("/v1/chats/{far}"))
            .await
            .0,
        404
    );
    // Numbering and every write go on as before.
    assert_eq!(system.create_chat().await, first + 1);
    assert_eq!(system.create_chat().await, first + 2);
    let (status, _) = system
        .publish(
            NUMBER_MAX,
            json!({"body": "the app's own choice", "from": "a"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, answer) = rest(&system, reqwest::Method::POST, "/v1/chats").await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (409, &json!("chat_numbers_exhausted"))
    );
    let other = common::create_app(&system.http, &system.api.base, "bystander").await;
    let response = system
        .http
        .post(format!("{}/v1/chats", system.api.base))
        .bearer_auth(other["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "another app can still write");
}

/// A sync (or send) to a chat that did not exist yet must not let a
/// non-member write into it once the app creates it over REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primed_future_chat_admits_no_outsider() {
    let system = System::start().await;
    let existing = system.create_chat().await;
    let mut mallory = system.connect("mallory").await;
    let future: serde_json::Map<String, Value> = (existing + 1..=existing + 1_000)
        .map(|n| (n.to_string(), json!(0)))
        .collect();
    mallory.send(json!({"type": "sync", "chats": future})).await;
    for _ in 0..1_000 {
        mallory.expect_error("not_subscribed").await;
    }
    assert_eq!(
        mallory.recv().await,
        json!({"type": "synced", "chats": {}, "reads": {}})
    );

    let chat = system.create_chat().await;
    assert_eq!(chat, existing + 1);
    system.subscribe(chat, "alice").await;
    let mut alice = system.connect("alice").await;
    mallory
        .send(json!({"type": "send", "chat": chat, "body": "let me in", "id": "m"}))
        .await;
    let refused = mallory.expect_error("not_subscribed").await;
    assert_eq!(refused["id"], "m");
    alice.expect_silence().await;
    assert!(system.history(chat).await.is_empty());
    // The member writes as usual.
    assert_eq!(alice.send_and_ack(chat, "hello").await, 1);
}

/// An unsubscribed user used to keep sending and syncing until some later
/// commit refreshed the engine's cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribed_user_is_out_at_the_very_next_send_and_sync() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    system.subscribe(chat, "mallory").await;
    let mut alice = system.connect("alice").await;
    let mut mallory = system.connect("mallory").await;
    assert_eq!(mallory.send_and_ack(chat, "still in").await, 1);
    assert_eq!(alice.recv().await["number"], 1);

    let path = format!("/v1/chats/{chat}/subscribers/mallory");
    assert_eq!(rest(&system, reqwest::Method::DELETE, &path).await.0, 204);
    for attempt in 0..3 {
        mallory
            .send(json!({"type": "send", "chat": chat, "body": format!("out {attempt}")}))
            .await;
        mallory.expect_error("not_subscribed").await;
    }
    mallory
        .send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    mallory.expect_error("not_subscribed").await;
    assert_eq!(
        mallory.recv().await,
        json!({"type": "synced", "chats": {}, "reads": {}})
    );
    alice.expect_silence().await;
    assert_eq!(system.history(chat).await.len(), 1);
    // A member sending in the same moment is not failed with her.
    assert_eq!(alice.send_and_ack(chat, "after").await, 2);
}

/// Two chats: `stale`, of mallory and bob, whose owner has mallory cached
/// as a member (she sent message 1) while the store no longer has her; and
/// `innocent`, of alice.
struct StaleMember {
    stale: u64,
    innocent: u64,
    mallory: Client,
    bob: Client,
    alice: Client,
}

impl StaleMember {
    async fn set_up(system: &System) -> Self {
        let (stale, innocent) = (system.create_chat().await, system.create_chat().await);
        for (chat, user) in [(stale, "mallory"), (stale, "bob"), (innocent, "alice")] {
            system.subscribe(chat, user).await;
        }
        let mut mallory = system.connect("mallory").await;
        let mut bob = system.connect("bob").await;
        let alice = system.connect("alice").await;
        assert_eq!(mallory.send_and_ack(stale, "warm the cache").await, 1);
        assert_eq!(bob.recv().await["number"], 1);
        let path = format!("/v1/chats/{stale}/subscribers/mallory");
        assert_eq!(rest(system, reqwest::Method::DELETE, &path).await.0, 204);
        Self {
            stale,
            innocent,
            mallory,
            bob,
            alice,
        }
    }
}

/// One chat's refusal used to fail every other chat (and app) in its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chats_refusal_fails_no_other_chat_in_the_batch() {
    // One shard and a long linger, also for the first batch: the sends
    // land in one batch.
    let system = System::start_with(Options {
        shards: 1,
        extra_engine_env: vec![
            ("CHAT_BATCH_LINGER_US", "200000".into()),
            ("CHAT_BATCH_LINGER_ALWAYS", "true".into()),
        ],
        ..Options::default()
    })
    .await;
    let StaleMember {
        stale,
        innocent,
        mut mallory,
        mut bob,
        mut alice,
    } = StaleMember::set_up(&system).await;

    mallory
        .send(json!({"type": "send", "chat": stale, "body": "refused"}))
        .await;
    bob.send(json!({"type": "send", "chat": stale, "body": "same chat, a member", "id": "b"}))
        .await;
    alice
        .send(json!({"type": "send", "chat": innocent, "body": "other chat", "id": "a"}))
        .await;
    mallory.expect_error("not_subscribed").await;
    let ack = alice.recv().await;
    assert_eq!(
        (ack["type"].as_str(), ack["number"].as_u64()),
        (Some("ack"), Some(1))
    );
    // Bob's message was renumbered behind the refusal and committed.
    let mut bob_frames = vec![bob.recv().await, bob.recv().await];
    bob_frames.sort_by_key(|f| f["type"].as_str().unwrap().to_string());
    assert_eq!(bob_frames[0]["type"], "ack", "{bob_frames:?}");
    assert_eq!(bob_frames[0]["number"], 2);
    assert_eq!(bob_frames[1]["body"], "same chat, a member");
    let bodies: Vec<Value> = system
        .history(stale)
        .await
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(
        bodies,
        [json!("warm the cache"), json!("same chat, a member")]
    );
}

/// The idempotency window promises 1,024 messages; after a restart it was
/// rebuilt from 1,000 and a resend was stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_a_restart_is_recognised_across_the_whole_window() {
    let mut system = System::start().await;
    let chat = system.create_chat().await;
    let original = json!({"body": "once", "from": "alice", "id": "resend-me"});
    let (status, answer) = system.publish(chat, original.clone()).await;
    assert_eq!((status, answer["number"].as_u64()), (201, Some(1)));
    for n in 0..1_010 {
        let (status, _) = system
            .publish(chat, json!({"body": format!("filler {n}"), "from": "bob"}))
            .await;
        assert_eq!(status, 201);
    }
    system.restart_engine().await;
    let (status, answer) = system.publish(chat, original).await;
    assert_eq!(
        (status, answer["number"].as_u64()),
        (201, Some(1)),
        "{answer}"
    );
    assert_eq!(system.history(chat).await.len(), 1_011);
}

/// A sync naming one chat twice ("1" and "01") never finished; duplicate
/// keys anywhere were taken, the last one winning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_non_canonical_keys_are_refused() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    system.subscribe(chat, "bob").await;
    let mut alice = system.connect("alice").await;
    let mut bob = system.connect("bob").await;
    let frames = [
        (
            format!(r#"{{"type":"sync","chats":{{"{chat}":0,"0{chat}":0}}}}"#),
            "invalid_number",
        ),
        (
            format!(r#"{{"type":"sync","chats":{{"{chat}":0,"{chat}":0}}}}"#),
            "invalid_frame",
        ),
        (
            format!(
                r#"{{"type":"sync","chats":{{"{chat}":{}}}}}"#,
                NUMBER_MAX + 1
            ),
            "invalid_number",
        ),
        (
            format!(r#"{{"type":"ping","type":"send","chat":{chat},"body":"x"}}"#),
            "invalid_frame",
        ),
        (
            format!(r#"{{"type":"send","chat":999,"chat":{chat},"body":"x"}}"#),
            "invalid_frame",
        ),
        (
            format!(r#"{{"type":"send","chat":{chat},"body":"a","body":"b"}}"#),
            "invalid_frame",
        ),
    ];
    for (frame, code) in &frames {
        alice.send_raw(Message::text(frame.clone())).await;
        alice.expect_error(code).await;
    }
    bob.expect_silence().await;
    assert!(system.history(chat).await.is_empty());
    // The connection works, and a sync ends with `synced`.
    alice
        .send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    assert_eq!(
        alice.recv().await,
        json!({
            "type": "synced",
            "chats": {chat.to_string(): 0},
            "reads": {chat.to_string(): {"number": 0, "unread_count": 0, "unread_capped": false}},
        })
    );
}

/// 1..10 live, sync, 11..15 live, sync again: nothing is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_syncs_never_resend_what_arrived_live() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    system.subscribe(chat, "bob").await;
    let mut bob = system.connect("bob").await;
    let publish = |range: std::ops::RangeInclusive<u64>| {
        let system = &system;
        async move {
            for n in range {
                let (status, _) = system
                    .publish(chat, json!({"body": format!("m{n}"), "from": "alice"}))
                    .await;
                assert_eq!(status, 201);
            }
        }
    };
    let sync = json!({"type": "sync", "chats": {chat.to_string(): 0}});
    publish(1..=10).await;
    for n in 1..=10 {
        assert_eq!(bob.recv().await["number"], n);
    }
    bob.send(sync.clone()).await;
    assert_eq!(
        bob.recv().await,
        json!({
            "type": "synced",
            "chats": {chat.to_string(): 10},
            "reads": {chat.to_string(): {"number": 0, "unread_count": 10, "unread_capped": false}},
        })
    );
    publish(11..=15).await;
    for n in 11..=15 {
        assert_eq!(bob.recv().await["number"], n);
    }
    for _ in 0..2 {
        bob.send(sync.clone()).await;
        assert_eq!(
            bob.recv().await,
            json!({
                "type": "synced",
                "chats": {chat.to_string(): 15},
                "reads": {chat.to_string(): {"number": 0, "unread_count": 15, "unread_capped": false}},
            })
        );
    }
    publish(16..=16).await;
    assert_eq!(bob.recv().await["number"], 16);
    bob.expect_silence().await;
}

/// An open WebSocket used to keep working after its token's `exp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_its_token_expiry_unless_refreshed() {
    let system = System::start().await;
    let now = common::chrono_now();
    let short = |user: &str| system.key.mint(system.app, user, now, now + 2).unwrap();
    let mut expiring = Client::connect(system.engine_port, &short("alice")).await;
    let mut refreshed = Client::connect(system.engine_port, &short("bob")).await;

    // Refused refreshes change nothing: another user's token, an expired one.
    let carol = system
        .key
        .mint(system.app, "carol", now, now + 3600)
        .unwrap();
    refreshed
        .send(json!({"type": "refresh", "token": carol}))
        .await;
    refreshed.expect_error("token_mismatch").await;
    let stale = system
        .key
        .mint(system.app, "bob", now - 20, now - 10)
        .unwrap();
    refreshed
        .send(json!({"type": "refresh", "token": stale}))
        .await;
    refreshed.expect_error("token_expired").await;
    refreshed
        .send(json!({"type": "refresh", "token": "not.a.token"}))
        .await;
    refreshed.expect_error("token_malformed").await;
    let fresh = system.key.mint(system.app, "bob", now, now + 3600).unwrap();
    refreshed
        .send(json!({"type": "refresh", "token": fresh}))
        .await;
    let answer = refreshed.recv().await;
    assert_eq!(answer["type"], "refreshed", "{answer}");

    assert_eq!(
        expiring.closed_reason().await.as_deref(),
        Some("token_expired")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    refreshed.send(json!({"type": "ping"})).await;
    assert_eq!(refreshed.recv().await, json!({"type": "pong"}));
}

/// A user enrolled by someone else's implicit creation can leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_enrolled_by_another_can_leave() {
    let system = System::start().await;
    let mut mallory = system.connect("mallory").await;
    let mut bob = system.connect("bob").await;
    let chat = system.create_chat().await + 1;
    mallory
        .send(json!({"type": "send", "chat": chat, "body": "spam", "to": ["bob"]}))
        .await;
    let mut frames = vec![mallory.recv().await, mallory.recv().await];
    frames.sort_by_key(|f| f["type"].as_str().unwrap().to_string());
    assert_eq!(frames[0]["type"], "ack", "{frames:?}");
    assert_eq!(bob.recv().await["body"], "spam");

    bob.send(json!({"type": "leave", "chat": chat})).await;
    assert_eq!(bob.recv().await, json!({"type": "left", "chat": chat}));
    bob.send(json!({"type": "leave", "chat": chat})).await;
    bob.expect_error("not_subscribed").await;
    bob.send(json!({"type": "leave", "chat": 0})).await;
    bob.expect_error("invalid_number").await;
    // Bob no longer receives, sends or syncs in the chat.
    assert_eq!(mallory.send_and_ack(chat, "more spam").await, 2);
    bob.expect_silence().await;
    bob.send(json!({"type": "send", "chat": chat, "body": "x"}))
        .await;
    bob.expect_error("not_subscribed").await;
    bob.send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    bob.expect_error("not_subscribed").await;
    assert_eq!(
        bob.recv().await,
        json!({"type": "synced", "chats": {}, "reads": {}})
    );
}

/// A chat refused in one batch while later batches of it are in flight
/// (the API paused until all four have left): the refused sender's message
/// fails, the chat's later messages are sent again behind the refusal, and
/// another chat's batch among them commits untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_fails_its_own_and_resends_the_chats_later_batches_in_flight() {
    let system = System::start_with(Options {
        shards: 1,
        extra_engine_env: vec![("CHAT_BATCH_MESSAGES_MAX", "1".into())],
        ..Options::default()
    })
    .await;
    let StaleMember {
        stale,
        innocent,
        mut mallory,
        mut bob,
        mut alice,
    } = StaleMember::set_up(&system).await;
    assert_eq!(alice.send_and_ack(innocent, "warm").await, 1);

    system.api.pause();
    let send =
        |chat: u64, body: &str| json!({"type": "send", "chat": chat, "body": body, "id": body});
    mallory.send(send(stale, "refused")).await;
    system.wait_batches_in_flight(1).await;
    bob.send(send(stale, "b1")).await;
    system.wait_batches_in_flight(2).await;
    alice.send(send(innocent, "a1")).await;
    system.wait_batches_in_flight(3).await;
    bob.send(send(stale, "b2")).await;
    system.wait_batches_in_flight(4).await;
    system.api.resume();

    mallory.expect_error("not_subscribed").await;
    let ack = alice.recv().await;
    assert_eq!(
        (ack["id"].as_str(), ack["number"].as_u64()),
        (Some("a1"), Some(2))
    );
    assert_eq!(alice.recv().await["body"], "a1");
    let mut bob_frames = Vec::new();
    for _ in 0..4 {
        let frame = bob.recv().await;
        bob_frames.push((
            frame["type"].clone(),
            frame["number"].clone(),
            frame["body"].clone(),
            frame["id"].clone(),
        ));
    }
    bob_frames.sort_by_key(|f| (f.1.as_u64(), f.0.as_str().map(str::to_owned)));
    assert_eq!(
        bob_frames,
        [
            (json!("ack"), json!(2), Value::Null, json!("b1")),
            (json!("message"), json!(2), json!("b1"), Value::Null),
            (json!("ack"), json!(3), Value::Null, json!("b2")),
            (json!("message"), json!(3), json!("b2"), Value::Null),
        ]
    );
    let bodies =
        |history: Vec<Value>| -> Vec<Value> { history.iter().map(|m| m["body"].clone()).collect() };
    assert_eq!(
        bodies(system.history(stale).await),
        ["warm the cache", "b1", "b2"].map(|b| json!(b))
    );
    assert_eq!(
        bodies(system.history(innocent).await),
        ["warm", "a1"].map(|b| json!(b))
    );
}
