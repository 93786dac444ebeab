//! Numbering under concurrency: chats per app and messages per chat run
//! 1, 2, 3, … with no duplicate and no gap however the requests interleave.

use std::sync::Arc;

use reqwest::StatusCode;

use crate::Backend;
use crate::common::{TestApi, batch, implicit_chat, message};

const CONCURRENT_CREATIONS: u64 = 200;

pub async fn concurrent_chat_creations_number_one_to_n(backend: Backend) {
    let api = Arc::new(backend.start().await);
    let (token, _) = api.create_app("busy").await;
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENT_CREATIONS {
        let (api, token) = (api.clone(), token.clone());
        tasks.push(tokio::spawn(async move { api.create_chat(&token).await }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=CONCURRENT_CREATIONS).collect::<Vec<_>>());
    assert_eq!(
        api.get("/v1/app", &token).await.1["chats_count"],
        CONCURRENT_CREATIONS
    );
    // And another app's numbering is its own.
    let (other, _) = api.create_app("quiet").await;
    assert_eq!(api.create_chat(&other).await, 1);
}

/// Chats created by `POST /v1/chats` and chats created implicitly by a
/// batch, at the same time: every number is taken once, the count is exact.
pub async fn created_and_implicit_chats_never_share_a_number(backend: Backend) {
    let api = Arc::new(backend.start().await);
    let (token, app) = api.create_app("mixed").await;
    const CREATED: usize = 40;
    const IMPLICIT: u64 = 20;
    let mut created = Vec::new();
    for _ in 0..CREATED {
        let (api, token) = (api.clone(), token.clone());
        created.push(tokio::spawn(async move { api.create_chat(&token).await }));
    }
    let mut implicit = Vec::new();
    for i in 0..IMPLICIT {
        let api = api.clone();
        // Numbers 10, 20, … 200: some below what the creations reach, some above.
        let number = (i + 1) * 10;
        implicit.push(tokio::spawn(async move {
            let mut b = batch(i, vec![message(app, number, 1, "ann", "first")]);
            b.chats.push(implicit_chat(app, number, &["ann"]));
            let (status, receipt) = api.post_batch(&b).await;
            assert_eq!(status, StatusCode::OK, "{receipt}");
        }));
    }
    let mut numbers = Vec::new();
    for task in created {
        numbers.push(task.await.unwrap());
    }
    for task in implicit {
        task.await.unwrap();
    }
    let mut unique = numbers.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        CREATED,
        "a number was given twice: {numbers:?}"
    );
    // A batch creating a chat that a REST creation took first is refused
    // (`chat_exists`): that chat keeps no message. One that won keeps its
    // message, and the REST creations went past it. The chats are the union.
    let implicit: Vec<u64> = (1..=IMPLICIT).map(|i| i * 10).collect();
    let mut all = unique.clone();
    all.extend(&implicit);
    all.sort_unstable();
    all.dedup();
    for number in &all {
        let (_, chat) = api.get(&format!("/v1/chats/{number}"), &token).await;
        let expected = u64::from(implicit.contains(number) && !unique.contains(number));
        assert_eq!(chat["messages_count"], expected, "chat {number}");
    }
    let (_, app_view) = api.get("/v1/app", &token).await;
    assert_eq!(app_view["chats_count"], all.len());
    let (_, listing) = api.get("/v1/chats?limit=1000", &token).await;
    let listed: Vec<u64> = listing["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["number"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, all);
}

/// Many chats written at once, each by a sequence of batches (one in
/// flight per chat, as the engine does): every chat ends with 1..=N.
pub async fn concurrent_batches_number_each_chat_gaplessly(backend: Backend) {
    let api = Arc::new(backend.start().await);
    let (token, app) = api.create_app("writers").await;
    const CHATS: u64 = 8;
    const BATCHES: u64 = 6;
    const SIZE: u64 = 25;
    for _ in 0..CHATS {
        api.create_chat(&token).await;
    }
    let mut tasks = Vec::new();
    for chat in 1..=CHATS {
        let api: Arc<TestApi> = api.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let messages = (1..=SIZE)
                    .map(|i| {
                        let n = b * SIZE + i;
                        message(app, chat, n, "writer", &format!("{chat}/{n}"))
                    })
                    .collect();
                let (status, receipt) = api.post_batch(&batch(b, messages)).await;
                assert_eq!(status, StatusCode::OK, "{receipt}");
                assert_eq!(receipt["chat_versions"][0]["last_number"], (b + 1) * SIZE);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for chat in 1..=CHATS {
        let (_, view) = api.get(&format!("/v1/chats/{chat}"), &token).await;
        assert_eq!(view["messages_count"], BATCHES * SIZE);
        let (_, page) = api
            .get(
                &format!("/v1/chats/{chat}/messages?after=0&limit=1000"),
                &token,
            )
            .await;
        let bodies: Vec<String> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_string())
            .collect();
        let expected: Vec<String> = (1..=BATCHES * SIZE)
            .map(|n| format!("{chat}/{n}"))
            .collect();
        assert_eq!(bodies, expected);
    }
}
