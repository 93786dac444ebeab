//! Verifying user tokens with public keys alone, so the engine and the
//! persistence API accept a user without asking the auth service.
//!
//! The order of the checks is the order of what they cost and of what they
//! trust: the length first (before any decoding), then the header, which is
//! attacker-controlled and decides nothing but the lookup: the algorithm must
//! be EdDSA whatever key it names (no `none`, no HMAC keyed with a public key,
//! no RSA), and the kid must name a configured key. Only then the signature,
//! and only a signed payload's claims are read.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::claims::Claims;
use crate::error::{KeyError, TokenError};
use crate::keys::{ALG_EDDSA, Jwks, PublicKey};
use crate::limits::TOKEN_BYTES_MAX;

/// The configured public keys, by kid. Cheap to share: verification takes
/// `&self` and holds no lock.
#[derive(Clone)]
pub struct Verifier {
    keys: HashMap<String, VerifierKey>,
    validation: Validation,
}

#[derive(Clone)]
struct VerifierKey {
    public: PublicKey,
    decoding: DecodingKey,
}

/// The header fields the checks before the signature need. Parsed here
/// rather than through jsonwebtoken's `Header`, whose `alg` is an enum: a
/// `"none"` there is a parse error, here it is a refused algorithm.
#[derive(Deserialize)]
struct HeaderView {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

impl Verifier {
    /// A verifier for these keys. Several keys let the auth service rotate:
    /// it signs with the new one while tokens signed with the old one live
    /// out their short life. The same key twice is accepted; two different
    /// keys under one kid, or no key at all, are a configuration error.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Result<Self, KeyError> {
        let mut by_kid = HashMap::new();
        for public in keys {
            match by_kid.entry(public.kid().to_owned()) {
                Entry::Occupied(existing) => {
                    let existing: &VerifierKey = existing.get();
                    if existing.public != public {
                        return Err(KeyError::DuplicateKid(public.kid().to_owned()));
                    }
                }
                Entry::Vacant(slot) => {
                    let decoding = DecodingKey::from_ed_components(&public.to_base64url())
                        .map_err(|error| KeyError::PublicKey(error.to_string()))?;
                    slot.insert(VerifierKey { public, decoding });
                }
            }
        }
        if by_kid.is_empty() {
            return Err(KeyError::NoKeys);
        }
        // jsonwebtoken checks the algorithm and the signature; the time
        // checks are ours, against the caller's clock (see `verify`), and
        // none of its optional claim checks apply to user tokens.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Ok(Self {
            keys: by_kid,
            validation,
        })
    }

    /// A verifier for every key of a JWKS, as `GET /v1/keys` serves it.
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, KeyError> {
        Self::new(jwks.public_keys()?)
    }

    /// The configured keys, in no particular order.
    pub fn public_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values().map(|key| &key.public)
    }

    /// Verifies `token` at `now_s` (seconds since the epoch) and returns its
    /// claims. Refuses, in this order: a token over [`TOKEN_BYTES_MAX`]; one
    /// that is not three base64url segments with a JSON header; an algorithm
    /// other than EdDSA; a missing or unknown kid; a bad signature; claims
    /// that are missing or invalid (app 0, a user id `chat_wire` refuses,
    /// `exp` not after `iat`); an expired token; one issued in the future.
    /// Both time checks allow [`CLOCK_SKEW_LEEWAY_S`](crate::CLOCK_SKEW_LEEWAY_S).
    pub fn verify(&self, token: &str, now_s: i64) -> Result<Claims, TokenError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::TooLong);
        }
        let mut segments = token.split('.');
        let (Some(header), Some(_payload), Some(_signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed)?;
        // serde also reads a struct from a JSON array; a JWS header is an object.
        if header.trim_ascii_start().first() != Some(&b'{') {
            return Err(TokenError::Malformed);
        }
        let header: HeaderView =
            serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        if header.alg != ALG_EDDSA {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        if header.crit.is_some() {
            // RFC 7515 section 4.1.11: extensions we do not know must be refused.
            return Err(TokenError::Malformed);
        }
        let key = header
            .kid
            .and_then(|kid| self.keys.get(&kid))
            .ok_or(TokenError::UnknownKey)?;
        // jsonwebtoken parses the header again into its own type; refusing
        // what it cannot parse here means that every JSON error `decode`
        // reports below comes from the (signed) payload.
        jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map_err(decode_error)?
            .claims;
        claims.check()?;
        claims.check_time(now_s)?;
        Ok(claims)
    }
}

