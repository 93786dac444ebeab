//! Signing keys (held by the auth service only) and public keys (handed to
//! every verifier, by JWKS or by flag).
//!
//! # Persisted format
//!
//! A signing key is persisted as an unencrypted PKCS#8 v1 PEM document
//! (`-----BEGIN PRIVATE KEY-----`, RFC 8410), the format
//! `openssl genpkey -algorithm ed25519` writes, so operators can inspect,
//! back up or pre-generate keys with standard tools. PKCS#8 has no place for
//! a key id, so the kid lives beside it: the auth service stores one key per
//! file named `<kid>.pem` in its data dir, which is why key ids are limited to
//! a file-name-safe alphabet ([`validate_kid`]). Reading also accepts PKCS#8
//! v2 (with the public key embedded, checked against the private one).
//!
//! A public key travels as a JWK (RFC 8037, `"kty":"OKP","crv":"Ed25519"`)
//! or as the bare base64url `x` value plus its kid.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{PUBLIC_KEY_LENGTH, SECRET_KEY_LENGTH, VerifyingKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::claims::Claims;
use crate::error::{KeyError, TokenError};
use crate::limits::KID_BYTES_MAX;

/// The JWS algorithm name of Ed25519 signatures (RFC 8037).
pub const ALG_EDDSA: &str = "EdDSA";
const JWK_KTY: &str = "OKP";
const JWK_CRV: &str = "Ed25519";
const JWK_USE_SIG: &str = "sig";

/// Checks a key id: 1 to [`KID_BYTES_MAX`] bytes of `[A-Za-z0-9._-]`,
/// starting with a letter or digit, so it can name a file (no `..`, no
/// hidden files) and appear in logs unescaped.
pub fn validate_kid(kid: &str) -> Result<(), KeyError> {
    let bytes = kid.as_bytes();
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    match bytes.first() {
        Some(first)
            if first.is_ascii_alphanumeric()
                && bytes.len() <= KID_BYTES_MAX
                && bytes.iter().all(allowed) =>
        {
            Ok(())
        }
        _ => Err(KeyError::InvalidKid),
    }
}

/// A private Ed25519 key with its key id: what mints tokens.
///
/// The secret is wiped from memory on drop (by ed25519-dalek and
/// jsonwebtoken); `Debug` shows the kid and the public half only.
pub struct SigningKey {
    kid: String,
    secret: ed25519_dalek::SigningKey,
    /// The same secret as PKCS#8 DER, the form jsonwebtoken signs with; built
    /// once here rather than on every mint.
    encoding: EncodingKey,
    /// `{"typ":"JWT","alg":"EdDSA","kid":..}`, identical on every token.
    header: Header,
}

impl SigningKey {
    /// A new key from the operating system's CSPRNG.
    pub fn generate(kid: &str) -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; SECRET_KEY_LENGTH]);
        getrandom::fill(seed.as_mut()).map_err(|error| KeyError::Random(error.to_string()))?;
        Self::from_secret(kid, ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Reads a key persisted by [`to_pkcs8_pem`](Self::to_pkcs8_pem) (or by
    /// `openssl genpkey -algorithm ed25519`).
    pub fn from_pkcs8_pem(kid: &str, pem: &str) -> Result<Self, KeyError> {
        validate_kid(kid)?;
        let secret = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|error| KeyError::PrivateKey(error.to_string()))?;
        Self::from_secret(kid, secret)
    }

    /// The key as PKCS#8 v1 PEM, the persisted format (see the module docs).
    /// The kid is not part of it. Wiped from memory when dropped.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        v1_keypair(&self.secret)
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a 32-byte Ed25519 seed always encodes as PKCS#8")
    }

    fn from_secret(kid: &str, secret: ed25519_dalek::SigningKey) -> Result<Self, KeyError> {
        validate_kid(kid)?;
        let der = v1_keypair(&secret)
            .to_pkcs8_der()
            .map_err(|error| KeyError::PrivateKey(error.to_string()))?;
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        Ok(Self {
            kid: kid.to_owned(),
            secret,
            encoding,
            header,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, to publish in the JWKS.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            kid: self.kid.clone(),
            bytes: self.secret.verifying_key().to_bytes(),
        }
    }

    /// Mints a token for `user` of `app`, valid from `iat` until `exp`
    /// (seconds since the epoch). Refuses claims a verifier would refuse.
    pub fn mint(&self, app: u64, user: &str, iat: i64, exp: i64) -> Result<String, TokenError> {
        let claims = Claims::new(app, user, iat, exp)?;
        jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .map_err(|error| TokenError::Signing(error.to_string()))
    }

    /// Signs arbitrary header and payload JSON, for tests that need tokens a
    /// well-behaved minter would never produce but whose signature is valid.
    #[cfg(test)]
    pub(crate) fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        use ed25519_dalek::Signer;
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header_json),
            URL_SAFE_NO_PAD.encode(payload_json)
        );
        let signature = self.secret.sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("public", &self.public().to_base64url())
            .finish_non_exhaustive()
    }
}

