//! The write batch: what an owner shard asks the persistence API to make
//! durable in one atomic commit.
//!
//! Numbers are assigned by the engine (the chat's owner shard) before the
//! batch is sent, so a retried batch carries the same numbers and the API can
//! make the commit idempotent: a message whose (app, chat, number) already
//! exists with the same content is skipped; one with other content, or one
//! that would leave a gap, refuses the whole batch.

use std::collections::HashMap;

use rkyv::{Archive, Deserialize, Serialize, rancor};

use crate::limits::{
    BATCH_BYTES_MAX, BATCH_CHATS_MAX, BATCH_MESSAGES_MAX, CLIENT_ID_BYTES_MAX,
    IMPLICIT_CHAT_SUBSCRIBERS_MAX, NUMBER_MAX, RECIPIENTS_PER_MESSAGE_MAX, TIMESTAMP_US_MAX,
};
use crate::user_id::{UserIdError, validate_user_id};

/// HTTP headers that place a batch in its owner shard's stream, each a
/// number from 1 to [`NUMBER_MAX`]: the stream (one per shard and process),
/// the batch's sequence in it (from 1), and the oldest batch of the stream
/// whose answer the shard has not settled yet (at most the sequence: every
/// batch below it is settled). The API applies a stream's batches in
/// sequence, so a chat's messages may be in several batches in flight.
pub const BATCH_STREAM_HEADER: &str = "chat-batch-stream";
pub const BATCH_SEQ_HEADER: &str = "chat-batch-seq";
pub const BATCH_UNSETTLED_FROM_HEADER: &str = "chat-batch-unsettled-from";

/// One group commit.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Chosen by the sender for logs and tracing only; the commit does not depend on it.
    pub batch_id: u64,
    /// Chats that messages of this batch create implicitly. Applied before the messages.
    pub chats: Vec<NewChat>,
    /// New messages, in number order within each chat.
    pub messages: Vec<NewMessage>,
}

/// A chat created by its first message rather than by `POST /v1/chats`.
/// Creating one that exists only adds the subscribers it names.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NewChat {
    pub app: u64,
    pub number: u64,
    /// The sender of the first message and its `to` users.
    pub subscribers: Vec<String>,
    pub created_at_us: i64,
    /// Asked for with the app token (HTTP publish): any number up to
    /// [`NUMBER_MAX`] may be created. A user's message may create only a
    /// number at most [`IMPLICIT_CHAT_NUMBERS_AHEAD_MAX`] above the app's
    /// highest (the store checks).
    ///
    /// [`IMPLICIT_CHAT_NUMBERS_AHEAD_MAX`]: crate::limits::IMPLICIT_CHAT_NUMBERS_AHEAD_MAX
    pub by_app: bool,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub app: u64,
    pub chat: u64,
    /// Assigned by the chat's owner shard; 1 for a chat's first message.
    pub number: u64,
    pub sender: String,
    /// The users the message is addressed to; `None` means every subscriber.
    pub recipients: Option<Vec<String>>,
    pub body: String,
    /// The client's idempotency id, unique per (app, chat, sender).
    pub client_id: Option<String>,
    /// Microseconds since the Unix epoch, stamped by the engine.
    pub sent_at_us: i64,
    /// Published with the app token: the sender need not be a subscriber.
    /// Otherwise the store refuses the message's chat unless the sender is
    /// one when the batch commits.
    pub as_app: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is not a valid archive: {0}")]
    Corrupt(String),
    #[error("batch is {0} bytes, more than the {BATCH_BYTES_MAX} allowed")]
    TooLarge(usize),
    #[error("batch holds no chats and no messages")]
    Empty,
    #[error("batch holds {0} messages, more than the {BATCH_MESSAGES_MAX} allowed")]
    TooManyMessages(usize),
    #[error("batch holds {0} chats, more than the {BATCH_CHATS_MAX} allowed")]
    TooManyChats(usize),
    #[error("{what} must be from 1 to {NUMBER_MAX}, got {value}")]
    NumberOutOfRange { what: &'static str, value: u64 },
    #[error("{what}: {source}")]
    InvalidUser {
        what: &'static str,
        source: UserIdError,
    },
    #[error("message {chat}/{number}: body is empty")]
    EmptyBody { chat: u64, number: u64 },
    #[error("message {chat}/{number}: body is {len} bytes, more than {max}")]
    BodyTooLarge {
        chat: u64,
        number: u64,
        len: usize,
        max: usize,
    },
    #[error("message {chat}/{number}: {len} recipients, more than {RECIPIENTS_PER_MESSAGE_MAX}")]
    TooManyRecipients { chat: u64, number: u64, len: usize },
    #[error("chat {chat}: {len} subscribers, more than {IMPLICIT_CHAT_SUBSCRIBERS_MAX}")]
    TooManySubscribers { chat: u64, len: usize },
    #[error(
        "message {chat}/{number}: client id must be 1 to {CLIENT_ID_BYTES_MAX} printable bytes"
    )]
    InvalidClientId { chat: u64, number: u64 },
    #[error("chat {app}/{chat}: message {number} does not follow {previous} in the batch")]
    NotConsecutive {
        app: u64,
        chat: u64,
        previous: u64,
        number: u64,
    },
    #[error("{what} is {value} µs, outside 0 to {TIMESTAMP_US_MAX}")]
    TimestampOutOfRange { what: &'static str, value: i64 },
    #[error("chat {app}/{chat} is created twice in the batch")]
    DuplicateChat { app: u64, chat: u64 },
}

