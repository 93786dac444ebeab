//! Credentials on the engine's interfaces.
//!
//! - User tokens (WebSocket): Ed25519 JWTs verified locally with the public
//!   keys alone, by the same code the auth service uses (`chat-token`).
//! - App tokens (HTTP publish): owned by the persistence API; the shard asks
//!   it once per token (by SHA-256 digest, never the token itself) and
//!   caches the answer briefly, so publishing does not cost a lookup per
//!   request.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::EngineError;
use crate::limits::{APP_TOKEN_CACHE_ENTRIES_MAX, APP_TOKEN_CACHE_SECONDS};
use crate::router::AppId;
use crate::shard::Shard;

pub fn now_s() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

/// Who a verified user token speaks for.
pub struct UserIdentity {
    pub app: AppId,
    pub user: String,
    pub issued_at: i64,
    /// The token's `exp`: the session closes then unless refreshed.
    pub expires_at: i64,
}

/// Verifies a user token with the shard's keys and revocations. A token
/// signed by a key the shard has not seen (a rotation) makes the shard read
/// the keys at once, at most once a second, and try again.
pub async fn verify_user(shard: &Shard, token: &str) -> Result<UserIdentity, EngineError> {
    crate::auth_sync::check_fresh(shard)?;
    // Checked in the shard's queue (`token_checks`): a storm of handshakes
    // then holds the shard for one slice at a time.
    let verifier = Arc::clone(&shard.verifier.borrow());
    let mut verified = shard.token_checks.verify(verifier, token, now_s()).await;
    if matches!(verified, Err(chat_token::TokenError::UnknownKey))
        && crate::auth_sync::refresh_keys_now(shard).await
    {
        let verifier = Arc::clone(&shard.verifier.borrow());
        verified = shard.token_checks.verify(verifier, token, now_s()).await;
    }
    let claims = verified?;
    if shard
        .revocations
        .borrow()
        .is_revoked(claims.app, &claims.sub, claims.iat)
    {
        return Err(EngineError::InvalidToken {
            code: "token_revoked",
            message: "the token was revoked".into(),
        });
    }
    Ok(UserIdentity {
        app: claims.app,
        user: claims.sub,
        issued_at: claims.iat,
        expires_at: claims.exp,
    })
}

#[derive(Default)]
pub struct AppTokenCache {
    entries: HashMap<[u8; 32], (AppId, Instant)>,
}

#[derive(Deserialize)]
struct AppIdView {
    app: AppId,
}

/// The app an app token belongs to.
pub async fn app_of_token(shard: &Rc<Shard>, token: &str) -> Result<AppId, EngineError> {
    let digest = chat_wire::secret::digest(token);
    let now = Instant::now();
    if let Some(&(app, at)) = shard.app_tokens.borrow().entries.get(&digest)
        && now.duration_since(at) < Duration::from_secs(APP_TOKEN_CACHE_SECONDS)
    {
        return Ok(app);
    }
    let hex = chat_wire::secret::digest_hex(&digest);
    let response = shard
        .api
        .get(&format!("/internal/v1/app-tokens/{hex}"))
        .await
        .map_err(|error| {
            tracing::warn!(%error, "app token lookup failed");
            EngineError::Overloaded
        })?;
    match response.status.as_u16() {
        200 => {
            let view: AppIdView = serde_json::from_slice(&response.body).map_err(|error| {
                EngineError::Internal(format!("unreadable app lookup: {error}"))
            })?;
            let mut cache = shard.app_tokens.borrow_mut();
            if cache.entries.len() >= APP_TOKEN_CACHE_ENTRIES_MAX {
                cache.entries.retain(|_, (_, at)| {
                    now.duration_since(*at) < Duration::from_secs(APP_TOKEN_CACHE_SECONDS)
                });
                if cache.entries.len() >= APP_TOKEN_CACHE_ENTRIES_MAX {
                    cache.entries.clear();
                }
            }
            cache.entries.insert(digest, (view.app, now));
            Ok(view.app)
        }
        401 | 404 => Err(EngineError::InvalidCredentials),
        status => {
            tracing::warn!(status, "app token lookup answered an error");
            Err(EngineError::Overloaded)
        }
    }
}
