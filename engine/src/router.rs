//! The only way between shards: one bounded flume channel into each shard,
//! carrying [`ShardMessage`]s. A chat's owner is a pure function of
//! (app, chat), so every shard agrees on it without asking.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::EngineError;

pub type AppId = u64;
pub type ChatNumber = u64;
pub type ChatKey = (AppId, ChatNumber);
/// A connection's id, unique within its home shard.
pub type ConnId = u64;

/// What a send comes back with: the message's number, once durable.
pub type SendOutcome = Result<u64, EngineError>;

/// A message to be numbered and committed by the chat's owner shard.
pub struct SendRequest {
    pub app: AppId,
    pub chat: ChatNumber,
    pub sender: String,
    pub to: Option<Vec<String>>,
    pub body: String,
    pub client_id: Option<String>,
    /// Published with the app token: the sender need not be a subscriber.
    pub as_app: bool,
    /// Where the outcome goes; the owner answers exactly once.
    pub reply: Reply,
}

/// Where a send's outcome goes.
pub enum Reply {
    /// A WebSocket connection. The outcome travels to its home shard's inbox,
    /// the channel the message's own delivery takes after it, so the sender
    /// gets its ack before its message.
    Connection {
        home: usize,
        conn: ConnId,
        chat: ChatNumber,
        id: Option<String>,
    },
    /// An HTTP publish waiting on a one-slot channel.
    Waiter(flume::Sender<SendOutcome>),
}

/// A send's outcome on its way to the sending connection.
pub struct Answer {
    pub conn: ConnId,
    pub chat: ChatNumber,
    pub id: Option<String>,
    pub outcome: SendOutcome,
}

impl Reply {
    /// Delivers the outcome to a waiting channel at once; a connection's
    /// outcome comes back as the home shard and the message for its inbox.
    pub fn resolve(self, outcome: SendOutcome) -> Option<(usize, Answer)> {
        match self {
            // One answer per request: the channel has room for exactly it.
            Reply::Waiter(sender) => {
                let _ = sender.try_send(outcome);
                None
            }
            Reply::Connection {
                home,
                conn,
                chat,
                id,
            } => Some((
                home,
                Answer {
                    conn,
                    chat,
                    id,
                    outcome,
                },
            )),
        }
    }
}

/// A connection's user is typing in a chat: relayed, never stored.
pub struct TypingRequest {
    pub app: AppId,
    pub chat: ChatNumber,
    pub user: String,
    pub home: usize,
    pub conn: ConnId,
}

/// A frame for the chat's members connected to a shard (a typing
/// indicator, a `reads` event). Not a message: no number, nothing held
/// during syncs.
pub struct MembersFrame {
    pub app: AppId,
    /// The chat's members as its owner holds them.
    pub members: Arc<HashSet<String>>,
    /// The member who does not get it (the one typing); empty: no one, as
    /// no user id is empty.
    pub except: String,
    pub frame: Bytes,
}

/// A member's read position moved (durable already): the owner tells the
/// chat's online members, coalesced.
pub struct ReadMoved {
    pub app: AppId,
    pub chat: ChatNumber,
    pub user: String,
    pub number: u64,
}

/// Who of a chat's members is online: the owner answers the member set
/// (after checking that `viewer`, when given, is one of them).
pub struct PresenceRequest {
    pub app: AppId,
    pub chat: ChatNumber,
    /// The member asking (a user token); `None` for the app.
    pub viewer: Option<String>,
    pub reply: flume::Sender<Result<Arc<HashSet<String>>, EngineError>>,
}

/// Which of `members` have a connection on a shard: each shard answers its
/// own.
pub struct OnlineQuery {
    pub app: AppId,
    pub members: Arc<HashSet<String>>,
    pub reply: flume::Sender<Vec<String>>,
}

/// A connection's request for what it missed in one chat.
pub struct SyncRequest {
    pub app: AppId,
    pub chat: ChatNumber,
    pub user: String,
    pub after: u64,
    pub home: usize,
    pub conn: ConnId,
}

pub struct SyncResult {
    pub conn: ConnId,
    pub chat: ChatNumber,
    /// The missed messages visible to the user, in order, and the number the
    /// sync reached (the chat's last durable number when it was served).
    pub outcome: Result<(Vec<Arc<Delivery>>, u64), EngineError>,
}

