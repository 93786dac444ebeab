//! Every mutation of the ScyllaDB store. The module docs of `scylla` give
//! the protocols and why they are safe; this file follows them step by step.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chat_wire::limits::IMPLICIT_CHAT_NUMBERS_AHEAD_MAX;
use chat_wire::{Batch, NewChat, NewMessage, Refusal, RefusedChat};
use futures_util::{StreamExt, TryStreamExt, stream};
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch as CqlBatch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, MaybeUnset, Row};

use super::read::{self, AppRow, ChatRow, chat_bucket, db, message_bucket};
use super::{ScyllaStore, engine_error};
use crate::store::{
    App, AppId, BatchReceipt, Chat, ChatNumber, ChatVersion, Message, SUBSCRIBERS_PER_CHAT_MAX,
    StoreError, StoreResult, TokenHash,
};

/// How often a protocol starts over after losing a race before it gives up
/// with a retryable error. Within one process the locks make races rare.
const ATTEMPTS: usize = 32;
/// Independent LWTs or writes of one request in flight at once.
const IN_FLIGHT: usize = 32;
/// Message rows per unlogged batch (all of one partition).
const ROWS_PER_WRITE: usize = 128;

/// The answer of a lightweight transaction: whether it applied, and the
/// current values of the columns it tested when it did not.
struct Lwt {
    applied: bool,
    values: HashMap<String, CqlValue>,
}

impl Lwt {
    fn bigint(&self, column: &str) -> Option<i64> {
        match self.values.get(column) {
            Some(CqlValue::BigInt(value)) => Some(*value),
            _ => None,
        }
    }
}

fn lwt_answer(result: QueryResult) -> StoreResult<Lwt> {
    let rows = result.into_rows_result().map_err(engine_error)?;
    let names: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|spec| spec.name().to_string())
        .collect();
    let mut applied = None;
    let mut values = HashMap::new();
    for row in rows.rows::<Row>().map_err(engine_error)? {
        let row = row.map_err(engine_error)?;
        for (name, value) in names.iter().zip(row.columns) {
            match (name.as_str(), value) {
                ("[applied]", Some(CqlValue::Boolean(flag))) => {
                    applied.get_or_insert(flag);
                }
                (_, Some(value)) => {
                    values.entry(name.clone()).or_insert(value);
                }
                _ => {}
            }
        }
    }
    let applied = applied.ok_or_else(|| engine_error("an LWT answered without [applied]"))?;
    Ok(Lwt { applied, values })
}

async fn lwt(
    store: &ScyllaStore,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> StoreResult<Lwt> {
    let result = store
        .inner
        .session
        .execute_unpaged(statement, values)
        .await
        .map_err(engine_error)?;
    lwt_answer(result)
}

async fn execute(
    store: &ScyllaStore,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> StoreResult<()> {
    store
        .inner
        .session
        .execute_unpaged(statement, values)
        .await
        .map_err(engine_error)?;
    Ok(())
}

/// Runs futures with at most [`IN_FLIGHT`] at once; results in their order.
/// (Futures are built in loops, not closures, which keeps the `Send`
/// analysis of `async_trait` happy.)
pub async fn bounded<T, F>(futures: Vec<F>) -> StoreResult<Vec<T>>
where
    F: Future<Output = StoreResult<T>>,
{
    stream::iter(futures)
        .buffered(IN_FLIGHT)
        .try_collect()
        .await
}

fn random_id() -> i64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    // Positive (0 means "none" in the claim column), so ids also read well
    // in cqlsh; 63 random bits are plenty.
    ((u64::from_le_bytes(bytes) >> 1) as i64).max(1)
}

fn unset_if_none<T>(value: Option<T>) -> MaybeUnset<T> {
    value.map_or(MaybeUnset::Unset, MaybeUnset::Set)
}

fn contention(what: &str) -> StoreError {
    StoreError::Engine(format!(
        "{what}: lost {ATTEMPTS} races with concurrent writers; retry"
    ))
}

// ---------------------------------------------------------------- apps

pub async fn create_app(
    store: &ScyllaStore,
    title: String,
    token_hash: TokenHash,
    now_us: i64,
) -> StoreResult<App> {
    let statements = store.statements().await?;
    let _creating = store.inner.create_app_lock.lock().await;
    let mut id = None;
    for _ in 0..ATTEMPTS {
        let (sequence,) = read::select_one::<(Option<i64>,)>(
            &store.inner.session,
            &statements.app_sequence_serial,
            (),
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("app sequence missing: store not migrated".into()))?;
        let sequence = sequence.unwrap_or(0);
        let answer = lwt(
            store,
            &statements.app_sequence_advance,
            (sequence + 1, sequence),
        )
        .await?;
        if answer.applied {
            id = Some(sequence + 1);
            break;
        }
    }
    let id = id.ok_or_else(|| contention("taking an app id"))?;
    let answer = lwt(
        store,
        &statements.app_insert,
        (id, &title, token_hash.as_slice(), now_us),
    )
    .await?;
    if !answer.applied {
        return Err(StoreError::Corrupt(format!(
            "app {id} exists above the sequence"
        )));
    }
    let answer = lwt(store, &statements.token_insert, (token_hash.as_slice(), id)).await?;
    if !answer.applied {
        // 256 random bits collided: refuse rather than alias two apps.
        return Err(StoreError::Conflict("app token already in use".into()));
    }
    Ok(App {
        id: id as u64,
        title,
        created_at_us: now_us,
        chats_count: 0,
    })
}

pub async fn rename_app(store: &ScyllaStore, app: AppId, title: String) -> StoreResult<App> {
    let id = db(app).ok_or(StoreError::AppNotFound)?;
    let statements = store.statements().await?;
    let _app = store.inner.app_locks.lock(app).await;
    if !lwt(store, &statements.app_rename, (&title, id))
        .await?
        .applied
    {
        return Err(StoreError::AppNotFound);
    }
    read::app(store, app).await?.ok_or(StoreError::AppNotFound)
}

// ---------------------------------------------------------------- chat creation

/// What one chat creation writes.
#[derive(Debug, Clone)]
struct Intent {
    number: ChatNumber,
    id: i64,
    title: Option<String>,
    created_at_us: i64,
    subscribers: Vec<String>,
}

pub async fn create_chat(
    store: &ScyllaStore,
    app: AppId,
    title: Option<String>,
    now_us: i64,
) -> StoreResult<Chat> {
    db(app).ok_or(StoreError::AppNotFound)?;
    let _app = store.inner.app_locks.lock(app).await;
    for _ in 0..ATTEMPTS {
        let row = read::app_row(store, app, true)
            .await?
            .ok_or(StoreError::AppNotFound)?;
        if !row.pending.is_empty() {
            finish_intents(store, app, &row.pending).await?;
            continue;
        }
        let number = row
            .chat_sequence
            .checked_add(1)
            .filter(|&number| number <= chat_wire::limits::NUMBER_MAX)
            .ok_or(StoreError::NumbersExhausted)?;
        let intent = Intent {
            number,
            id: random_id(),
            title: title.clone(),
            created_at_us: now_us,
            subscribers: Vec::new(),
        };
        let Some(created) = record_intents(store, app, &row, std::slice::from_ref(&intent)).await?
        else {
            continue;
        };
        if !created.contains(&number) {
            return Err(StoreError::Corrupt(format!(
                "chat {app}/{number} exists above the sequence"
            )));
        }
        return read::chat(store, app, number)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("chat {app}/{number} vanished")));
    }
    Err(contention("creating a chat"))
}

