//! Reads of the ScyllaDB store, and the row types and helpers the writes share.

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt, stream};
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;

use super::{ScyllaStore, engine_error};
use crate::store::{
    App, AppId, Chat, ChatNumber, ChatState, HISTORY_SCAN_MAX, HistoryQuery, Message,
    MessageNumber, Page, SUBSCRIBERS_PER_CHAT_MAX, StoreError, StoreResult, TokenHash,
};

/// Messages per partition of `messages`: bucket = number / this.
pub const MESSAGE_BUCKET: u64 = 1024;
/// Chat numbers per partition of `chat_index`: bucket = chat >> this.
pub const CHAT_BUCKET_SHIFT: u32 = 16;
/// How many chats a listing reads at once.
const CHAT_READS_IN_FLIGHT: usize = 32;

/// A number as the store keeps it; `None` for one above bigint's range,
/// which therefore does not exist here.
pub fn db(number: u64) -> Option<i64> {
    i64::try_from(number).ok()
}

pub fn count(value: Option<i64>) -> u64 {
    value.unwrap_or(0).max(0) as u64
}

pub fn message_bucket(number: MessageNumber) -> i64 {
    (number / MESSAGE_BUCKET) as i64
}

pub fn chat_bucket(chat: ChatNumber) -> i64 {
    (chat >> CHAT_BUCKET_SHIFT) as i64
}