/// Who receives a message live. The sender is always a target: whoever may
/// see a message in history gets it live too.
pub enum Targets {
    /// Every subscriber, as of the commit.
    Subscribers(Arc<HashSet<String>>),
    /// The `to` users that are subscribers, as of the commit.
    Users(Vec<String>),
}

/// A durable message as it travels to the shards: the frame is encoded once
/// by the owner and shared by every connection that receives it.
pub struct Delivery {
    pub app: AppId,
    pub chat: ChatNumber,
    pub number: u64,
    pub sender: String,
    /// `None`: addressed to every subscriber.
    pub recipients: Option<Vec<String>>,
    /// The whole WebSocket frame, as every receiver gets it.
    pub frame: Bytes,
    pub targets: Targets,
}

impl Delivery {
    /// Whether `user` may see the message (history and sync rules).
    pub fn visible_to(&self, user: &str) -> bool {
        self.sender == user
            || self
                .recipients
                .as_ref()
                .is_none_or(|recipients| recipients.iter().any(|r| r == user))
    }

    /// Whether `user` receives the message live.
    pub fn is_target(&self, user: &str) -> bool {
        self.sender == user
            || match &self.targets {
                Targets::Subscribers(subscribers) => subscribers.contains(user),
                Targets::Users(users) => users.iter().any(|u| u == user),
            }
    }
}

/// What a shard's inbox carries, by the part of the shard it is for: the
/// owner part (`owner::OwnerShard`) numbers and commits, the home part
/// (`home::HomeShard`) writes to connections. The owner hands its own
/// shard's home part the same [`ToHome`] messages directly.
pub enum ShardMessage {
    Owner(ToOwner),
    Home(ToHome),
    /// Stop accepting, drain, close connections.
    Shutdown,
}

/// Work for the chat's owner: a request from a connection or a publish.
pub enum ToOwner {
    Send(SendRequest),
    Sync(SyncRequest),
    Typing(TypingRequest),
    Presence(PresenceRequest),
    ReadMoved(ReadMoved),
}

/// Work for a connection's home: what an owner sends back, frames for a
/// user's or a chat's connections there, and the presence question.
pub enum ToHome {
    Answer(Answer),
    Deliver(Arc<Delivery>),
    SyncResult(SyncResult),
    ToUser(Arc<UserFrame>),
    ToMembers(Arc<MembersFrame>),
    /// One frame for one connection (an error to a request without an ack).
    ToConn(ConnId, Bytes),
    Online(OnlineQuery),
}

/// One frame for every connection of a user, on whichever shard.
pub struct UserFrame {
    pub app: AppId,
    pub user: String,
    pub frame: Bytes,
}

#[derive(Clone)]
pub struct Router {
    inboxes: Arc<Vec<flume::Sender<ShardMessage>>>,
}

impl Router {
    pub fn new(inboxes: Vec<flume::Sender<ShardMessage>>) -> Self {
        assert!(!inboxes.is_empty(), "a router needs at least one shard");
        Self {
            inboxes: Arc::new(inboxes),
        }
    }

    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// The chat's owner shard: a fixed mix of (app, chat), so that every shard
    /// (and every run) agrees.
    pub fn owner_of(&self, app: AppId, chat: ChatNumber) -> usize {
        (mix(app ^ mix(chat)) % self.inboxes.len() as u64) as usize
    }

    /// Sends to one shard, waiting while its inbox is full (backpressure).
    /// Fails only when the shard has stopped.
    pub async fn send_to(&self, shard: usize, message: ShardMessage) -> Result<(), EngineError> {
        self.inboxes[shard]
            .send_async(message)
            .await
            .map_err(|_| EngineError::ShuttingDown)
    }

    /// Sends to one shard without waiting; for messages that must not block
    /// the sender's inbox loop (shutdown).
    pub fn try_send_to(&self, shard: usize, message: ShardMessage) -> bool {
        self.inboxes[shard].try_send(message).is_ok()
    }
}

/// splitmix64's finaliser: a cheap, well-spread 64-bit mix.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_spread_over_shards_and_are_stable() {
        let (sender, _receiver) = flume::bounded(1);
        let router = Router::new(vec![sender.clone(), sender.clone(), sender]);
        let mut counts = [0usize; 3];
        for chat in 1..=3_000 {
            let owner = router.owner_of(1, chat);
            assert_eq!(owner, router.owner_of(1, chat));
            counts[owner] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