impl Batch {
    /// Checks everything that can be checked without the store: bounds,
    /// identifiers, and that each chat's numbers run consecutively.
    pub fn validate(&self, body_bytes_max: usize) -> Result<(), BatchError> {
        if self.chats.is_empty() && self.messages.is_empty() {
            return Err(BatchError::Empty);
        }
        if self.messages.len() > BATCH_MESSAGES_MAX {
            return Err(BatchError::TooManyMessages(self.messages.len()));
        }
        if self.chats.len() > BATCH_CHATS_MAX {
            return Err(BatchError::TooManyChats(self.chats.len()));
        }
        let mut created = HashMap::with_capacity(self.chats.len());
        for chat in &self.chats {
            chat.validate()?;
            if created.insert((chat.app, chat.number), ()).is_some() {
                return Err(BatchError::DuplicateChat {
                    app: chat.app,
                    chat: chat.number,
                });
            }
        }
        let mut last_number: HashMap<(u64, u64), u64> = HashMap::new();
        for message in &self.messages {
            message.validate(body_bytes_max)?;
            let key = (message.app, message.chat);
            if let Some(&previous) = last_number.get(&key)
                && message.number != previous + 1
            {
                return Err(BatchError::NotConsecutive {
                    app: message.app,
                    chat: message.chat,
                    previous,
                    number: message.number,
                });
            }
            last_number.insert(key, message.number);
        }
        Ok(())
    }
}

impl NewChat {
    fn validate(&self) -> Result<(), BatchError> {
        in_range(self.app, "chat app")?;
        in_range(self.number, "chat number")?;
        timestamp(self.created_at_us, "chat created_at_us")?;
        if self.subscribers.len() > IMPLICIT_CHAT_SUBSCRIBERS_MAX {
            return Err(BatchError::TooManySubscribers {
                chat: self.number,
                len: self.subscribers.len(),
            });
        }
        for user in &self.subscribers {
            validate_user_id(user).map_err(|source| BatchError::InvalidUser {
                what: "chat subscriber",
                source,
            })?;
        }
        Ok(())
    }
}

impl NewMessage {
    fn validate(&self, body_bytes_max: usize) -> Result<(), BatchError> {
        in_range(self.app, "message app")?;
        in_range(self.chat, "message chat")?;
        in_range(self.number, "message number")?;
        timestamp(self.sent_at_us, "message sent_at_us")?;
        let (chat, number) = (self.chat, self.number);
        validate_user_id(&self.sender).map_err(|source| BatchError::InvalidUser {
            what: "message sender",
            source,
        })?;
        if self.body.is_empty() {
            return Err(BatchError::EmptyBody { chat, number });
        }
        if self.body.len() > body_bytes_max {
            return Err(BatchError::BodyTooLarge {
                chat,
                number,
                len: self.body.len(),
                max: body_bytes_max,
            });
        }
        if let Some(recipients) = &self.recipients {
            if recipients.len() > RECIPIENTS_PER_MESSAGE_MAX {
                return Err(BatchError::TooManyRecipients {
                    chat,
                    number,
                    len: recipients.len(),
                });
            }
            for user in recipients {
                validate_user_id(user).map_err(|source| BatchError::InvalidUser {
                    what: "message recipient",
                    source,
                })?;
            }
        }
        if let Some(id) = &self.client_id
            && !is_valid_client_id(id)
        {
            return Err(BatchError::InvalidClientId { chat, number });
        }
        Ok(())
    }
}

