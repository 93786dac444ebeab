//! The Redis read cache against the store, over real HTTP and a real Redis:
//! two APIs get the same batches, one with the cache and one without, and
//! every history page must be the same from both, while the cached one
//! hits its cache, and while its Redis is killed, restarted empty and
//! flushed.
//!
//! Needs `CHAT_TEST_REDIS` (the shared Redis of `scripts/redis.sh`, whose
//! `redis-server` the fault test also runs on a port of its own); without
//! it the tests pass without running and say so.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_persistence::cache::CacheConfig;
use chat_persistence::limits::Limits;
use chat_persistence::store::StoreLocation;
use chat_wire::NewMessage;
use common::{OPERATOR_KEY, TestApi, batch, message};
use reqwest::StatusCode;

const REDIS_VARIABLE: &str = "CHAT_TEST_REDIS";

/// Recipients by number, so that every viewer sees a different subset.
fn addressed(app: u64, chat: u64, number: u64) -> NewMessage {
    let sender = ["alice", "bob", "carol"][(number % 3) as usize];
    let mut m = message(app, chat, number, sender, &format!("m{number} é"));
    m.recipients = match number % 4 {
        0 => Some(vec!["bob".into()]),
        1 => Some(vec!["dave".into(), "alice".into()]),
        _ => None,
    };
    m
}

