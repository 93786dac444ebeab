//! The auth service's configuration, filled from flags by the `chat` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::limits;

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Where the service listens.
    pub addr: SocketAddr,
    /// The data dir shared with the other services; the auth service keeps
    /// everything under `<data_dir>/auth/` (see the crate docs for the layout).
    pub data_dir: PathBuf,
    /// The operator key: authenticates the internal route, and this service
    /// to the persistence API.
    pub operator_key: String,
    /// The persistence API, which owns app tokens.
    pub api_addr: SocketAddr,
    /// Life of a token when the request names none.
    pub token_ttl_default_s: u64,
    /// Longest life a request may ask for. Lowering it takes full effect only
    /// once the tokens minted under the old value have expired: keys and
    /// revocations are kept for the value in force, not for the past one.
    pub token_ttl_max_s: u64,
    /// How often a new signing key is made.
    pub key_rotation_s: u64,
    /// Largest JSON request body, in bytes.
    pub request_body_bytes_max: usize,
    /// Timeouts and the handshake cap of every HTTP connection.
    pub connections: chat_http_conn::ConnLimits,
    /// Revocations one app may record per clock minute.
    pub revocations_per_minute_max: u32,
}

impl AuthConfig {
    /// A configuration with every default.
    pub fn new(
        addr: SocketAddr,
        data_dir: impl Into<PathBuf>,
        operator_key: impl Into<String>,
        api_addr: SocketAddr,
    ) -> Self {
        Self {
            addr,
            data_dir: data_dir.into(),
            operator_key: operator_key.into(),
            api_addr,
            token_ttl_default_s: limits::TOKEN_TTL_DEFAULT_S,
            token_ttl_max_s: limits::TOKEN_TTL_MAX_S,
            key_rotation_s: limits::KEY_ROTATION_S,
            request_body_bytes_max: limits::REQUEST_BODY_BYTES_MAX,
            connections: chat_http_conn::ConnLimits::default(),
            revocations_per_minute_max: limits::REVOCATIONS_PER_MINUTE_MAX,
        }
    }

    /// Refuses a configuration the service cannot honour.
    pub fn validate(&self) -> Result<(), String> {
        if self.operator_key.is_empty() {
            return Err("the operator key must not be empty".into());
        }
        if self.token_ttl_max_s == 0 || self.token_ttl_max_s > limits::TOKEN_TTL_MAX_CAP_S {
            return Err(format!(
                "the longest token life must be from 1 to {} seconds, got {}",
                limits::TOKEN_TTL_MAX_CAP_S,
                self.token_ttl_max_s
            ));
        }
        if self.token_ttl_default_s == 0 || self.token_ttl_default_s > self.token_ttl_max_s {
            return Err(format!(
                "the default token life must be from 1 to the longest ({} s), got {}",
                self.token_ttl_max_s, self.token_ttl_default_s
            ));
        }
        if self.key_rotation_s == 0 || self.key_rotation_s > limits::TOKEN_TTL_MAX_CAP_S {
            return Err(format!(
                "the key rotation period must be from 1 to {} seconds, got {}",
                limits::TOKEN_TTL_MAX_CAP_S,
                self.key_rotation_s
            ));
        }
        if self.request_body_bytes_max == 0 {
            return Err("the request body limit must be at least 1 byte".into());
        }
        if self.revocations_per_minute_max == 0 {
            return Err("the revocation quota must allow at least 1 a minute".into());
        }
        self.connections.validate()
    }

    pub fn auth_dir(&self) -> PathBuf {
        self.data_dir.join("auth")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        let addr = "127.0.0.1:0".parse().unwrap();
        AuthConfig::new(addr, "/tmp/x", "op", addr)
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let cases: [fn(&mut AuthConfig); 7] = [
            |c| c.operator_key.clear(),
            |c| c.token_ttl_max_s = 0,
            |c| c.token_ttl_max_s = limits::TOKEN_TTL_MAX_CAP_S + 1,
            |c| c.token_ttl_default_s = 0,
            |c| c.token_ttl_default_s = c.token_ttl_max_s + 1,
            |c| c.key_rotation_s = 0,
            |c| c.request_body_bytes_max = 0,
        ];
        for (index, change) in cases.iter().enumerate() {
            let mut config = config();
            change(&mut config);
            assert!(config.validate().is_err(), "case {index}");
        }
    }
}