/// A client id is 1 to [`CLIENT_ID_BYTES_MAX`] bytes of printable ASCII.
pub fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= CLIENT_ID_BYTES_MAX && id.bytes().all(|b| b.is_ascii_graphic())
}

fn timestamp(value: i64, what: &'static str) -> Result<(), BatchError> {
    if !(0..=TIMESTAMP_US_MAX).contains(&value) {
        return Err(BatchError::TimestampOutOfRange { what, value });
    }
    Ok(())
}

fn in_range(value: u64, what: &'static str) -> Result<(), BatchError> {
    if !(1..=NUMBER_MAX).contains(&value) {
        return Err(BatchError::NumberOutOfRange { what, value });
    }
    Ok(())
}

/// Encodes a batch after checking it, so a malformed batch never leaves the engine.
pub fn encode_batch(batch: &Batch, body_bytes_max: usize) -> Result<Vec<u8>, BatchError> {
    batch.validate(body_bytes_max)?;
    let bytes = rkyv::to_bytes::<rancor::Error>(batch)
        .map_err(|error| BatchError::Corrupt(error.to_string()))?;
    if bytes.len() > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge(bytes.len()));
    }
    Ok(bytes.into_vec())
}

/// Decodes and validates a batch from untrusted bytes. Never panics: a
/// truncated or corrupt archive is a [`BatchError::Corrupt`].
pub fn decode_batch(bytes: &[u8], body_bytes_max: usize) -> Result<Batch, BatchError> {
    if bytes.len() > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge(bytes.len()));
    }
    // rkyv needs the archive aligned; a request body carries no such promise.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let batch = rkyv::from_bytes::<Batch, rancor::Error>(&aligned).map_err(|error| {
        let archive = aligned.as_ptr() as usize..aligned.as_ptr() as usize + aligned.len();
        BatchError::Corrupt(addresses_as_offsets(&error.to_string(), archive))
    })?;
    batch.validate(body_bytes_max)?;
    Ok(batch)
}

/// Numbers below this are taken for tags or lengths, not addresses: a
/// position-independent 64-bit process (every Rust binary on Linux) has its
/// heap and stacks far above the first 4 GiB.
const ADDRESS_LIKE_MIN: usize = u32::MAX as usize;

