//! Reconnect sync: everything missed, in order, then live messages, with no
//! gap and no duplicate, whether the sync is served from the ring or the
//! store, and while messages race it.

mod common;

use std::time::Duration;

use common::{Client, System, metric_sum};
use serde_json::{Value, json};

async fn publish_many(system: &System, chat: u64, from: &str, range: std::ops::Range<u64>) {
    for n in range {
        let (status, answer) = system
            .publish(chat, json!({"body": format!("m{n}"), "from": from}))
            .await;
        assert_eq!(status, 201, "{answer}");
    }
}

/// Collects message frames until the synced frame has arrived and `total`
/// messages are in; returns the numbers in arrival order and the synced frame.
async fn collect(client: &mut Client, chat: u64, total: usize) -> (Vec<u64>, Value, usize) {
    let (mut numbers, mut synced, mut synced_at) = (Vec::new(), Value::Null, 0);
    while numbers.len() < total || synced.is_null() {
        let frame = client.recv().await;
        match frame["type"].as_str().unwrap() {
            "message" => {
                assert_eq!(frame["chat"], chat);
                numbers.push(frame["number"].as_u64().unwrap());
            }
            "synced" => {
                synced_at = numbers.len();
                synced = frame;
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    (numbers, synced, synced_at)
}

async fn offline_sync(missed: u64) {
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    system.subscribe(chat, "bob").await;
    // Bob is offline while alice writes.
    publish_many(&system, chat, "alice", 1..missed + 1).await;

    let mut bob = system.connect("bob").await;
    bob.send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    let (numbers, synced, synced_at) = collect(&mut bob, chat, missed as usize).await;
    assert_eq!(numbers, (1..=missed).collect::<Vec<_>>());
    assert_eq!(
        synced,
        json!({
            "type": "synced",
            "chats": {chat.to_string(): missed},
            "reads": {chat.to_string(): {"number": 0, "unread_count": missed, "unread_capped": false}},
        })
    );
    assert_eq!(synced_at, missed as usize);

    // Then live.
    publish_many(&system, chat, "alice", missed + 1..missed + 2).await;
    assert_eq!(bob.recv().await["number"], missed + 1);
    // Another sync sends nothing this connection was already sent, by the
    // first sync or live, whatever number it starts from.
    for after in [missed - 3, 0] {
        bob.send(json!({"type": "sync", "chats": {chat.to_string(): after}}))
            .await;
        let (numbers, synced, _) = collect(&mut bob, chat, 0).await;
        assert_eq!(numbers, Vec::<u64>::new(), "sync from {after}");
        assert_eq!(synced["chats"][chat.to_string()], missed + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sync_served_from_the_store() {
    // More than the ring holds (256 by default).
    offline_sync(500).await;
}

/// A reconnect storm: many members sync past the ring at once. The store
/// is read once for all of them (the ring is extended back with the
/// range), and each gets exactly what it may see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_past_the_ring_reads_the_store_once() {
    const MEMBERS: usize = 20;
    const MISSED: u64 = 400; // the ring holds 256
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    for member in 0..MEMBERS {
        system.subscribe(chat, &format!("u{member}")).await;
    }
    for n in 1..=MISSED {
        // Every 50th message is for u1 only.
        let body = if n % 50 == 0 {
            json!({"body": format!("m{n}"), "from": "alice", "to": ["u1"]})
        } else {
            json!({"body": format!("m{n}"), "from": "alice"})
        };
        let (status, answer) = system.publish(chat, body).await;
        assert_eq!(status, 201, "{answer}");
    }
    let reads = "chat_engine_sync_backfill_reads_total";
    let before = metric_sum(&system.engine_metrics().await, reads);

    let mut clients = Vec::new();
    for member in 0..MEMBERS {
        clients.push(system.connect(&format!("u{member}")).await);
    }
    for client in &mut clients {
        client
            .send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
            .await;
    }
    for (member, client) in clients.iter_mut().enumerate() {
        let expected: Vec<u64> = (1..=MISSED)
            .filter(|n| n % 50 != 0 || member == 1)
            .collect();
        let (numbers, synced, _) = collect(client, chat, expected.len()).await;
        assert_eq!(numbers, expected, "u{member}");
        assert_eq!(synced["chats"][chat.to_string()], MISSED);
    }
    assert_eq!(
        metric_sum(&system.engine_metrics().await, reads) - before,
        1,
        "one store read for the storm"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sync_served_from_the_ring() {
    offline_sync(100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_messages_racing_it() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    system.subscribe(chat, "bob").await;
    publish_many(&system, chat, "alice", 1..501).await;

    let mut bob = system.connect("bob").await;
    let racing = {
        let (http, base, token) = (
            system.http.clone(),
            system.engine.base.clone(),
            system.app_token.clone(),
        );
        tokio::spawn(async move {
            for n in 501..=700 {
                let response = http
                    .post(format!("{base}/v1/chats/{chat}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"body": format!("m{n}"), "from": "alice"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    bob.send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    racing.await.unwrap();
    let (numbers, synced, synced_at) = collect(&mut bob, chat, 700).await;
    // Live messages may arrive before the sync is asked for; the sync then
    // does not send them again. Whatever the interleaving: every number
    // once, everything up to the synced number before it, in order after it.
    let reached = synced["chats"][chat.to_string()].as_u64().unwrap();
    let mut before: Vec<u64> = numbers[..synced_at].to_vec();
    before.sort_unstable();
    assert_eq!(
        before,
        (1..=reached).collect::<Vec<_>>(),
        "a gap or a duplicate up to the synced number"
    );
    assert_eq!(
        numbers[synced_at..].to_vec(),
        (reached + 1..=700).collect::<Vec<_>>(),
        "live after the sync: in order"
    );
    assert!(bob.try_recv(Duration::from_millis(300)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_refuses_non_members_and_hides_messages_addressed_to_others() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    for user in ["alice", "bob", "carol"] {
        system.subscribe(chat, user).await;
    }
    publish_many(&system, chat, "alice", 1..3).await;
    let (status, _) = system
        .publish(
            chat,
            json!({"body": "for bob", "from": "alice", "to": ["bob"]}),
        )
        .await;
    assert_eq!(status, 201);
    publish_many(&system, chat, "alice", 4..5).await;

    let mut carol = system.connect("carol").await;
    carol
        .send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    let mut seen = Vec::new();
    loop {
        let frame = carol.recv().await;
        if frame["type"] == "synced" {
            break;
        }
        seen.push(frame["number"].as_u64().unwrap());
    }
    assert_eq!(
        seen,
        vec![1, 2, 4],
        "carol never sees what was addressed to bob"
    );

    let mut mallory = system.connect("mallory").await;
    mallory
        .send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    let refused = mallory.recv().await;
    assert_eq!(refused["code"], "not_subscribed", "{refused}");
    assert_eq!(
        mallory.recv().await,
        json!({"type": "synced", "chats": {}, "reads": {}})
    );
}

/// A fresh connection syncs while messages flow. Live messages that reach
/// it before its sync is under way may come ahead of the older ones the
/// sync sends; still every number arrives exactly once, the `synced` frame
/// comes when everything up to the number it reports has, and from then on
/// numbers come one by one. Once the engine has read the sync frame, live
/// messages are held, also while it asks the store about membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_racing_live_messages_send_every_number_once() {
    const CYCLES: usize = 60;
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "bob").await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (http, url, token, stop) = (
            system.http.clone(),
            format!("{}/v1/chats/{chat}/messages", system.engine.base),
            system.app_token.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"body": format!("m{n}"), "from": "alice"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
        })
    };

    let mut last = 0u64;
    // Cycles in which a live message came ahead of older synced ones.
    let mut cycles_out_of_order = 0;
    for cycle in 0..CYCLES {
        // Offline for a moment: the next connection has messages to sync.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut bob = system.connect("bob").await;
        bob.send(json!({"type": "sync", "chats": {chat.to_string(): last}}))
            .await;
        let mut before_synced = std::collections::BTreeSet::new();
        let mut arrivals = Vec::new();
        let mut synced = false;
        // Until the sync is answered, and a few live messages after it.
        let mut live_after = 0;
        while !synced || live_after < 3 {
            let frame = bob.recv().await;
            match frame["type"].as_str().unwrap() {
                "message" if !synced => {
                    let number = frame["number"].as_u64().unwrap();
                    assert!(
                        number > last && before_synced.insert(number),
                        "cycle {cycle}: #{number} twice (had up to #{last})"
                    );
                    arrivals.push(number);
                }
                "message" => {
                    let number = frame["number"].as_u64().unwrap();
                    assert_eq!(number, last + 1, "cycle {cycle}: after synced");
                    last = number;
                    live_after += 1;
                }
                "synced" => {
                    let reached = frame["chats"][chat.to_string()].as_u64().unwrap();
                    let got: Vec<u64> = before_synced.iter().copied().collect();
                    assert_eq!(
                        got,
                        (last + 1..=reached).collect::<Vec<_>>(),
                        "cycle {cycle}: what came before synced"
                    );
                    if arrivals.windows(2).any(|w| w[0] > w[1]) {
                        cycles_out_of_order += 1;
                    }
                    last = reached;
                    synced = true;
                }
                _ => panic!("unexpected {frame}"),
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.await.unwrap();
    eprintln!("{CYCLES} syncs raced live messages; in {cycles_out_of_order} a live one came first");
}

/// Messages from ann alternately to bob and to cat: each of cat's is a run
/// of its own on cat's connection.
async fn send_runs(system: &System, chat: u64, runs: std::ops::RangeInclusive<u64>) {
    for run in runs {
        for (to, n) in [("bob", 2 * run - 1), ("cat", 2 * run)] {
            let body = json!({"body": format!("m{n}"), "from": "ann", "to": [to]});
            assert_eq!(system.publish(chat, body).await.0, 201);
        }
    }
}

async fn receive_live(client: &mut Client, count: u64) {
    for _ in 0..count {
        let frame = client.recv().await;
        assert_eq!(frame["type"], "message", "{frame}");
    }
}

/// What a connection was sent is remembered per chat as runs of numbers,
/// at most 64 (`home/delivered.rs`, bounded memory); a run breaks where a
/// message addressed to others falls between. Within the bound no sync
/// sends anything again; past it the oldest runs are forgotten and a sync
/// may send those messages again, as docs/PROTOCOL.md says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_sends_again_only_runs_past_the_remembered_bound() {
    const RUNS_REMEMBERED: u64 = 64;
    let system = System::start().await;
    let chat = system.create_chat().await;
    for user in ["ann", "bob", "cat"] {
        system.subscribe(chat, user).await;
    }
    let mut cat = system.connect("cat").await;
    send_runs(&system, chat, 1..=RUNS_REMEMBERED).await;
    receive_live(&mut cat, RUNS_REMEMBERED).await;
    cat.send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    let (numbers, _, _) = collect(&mut cat, chat, 0).await;
    assert_eq!(
        numbers,
        Vec::<u64>::new(),
        "within the bound: nothing again"
    );

    // The sync joined everything into one run; with seventy more, seven
    // runs are past the bound.
    let (first, last) = (RUNS_REMEMBERED + 1, RUNS_REMEMBERED + 70);
    send_runs(&system, chat, first..=last).await;
    receive_live(&mut cat, last - first + 1).await;
    cat.send(json!({"type": "sync", "chats": {chat.to_string(): 0}}))
        .await;
    let (numbers, synced, _) = collect(&mut cat, chat, 0).await;
    assert_eq!(synced["chats"][chat.to_string()], 2 * last);
    // The runs forgotten: the one the first sync left, then the oldest
    // live ones, lowest first.
    let mut expected: Vec<u64> = (1..=2 * RUNS_REMEMBERED).filter(|n| n % 2 == 0).collect();
    expected.extend((first..first + 6).map(|run| 2 * run));
    assert_eq!(numbers, expected, "past the bound: the oldest runs again");
}

/// Many users sync several chats at once, members of some and not of
/// others: the engine asks the API about them together (fewer calls than
/// syncs), and each user still gets exactly their own answer per chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_syncs_is_checked_together_and_answered_per_user() {
    const USERS: usize = 60;
    const CHATS: usize = 3;
    let system = System::start().await;
    let mut chats = Vec::new();
    for _ in 0..CHATS {
        chats.push(system.create_chat().await);
    }
    // u{i} is a member of chat i % 3, and every fifth user of all of them.
    let member = |user: usize, chat: usize| user % CHATS == chat || user.is_multiple_of(5);
    for user in 0..USERS {
        for (index, &chat) in chats.iter().enumerate() {
            if member(user, index) {
                system.subscribe(chat, &format!("u{user}")).await;
            }
        }
    }
    for &chat in &chats {
        system.subscribe(chat, "alice").await;
        publish_many(&system, chat, "alice", 1..3).await;
    }
    let names = [
        "chat_engine_membership_checks_total",
        "chat_engine_membership_check_calls_total",
    ];
    let metrics = system.engine_metrics().await;
    let before = names.map(|name| metric_sum(&metrics, name));

    let mut clients = Vec::new();
    for user in 0..USERS {
        clients.push(system.connect(&format!("u{user}")).await);
    }
    let all: serde_json::Map<String, Value> = chats
        .iter()
        .map(|chat| (chat.to_string(), json!(0)))
        .collect();
    for client in &mut clients {
        client.send(json!({"type": "sync", "chats": all})).await;
    }
    for (user, client) in clients.iter_mut().enumerate() {
        let mut refused = Vec::new();
        let mut received = std::collections::BTreeMap::<u64, Vec<u64>>::new();
        let synced = loop {
            let frame = client.recv().await;
            match frame["type"].as_str().unwrap() {
                "message" => received
                    .entry(frame["chat"].as_u64().unwrap())
                    .or_default()
                    .push(frame["number"].as_u64().unwrap()),
                "error" => {
                    assert_eq!(frame["code"], "not_subscribed", "{frame}");
                    refused.push(frame["chat"].as_u64().unwrap());
                }
                "synced" => break frame,
                _ => panic!("unexpected {frame}"),
            }
        };
        let mut expected_refused = Vec::new();
        let mut expected_received = std::collections::BTreeMap::new();
        for (index, &chat) in chats.iter().enumerate() {
            if member(user, index) {
                expected_received.insert(chat, vec![1, 2]);
                assert_eq!(synced["chats"][chat.to_string()], 2, "u{user}: {synced}");
            } else {
                expected_refused.push(chat);
                assert!(
                    synced["chats"].get(chat.to_string()).is_none(),
                    "u{user}: {synced}"
                );
            }
        }
        refused.sort_unstable();
        assert_eq!(refused, expected_refused, "u{user}");
        assert_eq!(received, expected_received, "u{user}");
    }
    let metrics = system.engine_metrics().await;
    let [checks, calls] = names.map(|name| metric_sum(&metrics, name));
    let (checks, calls) = (checks - before[0], calls - before[1]);
    assert_eq!(checks, USERS as u64, "one check per sync");
    assert!(
        calls < checks,
        "{calls} calls for {checks} concurrent checks"
    );
}

/// Message `n` of the read-state test: from alice, bob or carol in turn,
/// every fourth to carol alone.
fn read_test_sender(n: u64) -> &'static str {
    ["alice", "bob", "carol"][(n % 3) as usize]
}

fn read_test_to_carol(n: u64) -> bool {
    n.is_multiple_of(4)
}

/// The reference unread count of `user` at `position` after `last` messages.
fn read_test_unread(user: &str, position: u64, last: u64) -> u64 {
    (position + 1..=last)
        .filter(|&n| read_test_sender(n) != user && (!read_test_to_carol(n) || user == "carol"))
        .count() as u64
}

/// Reads frames up to the `synced` one (messages and read events before it
/// are the sync's); returns it.
async fn synced_frame(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "synced" {
            return frame;
        }
    }
}

/// `synced` carries each chat's read position and unread count up to the
/// number it reached, whether the position is below what the client had
/// seen (the API counts that part, the engine the messages the sync brings)
/// or above it, with addressed and own messages left out; equal to a
/// reference count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_carries_read_positions_and_unread_counts() {
    const LAST: u64 = 12;
    let system = System::start().await;
    let chat = system.create_chat().await;
    for user in ["alice", "bob", "carol"] {
        system.subscribe(chat, user).await;
    }
    for n in 1..=LAST {
        let mut body = json!({"body": format!("m{n}"), "from": read_test_sender(n)});
        if read_test_to_carol(n) {
            body["to"] = json!(["carol"]);
        }
        let (status, answer) = system.publish(chat, body).await;
        assert_eq!(status, 201, "{answer}");
    }
    let key = chat.to_string();
    for (user, position, seen) in [
        ("bob", 4, 8),
        ("carol", 3, 12),
        ("alice", 10, 6),
        ("carol", 5, 0),
        ("bob", 12, 12),
    ] {
        let mut client = system.connect(user).await;
        client
            .send(json!({"type": "read", "chat": chat, "number": position}))
            .await;
        let moved = client.recv().await;
        assert_eq!(
            (&moved["type"], &moved["number"]),
            (&json!("read"), &json!(position)),
            "{moved}"
        );
        client
            .send(json!({"type": "sync", "chats": {key.clone(): seen}}))
            .await;
        let synced = synced_frame(&mut client).await;
        assert_eq!(
            synced["reads"],
            json!({key.clone(): {
                "number": position,
                "unread_count": read_test_unread(user, position, LAST),
                "unread_capped": false,
            }}),
            "{user} at {position}, seen {seen}: {synced}"
        );
        assert_eq!(
            moved["unread_count"],
            read_test_unread(user, position, LAST),
            "the read event counts the same"
        );
    }
}

/// A sync that names no chat is answered with an empty `synced` at once,
/// and nothing follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_sync_is_answered_at_once_and_alone() {
    let system = System::start().await;
    let mut alice = system.connect("alice").await;
    alice.send(json!({"type": "sync", "chats": {}})).await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "synced", "chats": {}, "reads": {}})
    );
    alice.expect_silence().await;
}
