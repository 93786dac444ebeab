//! Whether a user is a member of the chats a sync names, asked of the
//! persistence API (the store) once per sync frame, never answered from a
//! cache: a membership change the API has acknowledged applies to the very
//! next sync on every shard, and a sync of a chat that does not exist
//! leaves no trace in the owner (no "does not exist" that a later creation
//! would have to undo).
//!
//! Cost: one internal request per sync frame (of up to 1,000 chats), one
//! key lookup per chat in the store; syncs happen at connect and reconnect,
//! not per message.

use std::collections::HashSet;

use bytes::Bytes;
use serde::Deserialize;

use crate::error::EngineError;
use crate::router::{AppId, ChatNumber};
use crate::shard::Shard;

#[derive(Deserialize)]
struct Memberships {
    chats: Vec<ChatNumber>,
}

/// The chats of `chats` that `user` is a member of now.
pub async fn member_chats(
    shard: &Shard,
    app: AppId,
    user: &str,
    chats: &[ChatNumber],
) -> Result<HashSet<ChatNumber>, EngineError> {
    let body = serde_json::json!({ "chats": chats }).to_string();
    let path = format!("/internal/v1/apps/{app}/users/{user}/memberships");
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
    let answer: Memberships = serde_json::from_slice(&response.body)
        .map_err(|error| EngineError::Internal(format!("unreadable memberships: {error}")))?;
    let asked: HashSet<ChatNumber> = chats.iter().copied().collect();
    // Only what was asked: an answer naming other chats is not believed.
    Ok(answer
        .chats
        .into_iter()
        .filter(|chat| asked.contains(chat))
        .collect())
}
