//! Connection hygiene of all three services over raw TCP sockets: a
//! connection that sends nothing, or trickles its request head, is closed
//! by the header-read timeout; an idle keep-alive connection by the idle
//! timeout; past the cap on connections still in their handshake a new
//! one is closed at once, and normal requests keep working. An upgraded
//! WebSocket is not an idle HTTP connection. And credentials stay out of
//! URLs: the publish route refuses a token (or anything) in its query.

mod common;

use std::time::{Duration, Instant};

use common::{Options, System};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short limits, so the tests take seconds.
const HEADER_READ_TIMEOUT_S: u64 = 1;
const IDLE_TIMEOUT_S: u64 = 3;
const HANDSHAKES_MAX: usize = 4;

fn limits_env(header_read_s: u64, idle_s: u64, handshakes: usize) -> Vec<(&'static str, String)> {
    vec![
        ("CHAT_HEADER_READ_TIMEOUT_S", header_read_s.to_string()),
        ("CHAT_IDLE_TIMEOUT_S", idle_s.to_string()),
        ("CHAT_REQUEST_TIMEOUT_S", "5".into()),
        ("CHAT_HANDSHAKES_MAX", handshakes.to_string()),
    ]
}

async fn start(header_read_s: u64, idle_s: u64, handshakes: usize) -> System {
    let env = limits_env(header_read_s, idle_s, handshakes);
    System::start_with(Options {
        auth: true,
        extra_engine_env: env.clone(),
        extra_auth_env: env.clone(),
        extra_api_env: env,
        ..Options::default()
    })
    .await
}

