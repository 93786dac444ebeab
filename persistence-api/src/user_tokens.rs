//! User tokens on the persistence API: a member reads its chat's history
//! with its own token. Tokens are verified locally with the auth service's
//! public keys. The keys are read on first need and again every 30 s, or at
//! once (at most once a second) when a token names a key this service has not
//! seen, as after a rotation; the revocation log is polled every half
//! second, so a revoked token stops reading within about that long. Without
//! an auth service configured, user tokens are refused (`invalid_credentials`).
//!
//! Failing closed: the API serves before the auth service is up (`chat up`
//! starts the API first, and the auth service needs it), so it cannot wait
//! for the first poll; instead it refuses user tokens (`revocations_stale`,
//! 503) until a poll of the revocation log has succeeded, and again once
//! none has for `revocations_stale_s`. Poll failures are counted in
//! `/metrics` and logged at most every [`POLL_FAILURE_WARN_INTERVAL`].
//! Revocations that can no longer revoke a live token are pruned every
//! [`PRUNE_INTERVAL`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chat_token::{Claims, Jwks, RevocationList, RevocationsPage, TokenError, Verifier};

pub const REVOCATION_POLL: Duration = Duration::from_millis(500);
const KEYS_REFRESH: Duration = Duration::from_secs(30);
const KEYS_REFRESH_MIN: Duration = Duration::from_secs(1);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one warning this often while polls fail.
const POLL_FAILURE_WARN_INTERVAL: Duration = Duration::from_secs(10);
/// How often the revocation list forgets what can no longer matter.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Default bound on the age of the last successful revocation poll.
pub const REVOCATIONS_STALE_S: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum UserTokenError {
    #[error("user tokens are not accepted: no auth service is configured")]
    NotConfigured,
    #[error("the auth service's keys could not be read")]
    KeysNotLoaded,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the token was revoked")]
    Revoked,
    #[error(
        "user tokens cannot be checked against revocations: the auth service's log was not read within {0} s; retry"
    )]
    RevocationsStale(u64),
}

/// How the background poll keeps the list current, and what it reports.
pub struct PollSettings {
    pub revocations_stale_s: u64,
    pub token_ttl_max_s: u64,
    pub failures: prometheus_client::metrics::counter::Counter,
    pub stale: prometheus_client::metrics::gauge::Gauge,
}

/// A client of the auth service's key and revocation routes.
struct AuthClient {
    http: reqwest::Client,
    base: String,
    operator_key: String,
}

impl AuthClient {
    async fn verifier(&self) -> anyhow::Result<Verifier> {
        let url = format!("{}/v1/keys", self.base);
        let jwks: Jwks = self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Verifier::from_jwks(&jwks)?)
    }

    async fn revocations(&self, after: u64) -> anyhow::Result<RevocationsPage> {
        let url = format!("{}/internal/v1/revocations?after={after}", self.base);
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.operator_key)
            .send()
            .await?;
        Ok(response.error_for_status()?.json().await?)
    }
}

#[derive(Default)]
pub struct UserTokens {
    client: Option<AuthClient>,
    verifier: RwLock<Option<Verifier>>,
    revocations: RwLock<RevocationList>,
    /// When the keys were last asked for, to ask at most once a second.
    keys_read_at: Mutex<Option<Instant>>,
    /// One read of the keys at a time; requests that need them wait for it.
    reading: tokio::sync::Mutex<()>,
    /// When the revocation log was last read to its end; `None`: never.
    synced_at: Mutex<Option<Instant>>,
    /// When a request last polled the log itself (see `sync_now`); one
    /// such poll at a time.
    synced_by_request_at: tokio::sync::Mutex<Option<Instant>>,
    poll: Option<PollSettings>,
}

impl UserTokens {
    /// Verifies a user token. Keys not read yet, or a key not seen before,
    /// are read first, so neither a fresh start nor a rotation refuses a good
    /// token.
    pub async fn verify(&self, token: &str) -> Result<Claims, UserTokenError> {
        let client = self.client.as_ref().ok_or(UserTokenError::NotConfigured)?;
        if self.check_fresh().is_err() {
            // Never polled yet (the auth service may have started after
            // us), or stale: poll now, as keys are read on first need,
            // and refuse only if that fails too.
            self.sync_now(client).await;
            self.check_fresh()?;
        }
        let claims = match self.verify_with_current_keys(token) {
            // Keys not read yet (the auth service may have started after us),
            // or a key newer than ours.
            Err(UserTokenError::KeysNotLoaded | UserTokenError::Token(TokenError::UnknownKey)) => {
                self.read_keys_now(client).await;
                self.verify_with_current_keys(token)?
            }
            verified => verified?,
        };
        let revocations = self.revocations.read().expect("revocations lock");
        if revocations.is_revoked(claims.app, &claims.sub, claims.iat) {
            return Err(UserTokenError::Revoked);
        }
        Ok(claims)
    }

    /// Polls the revocation log for a request that found the list stale,
    /// unless a request did so in the last `KEYS_REFRESH_MIN` (a flood of
    /// requests while the auth service is down costs it one call a second).
    async fn sync_now(&self, client: &AuthClient) {
        let mut last = self.synced_by_request_at.lock().await;
        if last.is_some_and(|at| at.elapsed() < KEYS_REFRESH_MIN) {
            return;
        }
        *last = Some(Instant::now());
        if self.poll_revocations(client).await.is_ok() {
            self.mark_synced();
        }
    }

    fn mark_synced(&self) {
        *self.synced_at.lock().expect("sync time lock") = Some(Instant::now());
        if let Some(poll) = &self.poll {
            poll.stale.set(0);
        }
    }

