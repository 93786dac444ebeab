//! Each chat's member set, cached for the engine's membership checks (one
//! per WebSocket sync, so a reconnect storm after an engine restart would
//! otherwise cost a store read per client): one Redis set per chat and
//! generation with the members and `""`, a marker that says the set is
//! whole (no user id is empty). Filled from the whole subscriber set the
//! engine loads (`GET /internal/v1/apps/{app}/chats/{n}`), forgotten at
//! every change of the chat's members (`memberships::forget_memberships`),
//! and read and filled under the same queued and applied counts as every
//! other set, so an answer is never older than a change already answered.
//!
//! Sizing: about 20 bytes per member plus the user id; chats of more than
//! `MEMBERS_CACHED_MAX` members are not cached (the store answers).

use std::time::Instant;

use super::{ChatKey, ReadCache, Ticket, Write, Writes};
use crate::store::{AppId, ChatNumber};

/// The whole-set marker: not a user id.
const WHOLE: &str = "";

/// Chats with more members than this are not cached: one fill would be one
/// large write, and their members' checks are few per member anyway.
pub const MEMBERS_CACHED_MAX: usize = 10_000;

/// What a read saw of a chat's membership changes.
pub type MembersTicket = Ticket<ChatKey>;

pub struct MembersFill {
    ticket: MembersTicket,
    members: Vec<String>,
}

impl ReadCache {
    /// Taken before the store read whose answer may fill the chat's set.
    pub fn members_ticket(&self, app: AppId, chat: ChatNumber) -> Option<MembersTicket> {
        let state = self.state();
        Ticket::take(
            state.generation?,
            (app, chat),
            state.chat_members.get(&(app, chat)),
        )
    }

    /// Fills a chat's set with its whole member list, read after `ticket`.
    pub fn fill_chat_members(&self, ticket: MembersTicket, members: Vec<String>) {
        if members.len() > MEMBERS_CACHED_MAX {
            return;
        }
        // A full queue only loses the fill.
        let _ = self
            .writes
            .try_send(Write::FillMembers(MembersFill { ticket, members }));
    }

    /// Whether `user` is a member of each of `chats`, where the cache holds
    /// the chat's whole set (`None`: ask the store).
    pub async fn member_of(
        &self,
        app: AppId,
        user: &str,
        chats: &[ChatNumber],
    ) -> Vec<Option<bool>> {
        let generation = {
            let state = self.state();
            let Some(generation) = state.generation else {
                self.metrics.membership_read("off");
                return vec![None; chats.len()];
            };
            let writing = chats.iter().any(|&chat| {
                state
                    .chat_members
                    .get(&(app, chat))
                    .is_some_and(Writes::is_pending)
            });
            if writing {
                self.metrics.membership_read("writing");
                return vec![None; chats.len()];
            }
            generation
        };
        let calls = chats.iter().map(|&chat| {
            let key = self.members_key(generation, app, chat);
            let mut connection = self.connection.clone();
            async move {
                redis::cmd("SMISMEMBER")
                    .arg(key)
                    .arg(WHOLE)
                    .arg(user)
                    .query_async::<Vec<bool>>(&mut connection)
                    .await
            }
        });
        let started = Instant::now();
        let answer =
            tokio::time::timeout(self.timeout(), futures_util::future::join_all(calls)).await;
        self.metrics.observe_redis(started.elapsed());
        let Ok(answers) = answer else {
            self.metrics.membership_read("timeout");
            self.warn("reading chats' members timed out");
            return vec![None; chats.len()];
        };
        answers
            .into_iter()
            .map(|answer| match answer.as_deref() {
                Ok([true, member]) => {
                    self.metrics.membership_read("hit");
                    Some(*member)
                }
                Ok(_) => {
                    self.metrics.membership_read("miss");
                    None
                }
                Err(error) => {
                    self.metrics.membership_read("error");
                    self.warn(&format!("reading a chat's members failed: {error}"));
                    None
                }
            })
            .collect()
    }

    pub(super) async fn apply_members_fill(&self, fill: MembersFill) {
        let ticket = &fill.ticket;
        let valid = {
            let state = self.state();
            ticket.is_current(state.generation, state.chat_members.get(&ticket.key))
        };
        if !valid {
            self.metrics.write("fill_dropped");
            return;
        }
        let (app, chat) = ticket.key;
        let key = self.members_key(ticket.generation, app, chat);
        self.write_whole_set(&key, WHOLE, &fill.members).await;
    }

    /// A chat's member set in a generation, under the chat's hash tag.
    pub(super) fn members_key(&self, generation: u64, app: AppId, chat: ChatNumber) -> String {
        let namespace = &self.config.namespace;
        format!("{namespace}:cache:{{{app}:{chat}}}:{generation}:members")
    }
}
