//! The crate's two error types, one per boundary. [`TokenError`] is what a
//! request can cause (a bad token, a refused mint): each variant has a stable
//! code that the services put in their error bodies. [`KeyError`] is what
//! configuration can cause (a bad key file, flag or JWKS): the services fail
//! at start-up with it, so it carries detail rather than a code.

use crate::limits::{KID_BYTES_MAX, TOKEN_BYTES_MAX};

/// Why a token was refused, or could not be minted.
///
/// The messages are safe to show to the presenter of the token: they say
/// which check failed, never anything about the keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url segments with a JSON header, or a header we cannot
    /// honour (for example one with critical extensions).
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token is longer than {TOKEN_BYTES_MAX} bytes")]
    TooLong,
    /// The header names an algorithm other than EdDSA, `none` included.
    #[error("token algorithm must be EdDSA")]
    UnsupportedAlgorithm,
    /// The header has no `kid`, or one that no configured key carries.
    #[error("token is signed with an unknown key")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    /// `iat` lies in the future beyond the clock skew leeway.
    #[error("token is not valid yet")]
    NotYetValid,
    /// Correctly signed, but the claims are missing, mistyped or out of range.
    #[error("token claims are invalid: {0}")]
    InvalidClaims(String),
    /// The signing backend failed. Not expected with a key this crate built.
    #[error("token could not be signed: {0}")]
    Signing(String),
}

impl TokenError {
    /// The stable snake_case code for error bodies (`{"error":{"code":..}}`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::TooLong => "token_too_long",
            Self::UnsupportedAlgorithm => "token_algorithm",
            Self::UnknownKey => "token_unknown_key",
            Self::BadSignature => "token_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::InvalidClaims(_) => "token_claims",
            Self::Signing(_) => "token_signing",
        }
    }
}

/// Why a key (private or public) or a key set could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "key id must be 1 to {KID_BYTES_MAX} bytes of [A-Za-z0-9._-] starting with a letter or digit"
    )]
    InvalidKid,
    #[error("not an Ed25519 PKCS#8 private key: {0}")]
    PrivateKey(String),
    #[error("not a usable Ed25519 public key: {0}")]
    PublicKey(String),
    #[error("not an Ed25519 signing JWK: {0}")]
    Jwk(String),
    #[error("two different keys share the key id {0:?}")]
    DuplicateKid(String),
    #[error("no public key to verify tokens with")]
    NoKeys,
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_distinct() {
        let all = [
            (TokenError::Malformed, "token_malformed"),
            (TokenError::TooLong, "token_too_long"),
            (TokenError::UnsupportedAlgorithm, "token_algorithm"),
            (TokenError::UnknownKey, "token_unknown_key"),
            (TokenError::BadSignature, "token_signature"),
            (TokenError::Expired, "token_expired"),
            (TokenError::NotYetValid, "token_not_yet_valid"),
            (TokenError::InvalidClaims("x".into()), "token_claims"),
            (TokenError::Signing("x".into()), "token_signing"),
        ];
        let mut seen = std::collections::HashSet::new();
        for (error, code) in &all {
            assert_eq!(error.code(), *code);
            assert!(seen.insert(error.code()), "duplicate code {code}");
        }
    }
}
