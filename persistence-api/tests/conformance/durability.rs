//! Durability across a restart of the API: everything acknowledged is there
//! for the next process, and numbering goes on from it. For ScyllaDB, two
//! APIs on one keyspace at once also keep numbering race-free (the LWTs,
//! not the in-process locks, decide).

use std::sync::Arc;

use reqwest::StatusCode;

use crate::Backend;
use crate::common::{batch, implicit_chat, message};

pub async fn state_survives_a_restart_of_the_api(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("restart").await;
    let chat = api.create_chat(&token).await;
    api.subscribe(&token, chat, "alice").await;
    let mut first = batch(1, vec![message(app, chat, 1, "alice", "kept")]);
    first.chats.push(implicit_chat(app, 30, &["bob"]));
    first.messages.push(message(app, 30, 1, "bob", "also kept"));
    let (status, receipt) = api.post_batch(&first).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    let before = api.snapshot(&token).await;
    api.stop().await;

    let api = backend.start().await;
    assert_eq!(api.snapshot(&token).await, before);
    // The replay after a restart is still a no-op with the same answer.
    assert_eq!(api.post_batch(&first).await, (status, receipt));
    assert_eq!(api.create_chat(&token).await, 31);
    let next = batch(2, vec![message(app, chat, 2, "alice", "after")]);
    let (status, receipt) = api.post_batch(&next).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["chat_versions"][0]["last_number"], 2);
    api.stop().await;
}

/// Two API processes' worth of servers on one keyspace, creating chats and
/// writing the same chat at once (ScyllaDB only: the embedded store is one
/// process's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_two_apis_share_one_keyspace() {
    let Some(backend) = Backend::scylla("durability_two_apis").await else {
        return;
    };
    let one = Arc::new(backend.start().await);
    let two = Arc::new(backend.start().await);
    let (token, app) = one.create_app("shared").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (api, token) = (if i % 2 == 0 { &one } else { &two }.clone(), token.clone());
        tasks.push(tokio::spawn(async move { api.create_chat(&token).await }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=40).collect::<Vec<_>>());
    assert_eq!(two.get("/v1/app", &token).await.1["chats_count"], 40);
    // The same batches sent to both at once: one outcome.
    for b in 0..5u64 {
        let messages = (1..=20)
            .map(|i| message(app, 1, b * 20 + i, "w", &format!("{b}-{i}")))
            .collect();
        let sent = batch(b, messages);
        let (a, z) = tokio::join!(one.post_batch(&sent), two.post_batch(&sent));
        assert_eq!(a.0, StatusCode::OK, "{}", a.1);
        assert_eq!(z.0, StatusCode::OK, "{}", z.1);
    }
    let (_, view) = one.get("/v1/chats/1", &token).await;
    assert_eq!(view["messages_count"], 100);
}