/// Creates those of `chats` (all of `app`) that do not exist; returns the
/// numbers this call created. The caller holds the app's lock.
async fn create_implicit_chats(
    store: &ScyllaStore,
    app: AppId,
    chats: &[&NewChat],
) -> StoreResult<BTreeSet<ChatNumber>> {
    for _ in 0..ATTEMPTS {
        let row = read::app_row(store, app, true)
            .await?
            .ok_or(StoreError::AppNotFound)?;
        if !row.pending.is_empty() {
            finish_intents(store, app, &row.pending).await?;
            continue;
        }
        let mut reads = Vec::with_capacity(chats.len());
        for chat in chats {
            let number = chat.number;
            reads
                .push(async move { Ok(read::chat_row(store, app, number, true).await?.is_some()) });
        }
        let exists: Vec<bool> = bounded(reads).await?;
        let intents: Vec<Intent> = chats
            .iter()
            .zip(exists)
            .filter(|(_, exists)| !exists)
            .map(|(chat, _)| Intent {
                number: chat.number,
                id: random_id(),
                title: None,
                created_at_us: chat.created_at_us,
                subscribers: chat.subscribers.clone(),
            })
            .collect();
        if intents.is_empty() {
            return Ok(BTreeSet::new());
        }
        if let Some(created) = record_intents(store, app, &row, &intents).await? {
            return Ok(created);
        }
    }
    Err(contention("creating chats"))
}

/// Steps 1 to 4 of a creation: the intents' data, the app row's LWT (the
/// commit point), then finishing them. `None` when the LWT lost a race (the
/// caller reads again and retries).
async fn record_intents(
    store: &ScyllaStore,
    app: AppId,
    row: &AppRow,
    intents: &[Intent],
) -> StoreResult<Option<BTreeSet<ChatNumber>>> {
    let statements = store.statements().await?;
    let app_id = app as i64;
    let mut pending = BTreeMap::new();
    let mut sequence = row.chat_sequence;
    for intent in intents {
        let number = db(intent.number).ok_or_else(|| {
            StoreError::Conflict(format!("chat number {} is out of range", intent.number))
        })?;
        pending.insert(number, intent.id);
        sequence = sequence.max(intent.number);
    }
    let mut writes = Vec::with_capacity(intents.len());
    for intent in intents {
        writes.push(async move {
            let number = intent.number as i64;
            execute(
                store,
                &statements.intent_write,
                (
                    app_id,
                    number,
                    intent.id,
                    unset_if_none(intent.title.as_ref()),
                    intent.created_at_us,
                    &intent.subscribers,
                ),
            )
            .await?;
            let bucket = chat_bucket(intent.number);
            execute(store, &statements.index_write, (app_id, bucket, number)).await?;
            execute(store, &statements.bucket_write, (app_id, bucket)).await
        });
    }
    bounded(writes).await?;
    let answer = lwt(
        store,
        &statements.app_add_intents,
        (&pending, sequence as i64, app_id, row.chat_sequence as i64),
    )
    .await?;
    if !answer.applied {
        return Ok(None);
    }
    finish_intents(store, app, &pending).await.map(Some)
}

/// Applies every pending intent and folds the outcome into the app's count;
/// returns the chats these intents created. Safe to run by anyone, any
/// number of times.
async fn finish_intents(
    store: &ScyllaStore,
    app: AppId,
    pending: &BTreeMap<i64, i64>,
) -> StoreResult<BTreeSet<ChatNumber>> {
    let statements = store.statements().await?;
    let mut applies = Vec::with_capacity(pending.len());
    for (&number, &intent) in pending {
        applies.push(async move {
            let created = apply_intent(store, app, number as u64, intent).await?;
            Ok((number as u64, created))
        });
    }
    let outcomes: Vec<(ChatNumber, bool)> = bounded(applies).await?;
    let created: BTreeSet<ChatNumber> = outcomes
        .iter()
        .filter(|(_, created)| *created)
        .map(|(number, _)| *number)
        .collect();
    for _ in 0..ATTEMPTS {
        let row = read::app_row(store, app, true)
            .await?
            .ok_or(StoreError::AppNotFound)?;
        if &row.pending != pending {
            // Finished by someone else, with the same outcome.
            return Ok(created);
        }
        let chats_count = row.chats_count + created.len() as u64;
        let answer = lwt(
            store,
            &statements.app_finish_intents,
            (
                chats_count as i64,
                app as i64,
                pending,
                row.chats_count as i64,
            ),
        )
        .await?;
        if answer.applied {
            return Ok(created);
        }
    }
    Err(contention("finishing chat creations"))
}

