//! Batches built from fuzz input: small numbers and user ids from a short
//! list most of the time, so that many generated batches are valid and the
//! checks past validation are reached, with the edges of every range and
//! arbitrary values the rest of the time.

use arbitrary::Arbitrary;
use chat_wire::limits::NUMBER_MAX;
use chat_wire::{Batch, NewChat, NewMessage};

#[derive(Arbitrary, Debug)]
pub struct BatchSpec {
    pub batch_id: u64,
    pub chats: Vec<ChatSpec>,
    pub messages: Vec<MessageSpec>,
}

#[derive(Arbitrary, Debug)]
pub struct ChatSpec {
    pub app: Number,
    pub number: Number,
    pub subscribers: Vec<User>,
    pub created_at_us: i64,
    pub by_app: bool,
}

#[derive(Arbitrary, Debug)]
pub struct MessageSpec {
    pub app: Number,
    pub chat: Number,
    pub number: Number,
    pub sender: User,
    pub recipients: Option<Vec<User>>,
    pub body: String,
    pub client_id: Option<String>,
    pub sent_at_us: i64,
    pub as_app: bool,
}

/// Mostly small numbers, sometimes the edges of the range, sometimes any.
#[derive(Arbitrary, Debug)]
pub enum Number {
    Small(u8),
    NearMax(u8),
    Any(u64),
}

impl Number {
    pub fn value(&self) -> u64 {
        match self {
            Number::Small(n) => u64::from(*n % 8),
            Number::NearMax(n) => NUMBER_MAX.wrapping_add(u64::from(*n % 4)) - 2,
            Number::Any(n) => *n,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum User {
    Known(u8),
    Any(String),
}

impl User {
    pub fn id(&self) -> String {
        const KNOWN: [&str; 4] = ["alice", "bob", "carol@example.com", "d.e_f-g:h"];
        match self {
            User::Known(i) => KNOWN[usize::from(*i) % KNOWN.len()].to_owned(),
            User::Any(text) => text.clone(),
        }
    }
}

impl BatchSpec {
    pub fn build(&self) -> Batch {
        Batch {
            batch_id: self.batch_id,
            chats: self
                .chats
                .iter()
                .map(|chat| NewChat {
                    app: chat.app.value(),
                    number: chat.number.value(),
                    subscribers: chat.subscribers.iter().map(User::id).collect(),
                    created_at_us: chat.created_at_us,
                    by_app: chat.by_app,
                })
                .collect(),
            messages: self
                .messages
                .iter()
                .map(|message| NewMessage {
                    app: message.app.value(),
                    chat: message.chat.value(),
                    number: message.number.value(),
                    sender: message.sender.id(),
                    recipients: message
                        .recipients
                        .as_ref()
                        .map(|users| users.iter().map(User::id).collect()),
                    body: message.body.clone(),
                    client_id: message.client_id.clone(),
                    sent_at_us: message.sent_at_us,
                    as_app: message.as_app,
                })
                .collect(),
        }
    }
}
