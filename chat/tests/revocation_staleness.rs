//! Revocation fails closed, over real processes: when the engine and the
//! persistence API cannot read the auth service's revocation log for longer
//! than the staleness bound, they refuse user tokens (`revocations_stale`,
//! 503) until a poll succeeds again; a just-started API refuses them until
//! its first poll succeeds, and a just-started engine does not serve until
//! then.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Options, System, spawn_api_with, wait_healthy};
use serde_json::Value;

const STALE_S: u64 = 2;

fn options() -> Options {
    let env = vec![("CHAT_REVOCATIONS_STALE_S", STALE_S.to_string())];
    Options {
        auth: true,
        extra_engine_env: env.clone(),
        extra_api_env: env,
        ..Options::default()
    }
}

async fn read_history(system: &System, api_base: &str, chat: u64, token: &str) -> (u16, Value) {
    let response = system
        .http
        .get(format!("{api_base}/v1/chats/{chat}/messages?after=0"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn upgrade(system: &System, token: &str) -> (u16, Value) {
    let response = system
        .http
        .get(format!("{}/v1/ws?token={token}", system.engine.base))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

/// Retries `check` until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn user_tokens_are_refused_while_the_revocation_log_is_out_of_reach() {
    let mut system = System::start_with(options()).await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    let token = system.token("alice").await;
    let api = system.api.base.clone();
    assert_eq!(read_history(&system, &api, chat, &token).await.0, 200);
    assert_eq!(upgrade(&system, &token).await.0, 101);

    system.auth.as_mut().unwrap().kill_hard();
    // Within the bound the last poll still counts...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read_history(&system, &api, chat, &token).await.0, 200);
    // ...past it, nobody can say the token was not revoked.
    tokio::time::sleep(Duration::from_secs(STALE_S + 1)).await;
    let (status, body) = read_history(&system, &api, chat, &token).await;
    assert_eq!(
        (status, code(&body)),
        (503, Some("revocations_stale")),
        "{body}"
    );
    let (status, body) = upgrade(&system, &token).await;
    assert_eq!(
        (status, code(&body)),
        (503, Some("revocations_stale")),
        "{body}"
    );
    let metrics = system
        .http
        .get(format!("{}/metrics", system.engine.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("chat_engine_revocation_poll_failures_total")
            && metrics.contains("chat_engine_revocations_stale{shard=\"0\"} 1"),
        "{metrics}"
    );
    let metrics = system
        .http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("chat_api_revocation_poll_failures_total")
            && metrics.contains("chat_api_revocations_stale 1"),
        "{metrics}"
    );

    // The service is back: the next poll ends the refusal.
    system.restart_auth(&[]).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            read_history(&system, &api, chat, &token).await.0 == 200
        })
        .await,
        "the API still refuses after the auth service came back"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            upgrade(&system, &token).await.0 == 101
        })
        .await,
        "the engine still refuses after the auth service came back"
    );
}

#[tokio::test]
async fn a_fresh_api_refuses_user_tokens_until_its_first_poll() {
    let mut system = System::start_with(options()).await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    let token = system.token("alice").await;
    // The auth service comes back with another operator key: its public
    // keys still verify, but its revocation log refuses this system's
    // pollers, so no poll can succeed.
    system.auth.as_mut().unwrap().kill_hard();
    system
        .restart_auth(&[("CHAT_OPERATOR_KEY", "op_some_other_key".into())])
        .await;
    let port = common::free_port();
    let mut fresh = spawn_api_with(
        system.dir.path(),
        port,
        Some(system.auth_port),
        &[
            ("CHAT_REVOCATIONS_STALE_S", STALE_S.to_string()),
            // A data dir of its own: the first API holds the store's lock.
            (
                "CHAT_DATA_DIR",
                system.dir.path().join("fresh").display().to_string(),
            ),
        ],
    );
    wait_healthy(&system.http, &mut fresh).await;
    // Its store is empty, so the chat is not there, but the token must be
    // refused before any store lookup.
    let (status, body) = read_history(&system, &fresh.base, chat, &token).await;
    assert_eq!(
        (status, code(&body)),
        (503, Some("revocations_stale")),
        "{body}"
    );
}

#[tokio::test]
async fn a_fresh_engine_does_not_serve_until_its_first_poll() {
    let mut system = System::start_with(options()).await;
    let token = system.token("alice").await;
    system.auth.as_mut().unwrap().kill_hard();
    system
        .restart_auth(&[("CHAT_OPERATOR_KEY", "op_some_other_key".into())])
        .await;
    system.engine.kill_hard();
    let mut engine = common::spawn_engine(
        system.engine_port,
        system.api_port,
        Some(system.auth_port),
        &system.key,
        &system.options,
    );
    tokio::time::sleep(Duration::from_secs(STALE_S + 1)).await;
    assert!(
        system
            .http
            .get(format!("{}/healthz", engine.base))
            .send()
            .await
            .is_err(),
        "the engine serves without having read the revocation log"
    );
    // The right auth service: the engine starts, and the token works.
    system.auth.as_mut().unwrap().kill_hard();
    system.restart_auth(&[]).await;
    wait_healthy(&system.http, &mut engine).await;
    system.engine = engine;
    let mut client = Client::connect(system.engine_port, &token).await;
    client.send(serde_json::json!({"type": "ping"})).await;
    assert_eq!(client.recv().await["type"], "pong");
}
