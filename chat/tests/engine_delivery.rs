//! Fan-out correctness across shards: with three shards forced, 50 chats
//! and 200 users, every message reaches exactly its targets, in per-chat
//! order, once; `to` subsets, non-members, implicit creation, idempotent
//! resends.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Options, System};
use serde_json::{Value, json};

const CHATS: u64 = 50;
const USERS: usize = 200;
const MEMBERS_PER_CHAT: usize = 8;
const MESSAGES_PER_CHAT: u64 = 6;

fn user(index: usize) -> String {
    format!("user-{index}")
}

fn members(chat: u64) -> Vec<String> {
    (0..MEMBERS_PER_CHAT)
        .map(|k| user((chat as usize * 7 + k * 13) % USERS))
        .collect()
}

/// Reads every frame a client receives until it has been quiet a while.
async fn drain(client: &mut common::Client) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(frame) = client.try_recv(Duration::from_millis(700)).await {
        frames.push(frame);
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_reaches_exactly_its_targets_in_order_once() {
    let system = System::start_with(Options {
        shards: 3,
        ..Options::default()
    })
    .await;
    for _ in 1..=CHATS {
        system.create_chat().await;
    }
    for chat in 1..=CHATS {
        for member in members(chat) {
            system.subscribe(chat, &member).await;
        }
    }
    let mut clients = Vec::new();
    for index in 0..USERS {
        clients.push(system.connect(&user(index)).await);
    }

    // expected[user][chat] = the numbers that user must receive, in order.
    let mut expected: BTreeMap<String, BTreeMap<u64, Vec<u64>>> = BTreeMap::new();
    for round in 0..MESSAGES_PER_CHAT {
        let mut publishes = Vec::new();
        for chat in 1..=CHATS {
            let members = members(chat);
            let sender = members[(round as usize) % MEMBERS_PER_CHAT].clone();
            let mut body = json!({"body": format!("chat {chat} round {round}"), "from": sender});
            let targets: BTreeSet<String> = if round % 2 == 1 {
                let to = vec![
                    members[1].clone(),
                    members[2].clone(),
                    "not-a-member".to_string(),
                ];
                body["to"] = json!(to);
                [members[1].clone(), members[2].clone(), sender.clone()]
                    .into_iter()
                    .collect()
            } else {
                members.iter().cloned().collect()
            };
            publishes.push((chat, body, targets));
        }
        let answers = futures_util::future::join_all(
            publishes
                .iter()
                .map(|(chat, body, _)| system.publish(*chat, body.clone())),
        )
        .await;
        for ((chat, _, targets), (status, answer)) in publishes.into_iter().zip(answers) {
            assert_eq!(status, 201, "{answer}");
            assert_eq!(answer["number"], round + 1);
            for target in targets {
                expected
                    .entry(target)
                    .or_default()
                    .entry(chat)
                    .or_default()
                    .push(round + 1);
            }
        }
    }

    let received = futures_util::future::join_all(clients.iter_mut().map(drain)).await;
    for (index, frames) in received.into_iter().enumerate() {
        let mut got: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for frame in frames {
            assert_eq!(frame["type"], "message", "{frame}");
            got.entry(frame["chat"].as_u64().unwrap())
                .or_default()
                .push(frame["number"].as_u64().unwrap());
        }
        let want = expected.remove(&user(index)).unwrap_or_default();
        assert_eq!(
            got,
            want,
            "{} received other than its targets, order or count",
            user(index)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_subsets_non_members_implicit_creation_and_resends() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    for member in ["ann", "ben", "cat"] {
        system.subscribe(chat, member).await;
    }
    let mut ann = system.connect("ann").await;
    let mut ben = system.connect("ben").await;
    let mut cat = system.connect("cat").await;
    let mut eve = system.connect("eve").await;

    // A `to` subset: ben and the sender get it, cat does not.
    ann.send(json!({"type": "send", "chat": chat, "body": "psst", "to": ["ben"], "id": "s-1"}))
        .await;
    let frames = [ann.recv().await, ann.recv().await];
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "ack" && f["number"] == 1),
        "{frames:?}"
    );
    assert_eq!(ben.recv().await["body"], "psst");
    assert!(
        cat.try_recv(Duration::from_millis(400)).await.is_none(),
        "cat was not addressed"
    );

    // A non-member may not send.
    eve.send(json!({"type": "send", "chat": chat, "body": "let me in", "id": "e-1"}))
        .await;
    let refused = eve.recv().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "not_subscribed");
    assert_eq!(refused["id"], "e-1");

    // A resend with the same id answers the original number, once in history.
    for _ in 0..3 {
        ann.send(json!({"type": "send", "chat": chat, "body": "once", "id": "s-2"}))
            .await;
    }
    let mut acks = Vec::new();
    while acks.len() < 3 {
        let frame = ann.recv().await;
        if frame["type"] == "ack" {
            acks.push(frame["number"].as_u64().unwrap());
        }
    }
    assert_eq!(acks, vec![2, 2, 2]);
    let history = system.history(chat).await;
    assert_eq!(history.iter().filter(|m| m["body"] == "once").count(), 1);
    assert_eq!(history.len(), 2);

    // Implicit creation: a chat number that does not exist yet.
    eve.send(json!({"type": "send", "chat": 77, "body": "new room", "to": ["ann"]}))
        .await;
    let mut ack = None;
    while ack.is_none() {
        let frame = eve.recv().await;
        if frame["type"] == "ack" {
            ack = Some(frame);
        }
    }
    assert_eq!(ack.unwrap()["number"], 1);
    let received = loop {
        let frame = ann.recv().await;
        if frame["chat"] == 77 {
            break frame;
        }
    };
    assert_eq!(received["body"], "new room");
    let members: Value = system
        .http
        .get(format!("{}/v1/chats/77/subscribers", system.api.base))
        .bearer_auth(&system.app_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(members["subscribers"], json!(["ann", "eve"]));

    // A subscription acknowledged by the API applies to the next message.
    system.subscribe(chat, "eve").await;
    eve.send(json!({"type": "send", "chat": chat, "body": "joined", "id": "e-2"}))
        .await;
    let answer = loop {
        let frame = eve.recv().await;
        if frame["type"] != "message" {
            break frame;
        }
    };
    assert_eq!(answer["type"], "ack", "{answer}");
    assert_eq!(answer["number"], 3);
}

/// A `to` list used to be cut to the owner's cached subscribers when the
/// message was numbered, and that cache learns of a REST change or a leave
/// only at the chat's next commit: a user subscribed a moment before was cut
/// from the message (never delivered, never readable in history), and one
/// removed or gone a moment before still got it live. Found by the model
/// test (`model.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_to_list_follows_the_membership_at_commit() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    for member in ["ann", "ben", "dan"] {
        system.subscribe(chat, member).await;
    }
    let mut ann = system.connect("ann").await;
    let mut ben = system.connect("ben").await;
    let mut cat = system.connect("cat").await;
    let mut dan = system.connect("dan").await;
    // The owner loads the chat and its subscribers with this message.
    assert_eq!(ann.send_and_ack(chat, "warm").await, 1);
    assert_eq!(ben.recv().await["number"], 1);
    assert_eq!(dan.recv().await["number"], 1);

    // cat joins and ben is removed over REST, dan leaves by frame: all
    // answered before the next send, so the next commit must obey them.
    system.subscribe(chat, "cat").await;
    let removed = system
        .http
        .delete(format!(
            "{}/v1/chats/{chat}/subscribers/ben",
            system.api.base
        ))
        .bearer_auth(&system.app_token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    dan.send(json!({"type": "leave", "chat": chat})).await;
    assert_eq!(dan.recv().await, json!({"type": "left", "chat": chat}));

    ann.send(
        json!({"type": "send", "chat": chat, "body": "addressed", "to": ["ben", "cat", "dan"]}),
    )
    .await;
    let frames = [ann.recv().await, ann.recv().await];
    assert_eq!(frames[0], json!({"type": "ack", "chat": chat, "number": 2}));
    assert_eq!(frames[1]["body"], "addressed");
    let received = cat.recv().await;
    assert_eq!(
        (&received["number"], &received["body"]),
        (&json!(2), &json!("addressed"))
    );
    for (name, outsider) in [("ben", &mut ben), ("dan", &mut dan)] {
        if let Some(frame) = outsider.try_recv(Duration::from_millis(400)).await {
            panic!("{name} is no member any more, yet got {frame}");
        }
    }
    // History keeps the list as the sender gave it; a member reads what is
    // addressed to it.
    let history = system.history(chat).await;
    assert_eq!(history[1]["to"], json!(["ben", "cat", "dan"]));
    cat.send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    assert_eq!(cat.recv().await["number"], 1);
    assert_eq!(
        cat.recv().await,
        json!({
            "type": "synced",
            "chats": {chat.to_string(): 2},
            "reads": {chat.to_string(): {"number": 0, "unread_count": 2, "unread_capped": false}},
        })
    );
}

