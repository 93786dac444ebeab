//! Read positions (`0002_read_positions.cql`): a plain write whose timestamp
//! is the position itself, so the highest position wins without a Paxos
//! round, then a read of what is in force.

use std::collections::HashMap;

use super::ScyllaStore;
use super::read::{chat_row, db, select};
use crate::store::{AppId, ChatNumber, MessageNumber, StoreError, StoreResult};

pub async fn mark_read(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    user: String,
    number: MessageNumber,
) -> StoreResult<MessageNumber> {
    if chat_row(store, app, chat, false).await?.is_none() {
        return Err(StoreError::ChatNotFound);
    }
    // A position is a message number below the chat's count, so it fits
    // bigint; 0 is where every member starts and needs no row.
    let position = db(number)
        .ok_or_else(|| StoreError::Engine(format!("read position {number} is beyond bigint")))?;
    if position > 0 {
        let statements = store.statements().await?;
        store
            .inner
            .session
            .execute_unpaged(
                &statements.read_position_write,
                (position, position, app as i64, chat as i64, user.as_str()),
            )
            .await
            .map_err(super::engine_error)?;
    }
    let positions = read_positions(store, app, chat, vec![user]).await?;
    Ok(positions[0])
}

/// One range read over the members from the first of `users` to the last
/// (they are ascending): a page of subscribers costs one query.
pub async fn read_positions(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    users: Vec<String>,
) -> StoreResult<Vec<MessageNumber>> {
    debug_assert!(users.windows(2).all(|pair| pair[0] < pair[1]));
    if chat_row(store, app, chat, false).await?.is_none() {
        return Err(StoreError::ChatNotFound);
    }
    let (Some(first), Some(last)) = (users.first(), users.last()) else {
        return Ok(Vec::new());
    };
    let statements = store.statements().await?;
    let rows: Vec<(String, Option<i64>)> = select(
        &store.inner.session,
        &statements.read_positions_between,
        (app as i64, chat as i64, first.as_str(), last.as_str()),
    )
    .await?;
    let stored: HashMap<String, u64> = rows
        .into_iter()
        .map(|(member, number)| (member, number.unwrap_or(0).max(0) as u64))
        .collect();
    Ok(users
        .iter()
        .map(|user| stored.get(user).copied().unwrap_or(0))
        .collect())
}
