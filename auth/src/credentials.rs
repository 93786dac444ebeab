//! The operator key and app tokens as this service handles them: only as
//! SHA-256 digests. The operator key is compared by digest (the secret's
//! bytes never meet an early-exit compare); an app token is sent to the
//! persistence API as the lowercase hex of its digest, never in clear, the
//! same digest the API stores (`chat_persistence::credentials::hash`).

use sha2::{Digest, Sha256};

pub type TokenDigest = [u8; 32];

pub fn digest(secret: &str) -> TokenDigest {
    Sha256::digest(secret.as_bytes()).into()
}

/// Lowercase hex of a digest, as the persistence API's internal route takes it.
pub fn digest_hex(digest: &TokenDigest) -> String {
    use std::fmt::Write;
    digest.iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// The operator key, kept only as its digest once configured.
#[derive(Clone)]
pub struct OperatorKey(TokenDigest);

impl OperatorKey {
    /// Panics on an empty key, which would let anyone in; configuration
    /// validation refuses one first.
    pub fn new(key: &str) -> Self {
        assert!(!key.is_empty(), "an empty operator key would let anyone in");
        Self(digest(key))
    }

    pub fn matches(&self, presented: &str) -> bool {
        digest(presented) == self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            digest_hex(&digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn operator_key_matches_only_itself() {
        let key = OperatorKey::new("secret");
        assert!(key.matches("secret"));
        assert!(!key.matches("secret "));
        assert!(!key.matches(""));
    }
}