/// Frames of one client until it has `count` acks and `count` messages.
async fn acks_and_messages(client: &mut common::Client, count: usize) -> (Vec<Value>, Vec<Value>) {
    let (mut acks, mut messages) = (Vec::new(), Vec::new());
    while acks.len() < count || messages.len() < count {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("ack") => acks.push(frame),
            Some("message") => messages.push(frame),
            _ => panic!("expected acks and messages, got {frame}"),
        }
    }
    (acks, messages)
}

/// Several batches of one chat in flight at once (the API paused, so none
/// comes back before all have left): they commit in number order, the
/// sender's acks come in order, and every member sees the messages in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_one_chat_in_flight_together_commit_in_number_order() {
    let system = System::start_with(Options {
        shards: 1,
        // One message a batch: four sends are four batches.
        extra_engine_env: vec![("CHAT_BATCH_MESSAGES_MAX", "1".into())],
        ..Options::default()
    })
    .await;
    let chat = system.create_chat().await;
    for user in ["alice", "bob"] {
        system.subscribe(chat, user).await;
    }
    let mut alice = system.connect("alice").await;
    let mut bob = system.connect("bob").await;
    assert_eq!(alice.send_and_ack(chat, "warm").await, 1);
    assert_eq!(bob.recv().await["number"], 1);

    system.api.pause();
    for k in 1..=4 {
        alice
            .send(json!({"type": "send", "chat": chat, "body": format!("m{k}"), "id": format!("m{k}")}))
            .await;
    }
    system.wait_batches_in_flight(4).await;
    system.api.resume();

    let (acks, messages) = acks_and_messages(&mut alice, 4).await;
    let acked: Vec<(Value, Value)> = acks
        .iter()
        .map(|a| (a["id"].clone(), a["number"].clone()))
        .collect();
    let expected: Vec<(Value, Value)> = (1..=4)
        .map(|k| (json!(format!("m{k}")), json!(k + 1)))
        .collect();
    assert_eq!(acked, expected, "acks in send order, numbered in order");
    let in_order: Vec<(Value, Value)> = (1..=4)
        .map(|k| (json!(k + 1), json!(format!("m{k}"))))
        .collect();
    let numbered = |frames: &[Value]| -> Vec<(Value, Value)> {
        frames
            .iter()
            .map(|f| (f["number"].clone(), f["body"].clone()))
            .collect()
    };
    assert_eq!(numbered(&messages), in_order);
    let mut bob_seen = Vec::new();
    for _ in 0..4 {
        bob_seen.push(bob.recv().await);
    }
    assert_eq!(numbered(&bob_seen), in_order);
    let bodies: Vec<Value> = system
        .history(chat)
        .await
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, ["warm", "m1", "m2", "m3", "m4"].map(|b| json!(b)));
}

