//! Which app a token belongs to, remembered: every request with an app
//! token would otherwise cost a store read (a CQL round trip on ScyllaDB)
//! before it does anything. An app's token never changes and apps are
//! never deleted, so a found answer stays true; the expiry only bounds
//! memory. Unknown tokens are not remembered (a guesser gets no entry).
//! The `App` kept is what the token resolved to then: its id is exact, its
//! title and counts may be old, so a route that shows them reads the app.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::{App, Store, StoreResult, TokenHash};

/// How long a resolved token is remembered.
pub const APP_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Tokens remembered at most; past it the oldest half is dropped.
pub const APP_TOKENS_MAX: usize = 100_000;

#[derive(Default)]
pub struct AppTokens {
    entries: Mutex<HashMap<TokenHash, (App, Instant)>>,
}

impl AppTokens {
    pub async fn app(&self, store: &dyn Store, hash: TokenHash) -> StoreResult<Option<App>> {
        if let Some(app) = self.cached(&hash) {
            return Ok(Some(app));
        }
        let found = store.app_by_token(hash).await?;
        if let Some(app) = &found {
            self.remember(hash, app.clone());
        }
        Ok(found)
    }

    fn cached(&self, hash: &TokenHash) -> Option<App> {
        let entries = self.entries();
        let (app, at) = entries.get(hash)?;
        (at.elapsed() < APP_TOKEN_TTL).then(|| app.clone())
    }

    fn remember(&self, hash: TokenHash, app: App) {
        let mut entries = self.entries();
        let now = Instant::now();
        if entries.len() >= APP_TOKENS_MAX {
            entries.retain(|_, (_, at)| now.duration_since(*at) < APP_TOKEN_TTL / 2);
            if entries.len() >= APP_TOKENS_MAX {
                entries.clear();
            }
        }
        entries.insert(hash, (app, now));
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, (App, Instant)>> {
        // Plain data: a panic elsewhere while holding it leaves it usable.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;

    #[tokio::test]
    async fn remembers_found_apps_and_never_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.migrate().await.unwrap();
        let tokens = AppTokens::default();
        let hash = [7; 32];
        assert_eq!(tokens.app(&store, hash).await.unwrap(), None);
        // The token comes to exist after a miss: the miss was not kept.
        let app = store.create_app("a".into(), hash, 1).await.unwrap();
        assert_eq!(tokens.app(&store, hash).await.unwrap(), Some(app.clone()));
        assert_eq!(tokens.cached(&hash), Some(app));
        assert_eq!(tokens.cached(&[8; 32]), None);
    }
}
