//! Durability: a persistence API process acknowledges a batch and is killed
//! with SIGKILL right after; after a restart every acknowledged message is
//! there, and a batch that was in flight at the kill is either wholly there
//! or wholly absent.

mod common;

use std::time::Duration;

use chat_wire::{Batch, NewMessage};
use common::{OPERATOR_KEY, free_port, spawn_api, wait_healthy};
use serde_json::Value;

const ROUNDS: usize = 20;
const BATCH_SIZES: [u64; 4] = [1, 7, 64, 512];

fn batch(app: u64, chat: u64, first: u64, count: u64, round: usize) -> Vec<u8> {
    let messages = (first..first + count)
        .map(|number| NewMessage {
            app,
            chat,
            number,
            sender: "writer".into(),
            recipients: None,
            body: format!("round {round} message {number}"),
            client_id: None,
            sent_at_us: number as i64,
            as_app: true,
        })
        .collect();
    let batch = Batch {
        batch_id: round as u64,
        chats: vec![],
        messages,
    };
    chat_wire::encode_batch(&batch, chat_wire::limits::MESSAGE_BODY_BYTES_MAX).unwrap()
}

async fn post_batch(
    client: &reqwest::Client,
    base: &str,
    bytes: Vec<u8>,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base}/internal/v1/batches"))
        .bearer_auth(OPERATOR_KEY)
        .body(bytes)
        .send()
        .await
}

async fn get_json(client: &reqwest::Client, url: String, token: &str) -> Value {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// Every message 1..=count, with the body its round wrote.
async fn read_all(client: &reqwest::Client, base: &str, token: &str, chat: u64) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = get_json(
            client,
            format!("{base}/v1/chats/{chat}/messages?after={after}&limit=1000"),
            token,
        )
        .await;
        let messages = page["messages"].as_array().unwrap();
        all.extend(messages.iter().cloned());
        if !page["has_more"].as_bool().unwrap() {
            return all;
        }
        after = messages.last().unwrap()["number"].as_u64().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut api = spawn_api(dir.path(), free_port(), None);
    wait_healthy(&client, &mut api).await;

    let created = common::create_app(&client, &api.base, "durable").await;
    let (token, app) = (
        created["token"].as_str().unwrap().to_string(),
        created["id"].as_u64().unwrap(),
    );
    let chat: Value = client
        .post(format!("{}/v1/chats", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = chat["number"].as_u64().unwrap();

    let mut acknowledged = 0u64;
    let mut in_flight_landed = 0;
    for round in 0..ROUNDS {
        let size = BATCH_SIZES[round % BATCH_SIZES.len()];
        let response = post_batch(
            &client,
            &api.base,
            batch(app, chat, acknowledged + 1, size, round),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        acknowledged += size;

        // A second batch races the kill: it may or may not have committed.
        let (racing_client, racing_base) = (client.clone(), api.base.clone());
        let racing_bytes = batch(app, chat, acknowledged + 1, size, round);
        let racing =
            tokio::spawn(
                async move { post_batch(&racing_client, &racing_base, racing_bytes).await },
            );
        tokio::time::sleep(Duration::from_micros(500 * (round as u64 % 4))).await;
        api.kill_hard();
        if let Ok(Ok(response)) = racing.await
            && response.status() == 200
        {
            acknowledged += size; // acknowledged before the kill: it must survive too
        }

        api = spawn_api(dir.path(), free_port(), None);
        wait_healthy(&client, &mut api).await;
        let chat_state = get_json(&client, format!("{}/v1/chats/{chat}", api.base), &token).await;
        let count = chat_state["messages_count"].as_u64().unwrap();
        assert!(
            count == acknowledged || count == acknowledged + size,
            "round {round}: {count} messages stored, {acknowledged} acknowledged, batch of {size}: not atomic or lost"
        );
        if count > acknowledged {
            in_flight_landed += 1;
        }
        acknowledged = count;
        let all = read_all(&client, &api.base, &token, chat).await;
        let stored: Vec<u64> = all.iter().map(|m| m["number"].as_u64().unwrap()).collect();
        assert_eq!(
            stored,
            (1..=count).collect::<Vec<_>>(),
            "round {round}: gap or duplicate"
        );
    }
    eprintln!(
        "{ROUNDS} kills survived; {in_flight_landed} racing batches had committed before the kill"
    );
    api.kill_hard();
}