/// title, created_at_us, subscribers of `chat_intents`.
type IntentColumns = (Option<String>, Option<i64>, Option<Vec<String>>);

/// Step 3: inserts the chat of an intent with its subscribers, unless its
/// partition exists. Returns whether the chat there is this intent's.
async fn apply_intent(
    store: &ScyllaStore,
    app: AppId,
    number: ChatNumber,
    intent: i64,
) -> StoreResult<bool> {
    let statements = store.statements().await?;
    let (app_id, chat_id) = (app as i64, number as i64);
    let data: Option<IntentColumns> = read::select_one(
        &store.inner.session,
        &statements.intent_read,
        (app_id, chat_id, intent),
    )
    .await?;
    let Some((title, created_at_us, subscribers)) = data else {
        // Expired (a week old): the chat was created then, or never will be.
        let row = read::chat_row(store, app, number, true).await?;
        return Ok(row.is_some_and(|row| row.intent == intent));
    };
    let mut members: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for user in subscribers.unwrap_or_default() {
        if seen.insert(user.clone()) {
            members.push(user);
        }
    }
    if members.len() > SUBSCRIBERS_PER_CHAT_MAX {
        return Err(StoreError::TooManySubscribers(SUBSCRIBERS_PER_CHAT_MAX));
    }
    // The reverse index first: an entry too many is harmless, one missing is not.
    let mut inserts = Vec::with_capacity(members.len());
    for user in &members {
        inserts.push(execute(
            store,
            &statements.user_chat_insert,
            (app_id, user.as_str(), chat_id),
        ));
    }
    bounded(inserts).await?;
    let count = members.len() as i64;
    let mut batch = CqlBatch::new(BatchType::Logged);
    // Values of mixed statements; an absent title is left unset, never
    // written as a null (a tombstone).
    let set = MaybeUnset::Set;
    let mut values: Vec<Vec<MaybeUnset<CqlValue>>> = Vec::with_capacity(members.len() + 1);
    batch.append_statement(statements.chat_create.clone());
    values.push(vec![
        set(CqlValue::BigInt(app_id)),
        set(CqlValue::BigInt(chat_id)),
        set(CqlValue::BigInt(intent)),
        title.map_or(MaybeUnset::Unset, |t| set(CqlValue::Text(t))),
        set(CqlValue::BigInt(created_at_us.unwrap_or(0))),
        set(CqlValue::BigInt(count)),
        // Like the embedded store: version 1, plus one per subscriber added.
        set(CqlValue::BigInt(1 + count)),
    ]);
    for user in members {
        batch.append_statement(statements.member_insert.clone());
        values.push(vec![
            set(CqlValue::BigInt(app_id)),
            set(CqlValue::BigInt(chat_id)),
            set(CqlValue::Text(user)),
        ]);
    }
    let result = store
        .inner
        .session
        .batch(&batch, values)
        .await
        .map_err(engine_error)?;
    let answer = lwt_answer(result)?;
    Ok(answer.applied || answer.bigint("intent") == Some(intent))
}

// ---------------------------------------------------------------- subscribers

/// Adds or removes one subscription: a conditional batch on the chat's
/// partition, `IF version = v` from a serial read, so the row, the count
/// and the version move together or not at all.
async fn change_membership(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    user: &str,
    add: bool,
) -> StoreResult<bool> {
    let (Some(app_id), Some(chat_id)) = (db(app), db(chat)) else {
        return Err(StoreError::ChatNotFound);
    };
    let statements = store.statements().await?;
    let _chat = store.inner.chat_locks.lock((app, chat)).await;
    for _ in 0..ATTEMPTS {
        let row = read::chat_row(store, app, chat, true)
            .await?
            .ok_or(StoreError::ChatNotFound)?;
        let member = read::member_exists(store, app, chat, user).await?;
        if member == add {
            return Ok(false);
        }
        let count = if add {
            if row.subscribers_count as usize >= SUBSCRIBERS_PER_CHAT_MAX {
                return Err(StoreError::TooManySubscribers(SUBSCRIBERS_PER_CHAT_MAX));
            }
            execute(store, &statements.user_chat_insert, (app_id, user, chat_id)).await?;
            row.subscribers_count + 1
        } else {
            row.subscribers_count.checked_sub(1).ok_or_else(|| {
                StoreError::Corrupt(format!("subscriber of {app}/{chat} with a zero count"))
            })?
        };
        let mut batch = CqlBatch::new(BatchType::Logged);
        batch.append_statement(if add {
            statements.member_insert.clone()
        } else {
            statements.member_delete.clone()
        });
        batch.append_statement(statements.members_change.clone());
        let values = (
            (app_id, chat_id, user),
            (
                count as i64,
                row.version as i64 + 1,
                app_id,
                chat_id,
                row.version as i64,
            ),
        );
        let result = store
            .inner
            .session
            .batch(&batch, values)
            .await
            .map_err(engine_error)?;
        if lwt_answer(result)?.applied {
            if !add {
                execute(store, &statements.user_chat_delete, (app_id, user, chat_id)).await?;
            }
            return Ok(true);
        }
    }
    Err(contention("changing subscribers"))
}

pub async fn subscribe(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    user: String,
) -> StoreResult<bool> {
    change_membership(store, app, chat, &user, true).await
}

pub async fn unsubscribe(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    user: String,
) -> StoreResult<bool> {
    change_membership(store, app, chat, &user, false).await
}

// ---------------------------------------------------------------- batches

type ChatKey = (AppId, ChatNumber);

