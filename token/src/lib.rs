//! User tokens: short-lived Ed25519-signed JWTs for one user of one app.
//!
//! The auth service holds the [`SigningKey`]s and mints tokens for apps'
//! servers; the engine and the persistence API hold only [`PublicKey`]s (from
//! the auth service's JWKS or a flag) and check every token locally with a
//! [`Verifier`], so accepting a WebSocket or a history request never waits on
//! the auth service. Asymmetric keys are the point: a verifier that leaks
//! cannot mint.
//!
//! Only EdDSA (Ed25519) is accepted, whatever the token's header says, and
//! every token names its key by `kid` so keys can rotate. The verifier takes
//! the time as an argument rather than reading the clock, so callers decide
//! which clock and tests need no waiting. Revocation ("tokens of this user
//! issued before now stop working") needs state this crate does not keep:
//! the caller compares [`Claims::iat`] with its own record.
//!
//! Signing keys persist as PKCS#8 PEM, one file per kid ([`keys`] says why).

pub mod claims;
pub mod error;
pub mod keys;
pub mod limits;
pub mod revocation;
pub mod verify;

pub use claims::Claims;
pub use error::{KeyError, TokenError};
pub use keys::{Jwk, Jwks, PublicKey, SigningKey, validate_kid};
pub use limits::{CLOCK_SKEW_LEEWAY_S, KID_BYTES_MAX, RETIRE_GRACE_S, TOKEN_BYTES_MAX};
pub use revocation::{Revocation, RevocationList, RevocationsPage};
pub use verify::Verifier;
