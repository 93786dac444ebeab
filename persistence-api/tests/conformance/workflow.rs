//! The whole REST workflow: provision, rename, create chats, subscribe, write
//! messages through the batch endpoint, page history both ways, and check
//! every count on the way; and what the engine reads.

use crate::Backend;
use crate::common::{self, batch, implicit_chat, message};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn numbers(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["number"].as_u64().unwrap())
        .collect()
}

pub async fn provision_rename_chat_subscribe_and_read_history(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("Acme").await;

    let (status, body) = api.get("/v1/app", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["title"], "Acme");
    assert_eq!(body["chats_count"], 0);

    let (status, body) = api
        .call(
            Method::PATCH,
            "/v1/app",
            Some(&token),
            Some(json!({"title": "Acme Corp"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.get("/v1/app", &token).await.1["title"], "Acme Corp");

    let (status, chat) = api
        .call(
            Method::POST,
            "/v1/chats",
            Some(&token),
            Some(json!({"title": "general"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(chat["number"], 1);
    assert_eq!(chat["title"], "general");
    assert_eq!(chat["messages_count"], 0);
    assert_eq!(chat["subscribers_count"], 0);
    // A chat without a body at all: the title is optional.
    let (status, untitled) = api
        .call_raw(Method::POST, "/v1/chats", Some(&token), Vec::new())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{untitled}");
    assert_eq!(untitled["number"], 2);
    assert_eq!(untitled["title"], Value::Null);
    assert_eq!(api.get("/v1/app", &token).await.1["chats_count"], 2);

    for user in ["alice", "bob", "carol"] {
        let (status, _) = api
            .call(
                Method::PUT,
                &format!("/v1/chats/1/subscribers/{user}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    // Subscribing again is idempotent: 200, and the count does not move.
    let (status, _) = api
        .call(
            Method::PUT,
            "/v1/chats/1/subscribers/alice",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        api.get("/v1/chats/1", &token).await.1["subscribers_count"],
        3
    );

    let (status, _) = api
        .call(
            Method::DELETE,
            "/v1/chats/1/subscribers/carol",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api
        .call(
            Method::DELETE,
            "/v1/chats/1/subscribers/carol",
            Some(&token),
            None,
        )
        .await;
    common::assert_error(
        &(status, body),
        StatusCode::NOT_FOUND,
        "subscription_not_found",
    );
    let (_, members) = api.get("/v1/chats/1/subscribers", &token).await;
    assert_eq!(members["subscribers"], json!(["alice", "bob"]));
    let (_, first) = api.get("/v1/chats/1/subscribers?limit=1", &token).await;
    assert_eq!(first, json!({"subscribers": ["alice"], "has_more": true}));
    let (_, rest) = api
        .get("/v1/chats/1/subscribers?after=alice&limit=1", &token)
        .await;
    assert_eq!(rest, json!({"subscribers": ["bob"], "has_more": false}));

    // 250 messages in three batches, one of them addressed to bob alone.
    let mut number = 0;
    for (batch_id, size) in [(1, 100), (2, 100), (3, 50)] {
        let messages = (0..size)
            .map(|_| {
                number += 1;
                let mut m = message(app, 1, number, "alice", &format!("message {number}"));
                if number == 7 {
                    m.recipients = Some(vec!["bob".into()]);
                    m.client_id = Some("c-7".into());
                }
                m
            })
            .collect();
        let (status, receipt) = api.post_batch(&batch(batch_id, messages)).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["batch_id"], batch_id);
        assert_eq!(receipt["messages"], size);
        assert_eq!(receipt["chats"], 0);
        assert_eq!(receipt["chat_versions"][0]["last_number"], number);
    }
    let (_, chat) = api.get("/v1/chats/1", &token).await;
    assert_eq!(chat["messages_count"], 250);

    // Forward paging from the start visits every message once, in order.
    let mut seen: Vec<u64> = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = api
            .get(
                &format!("/v1/chats/1/messages?after={after}&limit=60"),
                &token,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let page_numbers = numbers(&page);
        seen.extend(&page_numbers);
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        after = *page_numbers.last().unwrap();
    }
    assert_eq!(seen, (1..=250).collect::<Vec<_>>());

    // Backward paging from the newest visits them all too, page by page.
    let (_, newest) = api.get("/v1/chats/1/messages?limit=100", &token).await;
    assert_eq!(numbers(&newest), (151..=250).collect::<Vec<_>>());
    assert_eq!(newest["has_more"], true);
    let (_, older) = api
        .get("/v1/chats/1/messages?before=151&limit=100", &token)
        .await;
    assert_eq!(numbers(&older), (51..=150).collect::<Vec<_>>());
    let (_, oldest) = api
        .get("/v1/chats/1/messages?before=51&limit=100", &token)
        .await;
    assert_eq!(numbers(&oldest), (1..=50).collect::<Vec<_>>());
    assert_eq!(oldest["has_more"], false);
    // Both bounds: a window.
    let (_, window) = api
        .get("/v1/chats/1/messages?after=10&before=15", &token)
        .await;
    assert_eq!(numbers(&window), vec![11, 12, 13, 14]);

    // The message fields as stored.
    let (_, one) = api
        .get("/v1/chats/1/messages?after=6&limit=1", &token)
        .await;
    let seventh = &one["messages"][0];
    assert_eq!(seventh["number"], 7);
    assert_eq!(seventh["from"], "alice");
    assert_eq!(seventh["body"], "message 7");
    assert_eq!(seventh["to"], json!(["bob"]));
    assert_eq!(seventh["id"], "c-7");
    assert!(seventh["sent_at"].as_str().unwrap().ends_with('Z'));

    // Chats listing, paged.
    let (_, chats) = api.get("/v1/chats?limit=1", &token).await;
    assert_eq!(chats["chats"][0]["number"], 1);
    assert_eq!(chats["has_more"], true);
    let (_, chats) = api.get("/v1/chats?after=1", &token).await;
    assert_eq!(chats["chats"][0]["number"], 2);
    assert_eq!(chats["has_more"], false);
}

pub async fn implicit_chats_count_and_their_members_see_the_messages(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("implicit").await;
    let mut first = batch(
        1,
        vec![
            message(app, 5, 1, "dave", "hello"),
            message(app, 5, 2, "erin", "hi"),
        ],
    );
    first.chats.push(implicit_chat(app, 5, &["dave", "erin"]));
    let (status, receipt) = api.post_batch(&first).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["chats"], 1);

    let (_, chat) = api.get("/v1/chats/5", &token).await;
    assert_eq!(chat["messages_count"], 2);
    assert_eq!(chat["subscribers_count"], 2);
    assert_eq!(api.get("/v1/app", &token).await.1["chats_count"], 1);
    // The next created chat comes after the highest number taken.
    assert_eq!(api.create_chat(&token).await, 6);
    assert_eq!(api.get("/v1/app", &token).await.1["chats_count"], 2);
}

pub async fn engine_reads_chat_state_and_visible_messages(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("internal").await;
    let chat = api.create_chat(&token).await;
    api.subscribe(&token, chat, "alice").await;
    api.subscribe(&token, chat, "bob").await;
    let mut to_bob = message(app, chat, 2, "alice", "for bob");
    to_bob.recipients = Some(vec!["bob".into()]);
    let all = vec![
        message(app, chat, 1, "alice", "for all"),
        to_bob,
        message(app, chat, 3, "bob", "reply"),
    ];
    assert_eq!(api.post_batch(&batch(1, all)).await.0, StatusCode::OK);

    let key = Some(common::OPERATOR_KEY);
    let digest =
        chat_persistence::credentials::digest_hex(&chat_persistence::credentials::digest(&token));
    let (status, found) = api
        .call(
            Method::GET,
            &format!("/internal/v1/app-tokens/{digest}"),
            key,
            None,
        )
        .await;
    assert_eq!((status, found), (StatusCode::OK, json!({"app": app})));
    let unknown = "0".repeat(64);
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/internal/v1/app-tokens/{unknown}"),
            key,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, state) = api
        .call(
            Method::GET,
            &format!("/internal/v1/apps/{app}/chats/{chat}"),
            key,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["last_number"], 3);
    assert_eq!(state["subscribers"], json!(["alice", "bob"]));
    let version = state["version"].as_u64().unwrap();
    api.subscribe(&token, chat, "carol").await;
    let (_, state) = api
        .call(
            Method::GET,
            &format!("/internal/v1/apps/{app}/chats/{chat}"),
            key,
            None,
        )
        .await;
    assert!(
        state["version"].as_u64().unwrap() > version,
        "a subscription changes the version"
    );

    let path = format!("/internal/v1/apps/{app}/chats/{chat}/messages?after=0&user=carol");
    let (_, carol) = api.call(Method::GET, &path, key, None).await;
    assert_eq!(
        numbers(&carol),
        vec![1, 3],
        "carol never sees what was addressed to bob"
    );
    let path = format!("/internal/v1/apps/{app}/chats/{chat}/messages?after=1&user=bob");
    let (_, bob) = api.call(Method::GET, &path, key, None).await;
    assert_eq!(numbers(&bob), vec![2, 3]);
}
