//! Every mutation of the embedded store. Each is one single-writer
//! transaction committed with an fsync: the writer lock serialises chat and
//! message numbering, and a transaction that returns an error is dropped
//! unapplied, so a refused write changes nothing.
//!
//! Nothing in here may panic: fjall takes its writer lock with
//! `lock().expect("poisoned tx lock")`, so a panic while a transaction is
//! open would fail every later write of every app until a restart. Every
//! check is an error, all arithmetic is checked, and every number that
//! arrives from outside was bounded by [`NUMBER_MAX`] before it got here.

use std::collections::{BTreeMap, HashMap, HashSet};

use chat_wire::limits::{IMPLICIT_CHAT_NUMBERS_AHEAD_MAX, NUMBER_MAX};
use chat_wire::{Batch, NewChat, NewMessage, Refusal, RefusedChat};
use fjall::{Readable, SingleWriterWriteTx};

use super::records::{AppRecord, ChatRecord, MessageRange, MessageRecord, decode, encode};
use super::{Inner, keys, migrations::DURABLE};
use crate::store::{
    App, AppId, BatchReceipt, Chat, ChatNumber, ChatVersion, LoggedBatch, LoggedMessage,
    SUBSCRIBERS_PER_CHAT_MAX, StoreError, StoreResult, TokenHash,
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
    let number = app_record
        .chat_sequence
        .checked_add(1)
        .filter(|&number| number <= NUMBER_MAX)
        .ok_or(StoreError::NumbersExhausted)?;
    if inner.chat(&tx, app, number)?.is_some() {
        return Err(StoreError::Corrupt(format!(
            "chat {app}/{number} exists above the sequence"
        )));
    }
    let chat = ChatRecord {
        title,
        created_at_us: now_us,
        messages_count: 0,
        subscribers_count: 0,
        version: 1,
    };
    app_record.chat_sequence = number;
    app_record.chats_count = checked_increment(app_record.chats_count, "chats_count")?;
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
    record.subscribers_count = record.subscribers_count.checked_sub(1).ok_or_else(|| {
        StoreError::Corrupt(format!("subscriber of {app}/{chat} with a zero count"))
    })?;
    record.version = checked_increment(record.version, "chat version")?;
    tx.remove(&ks.subscribers, key);
    tx.remove(&ks.user_chats, keys::user_chat(app, user, chat));
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
    record.subscribers_count = checked_increment(record.subscribers_count, "subscribers_count")?;
    record.version = checked_increment(record.version, "chat version")?;
    tx.insert(&ks.subscribers, key, []);
    tx.insert(&ks.user_chats, keys::user_chat(app, user, chat), []);
    Ok(true)
}

/// `value + 1`, or a corruption error: counts and versions are bounded by
/// the rows they count, far below `u64::MAX`, unless the store is corrupt.
fn checked_increment(value: u64, what: &str) -> StoreResult<u64> {
    value
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt(format!("{what} overflows")))
}

/// One chat's share of a batch: its implicit creation and its messages in
/// number order (`Batch::validate` checked that they are consecutive).
#[derive(Default)]
struct ChatShare<'a> {
    create: Option<&'a NewChat>,
    messages: Vec<&'a NewMessage>,
}

/// What committing one chat's share writes, decided before anything is
/// written, so that a refused chat writes nothing.
struct ChatPlan<'a> {
    record: ChatRecord,
    /// Set when the batch creates the chat: its first subscribers.
    created_with: Option<&'a [String]>,
    /// The messages above the stored count, to insert.
    new: Vec<&'a NewMessage>,
    committed_messages: usize,
}