/// Each shard's open connections, from the engine's metrics.
async fn open_per_shard(system: &System) -> Vec<u64> {
    let metrics = system.engine_metrics().await;
    let mut open = Vec::new();
    for shard in 0.. {
        let prefix = format!("chat_engine_connections{{shard=\"{shard}\"}} ");
        let Some(line) = metrics.lines().find(|line| line.starts_with(&prefix)) else {
            return open;
        };
        open.push(line[prefix.len()..].parse().unwrap());
    }
    unreachable!()
}

/// Connects `user` again and again until they have a connection on every
/// shard (SO_REUSEPORT picks the shard); returns the connections.
async fn connect_on_every_shard(system: &System, user: &str) -> Vec<common::Client> {
    let mut clients = Vec::new();
    let mut seen = BTreeSet::new();
    let shards = open_per_shard(system).await.len();
    while seen.len() < shards {
        assert!(
            clients.len() < 32,
            "32 connections all landed on shards {seen:?}"
        );
        let before = open_per_shard(system).await;
        clients.push(system.connect(user).await);
        let after = open_per_shard(system).await;
        let landed = (0..shards)
            .find(|&s| after[s] > before[s])
            .expect("a shard took it");
        seen.insert(landed);
    }
    clients
}

/// A read position moved on one connection reaches every connection of the
/// member on every shard (the other devices clear their badge), and no one
/// else; a refused one reaches no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_position_reaches_every_connection_of_the_member() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    for user in ["alice", "bob"] {
        system.subscribe(chat, user).await;
    }
    for body in ["one", "two", "three"] {
        let (status, answer) = system
            .publish(chat, json!({"body": body, "from": "bob"}))
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    let mut alice = connect_on_every_shard(&system, "alice").await;
    let mut bob = system.connect("bob").await;
    let moved = |number: u64, unread_count: u64| {
        json!({
            "type": "read",
            "chat": chat,
            "user": "alice",
            "number": number,
            "unread_count": unread_count,
            "unread_capped": false,
        })
    };
    alice[0]
        .send(json!({"type": "read", "chat": chat, "number": 2}))
        .await;
    for client in &mut alice {
        assert_eq!(client.recv().await, moved(2, 1));
    }
    // The chat's members online (alice's devices too) hear it as a `reads`
    // event, once the owner's interval is over.
    let seen_by = json!({"type": "reads", "chat": chat, "reads": [{"user": "alice", "number": 2}]});
    for client in alice.iter_mut().chain([&mut bob]) {
        assert_eq!(client.recv().await, seen_by);
    }
    // Backwards: nothing moves; every device hears the position in force,
    // and no `reads` event follows.
    let last = alice.len() - 1;
    alice[last]
        .send(json!({"type": "read", "chat": chat, "number": 1}))
        .await;
    for client in &mut alice {
        assert_eq!(client.recv().await, moved(2, 1));
    }
    bob.expect_silence().await;

    // Refused: answered on the connection that asked, and no one else hears.
    let refusals = [
        (
            json!({"type": "read", "chat": chat, "number": 4}),
            "read_beyond_last",
        ),
        (
            json!({"type": "read", "chat": chat + 1, "number": 1}),
            "not_subscribed",
        ),
        (
            json!({"type": "read", "chat": 0, "number": 1}),
            "invalid_number",
        ),
        (
            json!({"type": "read", "chat": chat, "number": 9007199254740992u64}),
            "invalid_number",
        ),
        (
            json!({"type": "read", "chat": chat, "number": -1}),
            "invalid_frame",
        ),
        (json!({"type": "read", "chat": chat}), "invalid_frame"),
        (
            json!({"type": "read", "chat": chat, "number": 1, "extra": 1}),
            "invalid_frame",
        ),
    ];
    for (frame, code) in refusals {
        alice[0].send(frame).await;
        let error = alice[0].expect_error(code).await;
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{error}"
        );
    }
    let mut carol = system.connect("carol").await;
    carol
        .send(json!({"type": "read", "chat": chat, "number": 1}))
        .await;
    carol.expect_error("not_subscribed").await;
    for client in alice.iter_mut().chain([&mut bob]) {
        client.expect_silence().await;
    }

    // Durable at the API, as the other members see it.
    let url = format!("{}/v1/chats/{chat}/reads", system.api.base);
    let (_, reads) = system.get_json(&url, &system.app_token).await;
    assert_eq!(
        reads["reads"],
        json!([{"user": "alice", "number": 2}, {"user": "bob", "number": 0}])
    );
    assert_eq!(
        common::metric_sum(
            &system.engine_metrics().await,
            "chat_engine_read_positions_total"
        ),
        2
    );
}

