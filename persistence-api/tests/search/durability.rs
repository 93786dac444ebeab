//! kill -9 of the API during heavy ingest, ten rounds: afterwards every
//! acknowledged message is found exactly once.
//!
//! The API runs in a child process (this test binary again, running the
//! ignored `serve_child` below), so that SIGKILL stops it mid-commit, as a
//! crash would. Writers post batches back to back; each batch's messages
//! share a word naming the batch, so one search per batch shows a lost
//! message (missing) or a twice-indexed one (a duplicate in the page).
//! Batches in flight at the kill are posted again after the restart, as the
//! engine would retry them (a replay the store answers as a no-op).
//! On both backends: on OpenSearch the kill also lands between a bulk
//! request, its refresh and the position's write, whose replay must
//! overwrite, not duplicate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_persistence::limits::Limits;
use chat_persistence::search::SearchMode;
use chat_persistence::store::StoreLocation;
use reqwest::StatusCode;
use tokio::sync::Mutex;

use crate::common::{TestApi, batch, message};
use crate::world::{Backend, keys, on_both_backends, wait_indexed};

const ROUNDS: usize = 10;
const WRITERS: u64 = 4;
const MESSAGES_PER_BATCH: u64 = 40;
/// How long the writers run before each kill.
const INGEST_MS: u64 = 600;

const CHILD_DIR: &str = "CHAT_SEARCH_TEST_CHILD_DIR";
/// The child's `CHAT_SEARCH` value, when it is not the embedded backend.
const CHILD_SEARCH: &str = "CHAT_SEARCH_TEST_CHILD_SEARCH";

/// Not a test of its own: the API process of the durability test, serving
/// on the data dir it is given until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by durability::acknowledged_messages_survive_kill_9_exactly_once::*"]
async fn serve_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let location = StoreLocation::Embedded(dir.clone());
    let mode = match std::env::var(CHILD_SEARCH) {
        Ok(url) => SearchMode::parse(&url).unwrap(),
        Err(_) => SearchMode::Embedded,
    };
    let api = TestApi::start_configured(&location, Limits::default(), None, |config| {
        config.search.indexer.commit_interval_ms = 50;
        config.search.writer_threads = 1;
        config.search.writer_heap_bytes = 32 * 1024 * 1024;
        config.search.mode = mode;
    })
    .await;
    let port_file = dir.join("port");
    std::fs::write(dir.join("port.tmp"), &api.base).unwrap();
    std::fs::rename(dir.join("port.tmp"), &port_file).unwrap();
    std::future::pending::<()>().await;
}

struct ChildApi {
    child: Child,
    api: TestApi,
}

