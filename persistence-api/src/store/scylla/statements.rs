//! Every statement the backend runs, prepared once per session. Reads that
//! decide a conditional write are serial (linearizable with the LWTs);
//! others are QUORUM, which sees every acknowledged write.

use scylla::client::session::Session;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;

use super::engine_error;
use crate::store::StoreResult;

pub struct Statements {
    // meta and apps
    pub app_sequence_serial: PreparedStatement,
    pub app_sequence_advance: PreparedStatement,
    pub app_insert: PreparedStatement,
    pub app_read: PreparedStatement,
    pub app_read_serial: PreparedStatement,
    pub app_rename: PreparedStatement,
    pub app_add_intents: PreparedStatement,
    pub app_finish_intents: PreparedStatement,
    pub token_insert: PreparedStatement,
    pub token_read: PreparedStatement,
    // chat creation
    pub intent_write: PreparedStatement,
    pub intent_read: PreparedStatement,
    pub index_write: PreparedStatement,
    pub bucket_write: PreparedStatement,
    pub chat_create: PreparedStatement,
    // chats and subscribers
    pub chat_read: PreparedStatement,
    pub chat_read_serial: PreparedStatement,
    pub member_insert: PreparedStatement,
    pub member_delete: PreparedStatement,
    pub member_read: PreparedStatement,
    pub members_after: PreparedStatement,
    pub members_change: PreparedStatement,
    pub user_chat_insert: PreparedStatement,
    pub user_chat_delete: PreparedStatement,
    pub user_chats_after: PreparedStatement,
    pub buckets_from: PreparedStatement,
    pub index_after: PreparedStatement,
    // messages
    pub claim: PreparedStatement,
    pub commit: PreparedStatement,
    pub message_write: PreparedStatement,
    pub messages_forward: PreparedStatement,
    pub messages_backward: PreparedStatement,
    // read positions
    pub read_position_write: PreparedStatement,
    pub read_positions_between: PreparedStatement,
}

const CHAT_COLUMNS: &str =
    "intent, title, created_at_us, last_number, subscribers_count, version, fence, claim";
const APP_COLUMNS: &str = "title, created_at_us, chats_count, chat_sequence, pending_chats";
const MESSAGE_COLUMNS: &str =
    "number, sender, has_recipients, recipients, body, client_id, sent_at_us";