/// Commits a batch that `Batch::validate` accepted, chat by chat: a chat
/// whose share the store refuses (see [`Refusal`]) writes nothing and is
/// reported in the receipt; every other chat commits, all of them in one
/// durable transaction. Idempotent: a message already stored with the same
/// content is skipped, so a replayed batch answers the same.
///
/// The store is the judge, not the engine's cache of a chat:
/// - a message from a sender who is not a subscriber now (and not published
///   with the app token) refuses its chat (`not_subscribed`);
/// - an implicit creation of a chat that exists refuses the chat's new
///   messages (`chat_exists`): they were numbered for a chat of their own;
/// - a user's implicit creation more than
///   [`IMPLICIT_CHAT_NUMBERS_AHEAD_MAX`] above the app's highest chat
///   number is refused (`chat_number_too_high`).
///
/// Client ids are stored with their message but not indexed: idempotency is
/// the engine's, over a bounded window of each chat's recent messages, which
/// it rebuilds from the stored messages after a restart.
pub fn commit_batch(inner: &Inner, batch: &Batch) -> StoreResult<BatchReceipt> {
    let ks = &inner.keyspaces;
    let mut tx = inner.db.write_tx().durability(DURABLE);
    let mut shares: BTreeMap<(AppId, ChatNumber), ChatShare<'_>> = BTreeMap::new();
    for chat in &batch.chats {
        shares.entry((chat.app, chat.number)).or_default().create = Some(chat);
    }
    for message in &batch.messages {
        let share = shares.entry((message.app, message.chat)).or_default();
        share.messages.push(message);
    }

    let mut apps: HashMap<AppId, Option<AppRecord>> = HashMap::new();
    let mut apps_changed = HashSet::new();
    let mut refused = Vec::new();
    let mut plans = Vec::with_capacity(shares.len());
    for (&(app, chat), share) in &shares {
        if let std::collections::hash_map::Entry::Vacant(entry) = apps.entry(app) {
            entry.insert(inner.app(&tx, app)?);
        }
        let Some(app_record) = apps.get_mut(&app).and_then(Option::as_mut) else {
            refused.push(refusal(app, chat, Refusal::AppNotFound, "app not found"));
            continue;
        };
        match plan_chat(inner, &tx, app_record, (app, chat), share)? {
            Ok(plan) => {
                if plan.created_with.is_some() {
                    app_record.chat_sequence = app_record.chat_sequence.max(chat);
                    app_record.chats_count =
                        checked_increment(app_record.chats_count, "chats_count")?;
                    apps_changed.insert(app);
                }
                plans.push(((app, chat), plan));
            }
            Err(refused_chat) => refused.push(refused_chat),
        }
    }

    let mut chat_versions = Vec::with_capacity(plans.len());
    let mut logged = Vec::new();
    // What the entry's ranges name, for the follower's in-memory copy
    // (`recent_log`, on only with the commit log): each chat's new
    // messages, in range and number order.
    let log_in_memory = inner.recent_log.is_on();
    let mut logged_messages = Vec::new();
    let mut messages = 0u64;
    let mut chats = 0u64;
    for ((app, chat), mut plan) in plans {
        if let Some(subscribers) = plan.created_with {
            for user in subscribers {
                add_subscriber(inner, &mut tx, app, chat, &mut plan.record, user)?;
            }
        }
        if shares[&(app, chat)].create.is_some() {
            chats += 1;
        }
        if let (Some(first), Some(last)) = (plan.new.first(), plan.new.last()) {
            logged.push(MessageRange {
                app,
                chat,
                first: first.number,
                last: last.number,
            });
        }
        debug_assert!(
            plan.new.windows(2).all(|w| w[1].number == w[0].number + 1),
            "a chat's new messages are consecutive: the range names exactly them"
        );
        for message in &plan.new {
            let record = message_record(message);
            tx.insert(
                &ks.messages,
                keys::message(app, chat, message.number),
                encode(&record),
            );
            if log_in_memory {
                logged_messages.push(LoggedMessage {
                    app,
                    chat,
                    message: record.into_message(message.number),
                });
            }
        }
        if plan.created_with.is_some() || !plan.new.is_empty() {
            tx.insert(&ks.chats, keys::chat(app, chat), encode(&plan.record));
        }
        messages += plan.committed_messages as u64;
        chat_versions.push(ChatVersion {
            app,
            chat,
            version: plan.record.version,
            last_number: plan.record.messages_count,
        });
    }
    for id in apps_changed {
        if let Some(Some(record)) = apps.get(&id) {
            tx.insert(&ks.apps, keys::app(id), encode(record));
        }
    }
    let entry = match inner.commit_log_enabled && !logged.is_empty() {
        true => Some(super::commit_log::append(inner, &mut tx, logged)?),
        false => None,
    };
    tx.commit()?;
    if let Some((position, committed_at_us)) = entry {
        if log_in_memory {
            inner.recent_log.insert(LoggedBatch {
                position,
                committed_at_us,
                messages: logged_messages,
            });
        }
        // Published only once durable (and in memory), so a follower never
        // waits for an entry that is not there; commits publish
        // concurrently, hence max.
        inner
            .commit_log_head
            .fetch_max(position, std::sync::atomic::Ordering::AcqRel);
    }
    Ok(BatchReceipt {
        batch_id: batch.batch_id,
        messages,
        chats,
        chat_versions,
        refused,
        api_us: 0,
    })
}

fn refusal(app: AppId, chat: ChatNumber, reason: Refusal, message: &str) -> RefusedChat {
    RefusedChat {
        app,
        chat,
        reason,
        message: message.to_string(),
    }
}

fn message_record(message: &NewMessage) -> MessageRecord {
    MessageRecord {
        sender: message.sender.clone(),
        recipients: message.recipients.clone(),
        body: message.body.clone(),
        client_id: message.client_id.clone(),
        sent_at_us: message.sent_at_us,
    }
}

