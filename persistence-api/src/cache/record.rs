//! A message as the cache holds it: compact JSON, one sorted-set member per
//! message scored by its number. The number is inside the member too, so
//! two messages never share a member and a read checks what it got.

use serde::{Deserialize, Serialize};

use crate::store::Message;

#[derive(Serialize, Deserialize)]
struct Record<'a> {
    #[serde(rename = "n")]
    number: u64,
    #[serde(rename = "s", borrow)]
    sender: std::borrow::Cow<'a, str>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    recipients: Option<Vec<String>>,
    #[serde(rename = "b", borrow)]
    body: std::borrow::Cow<'a, str>,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(rename = "t")]
    sent_at_us: i64,
}

pub fn encode(message: &Message) -> Vec<u8> {
    let record = Record {
        number: message.number,
        sender: message.sender.as_str().into(),
        recipients: message.recipients.clone(),
        body: message.body.as_str().into(),
        client_id: message.client_id.clone(),
        sent_at_us: message.sent_at_us,
    };
    serde_json::to_vec(&record).expect("a message record serializes")
}

/// `None` for bytes this build did not write (another program's key, or a
/// corrupt value): the read then goes to the store.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    let record: Record = serde_json::from_slice(bytes).ok()?;
    Some(Message {
        number: record.number,
        sender: record.sender.into_owned(),
        recipients: record.recipients,
        body: record.body.into_owned(),
        client_id: record.client_id,
        sent_at_us: record.sent_at_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for message in [
            Message {
                number: 7,
                sender: "alice".into(),
                recipients: Some(vec!["bob".into()]),
                body: "héllo \"quoted\" \u{1F600}".into(),
                client_id: Some("c-1".into()),
                sent_at_us: 1_700_000_000_000_000,
            },
            Message::lost(9),
        ] {
            assert_eq!(decode(&encode(&message)), Some(message));
        }
        assert_eq!(decode(b"{\"n\":1}"), None);
        assert_eq!(decode(b"\xff"), None);
    }
}