/// The three services' ports, by name.
fn services(system: &System) -> [(&'static str, u16); 3] {
    [
        ("engine", system.engine_port),
        ("api", system.api_port),
        ("auth", system.auth_port),
    ]
}

/// Reads until the peer closes (EOF or reset); returns what it sent, or
/// `None` if it was still open after `limit`.
async fn read_until_closed(socket: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, socket.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_by_the_header_read_timeout() {
    let system = start(HEADER_READ_TIMEOUT_S, IDLE_TIMEOUT_S, 1_024).await;
    for (name, port) in services(&system) {
        let started = Instant::now();
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let closed = read_until_closed(&mut socket, Duration::from_secs(5)).await;
        let elapsed = started.elapsed();
        assert!(
            closed.is_some(),
            "{name}: a silent connection is still open after 5 s"
        );
        assert!(
            elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(3),
            "{name}: closed after {elapsed:?}, the limit is {HEADER_READ_TIMEOUT_S} s"
        );
    }
}

#[tokio::test]
async fn a_header_trickled_slower_than_the_limit_is_closed() {
    let system = start(HEADER_READ_TIMEOUT_S, IDLE_TIMEOUT_S, 1_024).await;
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaa\r\n\r\n";
    for (name, port) in services(&system) {
        let started = Instant::now();
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // A byte every 100 ms: the head would take 7 s, each byte well
        // inside any per-read timer.
        let mut cut_off = false;
        for byte in head.iter() {
            if socket.write_all(&[*byte]).await.is_err() {
                cut_off = true;
                break;
            }
            let mut probe = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(100), socket.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    cut_off = true;
                    break;
                }
                Ok(Ok(_)) => panic!("{name}: answered a head that never completed"),
                Err(_) => {}
            }
        }
        let elapsed = started.elapsed();
        assert!(cut_off, "{name}: the trickled head was read to its end");
        assert!(
            elapsed < Duration::from_secs(3),
            "{name}: closed only after {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_by_the_idle_timeout() {
    let system = start(HEADER_READ_TIMEOUT_S, IDLE_TIMEOUT_S, 1_024).await;
    for (name, port) in services(&system) {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 4096];
        let read = socket.read(&mut buffer).await.unwrap();
        assert!(
            buffer[..read].starts_with(b"HTTP/1.1 200"),
            "{name}: {}",
            String::from_utf8_lossy(&buffer[..read])
        );
        let answered = Instant::now();
        // Idle between requests is the idle timeout's, not the header
        // read's: still open well past the header-read limit...
        let early = read_until_closed(&mut socket, Duration::from_millis(2_000)).await;
        assert!(
            early.is_none(),
            "{name}: an idle connection closed after {:?}, before the idle timeout",
            answered.elapsed()
        );
        // ...and closed once the idle limit has passed.
        let closed = read_until_closed(&mut socket, Duration::from_secs(4)).await;
        assert!(
            closed.is_some(),
            "{name}: an idle connection is still open after {:?}",
            answered.elapsed()
        );
    }
}

#[tokio::test]
async fn an_upgraded_websocket_outlives_the_idle_timeout() {
    let system = start(HEADER_READ_TIMEOUT_S, IDLE_TIMEOUT_S, 1_024).await;
    let mut client = system.connect("alice").await;
    tokio::time::sleep(Duration::from_secs(IDLE_TIMEOUT_S + 2)).await;
    client.send(serde_json::json!({"type": "ping"})).await;
    assert_eq!(client.recv().await["type"], "pong");
}

#[tokio::test]
async fn past_the_handshake_cap_a_new_connection_is_closed_at_once() {
    // A header-read limit long enough for the whole test to run inside it.
    let system = start(10, 60, HANDSHAKES_MAX).await;
    for (name, port) in services(&system) {
        let mut held = Vec::new();
        for _ in 0..HANDSHAKES_MAX {
            held.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
        // Let the service accept them all before the one past the cap.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let mut extra = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let closed = read_until_closed(&mut extra, Duration::from_secs(2)).await;
        assert_eq!(
            closed.as_deref(),
            Some(&b""[..]),
            "{name}: the connection past the cap was not closed at once"
        );
        assert!(started.elapsed() < Duration::from_secs(1), "{name}");
        // The held ones are still served, and once they go, so is anyone.
        let mut first = held.remove(0);
        first
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_closed(&mut first, Duration::from_secs(5))
            .await
            .expect("an answer and a close");
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{name}");
        drop(held);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
    }
}

/// POST to the publish route with a raw query; (status, body).
async fn publish_with_query(system: &System, query: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = system
        .http
        .post(format!(
            "{}/v1/chats/1/messages?{query}",
            system.engine.base
        ))
        .body(r#"{"from":"alice","body":"hi"}"#);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn publish_refuses_credentials_and_anything_else_in_its_query() {
    let system = System::start().await;
    let token = system.app_token.clone();
    let (status, body) = publish_with_query(&system, &format!("token={token}"), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_in_query")),
        "{body}"
    );
    // Even alongside a good header: the token has already leaked.
    let (status, body) = publish_with_query(&system, &format!("token={token}"), Some(&token)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_in_query")),
        "{body}"
    );
    let (status, body) = publish_with_query(&system, "x=1", Some(&token)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{body}"
    );
    // Nothing was published; the header alone still works.
    let (status, body) = system
        .publish(1, serde_json::json!({"from": "alice", "body": "hi"}))
        .await;
    assert_eq!((status, body["number"].as_u64()), (201, Some(1)), "{body}");
}

#[tokio::test]
async fn the_websocket_takes_a_user_token_in_its_query_and_nothing_else() {
    let system = System::start().await;
    let token = system.user_token("alice");
    let upgrade = |query: String| {
        let http = system.http.clone();
        let base = system.engine.base.clone();
        async move {
            let response = http
                .get(format!("{base}/v1/ws?{query}"))
                .header("Connection", "Upgrade")
                .header("Upgrade", "websocket")
                .header("Sec-WebSocket-Version", "13")
                .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = upgrade(format!("token={token}&x=1")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{body}"
    );
    let (status, body) = upgrade(format!("token={token}&token={token}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{body}"
    );
    let (status, _) = upgrade(format!("token={token}")).await;
    assert_eq!(status, 101);
}
