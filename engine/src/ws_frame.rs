//! Server-to-client WebSocket frames as bytes ready for the socket (RFC 6455
//! §5.2). A server's frames are never masked, so a message's frame is the
//! same for every receiver: the owner shard builds it once and every
//! connection writes those bytes, without per-connection framing.

use bytes::{BufMut, Bytes, BytesMut};

const FIN: u8 = 0x80;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
/// Longest header of an unmasked frame: 2 bytes and an 8-byte length.
const HEADER_BYTES_MAX: usize = 10;
/// A close frame's payload: a 2-byte code and a reason of at most 123 bytes.
const CLOSE_REASON_BYTES_MAX: usize = 123;

/// One final text frame carrying `payload` (UTF-8 JSON).
pub fn text(payload: &[u8]) -> Bytes {
    frame(OPCODE_TEXT, &[payload])
}

/// A close frame with a status code and a short reason.
pub fn close(code: u16, reason: &str) -> Bytes {
    assert!(
        reason.len() <= CLOSE_REASON_BYTES_MAX,
        "a close reason fits a control frame"
    );
    frame(OPCODE_CLOSE, &[&code.to_be_bytes(), reason.as_bytes()])
}

fn frame(opcode: u8, parts: &[&[u8]]) -> Bytes {
    let length: usize = parts.iter().map(|part| part.len()).sum();
    let mut frame = BytesMut::with_capacity(HEADER_BYTES_MAX + length);
    frame.put_u8(FIN | opcode);
    match length {
        0..=125 => frame.put_u8(length as u8),
        126..=0xFFFF => {
            frame.put_u8(126);
            frame.put_u16(length as u16);
        }
        _ => {
            frame.put_u8(127);
            frame.put_u64(length as u64);
        }
    }
    for part in parts {
        frame.put_slice(part);
    }
    frame.freeze()
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
            let frame = text(&payload_bytes);
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
