//! `chat repair` on a real store: it opens the data dir the API used, walks
//! the app's chats and reports what it marked (nothing, on the embedded
//! store, which never loses an acknowledged message).

mod common;

use std::process::Command;

use common::{free_port, spawn_api, wait_healthy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_walks_every_chat_of_an_app_and_changes_nothing_whole() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut api = spawn_api(dir.path(), free_port(), None);
    wait_healthy(&http, &mut api).await;
    let app = common::create_app(&http, &api.base, "repair").await;
    let token = app["token"].as_str().unwrap();
    for _ in 0..3 {
        let response = http
            .post(format!("{}/v1/chats", api.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    assert!(api.terminate().success());

    let output = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["repair", "--app", &app["id"].to_string()])
        .env("CHAT_DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("0 lost messages marked"),
        "{stdout}{stderr}"
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["repair", "--app", &app["id"].to_string(), "--chat", "99"])
        .env("CHAT_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        !missing.status.success(),
        "a chat that does not exist is an error"
    );
}
