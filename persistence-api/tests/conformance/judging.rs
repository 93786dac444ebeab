//! The store is the judge of every write, whatever the engine's cache of a
//! chat says: membership at commit, implicit creation of a chat that exists,
//! how far a user may move an app's numbering, and the numbers' bounds.

use chat_wire::limits::{IMPLICIT_CHAT_NUMBERS_AHEAD_MAX, NUMBER_MAX};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::Backend;
use crate::common::{
    OPERATOR_KEY, assert_error, batch, implicit_chat, member_message, message, user_implicit_chat,
};

pub async fn a_non_member_cannot_write_even_through_a_stale_engine(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("members").await;
    let chat = api.create_chat(&token).await;
    api.subscribe(&token, chat, "alice").await;
    api.subscribe(&token, chat, "mallory").await;
    let first = batch(1, vec![member_message(app, chat, 1, "mallory", "still in")]);
    assert_eq!(api.post_batch(&first).await.1["messages"], 1);

    let path = format!("/v1/chats/{chat}/subscribers/mallory");
    let (status, _) = api.call(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let before = api.snapshot(&token).await;
    // An engine that has not heard of the removal numbers mallory's message.
    let stale = batch(2, vec![member_message(app, chat, 2, "mallory", "sneaked")]);
    let (status, receipt) = api.post_batch(&stale).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["refused"][0]["reason"]["code"], "not_subscribed");
    assert_eq!(receipt["refused"][0]["reason"]["sender"], "mallory");
    assert_eq!(receipt["messages"], 0);
    assert_eq!(api.snapshot(&token).await, before, "the refusal wrote");

    // A member's message of the same number commits; so does the app's.
    let member = batch(3, vec![member_message(app, chat, 2, "alice", "hi")]);
    assert_eq!(api.post_batch(&member).await.1["messages"], 1);
    let published = batch(4, vec![message(app, chat, 3, "mallory", "by the app")]);
    assert_eq!(api.post_batch(&published).await.1["messages"], 1);
    // A replay of a committed message stays accepted after its sender left.
    assert_eq!(api.post_batch(&first).await.1["messages"], 1);
}

