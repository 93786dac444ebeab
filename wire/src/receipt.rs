//! The persistence API's answer to a batch, as JSON.

use serde::{Deserialize, Serialize};

/// What a batch commit reports. A batch commits per chat: the chats listed
/// in `refused` wrote nothing (each with the reason), every other chat of the
/// batch committed, all in one atomic, durable write. One chat's refusal
/// never fails another chat's (or another app's) messages.
///
/// `messages` and `chats` count what committed (messages stored now or found
/// stored by an earlier attempt of the same batch; implicit chats created or
/// found); `chat_versions` reports the state of each committed chat as it is
/// after the commit, so the engine can tell whether its subscriber set is
/// current before it fans out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReceipt {
    pub batch_id: u64,
    pub messages: u64,
    pub chats: u64,
    /// Sorted by (app, chat).
    pub chat_versions: Vec<ChatVersion>,
    /// Sorted by (app, chat).
    #[serde(default)]
    pub refused: Vec<RefusedChat>,
    /// Microseconds the API spent on the request, from its first byte read
    /// to the answer (body, decode, durable commit): the engine subtracts it
    /// from its own round trip to see how long it waited on itself. Set by
    /// the HTTP handler; 0 from an API that does not report it.
    #[serde(default)]
    pub api_us: u64,
}

/// A chat of the batch that the store refused; nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedChat {
    pub app: u64,
    pub chat: u64,
    pub reason: Refusal,
    /// For people and logs.
    pub message: String,
}

/// Why a chat of a batch was refused. Each is decided by the store against
/// what it holds when the batch commits, not by the engine's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    /// The app does not exist.
    AppNotFound,
    /// A message names a chat that neither exists nor is created by the batch.
    ChatNotFound,
    /// The batch creates the chat implicitly, but it exists already (made by
    /// `POST /v1/chats` or another implicit creation meanwhile): its new
    /// messages were numbered for a chat of their own.
    ChatExists,
    /// A user's implicit creation names a number too far above the app's
    /// highest chat number.
    ChatNumberTooHigh,
    /// A message's sender is not a subscriber (and it was not sent with the
    /// app token).
    NotSubscribed { sender: String },
    /// A number reused with other content, or a gap after the stored count.
    Conflict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatVersion {
    pub app: u64,
    pub chat: u64,
    /// The subscriber-set version.
    pub version: u64,
    pub last_number: u64,
}
