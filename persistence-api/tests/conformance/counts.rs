//! Exact counts: chats per app, messages and subscribers per chat, and the
//! subscriber-set version, after every kind of change and under concurrency.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Backend;
use crate::common::{OPERATOR_KEY, TestApi, batch, implicit_chat, message};

async fn chat_view(api: &TestApi, token: &str, chat: u64) -> Value {
    let (status, view) = api.get(&format!("/v1/chats/{chat}"), token).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view
}

async fn engine_view(api: &TestApi, app: u64, chat: u64) -> Value {
    let (status, view) = api
        .call(
            Method::GET,
            &format!("/internal/v1/apps/{app}/chats/{chat}"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view
}

pub async fn counts_and_versions_follow_every_change(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("counted").await;
    let chat = api.create_chat(&token).await;
    let view = chat_view(&api, &token, chat).await;
    assert_eq!(
        (
            &view["messages_count"],
            &view["subscribers_count"],
            &engine_view(&api, app, chat).await["version"]
        ),
        (&json!(0), &json!(0), &json!(1))
    );

    let path = |user: &str| format!("/v1/chats/{chat}/subscribers/{user}");
    for (method, user, status, count, version) in [
        (Method::PUT, "ann", StatusCode::CREATED, 1, 2),
        (Method::PUT, "bob", StatusCode::CREATED, 2, 3),
        (Method::PUT, "ann", StatusCode::OK, 2, 3),
        (Method::DELETE, "bob", StatusCode::NO_CONTENT, 1, 4),
        (Method::DELETE, "bob", StatusCode::NOT_FOUND, 1, 4),
        (Method::PUT, "bob", StatusCode::CREATED, 2, 5),
    ] {
        let (got, body) = api
            .call(method.clone(), &path(user), Some(&token), None)
            .await;
        assert_eq!(got, status, "{method} {user}: {body}");
        assert_eq!(
            chat_view(&api, &token, chat).await["subscribers_count"],
            count
        );
        let state = engine_view(&api, app, chat).await;
        assert_eq!(state["version"], version, "{method} {user}");
        assert_eq!(state["subscribers"].as_array().unwrap().len(), count);
    }

    // Messages: counted once, replays included.
    let first = batch(
        1,
        (1..=10)
            .map(|n| message(app, chat, n, "ann", "x"))
            .collect(),
    );
    for _ in 0..2 {
        let (status, receipt) = api.post_batch(&first).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(
            receipt["chat_versions"],
            json!([{"app": app, "chat": chat, "version": 5, "last_number": 10}])
        );
    }
    assert_eq!(chat_view(&api, &token, chat).await["messages_count"], 10);

    // An implicit chat: its subscribers once each, version 1 + subscribers.
    let mut implicit = batch(2, vec![message(app, 40, 1, "dave", "hi")]);
    implicit
        .chats
        .push(implicit_chat(app, 40, &["dave", "erin", "dave"]));
    let (status, receipt) = api.post_batch(&implicit).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(
        receipt["chat_versions"],
        json!([{"app": app, "chat": 40, "version": 3, "last_number": 1}])
    );
    let view = chat_view(&api, &token, 40).await;
    assert_eq!(
        (&view["subscribers_count"], &view["messages_count"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(
        engine_view(&api, app, 40).await["subscribers"],
        json!(["dave", "erin"])
    );
    // Creating an existing chat again refuses its new messages and
    // changes nothing: they were numbered for a chat of their own.
    let mut again = batch(3, vec![message(app, 40, 2, "erin", "yo")]);
    again.chats.push(implicit_chat(app, 40, &["zoe"]));
    let (status, receipt) = api.post_batch(&again).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["refused"][0]["reason"]["code"], "chat_exists");
    let view = chat_view(&api, &token, 40).await;
    assert_eq!(
        (&view["subscribers_count"], &view["messages_count"]),
        (&json!(2), &json!(1))
    );
    // An implicit chat with no message is counted and reported too.
    let mut quiet = batch(4, vec![]);
    quiet.chats.push(implicit_chat(app, 41, &["fay"]));
    let (status, receipt) = api.post_batch(&quiet).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(
        receipt["chat_versions"],
        json!([{"app": app, "chat": 41, "version": 2, "last_number": 0}])
    );

    let (_, app_view) = api.get("/v1/app", &token).await;
    assert_eq!(app_view["chats_count"], 3);
    let (_, listing) = api.get("/v1/chats", &token).await;
    let counts: Vec<(u64, u64, u64)> = listing["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["number"].as_u64().unwrap(),
                c["messages_count"].as_u64().unwrap(),
                c["subscribers_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, vec![(chat, 10, 2), (40, 1, 2), (41, 0, 1)]);
}

/// Subscribes and unsubscribes racing on one chat: the count equals the
/// rows, each change moved the version once, each request got the right
/// answer.
pub async fn concurrent_subscriptions_count_exactly(backend: Backend) {
    let api = Arc::new(backend.start().await);
    let (token, app) = api.create_app("crowd").await;
    let chat = api.create_chat(&token).await;
    const USERS: usize = 12;
    let mut tasks = Vec::new();
    for round in 0..2 {
        for user in 0..USERS {
            let (api, token) = (api.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let path = format!("/v1/chats/{chat}/subscribers/user{user}-{round}");
                let first = api.call(Method::PUT, &path, Some(&token), None).await.0;
                let second = api.call(Method::PUT, &path, Some(&token), None).await.0;
                (first, second)
            }));
        }
    }
    for task in tasks {
        let answers = task.await.unwrap();
        assert_eq!(answers, (StatusCode::CREATED, StatusCode::OK));
    }
    let state = engine_view(&api, app, chat).await;
    assert_eq!(state["subscribers"].as_array().unwrap().len(), 2 * USERS);
    assert_eq!(state["version"], 1 + 2 * USERS as u64);
    let mut tasks = Vec::new();
    for user in 0..USERS {
        let (api, token) = (api.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!("/v1/chats/{chat}/subscribers/user{user}-0");
            api.call(Method::DELETE, &path, Some(&token), None).await.0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::NO_CONTENT);
    }
    let state = engine_view(&api, app, chat).await;
    assert_eq!(state["subscribers"].as_array().unwrap().len(), USERS);
    assert_eq!(state["version"], 1 + 3 * USERS as u64);
    assert_eq!(
        chat_view(&api, &token, chat).await["subscribers_count"],
        USERS
    );
}
