//! The signing keys: loaded from disk, rotated, retired.
//!
//! # Layout
//!
//! ```text
//! <data_dir>/auth/keys/          0700
//!     k1700000000.pem            0600, PKCS#8 PEM (chat_token::keys), kid = file stem
//!     k1700086400.pem            the newest: it signs
//!     .k1700172800.pem.tmp       a write that a crash interrupted: removed at start
//! ```
//!
//! One key per file named `<kid>.pem`, as `chat_token` persists them. The
//! keys this service makes are named `k<unix seconds of creation>` (with a
//! `-<n>` suffix in the unlikely case the name is taken), so the creation
//! time travels with the file itself: no sidecar to keep consistent, and
//! copying the directory without preserving times changes nothing. A key an
//! operator put there under another name (`openssl genpkey -algorithm
//! ed25519 -out <kid>.pem`) is dated by the file's mtime instead.
//!
//! # Life of a key
//!
//! - **Signing**: the newest key (latest creation time, then greatest kid)
//!   signs every token minted.
//! - **Rotation**: at start, and from then on by a timer, a new key is made
//!   when there is none or the newest is `key_rotation_s` old. It is written
//!   and synced before it signs anything, so no token is ever signed by a key
//!   a crash could lose.
//! - **Verifying only**: a key stops signing when its successor is made; the
//!   tokens it signed then live at most `token_ttl_max_s` more, so it stays
//!   in the JWKS until `successor created_at + token_ttl_max_s +`
//!   [`RETIRE_GRACE_S`](crate::limits::RETIRE_GRACE_S).
//! - **Retired**: after that it leaves the JWKS and its file is deleted, at
//!   start or at the next timer run.
//!
//! A verifier that caches the JWKS sees tokens of a new key as
//! `token_unknown_key` until it fetches `/v1/keys` again, so it should
//! refetch (rate-limited) on an unknown kid.
//!
//! # Crash safety
//!
//! A new key is written with [`fsutil::write_atomically`]: a temp file
//! created 0600 with `O_EXCL`, written, `fsync`ed, renamed to `<kid>.pem`,
//! then the directory `fsync`ed. A `kill -9` (or a power loss) at any point
//! leaves either no `<kid>.pem` (only a temp file, which loading ignores and
//! removes; the next start or timer run makes the key again) or the whole,
//! synced one, never a partial key; and the key signs only after the
//! directory sync, so a key that signed a token survives the crash. A
//! deleted key was already out of the JWKS and past every token it signed.
//! A `.pem` file that does not parse is refused at start with its name,
//! rather than skipped: it can only be an operator's mistake.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::UNIX_EPOCH;

use anyhow::{Context, bail};
use chat_token::{Jwks, SigningKey, validate_kid};

use crate::fsutil;
use crate::revocation::{expired, horizon};

const KEY_SUFFIX: &str = ".pem";
/// How many `-<n>` suffixes to try when a new kid is taken.
const KID_SUFFIX_TRIES: u32 = 100;

struct StoredKey {
    key: Arc<SigningKey>,
    /// Seconds since the epoch.
    created_at: i64,
}

/// The keys in use, oldest first; the last one signs.
struct KeySet {
    keys: Vec<StoredKey>,
    jwks: Arc<Jwks>,
}

impl KeySet {
    fn new(mut keys: Vec<StoredKey>) -> Self {
        keys.sort_by(|a, b| (a.created_at, a.key.kid()).cmp(&(b.created_at, b.key.kid())));
        let publics: Vec<_> = keys.iter().map(|k| k.key.public()).collect();
        let jwks = Arc::new(Jwks::from_public_keys(&publics));
        Self { keys, jwks }
    }
}

/// What a maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// The kid of the key made, if one was.
    pub created: Option<String>,
    /// The kids of the keys retired and deleted.
    pub retired: Vec<String>,
}

pub struct KeyStore {
    dir: PathBuf,
    rotation_s: i64,
    /// Seconds after a successor's creation during which a key still verifies.
    horizon: i64,
    set: RwLock<KeySet>,
    /// Serialises maintenance runs (the start-up one and the timer's).
    maintenance: Mutex<()>,
}

impl KeyStore {
    /// Loads every `<kid>.pem` of `dir` (created if missing), then runs
    /// [`maintain`](Self::maintain) once: afterwards there is a key that is
    /// not due for rotation, and no retired key is left.
    pub fn open(
        dir: &Path,
        key_rotation_s: u64,
        token_ttl_max_s: u64,
        now_s: i64,
    ) -> anyhow::Result<(Self, Maintenance)> {
        fsutil::ensure_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        let keys = load(dir)?;
        let store = Self {
            dir: dir.to_path_buf(),
            rotation_s: i64::try_from(key_rotation_s).unwrap_or(i64::MAX),
            horizon: horizon(token_ttl_max_s),
            set: RwLock::new(KeySet::new(keys)),
            maintenance: Mutex::new(()),
        };
        let report = store.maintain(now_s)?;
        Ok((store, report))
    }

