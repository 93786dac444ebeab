//! Whether users are members of the chats their syncs name, asked of the
//! persistence API (the store) before every sync, never answered from a
//! cache here: a membership change the API has acknowledged applies to the
//! very next sync on every shard, and a sync of a chat that does not exist
//! leaves no trace in the owner (no "does not exist" that a later creation
//! would have to undo).
//!
//! Batched per shard and app (`POST /internal/v1/apps/{app}/memberships`):
//! a check is sent at once while fewer than `CALLS_IN_FLIGHT_MAX` calls of
//! its app are on their way; otherwise it waits, and the next call to come
//! back sends everything waiting as one request. A reconnect storm (hundreds
//! of syncs on one shard within a millisecond) so costs a few requests and
//! no connections past the client's idle pool, where one request per sync
//! opened a new TCP connection for each past the eighth. A check waits for
//! at most one round trip more than it would alone.
//!
//! Cost on the API: one key lookup per chat (or one Redis round trip per
//! check with the read cache); syncs happen at connect and reconnect, not
//! per message.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use bytes::Bytes;
use chat_wire::memberships::{
    MEMBERSHIP_CHECK_CHATS_MAX, MEMBERSHIP_CHECKS_BODY_BYTES_MAX, MEMBERSHIP_CHECKS_MAX,
};
use chat_wire::{MembershipAnswers, MembershipCheck, ReadState};

use crate::error::EngineError;
use crate::router::{AppId, ChatNumber};
use crate::shard::Shard;

/// Calls of one app a shard has on their way at once.
const CALLS_IN_FLIGHT_MAX: usize = 2;
/// Checks of one app that may wait on a shard; past it a sync is refused
/// as overloaded.
const WAITING_MAX: usize = 10_000;
/// Bytes a chat takes in the body at most (its number and the number seen,
/// 20 digits and a comma each), and a check's JSON around its user, chats
/// and seen numbers. A user id needs no escaping (its alphabet is
/// `[A-Za-z0-9._\-@:]`), so it takes its length.
const CHAT_BYTES_MAX: usize = 42;
const CHECK_OVERHEAD_BYTES: usize = 44;

/// The chats the user is a member of, each with the user's read state.
pub type Members = HashMap<ChatNumber, ReadState>;
type Answer = Result<Members, EngineError>;

/// A shard's membership checks that wait for a call, per app.
#[derive(Default)]
pub struct MembershipChecks {
    apps: RefCell<HashMap<AppId, AppChecks>>,
}

#[derive(Default)]
struct AppChecks {
    waiting: VecDeque<Waiting>,
    calls_in_flight: usize,
}

struct Waiting {
    check: MembershipCheck,
    answer: flume::Sender<Answer>,
}

/// The chats of `chats` (each with the last number the client has seen)
/// that `user` is a member of now, with their read state.
pub async fn member_chats(
    shard: &Rc<Shard>,
    app: AppId,
    user: &str,
    chats: &[(ChatNumber, u64)],
) -> Answer {
    let (answer, answered) = flume::bounded(1);
    let start_call = {
        let mut apps = shard.memberships.apps.borrow_mut();
        let checks = apps.entry(app).or_default();
        if checks.waiting.len() >= WAITING_MAX {
            tracing::warn!(app, "membership check: too many waiting");
            return Err(EngineError::Overloaded);
        }
        checks.waiting.push_back(Waiting {
            check: MembershipCheck {
                user: user.to_owned(),
                chats: chats.iter().map(|&(chat, _)| chat).collect(),
                seen: chats.iter().map(|&(_, seen)| seen).collect(),
            },
            answer,
        });
        shard.metrics.membership_checks.inc();
        let start_call = checks.calls_in_flight < CALLS_IN_FLIGHT_MAX;
        if start_call {
            checks.calls_in_flight += 1;
        }
        start_call
    };
    if start_call {
        crate::task::spawn(run_calls(Rc::clone(shard), app));
    }
    // A caller that waits is answered by the call that takes its check;
    // every taken check is answered, so a closed channel is a bug's trace.
    answered
        .recv_async()
        .await
        .unwrap_or_else(|_| Err(EngineError::Internal("membership check dropped".into())))
}

/// Sends what waits for `app`, one call at a time, until nothing waits.
async fn run_calls(shard: Rc<Shard>, app: AppId) {
    loop {
        let taken = {
            let mut apps = shard.memberships.apps.borrow_mut();
            let Some(checks) = apps.get_mut(&app) else {
                debug_assert!(false, "a call runs for an app with no checks");
                return;
            };
            let taken = take_call(&mut checks.waiting);
            if taken.is_empty() {
                checks.calls_in_flight -= 1;
                if checks.calls_in_flight == 0 {
                    apps.remove(&app);
                }
                return;
            }
            taken
        };
        shard.metrics.membership_check_calls.inc();
        let (checks, answers): (Vec<MembershipCheck>, Vec<flume::Sender<Answer>>) = taken
            .into_iter()
            .map(|waiting| (waiting.check, waiting.answer))
            .unzip();
        match call(&shard, app, &checks).await {
            Ok(members) => {
                for ((check, answer), members) in checks.iter().zip(answers).zip(members) {
                    // Only what was asked: an answer naming other chats is
                    // not believed. A caller gone meanwhile needs no answer.
                    let asked: HashSet<ChatNumber> = check.chats.iter().copied().collect();
                    let members = members
                        .into_iter()
                        .filter(|(chat, _)| asked.contains(chat))
                        .collect();
                    let _ = answer.try_send(Ok(members));
                }
            }
            Err(error) => {
                for answer in answers {
                    let _ = answer.try_send(Err(error.clone()));
                }
            }
        }
    }
}

