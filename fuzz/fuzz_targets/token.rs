//! User token verification with a fixed key set (`k1`, `k2`), two ways
//! (`chat_fuzz::mode`):
//! - any text, at the fixed clock and at both ends of time: no panic, and every refusal is a documented `token_*` code
//!   (never `token_signing`, which only minting can cause);
//! - a valid token, then changed with knowledge of its structure (one of its
//!   three parts replaced, edited as text, or decoded, edited and encoded
//!   again; parts added or dropped): whatever is accepted carries exactly
//!   the claims that were signed. Anything else would be a forgery.

#![no_main]

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_fuzz::codes::Documented;
use chat_fuzz::keys;
use chat_fuzz::mode::{self, Mode};
use chat_token::{CLOCK_SKEW_LEEWAY_S, Claims, SigningKey, TokenError, Verifier};
use libfuzzer_sys::fuzz_target;

/// Edits applied to one token at most: enough to combine a few, short
/// enough that each input stays fast.
const EDITS_MAX: usize = 4;

/// The clock of every verification, and so of every minted token.
const NOW_S: i64 = 1_700_000_000;

static VERIFIER: LazyLock<Verifier> = LazyLock::new(keys::verifier);
static SIGNING_KEYS: LazyLock<[SigningKey; 2]> = LazyLock::new(keys::signing_keys);
static API_CODES: LazyLock<Documented> = LazyLock::new(|| Documented::section("Persistence API"));
static ENGINE_CODES: LazyLock<Documented> = LazyLock::new(|| Documented::section("Engine"));

#[derive(Arbitrary, Debug)]
struct Changed {
    minted: Mint,
    edits: Vec<Edit>,
}

#[derive(Arbitrary, Debug)]
struct Mint {
    second_key: bool,
    app: u8,
    user: u8,
    iat_offset_s: u8,
    /// In minutes.
    ttl_min: u8,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    /// Replace part `part` (0 header, 1 payload, 2 signature) with this text.
    Replace {
        part: u8,
        text: String,
    },
    /// Change one character of a part's text.
    SetByte {
        part: u8,
        at: u16,
        byte: u8,
    },
    /// Decode a part, change one byte of it, encode it again.
    SetDecodedByte {
        part: u8,
        at: u16,
        byte: u8,
    },
    /// Decode a part, append bytes, encode it again.
    AppendDecoded {
        part: u8,
        bytes: Vec<u8>,
    },
    /// Take the part from another valid token.
    Splice {
        part: u8,
        from: Mint,
    },
    Truncate {
        part: u8,
        len: u16,
    },
    AddPart(String),
    DropPart(u8),
}

fuzz_target!(|bytes: &[u8]| match mode::read::<Changed>(bytes) {
    Some(Mode::Text(bytes)) => {
        let token = String::from_utf8_lossy(bytes);
        for now_s in [NOW_S, i64::MIN, i64::MAX] {
            if let Err(error) = VERIFIER.verify(&token, now_s) {
                check_code(&error);
            }
        }
    }
    Some(Mode::Structured(changed)) => check_changed(&changed.minted, &changed.edits),
    None => {}
});

fn check_code(error: &TokenError) {
    let code = error.code();
    assert!(
        code.starts_with("token_") && code != "token_signing",
        "{code}"
    );
    assert!(API_CODES.has(code) && ENGINE_CODES.has(code), "{code}");
}

/// The token `spec` describes and its claims, minted once per process:
/// Ed25519 signing is deterministic, and signing on every input would cost
/// most of the time of a run.
fn mint(spec: &Mint) -> Minted {
    static MINTED: LazyLock<Mutex<HashMap<MintKey, Minted>>> = LazyLock::new(Mutex::default);
    let key = (
        spec.second_key,
        spec.app,
        spec.user,
        spec.iat_offset_s,
        spec.ttl_min,
    );
    let mut minted = MINTED.lock().expect("the mint cache");
    minted.entry(key).or_insert_with(|| mint_now(spec)).clone()
}

