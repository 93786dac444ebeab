//! Each member's chats, cached for the member feed: one Redis set per
//! (app, user) and generation holding the chat numbers and `0`, a marker
//! that says the set is whole (chat numbers start at 1), so a member of no
//! chat is cached too.
//!
//! Exact by the same rule as the chats' ranges: every change of a
//! membership (a subscription, an unsubscription, a leave, an implicit
//! chat's members) queues a `Forget` of the member's set after the store
//! has answered, and before the API answers; a read while a member's
//! forget is queued goes to the store; a fill carries the count of queued
//! changes it saw, and the writer drops it when another has been queued
//! since. A set is never edited in place, only deleted and filled whole.
//!
//! Sizing: about 10 bytes per chat of a member plus about 100 bytes per
//! set, expiring `ttl_s` after its fill.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use super::{MembershipChange, ReadCache, Ticket, UserKey, Write, Writes};
use crate::store::{AppId, ChatNumber};

/// The member marker: not a chat number.
const WHOLE: &str = "0";

pub enum ChatsLookup {
    /// The member's chats, ascending.
    Hit(Vec<ChatNumber>),
    /// Ask the store; the ticket lets its answer fill the cache.
    Miss(Option<ChatsTicket>),
}

/// What a read saw of a member's membership changes.
pub type ChatsTicket = Ticket<UserKey>;

pub struct ChatsFill {
    ticket: ChatsTicket,
    chats: Vec<ChatNumber>,
}

impl ReadCache {
    /// Queues the deletion of the cached sets these changes make stale:
    /// each member's chats and each chat's members. Never waits; a full
    /// queue drops the whole cache.
    pub fn forget_memberships(&self, changes: Vec<MembershipChange>) {
        if changes.is_empty() {
            return;
        }
        let mut state = self.state();
        let Some(generation) = state.generation else {
            return;
        };
        let now = Instant::now();
        for change in &changes {
            Writes::count_queued(state.members.entry((change.app, change.user.clone())), now);
            Writes::count_queued(state.chat_members.entry((change.app, change.chat)), now);
        }
        if self
            .writes
            .try_send(Write::Forget {
                generation,
                changes,
            })
            .is_err()
        {
            drop(state);
            self.drop_cache("the write queue is full");
        }
    }

    /// The chats of `user`, if the cache holds them whole.
    pub async fn user_chats(&self, app: AppId, user: &str) -> ChatsLookup {
        let ticket = {
            let state = self.state();
            let Some(generation) = state.generation else {
                self.metrics.membership_read("off");
                return ChatsLookup::Miss(None);
            };
            let key = (app, user.to_owned());
            let writes = state.members.get(&key);
            let Some(ticket) = Ticket::take(generation, key, writes) else {
                self.metrics.membership_read("writing");
                return ChatsLookup::Miss(None);
            };
            ticket
        };
        let key = self.chats_key(ticket.generation, app, user);
        let started = Instant::now();
        let mut connection = self.connection.clone();
        let answer = tokio::time::timeout(
            self.timeout(),
            redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async::<Vec<String>>(&mut connection),
        )
        .await;
        self.metrics.observe_redis(started.elapsed());
        let Some(members) = self.answer_of(answer, "reading a member's chats", |outcome| {
            self.metrics.membership_read(outcome);
        }) else {
            return ChatsLookup::Miss(None);
        };
        match whole_set(&members) {
            Some(chats) => {
                self.metrics.membership_read("hit");
                ChatsLookup::Hit(chats)
            }
            None => {
                self.metrics.membership_read("miss");
                ChatsLookup::Miss(Some(ticket))
            }
        }
    }

    /// Fills a member's set with every chat the store listed for them.
    pub fn fill_user_chats(&self, ticket: ChatsTicket, chats: Vec<ChatNumber>) {
        // A full queue only loses the fill.
        let _ = self
            .writes
            .try_send(Write::FillChats(ChatsFill { ticket, chats }));
    }