/// The waiting checks one request takes, oldest first, within the API's
/// bounds on checks, chats and body bytes (always the first, which alone
/// fits: one sync frame names at most `SYNC_CHATS_MAX` chats).
fn take_call(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let mut taken = Vec::new();
    let (mut chats, mut bytes) = (0, 0);
    while let Some(next) = waiting.front() {
        let next_chats = next.check.chats.len();
        let next_bytes = CHECK_OVERHEAD_BYTES + next.check.user.len() + next_chats * CHAT_BYTES_MAX;
        let fits = taken.len() < MEMBERSHIP_CHECKS_MAX
            && chats + next_chats <= MEMBERSHIP_CHECK_CHATS_MAX
            && bytes + next_bytes <= MEMBERSHIP_CHECKS_BODY_BYTES_MAX;
        if !fits && !taken.is_empty() {
            break;
        }
        chats += next_chats;
        bytes += next_bytes;
        taken.extend(waiting.pop_front());
    }
    taken
}

/// `chat_wire::MembershipChecks`, borrowed.
#[derive(serde::Serialize)]
struct ChecksBody<'a> {
    checks: &'a [MembershipCheck],
}

/// One request for `checks`; the answers in their order, each member chat
/// with its read state.
async fn call(
    shard: &Shard,
    app: AppId,
    checks: &[MembershipCheck],
) -> Result<Vec<Vec<(ChatNumber, ReadState)>>, EngineError> {
    let body = serde_json::to_vec(&ChecksBody { checks })
        .map_err(|error| EngineError::Internal(format!("encoding membership checks: {error}")))?;
    let path = format!("/internal/v1/apps/{app}/memberships");
    let response = shard
        .api
        .post(&path, Bytes::from(body), "application/json")
        .await
        .map_err(|error| {
            tracing::warn!(%error, "membership check: persistence API unavailable");
            EngineError::Overloaded
        })?;
    if !response.status.is_success() {
        tracing::warn!(status = %response.status, "membership check refused");
        return Err(EngineError::Overloaded);
    }
    let answer: MembershipAnswers = serde_json::from_slice(&response.body)
        .map_err(|error| EngineError::Internal(format!("unreadable memberships: {error}")))?;
    let paired = answer.reads.len() == checks.len()
        && answer
            .members
            .iter()
            .zip(&answer.reads)
            .all(|(members, reads)| members.len() == reads.len());
    if answer.members.len() != checks.len() || !paired {
        return Err(EngineError::Internal(format!(
            "{} membership answers and {} read states to {} checks",
            answer.members.len(),
            answer.reads.len(),
            checks.len()
        )));
    }
    Ok(answer
        .members
        .into_iter()
        .zip(answer.reads)
        .map(|(members, reads)| members.into_iter().zip(reads).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(user: &str, chats: usize) -> Waiting {
        let (answer, _) = flume::bounded(1);
        Waiting {
            check: MembershipCheck {
                user: user.to_owned(),
                chats: (1..=chats as u64).map(|n| n + (1 << 52)).collect(),
                seen: (1..=chats as u64).map(|n| n + (1 << 52)).collect(),
            },
            answer,
        }
    }

    fn taken_sizes(waiting: &mut VecDeque<Waiting>) -> Vec<usize> {
        let mut sizes = Vec::new();
        loop {
            let taken = take_call(waiting);
            if taken.is_empty() {
                return sizes;
            }
            sizes.push(taken.len());
        }
    }

    /// Every call the engine builds is one the API takes: within the
    /// checks, chats and body bounds, the body readable as the wire type.
    #[test]
    fn calls_stay_within_the_apis_bounds() {
        let cases: [(usize, usize); 4] = [(2_000, 1), (30, 1_000), (5, 4_000), (700, 7)];
        for (checks, chats) in cases {
            let user = "u".repeat(chat_wire::limits::USER_ID_BYTES_MAX);
            let mut queue: VecDeque<Waiting> = (0..checks)
                .map(|_| waiting(&user, chats.min(1_000)))
                .collect();
            let mut total = 0;
            while !queue.is_empty() {
                let taken = take_call(&mut queue);
                assert!(!taken.is_empty());
                total += taken.len();
                let checks: Vec<MembershipCheck> =
                    taken.into_iter().map(|waiting| waiting.check).collect();
                let body = serde_json::to_vec(&ChecksBody { checks: &checks }).unwrap();
                assert!(checks.len() <= MEMBERSHIP_CHECKS_MAX);
                let chats_total: usize = checks.iter().map(|check| check.chats.len()).sum();
                assert!(chats_total <= MEMBERSHIP_CHECK_CHATS_MAX);
                assert!(
                    body.len() <= MEMBERSHIP_CHECKS_BODY_BYTES_MAX,
                    "{}",
                    body.len()
                );
                let parsed: chat_wire::MembershipChecks = serde_json::from_slice(&body).unwrap();
                assert_eq!(parsed.checks, checks);
            }
            assert_eq!(total, checks, "every check taken once");
        }
    }

    #[test]
    fn waiting_checks_go_together_oldest_first() {
        let mut queue: VecDeque<Waiting> = (0..3).map(|i| waiting(&format!("u{i}"), 2)).collect();
        let taken = take_call(&mut queue);
        let users: Vec<&str> = taken.iter().map(|w| w.check.user.as_str()).collect();
        assert_eq!(users, ["u0", "u1", "u2"]);
        assert!(queue.is_empty());
        let mut many: VecDeque<Waiting> = (0..1_100).map(|_| waiting("u", 1)).collect();
        assert_eq!(taken_sizes(&mut many), [512, 512, 76]);
    }
}
