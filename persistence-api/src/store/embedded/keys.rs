//! Key layouts of the embedded store. Integers are big-endian so that the
//! byte order of keys is their numeric order, which history paging relies on.
//! Strings inside composite keys are length-prefixed (user ids are at most
//! 128 bytes, so one byte holds the length) to keep prefixes unambiguous.

use crate::store::{AppId, ChatNumber, MessageNumber};

pub const APP_SEQUENCE: &[u8] = b"app_sequence";
/// The newest commit log position, kept apart from the log so that it
/// survives the log being trimmed empty.
pub const COMMIT_LOG_HEAD: &[u8] = b"commit_log_head";

pub fn app(app: AppId) -> [u8; 8] {
    app.to_be_bytes()
}

pub fn chat(app: AppId, chat: ChatNumber) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&app.to_be_bytes());
    key[8..].copy_from_slice(&chat.to_be_bytes());
    key
}

pub fn chat_number_of(key: &[u8]) -> Option<ChatNumber> {
    Some(u64::from_be_bytes(key.get(8..16)?.try_into().ok()?))
}

pub fn message(app: AppId, chat_number: ChatNumber, number: MessageNumber) -> [u8; 24] {
    let mut key = [0; 24];
    key[..16].copy_from_slice(&chat(app, chat_number));
    key[16..].copy_from_slice(&number.to_be_bytes());
    key
}

pub fn message_number_of(key: &[u8]) -> Option<MessageNumber> {
    Some(u64::from_be_bytes(key.get(16..24)?.try_into().ok()?))
}

/// `app | chat | user`: the chat's members, in user id order.
pub fn subscriber(app: AppId, chat_number: ChatNumber, user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + user.len());
    key.extend_from_slice(&chat(app, chat_number));
    key.extend_from_slice(user.as_bytes());
    key
}

pub fn subscriber_user_of(key: &[u8]) -> Option<String> {
    String::from_utf8(key.get(16..)?.to_vec()).ok()
}

/// `app | chat | user`: a member's read position, in the layout of
/// [`subscriber`] so that a page of members reads its positions in order.
pub fn read_position(app: AppId, chat_number: ChatNumber, user: &str) -> Vec<u8> {
    subscriber(app, chat_number, user)
}

/// `app | len | user | chat`: the chats of a user, for lookups by user.
pub fn user_chat(app: AppId, user: &str, chat_number: ChatNumber) -> Vec<u8> {
    let mut key = user_chats_of(app, user);
    key.extend_from_slice(&chat_number.to_be_bytes());
    key
}

/// `app | len | user`: the prefix of every [`user_chat`] key of one user.
pub fn user_chats_of(app: AppId, user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + user.len() + 8);
    key.extend_from_slice(&app.to_be_bytes());
    key.push(length_prefix(user));
    key.extend_from_slice(user.as_bytes());
    key
}

/// The chat number of a [`user_chat`] key whose prefix is `prefix_len` long.
pub fn user_chat_number_of(key: &[u8], prefix_len: usize) -> Option<ChatNumber> {
    let end = prefix_len.checked_add(8)?;
    if key.len() != end {
        return None;
    }
    Some(u64::from_be_bytes(
        key.get(prefix_len..end)?.try_into().ok()?,
    ))
}

fn length_prefix(user: &str) -> u8 {
    // Validated user ids are at most 128 bytes; a longer one here is a bug upstream.
    assert!(
        user.len() <= usize::from(u8::MAX),
        "user id of {} bytes reached the store",
        user.len()
    );
    user.len() as u8
}

pub fn decode_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_numerically() {
        let mut keys: Vec<_> = [1u64, 256, 2, 65_536, 255]
            .iter()
            .map(|&n| message(1, 1, n))
            .collect();
        keys.sort();
        let numbers: Vec<_> = keys.iter().map(|k| message_number_of(k).unwrap()).collect();
        assert_eq!(numbers, [1, 2, 255, 256, 65_536]);
    }

    #[test]
    fn user_chat_keys_round_trip_and_sort_by_chat() {
        let prefix = user_chats_of(7, "bob");
        let mut keys: Vec<_> = [300u64, 2, 1]
            .iter()
            .map(|&c| user_chat(7, "bob", c))
            .collect();
        keys.sort();
        let chats: Vec<_> = keys
            .iter()
            .map(|k| user_chat_number_of(k, prefix.len()).unwrap())
            .collect();
        assert_eq!(chats, [1, 2, 300]);
        // "bo" is not a prefix of "bob"'s keys: the length byte differs.
        assert!(!user_chat(7, "bob", 1).starts_with(&user_chats_of(7, "bo")));
    }

    #[test]
    fn subscriber_keys_round_trip() {
        let key = subscriber(3, 4, "alice");
        assert_eq!(subscriber_user_of(&key).as_deref(), Some("alice"));
        assert_eq!(chat_number_of(&key), Some(4));
    }
}
