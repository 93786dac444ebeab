//! Every mutation of the embedded store. Each is one single-writer
//! transaction committed with an fsync: the writer lock serialises chat and
//! message numbering, and a transaction that returns an error is dropped
//! unapplied, so a refused batch writes nothing.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chat_wire::{Batch, NewMessage};
use fjall::{Readable, SingleWriterWriteTx};

use super::records::{AppRecord, ChatRecord, MessageRecord, decode, encode};
use super::{Inner, keys, migrations::DURABLE};
use crate::store::{
    App, AppId, BatchReceipt, Chat, ChatNumber, ChatVersion, SUBSCRIBERS_PER_CHAT_MAX, StoreError,
    StoreResult, TokenHash,
};

pub fn create_app(
    inner: &Inner,
    title: String,
    token_hash: TokenHash,
    now_us: i64,
) -> StoreResult<App> {
    let ks = &inner.keyspaces;
    let mut tx = inner.db.write_tx().durability(DURABLE);
    let sequence = tx
        .get(&ks.meta, keys::APP_SEQUENCE)?
        .and_then(|bytes| keys::decode_u64(&bytes))
        .ok_or_else(|| StoreError::Corrupt("app sequence missing: store not migrated".into()))?;
    let id = sequence + 1;
    if tx.contains_key(&ks.app_tokens, token_hash)? {
        // 256 random bits collided: refuse rather than alias two apps.
        return Err(StoreError::Conflict("app token already in use".into()));
    }
    let record = AppRecord {
        title,
        token_hash,
        created_at_us: now_us,
        chats_count: 0,
        chat_sequence: 0,
    };
    tx.insert(&ks.meta, keys::APP_SEQUENCE, id.to_be_bytes());
    tx.insert(&ks.apps, keys::app(id), encode(&record));
    tx.insert(&ks.app_tokens, token_hash, id.to_be_bytes());
    tx.commit()?;
    Ok(record.into_app(id))
}

pub fn rename_app(inner: &Inner, app: AppId, title: String) -> StoreResult<App> {
    let mut tx = inner.db.write_tx().durability(DURABLE);
    let mut record = inner.app(&tx, app)?.ok_or(StoreError::AppNotFound)?;
    record.title = title;
    tx.insert(&inner.keyspaces.apps, keys::app(app), encode(&record));
    tx.commit()?;
    Ok(record.into_app(app))
}

pub fn create_chat(
    inner: &Inner,
    app: AppId,
    title: Option<String>,
    now_us: i64,
) -> StoreResult<Chat> {
    let ks = &inner.keyspaces;
    let mut tx = inner.db.write_tx().durability(DURABLE);
    let mut app_record = inner.app(&tx, app)?.ok_or(StoreError::AppNotFound)?;
    let number = app_record.chat_sequence + 1;
    assert!(
        inner.chat(&tx, app, number)?.is_none(),
        "chat {app}/{number} exists above the sequence"
    );
    let chat = ChatRecord {
        title,
        created_at_us: now_us,
        messages_count: 0,
        subscribers_count: 0,
        version: 1,
    };
    app_record.chat_sequence = number;
    app_record.chats_count += 1;
    tx.insert(&ks.chats, keys::chat(app, number), encode(&chat));
    tx.insert(&ks.apps, keys::app(app), encode(&app_record));
    tx.commit()?;
    Ok(chat.to_chat(app, number))
}

pub fn subscribe(inner: &Inner, app: AppId, chat: ChatNumber, user: &str) -> StoreResult<bool> {
    let mut tx = inner.db.write_tx().durability(DURABLE);
    let mut record = inner
        .chat(&tx, app, chat)?
        .ok_or(StoreError::ChatNotFound)?;
    let added = add_subscriber(inner, &mut tx, app, chat, &mut record, user)?;
    if added {
        tx.insert(
            &inner.keyspaces.chats,
            keys::chat(app, chat),
            encode(&record),
        );
        tx.commit()?;
    }
    Ok(added)
}

pub fn unsubscribe(inner: &Inner, app: AppId, chat: ChatNumber, user: &str) -> StoreResult<bool> {
    let ks = &inner.keyspaces;
    let mut tx = inner.db.write_tx().durability(DURABLE);
    let mut record = inner
        .chat(&tx, app, chat)?
        .ok_or(StoreError::ChatNotFound)?;
    let key = keys::subscriber(app, chat, user);
    if !tx.contains_key(&ks.subscribers, &key)? {
        return Ok(false);
    }
    assert!(
        record.subscribers_count > 0,
        "subscriber of {app}/{chat} with a zero count"
    );
    tx.remove(&ks.subscribers, key);
    tx.remove(&ks.user_chats, keys::user_chat(app, user, chat));
    record.subscribers_count -= 1;
    record.version += 1;
    tx.insert(&ks.chats, keys::chat(app, chat), encode(&record));
    tx.commit()?;
    Ok(true)
}

