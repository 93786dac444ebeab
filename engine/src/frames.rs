//! The WebSocket protocol's frames (JSON text), version 1. Client frames are
//! parsed strictly (unknown fields are errors); server frames are encoded
//! once, as whole WebSocket frames ready for the socket, and shared as
//! bytes. docs/PROTOCOL.md documents every field.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::ws_frame;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    Send {
        chat: u64,
        body: String,
        #[serde(default)]
        to: Option<Vec<String>>,
        #[serde(default)]
        id: Option<String>,
    },
    Sync {
        /// Chat number (as a string: JSON object keys) → last number seen.
        chats: BTreeMap<String, u64>,
    },
    Ping {},
    /// A fresh user token for the same user: the session lives on until its
    /// expiry instead of the first token's.
    Refresh {
        token: String,
    },
    /// The user leaves the chat (unsubscribes).
    Leave {
        chat: u64,
    },
    /// The user has read the chat up to `number` (forward only).
    Read {
        chat: u64,
        number: u64,
    },
    /// The user is typing in the chat (relayed, not stored).
    Typing {
        chat: u64,
    },
}

/// Parses a client text frame with the strict reader every entrance shares
/// (`chat_wire::json`: a repeated key anywhere refuses the frame). The type
/// is read first so that an unknown type is reported as such rather than as
/// a shape error.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, EngineError> {
    use chat_wire::json::JsonBodyError;
    chat_wire::json::check_strict(text.as_bytes()).map_err(|error| match error {
        JsonBodyError::DuplicateKey(detail) => EngineError::InvalidFrame(detail),
        other => EngineError::MalformedFrame(other.to_string()),
    })?;
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| EngineError::MalformedFrame(error.to_string()))?;
    let Some(kind) = value.get("type") else {
        return Err(EngineError::InvalidFrame(
            "the frame has no \"type\"".into(),
        ));
    };
    match kind.as_str() {
        Some("send" | "sync" | "ping" | "refresh" | "leave" | "read" | "typing") => {}
        Some(other) => return Err(EngineError::UnknownType(other.chars().take(64).collect())),
        None => {
            return Err(EngineError::InvalidFrame(
                "\"type\" must be a string".into(),
            ));
        }
    }
    serde_json::from_value(value).map_err(|error| EngineError::InvalidFrame(error.to_string()))
}

#[derive(Serialize)]
struct AckFrame<'a> {
    r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    chat: u64,
    number: u64,
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    r#type: &'static str,
    chat: u64,
    number: u64,
    from: &'a str,
    body: &'a str,
    sent_at: &'a str,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    r#type: &'static str,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat: Option<u64>,
}

#[derive(Serialize)]
struct SyncedFrame<'a> {
    r#type: &'static str,
    chats: &'a BTreeMap<String, u64>,
    reads: &'a BTreeMap<String, SyncedRead>,
}

/// A user's read state of a chat, in `synced` and `read` frames: the read
/// position, and the unread messages up to the number the sync reached
/// (or the chat's count when the position moved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SyncedRead {
    pub number: u64,
    pub unread_count: u64,
    /// The count covers only the newest messages of a wider window.
    pub unread_capped: bool,
}

fn encode(value: &impl Serialize) -> Bytes {
    // Serializing these plain structs cannot fail.
    ws_frame::text(serde_json::to_vec(value).expect("frame serialization"))
}

pub fn ack(id: Option<&str>, chat: u64, number: u64) -> Bytes {
    encode(&AckFrame {
        r#type: "ack",
        id,
        chat,
        number,
    })
}

pub fn message(chat: u64, number: u64, from: &str, body: &str, sent_at: &str) -> Bytes {
    encode(&MessageFrame {
        r#type: "message",
        chat,
        number,
        from,
        body,
        sent_at,
    })
}

pub fn error(error: &EngineError, id: Option<&str>, chat: Option<u64>) -> Bytes {
    encode(&ErrorFrame {
        r#type: "error",
        code: error.code(),
        message: &error.to_string(),
        id,
        chat,
    })
}

pub fn synced(chats: &BTreeMap<String, u64>, reads: &BTreeMap<String, SyncedRead>) -> Bytes {
    encode(&SyncedFrame {
        r#type: "synced",
        chats,
        reads,
    })
}

#[derive(Serialize)]
struct RefreshedFrame<'a> {
    r#type: &'static str,
    expires_at: &'a str,
}

#[derive(Serialize)]
struct LeftFrame {
    r#type: &'static str,
    chat: u64,
}

/// A member's read position moved: to every connection of the member.
#[derive(Serialize)]
struct ReadFrame<'a> {
    r#type: &'static str,
    chat: u64,
    user: &'a str,
    #[serde(flatten)]
    read: SyncedRead,
}

pub fn read(chat: u64, user: &str, read: SyncedRead) -> Bytes {
    encode(&ReadFrame {
        r#type: "read",
        chat,
        user,
        read,
    })
}

/// Read positions that moved in a chat: to its members' connections.
#[derive(Serialize)]
struct ReadsFrame<'a> {
    r#type: &'static str,
    chat: u64,
    reads: Vec<ReadsEntry<'a>>,
}