/// A typing indicator reaches the chat's other members on every shard, not
/// the one typing nor anyone outside the chat; a flood of them relays one
/// per interval; a stranger's is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_other_members_once_per_interval() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    for user in ["alice", "bob", "carol"] {
        system.subscribe(chat, user).await;
    }
    let mut alice = system.connect("alice").await;
    let mut bob = connect_on_every_shard(&system, "bob").await;
    let mut carol = system.connect("carol").await;
    let mut dave = system.connect("dave").await;
    let typing = json!({"type": "typing", "chat": chat});
    alice.send(typing.clone()).await;
    let expected = json!({"type": "typing", "chat": chat, "user": "alice", "expires_in_ms": 5000});
    for client in bob.iter_mut().chain([&mut carol]) {
        assert_eq!(client.recv().await, expected);
    }
    // A flood within the interval: dropped at alice's connection.
    for _ in 0..50 {
        alice.send(typing.clone()).await;
    }
    for client in bob.iter_mut().chain([&mut carol, &mut alice, &mut dave]) {
        client.expect_silence().await;
    }
    let metrics = system.engine_metrics().await;
    assert_eq!(
        common::metric_sum(&metrics, "chat_engine_typing_dropped_total"),
        50
    );
    assert_eq!(
        common::metric_sum(&metrics, "chat_engine_typing_relayed_total"),
        1
    );
    // Once the interval is over, the next goes through.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    carol.send(typing.clone()).await;
    let expected = json!({"type": "typing", "chat": chat, "user": "carol", "expires_in_ms": 5000});
    assert_eq!(alice.recv().await, expected);
    for client in &mut bob {
        assert_eq!(client.recv().await, expected);
    }
    dave.send(typing.clone()).await;
    dave.expect_error("not_subscribed").await;
    dave.send(json!({"type": "typing", "chat": 0})).await;
    dave.expect_error("invalid_number").await;
    dave.send(json!({"type": "typing", "chat": chat, "to": ["bob"]}))
        .await;
    dave.expect_error("invalid_frame").await;
    for client in bob.iter_mut().chain([&mut carol, &mut alice]) {
        client.expect_silence().await;
    }
}