/// Decides one chat's share: `Ok(Err(_))` refuses the chat, `Err(_)` fails
/// the whole batch (the store could not read: retryable).
fn plan_chat<'a>(
    inner: &Inner,
    tx: &SingleWriterWriteTx<'_>,
    app_record: &AppRecord,
    (app, chat): (AppId, ChatNumber),
    share: &ChatShare<'a>,
) -> StoreResult<Result<ChatPlan<'a>, RefusedChat>> {
    let refuse = |reason: Refusal, message: String| {
        Ok(Err(RefusedChat {
            app,
            chat,
            reason,
            message,
        }))
    };
    let stored = match inner.chat(tx, app, chat) {
        Ok(stored) => stored,
        Err(StoreError::Corrupt(detail)) => return refuse(Refusal::Conflict, detail),
        Err(other) => return Err(other),
    };
    let (record, created_with, existed) = match (stored, share.create) {
        (Some(record), _) => (record, None, true),
        (None, Some(create)) => {
            let ahead_max = app_record
                .chat_sequence
                .saturating_add(IMPLICIT_CHAT_NUMBERS_AHEAD_MAX);
            if !create.by_app && chat > ahead_max {
                return refuse(
                    Refusal::ChatNumberTooHigh,
                    format!(
                        "a user may create chats up to number {ahead_max} \
                         ({IMPLICIT_CHAT_NUMBERS_AHEAD_MAX} above the highest); {chat} is higher"
                    ),
                );
            }
            let record = ChatRecord {
                title: None,
                created_at_us: create.created_at_us,
                messages_count: 0,
                subscribers_count: 0,
                version: 1,
            };
            (record, Some(create.subscribers.as_slice()), false)
        }
        (None, None) => {
            return refuse(Refusal::ChatNotFound, format!("chat {chat} does not exist"));
        }
    };

    let mut count = record.messages_count;
    let mut new = Vec::new();
    let mut members: HashSet<&str> = created_with
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    for &message in &share.messages {
        let number = message.number;
        if number <= count {
            // Stored by an earlier attempt of this batch: the same content,
            // or the engine's numbering is not the store's.
            let key = keys::message(app, chat, number);
            let same = match tx.get(&inner.keyspaces.messages, key)? {
                Some(bytes) => match decode::<MessageRecord>(&bytes) {
                    Ok(stored) => stored == message_record(message),
                    Err(error) => return refuse(Refusal::Conflict, error.to_string()),
                },
                None => {
                    return refuse(
                        Refusal::Conflict,
                        format!("message {chat}/{number} missing below the count {count}"),
                    );
                }
            };
            if !same {
                return refuse(
                    Refusal::Conflict,
                    format!("message {chat}/{number} exists with other content"),
                );
            }
            continue;
        }
        if number != count + 1 {
            return refuse(
                Refusal::Conflict,
                format!("message {chat}/{number} would leave a gap after {count}"),
            );
        }
        if existed && share.create.is_some() {
            return refuse(
                Refusal::ChatExists,
                format!("chat {chat} was created meanwhile; message {number} was not stored"),
            );
        }
        if !message.as_app && !members.contains(message.sender.as_str()) {
            let key = keys::subscriber(app, chat, &message.sender);
            if !tx.contains_key(&inner.keyspaces.subscribers, key)? {
                return refuse(
                    Refusal::NotSubscribed {
                        sender: message.sender.clone(),
                    },
                    format!("{} is not a subscriber of chat {chat}", message.sender),
                );
            }
            members.insert(message.sender.as_str());
        }
        count = number;
        new.push(message);
    }
    let mut record = record;
    record.messages_count = count;
    Ok(Ok(ChatPlan {
        record,
        created_with,
        new,
        committed_messages: share.messages.len(),
    }))
}

/// Fills numbers below the chat's count that have no message with lost
/// placeholders, in one transaction (see `Store::repair_chat`).
pub fn repair_chat(inner: &Inner, app: AppId, chat: ChatNumber) -> StoreResult<Vec<u64>> {
    let ks = &inner.keyspaces;
    let mut tx = inner.db.write_tx().durability(DURABLE);
    let record = inner
        .chat(&tx, app, chat)?
        .ok_or(StoreError::ChatNotFound)?;
    let mut missing = Vec::new();
    let mut expected = 1u64;
    let range = keys::message(app, chat, 1)..=keys::message(app, chat, record.messages_count);
    if record.messages_count > 0 {
        for guard in tx.range(&ks.messages, range) {
            let key = guard.key()?;
            let number = keys::message_number_of(&key)
                .ok_or_else(|| StoreError::Corrupt("message key".into()))?;
            missing.extend(expected..number);
            expected = number.saturating_add(1);
        }
        missing.extend(expected..=record.messages_count);
    }
    for &number in &missing {
        let placeholder = crate::store::Message::lost(number);
        let value = MessageRecord {
            sender: placeholder.sender,
            recipients: placeholder.recipients,
            body: placeholder.body,
            client_id: placeholder.client_id,
            sent_at_us: placeholder.sent_at_us,
        };
        tx.insert(
            &ks.messages,
            keys::message(app, chat, number),
            encode(&value),
        );
    }
    if !missing.is_empty() {
        tx.commit()?;
    }
    Ok(missing)
}
