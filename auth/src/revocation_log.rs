//! The service's durable record of revocations.
//!
//! # Storage: an append-only JSON-lines file
//!
//! `<data_dir>/auth/revocations.jsonl`, one [`Revocation`] per line in `seq`
//! order (`{"seq":1,"app":1,"user":"alice","revoked_at":1700000001}`). A
//! revocation is appended with a single `write` and `fdatasync`ed before it
//! is answered, so an answered revocation survives a crash; the whole file
//! is replayed into memory on start, and every read is served from memory.
//!
//! A file rather than fjall: the data is a few small records per revocation
//! with one writer, read in full once at start and then only from memory, so
//! an LSM tree (its journal, compaction and background threads, and a second
//! fjall database in a data dir whose store is the persistence API's) would
//! bring nothing but cost. The file is also readable by an operator with
//! `cat`, and its failure modes are few:
//!
//! - only the last line can be torn by a crash (each append is synced before
//!   the next one starts): trailing bytes without a final newline are an
//!   append that was never answered, and are dropped at start;
//! - a complete line that does not parse, or a `seq` out of order, is
//!   corruption, and the service refuses to start rather than forget a
//!   revocation silently;
//! - a failed append is cut off again (`set_len` to the old length); if even
//!   that fails, the log stops taking revocations (`unavailable`) until a
//!   restart, so a half-written line is never followed by another record.
//!
//! # Growth
//!
//! A revocation matters only while a token it revokes can be alive: such a
//! token has `iat < revoked_at`, so it expires by `revoked_at +
//! token_ttl_max_s` (plus the verifiers' leeway, see
//! [`RETIRE_GRACE_S`](crate::limits::RETIRE_GRACE_S)). Older revocations are
//! dropped from memory by the maintenance timer and from the file at start,
//! when it is rewritten atomically with the live records only. The record
//! with the highest `seq` is always kept in the file, so `seq` never goes
//! back and pollers' cursors stay valid across restarts. Memory is thus
//! bounded by the revocations of one token life, the file by those since the
//! last start.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use anyhow::Context;

use crate::clock;
use crate::error::AuthError;
use crate::fsutil;
use crate::limits::MINT_WAIT_MAX_S;
use crate::revocation::{Revocation, RevocationsPage, expired, horizon};

pub const LOG_FILE: &str = "revocations.jsonl";

pub struct RevocationLog {
    path: PathBuf,
    /// Seconds after `revoked_at` during which a revocation matters.
    horizon: i64,
    /// Serialises appends, and so the choice of `seq` and `revoked_at`.
    writer: tokio::sync::Mutex<Writer>,
    /// What readers see; updated only after the append is durable.
    view: RwLock<View>,
}

struct Writer {
    /// `None` once an append failed and could not be undone.
    file: Option<File>,
    len: u64,
}

#[derive(Default)]
struct View {
    /// The live revocations in `seq` order.
    records: VecDeque<Revocation>,
    /// app → user → latest revoked_at, for minting.
    latest: HashMap<u64, HashMap<String, i64>>,
    /// The highest `seq` ever recorded, live or not.
    last_seq: u64,
}

impl View {
    fn insert(&mut self, record: Revocation) {
        self.last_seq = self.last_seq.max(record.seq);
        let latest = self
            .latest
            .entry(record.app)
            .or_default()
            .entry(record.user.clone())
            .or_insert(record.revoked_at);
        *latest = (*latest).max(record.revoked_at);
        self.records.push_back(record);
    }

    fn latest(&self, app: u64, user: &str) -> Option<i64> {
        self.latest.get(&app)?.get(user).copied()
    }
}

/// What start-up found in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    pub live: usize,
    pub dropped: usize,
    pub torn_bytes: usize,
}