    /// The key that signs.
    pub fn signer(&self) -> Arc<SigningKey> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&set.keys.last().expect("a key store always has a key").key)
    }

    /// The public half of every key that still verifies, newest last.
    pub fn jwks(&self) -> Arc<Jwks> {
        Arc::clone(&self.set.read().unwrap_or_else(|p| p.into_inner()).jwks)
    }

    /// The second at which [`maintain`](Self::maintain) next has work: the
    /// signing key's rotation or the earliest retirement.
    pub fn next_due(&self) -> i64 {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let newest = set.keys.last().map_or(i64::MIN, |k| k.created_at);
        let rotation = newest.saturating_add(self.rotation_s);
        // Key i retires when key i+1 has been around for the horizon.
        let retirement = set.keys.get(1).map_or(i64::MAX, |next| {
            next.created_at.saturating_add(self.horizon)
        });
        rotation.min(retirement)
    }

    /// Rotates if due, then retires the keys no token can need any more.
    /// Blocking (file I/O): call it off the async workers.
    pub fn maintain(&self, now_s: i64) -> anyhow::Result<Maintenance> {
        let _running = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = Maintenance::default();
        let (mut keys, due) = {
            let set = self.set.read().unwrap_or_else(|p| p.into_inner());
            let due = set
                .keys
                .last()
                .is_none_or(|newest| now_s.saturating_sub(newest.created_at) >= self.rotation_s);
            let keys: Vec<StoredKey> = set
                .keys
                .iter()
                .map(|k| StoredKey {
                    key: Arc::clone(&k.key),
                    created_at: k.created_at,
                })
                .collect();
            (keys, due)
        };
        if due {
            let kid = self.free_kid(&keys, now_s)?;
            let key = SigningKey::generate(&kid).context("generating a signing key")?;
            fsutil::write_atomically(&self.dir, &file_name(&kid), key.to_pkcs8_pem().as_bytes())
                .with_context(|| format!("writing key {kid} in {}", self.dir.display()))?;
            tracing::info!(%kid, "new signing key");
            keys.push(StoredKey {
                key: Arc::new(key),
                created_at: now_s,
            });
            report.created = Some(kid);
        }
        let mut set = KeySet::new(keys);
        // Sorted oldest first: key i stopped signing when key i+1 was made.
        let retiring = (0..set.keys.len().saturating_sub(1))
            .take_while(|&i| expired(set.keys[i + 1].created_at, self.horizon, now_s))
            .count();
        let retired: Vec<StoredKey> = set.keys.drain(..retiring).collect();
        if !retired.is_empty() {
            set = KeySet::new(set.keys);
        }
        // The new set first, so a retired key is out of the JWKS before its
        // file goes.
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = set;
        for old in retired {
            let kid = old.key.kid().to_owned();
            fsutil::remove_durably(&self.dir, &file_name(&kid))
                .with_context(|| format!("deleting retired key {kid}"))?;
            tracing::info!(%kid, "signing key retired");
            report.retired.push(kid);
        }
        Ok(report)
    }

    /// `k<now_s>`, or with the first free `-<n>` suffix.
    fn free_kid(&self, keys: &[StoredKey], now_s: i64) -> anyhow::Result<String> {
        let base = format!("k{now_s}");
        let taken = |kid: &str| {
            keys.iter().any(|k| k.key.kid() == kid) || self.dir.join(file_name(kid)).exists()
        };
        if !taken(&base) {
            return Ok(base);
        }
        (1..=KID_SUFFIX_TRIES)
            .map(|n| format!("{base}-{n}"))
            .find(|kid| !taken(kid))
            .with_context(|| format!("no free key id near {base}"))
    }
}

fn file_name(kid: &str) -> String {
    format!("{kid}{KEY_SUFFIX}")
}