/// PKCS#8 v1: the seed alone, as openssl writes it. The public key is
/// derived from the seed on load, so embedding it (v2) adds nothing.
fn v1_keypair(secret: &ed25519_dalek::SigningKey) -> KeypairBytes {
    KeypairBytes {
        secret_key: secret.to_bytes(),
        public_key: None,
    }
}

/// A public Ed25519 key with its key id: what verifies tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kid: String,
    bytes: [u8; PUBLIC_KEY_LENGTH],
}

impl PublicKey {
    /// A key from its 32 raw bytes. Refuses bytes that are not a point on the
    /// curve and the small-order ("weak") points, for which signatures prove
    /// nothing.
    pub fn from_bytes(kid: &str, bytes: [u8; PUBLIC_KEY_LENGTH]) -> Result<Self, KeyError> {
        validate_kid(kid)?;
        let point = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::PublicKey("not a point on the curve".into()))?;
        if point.is_weak() {
            return Err(KeyError::PublicKey("a small-order point".into()));
        }
        Ok(Self {
            kid: kid.to_owned(),
            bytes,
        })
    }

    /// A key from its base64url (unpadded) encoding, the JWK `x` value: what
    /// an operator passes by flag to a verifier that does not fetch the JWKS.
    pub fn from_base64url(kid: &str, x: &str) -> Result<Self, KeyError> {
        let decoded = URL_SAFE_NO_PAD
            .decode(x.trim())
            .map_err(|error| KeyError::PublicKey(format!("x is not base64url: {error}")))?;
        let bytes = <[u8; PUBLIC_KEY_LENGTH]>::try_from(decoded.as_slice()).map_err(|_| {
            KeyError::PublicKey(format!(
                "x is {} bytes, not {PUBLIC_KEY_LENGTH}",
                decoded.len()
            ))
        })?;
        Self::from_bytes(kid, bytes)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LENGTH] {
        &self.bytes
    }

    /// The JWK `x` value: base64url without padding.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes)
    }

    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: JWK_KTY.into(),
            crv: JWK_CRV.into(),
            x: self.to_base64url(),
            kid: self.kid.clone(),
            alg: Some(ALG_EDDSA.into()),
            use_: Some(JWK_USE_SIG.into()),
        }
    }

    /// Reads a JWK: it must be an Ed25519 OKP key, and if it names an
    /// algorithm or a use they must be EdDSA and signing.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if jwk.kty != JWK_KTY || jwk.crv != JWK_CRV {
            return Err(KeyError::Jwk(format!(
                "kty {:?} crv {:?}, expected {JWK_KTY:?} {JWK_CRV:?}",
                jwk.kty, jwk.crv
            )));
        }
        if jwk.alg.as_deref().is_some_and(|alg| alg != ALG_EDDSA) {
            return Err(KeyError::Jwk(format!(
                "alg {:?}, expected {ALG_EDDSA:?}",
                jwk.alg
            )));
        }
        if jwk.use_.as_deref().is_some_and(|use_| use_ != JWK_USE_SIG) {
            return Err(KeyError::Jwk(format!(
                "use {:?}, expected {JWK_USE_SIG:?}",
                jwk.use_
            )));
        }
        Self::from_base64url(&jwk.kid, &jwk.x)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("x", &self.to_base64url())
            .finish()
    }
}

