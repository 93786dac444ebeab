//! Search cursors: where the next page starts, opaque to clients and
//! tamper-evident. A cursor is base64url of `version | sort | tier |
//! ordinal | mac`, the mac an HMAC-SHA256 (truncated to 16 bytes) over those
//! fields and the query's fingerprint, keyed from the operator key. So a
//! cursor cannot be forged, edited, or replayed against another query (or
//! another app or user): each of those answers `invalid_cursor`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::index::{Position, SortOrder};

const VERSION: u8 = 1;
const MAC_BYTES: usize = 16;
const FIELDS_BYTES: usize = 1 + 1 + 1 + 8;
const CURSOR_BYTES: usize = FIELDS_BYTES + MAC_BYTES;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one this search returned")]
pub struct InvalidCursor;

/// Signs and checks cursors.
#[derive(Clone)]
pub struct CursorKey {
    key: [u8; 32],
}

impl CursorKey {
    /// Derived from a secret the server already holds, so cursors survive a
    /// restart and work on every instance that shares it.
    pub fn derive(secret: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"chat search cursor key v1\0");
        hasher.update(secret.as_bytes());
        Self {
            key: hasher.finalize().into(),
        }
    }

    fn mac(&self, fields: &[u8], fingerprint: &[u8; 32]) -> [u8; MAC_BYTES] {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts a 32-byte key");
        mac.update(fields);
        mac.update(fingerprint);
        let full = mac.finalize().into_bytes();
        let mut out = [0; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    pub fn encode(&self, sort: SortOrder, position: Position, fingerprint: &[u8; 32]) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_BYTES);
        bytes.push(VERSION);
        bytes.push(sort as u8);
        bytes.push(position.tier);
        bytes.extend_from_slice(&position.ordinal.to_be_bytes());
        let mac = self.mac(&bytes, fingerprint);
        bytes.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(
        &self,
        cursor: &str,
        sort: SortOrder,
        fingerprint: &[u8; 32],
    ) -> Result<Position, InvalidCursor> {
        if cursor.len() > 64 {
            return Err(InvalidCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| InvalidCursor)?;
        if bytes.len() != CURSOR_BYTES {
            return Err(InvalidCursor);
        }
        let (fields, mac) = bytes.split_at(FIELDS_BYTES);
        let expected = self.mac(fields, fingerprint);
        // Constant-time comparison: the mac must not leak byte by byte.
        let differs = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differs != 0 || fields[0] != VERSION || fields[1] != sort as u8 {
            return Err(InvalidCursor);
        }
        let ordinal = u64::from_be_bytes(fields[3..11].try_into().map_err(|_| InvalidCursor)?);
        Ok(Position {
            tier: fields[2],
            ordinal,
        })
    }
}

/// A digest of everything that defines a result list, so that a cursor
/// only continues the list it came from.
pub fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_edits_and_other_queries() {
        let key = CursorKey::derive("secret");
        let print = fingerprint(&[b"hello"]);
        let position = Position {
            tier: 2,
            ordinal: 42 << 20,
        };
        let cursor = key.encode(SortOrder::Relevance, position, &print);
        assert_eq!(
            key.decode(&cursor, SortOrder::Relevance, &print),
            Ok(position)
        );
        assert_eq!(
            key.decode(&cursor, SortOrder::Recent, &print),
            Err(InvalidCursor)
        );
        let other = fingerprint(&[b"hell"]);
        assert_eq!(
            key.decode(&cursor, SortOrder::Relevance, &other),
            Err(InvalidCursor)
        );
        let mut edited = cursor.into_bytes();
        edited[5] = if edited[5] == b'A' { b'B' } else { b'A' };
        let edited = String::from_utf8(edited).unwrap();
        assert_eq!(
            key.decode(&edited, SortOrder::Relevance, &print),
            Err(InvalidCursor)
        );
        assert_eq!(
            CursorKey::derive("other").decode(
                &key.encode(SortOrder::Recent, position, &print),
                SortOrder::Recent,
                &print
            ),
            Err(InvalidCursor)
        );
        assert_eq!(
            key.decode("!!", SortOrder::Recent, &print),
            Err(InvalidCursor)
        );
    }
}
