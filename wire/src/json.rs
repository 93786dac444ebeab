//! The one strict reader of JSON that every service and every entrance
//! (REST bodies, WebSocket frames, HTTP publish) shares, so that two parsers
//! never disagree about one input: UTF-8 first, then syntax, then duplicate
//! keys at any depth (serde_json alone keeps the last of a repeated key in a
//! map or a `Value`, and would read `{"type":"ping","type":"send"}` as a
//! send), then the shape (an object: serde would otherwise read an array as a
//! struct's fields in order), then the fields (unknown ones refused by the
//! target type's `deny_unknown_fields`).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonBodyError {
    /// Not UTF-8, or not JSON at all (`malformed_json`).
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// A key repeated within one object (`invalid_request`).
    #[error("{0}")]
    DuplicateKey(String),
    /// JSON, but not an object (`invalid_request`).
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// A field the route does not know (`unknown_field`).
    #[error("{0}")]
    UnknownField(String),
    /// A field missing or of the wrong type (`invalid_request`).
    #[error("{0}")]
    Invalid(String),
}

const DUPLICATE: &str = "duplicate key";

/// Checks that `bytes` are UTF-8 and one JSON value whose objects repeat no
/// key. serde_json's own recursion limit (128) bounds the nesting.
pub fn check_strict(bytes: &[u8]) -> Result<(), JsonBodyError> {
    std::str::from_utf8(bytes)
        .map_err(|error| JsonBodyError::Malformed(format!("not UTF-8: {error}")))?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let checked = NoDuplicates
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    checked.map_err(|error| {
        let text = error.to_string();
        if text.starts_with(DUPLICATE) {
            JsonBodyError::DuplicateKey(text)
        } else {
            JsonBodyError::Malformed(text)
        }
    })
}

/// Parses a JSON object strictly into `T` (see the module docs).
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonBodyError> {
    check_strict(bytes)?;
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(JsonBodyError::NotAnObject);
    }
    serde_json::from_slice(bytes).map_err(|error| {
        let text = error.to_string();
        if text.starts_with("unknown field") {
            JsonBodyError::UnknownField(text)
        } else {
            JsonBodyError::Invalid(text)
        }
    })
}

/// Walks any JSON value and fails on the first object that repeats a key.
struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(de::Error::custom(format!(
                    "{DUPLICATE} {shown:?} in one object"
                )));
            }
            keys.insert(key);
            map.next_value_seed(NoDuplicates)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        title: String,
    }

    #[test]
    fn each_failure_has_its_kind() {
        let kind = |bytes: &[u8]| parse_object::<Body>(bytes).map(|_| ()).unwrap_err();
        assert!(matches!(kind(b"{"), JsonBodyError::Malformed(_)));
        assert!(matches!(kind(b"\xff"), JsonBodyError::Malformed(_)));
        assert!(matches!(kind(b""), JsonBodyError::Malformed(_)));
        assert!(matches!(kind(b"{} {}"), JsonBodyError::Malformed(_)));
        assert!(matches!(
            kind(b"{\"title\":\"caf\xe9\"}"),
            JsonBodyError::Malformed(_)
        ));
        assert_eq!(kind(b"[\"x\"]"), JsonBodyError::NotAnObject);
        assert!(matches!(
            kind(b"{\"titl\":\"x\"}"),
            JsonBodyError::UnknownField(_)
        ));
        assert!(matches!(kind(b"{\"title\":5}"), JsonBodyError::Invalid(_)));
        assert!(matches!(
            kind(b"{\"title\":\"a\",\"title\":\"b\"}"),
            JsonBodyError::DuplicateKey(_)
        ));
        assert!(parse_object::<Body>(b" {\"title\":\"x\"}").is_ok());
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth_and_after_unescaping() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"type":"ping","type":"send"}"#,
            r#"{"chats":{"1":0,"1":5}}"#,
            r#"[{"x":[{"k":1,"k":1}]}]"#,
            r#"{"type":"ping","typ\u0065":"send"}"#,
        ] {
            assert!(
                matches!(
                    check_strict(text.as_bytes()),
                    Err(JsonBodyError::DuplicateKey(_))
                ),
                "{text}"
            );
        }
        for text in [
            r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#,
            r#"{"chats":{"1":0,"01":5}}"#,
            "18446744073709551616",
        ] {
            assert_eq!(check_strict(text.as_bytes()), Ok(()), "{text}");
        }
    }

    #[test]
    fn a_lone_surrogate_is_not_text() {
        assert!(matches!(
            check_strict(br#"{"a":"\ud800"}"#),
            Err(JsonBodyError::Malformed(_))
        ));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(matches!(
            check_strict(deep.as_bytes()),
            Err(JsonBodyError::Malformed(_))
        ));
    }
}