/// What the validation decided for one chat with messages.
struct Plan<'a> {
    key: ChatKey,
    /// The chat as read (serially) before any write.
    row: ChatRow,
    /// The messages above `row.last_number`, to write and commit.
    new: Vec<&'a NewMessage>,
}

fn stored_equals(stored: &Message, new: &NewMessage) -> bool {
    stored.sender == new.sender
        && stored.recipients == new.recipients
        && stored.body == new.body
        && stored.client_id == new.client_id
        && stored.sent_at_us == new.sent_at_us
}

/// Commits a batch that `Batch::validate` accepted, with the embedded
/// store's semantics (see its `commit_batch`: per chat, a refused chat writes
/// nothing and is reported, the store judges membership and creation), by
/// the claim, write, commit protocol of the module docs.
///
/// An implicit creation that finds its chat existing is this batch's own
/// when an earlier attempt created it and crashed before its messages
/// committed: the chat then has no message and the creation's timestamp
/// (microseconds, stamped by the engine). Any other existing chat refuses
/// the creation's new messages (`chat_exists`).
pub async fn commit_batch(store: &ScyllaStore, batch: &Batch) -> StoreResult<BatchReceipt> {
    // The chats with messages, in first-appearance order, and their messages.
    let mut order: Vec<ChatKey> = Vec::new();
    let mut by_chat: HashMap<ChatKey, Vec<&NewMessage>> = HashMap::new();
    for message in &batch.messages {
        let key = (message.app, message.chat);
        by_chat
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(message);
    }
    let creations: HashMap<ChatKey, &NewChat> =
        batch.chats.iter().map(|c| ((c.app, c.number), c)).collect();
    let mut created_here: BTreeSet<ChatKey> = BTreeSet::new();
    for _ in 0..ATTEMPTS {
        // 1. Read everything the validation needs.
        let apps: BTreeSet<AppId> = batch
            .chats
            .iter()
            .map(|c| c.app)
            .chain(batch.messages.iter().map(|m| m.app))
            .collect();
        let mut reads = Vec::with_capacity(apps.len());
        for app in apps {
            reads.push(async move { Ok((app, read::app_row(store, app, false).await?)) });
        }
        let app_rows: HashMap<AppId, Option<read::AppRow>> =
            bounded(reads).await?.into_iter().collect();
        let keys: BTreeSet<ChatKey> = batch
            .chats
            .iter()
            .map(|c| (c.app, c.number))
            .chain(order.iter().copied())
            .filter(|(app, _)| app_rows[app].is_some())
            .collect();
        let mut reads = Vec::with_capacity(keys.len());
        for key in keys {
            reads.push(async move { Ok((key, read::chat_row(store, key.0, key.1, true).await?)) });
        }
        let rows: HashMap<ChatKey, Option<ChatRow>> = bounded(reads).await?.into_iter().collect();
        let ranges: Vec<(ChatKey, u64, u64)> = order
            .iter()
            .filter_map(|key| {
                let last_stored = rows.get(key)?.as_ref()?.last_number;
                let messages = &by_chat[key];
                let first = messages.first()?.number;
                let last = messages.last()?.number.min(last_stored);
                (first <= last).then_some((*key, first, last))
            })
            .collect();
        let mut reads = Vec::with_capacity(ranges.len());
        for (key, first, last) in ranges {
            reads.push(async move {
                // A lost row refuses its chat only (below), not the batch.
                match read::stored_range(store, key.0, key.1, first, last).await {
                    Ok(stored) => Ok((key, Some(stored))),
                    Err(StoreError::MessagesLost { .. }) => Ok((key, None)),
                    Err(other) => Err(other),
                }
            });
        }
        let repeated: HashMap<ChatKey, Option<Vec<Message>>> =
            bounded(reads).await?.into_iter().collect();
        // Membership of the senders of new messages in chats that exist.
        let mut senders: BTreeSet<(ChatKey, &str)> = BTreeSet::new();
        for key in &order {
            let Some(Some(row)) = rows.get(key) else {
                continue;
            };
            for message in &by_chat[key] {
                if message.number > row.last_number && !message.as_app {
                    senders.insert((*key, message.sender.as_str()));
                }
            }
        }
        let mut reads = Vec::with_capacity(senders.len());
        for (key, sender) in senders {
            reads.push(async move {
                let member = read::member_exists(store, key.0, key.1, sender).await?;
                Ok(((key, sender), member))
            });
        }
        let members: HashMap<(ChatKey, &str), bool> = bounded(reads).await?.into_iter().collect();

        // 2. Validate chat by chat, in the embedded store's order.
        let mut refused: BTreeMap<ChatKey, RefusedChat> = BTreeMap::new();
        let mut to_create: BTreeMap<AppId, Vec<&NewChat>> = BTreeMap::new();
        for chat in &batch.chats {
            let key = (chat.app, chat.number);
            let Some(app_row) = &app_rows[&chat.app] else {
                refuse(
                    &mut refused,
                    key,
                    Refusal::AppNotFound,
                    "app not found".into(),
                );
                continue;
            };
            if rows[&key].is_none() {
                let ahead_max = app_row
                    .chat_sequence
                    .saturating_add(IMPLICIT_CHAT_NUMBERS_AHEAD_MAX);
                if !chat.by_app && chat.number > ahead_max {
                    refuse(
                        &mut refused,
                        key,
                        Refusal::ChatNumberTooHigh,
                        format!(
                            "a user may create chats up to number {ahead_max}; {} is higher",
                            chat.number
                        ),
                    );
                    continue;
                }
                to_create.entry(chat.app).or_default().push(chat);
            }
        }
        for key in &order {
            if refused.contains_key(key) {
                continue;
            }
            if app_rows[&key.0].is_none() {
                refuse(
                    &mut refused,
                    *key,
                    Refusal::AppNotFound,
                    "app not found".into(),
                );
                continue;
            }
            let creation = creations.get(key);
            let (stored_count, foreign) = match &rows[key] {
                Some(row) => {
                    let ours = created_here.contains(key)
                        || creation.is_some_and(|c| {
                            row.last_number == 0 && row.created_at_us == c.created_at_us
                        });
                    (row.last_number, creation.is_some() && !ours)
                }
                None if creation.is_some() => (0, false),
                None => {
                    refuse(
                        &mut refused,
                        *key,
                        Refusal::ChatNotFound,
                        format!("chat {} does not exist", key.1),
                    );
                    continue;
                }
            };
            let mut count = stored_count;
            for message in &by_chat[key] {
                let number = message.number;
                if number <= count {
                    let stored = repeated
                        .get(key)
                        .and_then(Option::as_ref)
                        .and_then(|stored| {
                            let first = stored.first()?.number;
                            stored.get(usize::try_from(number.checked_sub(first)?).ok()?)
                        });
                    match stored {
                        Some(stored) if stored_equals(stored, message) => continue,
                        Some(_) => refuse(
                            &mut refused,
                            *key,
                            Refusal::Conflict,
                            format!("message {}/{number} exists with other content", key.1),
                        ),
                        None => refuse(
                            &mut refused,
                            *key,
                            Refusal::Conflict,
                            format!(
                                "message {}/{number} is missing below the count {count}",
                                key.1
                            ),
                        ),
                    }
                    break;
                }
                if number != count + 1 || db(number).is_none() {
                    refuse(
                        &mut refused,
                        *key,
                        Refusal::Conflict,
                        format!("message {}/{number} would leave a gap after {count}", key.1),
                    );
                    break;
                }
                if foreign {
                    refuse(
                        &mut refused,
                        *key,
                        Refusal::ChatExists,
                        format!(
                            "chat {} was created meanwhile; message {number} was not stored",
                            key.1
                        ),
                    );
                    break;
                }
                // A chat created by this batch is read again before the
                // claim (step 3), so its subscribers are known by then.
                if rows[key].is_some()
                    && !message.as_app
                    && members.get(&(*key, message.sender.as_str())) != Some(&true)
                {
                    refuse(
                        &mut refused,
                        *key,
                        Refusal::NotSubscribed {
                            sender: message.sender.clone(),
                        },
                        format!("{} is not a subscriber of chat {}", message.sender, key.1),
                    );
                    break;
                }
                count = number;
            }
        }
        // A creation whose messages were refused is not made.
        for chats in to_create.values_mut() {
            chats.retain(|c| !refused.contains_key(&(c.app, c.number)));
        }
        to_create.retain(|_, chats| !chats.is_empty());

        // 3. Create the implicit chats, then read and validate again.
        if !to_create.is_empty() {
            for (app, chats) in &to_create {
                let _app = store.inner.app_locks.lock(*app).await;
                let created = create_implicit_chats(store, *app, chats).await?;
                created_here.extend(created.into_iter().map(|number| (*app, number)));
            }
            continue;
        }

        // 4. Claim, write, commit.
        let plans: Vec<Plan<'_>> = order
            .iter()
            .filter(|key| !refused.contains_key(key))
            .filter_map(|key| {
                let row = rows[key].clone()?;
                let new: Vec<&NewMessage> = by_chat[key]
                    .iter()
                    .copied()
                    .filter(|m| m.number > row.last_number)
                    .collect();
                Some(Plan {
                    key: *key,
                    row,
                    new,
                })
            })
            .collect();
        let Some(versions) = claim_write_commit(store, &plans).await? else {
            continue;
        };

        let mut chat_versions: Vec<ChatVersion> = creations
            .keys()
            .filter(|key| !by_chat.contains_key(key) && !refused.contains_key(key))
            .filter_map(|key| {
                let row = rows.get(key)?.as_ref()?;
                Some(ChatVersion {
                    app: key.0,
                    chat: key.1,
                    version: row.version,
                    last_number: row.last_number,
                })
            })
            .chain(plans.iter().map(|plan| {
                let (version, last_number) = versions
                    .get(&plan.key)
                    .copied()
                    .unwrap_or((plan.row.version, plan.row.last_number));
                ChatVersion {
                    app: plan.key.0,
                    chat: plan.key.1,
                    version,
                    last_number,
                }
            }))
            .collect();
        chat_versions.sort_unstable_by_key(|v| (v.app, v.chat));
        let messages = plans
            .iter()
            .map(|plan| by_chat[&plan.key].len() as u64)
            .sum();
        let chats = creations
            .keys()
            .filter(|key| !refused.contains_key(key))
            .count() as u64;
        return Ok(BatchReceipt {
            batch_id: batch.batch_id,
            messages,
            chats,
            chat_versions,
            refused: refused.into_values().collect(),
            api_us: 0,
        });
    }
    Err(contention("committing a batch"))
}

