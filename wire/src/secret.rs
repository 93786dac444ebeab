//! Secrets (app tokens, the operator key) are stored, compared and sent
//! between services only as their SHA-256: a copy of a data dir or a logged
//! internal URL leaks no credential, and comparing digests keeps the timing
//! of a comparison independent of the secret.

use sha2::{Digest, Sha256};

pub type SecretDigest = [u8; 32];

pub fn digest(secret: &str) -> SecretDigest {
    Sha256::digest(secret.as_bytes()).into()
}

/// Lowercase hex, as the internal app-token lookup takes it.
pub fn digest_hex(digest: &SecretDigest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits back into a digest.
pub fn parse_digest_hex(hex: &str) -> Option<SecretDigest> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).ok()?;
    }
    Some(digest)
}

/// The operator key, kept only as its digest once configured.
#[derive(Clone)]
pub struct OperatorKey(SecretDigest);

impl OperatorKey {
    /// Panics on an empty key, which would let anyone in; the services'
    /// configuration refuses one first.
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
    fn digests_round_trip_through_hex() {
        let value = digest("token");
        assert_eq!(parse_digest_hex(&digest_hex(&value)), Some(value));
        assert_eq!(parse_digest_hex("zz"), None);
        assert_eq!(parse_digest_hex(&"g".repeat(64)), None);
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
