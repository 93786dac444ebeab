//! The batch endpoint's contract: a replay is a no-op with the same answer,
//! even when replays race each other; a conflicting chat is refused alone
//! (reported in the receipt, nothing of it written) and every other chat of
//! the batch commits.

use std::sync::Arc;

use reqwest::StatusCode;

use crate::Backend;
use crate::common::{batch, implicit_chat, message};

pub async fn replaying_a_batch_changes_nothing_and_answers_the_same(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("replay").await;
    let chat = api.create_chat(&token).await;
    let mut first = batch(
        7,
        (1..=64)
            .map(|n| message(app, chat, n, "alice", &format!("m{n}")))
            .collect(),
    );
    first.chats.push(implicit_chat(app, 9, &["zoe"]));
    first.messages.push(message(app, 9, 1, "zoe", "new chat"));

    let answer = api.post_batch(&first).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let after_first = api.snapshot(&token).await;
    for _ in 0..3 {
        assert_eq!(api.post_batch(&first).await, answer);
        assert_eq!(api.snapshot(&token).await, after_first);
    }
    // A replay of a prefix (a retry of an earlier, smaller batch) is a no-op too.
    let prefix = batch(6, first.messages[..10].to_vec());
    assert_eq!(api.post_batch(&prefix).await.0, StatusCode::OK);
    assert_eq!(api.snapshot(&token).await, after_first);
    // And numbering goes on after the replays.
    let next = batch(8, vec![message(app, chat, 65, "alice", "m65")]);
    let (status, receipt) = api.post_batch(&next).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["chat_versions"][0]["last_number"], 65);
}