/// Records the first refusal of a chat; later ones of the same chat add nothing.
fn refuse(
    refused: &mut BTreeMap<ChatKey, RefusedChat>,
    key: ChatKey,
    reason: Refusal,
    message: String,
) {
    refused.entry(key).or_insert(RefusedChat {
        app: key.0,
        chat: key.1,
        reason,
        message,
    });
}

/// Steps 3 to 5 of the message protocol for every chat with new messages.
/// Returns each committed chat's (version, last number), or `None` when a
/// claim or a commit lost to a concurrent writer (the caller starts over).
async fn claim_write_commit(
    store: &ScyllaStore,
    plans: &[Plan<'_>],
) -> StoreResult<Option<HashMap<ChatKey, (u64, u64)>>> {
    let statements = store.statements().await?;
    let writing: Vec<&Plan<'_>> = plans.iter().filter(|p| !p.new.is_empty()).collect();
    let now_us = crate::clock::now_us();

    // Claim: a fence above the last, and an id, if nothing moved since the read.
    let mut requests = Vec::with_capacity(writing.len());
    for plan in &writing {
        let (key, row) = (plan.key, &plan.row);
        requests.push(async move {
            let fence = (row.fence + 1).max(now_us);
            let id = random_id();
            let answer = lwt(
                store,
                &statements.claim,
                (
                    fence,
                    id,
                    key.0 as i64,
                    key.1 as i64,
                    row.fence,
                    row.last_number as i64,
                ),
            )
            .await?;
            Ok(answer.applied.then_some((fence, id)))
        });
    }
    let claims: Vec<Option<(i64, i64)>> = bounded(requests).await?;
    let Some(claims) = claims.into_iter().collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };

    // Write: unlogged batches of one partition each, at the claim's fence.
    let mut writes = Vec::new();
    for (plan, &(fence, _)) in writing.iter().zip(&claims) {
        let mut start = 0;
        while start < plan.new.len() {
            let bucket = message_bucket(plan.new[start].number);
            let mut end = start;
            while end < plan.new.len()
                && end - start < ROWS_PER_WRITE
                && message_bucket(plan.new[end].number) == bucket
            {
                end += 1;
            }
            writes.push((&plan.new[start..end], fence));
            start = end;
        }
    }
    let mut requests = Vec::with_capacity(writes.len());
    for (messages, fence) in writes {
        requests.push(write_messages(store, messages, fence));
    }
    bounded(requests).await?;

    // Commit: advance each chat's last number if the claim still stands.
    let mut requests = Vec::with_capacity(writing.len());
    for (plan, &(_, id)) in writing.iter().zip(&claims) {
        let key = plan.key;
        let last = plan.new.last().map_or(plan.row.last_number, |m| m.number);
        let first_version = plan.row.version as i64;
        requests.push(async move {
            let mut version = first_version;
            for _ in 0..ATTEMPTS {
                let answer = lwt(
                    store,
                    &statements.commit,
                    (last as i64, key.0 as i64, key.1 as i64, id, version),
                )
                .await?;
                if answer.applied {
                    return Ok(Some((key, (version as u64, last))));
                }
                if answer.bigint("claim") != Some(id) {
                    // Superseded: another writer claimed the chat since.
                    return Ok(None);
                }
                // Only the subscriber set moved: commit against its version.
                version = answer
                    .bigint("version")
                    .ok_or_else(|| engine_error("commit answered without the version"))?;
            }
            Err(contention("committing a chat"))
        });
    }
    let outcomes: Vec<Option<(ChatKey, (u64, u64))>> = bounded(requests).await?;
    Ok(outcomes.into_iter().collect::<Option<HashMap<_, _>>>())
}