/// The creation time encoded in a kid this service made (`k<seconds>` or
/// `k<seconds>-<n>`).
fn created_at_of_kid(kid: &str) -> Option<i64> {
    let rest = kid.strip_prefix('k')?;
    let (seconds, suffix) = rest.split_once('-').unwrap_or((rest, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(seconds) || !(suffix.is_empty() || digits(suffix)) || rest.ends_with('-') {
        return None;
    }
    seconds.parse().ok()
}

/// Reads every key of `dir`, removing the temp files of interrupted writes.
fn load(dir: &Path) -> anyhow::Result<Vec<StoredKey>> {
    let mut keys = Vec::new();
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if fsutil::is_temp_file(&name) {
            tracing::warn!(file = %path.display(), "removing the temp file of an interrupted key write");
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            continue;
        }
        let Some(kid) = name.strip_suffix(KEY_SUFFIX) else {
            continue;
        };
        if validate_kid(kid).is_err() {
            bail!(
                "{}: a key file must be named <kid>.pem with a kid of [A-Za-z0-9._-] starting with a letter or digit",
                path.display()
            );
        }
        let metadata = entry
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "a private key file is readable by others than its owner; chmod 600 it");
        }
        let pem =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = SigningKey::from_pkcs8_pem(kid, &pem)
            .with_context(|| format!("{} is not a usable key", path.display()))?;
        let created_at = match created_at_of_kid(kid) {
            Some(seconds) => seconds,
            None => {
                let modified = metadata
                    .modified()
                    .with_context(|| format!("dating {}", path.display()))?;
                let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            }
        };
        keys.push(StoredKey {
            key: Arc::new(key),
            created_at,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    const ROTATION: u64 = 1_000;
    const TTL_MAX: u64 = 100;

    fn kids(store: &KeyStore) -> Vec<String> {
        store.jwks().keys.iter().map(|k| k.kid.clone()).collect()
    }

    fn plant(dir: &Path, kid: &str) {
        let key = SigningKey::generate(kid).unwrap();
        fs::write(dir.join(file_name(kid)), key.to_pkcs8_pem().as_bytes()).unwrap();
    }

    #[test]
    fn kid_dates() {
        assert_eq!(created_at_of_kid("k1700000000"), Some(1_700_000_000));
        assert_eq!(created_at_of_kid("k1700000000-3"), Some(1_700_000_000));
        for other in ["k", "k-1", "k12-", "k12-x", "kx", "prod", "K12", "k1.5"] {
            assert_eq!(created_at_of_kid(other), None, "{other}");
        }
        let now = clock::now_s();
        let kid = format!("k{now}");
        assert_eq!(validate_kid(&kid), Ok(()));
        assert_eq!(validate_kid(&format!("{kid}-99")), Ok(()));
    }

    #[test]
    fn first_start_makes_a_key_and_a_restart_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_700_000_000;
        let (store, report) = KeyStore::open(dir.path(), ROTATION, TTL_MAX, now).unwrap();
        assert_eq!(report.created.as_deref(), Some("k1700000000"));
        assert_eq!(store.signer().kid(), "k1700000000");
        let mode = fs::metadata(dir.path().join("k1700000000.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(store);
        let (store, report) =
            KeyStore::open(dir.path(), ROTATION, TTL_MAX, now + ROTATION as i64 - 1).unwrap();
        assert_eq!(report, Maintenance::default());
        assert_eq!(kids(&store), ["k1700000000"]);
        assert_eq!(store.next_due(), now + ROTATION as i64);
    }

    #[test]
    fn rotation_keeps_the_old_key_until_its_tokens_expired() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000;
        let (store, _) = KeyStore::open(dir.path(), ROTATION, TTL_MAX, t0).unwrap();
        let t1 = t0 + ROTATION as i64;
        let report = store.maintain(t1).unwrap();
        assert_eq!(report.created, Some(format!("k{t1}")));
        assert_eq!(kids(&store), [format!("k{t0}"), format!("k{t1}")]);
        assert_eq!(store.signer().kid(), format!("k{t1}"));
        let retire = t1 + horizon(TTL_MAX);
        assert_eq!(store.next_due(), retire);
        assert_eq!(store.maintain(retire - 1).unwrap(), Maintenance::default());
        let report = store.maintain(retire).unwrap();
        assert_eq!(
            (report.created, report.retired),
            (None, vec![format!("k{t0}")])
        );
        assert_eq!(kids(&store), [format!("k{t1}")]);
        assert!(!dir.path().join(format!("k{t0}.pem")).exists());
    }

    #[test]
    fn a_taken_kid_gets_a_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_700_000_000;
        let (store, _) = KeyStore::open(dir.path(), 1, TTL_MAX, now).unwrap();
        let report = store.maintain(now + 1).unwrap();
        assert_eq!(report.created.as_deref(), Some("k1700000001"));
        let report = store.maintain(now + 2).unwrap();
        assert_eq!(report.created.as_deref(), Some("k1700000002"));
        plant(dir.path(), "k1700000003");
        let store = KeyStore::open(dir.path(), 1, TTL_MAX, now + 3).unwrap().0;
        assert_eq!(store.signer().kid(), "k1700000003");
        let report = store.maintain(now + 3 + 1).unwrap();
        assert_eq!(report.created.as_deref(), Some("k1700000004"));
        let free = store.free_kid(&[], now + 3).unwrap();
        assert_eq!(free, "k1700000003-1");
    }

    #[test]
    fn loading_skips_temp_files_and_refuses_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        let now = clock::now_s();
        plant(dir.path(), "operator-key");
        fs::write(dir.path().join(".k1.pem.tmp"), "half a key").unwrap();
        fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let (store, report) = KeyStore::open(dir.path(), ROTATION, TTL_MAX, now).unwrap();
        // Dated by its mtime (now): not due, and it signs.
        assert_eq!(report.created, None);
        assert_eq!(store.signer().kid(), "operator-key");
        assert!(!dir.path().join(".k1.pem.tmp").exists());
        drop(store);
        fs::write(dir.path().join("k2.pem"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
        let error = KeyStore::open(dir.path(), ROTATION, TTL_MAX, now)
            .err()
            .unwrap();
        assert!(format!("{error:#}").contains("k2.pem"), "{error:#}");
        fs::remove_file(dir.path().join("k2.pem")).unwrap();
        plant(dir.path(), "ok");
        fs::rename(dir.path().join("ok.pem"), dir.path().join("-bad.pem")).unwrap();
        assert!(KeyStore::open(dir.path(), ROTATION, TTL_MAX, now).is_err());
    }
}
