//! The engine's batched membership check, as JSON: before it serves a
//! WebSocket `sync`, a shard asks the persistence API which of the named
//! chats each user is a member of now. The syncs that arrive on a shard
//! while one of its checks is on its way go together in the next request
//! (`POST /internal/v1/apps/{app}/memberships`), so a reconnect storm costs
//! a few requests per shard, not one per client.

use serde::{Deserialize, Serialize};

/// Most checks (users) in one request.
pub const MEMBERSHIP_CHECKS_MAX: usize = 512;

/// Most chats named by all the checks of one request together: a request
/// costs at most this many membership lookups.
pub const MEMBERSHIP_CHECK_CHATS_MAX: usize = 4_096;

/// Largest body the engine sends, in bytes: below the API's default limit
/// on request bodies (64 KiB), with room for the JSON around the numbers.
pub const MEMBERSHIP_CHECKS_BODY_BYTES_MAX: usize = 48 * 1024;

/// One user's question: which of `chats` (at most `SYNC_CHATS_MAX`) they
/// are a member of. With `seen` (one number per chat: the last the client
/// has, as its sync says), the answer also holds the user's read state of
/// each chat they are in (`MembershipAnswers::reads`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipCheck {
    pub user: String,
    pub chats: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipChecks {
    pub checks: Vec<MembershipCheck>,
}

/// The answer: per check, in the request's order, the chats of it the user
/// is a member of (ascending), and for a check with `seen` the user's read
/// state of each of those chats, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipAnswers {
    pub members: Vec<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<Vec<ReadState>>,
}

/// A member's read state of one chat as a sync needs it: the read position,
/// and the unread messages up to the number the client has seen (those
/// after it the sync itself sends, so the engine counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadState {
    /// The read position: the highest number read, 0 for none.
    pub number: u64,
    /// Messages after `number` up to the check's `seen` that the user may
    /// see and did not send; 0 when `number` is at or past `seen`.
    pub unread_through_seen: u64,
    /// The count covers only the newest numbers up to `seen`: the window
    /// was wider than the API reads for one count.
    #[serde(default)]
    pub capped: bool,
}