    /// Refuses while the last successful poll is older than the bound, or
    /// none has succeeded yet.
    fn check_fresh(&self) -> Result<(), UserTokenError> {
        let Some(poll) = &self.poll else {
            return Ok(());
        };
        let bound = poll.revocations_stale_s;
        let synced_at = *self.synced_at.lock().expect("sync time lock");
        if synced_at.is_none_or(|at| at.elapsed().as_secs() >= bound) {
            poll.stale.set(1);
            return Err(UserTokenError::RevocationsStale(bound));
        }
        Ok(())
    }

    fn verify_with_current_keys(&self, token: &str) -> Result<Claims, UserTokenError> {
        let now = crate::clock::now_us() / 1_000_000;
        let verifier = self.verifier.read().expect("verifier lock");
        Ok(verifier
            .as_ref()
            .ok_or(UserTokenError::KeysNotLoaded)?
            .verify(token, now)?)
    }

    /// Reads the keys for a token that needs them, unless a read started
    /// after this call did (the caller waited for it) or, once keys are
    /// loaded, one happened in the last `KEYS_REFRESH_MIN`: a flood of tokens
    /// naming unknown keys costs the auth service one read a second, no more.
    async fn read_keys_now(&self, client: &AuthClient) {
        let requested = Instant::now();
        let _one_at_a_time = self.reading.lock().await;
        let loaded = self.verifier.read().expect("verifier lock").is_some();
        let last = *self.keys_read_at.lock().expect("keys lock");
        let recent =
            last.is_some_and(|at| at >= requested || (loaded && at.elapsed() < KEYS_REFRESH_MIN));
        if !recent {
            self.read_keys_locked(client).await;
        }
    }

    /// The background refresh: reads the keys if no read happened for
    /// `KEYS_REFRESH`, or while none ever succeeded.
    async fn refresh_keys(&self, client: &AuthClient) {
        let _one_at_a_time = self.reading.lock().await;
        let loaded = self.verifier.read().expect("verifier lock").is_some();
        let last = *self.keys_read_at.lock().expect("keys lock");
        if loaded && last.is_some_and(|at| at.elapsed() < KEYS_REFRESH) {
            return;
        }
        self.read_keys_locked(client).await;
    }

    /// Reads the keys; the caller holds `reading`.
    async fn read_keys_locked(&self, client: &AuthClient) {
        *self.keys_read_at.lock().expect("keys lock") = Some(Instant::now());
        match client.verifier().await {
            Ok(verifier) => *self.verifier.write().expect("verifier lock") = Some(verifier),
            Err(error) => tracing::debug!(%error, "reading the auth service's keys failed"),
        }
    }

    async fn poll_revocations(&self, client: &AuthClient) -> anyhow::Result<()> {
        loop {
            let after = self.revocations.read().expect("revocations lock").after();
            let page = client.revocations(after).await?;
            if !self
                .revocations
                .write()
                .expect("revocations lock")
                .apply_page(page)
            {
                return Ok(());
            }
        }
    }
}

/// User tokens verified with the auth service at `auth_addr`, kept current
/// by a background task. It does not wait for the service, which may start
/// after this API: the first token to need the keys reads them.
pub fn start(
    auth_addr: SocketAddr,
    operator_key: String,
    poll: PollSettings,
) -> anyhow::Result<Arc<UserTokens>> {
    let client = AuthClient {
        http: reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?,
        base: format!("http://{auth_addr}"),
        operator_key,
    };
    let tokens = Arc::new(UserTokens {
        client: Some(client),
        poll: Some(poll),
        ..UserTokens::default()
    });
    let background = Arc::clone(&tokens);
    tokio::spawn(async move { keep_current(&background).await });
    Ok(tokens)
}

/// How long after start revocation-poll failures are logged at debug only:
/// the auth service may be starting alongside (user tokens are refused
/// meanwhile all the same).
const STARTUP_QUIET: Duration = Duration::from_secs(10);

async fn keep_current(tokens: &UserTokens) {
    let (Some(client), Some(poll)) = (tokens.client.as_ref(), tokens.poll.as_ref()) else {
        return;
    };
    let mut pruned_at = Instant::now();
    let started = Instant::now();
    let mut ever_synced = false;
    let mut warned_at: Option<Instant> = None;
    let mut failures_unreported = 0u64;
    loop {
        tokens.refresh_keys(client).await;
        match tokens.poll_revocations(client).await {
            Ok(()) => {
                tokens.mark_synced();
                ever_synced = true;
                if warned_at.take().is_some() {
                    tracing::info!("revocation polls succeed again");
                }
                failures_unreported = 0;
            }
            Err(error) => {
                poll.failures.inc();
                failures_unreported += 1;
                let stale = tokens.check_fresh().is_err();
                // `chat up` starts the API before the auth service: failures
                // in the first seconds are expected, not worth a warning.
                let starting = !ever_synced && started.elapsed() < STARTUP_QUIET;
                if starting {
                    tracing::debug!(
                        error = format!("{error:#}"),
                        "auth service not answering yet"
                    );
                } else if warned_at.is_none_or(|at| at.elapsed() >= POLL_FAILURE_WARN_INTERVAL) {
                    warned_at = Some(Instant::now());
                    tracing::warn!(
                        error = format!("{error:#}"),
                        failures = failures_unreported,
                        refusing_user_tokens = stale,
                        "revocation poll failed"
                    );
                    failures_unreported = 0;
                }
            }
        }
        if pruned_at.elapsed() >= PRUNE_INTERVAL {
            pruned_at = Instant::now();
            let now_s = crate::clock::now_us() / 1_000_000;
            tokens
                .revocations
                .write()
                .expect("revocations lock")
                .prune(now_s, poll.token_ttl_max_s);
        }
        tokio::time::sleep(REVOCATION_POLL).await;
    }
}
