//! Keeping a shard's view of the auth service current: the public keys
//! (JWKS) that verify user tokens, and the revocation log. Each shard polls
//! for itself (shared nothing): revocations every half second, keys every
//! 30 seconds, and at once (at most once a second) when a token names a key
//! it does not know, as happens right after a rotation.
//!
//! Revocation bound: a revoked user's open connections on this shard close
//! within one poll interval plus one round trip of the revoke's answer;
//! new connections are refused from the moment the poll has seen it.
//!
//! Failing closed: a shard starts serving only after it has read the whole
//! log once (`initial`), and once it has gone `revocations_stale_s` without
//! a successful poll it refuses every user token (`revocations_stale`)
//! until a poll succeeds, since it can no longer say that a token was not
//! revoked meanwhile. Failures are counted in the metrics and logged at
//! most every [`POLL_FAILURE_WARN_INTERVAL`]. Revocations that can no longer
//! revoke a live token (older than the longest token life plus the grace)
//! are pruned every [`PRUNE_INTERVAL`], so the list stays bounded by the
//! auth service's revocation quota.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_token::{Jwks, RevocationsPage, Verifier};

use crate::api_client::ApiClient;
use crate::error::EngineError;
use crate::shard::Shard;

pub const REVOCATION_POLL: Duration = Duration::from_millis(500);
const KEYS_REFRESH: Duration = Duration::from_secs(30);
const KEYS_REFRESH_MIN: Duration = Duration::from_secs(1);
/// How long a shard waits for the auth service at start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// At most one warning per shard this often while polls fail.
const POLL_FAILURE_WARN_INTERVAL: Duration = Duration::from_secs(10);
/// How often the revocation list forgets what can no longer matter.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Refuses user tokens while the shard's view of the revocation log is
/// older than the bound (only with an auth service: static keys have no
/// revocation at all).
pub fn check_fresh(shard: &Shard) -> Result<(), EngineError> {
    let bound = shard.config.revocations_stale_s;
    if shard.auth.is_some() && shard.revocations_synced_at.get().elapsed().as_secs() >= bound {
        shard.metrics.revocations_stale.set(1);
        return Err(EngineError::RevocationsStale(bound));
    }
    Ok(())
}

/// Reads the JWKS once.
pub async fn fetch_verifier(auth: &ApiClient) -> Result<Verifier, String> {
    let response = auth
        .get("/v1/keys")
        .await
        .map_err(|error| error.to_string())?;
    if !response.status.is_success() {
        return Err(format!("GET /v1/keys answered {}", response.status));
    }
    let jwks: Jwks = serde_json::from_slice(&response.body)
        .map_err(|error| format!("unreadable JWKS: {error}"))?;
    Verifier::from_jwks(&jwks).map_err(|error| format!("unusable JWKS: {error}"))
}

/// Reads the keys now, unless they were read less than a second ago.
/// Returns whether new keys were installed.
pub async fn refresh_keys_now(shard: &Shard) -> bool {
    let Some(auth) = shard.auth.as_ref() else {
        return false;
    };
    if shard.keys_read_at.get().elapsed() < KEYS_REFRESH_MIN {
        return false;
    }
    shard.keys_read_at.set(Instant::now());
    match fetch_verifier(auth).await {
        Ok(verifier) => {
            *shard.verifier.borrow_mut() = Arc::new(verifier);
            true
        }
        Err(error) => {
            tracing::warn!(shard = shard.id, %error, "key refresh failed");
            false
        }
    }
}

/// Reads the revocation log from `after` to its end.
async fn fetch_revocations(
    auth: &ApiClient,
    mut after: u64,
) -> Result<Vec<RevocationsPage>, String> {
    let mut pages = Vec::new();
    loop {
        let response = auth
            .get(&format!("/internal/v1/revocations?after={after}"))
            .await
            .map_err(|error| error.to_string())?;
        if !response.status.is_success() {
            return Err(format!(
                "GET /internal/v1/revocations answered {}",
                response.status
            ));
        }
        let page: RevocationsPage = serde_json::from_slice(&response.body)
            .map_err(|error| format!("unreadable revocations: {error}"))?;
        let more = page.has_more && page.last_seq > after;
        after = page.last_seq;
        pages.push(page);
        if !more {
            return Ok(pages);
        }
    }
}

/// Before a shard accepts connections: keys and every revocation, retried
/// until the auth service answers or the start timeout passes.
pub async fn initial(auth: &ApiClient) -> Result<(Verifier, Vec<RevocationsPage>), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let attempt = async {
            Ok::<_, String>((
                fetch_verifier(auth).await?,
                fetch_revocations(auth, 0).await?,
            ))
        }
        .await;
        match attempt {
            Ok(state) => return Ok(state),
            Err(error) if Instant::now() > deadline => {
                return Err(format!("the auth service did not answer: {error}"));
            }
            Err(_) => glommio::timer::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The shard's polling loop; runs until the shard stops.
pub async fn run(shard: Rc<Shard>) {
    let Some(auth) = shard.auth.as_ref() else {
        return;
    };
    let mut pruned_at = Instant::now();
    let mut warned_at: Option<Instant> = None;
    let mut failures_unreported = 0u64;
    loop {
        glommio::timer::sleep(REVOCATION_POLL).await;
        if shard.is_shutting_down() {
            return;
        }
        let after = shard.revocations.borrow().after();
        match fetch_revocations(auth, after).await {
            Ok(pages) => {
                let mut revocations = shard.revocations.borrow_mut();
                let home = shard.home.connections.borrow();
                for page in pages {
                    for record in &page.revocations {
                        home.close_revoked(record.app, &record.user, record.revoked_at);
                    }
                    revocations.apply_page(page);
                }
                shard.revocations_synced_at.set(Instant::now());
                shard.metrics.revocations_stale.set(0);
                if warned_at.take().is_some() {
                    tracing::info!(shard = shard.id, "revocation polls succeed again");
                }
                failures_unreported = 0;
            }
            Err(error) => {
                shard.metrics.revocation_poll_failures.inc();
                failures_unreported += 1;
                let stale = check_fresh(&shard).is_err();
                if warned_at.is_none_or(|at| at.elapsed() >= POLL_FAILURE_WARN_INTERVAL) {
                    warned_at = Some(Instant::now());
                    tracing::warn!(
                        shard = shard.id,
                        %error,
                        failures = failures_unreported,
                        since_success_s = shard.revocations_synced_at.get().elapsed().as_secs(),
                        refusing_user_tokens = stale,
                        "revocation poll failed"
                    );
                    failures_unreported = 0;
                }
            }
        }
        if pruned_at.elapsed() >= PRUNE_INTERVAL {
            pruned_at = Instant::now();
            shard
                .revocations
                .borrow_mut()
                .prune(crate::auth::now_s(), shard.config.token_ttl_max_s);
        }
        if shard.keys_read_at.get().elapsed() >= KEYS_REFRESH {
            refresh_keys_now(&shard).await;
        }
    }
}
