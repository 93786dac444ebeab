//! The strict JSON reader every entrance shares (`chat_wire::json`), two
//! ways (`chat_fuzz::mode`):
//! - on raw bytes, against serde_json: what the strict reader accepts,
//!   serde_json reads too; what serde_json cannot read, the strict reader
//!   calls malformed; when serde_json reads it but the strict reader refuses,
//!   the reason is a repeated key; `parse_object` agrees with `check_strict`
//!   and with serde_json into the same type;
//! - on generated documents whose repeated keys are known (keys may be
//!   spelled with `\u` escapes, so only their unescaped text can tell): a
//!   repeated key at any depth is refused as such, and a document without one
//!   is accepted and reads as the value it was built from.

#![no_main]

use arbitrary::Arbitrary;
use chat_fuzz::mode::{self, Mode};
use chat_wire::json::{JsonBodyError, check_strict, parse_object};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Well inside serde_json's recursion limit (128), which the strict reader
/// shares; the limit itself is covered by the raw inputs and a unit test.
const DEPTH_MAX: usize = 64;

#[derive(Arbitrary, Debug)]
enum Node {
    Null,
    Bool(bool),
    Negative(i64),
    Positive(u64),
    Text(String),
    Array(Vec<Node>),
    Object(Vec<(Key, Node)>),
}

#[derive(Arbitrary, Debug)]
struct Key {
    text: String,
    /// Written as `\uXXXX` escapes rather than as itself.
    escaped: bool,
}

/// Two shapes of route body: flat with an optional field, and nested.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct TitleBody {
    #[serde(default)]
    title: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    chat: u64,
    body: String,
    #[serde(default)]
    to: Option<Vec<String>>,
}

fuzz_target!(|bytes: &[u8]| match mode::read::<Node>(bytes) {
    Some(Mode::Text(bytes)) => check_raw(bytes),
    Some(Mode::Structured(node)) => check_tree(&node),
    None => {}
});

fn check_raw(bytes: &[u8]) {
    let strict = check_strict(bytes);
    let loose = serde_json::from_slice::<Value>(bytes);
    match (&strict, &loose) {
        (Ok(()), Ok(value)) => {
            let again = serde_json::to_vec(value).expect("a Value serialises");
            assert_eq!(check_strict(&again), Ok(()), "re-encoded {value}");
        }
        (Ok(()), Err(error)) => panic!("strict accepted what serde_json refuses: {error}"),
        (Err(JsonBodyError::DuplicateKey(_)), _) => {}
        (Err(JsonBodyError::Malformed(_)), Err(_)) => {}
        (Err(error), Ok(_)) => panic!("serde_json reads it, strict refused with {error:?}"),
        (Err(error), Err(_)) => panic!("check_strict answered {error:?}"),
    }
    check_parse_object::<TitleBody>(bytes, &strict);
    check_parse_object::<SendBody>(bytes, &strict);
}

/// `parse_object` refuses what `check_strict` refuses with the same error,
/// then anything not an object, then reads what serde_json reads.
fn check_parse_object<T: DeserializeOwned + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    strict: &Result<(), JsonBodyError>,
) {
    let parsed = parse_object::<T>(bytes);
    if let Err(error) = strict {
        assert_eq!(parsed.as_ref().err(), Some(error));
        return;
    }
    let is_object = bytes.trim_ascii_start().first() == Some(&b'{');
    match parsed {
        Ok(body) => {
            assert!(is_object);
            assert_eq!(serde_json::from_slice::<T>(bytes).ok(), Some(body));
        }
        Err(JsonBodyError::NotAnObject) => assert!(!is_object),
        Err(JsonBodyError::UnknownField(_) | JsonBodyError::Invalid(_)) => {
            assert!(is_object);
            assert!(serde_json::from_slice::<T>(bytes).is_err());
        }
        Err(error) => panic!("parse_object answered {error:?} after check_strict passed"),
    }
}

fn check_tree(node: &Node) {
    let mut text = String::new();
    let mut repeated = false;
    let expected = render(node, 0, &mut text, &mut repeated);
    let strict = check_strict(text.as_bytes());
    if repeated {
        assert!(
            matches!(strict, Err(JsonBodyError::DuplicateKey(_))),
            "{text}: {strict:?}"
        );
    } else {
        assert_eq!(strict, Ok(()), "{text}");
        let value: Value = serde_json::from_str(&text).expect("accepted, so JSON");
        assert_eq!(value, expected, "{text}");
    }
}

/// Writes `node` as JSON text into `out` and returns the value it stands for;
/// sets `repeated` if any object repeats a key (compared unescaped).
fn render(node: &Node, depth: usize, out: &mut String, repeated: &mut bool) -> Value {
    if depth >= DEPTH_MAX {
        out.push_str("null");
        return Value::Null;
    }
    match node {
        Node::Null => {
            out.push_str("null");
            Value::Null
        }
        Node::Bool(b) => {
            out.push_str(if *b { "true" } else { "false" });
            Value::Bool(*b)
        }
        Node::Negative(n) => {
            out.push_str(&n.to_string());
            Value::from(*n)
        }
        Node::Positive(n) => {
            out.push_str(&n.to_string());
            Value::from(*n)
        }
        Node::Text(s) => {
            out.push_str(&serde_json::to_string(s).expect("a string serialises"));
            Value::String(s.clone())
        }
        Node::Array(items) => {
            out.push('[');
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                values.push(render(item, depth + 1, out, repeated));
            }
            out.push(']');
            Value::Array(values)
        }
        Node::Object(members) => {
            out.push('{');
            let mut map = Map::new();
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_key(key, out);
                out.push(':');
                let value = render(item, depth + 1, out, repeated);
                if map.insert(key.text.clone(), value).is_some() {
                    *repeated = true;
                }
            }
            out.push('}');
            Value::Object(map)
        }
    }
}

fn write_key(key: &Key, out: &mut String) {
    if !key.escaped {
        out.push_str(&serde_json::to_string(&key.text).expect("a string serialises"));
        return;
    }
    out.push('"');
    for unit in key.text.encode_utf16() {
        out.push_str(&format!("\\u{unit:04x}"));
    }
    out.push('"');
}