type MintKey = (bool, u8, u8, u8, u8);

/// A token and its claims; `None` where the claims cannot be minted.
type Minted = Option<(String, Claims)>;

const APPS: u8 = 4;
const USERS: [&str; 3] = ["alice", "bob", "u:1@example.com"];

fn mint_now(spec: &Mint) -> Minted {
    let key = &SIGNING_KEYS[usize::from(spec.second_key)];
    let app = u64::from(spec.app % APPS) + 1;
    let user = USERS[usize::from(spec.user) % USERS.len()];
    // Within the verifier's leeway, so every minted token is valid at NOW_S.
    let iat = NOW_S + i64::from(spec.iat_offset_s) % (CLOCK_SKEW_LEEWAY_S + 1);
    let exp = iat + i64::from(spec.ttl_min) * 60 + 1;
    let token = key.mint(app, user, iat, exp).ok()?;
    let claims = Claims::new(app, user, iat, exp).ok()?;
    assert_eq!(VERIFIER.verify(&token, NOW_S).as_ref(), Ok(&claims));
    Some((token, claims))
}

fn check_changed(spec: &Mint, edits: &[Edit]) {
    let Some((token, claims)) = mint(spec) else {
        return;
    };
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    // Splices bring in other tokens' parts: a whole other token, pieced
    // together, is rightly accepted with its own claims.
    let mut signed = vec![claims];
    for edit in edits.iter().take(EDITS_MAX) {
        apply(edit, &mut parts, &mut signed);
    }
    let changed = parts.join(".");
    match VERIFIER.verify(&changed, NOW_S) {
        Ok(accepted) => assert!(
            signed.contains(&accepted),
            "{token} became {changed}, accepted as {accepted:?}"
        ),
        Err(error) => check_code(&error),
    }
}

fn apply(edit: &Edit, parts: &mut Vec<String>, signed: &mut Vec<Claims>) {
    if parts.is_empty() {
        parts.push(String::new());
    }
    let index = |part: &u8| usize::from(*part) % parts.len();
    match edit {
        Edit::Replace { part, text } => {
            let i = index(part);
            parts[i] = text.clone();
        }
        Edit::SetByte { part, at, byte } => {
            let i = index(part);
            let mut bytes = parts[i].clone().into_bytes();
            if !bytes.is_empty() {
                let at = usize::from(*at) % bytes.len();
                bytes[at] = *byte;
            }
            parts[i] = String::from_utf8_lossy(&bytes).into_owned();
        }
        Edit::SetDecodedByte { part, at, byte } => {
            let i = index(part);
            if let Ok(mut decoded) = URL_SAFE_NO_PAD.decode(&parts[i])
                && !decoded.is_empty()
            {
                let at = usize::from(*at) % decoded.len();
                decoded[at] = *byte;
                parts[i] = URL_SAFE_NO_PAD.encode(decoded);
            }
        }
        Edit::AppendDecoded { part, bytes } => {
            let i = index(part);
            if let Ok(mut decoded) = URL_SAFE_NO_PAD.decode(&parts[i]) {
                decoded.extend_from_slice(bytes);
                parts[i] = URL_SAFE_NO_PAD.encode(decoded);
            }
        }
        Edit::Splice { part, from } => {
            if let Some((other, claims)) = mint(from) {
                signed.push(claims);
                let i = index(part);
                if let Some(piece) = other.split('.').nth(i) {
                    parts[i] = piece.to_owned();
                }
            }
        }
        Edit::Truncate { part, len } => {
            let i = index(part);
            let mut len = usize::from(*len) % (parts[i].len() + 1);
            while !parts[i].is_char_boundary(len) {
                len -= 1;
            }
            parts[i].truncate(len);
        }
        Edit::AddPart(text) => parts.push(text.clone()),
        Edit::DropPart(part) => {
            let i = index(part);
            parts.remove(i);
        }
    }
}
