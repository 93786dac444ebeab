//! Tenant isolation in the store: two apps with the same chat number each
//! see only their own chat, subscribers and messages, and writing one never
//! changes the other. (Credential checks are the HTTP layer's, tested once
//! in `tests/isolation.rs`.)

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::Backend;
use crate::common::{OPERATOR_KEY, batch, message};

pub async fn a_shared_chat_number_shows_each_app_its_own_chat(backend: Backend) {
    let api = backend.start().await;
    let (a, a_id) = api.create_app("App A").await;
    let (b, b_id) = api.create_app("App B").await;
    assert_ne!(a_id, b_id);
    assert_eq!(api.create_chat(&a).await, 1);
    assert_eq!(api.create_chat(&a).await, 2);
    assert_eq!(api.create_chat(&b).await, 1);
    api.subscribe(&a, 1, "alice").await;
    api.subscribe(&b, 1, "zed").await;
    for (id, app, body) in [(1, a_id, "for A"), (2, b_id, "for B")] {
        let answer = api
            .post_batch(&batch(id, vec![message(app, 1, 1, "x", body)]))
            .await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    }
    let before_b = api.snapshot(&b).await;

    // Each app's view of chat 1.
    let (_, messages) = api.get("/v1/chats/1/messages?after=0", &a).await;
    assert_eq!(messages["messages"][0]["body"], "for A");
    let (_, messages) = api.get("/v1/chats/1/messages?after=0", &b).await;
    assert_eq!(messages["messages"][0]["body"], "for B");
    let (_, members) = api.get("/v1/chats/1/subscribers", &b).await;
    assert_eq!(members["subscribers"], json!(["zed"]));
    assert_eq!(api.get("/v1/app", &a).await.1["chats_count"], 2);
    assert_eq!(api.get("/v1/app", &b).await.1["chats_count"], 1);
    // Chat 2 is A's alone.
    let (status, _) = api.get("/v1/chats/2", &b).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let internal = format!("/internal/v1/apps/{b_id}/chats/2");
    let (status, _) = api
        .call(Method::GET, &internal, Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, state) = api
        .call(
            Method::GET,
            &format!("/internal/v1/apps/{a_id}/chats/1"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(state["subscribers"], json!(["alice"]));
    assert_eq!(state["last_number"], 1);

    // Writing A's chat 1 and 2 leaves B's exactly as it was.
    api.subscribe(&a, 1, "zed").await;
    let more = batch(
        3,
        vec![
            message(a_id, 1, 2, "alice", "more A"),
            message(a_id, 2, 1, "alice", "chat 2"),
        ],
    );
    assert_eq!(api.post_batch(&more).await.0, StatusCode::OK);
    api.create_chat(&a).await;
    assert_eq!(api.snapshot(&b).await, before_b);
}