fn add_subscriber(
    inner: &Inner,
    tx: &mut SingleWriterWriteTx<'_>,
    app: AppId,
    chat: ChatNumber,
    record: &mut ChatRecord,
    user: &str,
) -> StoreResult<bool> {
    let ks = &inner.keyspaces;
    let key = keys::subscriber(app, chat, user);
    if tx.contains_key(&ks.subscribers, &key)? {
        return Ok(false);
    }
    if record.subscribers_count as usize >= SUBSCRIBERS_PER_CHAT_MAX {
        return Err(StoreError::TooManySubscribers(SUBSCRIBERS_PER_CHAT_MAX));
    }
    tx.insert(&ks.subscribers, key, []);
    tx.insert(&ks.user_chats, keys::user_chat(app, user, chat), []);
    record.subscribers_count += 1;
    record.version += 1;
    Ok(true)
}

/// Commits a batch that `Batch::validate` accepted. Idempotent: a chat that
/// exists is not created again, and a message already stored with the same
/// content is skipped. Refuses (writing
/// nothing) a message that reuses a number with other content, leaves a gap,
/// or names a chat that neither exists nor is created by the batch.
///
/// Client ids are stored with their message but not indexed: idempotency is
/// the engine's, over a bounded window of each chat's recent messages, which
/// it rebuilds from the stored messages after a restart.
pub fn commit_batch(inner: &Inner, batch: &Batch) -> StoreResult<BatchReceipt> {
    let ks = &inner.keyspaces;
    let mut tx = inner.db.write_tx().durability(DURABLE);
    let mut apps: HashMap<AppId, AppRecord> = HashMap::new();
    let mut chats: HashMap<(AppId, ChatNumber), ChatRecord> = HashMap::new();

    for new_chat in &batch.chats {
        let app = load_app(inner, &tx, &mut apps, new_chat.app)?;
        let key = (new_chat.app, new_chat.number);
        // A chat that exists is left as it is, so that replaying the batch
        // after its subscribers changed does not undo the change.
        if inner.chat(&tx, key.0, key.1)?.is_some() {
            continue;
        }
        app.chats_count += 1;
        app.chat_sequence = app.chat_sequence.max(new_chat.number);
        let mut record = ChatRecord {
            title: None,
            created_at_us: new_chat.created_at_us,
            messages_count: 0,
            subscribers_count: 0,
            version: 1,
        };
        for user in &new_chat.subscribers {
            add_subscriber(inner, &mut tx, key.0, key.1, &mut record, user)?;
        }
        chats.insert(key, record);
    }

    for message in &batch.messages {
        load_app(inner, &tx, &mut apps, message.app)?;
        let chat = match chats.entry((message.app, message.chat)) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let record = inner.chat(&tx, message.app, message.chat)?.ok_or_else(|| {
                    StoreError::Conflict(format!("chat {} does not exist", message.chat))
                })?;
                entry.insert(record)
            }
        };
        commit_message(inner, &mut tx, chat, message)?;
    }

    for ((app, number), record) in &chats {
        tx.insert(&ks.chats, keys::chat(*app, *number), encode(record));
    }
    for (id, record) in &apps {
        tx.insert(&ks.apps, keys::app(*id), encode(record));
    }
    tx.commit()?;
    let mut chat_versions: Vec<ChatVersion> = chats
        .iter()
        .map(|(&(app, chat), record)| ChatVersion {
            app,
            chat,
            version: record.version,
            last_number: record.messages_count,
        })
        .collect();
    chat_versions.sort_unstable_by_key(|v| (v.app, v.chat));
    Ok(BatchReceipt {
        batch_id: batch.batch_id,
        messages: batch.messages.len() as u64,
        chats: batch.chats.len() as u64,
        chat_versions,
    })
}

fn load_app<'a>(
    inner: &Inner,
    tx: &SingleWriterWriteTx<'_>,
    apps: &'a mut HashMap<AppId, AppRecord>,
    app: AppId,
) -> StoreResult<&'a mut AppRecord> {
    match apps.entry(app) {
        Entry::Occupied(entry) => Ok(entry.into_mut()),
        Entry::Vacant(entry) => {
            let record = inner.app(tx, app)?.ok_or(StoreError::AppNotFound)?;
            Ok(entry.insert(record))
        }
    }
}

fn commit_message(
    inner: &Inner,
    tx: &mut SingleWriterWriteTx<'_>,
    chat: &mut ChatRecord,
    message: &NewMessage,
) -> StoreResult<()> {
    let ks = &inner.keyspaces;
    let (app, chat_number, number) = (message.app, message.chat, message.number);
    let record = MessageRecord {
        sender: message.sender.clone(),
        recipients: message.recipients.clone(),
        body: message.body.clone(),
        client_id: message.client_id.clone(),
        sent_at_us: message.sent_at_us,
    };
    let key = keys::message(app, chat_number, number);
    if number <= chat.messages_count {
        let stored = tx.get(&ks.messages, key)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "message {chat_number}/{number} missing below the count"
            ))
        })?;
        if decode::<MessageRecord>(&stored)? != record {
            return Err(StoreError::Conflict(format!(
                "message {chat_number}/{number} exists with other content"
            )));
        }
        return Ok(());
    }
    if number != chat.messages_count + 1 {
        return Err(StoreError::Conflict(format!(
            "message {chat_number}/{number} would leave a gap after {}",
            chat.messages_count
        )));
    }
    tx.insert(&ks.messages, key, encode(&record));
    chat.messages_count = number;
    Ok(())
}
