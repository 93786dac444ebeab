//! The store a conformance test runs on, with or without the Redis read
//! cache in front of it.

use chat_persistence::cache::CacheConfig;
use chat_persistence::limits::Limits;
use chat_persistence::store::{ScyllaConfig, StoreLocation};

use crate::common::TestApi;

/// The variable that names a ScyllaDB or Cassandra node for the suite.
pub const SCYLLA_VARIABLE: &str = "CHAT_TEST_SCYLLA";
/// The variable that names a Redis (`host:port`) for the cached runs.
pub const REDIS_VARIABLE: &str = "CHAT_TEST_REDIS";

pub struct Backend {
    pub location: StoreLocation,
    /// The read cache every API of the test uses (a namespace of its own).
    pub cache: Option<CacheConfig>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// The embedded store in a new temporary directory.
    pub fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self {
            location: StoreLocation::Embedded(dir.path().to_path_buf()),
            cache: None,
            _dir: Some(dir),
        }
    }

    /// `backend` with the Redis that `CHAT_TEST_REDIS` names in front of
    /// it, or `None` (the test is skipped) when it names none.
    pub fn cached(backend: Option<Self>, test: &str) -> Option<Self> {
        let Ok(redis) = std::env::var(REDIS_VARIABLE) else {
            eprintln!("{test}: skipped, {REDIS_VARIABLE} is not set");
            return None;
        };
        let mut backend = backend?;
        let mut config = CacheConfig::new(format!("redis://{redis}"));
        let hash = test.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        config.namespace = format!("test-{}-{hash:016x}", std::process::id());
        backend.cache = Some(config);
        Some(backend)
    }

    /// A fresh keyspace for `test` on the node that `CHAT_TEST_SCYLLA`
    /// names, or `None` (the test is skipped) when it names none.
    pub async fn scylla(test: &str) -> Option<Self> {
        let Ok(hosts) = std::env::var(SCYLLA_VARIABLE) else {
            eprintln!("{test}: skipped, {SCYLLA_VARIABLE} is not set");
            return None;
        };
        let keyspace = keyspace_for(test);
        let config = ScyllaConfig::from_url(&format!("scylla://{hosts}/{keyspace}"))
            .expect("CHAT_TEST_SCYLLA must be host:port[,host:port…]");
        drop_keyspace(&config).await;
        Some(Self {
            location: StoreLocation::Scylla(config),
            cache: None,
            _dir: None,
        })
    }

    pub fn is_scylla(&self) -> bool {
        matches!(self.location, StoreLocation::Scylla(_))
    }

    /// Runs `scenario` on this backend, then drops its keyspace: a run of
    /// the suite keeps only the keyspaces of the tests in flight, not one
    /// of a dozen tables per test (a node with a 1 GiB heap ran out of it
    /// with all of them). A failed scenario leaves its keyspace for a look;
    /// the next run drops it first.
    pub async fn run<F: std::future::Future<Output = ()>>(self, scenario: impl FnOnce(Self) -> F) {
        let keyspace = match &self.location {
            StoreLocation::Scylla(config) => Some(config.clone()),
            StoreLocation::Embedded(_) => None,
        };
        scenario(self).await;
        if let Some(config) = keyspace {
            drop_keyspace(&config).await;
        }
    }

    pub async fn start(&self) -> TestApi {
        self.start_with(Limits::default()).await
    }

    /// An API on this store; with a cache, once the cache is in use, so
    /// that reads can hit it.
    pub async fn start_with(&self, limits: Limits) -> TestApi {
        let api = TestApi::start_on_with(&self.location, limits, self.cache.clone()).await;
        if self.cache.is_some() {
            api.wait_for_cache().await;
        }
        api
    }
}

/// `conf_<test>`, within CQL's 48 characters: a long name is cut and ends
/// with a hash of the whole, so two tests never share a keyspace.
fn keyspace_for(test: &str) -> String {
    let name = format!("conf_{test}");
    if name.len() <= 48 {
        return name;
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}_{:08x}", &name[..39], hash as u32)
}

/// Drops what an earlier run left, so every run starts from an empty keyspace.
async fn drop_keyspace(config: &ScyllaConfig) {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&config.hosts)
        .build()
        .await
        .unwrap_or_else(|e| panic!("connecting to {config}: {e}"));
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace), ())
        .await
        .unwrap_or_else(|e| panic!("dropping {}: {e}", config.keyspace));
}
