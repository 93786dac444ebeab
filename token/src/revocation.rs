//! Revocations as the other services see them: the JSON of
//! `GET /internal/v1/revocations` ([`RevocationsPage`], [`Revocation`]) and
//! the [`RevocationList`] a verifier keeps after polling it.
//!
//! # The rule
//!
//! A revocation of user `user` of app `app` carries `revoked_at`, whole
//! seconds since the Unix epoch. A token of that user is revoked if and only
//! if its `iat < revoked_at`.
//!
//! JWT `iat` has one-second resolution, so "issued before the revocation"
//! cannot be decided from `iat` alone for tokens minted in the revocation's
//! own second. The auth service removes the ambiguity at both ends, since it
//! chooses both numbers:
//!
//! - `revoked_at` is the first whole second *after* the revocation instant
//!   (`floor(now) + 1`), so every token minted before the revocation (whose
//!   `iat <= floor(now)`) is revoked, including those of the same second;
//! - a mint for a user whose `revoked_at` is still in the future (a
//!   revocation less than a second old) waits until that second begins
//!   before it signs, so its `iat = floor(now) >= revoked_at` and the token
//!   is never revoked by it, including in the revocation's second. The wait
//!   is under a second and touches only the users revoked in the last
//!   second; no token ever carries an `iat` ahead of the service's clock.
//!
//! So "tokens of that user issued before now stop working; tokens minted
//! afterwards work" holds exactly, for every interleaving of mints and
//! revocations (a second revocation in the same second included: it gets
//! the next `revoked_at`, after every token minted in between), with the one
//! assumption that the auth service's wall clock does not step backwards
//! (slewing is fine; a mint that would have to wait more than
//! the auth service's `MINT_WAIT_MAX_S` because the clock went
//! back is refused as `unavailable`).
//!
//! # Polling
//!
//! The engine and the persistence API poll
//! `GET /internal/v1/revocations?after=<RevocationList::after()>` with the
//! operator key (every second), feed each page to
//! [`RevocationList::apply_page`], and repeat at once while `has_more`.
//! Between polls they check every token they accept with
//! [`RevocationList::is_revoked`]; a revocation is thus enforced everywhere
//! within about a poll interval of its answer.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::limits::RETIRE_GRACE_S;

/// One revocation. `seq` numbers them from 1 in the order the auth service
/// recorded them; it is the cursor of the polling route.
///
/// Unknown fields are ignored on read (no `deny_unknown_fields`), so a newer
/// auth service may add some without breaking older pollers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub seq: u64,
    pub app: u64,
    pub user: String,
    /// Whole seconds since the epoch: tokens with `iat < revoked_at` are revoked.
    pub revoked_at: i64,
}

/// The answer of `GET /internal/v1/revocations?after=<seq>`: revocations
/// with `seq > after` in `seq` order, at most
/// [`REVOCATIONS_PAGE_MAX`](crate::limits::REVOCATIONS_PAGE_MAX).
///
/// `last_seq` is the `after` of the next poll: the `seq` of the page's last
/// revocation, or, for an empty page, the highest `seq` the service has
/// recorded. A `last_seq` below the `after` asked means the service's log
/// is not the one the poller followed (its data dir was replaced): the
/// poller must start over from 0, which [`RevocationList::apply_page`] does.
///
/// Revocations that can no longer matter (every token they revoke has
/// expired) are dropped by the service, so a poller starting from 0 gets
/// only the live ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationsPage {
    pub revocations: Vec<Revocation>,
    pub last_seq: u64,
    pub has_more: bool,
}

/// What a verifier knows of the revocations: the latest `revoked_at` per
/// app and user, and the cursor of its next poll.
#[derive(Debug, Clone, Default)]
pub struct RevocationList {
    /// app → user → revoked_at. Nested so a lookup by `&str` allocates nothing.
    revoked: HashMap<u64, HashMap<String, i64>>,
    after: u64,
    entries: usize,
}

impl RevocationList {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `after` of the next poll.
    pub fn after(&self) -> u64 {
        self.after
    }

    /// Users with a revocation on record.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Whether a token of `user` of `app` issued at `iat` (its claim) is revoked.
    pub fn is_revoked(&self, app: u64, user: &str, iat: i64) -> bool {
        self.revoked_at(app, user)
            .is_some_and(|revoked_at| iat < revoked_at)
    }

    /// The latest `revoked_at` of a user, if any.
    pub fn revoked_at(&self, app: u64, user: &str) -> Option<i64> {
        self.revoked.get(&app)?.get(user).copied()
    }

    /// Records revocations (in any order, repeats included): a user's
    /// `revoked_at` only ever moves forward, and the cursor moves to the
    /// highest `seq` seen.
    pub fn apply(&mut self, records: impl IntoIterator<Item = Revocation>) {
        for record in records {
            self.after = self.after.max(record.seq);
            let users = self.revoked.entry(record.app).or_default();
            match users.get_mut(record.user.as_str()) {
                Some(revoked_at) => *revoked_at = (*revoked_at).max(record.revoked_at),
                None => {
                    users.insert(record.user, record.revoked_at);
                    self.entries += 1;
                }
            }
        }
    }

