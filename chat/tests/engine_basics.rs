//! The engine end to end over real sockets: send, ack, delivery, history.

mod common;

use common::System;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_one_chat() {
    let system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    system.subscribe(chat, "bob").await;
    let mut alice = system.connect("alice").await;
    let mut bob = system.connect("bob").await;

    alice
        .send(json!({"type": "send", "chat": chat, "body": "hello bob", "id": "c-1"}))
        .await;
    let mut ack = None;
    let mut echoed = false;
    for _ in 0..2 {
        let frame = alice.recv().await;
        match frame["type"].as_str().unwrap() {
            "ack" => ack = Some(frame),
            "message" => echoed = true,
            other => panic!("unexpected {other}: {frame}"),
        }
    }
    let ack = ack.expect("an ack");
    assert_eq!(
        ack,
        json!({"type": "ack", "id": "c-1", "chat": chat, "number": 1})
    );
    assert!(echoed, "the sender's own connection gets the message too");

    let message = bob.recv().await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["chat"], chat);
    assert_eq!(message["number"], 1);
    assert_eq!(message["from"], "alice");
    assert_eq!(message["body"], "hello bob");
    assert!(message["sent_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        bob.try_recv(std::time::Duration::from_millis(300))
            .await
            .is_none(),
        "exactly once"
    );

    let history = system.history(chat).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["body"], "hello bob");
    assert_eq!(history[0]["id"], "c-1");

    bob.send(json!({"type": "ping"})).await;
    assert_eq!(bob.recv().await, json!({"type": "pong"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_closes_with_going_away() {
    let mut system = System::start().await;
    let chat = system.create_chat().await;
    system.subscribe(chat, "alice").await;
    let mut alice = system.connect("alice").await;
    assert_eq!(alice.send_and_ack(chat, "before").await, 1);
    let status = system.engine.terminate();
    assert!(status.success(), "the engine exits 0 on SIGTERM: {status}");
    assert_eq!(alice.closed_reason().await.as_deref(), Some("going_away"));
    assert_eq!(system.history(chat).await.len(), 1);
}

/// A ring depth glommio or the kernel would refuse (glommio asserts a
/// positive one, io_uring takes at most 32,768 entries) stops the engine at
/// start with a clear error, before it binds anything.
#[test]
fn a_ring_depth_out_of_range_is_refused_at_start() {
    for depth in ["0", "32769"] {
        let stderr = refused_at_start(&["--ring-depth", depth]);
        assert!(
            stderr.contains("the io_uring ring depth must be from 1 to 32768"),
            "depth {depth}: {stderr}"
        );
    }
}

#[test]
fn typing_limits_out_of_range_are_refused_at_start() {
    for flags in [
        ["--typing-interval-ms", "60001"],
        ["--typing-expires-ms", "0"],
        ["--typing-expires-ms", "60001"],
    ] {
        let stderr = refused_at_start(&flags);
        assert!(
            stderr.contains("the typing interval must be from 0 and its expiry from 1 to 60000 ms"),
            "{flags:?}: {stderr}"
        );
    }
}

#[test]
fn a_read_events_interval_out_of_range_is_refused_at_start() {
    for interval in ["0", "60001"] {
        let stderr = refused_at_start(&["--read-events-interval-ms", interval]);
        assert!(
            stderr.contains("the read events' interval must be from 1 to 60000 ms"),
            "{interval}: {stderr}"
        );
    }
}

/// Starts `chat engine` with `flags`, expects it to refuse; its stderr.
fn refused_at_start(flags: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["engine", "--engine-addr", "127.0.0.1:0"])
        .args(flags)
        .args(["--auth-addr", "127.0.0.1:1"])
        .env("CHAT_OPERATOR_KEY", "op_limits_test")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{flags:?} started: {stderr}");
    stderr
}
