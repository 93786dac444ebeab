//! The cache's Redis connection: one server (`redis://host:port[/db]`,
//! redis-rs's `ConnectionManager`, which reconnects after an I/O error) or
//! a Redis Cluster (a comma-separated list of its nodes' URLs, redis-rs's
//! cluster client, which follows slot moves). Both connect lazily, so the
//! API starts whether or not Redis is up. Every key a script or a pipeline
//! touches at once shares one hash tag (`keys` in `mod.rs`), so each runs
//! on one cluster node.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

#[derive(Clone)]
pub enum RedisConnection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// `url`: one URL, or several (comma-separated) for a cluster.
    pub fn open(
        url: &str,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let urls: Vec<&str> = url.split(',').map(str::trim).collect();
        let refuse = |error: redis::RedisError| anyhow::anyhow!("CHAT_REDIS_URL {url:?}: {error}");
        if let [single] = urls.as_slice() {
            let client = redis::Client::open(*single).map_err(refuse)?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_response_timeout(Some(response_timeout))
                .set_connection_timeout(Some(connect_timeout))
                .set_number_of_retries(1);
            return Ok(Self::Server(
                ConnectionManager::new_lazy_with_config(client, config).map_err(refuse)?,
            ));
        }
        let client = redis::cluster::ClusterClient::builder(urls)
            .retries(1)
            .build()
            .map_err(refuse)?;
        let config = redis::cluster::ClusterConfig::new()
            .set_response_timeout(response_timeout)
            .set_connection_timeout(connect_timeout);
        Ok(Self::Cluster(
            client.get_pending_async_connection_with_config(config),
        ))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
