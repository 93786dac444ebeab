//! `chat auth`: flags and the auth service's life cycle in this process.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use chat_auth::{AuthConfig, Server, limits};
use clap::Args;

#[derive(Args, Clone)]
pub struct AuthArgs {
    /// Address the auth service listens on.
    #[arg(long, env = "CHAT_AUTH_ADDR", default_value = "127.0.0.1:8082")]
    auth_addr: SocketAddr,
    /// Directory of the service's keys and revocations (under `auth/`).
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// The operator key, which authenticates the service to the persistence API.
    #[arg(long, env = "CHAT_OPERATOR_KEY", hide_env_values = true)]
    operator_key: String,
    /// The persistence API, which owns the app tokens.
    #[arg(long, env = "CHAT_API_ADDR", default_value = "127.0.0.1:8081")]
    api_addr: SocketAddr,
    /// Life of a user token when the request names none, in seconds.
    #[arg(long, env = "CHAT_TOKEN_TTL_DEFAULT_S", default_value_t = limits::TOKEN_TTL_DEFAULT_S)]
    token_ttl_default_s: u64,
    /// Longest life a user token may have, in seconds.
    #[arg(long, env = "CHAT_TOKEN_TTL_MAX_S", default_value_t = limits::TOKEN_TTL_MAX_S)]
    token_ttl_max_s: u64,
    /// How often a new signing key is made, in seconds.
    #[arg(long, env = "CHAT_KEY_ROTATION_S", default_value_t = limits::KEY_ROTATION_S)]
    key_rotation_s: u64,
    /// Revocations one app may record per clock minute (429
    /// `too_many_revocations` past it): bounds the revocation log and every
    /// verifier's copy of it.
    #[arg(long, env = "CHAT_REVOCATIONS_PER_MINUTE_MAX", default_value_t = limits::REVOCATIONS_PER_MINUTE_MAX)]
    revocations_per_minute_max: u32,
    #[command(flatten)]
    connections: crate::cli::ConnArgs,
}

pub async fn run(args: AuthArgs) -> anyhow::Result<()> {
    if args.operator_key.is_empty() {
        bail!("the operator key must not be empty (--operator-key or CHAT_OPERATOR_KEY)");
    }
    let mut config = AuthConfig::new(
        args.auth_addr,
        args.data_dir,
        args.operator_key,
        args.api_addr,
    );
    config.token_ttl_default_s = args.token_ttl_default_s;
    config.token_ttl_max_s = args.token_ttl_max_s;
    config.key_rotation_s = args.key_rotation_s;
    config.connections = args.connections.into();
    config.revocations_per_minute_max = args.revocations_per_minute_max;
    Server::bind(config)
        .await?
        .serve(chat_auth::shutdown_signal())
        .await
}
