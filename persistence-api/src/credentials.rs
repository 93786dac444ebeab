//! App tokens and the operator key. Tokens are 256 random bits, shown once
//! and stored only as their SHA-256, so a copy of the data dir does not
//! leak credentials. Comparing digests rather than the secrets themselves
//! keeps the comparison's timing independent of the secret.

use sha2::{Digest, Sha256};

use crate::store::TokenHash;

const APP_TOKEN_PREFIX: &str = "app_";
const TOKEN_RANDOM_BYTES: usize = 32;

pub fn hash(secret: &str) -> TokenHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Lowercase hex of a digest, as the engine sends it.
pub fn digest_hex(digest: &TokenHash) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits back into a digest.
pub fn parse_digest(hex: &str) -> Option<TokenHash> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).ok()?;
    }
    Some(digest)
}

/// A new app token: a recognisable prefix and 64 hex digits of OS randomness.
pub fn new_app_token() -> String {
    format!("{APP_TOKEN_PREFIX}{}", random_hex(TOKEN_RANDOM_BYTES))
}

/// A new operator key, for a quickstart that was given none.
pub fn new_operator_key() -> String {
    format!("op_{}", random_hex(TOKEN_RANDOM_BYTES))
}

fn random_hex(bytes: usize) -> String {
    let mut random = vec![0u8; bytes];
    getrandom::fill(&mut random).expect("the operating system's random source");
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// The operator key, kept only as its digest once configured.
#[derive(Clone)]
pub struct OperatorKey(TokenHash);

impl OperatorKey {
    pub fn new(key: &str) -> Self {
        assert!(!key.is_empty(), "an empty operator key would let anyone in");
        Self(hash(key))
    }

    pub fn matches(&self, presented: &str) -> bool {
        // Digest equality: the secret's bytes never meet an early-exit compare.
        hash(presented) == self.0
    }

    pub fn digest(&self) -> TokenHash {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_well_formed() {
        let (a, b) = (new_app_token(), new_app_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), APP_TOKEN_PREFIX.len() + 2 * TOKEN_RANDOM_BYTES);
        assert!(a.starts_with(APP_TOKEN_PREFIX));
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let digest = hash("token");
        assert_eq!(parse_digest(&digest_hex(&digest)), Some(digest));
        assert_eq!(parse_digest("zz"), None);
        assert_eq!(parse_digest(&"g".repeat(64)), None);
    }

    #[test]
    fn operator_key_matches_only_itself() {
        let key = OperatorKey::new("secret");
        assert!(key.matches("secret"));
        assert!(!key.matches("secret "));
        assert!(!key.matches(""));
    }
}
