//! Server-to-client WebSocket frames as bytes ready for the socket (RFC 6455
//! §5.2). A server's frames are never masked, so a message's frame is the
//! same for every receiver: the owner shard builds it once and every
//! connection writes those bytes, without per-connection framing.

use async_tungstenite::tungstenite::Utf8Bytes;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::Frame;
use async_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use bytes::Bytes;

/// A close frame's payload: a 2-byte code and a reason of at most 123 bytes.
const CLOSE_REASON_BYTES_MAX: usize = 123;

/// One final text frame carrying `payload` (UTF-8 JSON).
pub fn text(payload: Vec<u8>) -> Bytes {
    encode(Frame::message(payload, OpCode::Data(Data::Text), true))
}

/// A close frame with a status code and a short reason.
pub fn close(code: u16, reason: &'static str) -> Bytes {
    assert!(
        reason.len() <= CLOSE_REASON_BYTES_MAX,
        "a close reason fits a control frame"
    );
    encode(Frame::close(Some(CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from_static(reason),
    })))
}

/// tungstenite's own encoder: the header (unmasked, as a server's frames
/// are) and the payload, copied once into a buffer of the exact size.
fn encode(frame: Frame) -> Bytes {
    let mut bytes = Vec::with_capacity(frame.len());
    frame
        .format(&mut bytes)
        .expect("writing a frame into a Vec cannot fail");
    Bytes::from(bytes)
}

/// The payload of a frame made here (for tests and assertions).
pub fn payload(frame: &[u8]) -> &[u8] {
    let header = match frame[1] {
        0..=125 => 2,
        126 => 4,
        _ => 10,
    };
    &frame[header..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_tungstenite::tungstenite::protocol::frame::FrameHeader;
    use std::io::Cursor;

    /// Parses a frame with tungstenite's own parser: header and payload.
    fn parse(frame: &[u8]) -> (FrameHeader, u64, usize) {
        let mut cursor = Cursor::new(frame);
        let (header, length) = FrameHeader::parse(&mut cursor)
            .expect("a valid header")
            .expect("a complete header");
        (header, length, cursor.position() as usize)
    }

    #[test]
    fn text_frames_of_each_length_class_parse_back() {
        for length in [0, 1, 125, 126, 65_535, 65_536, 200_000] {
            let payload_bytes = vec![b'x'; length];
            let frame = text(payload_bytes.clone());
            let (header, parsed_length, header_bytes) = parse(&frame);
            assert!(header.is_final);
            assert!(header.mask.is_none(), "server frames are not masked");
            assert_eq!(parsed_length, length as u64);
            assert_eq!(frame.len(), header_bytes + length);
            assert_eq!(payload(&frame), &payload_bytes[..]);
        }
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let frame = close(1008, "slow_consumer");
        let (header, length, header_bytes) = parse(&frame);
        assert!(header.is_final);
        assert_eq!(length as usize, 2 + "slow_consumer".len());
        assert_eq!(
            &frame[header_bytes..header_bytes + 2],
            &1008u16.to_be_bytes()
        );
        assert_eq!(&frame[header_bytes + 2..], b"slow_consumer");
    }
}
