//! The JSON shapes of responses, documented in docs/API.md.

use serde::Serialize;

use crate::clock::rfc3339;
use crate::store::{App, Chat, Message};

#[derive(Serialize)]
pub struct AppView {
    pub id: u64,
    pub title: String,
    pub created_at: String,
    pub chats_count: u64,
}

impl From<App> for AppView {
    fn from(app: App) -> Self {
        Self {
            id: app.id,
            title: app.title,
            created_at: rfc3339(app.created_at_us),
            chats_count: app.chats_count,
        }
    }
}

/// The answer to `POST /v1/apps`: the only time the token is shown.
#[derive(Serialize)]
pub struct CreatedAppView {
    pub token: String,
    #[serde(flatten)]
    pub app: AppView,
}

#[derive(Serialize)]
pub struct ChatView {
    pub number: u64,
    pub title: Option<String>,
    pub created_at: String,
    pub messages_count: u64,
    pub subscribers_count: u64,
}

impl From<Chat> for ChatView {
    fn from(chat: Chat) -> Self {
        Self {
            number: chat.number,
            title: chat.title,
            created_at: rfc3339(chat.created_at_us),
            messages_count: chat.messages_count,
            subscribers_count: chat.subscribers_count,
        }
    }
}

#[derive(Serialize)]
pub struct ChatsPage {
    pub chats: Vec<ChatView>,
    pub has_more: bool,
}

#[derive(Serialize)]
pub struct SubscribersPage {
    pub subscribers: Vec<String>,
    pub has_more: bool,
}

#[derive(Serialize)]
pub struct SubscriptionView {
    pub chat: u64,
    pub user: String,
    pub subscribed: bool,
}

#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub number: u64,
    pub from: String,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<String>,
    pub sent_at: String,
    /// A message the store lost, marked by `chat repair`: no sender, no
    /// body, addressed to nobody (so only the app sees it).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub lost: bool,
}

impl From<Message> for MessageView {
    fn from(message: Message) -> Self {
        let lost = message.is_lost();
        Self {
            lost,
            number: message.number,
            from: message.sender,
            body: message.body,
            to: message.recipients,
            id: message.client_id,
            sent_at: rfc3339(message.sent_at_us),
        }
    }
}

#[derive(Serialize)]
pub struct MessagesPage {
    pub messages: Vec<MessageView>,
    pub has_more: bool,
}

/// One message of a member's feed: the message and the chat it is in.
#[derive(Serialize)]
pub struct FeedItemView {
    pub chat: u64,
    #[serde(flatten)]
    pub message: MessageView,
}

#[derive(Serialize)]
pub struct FeedView {
    pub messages: Vec<FeedItemView>,
    pub has_more: bool,
    /// The `before` of the next page, while `has_more`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A member's read state in one chat (`PUT`/`GET /v1/chats/{n}/read`).
#[derive(Serialize)]
pub struct ReadView {
    pub chat: u64,
    pub user: String,
    /// The read position in force: the highest number read, 0 for none.
    pub number: u64,
    /// The chat's count that `unread_count` was taken against.
    pub messages_count: u64,
    /// Messages after `number`, up to `messages_count`, that the member may
    /// see and did not send.
    pub unread_count: u64,
    /// More than `crate::unread::UNREAD_WINDOW_MAX` numbers lie after
    /// `number`: `unread_count` counts the newest of them only.
    pub unread_capped: bool,
}

#[derive(Serialize)]
pub struct ReadPositionView {
    pub user: String,
    pub number: u64,
}

#[derive(Serialize)]
pub struct ReadPositionsPage {
    pub reads: Vec<ReadPositionView>,
    pub has_more: bool,
}