async fn spawn_child(dir: &Path, backend: &Backend) -> ChildApi {
    let _ = std::fs::remove_file(dir.join("port"));
    let mut command = Command::new(std::env::current_exe().unwrap());
    if let Backend::OpenSearch(config) = backend {
        command.env(CHILD_SEARCH, config.to_string());
    }
    let child = command
        .args([
            "--exact",
            "durability::serve_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the API");
    let deadline = Instant::now() + Duration::from_secs(30);
    let base = loop {
        if let Ok(base) = std::fs::read_to_string(dir.join("port")) {
            break base;
        }
        assert!(Instant::now() < deadline, "the API child did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    ChildApi {
        child,
        api: TestApi::remote(base),
    }
}

/// What the writers learnt: acknowledged batches, and those in flight.
#[derive(Default)]
struct Ledger {
    /// batch id → (chat, first number, last number)
    acknowledged: BTreeMap<u64, (u64, u64, u64)>,
    in_flight: BTreeMap<u64, (u64, u64, u64)>,
}

fn batch_of(app: u64, id: u64, (chat, first, last): (u64, u64, u64)) -> chat_wire::Batch {
    let messages = (first..=last)
        .map(|number| {
            message(
                app,
                chat,
                number,
                "w",
                &format!("durable b{id} n{number} lorem ipsum"),
            )
        })
        .collect();
    batch(id, messages)
}

/// Posts a batch; `None` if the API did not answer (it was killed).
async fn try_post(api: &TestApi, batch: &chat_wire::Batch) -> Option<StatusCode> {
    let bytes = chat_wire::encode_batch(batch, chat_wire::limits::MESSAGE_BODY_BYTES_MAX).unwrap();
    let response = api
        .client
        .post(format!("{}/internal/v1/batches", api.base))
        .bearer_auth(crate::common::OPERATOR_KEY)
        .body(bytes)
        .send()
        .await
        .ok()?;
    let status = response.status();
    response.bytes().await.ok()?;
    Some(status)
}

async fn acknowledged_messages_survive_kill_9_exactly_once(backend: Backend) {
    let _cleanup = backend.cleanup();
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path(), &backend).await;
    let (token, app) = child.api.create_app("Durable").await;
    let mut chats = Vec::new();
    for _ in 0..WRITERS {
        chats.push(child.api.create_chat(&token).await);
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // Per chat, the next number to write.
    let mut next: BTreeMap<u64, u64> = chats.iter().map(|&chat| (chat, 1)).collect();
    let mut next_id = 1u64;
    for round in 0..ROUNDS {
        // Writers: each posts its chat's batches back to back.
        let stop_at = Instant::now() + Duration::from_millis(INGEST_MS);
        let mut writers = Vec::new();
        for &chat in &chats {
            let api = TestApi::remote(child.api.base.clone());
            let ledger = Arc::clone(&ledger);
            let mut number = next[&chat];
            let first_id = next_id;
            next_id += 1_000_000;
            writers.push(tokio::spawn(async move {
                let mut id = first_id;
                while Instant::now() < stop_at {
                    let span = (chat, number, number + MESSAGES_PER_BATCH - 1);
                    ledger.lock().await.in_flight.insert(id, span);
                    let Some(status) = try_post(&api, &batch_of(app, id, span)).await else {
                        // The process died under this request: in flight.
                        break;
                    };
                    assert_eq!(
                        status,
                        StatusCode::OK,
                        "before the kill, every batch commits"
                    );
                    let mut ledger = ledger.lock().await;
                    ledger.in_flight.remove(&id);
                    ledger.acknowledged.insert(id, span);
                    number += MESSAGES_PER_BATCH;
                    id += 1;
                }
                // Past the batch in flight, if any: its retry takes its numbers.
                let in_flight_last = ledger
                    .lock()
                    .await
                    .in_flight
                    .get(&id)
                    .map(|&(_, _, last)| last + 1);
                (chat, in_flight_last.unwrap_or(number))
            }));
        }
        // Kill while they write, a little before they would stop.
        tokio::time::sleep(Duration::from_millis(INGEST_MS * 2 / 3)).await;
        child.child.kill().expect("kill -9");
        let _ = child.child.wait();
        for writer in writers {
            let (chat, number) = writer.await.expect("a writer failed");
            next.insert(chat, number);
        }
        child = spawn_child(dir.path(), &backend).await;
        // The engine retries what was in flight: acknowledged now.
        let in_flight = std::mem::take(&mut ledger.lock().await.in_flight);
        for (id, span) in in_flight {
            let (status, body) = child.api.post_batch(&batch_of(app, id, span)).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "round {round}: retry of {id}: {body}"
            );
            ledger.lock().await.acknowledged.insert(id, span);
            let (chat, _, last) = span;
            let entry = next.entry(chat).or_insert(1);
            *entry = (*entry).max(last + 1);
        }
    }
    wait_indexed(&child.api).await;
    let ledger = ledger.lock().await;
    assert!(
        ledger.acknowledged.len() >= ROUNDS,
        "too little was written"
    );
    let mut total = 0;
    for (&id, &(chat, first, last)) in &ledger.acknowledged {
        // Quoted: the whole word `b{id}`, not every word it prefixes.
        let path = format!("/v1/messages/search?q=%22b{id}%22&limit=100&sort=recent");
        let (status, page) = child.api.get(&path, &token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let found = keys(&page);
        let distinct: BTreeSet<_> = found.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            found.len(),
            "batch {id} indexed twice: {found:?}"
        );
        let expected: BTreeSet<_> = (first..=last).map(|number| (chat, number)).collect();
        assert_eq!(
            distinct, expected,
            "batch {id}: a message is missing from search"
        );
        total += found.len();
    }
    // And nothing beyond the acknowledged batches is there.
    let count = |page: &serde_json::Value| page["hits"].as_array().unwrap().len();
    let mut cursor = String::new();
    let mut everything = 0;
    loop {
        let path = format!("/v1/messages/search?q=durable&limit=100&sort=recent{cursor}");
        let (status, page) = child.api.get(&path, &token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        everything += count(&page);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(everything, total);
    child.child.kill().unwrap();
    let _ = child.child.wait();
}

on_both_backends!(acknowledged_messages_survive_kill_9_exactly_once);

/// A graceful restart keeps the index: what was found is found again,
/// once, and what comes after is indexed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_keeps_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let location = StoreLocation::Embedded(dir.path().to_path_buf());
    let api = TestApi::start_in(dir.path(), Limits::default()).await;
    let (token, app) = api.create_app("Restart").await;
    let chat = api.create_chat(&token).await;
    let first = batch(1, vec![message(app, chat, 1, "w", "before the restart")]);
    assert_eq!(api.post_batch(&first).await.0, StatusCode::OK);
    wait_indexed(&api).await;
    api.stop().await;

    let api = TestApi::start_on(&location, Limits::default()).await;
    // The replay the engine may send after a restart adds nothing.
    assert_eq!(api.post_batch(&first).await.0, StatusCode::OK);
    let second = batch(2, vec![message(app, chat, 2, "w", "after the restart")]);
    assert_eq!(api.post_batch(&second).await.0, StatusCode::OK);
    wait_indexed(&api).await;
    let (status, page) = api
        .get("/v1/messages/search?q=restart&sort=recent", &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(keys(&page), [(chat, 2), (chat, 1)]);
    api.stop().await;
}
