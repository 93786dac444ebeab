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
use reqwest::{Method, StatusCode};

const REDIS_VARIABLE: &str = "CHAT_TEST_REDIS";
const REDIS_CLUSTER_VARIABLE: &str = "CHAT_TEST_REDIS_CLUSTER";

/// The members of a `Pair`'s chat, whose views are compared.
const USERS: [&str; 3] = ["alice", "bob", "dave"];

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
        for user in USERS {
            plain.subscribe(&token_plain, chat, user).await;
            cached.subscribe(&token_cached, chat, user).await;
        }
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
            for user in USERS {
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
        self.compare_feeds().await;
        self.compare_memberships().await;
    }

    /// Each user's membership check (as the engine makes before a sync),
    /// then the engine's view of the chat (which fills the cached member
    /// set), then the checks again, from both.
    async fn compare_memberships(&self) {
        self.compare_membership_checks().await;
        let state = format!("/internal/v1/apps/{}/chats/{}", self.app, self.chat);
        let a = self.plain.get(&state, OPERATOR_KEY).await;
        let b = self.cached.get(&state, OPERATOR_KEY).await;
        assert_eq!(a.0, StatusCode::OK, "{state}: {}", a.1);
        assert_eq!(a, b, "{state}");
        // The fill is the writer's: give it a moment to land.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.compare_membership_checks().await;
    }

    async fn compare_membership_checks(&self) {
        for user in USERS.iter().chain(&["nobody"]) {
            let path = format!("/internal/v1/apps/{}/users/{user}/memberships", self.app);
            let body = serde_json::json!({ "chats": [self.chat, self.chat + 1] });
            let a = self
                .plain
                .call(Method::POST, &path, Some(OPERATOR_KEY), Some(body.clone()))
                .await;
            let b = self
                .cached
                .call(Method::POST, &path, Some(OPERATOR_KEY), Some(body))
                .await;
            assert_eq!(a.0, StatusCode::OK, "{path}: {}", a.1);
            assert_eq!(a, b, "{path} for {user}");
        }
    }

    /// The first page of each member's feed, from both.
    async fn compare_feeds(&self) {
        for user in USERS {
            for limit in [7, 1000] {
                let feed = format!("/v1/users/{user}/messages?limit={limit}");
                let a = self.plain.get(&feed, &self.token_plain).await;
                let b = self.cached.get(&feed, &self.token_cached).await;
                assert_eq!(a.0, StatusCode::OK, "{feed}: {}", a.1);
                assert_eq!(a, b, "{feed}");
            }
        }
    }

    /// Subscribes or unsubscribes `user` on both.
    async fn set_member(&self, user: &str, member: bool) {
        let path = format!("/v1/chats/{}/subscribers/{user}", self.chat);
        let method = if member { Method::PUT } else { Method::DELETE };
        for (api, token) in [
            (&self.plain, &self.token_plain),
            (&self.cached, &self.token_cached),
        ] {
            let (status, body) = api.call(method.clone(), &path, Some(token), None).await;
            assert!(status.is_success(), "{status} {body}");
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
    config_for_url(format!("redis://{redis}"), namespace)
}

fn config_for_url(url: String, namespace: &str) -> CacheConfig {
    let mut config = CacheConfig::new(url);
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

/// The same against a Redis Cluster (`CHAT_TEST_REDIS_CLUSTER`: its nodes,
/// comma-separated; `scripts/redis.sh cluster-start` runs three): every
/// script and pipeline stays on one node, and pages, feeds and membership
/// changes answer as without a cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_answers_as_the_store_does() {
    let Ok(nodes) = std::env::var(REDIS_CLUSTER_VARIABLE) else {
        return eprintln!("skipped: {REDIS_CLUSTER_VARIABLE} is not set");
    };
    let url = nodes
        .split(',')
        .map(|node| format!("redis://{}", node.trim()))
        .collect::<Vec<_>>()
        .join(",");
    let mut pair = Pair::start(config_for_url(url, "cluster")).await;
    for (round, count) in [1, 5, 30, 90, 3, 150].into_iter().enumerate() {
        pair.commit(count).await;
        pair.compare().await;
        pair.set_member("dave", round % 2 == 1).await;
        pair.compare_feeds().await;
        pair.compare_memberships().await;
    }
    let hits = cache_reads(&pair.cached, "hit").await;
    assert!(hits > 300.0, "{hits} hits");
    let member_hits = pair
        .cached
        .metric("chat_api_cache_membership_reads_total{outcome=\"hit\"}")
        .await
        .unwrap_or(0.0);
    assert!(member_hits > 0.0, "no membership read hit the cluster");
    assert_eq!(
        pair.cached.metric("chat_api_cache_drops_total").await,
        Some(0.0)
    );
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
    // A member leaves while the cache cannot forget their chats yet.
    pair.set_member("dave", false).await;
    pair.compare_feeds().await;
    pair.compare_memberships().await;
    let _ = redis.cli(&["client", "unpause"]);
    pair.set_member("dave", true).await;
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

/// Bob's feed across 50 chats (each with a message to everyone, one to
/// carol alone and one to him) while he is unsubscribed, leaves and rejoins
/// chats and
/// another task reads his feed all the while, filling the cache with what
/// it read: every read after a change was answered shows exactly his chats
/// then, and never carol's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_follows_leaves_and_joins_racing_cached_reads() {
    let Ok(redis) = std::env::var(REDIS_VARIABLE) else {
        return eprintln!("skipped: {REDIS_VARIABLE} is not set");
    };
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::start_on_with(
        &StoreLocation::Embedded(dir.path().into()),
        Limits::default(),
        Some(config(&redis, "feed")),
    )
    .await;
    api.wait_for_cache().await;
    let (token, app) = api.create_app("feed").await;
    let mut messages = Vec::new();
    for _ in 0..50 {
        let chat = api.create_chat(&token).await;
        for user in ["bob", "carol"] {
            api.subscribe(&token, chat, user).await;
        }
        for (number, to) in [(1, None), (2, Some("carol")), (3, Some("bob"))] {
            let mut m = message(app, chat, number, "alice", &format!("c{chat} m{number}"));
            m.recipients = to.map(|to| vec![to.to_string()]);
            messages.push(m);
        }
    }
    assert_eq!(api.post_batch(&batch(1, messages)).await.0, StatusCode::OK);
    let reader = FeedReader {
        base: api.base.clone(),
        http: api.client.clone(),
        token: token.clone(),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racing = {
        let (stop, reader) = (stop.clone(), reader.clone());
        tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                reader.chats().await;
                reads += 1;
            }
            reads
        })
    };
    let mut member: Vec<u64> = (1..=50).collect();
    for chat in 1..=50u64 {
        // Odd chats: the app unsubscribes bob; even ones: bob leaves (the
        // engine's `leave` frame, through the internal route).
        let (path, key) = if chat % 2 == 1 {
            (format!("/v1/chats/{chat}/subscribers/bob"), token.as_str())
        } else {
            let path = format!("/internal/v1/apps/{app}/chats/{chat}/subscribers/bob");
            (path, OPERATOR_KEY)
        };
        let (status, body) = api.call(Method::DELETE, &path, Some(key), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        member.retain(|c| *c != chat);
        let expected: Vec<u64> = member.iter().flat_map(|&c| [c, c]).collect();
        assert_eq!(reader.chats().await, expected, "after leaving {chat}");
        if chat % 5 == 0 {
            api.subscribe(&token, chat, "bob").await;
            member.push(chat);
            member.sort_unstable();
            let expected: Vec<u64> = member.iter().flat_map(|&c| [c, c]).collect();
            assert_eq!(reader.chats().await, expected, "after rejoining {chat}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = racing.await.unwrap();
    let hits = api
        .metric("chat_api_cache_membership_reads_total{outcome=\"hit\"}")
        .await
        .unwrap_or(0.0);
    assert!(hits > 0.0, "{hits} membership hits in {reads} racing reads");
}

#[derive(Clone)]
struct FeedReader {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl FeedReader {
    /// The chat of each item of bob's whole feed, ascending.
    async fn chats(&self) -> Vec<u64> {
        let url = format!("{}/v1/users/bob/messages?limit=1000", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page: serde_json::Value = response.json().await.unwrap();
        assert_eq!(page["has_more"], false, "{page}");
        let mut chats: Vec<u64> = Vec::new();
        for item in page["messages"].as_array().unwrap() {
            assert_ne!(item["number"], 2, "carol's message reached bob: {item}");
            chats.push(item["chat"].as_u64().unwrap());
        }
        chats.sort_unstable();
        chats
    }
}
