//! App tokens and the operator key. Tokens are 256 random bits, shown once
//! and stored only as their SHA-256 (`chat_wire::secret`, the digest every
//! service uses), so a copy of the data dir does not leak credentials.

pub use chat_wire::secret::{OperatorKey, digest, digest_hex, parse_digest_hex};

const APP_TOKEN_PREFIX: &str = "app_";
const TOKEN_RANDOM_BYTES: usize = 32;

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
}