impl RevocationLog {
    /// Replays `<auth_dir>/revocations.jsonl` (created if missing), drops
    /// the revocations that no longer matter at `now_s` and rewrites the file
    /// if anything was dropped.
    pub fn open(
        auth_dir: &Path,
        token_ttl_max_s: u64,
        now_s: i64,
    ) -> anyhow::Result<(Self, OpenReport)> {
        fsutil::ensure_dir(auth_dir).with_context(|| format!("creating {}", auth_dir.display()))?;
        let path = auth_dir.join(LOG_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", path.display()));
            }
        };
        let (records, complete) = replay(&bytes)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        let torn_bytes = bytes.len() - complete;
        let horizon = horizon(token_ttl_max_s);
        let total = records.len();
        let last_seq = records.last().map_or(0, |r| r.seq);
        let mut view = View::default();
        let mut kept = Vec::with_capacity(total);
        for (index, record) in records.into_iter().enumerate() {
            let live = !expired(record.revoked_at, horizon, now_s);
            if live || index + 1 == total {
                // The last record stays in the file even when expired: it
                // carries the highest seq across restarts.
                kept.push(record.clone());
            }
            if live {
                view.insert(record);
            }
        }
        view.last_seq = last_seq;
        let report = OpenReport {
            live: view.records.len(),
            dropped: total - kept.len(),
            torn_bytes,
        };
        if report.dropped > 0 || torn_bytes > 0 {
            let mut text = Vec::new();
            for record in &kept {
                text.extend(line(record));
            }
            fsutil::write_atomically(auth_dir, LOG_FILE, &text)
                .with_context(|| format!("rewriting {}", path.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // A file created just now must outlive a crash too.
        fsutil::sync_dir(auth_dir).with_context(|| format!("syncing {}", auth_dir.display()))?;
        let len = file.metadata()?.len();
        let log = Self {
            path,
            horizon,
            writer: tokio::sync::Mutex::new(Writer {
                file: Some(file),
                len,
            }),
            view: RwLock::new(view),
        };
        Ok((log, report))
    }

    /// The latest `revoked_at` of a user, if a live revocation has one.
    pub fn revoked_at(&self, app: u64, user: &str) -> Option<i64> {
        self.read().latest(app, user)
    }

    /// The `iat` of a token of `user` minted now: the current second, once
    /// it is not before the user's latest `revoked_at`. Waits (under a
    /// second) for a revocation made in the current second, so that a token
    /// minted after a revocation is never revoked by it (see
    /// [`crate::revocation`]).
    pub async fn issue_time(&self, app: u64, user: &str) -> Result<i64, AuthError> {
        loop {
            let now = clock::now_s();
            match self.revoked_at(app, user) {
                Some(revoked_at) if revoked_at > now => {
                    let wait = clock::until_s(revoked_at);
                    if wait > Duration::from_secs(MINT_WAIT_MAX_S) {
                        return Err(AuthError::Unavailable(format!(
                            "a revocation of this user is dated {revoked_at}, ahead of the clock ({now}); the clock went back"
                        )));
                    }
                    // Then check again: another revocation may have come.
                    tokio::time::sleep(wait).await;
                }
                _ => return Ok(now),
            }
        }
    }

    /// Records that the tokens of `user` of `app` issued until now are
    /// revoked; returns once the record is durable.
    pub async fn revoke(&self, app: u64, user: String) -> Result<Revocation, AuthError> {
        let mut writer = self.writer.lock().await;
        let Some(file) = writer.file.take() else {
            return Err(AuthError::Unavailable(format!(
                "{} stopped taking revocations after a failed write; restart the service",
                self.path.display()
            )));
        };
        let record = {
            let view = self.read();
            // The first second after now: every token minted so far has
            // iat <= floor(now) and is revoked, and every mint from now on
            // waits for this second (`issue_time`). Never earlier than a
            // previous revocation of the same user, should the clock step back.
            let revoked_at = clock::now_s()
                .saturating_add(1)
                .max(view.latest(app, &user).unwrap_or(i64::MIN));
            Revocation {
                seq: view.last_seq + 1,
                app,
                user,
                revoked_at,
            }
        };
        let bytes = line(&record);
        let len = writer.len;
        let appended = tokio::task::spawn_blocking(move || {
            let result = append(&file, &bytes, len);
            (file, result.map(|()| bytes.len() as u64))
        })
        .await;
        match appended {
            Ok((file, Ok(written))) => {
                writer.file = Some(file);
                writer.len += written;
            }
            Ok((file, Err(AppendError { error, undone }))) => {
                if undone {
                    writer.file = Some(file);
                } else {
                    tracing::error!(path = %self.path.display(), "a failed append could not be undone; revocations stop until a restart");
                }
                return Err(AuthError::Unavailable(format!(
                    "appending to {}: {error}",
                    self.path.display()
                )));
            }
            Err(join) => {
                return Err(AuthError::Internal(format!(
                    "the append task failed: {join}"
                )));
            }
        }
        self.write().insert(record.clone());
        Ok(record)
    }

    /// Revocations with `seq > after`, at most `max` of them.
    pub fn page(&self, after: u64, max: usize) -> RevocationsPage {
        let view = self.read();
        let start = view.records.partition_point(|r| r.seq <= after);
        let revocations: Vec<Revocation> = view.records.range(start..).take(max).cloned().collect();
        let has_more = view.records.len() - start > revocations.len();
        let last_seq = revocations.last().map_or(view.last_seq, |r| r.seq);
        RevocationsPage {
            revocations,
            last_seq,
            has_more,
        }
    }

    /// Drops from memory the revocations that no longer matter at `now_s`;
    /// returns how many. (The file sheds them at the next start.)
    pub fn prune(&self, now_s: i64) -> usize {
        let horizon = self.horizon;
        let mut view = self.write();
        let before = view.records.len();
        view.records
            .retain(|r| !expired(r.revoked_at, horizon, now_s));
        view.latest.retain(|_, users| {
            users.retain(|_, revoked_at| !expired(*revoked_at, horizon, now_s));
            !users.is_empty()
        });
        before - view.records.len()
    }

    /// Revocations currently in memory.
    pub fn live(&self) -> usize {
        self.read().records.len()
    }

    fn read(&self) -> RwLockReadGuard<'_, View> {
        // No code panics while holding the lock; recover if one ever does.
        self.view
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, View> {
        self.view
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn line(record: &Revocation) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(record).expect("a revocation serialises");
    bytes.push(b'\n');
    bytes
}

struct AppendError {
    error: io::Error,
    /// Whether the file was cut back to its length before the append.
    undone: bool,
}

/// Appends one line and syncs it; on failure, cuts the file back to `len`.
fn append(mut file: &File, bytes: &[u8], len: u64) -> Result<(), AppendError> {
    let result = file.write_all(bytes).and_then(|()| file.sync_data());
    result.map_err(|error| AppendError {
        error,
        undone: file.set_len(len).and_then(|()| file.sync_data()).is_ok(),
    })
}

/// Parses the log: the records of its complete lines, and how many bytes
/// those lines take. Bytes after the last newline are a torn append.
fn replay(bytes: &[u8]) -> Result<(Vec<Revocation>, usize), String> {
    let mut records: Vec<Revocation> = Vec::new();
    let mut complete = 0;
    for (index, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let Some(json) = line.strip_suffix(b"\n") else {
            break;
        };
        let number = index + 1;
        let record: Revocation = serde_json::from_slice(json)
            .map_err(|error| format!("line {number} is not a revocation: {error}"))?;
        if records.last().is_some_and(|last| record.seq <= last.seq) || record.seq == 0 {
            return Err(format!("line {number}: seq {} is out of order", record.seq));
        }
        if record.app == 0 {
            return Err(format!("line {number}: app 0"));
        }
        chat_wire::validate_user_id(&record.user)
            .map_err(|error| format!("line {number}: {error}"))?;
        records.push(record);
        complete += line.len();
    }
    Ok((records, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL_MAX: u64 = 3_600;

    fn open(dir: &Path, now: i64) -> (RevocationLog, OpenReport) {
        RevocationLog::open(dir, TTL_MAX, now).unwrap()
    }

    #[tokio::test]
    async fn revocations_are_replayed_and_seq_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let now = clock::now_s();
        let (log, report) = open(dir.path(), now);
        assert_eq!(
            report,
            OpenReport {
                live: 0,
                dropped: 0,
                torn_bytes: 0
            }
        );
        let a = log.revoke(1, "alice".into()).await.unwrap();
        let b = log.revoke(2, "bob".into()).await.unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert!(a.revoked_at > now);
        drop(log);
        let (log, report) = open(dir.path(), now);
        assert_eq!(report.live, 2);
        assert_eq!(log.page(0, 10).revocations, vec![a.clone(), b.clone()]);
        assert_eq!(log.revoke(1, "carol".into()).await.unwrap().seq, 3);
        let page = log.page(1, 1);
        assert_eq!(
            (page.revocations, page.last_seq, page.has_more),
            (vec![b], 2, true)
        );
        let page = log.page(3, 10);
        assert_eq!(
            (page.revocations.len(), page.last_seq, page.has_more),
            (0, 3, false)
        );
        // A poller ahead of the log learns the log's position.
        assert_eq!(log.page(99, 10).last_seq, 3);
    }

    #[tokio::test]
    async fn mints_after_a_revocation_are_not_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), clock::now_s());
        let before = log.issue_time(1, "alice").await.unwrap();
        let first = log.revoke(1, "alice".into()).await.unwrap();
        assert!(before < first.revoked_at);
        let after = log.issue_time(1, "alice").await.unwrap();
        assert!(after >= first.revoked_at);
        assert!(after <= clock::now_s());
        // A second revocation right away moves past the token just minted
        // (the integration tests mint again after it).
        let second = log.revoke(1, "alice".into()).await.unwrap();
        assert!(after < second.revoked_at);
        // Other users do not wait.
        let started = std::time::Instant::now();
        log.issue_time(1, "bob").await.unwrap();
        log.issue_time(2, "alice").await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_torn_tail_is_dropped_and_appends_go_on_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let now = clock::now_s();
        let (log, _) = open(dir.path(), now);
        log.revoke(1, "alice".into()).await.unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"seq":2,"app":1,"us"#).unwrap();
        drop(file);
        let (log, report) = open(dir.path(), now);
        assert_eq!((report.live, report.torn_bytes), (1, 20));
        assert_eq!(log.revoke(1, "bob".into()).await.unwrap().seq, 2);
        drop(log);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        // Zeros from a power loss are torn bytes too.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0; 40]).unwrap();
        drop(file);
        assert_eq!(open(dir.path(), now).1.live, 2);
    }

    #[test]
    fn corruption_inside_the_file_refuses_to_start() {
        for text in [
            "not json\n{\"seq\":2,\"app\":1,\"user\":\"a\",\"revoked_at\":1}\n",
            "{\"seq\":2,\"app\":1,\"user\":\"a\",\"revoked_at\":1}\n{\"seq\":2,\"app\":1,\"user\":\"b\",\"revoked_at\":1}\n",
            "{\"seq\":1,\"app\":0,\"user\":\"a\",\"revoked_at\":1}\n",
            "{\"seq\":1,\"app\":1,\"user\":\"a b\",\"revoked_at\":1}\n",
        ] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(LOG_FILE), text).unwrap();
            let error = RevocationLog::open(dir.path(), TTL_MAX, 0).err().unwrap();
            assert!(format!("{error:#}").contains("corrupt"), "{error:#}");
        }
    }

    #[tokio::test]
    async fn expired_revocations_are_dropped_but_seq_survives() {
        let dir = tempfile::tempdir().unwrap();
        let now = clock::now_s();
        let (log, _) = open(dir.path(), now);
        for user in ["a", "b", "c"] {
            log.revoke(1, user.into()).await.unwrap();
        }
        let later = now + 2 + horizon(TTL_MAX);
        // In memory, on the timer.
        assert_eq!(log.prune(now), 0);
        assert_eq!(log.prune(later), 3);
        assert_eq!(log.revoked_at(1, "a"), None);
        drop(log);
        // In the file, at start: only the last record stays, for its seq.
        let (log, report) = open(dir.path(), later);
        assert_eq!((report.live, report.dropped), (0, 2));
        let page = log.page(0, 10);
        assert_eq!((page.revocations.len(), page.last_seq), (0, 3));
        assert_eq!(log.revoke(1, "d".into()).await.unwrap().seq, 4);
        let text = fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