/// `GET /v1/chats/{n}/presence` with `token`: (status, body).
async fn presence(system: &System, chat: u64, token: &str) -> (u16, Value) {
    presence_at(system, &format!("/v1/chats/{chat}/presence"), token).await
}

async fn presence_at(system: &System, path: &str, token: &str) -> (u16, Value) {
    let url = format!("{}{path}", system.engine.base);
    system.get_json(&url, token).await
}

/// Waits until the chat's presence lists exactly `online`.
async fn wait_presence(system: &System, chat: u64, online: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = presence(system, chat, &system.app_token).await;
        assert_eq!(status, 200, "{body}");
        let expected = json!({
            "chat": chat,
            "online_count": online.len(),
            "online": online,
            "has_more": false,
        });
        if body == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "presence {body}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Presence counts a member online while any of their connections is open,
/// on any shard, and lists no one outside the chat; only the app and the
/// chat's members may ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lists_the_members_connected_on_any_shard() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    for user in ["alice", "bob", "carol"] {
        system.subscribe(chat, user).await;
    }
    wait_presence(&system, chat, &[]).await;
    let mut alice = connect_on_every_shard(&system, "alice").await;
    let bob = system.connect("bob").await;
    let _dave = system.connect("dave").await;
    wait_presence(&system, chat, &["alice", "bob"]).await;
    // Alice stays online until her last connection closes.
    while alice.len() > 1 {
        drop(alice.pop());
        wait_presence(&system, chat, &["alice", "bob"]).await;
    }
    drop(alice.pop());
    wait_presence(&system, chat, &["bob"]).await;
    drop(bob);
    wait_presence(&system, chat, &[]).await;

    // A member asks with their own token; anyone else is refused.
    let carol = system.user_token("carol");
    let (status, body) = presence(&system, chat, &carol).await;
    assert_eq!(status, 200, "{body}");
    let refusals = [
        (
            presence(&system, chat, &system.user_token("dave")).await,
            403,
            "not_subscribed",
        ),
        (
            presence(&system, chat + 1, &carol).await,
            403,
            "not_subscribed",
        ),
        (
            presence(&system, chat + 1, &system.app_token).await,
            404,
            "chat_not_found",
        ),
        (
            presence(&system, chat, "app_not_a_token").await,
            401,
            "invalid_credentials",
        ),
        (
            presence(&system, chat, &format!("{carol}x")).await,
            401,
            "token_malformed",
        ),
        (
            presence_at(&system, &format!("/v1/chats/{chat}/presence?x=1"), &carol).await,
            400,
            "invalid_query",
        ),
        (
            presence_at(
                &system,
                &format!("/v1/chats/{chat}/presence?token={carol}"),
                &carol,
            )
            .await,
            401,
            "token_in_query",
        ),
        (
            presence_at(&system, "/v1/chats/0/presence", &carol).await,
            400,
            "invalid_number",
        ),
        (
            presence_at(&system, "/v1/chats/01/presence", &carol).await,
            400,
            "invalid_number",
        ),
    ];
    for ((status, body), expected_status, code) in refusals {
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (expected_status, Some(code)),
            "{body}"
        );
    }
    let response = system
        .http
        .post(format!("{}/v1/chats/{chat}/presence", system.engine.base))
        .bearer_auth(&system.app_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
}