    /// Applies a page polled with `after = self.after()`, and returns
    /// `has_more` (poll again at once). A page whose `last_seq` is below the
    /// cursor comes from a replaced log: the list keeps what it knows (a
    /// revocation, once seen, stays enforced until [`prune`](Self::prune)
    /// drops it) and polls the new log from 0.
    pub fn apply_page(&mut self, page: RevocationsPage) -> bool {
        if page.last_seq < self.after {
            tracing::warn!(
                cursor = self.after,
                last_seq = page.last_seq,
                "the revocation log was replaced; reading it from the start"
            );
            self.after = 0;
            return true;
        }
        self.apply(page.revocations);
        self.after = self.after.max(page.last_seq);
        page.has_more
    }

    /// Forgets revocations that can no longer matter at `now_s`: every token
    /// they revoke has `iat < revoked_at`, so it expired by
    /// `revoked_at + token_ttl_max_s` (the auth service's longest token life)
    /// plus the verifiers' leeway. The list stays bounded by the revocations
    /// of one token life.
    pub fn prune(&mut self, now_s: i64, token_ttl_max_s: u64) {
        let horizon = horizon(token_ttl_max_s);
        let mut removed = 0;
        self.revoked.retain(|_, users| {
            let before = users.len();
            users.retain(|_, revoked_at| !expired(*revoked_at, horizon, now_s));
            removed += before - users.len();
            !users.is_empty()
        });
        self.entries -= removed;
    }
}

/// Seconds after `revoked_at` (or after a key stopped signing) during which
/// a token it concerns may still be accepted somewhere.
pub fn horizon(token_ttl_max_s: u64) -> i64 {
    i64::try_from(token_ttl_max_s)
        .unwrap_or(i64::MAX)
        .saturating_add(RETIRE_GRACE_S)
}

/// Whether a revocation (or a retired key) at `at` no longer matters at `now_s`.
pub fn expired(at: i64, horizon: i64, now_s: i64) -> bool {
    at.saturating_add(horizon) <= now_s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, app: u64, user: &str, revoked_at: i64) -> Revocation {
        Revocation {
            seq,
            app,
            user: user.into(),
            revoked_at,
        }
    }

    #[test]
    fn revoked_means_issued_before() {
        let mut list = RevocationList::new();
        assert!(!list.is_revoked(1, "alice", 0));
        list.apply([record(1, 1, "alice", 100)]);
        assert!(list.is_revoked(1, "alice", 99));
        assert!(!list.is_revoked(1, "alice", 100));
        assert!(!list.is_revoked(1, "alice", 101));
        // Scoped to the app and the user.
        assert!(!list.is_revoked(2, "alice", 99));
        assert!(!list.is_revoked(1, "bob", 99));
        assert_eq!(list.after(), 1);
    }

    #[test]
    fn revoked_at_only_moves_forward() {
        let mut list = RevocationList::new();
        list.apply([record(2, 1, "alice", 200), record(1, 1, "alice", 100)]);
        assert_eq!(list.revoked_at(1, "alice"), Some(200));
        assert_eq!((list.len(), list.after()), (1, 2));
        list.apply([record(3, 1, "alice", 300)]);
        assert_eq!(list.revoked_at(1, "alice"), Some(300));
    }

    #[test]
    fn pages_move_the_cursor_and_a_replaced_log_restarts_it() {
        let mut list = RevocationList::new();
        let more = list.apply_page(RevocationsPage {
            revocations: vec![record(1, 1, "a", 10), record(2, 1, "b", 10)],
            last_seq: 2,
            has_more: true,
        });
        assert!(more);
        assert_eq!(list.after(), 2);
        // Pruned records leave an empty page whose last_seq is still ahead.
        assert!(!list.apply_page(RevocationsPage {
            revocations: vec![],
            last_seq: 9,
            has_more: false,
        }));
        assert_eq!(list.after(), 9);
        // A log behind the cursor: start over, keep what is known.
        assert!(list.apply_page(RevocationsPage {
            revocations: vec![],
            last_seq: 3,
            has_more: false,
        }));
        assert_eq!(list.after(), 0);
        assert!(list.is_revoked(1, "a", 9));
    }

    #[test]
    fn prune_drops_what_can_no_longer_matter() {
        let mut list = RevocationList::new();
        list.apply([record(1, 1, "old", 1_000), record(2, 2, "new", 5_000)]);
        let ttl_max = 100;
        let now = 1_000 + horizon(ttl_max);
        list.prune(now - 1, ttl_max);
        assert_eq!(list.len(), 2);
        list.prune(now, ttl_max);
        assert_eq!(list.len(), 1);
        assert_eq!(list.revoked_at(1, "old"), None);
        assert_eq!(list.revoked_at(2, "new"), Some(5_000));
    }

    #[test]
    fn json_shape() {
        let page = RevocationsPage {
            revocations: vec![record(7, 3, "alice", 1_700_000_001)],
            last_seq: 7,
            has_more: false,
        };
        let json = serde_json::to_string(&page).unwrap();
        assert_eq!(
            json,
            r#"{"revocations":[{"seq":7,"app":3,"user":"alice","revoked_at":1700000001}],"last_seq":7,"has_more":false}"#
        );
        assert_eq!(
            serde_json::from_str::<RevocationsPage>(&json).unwrap(),
            page
        );
    }
}