impl Statements {
    pub async fn prepare(session: &Session, keyspace: &str) -> StoreResult<Self> {
        let ks = keyspace;
        let prepare = |cql: String, idempotent: bool| async move {
            let mut statement = session
                .prepare(cql.as_str())
                .await
                .map_err(|e| engine_error(format!("preparing {cql}: {e}")))?;
            statement.set_is_idempotent(idempotent);
            Ok::<_, crate::store::StoreError>(statement)
        };
        let serial = |mut statement: PreparedStatement| {
            statement.set_consistency(Consistency::Serial);
            statement
        };
        Ok(Self {
            app_sequence_serial: serial(
                prepare(
                    format!("SELECT value FROM {ks}.meta WHERE name = 'app_sequence'"),
                    true,
                )
                .await?,
            ),
            app_sequence_advance: prepare(
                format!("UPDATE {ks}.meta SET value = ? WHERE name = 'app_sequence' IF value = ?"),
                false,
            )
            .await?,
            app_insert: prepare(
                format!(
                    "INSERT INTO {ks}.apps (app, title, token_hash, created_at_us, chats_count, \
                     chat_sequence) VALUES (?, ?, ?, ?, 0, 0) IF NOT EXISTS"
                ),
                false,
            )
            .await?,
            app_read: prepare(
                format!("SELECT {APP_COLUMNS} FROM {ks}.apps WHERE app = ?"),
                true,
            )
            .await?,
            app_read_serial: serial(
                prepare(
                    format!("SELECT {APP_COLUMNS} FROM {ks}.apps WHERE app = ?"),
                    true,
                )
                .await?,
            ),
            app_rename: prepare(
                format!("UPDATE {ks}.apps SET title = ? WHERE app = ? IF EXISTS"),
                false,
            )
            .await?,
            app_add_intents: prepare(
                format!(
                    "UPDATE {ks}.apps SET pending_chats = ?, chat_sequence = ? WHERE app = ? \
                     IF chat_sequence = ? AND pending_chats = null"
                ),
                false,
            )
            .await?,
            app_finish_intents: prepare(
                format!(
                    "UPDATE {ks}.apps SET pending_chats = null, chats_count = ? WHERE app = ? \
                     IF pending_chats = ? AND chats_count = ?"
                ),
                false,
            )
            .await?,
            token_insert: prepare(
                format!(
                    "INSERT INTO {ks}.app_tokens (token_hash, app) VALUES (?, ?) IF NOT EXISTS"
                ),
                false,
            )
            .await?,
            token_read: prepare(
                format!("SELECT app FROM {ks}.app_tokens WHERE token_hash = ?"),
                true,
            )
            .await?,
            intent_write: prepare(
                format!(
                    "INSERT INTO {ks}.chat_intents (app, chat, intent, title, created_at_us, \
                     subscribers) VALUES (?, ?, ?, ?, ?, ?)"
                ),
                true,
            )
            .await?,
            intent_read: prepare(
                format!(
                    "SELECT title, created_at_us, subscribers FROM {ks}.chat_intents \
                     WHERE app = ? AND chat = ? AND intent = ?"
                ),
                true,
            )
            .await?,
            index_write: prepare(
                format!("INSERT INTO {ks}.chat_index (app, bucket, chat) VALUES (?, ?, ?)"),
                true,
            )
            .await?,
            bucket_write: prepare(
                format!("INSERT INTO {ks}.chat_buckets (app, bucket) VALUES (?, ?)"),
                true,
            )
            .await?,
            chat_create: prepare(
                format!(
                    "INSERT INTO {ks}.chats (app, chat, intent, title, created_at_us, last_number, \
                     subscribers_count, version, fence) VALUES (?, ?, ?, ?, ?, 0, ?, ?, 0) \
                     IF NOT EXISTS"
                ),
                false,
            )
            .await?,
            chat_read: prepare(
                format!("SELECT {CHAT_COLUMNS} FROM {ks}.chats WHERE app = ? AND chat = ? LIMIT 1"),
                true,
            )
            .await?,
            chat_read_serial: serial(
                prepare(
                    format!(
                        "SELECT {CHAT_COLUMNS} FROM {ks}.chats WHERE app = ? AND chat = ? LIMIT 1"
                    ),
                    true,
                )
                .await?,
            ),
            member_insert: prepare(
                format!("INSERT INTO {ks}.chats (app, chat, member) VALUES (?, ?, ?)"),
                true,
            )
            .await?,
            member_delete: prepare(
                format!("DELETE FROM {ks}.chats WHERE app = ? AND chat = ? AND member = ?"),
                true,
            )
            .await?,
            member_read: prepare(
                format!("SELECT member FROM {ks}.chats WHERE app = ? AND chat = ? AND member = ?"),
                true,
            )
            .await?,
            members_after: prepare(
                format!(
                    "SELECT member FROM {ks}.chats WHERE app = ? AND chat = ? AND member > ? \
                     LIMIT ?"
                ),
                true,
            )
            .await?,
            members_change: prepare(
                format!(
                    "UPDATE {ks}.chats SET subscribers_count = ?, version = ? \
                     WHERE app = ? AND chat = ? IF version = ?"
                ),
                false,
            )
            .await?,
            user_chat_insert: prepare(
                format!("INSERT INTO {ks}.user_chats (app, member, chat) VALUES (?, ?, ?)"),
                true,
            )
            .await?,
            user_chat_delete: prepare(
                format!("DELETE FROM {ks}.user_chats WHERE app = ? AND member = ? AND chat = ?"),
                true,
            )
            .await?,
            user_chats_after: prepare(
                format!(
                    "SELECT chat FROM {ks}.user_chats WHERE app = ? AND member = ? AND chat > ? \
                     LIMIT ?"
                ),
                true,
            )
            .await?,
            buckets_from: prepare(
                format!(
                    "SELECT bucket FROM {ks}.chat_buckets WHERE app = ? AND bucket >= ? LIMIT ?"
                ),
                true,
            )
            .await?,
            index_after: prepare(
                format!(
                    "SELECT chat FROM {ks}.chat_index WHERE app = ? AND bucket = ? AND chat > ? \
                     LIMIT ?"
                ),
                true,
            )
            .await?,
            claim: prepare(
                format!(
                    "UPDATE {ks}.chats SET fence = ?, claim = ? WHERE app = ? AND chat = ? \
                     IF fence = ? AND last_number = ?"
                ),
                false,
            )
            .await?,
            commit: prepare(
                format!(
                    "UPDATE {ks}.chats SET last_number = ?, claim = 0 \
                     WHERE app = ? AND chat = ? IF claim = ? AND version = ?"
                ),
                false,
            )
            .await?,
            message_write: prepare(
                format!(
                    "INSERT INTO {ks}.messages (app, chat, bucket, number, sender, has_recipients, \
                     recipients, body, client_id, sent_at_us) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
                ),
                true,
            )
            .await?,
            messages_forward: prepare(
                format!(
                    "SELECT {MESSAGE_COLUMNS} FROM {ks}.messages \
                     WHERE app = ? AND chat = ? AND bucket = ? AND number >= ? AND number <= ? \
                     ORDER BY number ASC LIMIT ?"
                ),
                true,
            )
            .await?,
            messages_backward: prepare(
                format!(
                    "SELECT {MESSAGE_COLUMNS} FROM {ks}.messages \
                     WHERE app = ? AND chat = ? AND bucket = ? AND number >= ? AND number <= ? \
                     ORDER BY number DESC LIMIT ?"
                ),
                true,
            )
            .await?,
            // The position is its own write timestamp (0002_read_positions.cql):
            // rewriting it is harmless, so it is idempotent.
            read_position_write: prepare(
                format!(
                    "UPDATE {ks}.read_positions USING TIMESTAMP ? SET number = ? \
                     WHERE app = ? AND chat = ? AND member = ?"
                ),
                true,
            )
            .await?,
            read_positions_between: prepare(
                format!(
                    "SELECT member, number FROM {ks}.read_positions \
                     WHERE app = ? AND chat = ? AND member >= ? AND member <= ?"
                ),
                true,
            )
            .await?,
        })
    }
}