/// Runs a prepared statement and deserialises all its rows (one page: the
/// callers bound what they read).
pub async fn select<R>(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> StoreResult<Vec<R>>
where
    R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
{
    let result = session
        .execute_unpaged(statement, values)
        .await
        .map_err(engine_error)?;
    let rows = result.into_rows_result().map_err(engine_error)?;
    rows.rows::<R>()
        .map_err(engine_error)?
        .map(|row| row.map_err(engine_error))
        .collect()
}

pub async fn select_one<R>(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> StoreResult<Option<R>>
where
    R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
{
    Ok(select(session, statement, values).await?.into_iter().next())
}

type AppColumns = (
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<BTreeMap<i64, i64>>,
);

/// An app's row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    pub title: String,
    pub created_at_us: i64,
    pub chats_count: u64,
    pub chat_sequence: u64,
    /// Chat creations in flight: chat number → intent id.
    pub pending: BTreeMap<i64, i64>,
}

impl AppRow {
    fn from_columns(columns: AppColumns) -> Self {
        let (title, created_at_us, chats_count, chat_sequence, pending) = columns;
        Self {
            title: title.unwrap_or_default(),
            created_at_us: created_at_us.unwrap_or(0),
            chats_count: count(chats_count),
            chat_sequence: count(chat_sequence),
            pending: pending.unwrap_or_default(),
        }
    }
}

pub async fn app_row(store: &ScyllaStore, app: AppId, serial: bool) -> StoreResult<Option<AppRow>> {
    let Some(id) = db(app) else {
        return Ok(None);
    };
    let statements = store.statements().await?;
    let statement = if serial {
        &statements.app_read_serial
    } else {
        &statements.app_read
    };
    Ok(
        select_one::<AppColumns>(&store.inner.session, statement, (id,))
            .await?
            .map(AppRow::from_columns),
    )
}

type ChatColumns = (
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A chat's static columns as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRow {
    pub intent: i64,
    pub title: Option<String>,
    pub created_at_us: i64,
    pub last_number: u64,
    pub subscribers_count: u64,
    pub version: u64,
    pub fence: i64,
    pub claim: Option<i64>,
}

impl ChatRow {
    pub fn to_chat(&self, app: AppId, number: ChatNumber) -> Chat {
        Chat {
            app,
            number,
            title: self.title.clone(),
            created_at_us: self.created_at_us,
            messages_count: self.last_number,
            subscribers_count: self.subscribers_count,
            version: self.version,
        }
    }
}

/// The chat, if it exists: a partition whose `intent` is set. A serial read
/// sees every LWT that completed, and completes one left half-done.
pub async fn chat_row(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    serial: bool,
) -> StoreResult<Option<ChatRow>> {
    let (Some(app), Some(chat)) = (db(app), db(chat)) else {
        return Ok(None);
    };
    let statements = store.statements().await?;
    let statement = if serial {
        &statements.chat_read_serial
    } else {
        &statements.chat_read
    };
    let row = select_one::<ChatColumns>(&store.inner.session, statement, (app, chat)).await?;
    Ok(row.and_then(
        |(intent, title, created_at_us, last_number, subscribers_count, version, fence, claim)| {
            Some(ChatRow {
                intent: intent?,
                title,
                created_at_us: created_at_us.unwrap_or(0),
                last_number: count(last_number),
                subscribers_count: count(subscribers_count),
                version: count(version),
                fence: fence.unwrap_or(0),
                claim,
            })
        },
    ))
}

/// The app with `chats_count` counting the creations in flight whose chat
/// already exists, so the count always equals the chats a reader can see.
pub async fn app(store: &ScyllaStore, app: AppId) -> StoreResult<Option<App>> {
    let Some(row) = app_row(store, app, false).await? else {
        return Ok(None);
    };
    let mut chats_count = row.chats_count;
    for (&chat, &intent) in &row.pending {
        let created = chat_row(store, app, chat as u64, false)
            .await?
            .is_some_and(|c| c.intent == intent);
        chats_count += u64::from(created);
    }
    Ok(Some(App {
        id: app,
        title: row.title,
        created_at_us: row.created_at_us,
        chats_count,
    }))
}

pub async fn app_by_token(store: &ScyllaStore, token_hash: TokenHash) -> StoreResult<Option<App>> {
    let statements = store.statements().await?;
    let Some((id,)) = select_one::<(Option<i64>,)>(
        &store.inner.session,
        &statements.token_read,
        (token_hash.as_slice(),),
    )
    .await?
    else {
        return Ok(None);
    };
    let id = id
        .and_then(|id| u64::try_from(id).ok())
        .ok_or_else(|| StoreError::Corrupt("app token".into()))?;
    let app = app(store, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt("token of a missing app".into()))?;
    Ok(Some(app))
}

pub async fn chat(store: &ScyllaStore, app: AppId, chat: ChatNumber) -> StoreResult<Option<Chat>> {
    Ok(chat_row(store, app, chat, false)
        .await?
        .map(|row| row.to_chat(app, chat)))
}

/// The app's chats after `after`, in number order: the bucket directory,
/// then each bucket's index, then the chats themselves (an index entry of a
/// creation not yet applied is skipped).
pub async fn chats(
    store: &ScyllaStore,
    app: AppId,
    after: ChatNumber,
    limit: usize,
) -> StoreResult<Page<Chat>> {
    let (Some(app_id), Some(_)) = (db(app), db(after)) else {
        return Ok(Page {
            items: vec![],
            has_more: false,
        });
    };
    let statements = store.statements().await?;
    let session = &store.inner.session;
    let mut items: Vec<Chat> = Vec::with_capacity(limit.min(1024) + 1);
    let mut bucket_from = chat_bucket(after);
    let mut cursor = after as i64;
    'buckets: loop {
        let buckets: Vec<(i64,)> = select(
            session,
            &statements.buckets_from,
            (app_id, bucket_from, 64i32),
        )
        .await?;
        let Some(&(last_bucket,)) = buckets.last() else {
            break;
        };
        for (bucket,) in &buckets {
            loop {
                let want = (limit + 1 - items.len()).clamp(1, 1024);
                let numbers: Vec<(i64,)> = select(
                    session,
                    &statements.index_after,
                    (app_id, *bucket, cursor, want as i32),
                )
                .await?;
                let Some(&(last_number,)) = numbers.last() else {
                    break;
                };
                let full = numbers.len() == want;
                cursor = last_number;
                let found: Vec<Option<Chat>> = stream::iter(numbers)
                    .map(|(number,)| chat(store, app, number as u64))
                    .buffered(CHAT_READS_IN_FLIGHT)
                    .try_collect()
                    .await?;
                items.extend(found.into_iter().flatten());
                if items.len() > limit {
                    break 'buckets;
                }
                if !full {
                    break;
                }
            }
        }
        if buckets.len() < 64 {
            break;
        }
        bucket_from = last_bucket + 1;
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(Page { items, has_more })
}

pub async fn subscribers(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    after: Option<String>,
    limit: usize,
) -> StoreResult<Page<String>> {
    if chat_row(store, app, chat, false).await?.is_none() {
        return Err(StoreError::ChatNotFound);
    }
    let statements = store.statements().await?;
    let (app, chat) = (app as i64, chat as i64);
    let want = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);
    let rows: Vec<(Option<String>,)> = select(
        &store.inner.session,
        &statements.members_after,
        (app, chat, after.unwrap_or_default(), want),
    )
    .await?;
    let mut items: Vec<String> = rows.into_iter().filter_map(|(member,)| member).collect();
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(Page { items, has_more })
}