    pub(super) async fn forget(&self, generation: u64, changes: Vec<MembershipChange>) {
        if self.state().generation != Some(generation) {
            return;
        }
        // One DEL per hash tag (an app's member sets; one chat's keys), so
        // each DEL stays on one Redis Cluster node.
        let mut by_tag: HashMap<String, BTreeSet<String>> = HashMap::new();
        for change in &changes {
            let (app, chat) = (change.app, change.chat);
            by_tag
                .entry(format!("{app}"))
                .or_default()
                .insert(self.chats_key(generation, app, &change.user));
            by_tag
                .entry(format!("{app}:{chat}"))
                .or_default()
                .insert(self.members_key(generation, app, chat));
        }
        let calls = by_tag.into_values().map(|keys| {
            let mut connection = self.connection.clone();
            async move {
                redis::cmd("DEL")
                    .arg(keys.into_iter().collect::<Vec<_>>())
                    .query_async::<i64>(&mut connection)
                    .await
            }
        });
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(self.timeout(), futures_util::future::join_all(calls)).await;
        self.metrics.observe_redis(started.elapsed());
        let outcome = outcome.map(|results| results.into_iter().collect::<Result<Vec<i64>, _>>());
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                self.metrics.write("error");
                return self.drop_cache(&format!("forgetting memberships failed: {error}"));
            }
            Err(_) => {
                self.metrics.write("error");
                return self.drop_cache("forgetting memberships timed out");
            }
        }
        self.metrics.write("forget");
        let mut state = self.state();
        if state.generation == Some(generation) {
            for change in &changes {
                let user = (change.app, change.user.clone());
                if let Some(writes) = state.members.get_mut(&user) {
                    writes.applied += 1;
                }
                if let Some(writes) = state.chat_members.get_mut(&(change.app, change.chat)) {
                    writes.applied += 1;
                }
            }
            let now = Instant::now();
            state.members.retain(|_, w| w.is_kept(now));
            state.chat_members.retain(|_, w| w.is_kept(now));
        }
    }

    pub(super) async fn apply_chats_fill(&self, fill: ChatsFill) {
        let ticket = &fill.ticket;
        let valid = {
            let state = self.state();
            ticket.is_current(state.generation, state.members.get(&ticket.key))
        };
        if !valid {
            self.metrics.write("fill_dropped");
            return;
        }
        let (app, user) = &ticket.key;
        let key = self.chats_key(ticket.generation, *app, user);
        self.write_whole_set(&key, WHOLE, &fill.chats).await;
    }

    /// Replaces the set at `key` with `marker` (which says it is whole) and
    /// `members`, in one transaction, with the cache's expiry. A failed
    /// fill only leaves the cache holding less: no drop.
    pub(super) async fn write_whole_set<T: redis::ToRedisArgs + Sync>(
        &self,
        key: &str,
        marker: &str,
        members: &[T],
    ) {
        let mut pipeline = redis::pipe();
        pipeline.atomic().del(key).ignore();
        pipeline.sadd(key, marker).ignore();
        if !members.is_empty() {
            pipeline.sadd(key, members).ignore();
        }
        pipeline.expire(key, self.config.ttl_s as i64).ignore();
        let mut connection = self.connection.clone();
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(self.timeout(), pipeline.query_async::<()>(&mut connection)).await;
        self.metrics.observe_redis(started.elapsed());
        match outcome {
            Ok(Ok(())) => self.metrics.write("fill"),
            _ => self.metrics.write("fill_error"),
        }
    }

    /// One member's set in a generation. The hash tag keeps it whole on one
    /// Redis Cluster node; the user id is the key's last part, so whatever
    /// it holds cannot run into the generation.
    fn chats_key(&self, generation: u64, app: AppId, user: &str) -> String {
        let namespace = &self.config.namespace;
        format!("{namespace}:cache:{{{app}}}:{generation}:chats:{user}")
    }
}

/// The chats of a set read back, ascending, if it holds the marker.
fn whole_set(members: &[String]) -> Option<Vec<ChatNumber>> {
    if !members.iter().any(|m| m == WHOLE) {
        return None;
    }
    let mut chats = members
        .iter()
        .filter(|m| *m != WHOLE)
        .map(|m| m.parse().ok())
        .collect::<Option<Vec<ChatNumber>>>()?;
    chats.sort_unstable();
    Some(chats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_whole_only_with_its_marker() {
        let set = |members: &[&str]| members.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        assert_eq!(whole_set(&set(&["3", "0", "1"])), Some(vec![1, 3]));
        assert_eq!(whole_set(&set(&["0"])), Some(vec![]));
        assert_eq!(
            whole_set(&set(&["3", "1"])),
            None,
            "no marker: a partial set"
        );
        assert_eq!(whole_set(&set(&[])), None, "flushed or never filled");
        assert_eq!(whole_set(&set(&["0", "x"])), None, "not ours");
    }
}
