//! The WebSocket client frame parser on any text: the input as UTF-8 when it
//! is, and always as lossy text (what a sloppy transport would hand over).
//!
//! Checks: no panic; every error is one of the three codes the parser may
//! answer with, and the document lists it; an accepted frame, written back as
//! JSON, parses to the same frame (nothing the parser kept depends on how the
//! client spelled it).

#![no_main]

use std::sync::LazyLock;

use chat_engine::frames::{ClientFrame, parse_client_frame};
use chat_fuzz::codes::Documented;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

static ENGINE_CODES: LazyLock<Documented> = LazyLock::new(|| Documented::section("Engine"));

/// What the frame parser itself can refuse with; the rest are later checks.
const PARSER_CODES: [&str; 3] = ["malformed_frame", "invalid_frame", "unknown_type"];

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        check(text);
    }
    check(&String::from_utf8_lossy(bytes));
});

fn check(text: &str) {
    match parse_client_frame(text) {
        Err(error) => {
            let code = error.code();
            assert!(PARSER_CODES.contains(&code), "{code} for {text:?}");
            assert!(ENGINE_CODES.has(code), "{code} is not in docs/ERRORS.md");
        }
        Ok(frame) => {
            let again = to_json(&frame).to_string();
            assert_eq!(
                parse_client_frame(&again).as_ref(),
                Ok(&frame),
                "{text:?} was accepted, its re-encoding {again:?} not the same"
            );
        }
    }
}

/// The frame as a client would write it, with the optional fields left out
/// when absent (their default).
fn to_json(frame: &ClientFrame) -> Value {
    match frame {
        ClientFrame::Send { chat, body, to, id } => {
            let mut value = json!({"type": "send", "chat": chat, "body": body});
            if let Some(to) = to {
                value["to"] = json!(to);
            }
            if let Some(id) = id {
                value["id"] = json!(id);
            }
            value
        }
        ClientFrame::Sync { chats } => json!({"type": "sync", "chats": chats}),
        ClientFrame::Ping {} => json!({"type": "ping"}),
        ClientFrame::Refresh { token } => json!({"type": "refresh", "token": token}),
        ClientFrame::Leave { chat } => json!({"type": "leave", "chat": chat}),
        ClientFrame::Read { chat, number } => {
            json!({"type": "read", "chat": chat, "number": number})
        }
        ClientFrame::Typing { chat } => json!({"type": "typing", "chat": chat}),
    }
}