async fn write_messages(
    store: &ScyllaStore,
    messages: &[&NewMessage],
    fence: i64,
) -> StoreResult<()> {
    let statements = store.statements().await?;
    let mut batch = CqlBatch::new(BatchType::Unlogged);
    let mut values = Vec::with_capacity(messages.len());
    for message in messages {
        batch.append_statement(statements.message_write.clone());
        values.push((
            message.app as i64,
            message.chat as i64,
            message_bucket(message.number),
            message.number as i64,
            message.sender.as_str(),
            // Every column gets a value, never a null: a null is a
            // tombstone, and a row rewritten by a later claimant must
            // replace every column of the one before.
            message.recipients.is_some(),
            message.recipients.as_deref().unwrap_or(&[]),
            message.body.as_str(),
            message.client_id.as_deref().unwrap_or(""),
            message.sent_at_us,
            fence,
        ));
    }
    batch.set_is_idempotent(true);
    store
        .inner
        .session
        .batch(&batch, values)
        .await
        .map_err(engine_error)?;
    Ok(())
}

// ---------------------------------------------------------------- repair

/// Fills numbers below the chat's count that have no row with lost
/// placeholders (`Store::repair_chat`). Run the cluster's own repair first
/// (`nodetool repair`), so that a row any replica still holds is back: a
/// placeholder is written at the current time, so it wins over a deletion
/// as well as over a copy of the real row that reappears later.
pub async fn repair_chat(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
) -> StoreResult<Vec<u64>> {
    let row = read::chat_row(store, app, chat, true)
        .await?
        .ok_or(StoreError::ChatNotFound)?;
    let mut missing = Vec::new();
    let mut next = 1u64;
    while next <= row.last_number {
        let bucket_end = row
            .last_number
            .min((next / read::MESSAGE_BUCKET + 1) * read::MESSAGE_BUCKET - 1);
        let rows = read::fetch(
            store,
            app,
            chat,
            next,
            bucket_end,
            true,
            bucket_end - next + 1,
        )
        .await?;
        for message in rows {
            missing.extend(next..message.number);
            next = message.number + 1;
        }
        missing.extend(next..=bucket_end);
        next = bucket_end + 1;
    }
    let placeholders: Vec<NewMessage> = missing
        .iter()
        .map(|&number| {
            let lost = Message::lost(number);
            NewMessage {
                app,
                chat,
                number,
                sender: lost.sender,
                recipients: lost.recipients,
                body: lost.body,
                client_id: lost.client_id,
                sent_at_us: lost.sent_at_us,
                as_app: true,
            }
        })
        .collect();
    let mut writes = Vec::new();
    for rows in placeholders.chunks(ROWS_PER_WRITE) {
        // One partition per unlogged batch, as the writers do.
        let mut start = 0;
        while start < rows.len() {
            let bucket = message_bucket(rows[start].number);
            let end = rows[start..]
                .iter()
                .position(|m| message_bucket(m.number) != bucket)
                .map_or(rows.len(), |offset| start + offset);
            writes.push(&rows[start..end]);
            start = end;
        }
    }
    let timestamp = row.fence.max(crate::clock::now_us());
    let mut requests = Vec::with_capacity(writes.len());
    for rows in writes {
        let refs: Vec<&NewMessage> = rows.iter().collect();
        requests.push(async move { write_messages(store, &refs, timestamp).await });
    }
    bounded(requests).await?;
    Ok(missing)
}