/// Maps jsonwebtoken's errors after the header checks. A payload that is
/// JSON but not our claims is `InvalidClaims`; its signature was valid, so
/// the detail is safe to return.
fn decode_error(error: jsonwebtoken::errors::Error) -> TokenError {
    match error.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => TokenError::UnsupportedAlgorithm,
        ErrorKind::Json(json) if json.classify() == serde_json::error::Category::Data => {
            TokenError::InvalidClaims(json.to_string())
        }
        _ => TokenError::Malformed,
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("Verifier").field("kids", &kids).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::limits::CLOCK_SKEW_LEEWAY_S;

    const NOW: i64 = 1_700_000_000;
    const TTL: i64 = 600;

    fn setup() -> (SigningKey, Verifier) {
        let key = SigningKey::generate("k1").unwrap();
        let verifier = Verifier::new([key.public()]).unwrap();
        (key, verifier)
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn segments(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    fn payload_json(app: u64, sub: &str, iat: i64, exp: i64) -> String {
        format!(r#"{{"app":{app},"sub":"{sub}","iat":{iat},"exp":{exp}}}"#)
    }

    #[test]
    fn mint_then_verify() {
        let (key, verifier) = setup();
        let token = key.mint(7, "alice@example.com", NOW, NOW + TTL).unwrap();
        let claims = verifier.verify(&token, NOW + 1).unwrap();
        assert_eq!(
            claims,
            Claims {
                app: 7,
                sub: "alice@example.com".into(),
                iat: NOW,
                exp: NOW + TTL
            }
        );
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&segments(&token)[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"typ": "JWT", "alg": "EdDSA", "kid": "k1"})
        );
        assert!(token.len() < 400, "{}", token.len());
    }

    #[test]
    fn mint_refuses_invalid_claims() {
        let (key, _) = setup();
        for (app, user, iat, exp) in [
            (0, "alice", NOW, NOW + TTL),
            (1, "", NOW, NOW + TTL),
            (1, "al ice", NOW, NOW + TTL),
            (1, "alice", NOW, NOW),
        ] {
            let error = key.mint(app, user, iat, exp).unwrap_err();
            assert_eq!(error.code(), "token_claims", "{app} {user:?}");
        }
    }

    #[test]
    fn expiry_and_future_iat() {
        let (key, verifier) = setup();
        let token = key.mint(1, "alice", NOW, NOW + TTL).unwrap();
        assert!(verifier.verify(&token, NOW + TTL).is_ok());
        assert_eq!(
            verifier.verify(&token, NOW + TTL + CLOCK_SKEW_LEEWAY_S),
            Err(TokenError::Expired)
        );
        assert_eq!(verifier.verify(&token, i64::MAX), Err(TokenError::Expired));
        assert!(verifier.verify(&token, NOW - CLOCK_SKEW_LEEWAY_S).is_ok());
        assert_eq!(
            verifier.verify(&token, NOW - CLOCK_SKEW_LEEWAY_S - 1),
            Err(TokenError::NotYetValid)
        );
        let future = key.mint(1, "alice", NOW + 3600, NOW + 7200).unwrap();
        assert_eq!(verifier.verify(&future, NOW), Err(TokenError::NotYetValid));
        assert_eq!(
            TokenError::NotYetValid.code(),
            verifier.verify(&future, i64::MIN).unwrap_err().code()
        );
    }

    #[test]
    fn tampered_payload_is_refused() {
        let (key, verifier) = setup();
        let token = key.mint(1, "alice", NOW, NOW + TTL).unwrap();
        let parts = segments(&token);
        // Re-encoded claims that say something else.
        for forged in [
            payload_json(2, "alice", NOW, NOW + TTL),
            payload_json(1, "mallory", NOW, NOW + TTL),
            payload_json(1, "alice", NOW, NOW + 100 * TTL),
        ] {
            let forged = format!("{}.{}.{}", parts[0], b64(forged), parts[2]);
            assert_eq!(verifier.verify(&forged, NOW), Err(TokenError::BadSignature));
        }
        // One character of the payload flipped, decoded and re-encoded.
        let mut payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        let at = payload.iter().position(|&b| b == b'a').unwrap();
        payload[at] = b'b';
        let forged = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
        assert_eq!(verifier.verify(&forged, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_signature_is_refused() {
        let (key, verifier) = setup();
        let token = key.mint(1, "alice", NOW, NOW + TTL).unwrap();
        let parts = segments(&token);
        let mut signature = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
        for index in [0, 31, 32, 63] {
            signature[index] ^= 0x01;
            let forged = format!("{}.{}.{}", parts[0], parts[1], b64(&signature));
            assert_eq!(verifier.verify(&forged, NOW), Err(TokenError::BadSignature));
            signature[index] ^= 0x01;
        }
        // Wrong length, empty, and not base64url.
        for signature in [b64(&signature[..63]), String::new(), "!!!!".into()] {
            let forged = format!("{}.{}.{}", parts[0], parts[1], signature);
            assert!(verifier.verify(&forged, NOW).is_err(), "{signature:?}");
        }
        // Another valid token's signature.
        let other = key.mint(1, "alice", NOW, NOW + TTL + 1).unwrap();
        let forged = format!("{}.{}.{}", parts[0], parts[1], segments(&other)[2]);
        assert_eq!(verifier.verify(&forged, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn wrong_and_unknown_keys() {
        let (_, verifier) = setup();
        let impostor = SigningKey::generate("k1").unwrap();
        let token = impostor.mint(1, "alice", NOW, NOW + TTL).unwrap();
        assert_eq!(verifier.verify(&token, NOW), Err(TokenError::BadSignature));

        let stranger = SigningKey::generate("k2").unwrap();
        let token = stranger.mint(1, "alice", NOW, NOW + TTL).unwrap();
        assert_eq!(verifier.verify(&token, NOW), Err(TokenError::UnknownKey));

        let payload = payload_json(1, "alice", NOW, NOW + TTL);
        let no_kid = stranger.sign_raw(r#"{"alg":"EdDSA","typ":"JWT"}"#, &payload);
        assert_eq!(verifier.verify(&no_kid, NOW), Err(TokenError::UnknownKey));
        let null_kid = stranger.sign_raw(r#"{"alg":"EdDSA","kid":null}"#, &payload);
        assert_eq!(verifier.verify(&null_kid, NOW), Err(TokenError::UnknownKey));
    }

    #[test]
    fn rotation_accepts_every_configured_key() {
        let old = SigningKey::generate("2024").unwrap();
        let new = SigningKey::generate("2025").unwrap();
        let verifier =
            Verifier::from_jwks(&Jwks::from_public_keys([&old.public(), &new.public()])).unwrap();
        for key in [&old, &new] {
            let token = key.mint(1, "alice", NOW, NOW + TTL).unwrap();
            assert_eq!(verifier.verify(&token, NOW).unwrap().sub, "alice");
        }
        assert_eq!(verifier.public_keys().count(), 2);
        assert_eq!(
            format!("{verifier:?}"),
            r#"Verifier { kids: ["2024", "2025"] }"#
        );
    }

    #[test]
    fn key_set_errors() {
        let a = SigningKey::generate("k1").unwrap().public();
        let b = SigningKey::generate("k1").unwrap().public();
        assert_eq!(
            Verifier::new([a.clone(), b]).unwrap_err(),
            KeyError::DuplicateKid("k1".into())
        );
        assert!(Verifier::new([a.clone(), a]).is_ok());
        assert_eq!(Verifier::new([]).unwrap_err(), KeyError::NoKeys);
    }

    #[test]
    fn only_eddsa_is_accepted() {
        let (key, verifier) = setup();
        let token = key.mint(1, "alice", NOW, NOW + TTL).unwrap();
        let parts = segments(&token);
        let payload = payload_json(1, "alice", NOW, NOW + TTL);
        for alg in [
            "none", "None", "NONE", "HS256", "RS256", "ES256", "PS256", "eddsa", "Ed25519", "",
        ] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#);
            // The rest of the token valid: the original signature, an empty
            // one, and a real EdDSA signature over the forged header.
            for forged in [
                format!("{}.{}.{}", b64(&header), parts[1], parts[2]),
                format!("{}.{}.", b64(&header), parts[1]),
                key.sign_raw(&header, &payload),
            ] {
                assert_eq!(
                    verifier.verify(&forged, NOW),
                    Err(TokenError::UnsupportedAlgorithm),
                    "{alg:?}"
                );
            }
        }
        // HS256 keyed with the public key, the classic confusion attack.
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let claims = Claims::new(1, "alice", NOW, NOW + TTL).unwrap();
        let hmac_key = jsonwebtoken::EncodingKey::from_secret(key.public().as_bytes());
        let forged = jsonwebtoken::encode(&header, &claims, &hmac_key).unwrap();
        assert_eq!(
            verifier.verify(&forged, NOW),
            Err(TokenError::UnsupportedAlgorithm)
        );
        let hmac_key =
            jsonwebtoken::EncodingKey::from_secret(key.public().to_base64url().as_bytes());
        let forged = jsonwebtoken::encode(&header, &claims, &hmac_key).unwrap();
        assert_eq!(
            verifier.verify(&forged, NOW),
            Err(TokenError::UnsupportedAlgorithm)
        );
        // alg missing, or not a string.
        for header in [
            r#"{"kid":"k1"}"#,
            r#"{"alg":null,"kid":"k1"}"#,
            r#"{"alg":["EdDSA"],"kid":"k1"}"#,
        ] {
            let forged = key.sign_raw(header, &payload);
            assert_eq!(
                verifier.verify(&forged, NOW),
                Err(TokenError::Malformed),
                "{header}"
            );
        }
    }

    #[test]
    fn header_oddities() {
        let (key, verifier) = setup();
        let payload = payload_json(1, "alice", NOW, NOW + TTL);
        // Critical extensions cannot be honoured.
        let crit = key.sign_raw(
            r#"{"alg":"EdDSA","kid":"k1","crit":["exp"],"exp":1}"#,
            &payload,
        );
        assert_eq!(verifier.verify(&crit, NOW), Err(TokenError::Malformed));
        // A duplicate alg must not let one parser see another value.
        let dup = key.sign_raw(r#"{"alg":"EdDSA","kid":"k1","alg":"none"}"#, &payload);
        assert_eq!(verifier.verify(&dup, NOW), Err(TokenError::Malformed));
        // A header that is JSON but not an object.
        let array = key.sign_raw(r#"["EdDSA"]"#, &payload);
        assert_eq!(verifier.verify(&array, NOW), Err(TokenError::Malformed));
        // No typ is fine; extra header members are fine.
        let plain = key.sign_raw(r#"{"alg":"EdDSA","kid":"k1","x-extra":1}"#, &payload);
        assert!(verifier.verify(&plain, NOW).is_ok());
    }

    #[test]
    fn signed_but_invalid_claims() {
        let (key, verifier) = setup();
        let header = r#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#;
        let cases = [
            payload_json(0, "alice", NOW, NOW + TTL),
            payload_json(1, "", NOW, NOW + TTL),
            payload_json(1, "a/b", NOW, NOW + TTL),
            payload_json(1, &"a".repeat(129), NOW, NOW + TTL),
            payload_json(1, "alice", NOW, NOW),
            format!(r#"{{"app":1,"sub":"alice","iat":{NOW}}}"#),
            format!(r#"{{"app":1,"iat":{NOW},"exp":{}}}"#, NOW + TTL),
            format!(
                r#"{{"app":-1,"sub":"alice","iat":{NOW},"exp":{}}}"#,
                NOW + TTL
            ),
            format!(r#"{{"app":1,"sub":"alice","iat":{NOW},"exp":1e12}}"#),
            format!(
                r#"{{"app":1,"sub":"alice","iat":"{NOW}","exp":{}}}"#,
                NOW + TTL
            ),
            format!(r#"{{"app":1,"sub":"alice","iat":{NOW},"exp":99999999999999999999}}"#),
            format!(
                r#"{{"app":1,"sub":"alice","sub":"bob","iat":{NOW},"exp":{}}}"#,
                NOW + TTL
            ),
            "[1]".to_owned(),
        ];
        for payload in &cases {
            let token = key.sign_raw(header, payload);
            let error = verifier.verify(&token, NOW).unwrap_err();
            assert!(
                matches!(error, TokenError::InvalidClaims(_)),
                "{payload}: {error:?}"
            );
        }
        // Not JSON at all, though signed.
        let token = key.sign_raw(header, "{");
        assert_eq!(verifier.verify(&token, NOW), Err(TokenError::Malformed));
        // Extra registered claims are accepted.
        let extra = format!(
            r#"{{"app":1,"sub":"alice","iat":{NOW},"exp":{},"jti":"x","iss":"auth","aud":"chat","nbf":{NOW}}}"#,
            NOW + TTL
        );
        assert_eq!(
            verifier
                .verify(&key.sign_raw(header, &extra), NOW)
                .unwrap()
                .app,
            1
        );
    }

    #[test]
    fn garbage_is_malformed_and_long_is_refused_first() {
        let (key, verifier) = setup();
        for garbage in [
            "",
            ".",
            "..",
            "...",
            "a",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "Bearer x",
            "\0",
            "ä.ö.ü",
            "e30.e30.",
            "e30.e30.e30",
            "e30..",
        ] {
            assert_eq!(
                verifier.verify(garbage, NOW),
                Err(TokenError::Malformed),
                "{garbage:?}"
            );
        }
        let token = key.mint(1, "alice", NOW, NOW + TTL).unwrap();
        for wrapped in [
            format!(" {token}"),
            format!("{token}\n"),
            format!("{token}."),
            format!(".{token}"),
        ] {
            assert!(verifier.verify(&wrapped, NOW).is_err(), "{wrapped:?}");
        }
        assert_eq!(
            verifier.verify(&"a".repeat(TOKEN_BYTES_MAX + 1), NOW),
            Err(TokenError::TooLong)
        );
        assert_eq!(
            verifier.verify(&"a".repeat(TOKEN_BYTES_MAX), NOW),
            Err(TokenError::Malformed)
        );
        // A correctly signed token that is simply too long.
        let padding = "x".repeat(TOKEN_BYTES_MAX);
        let long = key.sign_raw(
            r#"{"alg":"EdDSA","kid":"k1"}"#,
            &format!(
                r#"{{"app":1,"sub":"alice","iat":{NOW},"exp":{},"pad":"{padding}"}}"#,
                NOW + TTL
            ),
        );
        assert_eq!(verifier.verify(&long, NOW), Err(TokenError::TooLong));
    }

    /// xorshift64: deterministic, so a failure reproduces; no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const FUZZ_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
    /// Mutants of a valid token. About a third of them survive decoding and
    /// cost a full Ed25519 verification, ~12 ms in an unoptimised build
    /// (curve25519-dalek's SIMD backend without inlining, against ~0.2 ms
    /// with that one crate at opt-level 3), so this share is what keeps the
    /// suite within a few seconds in debug.
    const FUZZ_MUTANTS: usize = 600;
    /// Random strings: 10,000 cases in all with the mutants.
    const FUZZ_RANDOM: usize = 9_400;
    /// Bytes a mutation writes: mostly the base64url alphabet (so mutants
    /// get past decoding and reach the signature check), the separator, and
    /// characters other base64 flavours and JSON use.
    const MUTATION_BYTES: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\"\\\0\xff";
    const BASE64URL_ALPHABET_LEN: usize = 64;

    fn mutate(rng: &mut XorShift, token: &[u8]) -> Vec<u8> {
        let mut bytes = token.to_vec();
        for _ in 0..=rng.below(3) {
            let len = bytes.len().max(1);
            let at = rng.below(len);
            let byte = MUTATION_BYTES[rng.below(MUTATION_BYTES.len())];
            match rng.below(6) {
                0 | 1 if !bytes.is_empty() => bytes[at] = byte,
                2 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
                3 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                4 => bytes.insert(at.min(bytes.len()), byte),
                _ => bytes.truncate(at),
            }
        }
        bytes
    }

    /// Verifies every candidate that differs from `valid`, asserting that
    /// none verifies (a panic fails the test by itself), and counts the
    /// error codes. Returns how many candidates were tried.
    fn never_verify(
        verifier: &Verifier,
        valid: &str,
        candidates: impl Iterator<Item = Vec<u8>>,
        counts: &mut HashMap<&'static str, usize>,
    ) -> usize {
        let mut tried = 0;
        for candidate in candidates {
            if candidate == valid.as_bytes() {
                continue;
            }
            tried += 1;
            let text = String::from_utf8_lossy(&candidate);
            match verifier.verify(&text, NOW) {
                Ok(claims) => panic!("{text:?} verified as {claims:?}"),
                Err(error) => *counts.entry(error.code()).or_default() += 1,
            }
        }
        tried
    }

    #[test]
    fn mutated_tokens_never_verify() {
        let (key, verifier) = setup();
        let valid = key.mint(1, "alice", NOW, NOW + TTL).unwrap();
        let mut rng = XorShift(FUZZ_SEED);
        let mut counts = HashMap::new();
        let mut tried = 0;
        while tried < FUZZ_MUTANTS {
            // Mutations that leave the token byte-identical are skipped
            // inside `never_verify`, so loop until enough real ones ran.
            let batch = std::iter::repeat_with(|| mutate(&mut rng, valid.as_bytes()))
                .take(FUZZ_MUTANTS - tried);
            tried += never_verify(&verifier, &valid, batch, &mut counts);
        }
        // Mutants reached every stage: refused before, at and after the
        // signature check.
        for code in ["token_malformed", "token_signature"] {
            assert!(counts.get(code).copied().unwrap_or(0) > 50, "{counts:?}");
        }
        assert!(verifier.verify(&valid, NOW).is_ok());
    }

    #[test]
    fn random_tokens_never_verify() {
        let (key, verifier) = setup();
        let valid = key.mint(1, "alice", NOW, NOW + TTL).unwrap();
        let header = segments(&valid)[0].clone();
        let mut rng = XorShift(FUZZ_SEED ^ 1);
        let random_segment = |rng: &mut XorShift| -> String {
            (0..rng.below(200))
                .map(|_| MUTATION_BYTES[rng.below(BASE64URL_ALPHABET_LEN)] as char)
                .collect()
        };
        let candidates = (0..FUZZ_RANDOM).map(|case| match case % 3 {
            // Random bytes of random length, some over the limit.
            0 => (0..rng.below(TOKEN_BYTES_MAX + 200))
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>(),
            // Random base64url segments behind a valid header.
            1 => {
                let payload = random_segment(&mut rng);
                let signature = random_segment(&mut rng);
                format!("{header}.{payload}.{signature}").into_bytes()
            }
            // Random JSON-ish payloads, encoded, with a signature of the
            // right length: these reach the signature check.
            _ if case % 300 == 2 => {
                let payload: Vec<u8> = (0..rng.below(100))
                    .map(|_| MUTATION_BYTES[rng.below(MUTATION_BYTES.len())])
                    .collect();
                let signature: Vec<u8> = (0..64).map(|_| rng.next() as u8).collect();
                format!("{header}.{}.{}", b64(payload), b64(signature)).into_bytes()
            }
            // Random dots among random base64url.
            _ => (0..rng.below(300))
                .map(|_| match rng.below(40) {
                    0 => b'.',
                    _ => MUTATION_BYTES[rng.below(BASE64URL_ALPHABET_LEN)],
                })
                .collect(),
        });
        let mut counts = HashMap::new();
        let tried = never_verify(&verifier, &valid, candidates, &mut counts);
        assert_eq!(tried, FUZZ_RANDOM);
        for code in ["token_malformed", "token_too_long", "token_signature"] {
            assert!(counts.get(code).copied().unwrap_or(0) > 50, "{counts:?}");
        }
    }
}
