//! App tokens, checked against the persistence API, which owns them.
//!
//! The service asks `GET /internal/v1/app-tokens/{sha256 hex}` with the
//! operator key: the token itself never leaves this process, only its
//! digest, the same one the API stores. The API answers 200 `{"app": id}`,
//! or 404 for a token it does not know (401 would mean our operator key is
//! wrong: reported as unavailable, not as a bad token). Positive answers are cached for
//! [`APP_TOKEN_CACHE_SECONDS`] in a
//! bounded map (as the engine does), so an app server minting a token per
//! user login costs one lookup per token and half-minute; a token the API
//! stops knowing keeps working here for at most that long. Negative answers
//! are not cached: a typo fixed must work at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Deserialize;

use crate::credentials::{TokenDigest, digest, digest_hex};
use crate::limits::{
    API_CALL_TIMEOUT_S, APP_TOKEN_CACHE_ENTRIES_MAX, APP_TOKEN_CACHE_SECONDS,
    PRESENTED_CREDENTIAL_BYTES_MAX,
};

/// The answer about one app token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The token belongs to this app.
    App(u64),
    /// The API does not know the token.
    Unknown,
    /// The API could not be asked or gave an unexpected answer.
    Failed(String),
}

/// Where a lookup's answer came from, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Api,
}

#[derive(Deserialize)]
struct AppIdView {
    app: u64,
}

pub struct AppTokens {
    client: reqwest::Client,
    base: String,
    operator_key: String,
    cache: Mutex<HashMap<TokenDigest, (u64, Instant)>>,
    ttl: Duration,
}

impl AppTokens {
    pub fn new(api_addr: SocketAddr, operator_key: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(API_CALL_TIMEOUT_S))
            // The operator key goes in every request: never through a proxy
            // picked up from the environment.
            .no_proxy()
            .build()?;
        Ok(Self {
            client,
            base: format!("http://{api_addr}"),
            operator_key: operator_key.to_owned(),
            cache: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(APP_TOKEN_CACHE_SECONDS),
        })
    }

    /// The app `token` belongs to.
    pub async fn app_of(&self, token: &str) -> (Lookup, Source) {
        if token.len() > PRESENTED_CREDENTIAL_BYTES_MAX {
            return (Lookup::Unknown, Source::Cache);
        }
        let digest = digest(token);
        let now = Instant::now();
        if let Some(&(app, at)) = self.lock().get(&digest)
            && now.duration_since(at) < self.ttl
        {
            return (Lookup::App(app), Source::Cache);
        }
        let lookup = self.ask(&digest).await;
        if let Lookup::App(app) = lookup {
            self.remember(digest, app, now);
        }
        (lookup, Source::Api)
    }

    async fn ask(&self, digest: &TokenDigest) -> Lookup {
        let url = format!(
            "{}/internal/v1/app-tokens/{}",
            self.base,
            digest_hex(digest)
        );
        let response = match self
            .client
            .get(&url)
            .bearer_auth(&self.operator_key)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return Lookup::Failed(format!("asking the persistence API: {error}")),
        };
        match response.status() {
            StatusCode::OK => match response.json::<AppIdView>().await {
                Ok(view) if view.app > 0 => Lookup::App(view.app),
                Ok(_) => Lookup::Failed("the persistence API answered app 0".into()),
                Err(error) => Lookup::Failed(format!("unreadable app lookup: {error}")),
            },
            StatusCode::NOT_FOUND => Lookup::Unknown,
            // Our own operator key was refused: a misconfiguration, not a bad token.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Lookup::Failed("the persistence API refused the operator key".into())
            }
            status => Lookup::Failed(format!("the persistence API answered {status}")),
        }
    }

    fn remember(&self, digest: TokenDigest, app: u64, now: Instant) {
        let mut cache = self.lock();
        if cache.len() >= APP_TOKEN_CACHE_ENTRIES_MAX {
            cache.retain(|_, (_, at)| now.duration_since(*at) < self.ttl);
            if cache.len() >= APP_TOKEN_CACHE_ENTRIES_MAX {
                cache.clear();
            }
        }
        cache.insert(digest, (app, now));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenDigest, (u64, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