struct Pair {
    plain: TestApi,
    cached: TestApi,
    token_plain: String,
    token_cached: String,
    app: u64,
    chat: u64,
    next: u64,
    batch_id: u64,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Pair {
    async fn start(cache: CacheConfig) -> Self {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let plain = TestApi::start_on(
            &StoreLocation::Embedded(dirs.0.path().into()),
            Limits::default(),
        )
        .await;
        let cached = TestApi::start_on_with(
            &StoreLocation::Embedded(dirs.1.path().into()),
            Limits::default(),
            Some(cache),
        )
        .await;
        cached.wait_for_cache().await;
        let (token_plain, app) = plain.create_app("cache").await;
        let (token_cached, app_cached) = cached.create_app("cache").await;
        assert_eq!(app, app_cached);
        let chat = plain.create_chat(&token_plain).await;
        assert_eq!(chat, cached.create_chat(&token_cached).await);
        Self {
            plain,
            cached,
            token_plain,
            token_cached,
            app,
            chat,
            next: 1,
            batch_id: 1,
            _dirs: dirs,
        }
    }

    /// Commits the next `count` messages on both.
    async fn commit(&mut self, count: u64) {
        let messages: Vec<NewMessage> = (self.next..self.next + count)
            .map(|n| addressed(self.app, self.chat, n))
            .collect();
        self.next += count;
        let batch = batch(self.batch_id, messages);
        self.batch_id += 1;
        for api in [&self.plain, &self.cached] {
            let (status, receipt) = api.post_batch(&batch).await;
            assert_eq!(status, StatusCode::OK, "{receipt}");
        }
    }

    /// Every page of a grid of queries, from both: equal, and all 200.
    async fn compare(&self) {
        let newest = self.next - 1;
        let mut queries = vec![String::new()];
        for limit in [1, 7, 50, 100] {
            queries.push(format!("limit={limit}"));
            for before in [newest + 1, newest, newest.saturating_sub(30).max(1)] {
                queries.push(format!("before={before}&limit={limit}"));
            }
            for after in [
                0,
                newest.saturating_sub(60),
                newest.saturating_sub(3),
                newest,
            ] {
                queries.push(format!("after={after}&limit={limit}"));
            }
        }
        for query in &queries {
            let public = format!("/v1/chats/{}/messages?{query}", self.chat);
            let a = self.plain.get(&public, &self.token_plain).await;
            let b = self.cached.get(&public, &self.token_cached).await;
            assert_eq!(a.0, StatusCode::OK, "{public}: {}", a.1);
            assert_eq!(a, b, "{public}");
            for user in ["alice", "bob", "dave"] {
                let separator = if query.is_empty() { "" } else { "&" };
                let internal = format!(
                    "/internal/v1/apps/{}/chats/{}/messages?{query}{separator}user={user}",
                    self.app, self.chat
                );
                let a = self.plain.get(&internal, OPERATOR_KEY).await;
                let b = self.cached.get(&internal, OPERATOR_KEY).await;
                assert_eq!(a.0, StatusCode::OK, "{internal}: {}", a.1);
                assert_eq!(a, b, "{internal}");
            }
        }
    }
}

/// `outcome`'s count of `chat_api_cache_reads_total`.
async fn cache_reads(api: &TestApi, outcome: &str) -> f64 {
    api.metric(&format!(
        "chat_api_cache_reads_total{{outcome=\"{outcome}\"}}"
    ))
    .await
    .unwrap_or(0.0)
}

fn config(redis: &str, namespace: &str) -> CacheConfig {
    let mut config = CacheConfig::new(format!("redis://{redis}"));
    config.namespace = format!("{namespace}-{}", std::process::id());
    config.chat_messages_max = 120;
    // A debug build on a busy machine: a slow answer is not a fault here.
    config.timeout_ms = 1_000;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_pages_are_the_stores_and_come_from_the_cache() {
    let Ok(redis) = std::env::var(REDIS_VARIABLE) else {
        return eprintln!("skipped: {REDIS_VARIABLE} is not set");
    };
    let mut pair = Pair::start(config(&redis, "pages")).await;
    for count in [1, 2, 5, 30, 1, 90, 3, 150, 7] {
        pair.commit(count).await;
        pair.compare().await;
    }
    let hits = cache_reads(&pair.cached, "hit").await;
    let misses = cache_reads(&pair.cached, "miss").await;
    assert!(hits > 500.0, "{hits} hits, {misses} misses");
}

/// Redis stops taking writes for a while (`CLIENT PAUSE … WRITE`): a commit
/// is answered at the store's pace, and a read right after it, while the
/// cache's write waits, still has the new messages.
async fn slow_writes_delay_no_commit_and_no_read_misses_them(pair: &mut Pair, redis: &OwnRedis) {
    assert_eq!(
        redis
            .cli(&["client", "pause", "1500", "write"])
            .as_deref()
            .map(str::trim),
        Some("OK")
    );
    let started = std::time::Instant::now();
    pair.commit(3).await;
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "a commit waited for Redis: {:?}",
        started.elapsed()
    );
    let newest = format!("/v1/chats/{}/messages?limit=5", pair.chat);
    let cached = pair.cached.get(&newest, &pair.token_cached).await;
    let plain = pair.plain.get(&newest, &pair.token_plain).await;
    assert_eq!(cached, plain, "a read during a slow cache write");
    let _ = redis.cli(&["client", "unpause"]);
}

/// A Redis of the test's own, on a port of its own.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/redis.sh installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on {} did not answer", self.port);
    }

    fn ping(&self) -> bool {
        self.cli(&["ping"]).is_some_and(|out| out.trim() == "PONG")
    }

    fn cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_restarted_and_flushed_fails_nothing_and_serves_nothing_stale() {
    if std::env::var(REDIS_VARIABLE).is_err() {
        return eprintln!("skipped: {REDIS_VARIABLE} is not set");
    }
    let mut redis = OwnRedis::start();
    let address = format!("127.0.0.1:{}", redis.port);
    let mut pair = Pair::start(config(&address, "faults")).await;
    for round in 0..24 {
        match round {
            6 => redis.kill(),
            12 => {
                redis.restart();
                pair.cached.wait_for_cache().await;
            }
            18 => assert_eq!(
                redis.cli(&["flushall"]).as_deref().map(str::trim),
                Some("OK")
            ),
            _ => {}
        }
        if round == 3 || round == 20 {
            slow_writes_delay_no_commit_and_no_read_misses_them(&mut pair, &redis).await;
        }
        pair.commit(1 + round % 5 * 7).await;
        pair.compare().await;
        if round == 11 {
            assert_eq!(pair.cached.metric("chat_api_cache_ready").await, Some(0.0));
        }
    }
    let drops = pair.cached.metric("chat_api_cache_drops_total").await;
    assert!(drops.is_some_and(|d| d >= 1.0), "{drops:?}");
    let hits = cache_reads(&pair.cached, "hit").await;
    let failed =
        cache_reads(&pair.cached, "error").await + cache_reads(&pair.cached, "timeout").await;
    assert!(hits > 100.0, "{hits} hits");
    // The reads while Redis was gone went to the store, without waiting.
    assert!(
        failed + cache_reads(&pair.cached, "off").await > 0.0,
        "no read went around the cache while Redis was away"
    );
}