/// One entry of a JWKS, as `GET /v1/keys` serves it:
/// `{"kty":"OKP","crv":"Ed25519","x":..,"kid":..,"alg":"EdDSA","use":"sig"}`.
///
/// Only the fields an Ed25519 verification key has; others (`key_ops`, ...)
/// are ignored on read. Check one with [`PublicKey::from_jwk`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// A JSON Web Key Set (RFC 7517 section 5): `{"keys":[..]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    pub fn from_public_keys<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        Self {
            keys: keys.into_iter().map(PublicKey::to_jwk).collect(),
        }
    }

    /// Every entry as a checked public key; one bad entry fails the set.
    pub fn public_keys(&self) -> Result<Vec<PublicKey>, KeyError> {
        self.keys.iter().map(PublicKey::from_jwk).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_alphabet() {
        for good in ["k1", "2025-01-01", "a.b_c-d", &"k".repeat(KID_BYTES_MAX)] {
            assert_eq!(validate_kid(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "-x",
            "a/b",
            "a b",
            "ä",
            "k\n",
            &"k".repeat(KID_BYTES_MAX + 1),
        ] {
            assert_eq!(validate_kid(bad), Err(KeyError::InvalidKid), "{bad:?}");
        }
        assert_eq!(
            SigningKey::generate("../x").unwrap_err(),
            KeyError::InvalidKid
        );
    }

    #[test]
    fn generated_keys_differ() {
        let a = SigningKey::generate("k1").unwrap();
        let b = SigningKey::generate("k1").unwrap();
        assert_ne!(a.public(), b.public());
        assert_eq!(a.kid(), "k1");
    }

    #[test]
    fn pem_round_trip() {
        let key = SigningKey::generate("k1").unwrap();
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{}", *pem);
        assert!(pem.trim_end().ends_with("-----END PRIVATE KEY-----"));
        let again = SigningKey::from_pkcs8_pem("k2", &pem).unwrap();
        assert_eq!(again.kid(), "k2");
        assert_eq!(again.public().as_bytes(), key.public().as_bytes());
        assert_eq!(*again.to_pkcs8_pem(), *pem);
    }

    #[test]
    fn reads_openssl_pkcs8() {
        // `openssl genpkey -algorithm ed25519`: the RFC 8410 section 10.3 example key.
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
        let key = SigningKey::from_pkcs8_pem("rfc", pem).unwrap();
        // Its public key, from RFC 8410 section 10.1.
        assert_eq!(
            key.public().to_base64url(),
            "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"
        );
        assert_eq!(*key.to_pkcs8_pem(), pem);
    }

    #[test]
    fn bad_pem_is_refused() {
        for bad in [
            "",
            "not pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(
                matches!(
                    SigningKey::from_pkcs8_pem("k1", bad),
                    Err(KeyError::PrivateKey(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn jwk_round_trip() {
        let public = SigningKey::generate("k1").unwrap().public();
        let jwk = public.to_jwk();
        let json = serde_json::to_value(&jwk).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": public.to_base64url(),
                "kid": "k1", "alg": "EdDSA", "use": "sig",
            })
        );
        let back: Jwk = serde_json::from_value(json).unwrap();
        assert_eq!(PublicKey::from_jwk(&back).unwrap(), public);

        let jwks = Jwks::from_public_keys([&public]);
        let text = serde_json::to_string(&jwks).unwrap();
        let parsed: Jwks = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.public_keys().unwrap(), vec![public.clone()]);

        // alg and use are optional; extra members are ignored.
        let minimal = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"k1","key_ops":["verify"]}}"#,
            public.to_base64url()
        );
        let jwk: Jwk = serde_json::from_str(&minimal).unwrap();
        assert_eq!(PublicKey::from_jwk(&jwk).unwrap(), public);
        assert_eq!(
            PublicKey::from_base64url("k1", &public.to_base64url()).unwrap(),
            public
        );
    }

    #[test]
    fn bad_jwks_are_refused() {
        let good = SigningKey::generate("k1").unwrap().public().to_jwk();
        let cases = [
            Jwk {
                kty: "RSA".into(),
                ..good.clone()
            },
            Jwk {
                crv: "X25519".into(),
                ..good.clone()
            },
            Jwk {
                alg: Some("RS256".into()),
                ..good.clone()
            },
            Jwk {
                use_: Some("enc".into()),
                ..good.clone()
            },
        ];
        for jwk in &cases {
            assert!(
                matches!(PublicKey::from_jwk(jwk), Err(KeyError::Jwk(_))),
                "{jwk:?}"
            );
        }
        let bad_x = [
            "",
            "AAAA",
            "not base64!",
            // 32 bytes, but padded.
            "GB9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=",
            // 33 bytes.
            "GB9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuEA",
        ];
        for x in bad_x {
            assert!(
                matches!(
                    PublicKey::from_base64url("k1", x),
                    Err(KeyError::PublicKey(_))
                ),
                "{x:?}"
            );
        }
        let mut identity = [0u8; PUBLIC_KEY_LENGTH];
        identity[0] = 1;
        assert!(matches!(
            PublicKey::from_bytes("k1", identity),
            Err(KeyError::PublicKey(_))
        ));
        assert_eq!(
            PublicKey::from_jwk(&Jwk {
                kid: String::new(),
                ..good
            }),
            Err(KeyError::InvalidKid)
        );
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let key = SigningKey::generate("k1").unwrap();
        let debug = format!("{key:?}");
        let pem = key.to_pkcs8_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(debug.contains("k1"));
        assert!(!debug.contains(&body[body.len() - 20..]));
        let secret_hex: String = key
            .secret
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!debug.contains(&secret_hex));
    }
}
