//! The persistence API's answer to a batch, as JSON.

use serde::{Deserialize, Serialize};

/// What a batch commit reports. `batch_id`, `messages` and `chats` derive
/// from the batch alone, so a replay answers them the same; `chat_versions`
/// reports the state of each chat the batch touched as it is after the
/// commit, so the engine can tell whether its subscriber set is current
/// before it fans out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReceipt {
    pub batch_id: u64,
    pub messages: u64,
    pub chats: u64,
    /// Sorted by (app, chat).
    pub chat_versions: Vec<ChatVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatVersion {
    pub app: u64,
    pub chat: u64,
    /// The subscriber-set version.
    pub version: u64,
    pub last_number: u64,
}
