//! Who finds what: the history rule. An addressed message is found by its
//! sender, its recipients and the app; a member who leaves stops finding
//! the chat at once; one app never finds another's messages.

use chat_wire::NewMessage;
use reqwest::{Method, StatusCode};

use crate::common::{assert_error, message};
use crate::world::{Backend, World, keys, on_both_backends};

fn to(mut message: NewMessage, recipients: &[&str]) -> NewMessage {
    message.recipients = Some(recipients.iter().map(|r| r.to_string()).collect());
    message
}

async fn addressed_messages_reach_only_sender_recipients_and_the_app(backend: Backend) {
    let mut world = World::start(backend).await;
    let chat = world.chat_with(&["ann", "bob", "cat"]).await;
    let app = world.app;
    world
        .publish(vec![
            message(app, chat, 1, "ann", "secret for everyone"),
            to(message(app, chat, 2, "ann", "secret for bob"), &["bob"]),
            to(
                message(app, chat, 3, "bob", "secret from bob to nobody"),
                &[],
            ),
        ])
        .await;
    world.wait_indexed().await;
    let numbers = |page: &serde_json::Value| -> Vec<u64> {
        let mut numbers: Vec<u64> = keys(page).into_iter().map(|(_, n)| n).collect();
        numbers.sort_unstable();
        numbers
    };
    let one_chat = format!("/v1/chats/{chat}/messages/search?q=secret");
    let all_chats = "/v1/messages/search?q=secret";
    for (user, expected) in [
        ("ann", vec![1, 2]),
        ("bob", vec![1, 2, 3]),
        ("cat", vec![1]),
    ] {
        let token = world.user_token(user).await;
        assert_eq!(
            numbers(&world.hits(&one_chat, &token).await),
            expected,
            "{user}"
        );
        assert_eq!(
            numbers(&world.hits(all_chats, &token).await),
            expected,
            "{user}"
        );
    }
    assert_eq!(
        numbers(&world.hits(&one_chat, &world.token).await),
        [1, 2, 3]
    );
    assert_eq!(
        numbers(&world.hits(all_chats, &world.token).await),
        [1, 2, 3]
    );
}

async fn a_member_who_leaves_stops_finding_the_chat_at_once(backend: Backend) {
    let mut world = World::start(backend).await;
    let kept = world.chat_with(&["ann"]).await;
    let left = world.chat_with(&["ann"]).await;
    let never = world.chat_with(&["bob"]).await;
    world.say(kept, 0, "ann", &["lantern kept"]).await;
    world.say(left, 0, "ann", &["lantern left"]).await;
    world.say(never, 0, "bob", &["lantern never"]).await;
    world.wait_indexed().await;
    let ann = world.user_token("ann").await;
    let page = world
        .hits("/v1/messages/search?q=lantern&sort=recent", &ann)
        .await;
    assert_eq!(keys(&page), [(left, 1), (kept, 1)]);
    // A chat she is not in: refused on the one-chat route, not searched
    // on the other even when named.
    let path = format!("/v1/chats/{never}/messages/search?q=lantern");
    assert_error(
        &world.search(&path, &ann).await,
        StatusCode::FORBIDDEN,
        "not_subscribed",
    );
    let path = format!("/v1/messages/search?q=lantern&chats={never},{kept}");
    assert_eq!(keys(&world.hits(&path, &ann).await), [(kept, 1)]);

    let path = format!("/v1/chats/{left}/subscribers/ann");
    let (status, body) = world
        .api
        .call(Method::DELETE, &path, Some(&world.token), None)
        .await;
    assert!(status.is_success(), "{status} {body}");
    // No wait for the index: membership is read at query time.
    let page = world.hits("/v1/messages/search?q=lantern", &ann).await;
    assert_eq!(keys(&page), [(kept, 1)]);
    let path = format!("/v1/chats/{left}/messages/search?q=lantern");
    assert_error(
        &world.search(&path, &ann).await,
        StatusCode::FORBIDDEN,
        "not_subscribed",
    );
    // The app still finds everything.
    let page = world
        .hits("/v1/messages/search?q=lantern", &world.token)
        .await;
    assert_eq!(page["hits"].as_array().unwrap().len(), 3);
}

async fn one_app_never_finds_another_apps_messages(backend: Backend) {
    let mut world = World::start(backend).await;
    let ours = world.chat_with(&["ann"]).await;
    world.say(ours, 0, "ann", &["zebra ours"]).await;
    let (other_token, other_app) = world.api.create_app("Other").await;
    let theirs = world.api.create_chat(&other_token).await;
    world.api.subscribe(&other_token, theirs, "ann").await;
    assert_eq!(theirs, ours, "both apps have a chat of the same number");
    world
        .publish(vec![message(other_app, theirs, 1, "ann", "zebra theirs")])
        .await;
    world.wait_indexed().await;
    let page = world
        .hits("/v1/messages/search?q=zebra", &world.token)
        .await;
    assert_eq!(page["hits"][0]["body"], "zebra ours");
    assert_eq!(page["hits"].as_array().unwrap().len(), 1);
    let page = world
        .hits("/v1/messages/search?q=zebra", &other_token)
        .await;
    assert_eq!(page["hits"][0]["body"], "zebra theirs");
    assert_eq!(page["hits"].as_array().unwrap().len(), 1);
    let path = format!("/v1/chats/{ours}/messages/search?q=zebra");
    let page = world.hits(&path, &other_token).await;
    assert_eq!(page["hits"][0]["body"], "zebra theirs");
    // The same user id in the other app, with that app's token: its own only.
    let theirs_ann = world.user_token_of(&other_token, "ann").await;
    let page = world.hits("/v1/messages/search?q=zebra", &theirs_ann).await;
    assert_eq!(page["hits"][0]["body"], "zebra theirs");
    assert_eq!(page["hits"].as_array().unwrap().len(), 1);
    // A chat the other app does not have.
    let path = "/v1/chats/99/messages/search?q=zebra";
    assert_error(
        &world.search(path, &other_token).await,
        StatusCode::NOT_FOUND,
        "chat_not_found",
    );
    // No credentials, or bad ones.
    let response = world
        .api
        .call(Method::GET, "/v1/messages/search?q=zebra", None, None)
        .await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "missing_credentials");
    let response = world.search("/v1/messages/search?q=zebra", "nope").await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "invalid_credentials");
}

on_both_backends!(
    addressed_messages_reach_only_sender_recipients_and_the_app,
    a_member_who_leaves_stops_finding_the_chat_at_once,
    one_app_never_finds_another_apps_messages,
);
