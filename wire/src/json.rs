//! Strict parsing of JSON request bodies, shared by every service so that
//! one malformed body gets the same answer everywhere: UTF-8 first, then
//! syntax, then the shape (an object: serde would otherwise read an array
//! as a struct's fields in order), then the fields (unknown ones refused
//! by the target type's `deny_unknown_fields`).

use serde::de::DeserializeOwned;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonBodyError {
    /// Not UTF-8, or not JSON at all (`malformed_json`).
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but not an object (`invalid_request`).
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// A field the route does not know (`unknown_field`).
    #[error("{0}")]
    UnknownField(String),
    /// A field missing, repeated, or of the wrong type (`invalid_request`).
    #[error("{0}")]
    Invalid(String),
}

pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonBodyError> {
    std::str::from_utf8(bytes)
        .map_err(|error| JsonBodyError::Malformed(format!("not UTF-8: {error}")))?;
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map_err(|error| JsonBodyError::Malformed(error.to_string()))?;
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
            JsonBodyError::Invalid(_)
        ));
        assert!(parse_object::<Body>(b" {\"title\":\"x\"}").is_ok());
    }
}