#[derive(Serialize)]
struct ReadsEntry<'a> {
    user: &'a str,
    number: u64,
}

pub fn reads(chat: u64, moved: &BTreeMap<String, u64>) -> Bytes {
    encode(&ReadsFrame {
        r#type: "reads",
        chat,
        reads: moved
            .iter()
            .map(|(user, &number)| ReadsEntry { user, number })
            .collect(),
    })
}

/// Someone is typing in a chat: to its other members' connections.
#[derive(Serialize)]
struct TypingFrame<'a> {
    r#type: &'static str,
    chat: u64,
    user: &'a str,
    /// How long a client shows the indicator unless another one comes.
    expires_in_ms: u64,
}

pub fn typing(chat: u64, user: &str, expires_in_ms: u64) -> Bytes {
    encode(&TypingFrame {
        r#type: "typing",
        chat,
        user,
        expires_in_ms,
    })
}

pub fn refreshed(expires_at_s: i64) -> Bytes {
    let expires_at = rfc3339_s(expires_at_s);
    encode(&RefreshedFrame {
        r#type: "refreshed",
        expires_at: &expires_at,
    })
}

pub fn left(chat: u64) -> Bytes {
    encode(&LeftFrame {
        r#type: "left",
        chat,
    })
}

/// Whole seconds since the epoch, as RFC 3339 (a token's `exp`).
fn rfc3339_s(seconds: i64) -> String {
    let seconds = seconds.clamp(0, chat_wire::limits::TIMESTAMP_US_MAX / 1_000_000) as u64;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    humantime::format_rfc3339_seconds(time).to_string()
}

pub fn pong() -> Bytes {
    ws_frame::text(br#"{"type":"pong"}"#.to_vec())
}

pub fn rfc3339(us: i64) -> String {
    let us = us.clamp(0, chat_wire::limits::TIMESTAMP_US_MAX) as u64;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
    humantime::format_rfc3339_micros(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_client_frames() {
        assert_eq!(
            parse_client_frame(r#"{"type":"send","chat":7,"body":"hi","to":["bob"],"id":"c-1"}"#),
            Ok(ClientFrame::Send {
                chat: 7,
                body: "hi".into(),
                to: Some(vec!["bob".into()]),
                id: Some("c-1".into())
            })
        );
        let sync = parse_client_frame(r#"{"type":"sync","chats":{"7":41}}"#).unwrap();
        assert_eq!(
            sync,
            ClientFrame::Sync {
                chats: BTreeMap::from([("7".into(), 41)])
            }
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping {})
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"read","chat":7,"number":42}"#),
            Ok(ClientFrame::Read {
                chat: 7,
                number: 42
            })
        );
    }

    #[test]
    fn reports_each_kind_of_bad_frame() {
        let code = |text: &str| parse_client_frame(text).unwrap_err().code();
        assert_eq!(code("not json"), "malformed_frame");
        assert_eq!(code(r#"{"type":"dance"}"#), "unknown_type");
        assert_eq!(code(r#"{"chat":1}"#), "invalid_frame");
        assert_eq!(code(r#"{"type":"send","chat":1}"#), "invalid_frame");
        assert_eq!(
            code(r#"{"type":"send","chat":1,"body":"x","extra":1}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"send","chat":-1,"body":"x"}"#),
            "invalid_frame"
        );
        assert_eq!(code(r#"{"type":"ping","x":1}"#), "invalid_frame");
        assert_eq!(
            code(r#"{"type":"ping","type":"send","chat":1,"body":"x"}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"send","chat":1,"chat":2,"body":"x"}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"sync","chats":{"1":0,"1":5}}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"send","chat":18446744073709551616,"body":"x"}"#),
            "invalid_frame"
        );
    }

    fn json(frame: Bytes) -> String {
        String::from_utf8(ws_frame::payload(&frame).to_vec()).unwrap()
    }

    #[test]
    fn encodes_server_frames() {
        assert_eq!(
            json(ack(Some("c-1"), 7, 42)),
            r#"{"type":"ack","id":"c-1","chat":7,"number":42}"#
        );
        assert_eq!(
            json(message(
                7,
                42,
                "alice",
                "hi \"there\"",
                &rfc3339(1_700_000_000_000_000)
            )),
            r#"{"type":"message","chat":7,"number":42,"from":"alice","body":"hi \"there\"","sent_at":"2023-11-14T22:13:20.000000Z"}"#
        );
        assert_eq!(
            json(read(
                7,
                "alice",
                SyncedRead {
                    number: 42,
                    unread_count: 3,
                    unread_capped: false
                }
            )),
            r#"{"type":"read","chat":7,"user":"alice","number":42,"unread_count":3,"unread_capped":false}"#
        );
        let reads = BTreeMap::from([(
            "7".to_string(),
            SyncedRead {
                number: 40,
                unread_count: 5,
                unread_capped: true,
            },
        )]);
        assert_eq!(
            json(synced(&BTreeMap::from([("7".to_string(), 45)]), &reads)),
            r#"{"type":"synced","chats":{"7":45},"reads":{"7":{"number":40,"unread_count":5,"unread_capped":true}}}"#
        );
    }
}
