//! User tokens on the persistence API: a member reads its chat's history
//! with its own token. Tokens are verified locally with the auth service's
//! public keys. The keys are read on first need and again every 30 s, or at
//! once (at most once a second) when a token names a key this service has not
//! seen, as after a rotation; the revocation log is polled every half
//! second, so a revoked token stops reading within about that long. Without
//! an auth service configured, user tokens are refused (`invalid_credentials`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chat_token::{Claims, Jwks, RevocationList, RevocationsPage, TokenError, Verifier};

pub const REVOCATION_POLL: Duration = Duration::from_millis(500);
const KEYS_REFRESH: Duration = Duration::from_secs(30);
const KEYS_REFRESH_MIN: Duration = Duration::from_secs(1);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

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
}

impl UserTokens {
    /// Verifies a user token. Keys not read yet, or a key not seen before,
    /// are read first, so neither a fresh start nor a rotation refuses a good
    /// token.
    pub async fn verify(&self, token: &str) -> Result<Claims, UserTokenError> {
        let client = self.client.as_ref().ok_or(UserTokenError::NotConfigured)?;
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
pub fn start(auth_addr: SocketAddr, operator_key: String) -> anyhow::Result<Arc<UserTokens>> {
    let client = AuthClient {
        http: reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?,
        base: format!("http://{auth_addr}"),
        operator_key,
    };
    let tokens = Arc::new(UserTokens {
        client: Some(client),
        ..UserTokens::default()
    });
    let background = Arc::clone(&tokens);
    tokio::spawn(async move { keep_current(&background).await });
    Ok(tokens)
}

async fn keep_current(tokens: &UserTokens) {
    let client = tokens.client.as_ref().expect("started with a client");
    loop {
        tokens.refresh_keys(client).await;
        if let Err(error) = tokens.poll_revocations(client).await {
            tracing::debug!(%error, "revocation poll failed");
        }
        tokio::time::sleep(REVOCATION_POLL).await;
    }
}
