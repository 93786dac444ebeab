//! Keeping a shard's view of the auth service current: the public keys
//! (JWKS) that verify user tokens, and the revocation log. Each shard polls
//! for itself (shared nothing): revocations every half second, keys every
//! 30 seconds, and at once (at most once a second) when a token names a key
//! it does not know, as happens right after a rotation.
//!
//! Revocation bound: a revoked user's open connections on this shard close
//! within one poll interval plus one round trip of the revoke's answer;
//! new connections are refused from the moment the poll has seen it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_token::{Jwks, RevocationsPage, Verifier};

use crate::api_client::ApiClient;
use crate::shard::Shard;

pub const REVOCATION_POLL: Duration = Duration::from_millis(500);
const KEYS_REFRESH: Duration = Duration::from_secs(30);
const KEYS_REFRESH_MIN: Duration = Duration::from_secs(1);
/// How long a shard waits for the auth service at start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

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
    loop {
        glommio::timer::sleep(REVOCATION_POLL).await;
        if shard.is_shutting_down() {
            return;
        }
        let after = shard.revocations.borrow().after();
        match fetch_revocations(auth, after).await {
            Ok(pages) => {
                let mut revocations = shard.revocations.borrow_mut();
                let home = shard.home.borrow();
                for page in pages {
                    for record in &page.revocations {
                        home.close_revoked(record.app, &record.user, record.revoked_at);
                    }
                    revocations.apply_page(page);
                }
            }
            Err(error) => tracing::warn!(shard = shard.id, %error, "revocation poll failed"),
        }
        if shard.keys_read_at.get().elapsed() >= KEYS_REFRESH {
            refresh_keys_now(&shard).await;
        }
    }
}