/// rkyv's check errors name the memory addresses they checked
/// (`ptr 0x00007fa2a8000e30 ...`). The message reaches the sender of the
/// batch, and a heap address helps an attacker defeat address space layout
/// randomisation, so each `0x` number inside the archive becomes its offset
/// from the start, which is also what a reader of the message needs, and
/// any other that is large enough to be an address is left out. Small ones
/// (a tag, a length) stay.
fn addresses_as_offsets(text: &str, archive: std::ops::Range<usize>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at]);
        let digits = &rest[at + 2..];
        let len = digits
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(digits.len());
        match usize::from_str_radix(&digits[..len], 16) {
            Ok(address) if len > 0 && (archive.start..=archive.end).contains(&address) => {
                out.push_str(&format!("offset {}", address - archive.start));
            }
            Ok(address) if len > 0 && address > ADDRESS_LIKE_MIN => {
                out.push_str("an address outside the archive");
            }
            // A small number, or none: nothing of ours to hide.
            _ => out.push_str(&rest[at..at + 2 + len]),
        }
        rest = &digits[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MESSAGE_BODY_BYTES_MAX;

    fn message(chat: u64, number: u64) -> NewMessage {
        NewMessage {
            app: 1,
            chat,
            number,
            sender: "alice".into(),
            recipients: Some(vec!["bob".into()]),
            body: "hello".into(),
            client_id: Some("c-1".into()),
            sent_at_us: 1_700_000_000_000_000,
            as_app: false,
        }
    }

    fn batch(messages: Vec<NewMessage>) -> Batch {
        Batch {
            batch_id: 9,
            chats: vec![NewChat {
                app: 1,
                number: 1,
                subscribers: vec!["alice".into(), "bob".into()],
                created_at_us: 1,
                by_app: false,
            }],
            messages,
        }
    }

    #[test]
    fn round_trips() {
        let original = batch(vec![message(1, 1), message(1, 2), message(2, 7)]);
        let bytes = encode_batch(&original, MESSAGE_BODY_BYTES_MAX).unwrap();
        assert_eq!(
            decode_batch(&bytes, MESSAGE_BODY_BYTES_MAX).unwrap(),
            original
        );
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error_or_a_valid_batch() {
        let bytes = encode_batch(&batch(vec![message(1, 1)]), MESSAGE_BODY_BYTES_MAX).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode_batch(&bytes[..len], MESSAGE_BODY_BYTES_MAX).is_err(),
                "prefix {len}"
            );
        }
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[index] ^= 1 << bit;
                // Either refused, or a batch that passes validation: never a panic.
                if let Ok(decoded) = decode_batch(&flipped, MESSAGE_BODY_BYTES_MAX) {
                    decoded.validate(MESSAGE_BODY_BYTES_MAX).unwrap();
                }
            }
        }
    }

    #[test]
    fn a_corrupt_archive_is_reported_without_memory_addresses() {
        // rkyv's check errors name the pointers they checked; the API puts
        // this message in its answer, and an address there helps an
        // attacker defeat address space layout randomisation.
        let bytes = encode_batch(&batch(vec![message(1, 1)]), MESSAGE_BODY_BYTES_MAX).unwrap();
        for corrupt in [&b"not an archive"[..], &bytes[..bytes.len() - 1]] {
            let error = decode_batch(corrupt, MESSAGE_BODY_BYTES_MAX).unwrap_err();
            assert!(matches!(error, BatchError::Corrupt(_)), "{error}");
            assert!(!error.to_string().contains("0x"), "{error}");
        }
        assert_eq!(
            addresses_as_offsets(
                "ptr 0x7f0000001010 in 0x7f0000001000..0x7f000000100e, not 0x7f0000000fff",
                0x7f00_0000_1000..0x7f00_0000_1020
            ),
            "ptr offset 16 in offset 0..offset 14, not an address outside the archive"
        );
        assert_eq!(
            addresses_as_offsets("tag 0x05, 0x 0xzz", 0x7f00_0000_1000..0x7f00_0000_1020),
            "tag 0x05, 0x 0xzz"
        );
    }

    #[test]
    fn refuses_gaps_within_a_chat() {
        let error = batch(vec![message(1, 1), message(1, 3)]).validate(MESSAGE_BODY_BYTES_MAX);
        assert!(matches!(
            error,
            Err(BatchError::NotConsecutive {
                previous: 1,
                number: 3,
                ..
            })
        ));
    }

    #[test]
    fn refuses_bad_fields() {
        for number in [0, NUMBER_MAX + 1, 1 << 63, u64::MAX] {
            let mut out_of_range = message(1, number);
            out_of_range.number = number;
            assert!(matches!(
                batch(vec![out_of_range]).validate(MESSAGE_BODY_BYTES_MAX),
                Err(BatchError::NumberOutOfRange { .. })
            ));
            let mut chat = message(1, 1);
            chat.chat = number;
            assert!(batch(vec![chat]).validate(MESSAGE_BODY_BYTES_MAX).is_err());
        }
        let mut highest = message(1, NUMBER_MAX);
        highest.chat = NUMBER_MAX;
        assert_eq!(
            batch(vec![highest]).validate(MESSAGE_BODY_BYTES_MAX),
            Ok(())
        );
        let mut big = message(1, 1);
        big.body = "x".repeat(MESSAGE_BODY_BYTES_MAX + 1);
        assert!(matches!(
            batch(vec![big]).validate(MESSAGE_BODY_BYTES_MAX),
            Err(BatchError::BodyTooLarge { .. })
        ));
        let mut sender = message(1, 1);
        sender.sender = "not valid".into();
        assert!(
            batch(vec![sender])
                .validate(MESSAGE_BODY_BYTES_MAX)
                .is_err()
        );
        let mut id = message(1, 1);
        id.client_id = Some(String::new());
        assert!(batch(vec![id]).validate(MESSAGE_BODY_BYTES_MAX).is_err());
        let empty = Batch {
            batch_id: 1,
            chats: vec![],
            messages: vec![],
        };
        assert_eq!(
            empty.validate(MESSAGE_BODY_BYTES_MAX),
            Err(BatchError::Empty)
        );
    }
}