pub async fn an_implicit_creation_of_an_existing_chat_stores_nothing(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("race").await;
    let chat = api.create_chat(&token).await;
    let (status, _) = api
        .call(
            Method::PATCH,
            "/v1/app",
            Some(&token),
            Some(json!({"title": "race"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let before = api.snapshot(&token).await;
    // The engine thought the next number was free and created it itself.
    for creation in [
        user_implicit_chat(app, chat, &["mallory"]),
        implicit_chat(app, chat, &["mallory"]),
    ] {
        let mut racing = batch(1, vec![member_message(app, chat, 1, "mallory", "mine")]);
        racing.messages[0].as_app = !creation.by_app;
        racing.messages[0].as_app = creation.by_app;
        racing.chats.push(creation);
        let (status, receipt) = api.post_batch(&racing).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["refused"][0]["reason"]["code"], "chat_exists");
        assert_eq!(api.snapshot(&token).await, before, "the creation wrote");
    }

    // Its own creation, replayed after it committed, is still accepted.
    let mut own = batch(2, vec![member_message(app, chat + 1, 1, "bob", "first")]);
    own.chats.push(user_implicit_chat(app, chat + 1, &["bob"]));
    for _ in 0..2 {
        let (status, receipt) = api.post_batch(&own).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["refused"], json!([]), "{receipt}");
        assert_eq!(receipt["messages"], 1);
    }
    let view = api.get(&format!("/v1/chats/{}", chat + 1), &token).await.1;
    assert_eq!(
        (
            view["messages_count"].clone(),
            view["subscribers_count"].clone()
        ),
        (json!(1), json!(1))
    );
}

pub async fn a_user_cannot_move_the_numbering_far_ahead(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("ahead").await;
    let highest = api.create_chat(&token).await;
    let before = api.snapshot(&token).await;
    for number in [
        highest + IMPLICIT_CHAT_NUMBERS_AHEAD_MAX + 1,
        1 << 52,
        NUMBER_MAX,
    ] {
        let mut far = batch(1, vec![member_message(app, number, 1, "mallory", "far")]);
        far.chats
            .push(user_implicit_chat(app, number, &["mallory"]));
        let (status, receipt) = api.post_batch(&far).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(
            receipt["refused"][0]["reason"]["code"], "chat_number_too_high",
            "{number}: {receipt}"
        );
        assert_eq!(api.snapshot(&token).await, before, "{number} wrote");
    }
    // At the bound it is allowed, and the next REST chat follows it.
    let at = highest + IMPLICIT_CHAT_NUMBERS_AHEAD_MAX;
    let mut near = batch(2, vec![member_message(app, at, 1, "alice", "near")]);
    near.chats.push(user_implicit_chat(app, at, &["alice"]));
    assert_eq!(api.post_batch(&near).await.1["refused"], json!([]));
    assert_eq!(api.create_chat(&token).await, at + 1);
}

pub async fn numbers_past_the_maximum_are_refused_and_exhaustion_is_an_error(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("edge").await;
    let (other_token, _) = api.create_app("other").await;
    // The wire format refuses numbers past the maximum before any store.
    for number in [NUMBER_MAX + 1, 1 << 63, u64::MAX] {
        let mut past = batch(1, vec![message(app, number, 1, "alice", "x")]);
        past.chats.push(implicit_chat(app, number, &["alice"]));
        assert!(chat_wire::encode_batch(&past, 4096).is_err(), "{number}");
        for path in [
            format!("/v1/chats/{number}"),
            format!("/v1/chats?after={number}"),
            format!("/v1/chats/1/messages?before={number}"),
        ] {
            assert_error(
                &api.get(&path, &token).await,
                StatusCode::BAD_REQUEST,
                "invalid_number",
            );
        }
    }
    // The app itself may take the last number; then its numbering is
    // exhausted, which is a clear error, and every other write still works.
    let mut last = batch(2, vec![message(app, NUMBER_MAX, 1, "alice", "last")]);
    last.chats.push(implicit_chat(app, NUMBER_MAX, &["alice"]));
    assert_eq!(api.post_batch(&last).await.1["refused"], json!([]));
    let view = api.get(&format!("/v1/chats/{NUMBER_MAX}"), &token).await.1;
    assert_eq!(view["number"], NUMBER_MAX);
    for _ in 0..2 {
        let answer = api
            .call(Method::POST, "/v1/chats", Some(&token), Some(json!({})))
            .await;
        assert_error(&answer, StatusCode::CONFLICT, "chat_numbers_exhausted");
    }
    assert_eq!(api.create_chat(&other_token).await, 1);
    let (status, _) = api
        .call(
            Method::POST,
            "/v1/apps",
            Some(OPERATOR_KEY),
            Some(json!({"title": "after"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    api.subscribe(&token, NUMBER_MAX, "bob").await;
}

pub async fn memberships_answer_exactly_who_is_in(backend: Backend) {
    let api = backend.start().await;
    let (token, app) = api.create_app("members").await;
    let (other_token, other_app) = api.create_app("other").await;
    let one = api.create_chat(&token).await;
    let two = api.create_chat(&token).await;
    let foreign = api.create_chat(&other_token).await;
    api.subscribe(&token, one, "alice").await;
    api.subscribe(&token, two, "bob").await;
    api.subscribe(&other_token, foreign, "alice").await;
    let post = |path: String, body: serde_json::Value| {
        let api = &api;
        async move {
            api.call(Method::POST, &path, Some(OPERATOR_KEY), Some(body))
                .await
        }
    };
    let ask = |app: u64, user: &str, chats: Vec<u64>| {
        post(
            format!("/internal/v1/apps/{app}/users/{user}/memberships"),
            json!({ "chats": chats }),
        )
    };
    let (status, answer) = ask(app, "alice", vec![two, one, 999, one]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["chats"], json!([one]));
    assert_eq!(ask(app, "bob", vec![one]).await.1["chats"], json!([]));
    assert_eq!(
        ask(other_app, "alice", vec![foreign]).await.1["chats"],
        json!([foreign])
    );
    // The engine's batched form: per check, in order, the same answers;
    // another app's chat of the same number is not this app's.
    let ask_all = |app: u64, checks: serde_json::Value| {
        post(
            format!("/internal/v1/apps/{app}/memberships"),
            json!({ "checks": checks }),
        )
    };
    let checks = json!([
        {"user": "alice", "chats": [two, one, 999, one]},
        {"user": "bob", "chats": [one, two]},
        {"user": "carol", "chats": [one, two]},
        {"user": "alice", "chats": []},
        {"user": "bob", "chats": [two]},
    ]);
    let (status, answer) = ask_all(app, checks.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["members"], json!([[one], [two], [], [], [two]]));
    let (status, answer) = ask_all(other_app, checks).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Each app numbers its chats from 1: the other app's chat is `one`'s
    // number, which alice's first check names.
    assert_eq!(foreign, one);
    assert_eq!(answer["members"][0], json!([foreign]), "{answer}");
    assert_eq!(answer["members"][1], json!([]), "{answer}");
    let (status, answer) = ask_all(app, json!([])).await;
    assert_eq!((status, &answer["members"]), (StatusCode::OK, &json!([])));
    let path = format!("/v1/chats/{one}/subscribers/alice");
    api.call(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(ask(app, "alice", vec![one]).await.1["chats"], json!([]));
    let answer = ask_all(app, json!([{"user": "alice", "chats": [one, two]}])).await;
    assert_eq!(
        answer.1["members"],
        json!([[]]),
        "a removal applies at once"
    );
    assert_error(
        &ask(app, "alice", vec![NUMBER_MAX + 1]).await,
        StatusCode::BAD_REQUEST,
        "invalid_number",
    );
    let too_many = (1..=1_001).collect();
    assert_error(
        &ask(app, "alice", too_many).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}
