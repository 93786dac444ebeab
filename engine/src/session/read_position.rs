//! A `read` frame: the member's read position moves forward through the
//! persistence API (durable before anyone hears of it), then the position
//! in force and the unread count go to every connection of the member, on
//! every shard (its other devices clear their badge), this one included;
//! and the chat's owner tells its online members (`owner/read_events.rs`).

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::error::EngineError;
use crate::frames;
use crate::router::{ReadMoved, ShardMessage, ToHome, ToOwner, UserFrame};
use crate::shard::Shard;

/// The API's answer (`persistence-api` `ReadView`), the fields used here.
#[derive(Deserialize)]
struct ReadAnswer {
    number: u64,
    unread_count: u64,
    unread_capped: bool,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// Moves `user`'s position in the chat to `number` (checked by the caller)
/// and tells every connection of theirs.
pub async fn mark(
    shard: &Shard,
    app: u64,
    user: &str,
    chat: u64,
    number: u64,
) -> Result<(), EngineError> {
    let path = format!("/internal/v1/apps/{app}/chats/{chat}/reads/{user}");
    let body = Bytes::from(format!(r#"{{"number":{number}}}"#));
    let response = shard
        .api
        .put(&path, body, "application/json")
        .await
        .map_err(|error| {
            tracing::warn!(%error, "read: persistence API unavailable");
            EngineError::Overloaded
        })?;
    if !response.status.is_success() {
        return Err(refusal(response.status.as_u16(), &response.body));
    }
    let answer: ReadAnswer = serde_json::from_slice(&response.body).map_err(|error| {
        EngineError::Internal(format!("the persistence API's read answer: {error}"))
    })?;
    let frame = Arc::new(UserFrame {
        app,
        user: user.to_owned(),
        frame: frames::read(
            chat,
            user,
            frames::SyncedRead {
                number: answer.number,
                unread_count: answer.unread_count,
                unread_capped: answer.unread_capped,
            },
        ),
    });
    shard
        .owner
        .to_every_home(|| ToHome::ToUser(Arc::clone(&frame)))
        .await;
    shard.metrics.read_positions.inc();
    if answer.number != number {
        return Ok(()); // behind the position in force: nothing moved
    }
    let moved = ReadMoved {
        app,
        chat,
        user: user.to_owned(),
        number: answer.number,
    };
    let owner = shard.router.owner_of(app, chat);
    let _ = shard
        .router
        .send_to(owner, ShardMessage::Owner(ToOwner::ReadMoved(moved)))
        .await;
    Ok(())
}

/// The engine's error for the API's refusal. A chat that does not exist is
/// answered as one the user is not in: existence does not leak.
fn refusal(status: u16, body: &[u8]) -> EngineError {
    let detail = serde_json::from_slice::<ErrorAnswer>(body).ok();
    match (status, detail) {
        (403 | 404, Some(ErrorAnswer { error })) if error.code != "forbidden" => {
            EngineError::NotSubscribed
        }
        (422, Some(ErrorAnswer { error })) if error.code == "read_beyond_last" => {
            EngineError::ReadBeyondLast(error.message)
        }
        (status, _) => {
            tracing::warn!(status, "read refused by the persistence API");
            EngineError::Overloaded
        }
    }
}
