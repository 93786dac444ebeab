//! Two fixed Ed25519 signing keys, `k1` and `k2`, built from constant
//! secrets: a fuzz run must be reproducible from its input alone, and a key
//! generated per process would make every signed corpus entry stale. The
//! signed seeds `corpus/token/seed-valid-k1` and `seed-valid-k2` are tokens
//! of app 1's alice (iat 1,700,000,000, exp 600 s later) under these keys.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chat_token::{SigningKey, Verifier};

/// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32 secret bytes follow.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The signing key `kid` whose 32 secret bytes are all `fill`.
pub fn signing_key(kid: &str, fill: u8) -> SigningKey {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(&[fill; 32]);
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der)
    );
    SigningKey::from_pkcs8_pem(kid, &pem).expect("a fixed, valid PKCS#8 key")
}

/// The keys every target signs with: `k1` and `k2`.
pub fn signing_keys() -> [SigningKey; 2] {
    [signing_key("k1", 0x11), signing_key("k2", 0x22)]
}

/// A verifier that knows both keys of [`signing_keys`].
pub fn verifier() -> Verifier {
    Verifier::new(signing_keys().iter().map(SigningKey::public)).expect("two distinct keys")
}
