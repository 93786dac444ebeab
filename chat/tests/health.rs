//! Health that tells the truth, over real processes: `/healthz` fails when
//! the store refuses writes (the persistence API probes it; the engine sees
//! its batch commits fail), and a shard that dies takes the engine process
//! down with a clear error and a non-zero exit instead of wedging it.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Process, System, api_command, free_port, wait_healthy};
use serde_json::{Value, json};

/// GET /healthz: (status, body as JSON if it is JSON).
async fn health(http: &reqwest::Client, base: &str) -> (u16, Value) {
    match http.get(format!("{base}/healthz")).send().await {
        Ok(response) => (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        ),
        Err(_) => (0, Value::Null),
    }
}

/// Polls `/healthz` until it answers `status`; the last answer.
async fn wait_for_health(
    http: &reqwest::Client,
    base: &str,
    status: u16,
    limit: Duration,
) -> (u16, Value) {
    let deadline = Instant::now() + limit;
    loop {
        let answer = health(http, base).await;
        if answer.0 == status || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets the largest file `pid` may write (RLIMIT_FSIZE): past it every
/// write fails with EFBIG, as on a full disk.
fn limit_file_size(pid: u32, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit on our own child with a pointer to a live struct.
    let result = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(result, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[tokio::test]
async fn healthz_fails_when_the_store_refuses_writes() {
    let mut system = System::start().await;
    // Replace the API with one whose file writes can be made to fail: it
    // ignores SIGXFSZ, so a write past the size limit is an error (EFBIG),
    // not a kill.
    system.api.kill_hard();
    let mut command = api_command(system.dir.path(), system.api_port, None, &[]);
    // Its log must not be a regular file, which the size limit would cut
    // off too (the test's stderr is one when redirected to a file).
    command.stderr(Stdio::null());
    // SAFETY: signal(2) between fork and exec; async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    system.api = Process {
        child: command.spawn().unwrap(),
        base: system.api.base.clone(),
    };
    wait_healthy(&system.http, &mut system.api).await;
    let (status, _) = system
        .publish(1, json!({"from": "alice", "body": "before"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(health(&system.http, &system.engine.base).await.0, 200);

    limit_file_size(system.api.child.id(), 1);
    let (status, body) =
        wait_for_health(&system.http, &system.api.base, 503, Duration::from_secs(5)).await;
    if let Some(exit) = system.api.child.try_wait().unwrap() {
        panic!("the API exited instead of refusing writes: {exit}");
    }
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "the API's /healthz while its store cannot write: {body}"
    );

    // The engine's commits now fail (and are retried); its health says so.
    let http = system.http.clone();
    let engine = system.engine.base.clone();
    let token = system.app_token.clone();
    let stuck = tokio::spawn(async move {
        http.post(format!("{engine}/v1/chats/1/messages"))
            .bearer_auth(token)
            .json(&json!({"from": "alice", "body": "after"}))
            .send()
            .await
    });
    let (status, body) = wait_for_health(
        &system.http,
        &system.engine.base,
        503,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "the engine's /healthz while its commits fail: {body}"
    );
    stuck.abort();
}

#[tokio::test]
async fn a_shard_that_panics_takes_the_engine_down() {
    let system = System::start().await;
    let port = free_port();
    // Shard 1 panics a moment after it starts serving (a fault trigger read
    // from the environment at start): a stand-in for any bug that kills a
    // shard's thread. Its stderr is read for the error.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chat"));
    let public = system.key.public();
    command
        .arg("engine")
        .env("CHAT_ENGINE_ADDR", format!("127.0.0.1:{port}"))
        .env("CHAT_API_ADDR", format!("127.0.0.1:{}", system.api_port))
        .env("CHAT_OPERATOR_KEY", common::OPERATOR_KEY)
        .env(
            "CHAT_USER_TOKEN_PUBLIC_KEYS",
            format!("{}={}", public.kid(), public.to_base64url()),
        )
        .env("CHAT_SHARDS", "2")
        .env("CHAT_FAULT_PANIC_SHARD", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the engine is still running with a dead shard"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "exit status {status}");
    assert!(
        stderr.contains("shard 1") && stderr.contains("stopped"),
        "the log should say which shard stopped: {stderr}"
    );
}