/// White-box tests of the protocols' crash and race cases, which the HTTP
/// suite cannot stage: each stops a protocol half-way, or interleaves two
/// writers, by calling its steps directly. They run when `CHAT_TEST_SCYLLA`
/// names a node.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scylla::test_store;
    use crate::store::{HistoryQuery, Store};

    fn new_message(app: AppId, chat: ChatNumber, number: u64, body: &str) -> NewMessage {
        NewMessage {
            app,
            chat,
            number,
            sender: "ann".into(),
            recipients: None,
            body: body.into(),
            client_id: Some(format!("c{number}")),
            sent_at_us: 1,
            as_app: true,
        }
    }

    async fn bodies(store: &ScyllaStore, app: AppId, chat: ChatNumber) -> Vec<String> {
        let query = HistoryQuery {
            after: Some(0),
            before: None,
            limit: 1000,
            viewer: None,
        };
        let page = store.messages(app, chat, query).await.unwrap();
        page.items.into_iter().map(|m| m.body).collect()
    }

    /// A row lost below the count (periodic commit-log sync and a power
    /// loss): history says so with a clear error instead of a generic one,
    /// `repair_chat` marks the number lost, and reads work again; a user
    /// never sees the placeholder, and a replay of the lost message is a
    /// conflict of its chat only.
    #[tokio::test]
    async fn a_lost_row_is_reported_and_repaired() {
        let Some(store) = test_store("lost_row").await else {
            return;
        };
        let app = store.create_app("a".into(), [3; 32], 1).await.unwrap().id;
        let chat = store.create_chat(app, None, 1).await.unwrap().number;
        let messages: Vec<NewMessage> = (1..=5)
            .map(|n| new_message(app, chat, n, &format!("m{n}")))
            .collect();
        let batch = Batch {
            batch_id: 1,
            chats: vec![],
            messages: messages.clone(),
        };
        assert_eq!(store.commit_batch(batch).await.unwrap().messages, 5);
        let ks = &store.inner.config.keyspace;
        store
            .inner
            .session
            .query_unpaged(
                format!(
                    "DELETE FROM {ks}.messages WHERE app = ? AND chat = ? AND bucket = ? AND number = ?"
                ),
                (app as i64, chat as i64, message_bucket(3), 3i64),
            )
            .await
            .unwrap();
        let everything = HistoryQuery {
            after: Some(0),
            before: None,
            limit: 1000,
            viewer: None,
        };
        match store.messages(app, chat, everything.clone()).await {
            Err(StoreError::MessagesLost { number: 3, .. }) => {}
            other => panic!("expected MessagesLost, got {other:?}"),
        }
        let replay = Batch {
            batch_id: 2,
            chats: vec![],
            messages: vec![messages[2].clone()],
        };
        let receipt = store.commit_batch(replay).await.unwrap();
        assert!(matches!(
            receipt.refused.as_slice(),
            [RefusedChat {
                reason: Refusal::Conflict,
                ..
            }]
        ));

        assert_eq!(store.repair_chat(app, chat).await.unwrap(), vec![3]);
        assert_eq!(
            store.repair_chat(app, chat).await.unwrap(),
            Vec::<u64>::new()
        );
        let page = store.messages(app, chat, everything.clone()).await.unwrap();
        let lost: Vec<bool> = page.items.iter().map(Message::is_lost).collect();
        assert_eq!(lost, [false, false, true, false, false]);
        let as_user = HistoryQuery {
            viewer: Some("ann".into()),
            ..everything
        };
        let seen: Vec<u64> = store
            .messages(app, chat, as_user)
            .await
            .unwrap()
            .items
            .iter()
            .map(|m| m.number)
            .collect();
        assert_eq!(seen, [1, 2, 4, 5]);
        // The chat takes new messages after the repair.
        let next = Batch {
            batch_id: 3,
            chats: vec![],
            messages: vec![new_message(app, chat, 6, "m6")],
        };
        assert_eq!(store.commit_batch(next).await.unwrap().messages, 1);
    }

    /// A creator that died after recording its intent: the chat does not
    /// show, the count does not count it, and the next creation finishes it
    /// before taking the next number. Finishing twice changes nothing.
    #[tokio::test]
    async fn an_intent_left_by_a_dead_creator_is_finished_by_the_next() {
        let Some(store) = test_store("dead_creator").await else {
            return;
        };
        let app = store.create_app("a".into(), [1; 32], 1).await.unwrap().id;
        let row = read::app_row(&store, app, true).await.unwrap().unwrap();
        let intent = Intent {
            number: 1,
            id: random_id(),
            title: Some("left behind".into()),
            created_at_us: 5,
            subscribers: vec!["ann".into(), "bob".into()],
        };
        // Steps 1 and 2 only, as record_intents does them.
        let statements = store.statements().await.unwrap();
        let pending = BTreeMap::from([(1i64, intent.id)]);
        execute(
            &store,
            &statements.intent_write,
            (
                app as i64,
                1i64,
                intent.id,
                intent.title.as_ref(),
                intent.created_at_us,
                &intent.subscribers,
            ),
        )
        .await
        .unwrap();
        let answer = lwt(
            &store,
            &statements.app_add_intents,
            (&pending, 1i64, app as i64, row.chat_sequence as i64),
        )
        .await
        .unwrap();
        assert!(answer.applied);
        assert_eq!(store.app(app).await.unwrap().unwrap().chats_count, 0);
        assert!(store.chat(app, 1).await.unwrap().is_none());

        // The next creation finishes it first, then takes number 2.
        let next = store.create_chat(app, None, 6).await.unwrap();
        assert_eq!(next.number, 2);
        let first = store.chat(app, 1).await.unwrap().unwrap();
        assert_eq!(first.title.as_deref(), Some("left behind"));
        assert_eq!((first.subscribers_count, first.version), (2, 3));
        assert_eq!(store.app(app).await.unwrap().unwrap().chats_count, 2);

        // Applying and finishing the same intent again is a no-op.
        assert!(apply_intent(&store, app, 1, intent.id).await.unwrap());
        let created = finish_intents(&store, app, &pending).await.unwrap();
        assert_eq!(created, BTreeSet::from([1]));
        assert_eq!(store.app(app).await.unwrap().unwrap().chats_count, 2);
        // And another intent for an existing chat creates nothing.
        assert!(!apply_intent(&store, app, 1, intent.id + 1).await.unwrap());
    }

    /// A writer that died between writing its messages and committing them:
    /// its rows are invisible, and the next writer's batch (other content for
    /// the same numbers) replaces them.
    #[tokio::test]
    async fn rows_of_a_dead_writer_stay_invisible_and_are_replaced() {
        let Some(store) = test_store("dead_writer").await else {
            return;
        };
        let app = store.create_app("a".into(), [2; 32], 1).await.unwrap().id;
        let chat = store.create_chat(app, None, 1).await.unwrap().number;
        let row = read::chat_row(&store, app, chat, true)
            .await
            .unwrap()
            .unwrap();
        let dead: Vec<NewMessage> = (1..=3)
            .map(|n| new_message(app, chat, n, "never acknowledged"))
            .collect();
        let dead_refs: Vec<&NewMessage> = dead.iter().collect();
        let statements = store.statements().await.unwrap();
        let fence = row.fence + 1;
        let claimed = lwt(
            &store,
            &statements.claim,
            (fence, random_id(), app as i64, chat as i64, row.fence, 0i64),
        )
        .await
        .unwrap();
        assert!(claimed.applied);
        write_messages(&store, &dead_refs, fence).await.unwrap();
        // Written, not committed: nothing shows.
        assert!(bodies(&store, app, chat).await.is_empty());
        assert_eq!(
            store.chat(app, chat).await.unwrap().unwrap().messages_count,
            0
        );

        let live = Batch {
            batch_id: 1,
            chats: vec![],
            messages: (1..=2)
                .map(|n| new_message(app, chat, n, "acknowledged"))
                .collect(),
        };
        store.commit_batch(live.clone()).await.unwrap();
        assert_eq!(bodies(&store, app, chat).await, ["acknowledged"; 2]);
        // Row 3 of the dead writer is still there, and still invisible.
        assert_eq!(
            store.chat(app, chat).await.unwrap().unwrap().messages_count,
            2
        );
        let next = Batch {
            batch_id: 2,
            chats: vec![],
            messages: vec![new_message(app, chat, 3, "third")],
        };
        store.commit_batch(next).await.unwrap();
        assert_eq!(
            bodies(&store, app, chat).await,
            ["acknowledged", "acknowledged", "third"]
        );
    }

    /// Two writers of one chat: the later claim wins, the earlier claimant's
    /// commit fails, and its late writes cannot replace the winner's rows
    /// (they carry a lower fence as their timestamp).
    #[tokio::test]
    async fn a_superseded_writer_can_neither_commit_nor_overwrite() {
        let Some(store) = test_store("superseded").await else {
            return;
        };
        let app = store.create_app("a".into(), [3; 32], 1).await.unwrap().id;
        let chat = store.create_chat(app, None, 1).await.unwrap().number;
        let loser: Vec<NewMessage> = (1..=2)
            .map(|n| new_message(app, chat, n, "loser"))
            .collect();
        let winner: Vec<NewMessage> = (1..=2)
            .map(|n| new_message(app, chat, n, "winner"))
            .collect();
        let row = read::chat_row(&store, app, chat, true)
            .await
            .unwrap()
            .unwrap();
        let loser_plan = Plan {
            key: (app, chat),
            row: row.clone(),
            new: loser.iter().collect(),
        };
        // The loser claims and writes, then stalls.
        let statements = store.statements().await.unwrap();
        let loser_fence = row.fence + 1;
        let loser_id = random_id();
        let claimed = lwt(
            &store,
            &statements.claim,
            (
                loser_fence,
                loser_id,
                app as i64,
                chat as i64,
                row.fence,
                0i64,
            ),
        )
        .await
        .unwrap();
        assert!(claimed.applied);
        write_messages(&store, &loser_plan.new, loser_fence)
            .await
            .unwrap();
        // The winner claims over it, writes and commits.
        let fresh = read::chat_row(&store, app, chat, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fresh.claim, Some(loser_id));
        let winner_plan = Plan {
            key: (app, chat),
            row: fresh,
            new: winner.iter().collect(),
        };
        let committed = claim_write_commit(&store, std::slice::from_ref(&winner_plan))
            .await
            .unwrap();
        assert!(committed.is_some());
        assert_eq!(bodies(&store, app, chat).await, ["winner"; 2]);
        // The loser wakes up: its writes land under the winner's, and its
        // commit does not apply.
        write_messages(&store, &loser_plan.new, loser_fence)
            .await
            .unwrap();
        let answer = lwt(
            &store,
            &statements.commit,
            (2i64, app as i64, chat as i64, loser_id, row.version as i64),
        )
        .await
        .unwrap();
        assert!(!answer.applied);
        assert_eq!(bodies(&store, app, chat).await, ["winner"; 2]);
        // And a whole batch from the loser now is a conflict: its chat is
        // refused, nothing of it written.
        let late = Batch {
            batch_id: 9,
            chats: vec![],
            messages: loser.clone(),
        };
        let receipt = store.commit_batch(late).await.unwrap();
        assert_eq!(receipt.messages, 0);
        assert!(matches!(
            receipt.refused.as_slice(),
            [chat_wire::RefusedChat {
                reason: chat_wire::Refusal::Conflict,
                ..
            }]
        ));
        assert_eq!(bodies(&store, app, chat).await, ["winner"; 2]);
    }
}
