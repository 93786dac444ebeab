//! Values of the embedded store, rkyv-encoded. Every read validates the
//! archive, so a corrupt value surfaces as [`StoreError::Corrupt`], never as
//! undefined behaviour or a panic.

use rkyv::{Archive, Deserialize, Serialize, rancor, util::AlignedVec};

use crate::store::{App, Chat, Message, StoreError, StoreResult};

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub title: String,
    pub token_hash: [u8; 32],
    pub created_at_us: i64,
    pub chats_count: u64,
    /// The highest chat number ever taken; the next `POST /v1/chats` gets one more.
    pub chat_sequence: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ChatRecord {
    pub title: Option<String>,
    pub created_at_us: i64,
    pub messages_count: u64,
    pub subscribers_count: u64,
    pub version: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub sender: String,
    pub recipients: Option<Vec<String>>,
    pub body: String,
    pub client_id: Option<String>,
    pub sent_at_us: i64,
}

/// One commit log entry: which consecutive messages of which chats a batch
/// commit stored. Keys, not copies: the messages are in the same snapshot.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CommitLogRecord {
    pub committed_at_us: i64,
    pub ranges: Vec<MessageRange>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MessageRange {
    pub app: u64,
    pub chat: u64,
    pub first: u64,
    pub last: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MigrationRecord {
    pub name: String,
    pub applied_at_us: i64,
}

pub fn encode<T>(value: &T) -> Vec<u8>
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<
            AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Error,
        >,
    >,
{
    // Serializing plain owned data into a growable buffer cannot fail.
    rkyv::to_bytes::<rancor::Error>(value)
        .expect("rkyv serialization into memory")
        .into_vec()
}

pub fn decode<T>(bytes: &[u8]) -> StoreResult<T>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, rancor::Error>>,
{
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rancor::Error>(&aligned)
        .map_err(|error| StoreError::Corrupt(format!("{}: {error}", std::any::type_name::<T>())))
}

impl AppRecord {
    pub fn into_app(self, id: u64) -> App {
        App {
            id,
            title: self.title,
            created_at_us: self.created_at_us,
            chats_count: self.chats_count,
        }
    }
}

impl ChatRecord {
    pub fn to_chat(&self, app: u64, number: u64) -> Chat {
        Chat {
            app,
            number,
            title: self.title.clone(),
            created_at_us: self.created_at_us,
            messages_count: self.messages_count,
            subscribers_count: self.subscribers_count,
            version: self.version,
        }
    }
}

impl MessageRecord {
    pub fn into_message(self, number: u64) -> Message {
        Message {
            number,
            sender: self.sender,
            recipients: self.recipients,
            body: self.body,
            client_id: self.client_id,
            sent_at_us: self.sent_at_us,
        }
    }
}