/// The engine retries a batch whose answer it did not get, possibly while
/// the first attempt still runs: all of them succeed, with one answer.
pub async fn concurrent_replays_of_one_batch_all_succeed_alike(backend: Backend) {
    let api = Arc::new(backend.start().await);
    let (token, app) = api.create_app("racing replays").await;
    let chat = api.create_chat(&token).await;
    api.subscribe(&token, chat, "alice").await;
    let mut one = batch(
        1,
        (1..=100)
            .map(|n| message(app, chat, n, "alice", &format!("m{n}")))
            .collect(),
    );
    one.chats.push(implicit_chat(app, 50, &["bob", "carol"]));
    one.messages.push(message(app, 50, 1, "bob", "hello"));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (api, one) = (api.clone(), one.clone());
        tasks.push(tokio::spawn(async move { api.post_batch(&one).await }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    for answer in &answers {
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
        assert_eq!(answer.1["chat_versions"], answers[0].1["chat_versions"]);
    }
    let (_, view) = api.get(&format!("/v1/chats/{chat}"), &token).await;
    assert_eq!(view["messages_count"], 100);
    let (_, view) = api.get("/v1/chats/50", &token).await;
    assert_eq!(view["messages_count"], 1);
    assert_eq!(view["subscribers_count"], 2);
    assert_eq!(api.get("/v1/app", &token).await.1["chats_count"], 2);
}

/// One chat's conflict refuses that chat only: the batch's other chats (of
/// this app and of another) commit, the refused chat writes nothing.
pub async fn a_conflicting_chat_is_refused_alone(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("conflict").await;
    let (other_token, other_app) = api.create_app("bystander").await;
    let chat = api.create_chat(&token).await;
    let other_chat = api.create_chat(&token).await;
    let foreign_chat = api.create_chat(&other_token).await;
    let stored = batch(
        1,
        (1..=5)
            .map(|n| message(app, chat, n, "alice", "original"))
            .collect(),
    );
    assert_eq!(api.post_batch(&stored).await.0, StatusCode::OK);

    let cases = vec![
        (
            "a number reused with other content",
            chat,
            message(app, chat, 3, "alice", "changed"),
        ),
        ("a number reused with another recipient list", chat, {
            let mut m = message(app, chat, 4, "alice", "original");
            m.recipients = Some(vec!["bob".into()]);
            m
        }),
        (
            "a gap after the last number",
            chat,
            message(app, chat, 7, "alice", "gap"),
        ),
        (
            "a chat that does not exist",
            99,
            message(app, 99, 1, "alice", "nowhere"),
        ),
        (
            "a new chat whose first message is not 1",
            77,
            message(app, 77, 2, "alice", "late"),
        ),
    ];
    for (round, (what, refused_chat, bad)) in cases.into_iter().enumerate() {
        let creates_77 = refused_chat == 77;
        let before = api.snapshot(&token).await;
        let round = round as u64;
        // Each batch also carries a valid message for another chat of the
        // app and one of another app, and an implicit chat: they commit.
        let mut mixed = batch(
            10 + round,
            vec![
                message(app, other_chat, round + 1, "bob", "innocent"),
                bad,
                message(other_app, foreign_chat, round + 1, "eve", "elsewhere"),
            ],
        );
        let implicit = 200 + round;
        mixed.chats.push(implicit_chat(app, implicit, &["carol"]));
        if creates_77 {
            mixed.chats.push(implicit_chat(app, 77, &["alice"]));
        }
        mixed
            .messages
            .push(message(app, implicit, 1, "carol", "created"));
        let (status, receipt) = api.post_batch(&mixed).await;
        assert_eq!(status, StatusCode::OK, "{what}: {receipt}");
        let refused = receipt["refused"].as_array().unwrap();
        assert_eq!(refused.len(), 1, "{what}: {receipt}");
        assert_eq!(refused[0]["chat"], refused_chat, "{what}");
        let code = if refused_chat == 99 {
            "chat_not_found"
        } else {
            "conflict"
        };
        assert_eq!(refused[0]["reason"]["code"], code, "{what}: {receipt}");
        assert_eq!(receipt["messages"], 3, "{what}: {receipt}");

        let after = api.snapshot(&token).await;
        let chat_view = |snapshot: &serde_json::Value, number: u64| {
            snapshot["chats"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["chat"]["number"] == number)
                .cloned()
        };
        assert_eq!(
            chat_view(&after, refused_chat),
            chat_view(&before, refused_chat),
            "{what} changed the refused chat"
        );
        let other = chat_view(&after, other_chat).unwrap();
        assert_eq!(other["chat"]["messages_count"], round + 1, "{what}");
        let created = chat_view(&after, implicit).unwrap();
        assert_eq!(created["chat"]["messages_count"], 1, "{what}");
        let foreign = api
            .get(&format!("/v1/chats/{foreign_chat}"), &other_token)
            .await
            .1;
        assert_eq!(foreign["messages_count"], round + 1, "{what}");
    }

    let unknown_app = batch(3, vec![message(app + 100, 1, 1, "alice", "x")]);
    let (status, receipt) = api.post_batch(&unknown_app).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["refused"][0]["reason"]["code"], "app_not_found");
    assert_eq!(receipt["messages"], 0);
}

/// An engine shard keeps several batches of one chat in flight over several
/// connections: the later one may arrive first. Numbered in a stream, it
/// waits for the earlier one; without the numbers it is refused (a gap).
pub async fn a_streams_batches_apply_in_their_order_whatever_arrives_first(backend: Backend) {
    let api = Arc::new(backend.start().await);
    let (token, app) = api.create_app("ordered stream").await;
    let chat = api.create_chat(&token).await;
    api.subscribe(&token, chat, "alice").await;
    let first = batch(1, vec![message(app, chat, 1, "alice", "one")]);
    let second = batch(2, vec![message(app, chat, 2, "alice", "two")]);

    let (status, receipt) = api.post_batch(&second).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(
        receipt["refused"][0]["reason"]["code"], "conflict",
        "{receipt}"
    );

    let stream = 4_242;
    let later = tokio::spawn({
        let (api, second) = (api.clone(), second.clone());
        async move { api.post_batch_in_stream(&second, stream, 2).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!later.is_finished(), "batch 2 did not wait for batch 1");
    let (status, receipt) = api.post_batch_in_stream(&first, stream, 1).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["refused"], serde_json::json!([]), "{receipt}");
    let (status, receipt) = later.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["refused"], serde_json::json!([]), "{receipt}");
    assert_eq!(receipt["chat_versions"][0]["last_number"], 2);
    // A replay of a settled batch goes at once.
    assert_eq!(
        api.post_batch_in_stream(&first, stream, 1).await.0,
        StatusCode::OK
    );
}

/// A batch refused as a whole settles its place: the next one does not
/// wait for it, and the store refuses that one's chat for the gap.
pub async fn a_refused_batch_lets_the_next_go_and_the_gap_refuses_its_chat(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("refused in a stream").await;
    let chat = api.create_chat(&token).await;
    api.subscribe(&token, chat, "alice").await;
    let stream = 77;
    // Not a batch at all: refused, settled.
    let mut request = api
        .client
        .post(format!("{}/internal/v1/batches", api.base))
        .bearer_auth(crate::common::OPERATOR_KEY)
        .body(b"not rkyv".to_vec());
    request = request
        .header(chat_wire::BATCH_STREAM_HEADER, stream.to_string())
        .header(chat_wire::BATCH_SEQ_HEADER, "1")
        .header(chat_wire::BATCH_UNSETTLED_FROM_HEADER, "1");
    assert_eq!(
        request.send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let started = std::time::Instant::now();
    let second = batch(2, vec![message(app, chat, 2, "alice", "two")]);
    let (status, receipt) = api.post_batch_in_stream(&second, stream, 2).await;
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1_000),
        "batch 2 waited for a refused batch"
    );
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(
        receipt["refused"][0]["reason"]["code"], "conflict",
        "{receipt}"
    );
    let (_, view) = api.get(&format!("/v1/chats/{chat}"), &token).await;
    assert_eq!(view["messages_count"], 0);
}
