//! Read positions: per member and chat, the highest message number the
//! member has marked read. A position only moves forward, so a write is a
//! read and a conditional insert in one transaction under the single writer.

use fjall::Readable;

use super::migrations::DURABLE;
use super::{Inner, keys};
use crate::store::{AppId, ChatNumber, MessageNumber, StoreError, StoreResult};

pub fn mark_read(
    inner: &Inner,
    app: AppId,
    chat: ChatNumber,
    user: &str,
    number: MessageNumber,
) -> StoreResult<MessageNumber> {
    let mut tx = inner.db.write_tx().durability(DURABLE);
    if inner.chat(&tx, app, chat)?.is_none() {
        return Err(StoreError::ChatNotFound);
    }
    let key = keys::read_position(app, chat, user);
    let current = position(&tx, inner, &key)?;
    if number <= current {
        return Ok(current);
    }
    tx.insert(&inner.keyspaces.read_positions, key, number.to_be_bytes());
    tx.commit()?;
    Ok(number)
}

pub fn of_users(
    inner: &Inner,
    app: AppId,
    chat: ChatNumber,
    users: &[String],
) -> StoreResult<Vec<MessageNumber>> {
    let snapshot = inner.db.read_tx();
    if inner.chat(&snapshot, app, chat)?.is_none() {
        return Err(StoreError::ChatNotFound);
    }
    users
        .iter()
        .map(|user| position(&snapshot, inner, &keys::read_position(app, chat, user)))
        .collect()
}

/// The stored position under `key`; 0 when none is stored.
fn position(reader: &impl Readable, inner: &Inner, key: &[u8]) -> StoreResult<MessageNumber> {
    match reader.get(&inner.keyspaces.read_positions, key)? {
        None => Ok(0),
        Some(value) => keys::decode_u64(&value)
            .ok_or_else(|| StoreError::Corrupt("read position value".into())),
    }
}