/// Reads the `user_chats` index and confirms every entry against the chat
/// (the truth): a crash between the index write and the subscription, or
/// between the unsubscription and the index delete, leaves an entry too
/// many, never one missing.
pub async fn user_chats(
    store: &ScyllaStore,
    app: AppId,
    user: String,
    after: ChatNumber,
    limit: usize,
) -> StoreResult<Page<ChatNumber>> {
    let statements = store.statements().await?;
    let want = limit.saturating_add(1);
    let mut items = Vec::with_capacity(want.min(1024));
    let mut cursor = after;
    loop {
        let ask = i32::try_from(want - items.len()).unwrap_or(i32::MAX);
        let rows: Vec<(i64,)> = select(
            &store.inner.session,
            &statements.user_chats_after,
            (app as i64, user.as_str(), cursor as i64, ask),
        )
        .await?;
        let exhausted = rows.len() < ask as usize;
        let Some(&(last,)) = rows.last() else {
            break;
        };
        cursor = last as u64;
        let user = user.as_str();
        let checks = rows
            .into_iter()
            .map(|(chat,)| async move {
                let chat = chat as u64;
                Ok(member_exists(store, app, chat, user).await?.then_some(chat))
            })
            .collect();
        items.extend(super::write::bounded(checks).await?.into_iter().flatten());
        if exhausted || items.len() >= want {
            break;
        }
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(Page { items, has_more })
}

pub async fn is_subscribed(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    user: String,
) -> StoreResult<bool> {
    if chat_row(store, app, chat, false).await?.is_none() {
        return Err(StoreError::ChatNotFound);
    }
    member_exists(store, app, chat, &user).await
}

pub async fn member_exists(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    user: &str,
) -> StoreResult<bool> {
    let statements = store.statements().await?;
    let rows: Vec<(Option<String>,)> = select(
        &store.inner.session,
        &statements.member_read,
        (app as i64, chat as i64, user),
    )
    .await?;
    Ok(rows.iter().any(|(member,)| member.as_deref() == Some(user)))
}

/// The chat and its whole subscriber set, read consistently: the set is
/// taken between two reads of the chat that show the same version, so no
/// change of the set happened in between.
pub async fn chat_state(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
) -> StoreResult<Option<ChatState>> {
    const ATTEMPTS: usize = 10;
    let statements = store.statements().await?;
    for _ in 0..ATTEMPTS {
        let Some(before) = chat_row(store, app, chat, false).await? else {
            return Ok(None);
        };
        let mut members = Vec::with_capacity(before.subscribers_count as usize);
        let mut rows = store
            .inner
            .session
            .execute_iter(
                statements.members_after.clone(),
                (
                    app as i64,
                    chat as i64,
                    "",
                    (SUBSCRIBERS_PER_CHAT_MAX + 1) as i32,
                ),
            )
            .await
            .map_err(engine_error)?
            .rows_stream::<(Option<String>,)>()
            .map_err(engine_error)?;
        while let Some(row) = rows.next().await {
            if let (Some(member),) = row.map_err(engine_error)? {
                members.push(member);
            }
        }
        let after = chat_row(store, app, chat, false).await?;
        if after.as_ref().map(|a| a.version) == Some(before.version) {
            if members.len() as u64 != before.subscribers_count {
                return Err(StoreError::Corrupt(format!(
                    "chat {app}/{chat}: {} subscribers counted, {} stored",
                    before.subscribers_count,
                    members.len()
                )));
            }
            return Ok(Some(ChatState {
                chat: before.to_chat(app, chat),
                subscribers: members,
            }));
        }
    }
    Err(StoreError::Engine(format!(
        "chat {app}/{chat}: its subscribers kept changing while being read"
    )))
}

pub type MessageColumns = (
    Option<i64>,
    Option<String>,
    Option<bool>,
    Option<Vec<String>>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

pub fn message_from(columns: MessageColumns) -> StoreResult<Message> {
    let (number, sender, has_recipients, recipients, body, client_id, sent_at_us) = columns;
    let number = number
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| StoreError::Corrupt("message number".into()))?;
    Ok(Message {
        number,
        sender: sender.ok_or_else(|| StoreError::Corrupt(format!("message {number}: sender")))?,
        recipients: has_recipients
            .unwrap_or(false)
            .then(|| recipients.unwrap_or_default()),
        body: body.unwrap_or_default(),
        // Stored as "" when absent (client ids are never empty).
        client_id: client_id.filter(|id| !id.is_empty()),
        sent_at_us: sent_at_us.unwrap_or(0),
    })
}

/// Stored messages `from..=to` of a chat, ascending, all of them (the
/// caller bounds the range); an error if one is missing.
pub async fn stored_range(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    from: MessageNumber,
    to: MessageNumber,
) -> StoreResult<Vec<Message>> {
    let mut found = Vec::new();
    let mut next = from;
    while next <= to {
        let bucket_end = to.min((next / MESSAGE_BUCKET + 1) * MESSAGE_BUCKET - 1);
        let rows = fetch(
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
            if message.number != next {
                return Err(missing(chat, next));
            }
            found.push(message);
            next += 1;
        }
        if next <= bucket_end {
            return Err(missing(chat, next));
        }
    }
    Ok(found)
}

fn missing(chat: ChatNumber, number: MessageNumber) -> StoreError {
    StoreError::MessagesLost { chat, number }
}

pub(super) async fn fetch(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    low: MessageNumber,
    high: MessageNumber,
    forward: bool,
    limit: u64,
) -> StoreResult<Vec<Message>> {
    let statements = store.statements().await?;
    let statement = if forward {
        &statements.messages_forward
    } else {
        &statements.messages_backward
    };
    let rows: Vec<MessageColumns> = select(
        &store.inner.session,
        statement,
        (
            app as i64,
            chat as i64,
            message_bucket(low),
            low as i64,
            high as i64,
            limit.min(i32::MAX as u64) as i32,
        ),
    )
    .await?;
    rows.into_iter().map(message_from).collect()
}

/// A page of history, with the embedded store's semantics: stored messages
/// are exactly 1..=last_number (numbering is gapless, and rows above it are
/// not committed), so the range to scan is known before reading, and
/// `has_more` is whether the scan stopped before the end of that range.
pub async fn messages(
    store: &ScyllaStore,
    app: AppId,
    chat: ChatNumber,
    query: &HistoryQuery,
) -> StoreResult<Page<Message>> {
    let row = chat_row(store, app, chat, false)
        .await?
        .ok_or(StoreError::ChatNotFound)?;
    let low = query.after.unwrap_or(0).saturating_add(1);
    let high = match query.before {
        Some(before) => before.saturating_sub(1).min(row.last_number),
        None => row.last_number,
    };
    let visible = |message: &Message| {
        query
            .viewer
            .as_deref()
            .is_none_or(|viewer| message.is_visible_to(viewer))
    };
    let mut items = Vec::with_capacity(query.limit.min(1024));
    let mut has_more = false;
    let mut scanned = 0usize;
    let forward = query.is_forward();
    // The next number to scan, moving up from `low` or down from `high`.
    let mut next = if forward { low } else { high };
    let in_range = |n: u64| low <= n && n <= high && n != 0;
    'scan: while in_range(next) {
        if scanned >= HISTORY_SCAN_MAX || items.len() == query.limit {
            has_more = true;
            break;
        }
        let bucket_start = (next / MESSAGE_BUCKET) * MESSAGE_BUCKET;
        let (from, to) = if forward {
            (next, high.min(bucket_start + MESSAGE_BUCKET - 1))
        } else {
            (low.max(bucket_start), next)
        };
        let budget = HISTORY_SCAN_MAX - scanned;
        let want = if query.viewer.is_some() {
            budget
        } else {
            budget.min(query.limit - items.len())
        };
        let want = (want as u64).min(to - from + 1);
        let rows = fetch(store, app, chat, from, to, forward, want).await?;
        // Every number of the range is stored: the first row that is not
        // the next number, or a short answer, names the first one lost.
        let complete = rows.len() as u64 == want;
        for message in rows {
            if message.number != next {
                return Err(missing(chat, next));
            }
            if scanned >= HISTORY_SCAN_MAX || items.len() == query.limit {
                has_more = true;
                break 'scan;
            }
            scanned += 1;
            if visible(&message) {
                items.push(message);
            }
            next = if forward { next + 1 } else { next - 1 };
        }
        if !complete {
            return Err(missing(chat, next));
        }
    }
    if !forward {
        items.reverse();
    }
    debug_assert!(items.windows(2).all(|w| w[0].number < w[1].number));
    Ok(Page { items, has_more })
}