/// After a kill -9 of the engine, presence knows only who reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_after_a_crash_lists_only_who_reconnected() {
    let mut system = System::start().await;
    let chat = system.create_chat().await;
    for user in ["alice", "bob"] {
        system.subscribe(chat, user).await;
    }
    let alice = system.connect("alice").await;
    let bob = system.connect("bob").await;
    wait_presence(&system, chat, &["alice", "bob"]).await;
    system.restart_engine().await;
    drop((alice, bob));
    wait_presence(&system, chat, &[]).await;
    let _bob = system.connect("bob").await;
    wait_presence(&system, chat, &["bob"]).await;
}

/// Read positions moved by several members within the owner's interval
/// reach the chat's online members in one `reads` frame, with the highest
/// position of each; no one outside the chat hears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_events_are_coalesced_per_chat() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    for user in ["alice", "bob", "carol"] {
        system.subscribe(chat, user).await;
    }
    for body in ["one", "two", "three"] {
        let (status, answer) = system
            .publish(chat, json!({"body": body, "from": "carol"}))
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    let mut alice = system.connect("alice").await;
    let mut bob = system.connect("bob").await;
    let mut carol = connect_on_every_shard(&system, "carol").await;
    let mut dave = system.connect("dave").await;
    for (user, number) in [("alice", 1), ("alice", 3), ("bob", 2)] {
        let client = if user == "alice" {
            &mut alice
        } else {
            &mut bob
        };
        client
            .send(json!({"type": "read", "chat": chat, "number": number}))
            .await;
        assert_eq!(client.recv().await["type"], "read");
    }
    let expected = BTreeMap::from([("alice".to_string(), 3), ("bob".to_string(), 2)]);
    for client in carol.iter_mut().chain([&mut alice, &mut bob]) {
        // One frame per interval, each user's highest position in it: the
        // reads may straddle two intervals, never more.
        let mut heard = BTreeMap::new();
        for _ in 0..2 {
            let frame = client.recv().await;
            assert_eq!(
                (&frame["type"], &frame["chat"]),
                (&json!("reads"), &json!(chat)),
                "{frame}"
            );
            for read in frame["reads"].as_array().unwrap() {
                let number = read["number"].as_u64().unwrap();
                heard.insert(read["user"].as_str().unwrap().to_string(), number);
            }
            if heard == expected {
                break;
            }
        }
        assert_eq!(heard, expected);
    }
    dave.expect_silence().await;
}

/// A chat with more members than `CHAT_READ_EVENTS_MEMBERS_MAX` gets no
/// `reads` events; the reader's own devices still hear their position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_past_the_read_events_bound_gets_none() {
    let system = System::start_with(Options {
        extra_engine_env: vec![("CHAT_READ_EVENTS_MEMBERS_MAX", "1".into())],
        ..Options::default()
    })
    .await;
    let chat = system.create_chat().await;
    for user in ["alice", "bob"] {
        system.subscribe(chat, user).await;
    }
    let (status, answer) = system
        .publish(chat, json!({"body": "one", "from": "bob"}))
        .await;
    assert_eq!(status, 201, "{answer}");
    let mut alice = system.connect("alice").await;
    let mut bob = system.connect("bob").await;
    alice
        .send(json!({"type": "read", "chat": chat, "number": 1}))
        .await;
    assert_eq!(alice.recv().await["type"], "read");
    alice.expect_silence().await;
    bob.expect_silence().await;
}
