//! The check of a chaos run, at rest (no send unanswered): history read
//! back over REST against the ledger.
//!
//! Per chat: numbers run 1..=`messages_count` with no gap and no
//! duplicate; every stored message is one the run sent, from its sender
//! with its body and id, stored once; every acknowledged message is stored
//! at the number it was acknowledged with; every reader's deliveries are
//! history's messages, number for number; the subscribers are exactly the
//! expected ones and `subscribers_count` counts them. Per app:
//! `chats_count`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::actors::Ctx;
use super::ledger::{digest, id_of_body};

/// History page size (the API's maximum).
const PAGE_MESSAGES_MAX: u64 = 1_000;
/// Longest wait for one REST read through the services' restarts.
const READ_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Default, Debug, Clone, Copy)]
pub struct Checked {
    /// Acknowledged messages found where they were acknowledged.
    pub acked_checked: u64,
    /// Messages in history, over all chats.
    pub stored: u64,
    /// Stored messages whose send was never answered with an ack (refused
    /// for good, or a retry gave up): allowed, at most once each.
    pub stored_unacked: u64,
}

async fn get(ctx: &Ctx, url: String) -> Option<Value> {
    let answer = ctx
        .request("check read", READ_DEADLINE, || {
            ctx.http.get(&url).bearer_auth(&ctx.app_token)
        })
        .await;
    match answer {
        Some(answer) if answer.status == 200 => Some(answer.body),
        Some(answer) => {
            ctx.ledger
                .violation(format!("GET {url}: {} {}", answer.status, answer.body));
            None
        }
        None => {
            ctx.ledger
                .violation(format!("GET {url}: no answer within {READ_DEADLINE:?}"));
            None
        }
    }
}

/// A send as the check needs it: sender, body, the number it was acked with.
type SentCopy = (String, String, Option<u64>);

/// Every message of a chat, in the order the API gives them.
async fn history(ctx: &Ctx, chat: u64) -> Option<Vec<Value>> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = get(
            ctx,
            format!(
                "{}/v1/chats/{chat}/messages?after={after}&limit={PAGE_MESSAGES_MAX}",
                ctx.api
            ),
        )
        .await?;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        let Some(last) = messages.last().and_then(|m| m["number"].as_u64()) else {
            return Some(all);
        };
        all.extend(messages);
        if page["has_more"].as_bool() != Some(true) {
            return Some(all);
        }
        after = last;
    }
}

async fn subscribers(ctx: &Ctx, chat: u64) -> Option<BTreeSet<String>> {
    let mut all = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let from = after
            .as_ref()
            .map(|user| format!("&after={user}"))
            .unwrap_or_default();
        let page = get(
            ctx,
            format!("{}/v1/chats/{chat}/subscribers?limit=1000{from}", ctx.api),
        )
        .await?;
        let users: Vec<String> = page["subscribers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let Some(last) = users.last().cloned() else {
            return Some(all);
        };
        all.extend(users);
        if page["has_more"].as_bool() != Some(true) {
            return Some(all);
        }
        after = Some(last);
    }
}

/// Checks every chat; `catch_up` is how long readers may take to reach the
/// stored count before being behind is a violation.
pub async fn check(ctx: &Ctx, chats: &[u64], catch_up: Duration) -> Checked {
    let ledger = &ctx.ledger;
    let mut checked = Checked::default();
    if ledger.outstanding.get() != 0 {
        ledger.violation(format!(
            "checking with {} sends unanswered",
            ledger.outstanding.get()
        ));
    }
    if let Some(app) = get(ctx, format!("{}/v1/app", ctx.api)).await
        && app["chats_count"].as_u64() != Some(chats.len() as u64)
    {
        ledger.violation(format!(
            "chats_count is {} but the run created {} chats",
            app["chats_count"],
            chats.len()
        ));
    }
    // The ledger's sends by chat: id → (sender, body, acked number).
    let mut by_chat: HashMap<u64, HashMap<String, SentCopy>> = HashMap::new();
    for (id, sent) in ledger.sent.borrow().iter() {
        by_chat.entry(sent.chat).or_default().insert(
            id.clone(),
            (sent.sender.clone(), sent.body.clone(), sent.acked),
        );
    }
    for &chat in chats {
        let Some(view) = get(ctx, format!("{}/v1/chats/{chat}", ctx.api)).await else {
            continue;
        };
        let Some(stored) = history(ctx, chat).await else {
            continue;
        };
        let count = view["messages_count"].as_u64().unwrap_or(0);
        if count != stored.len() as u64 {
            ledger.violation(format!(
                "chat {chat}: messages_count is {count} but history holds {} messages",
                stored.len()
            ));
        }
        let sent = by_chat.remove(&chat).unwrap_or_default();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut digests = Vec::with_capacity(stored.len());
        let mut numbering_reported = false;
        for (index, message) in stored.iter().enumerate() {
            let number = message["number"].as_u64().unwrap_or(0);
            let from = message["from"].as_str().unwrap_or("");
            let body = message["body"].as_str().unwrap_or("");
            digests.push(digest(from, body));
            if number != index as u64 + 1 && !numbering_reported {
                numbering_reported = true;
                ledger.violation(format!(
                    "chat {chat}: history position {} holds #{number} (a gap or a duplicate number)",
                    index + 1
                ));
            }
            let id = id_of_body(body);
            let Some((sender, sent_body, acked)) = sent.get(id) else {
                ledger.violation(format!(
                    "chat {chat} #{number}: a message the run never sent: {message}"
                ));
                continue;
            };
            if !seen.insert(id) {
                ledger.violation(format!(
                    "chat {chat}: {id} stored twice (again as #{number})"
                ));
                continue;
            }
            if from != sender || body != sent_body {
                ledger.violation(format!(
                    "chat {chat} #{number}: stored from {from:?} with another body than {id} was sent with"
                ));
            }
            if message["id"].as_str() != Some(id) {
                ledger.violation(format!(
                    "chat {chat} #{number}: stored with id {} instead of {id}",
                    message["id"]
                ));
            }
            match acked {
                Some(acked) if *acked == number => checked.acked_checked += 1,
                Some(acked) => ledger.violation(format!(
                    "chat {chat}: {id} acknowledged as #{acked} but stored as #{number}"
                )),
                None => checked.stored_unacked += 1,
            }
        }
        for (id, (_, _, acked)) in &sent {
            if let Some(number) = acked
                && !seen.contains(id.as_str())
            {
                ledger.violation(format!(
                    "chat {chat}: {id} was acknowledged as #{number} but is not in history"
                ));
            }
        }
        checked.stored += stored.len() as u64;

        if let Some(actual) = subscribers(ctx, chat).await {
            let expected = ledger
                .subscribers
                .borrow()
                .get(&chat)
                .cloned()
                .unwrap_or_default();
            if actual != expected {
                let missing: Vec<_> = expected.difference(&actual).collect();
                let extra: Vec<_> = actual.difference(&expected).collect();
                ledger.violation(format!(
                    "chat {chat}: subscribers differ: missing {missing:?}, unexpected {extra:?}"
                ));
            }
            if view["subscribers_count"].as_u64() != Some(actual.len() as u64) {
                ledger.violation(format!(
                    "chat {chat}: subscribers_count is {} but {} are listed",
                    view["subscribers_count"],
                    actual.len()
                ));
            }
        }
        check_readers(ctx, chat, &digests, catch_up).await;
    }
    checked
}

/// Waits (at most `catch_up`) for every reader of `chat` to reach the
/// stored count, then compares what each was delivered with history.
async fn check_readers(ctx: &Ctx, chat: u64, history: &[u64], catch_up: Duration) {
    let ledger = &ctx.ledger;
    let count = history.len() as u64;
    let deadline = Instant::now() + catch_up;
    loop {
        let behind = ledger
            .readers
            .borrow()
            .iter()
            .any(|(c, d)| *c == chat && d.last < count);
        if !behind || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let readers = ledger.readers.borrow();
    let mut problems = Vec::new();
    for (reader, (c, delivered)) in readers.iter().enumerate() {
        if *c != chat {
            continue;
        }
        if delivered.last < count {
            problems.push(format!(
                "chat {chat}: reader {reader} has #{} of {count} after {catch_up:?}",
                delivered.last
            ));
        }
        if delivered.last > count {
            problems.push(format!(
                "chat {chat}: reader {reader} was delivered #{} but history holds {count}",
                delivered.last
            ));
        }
        if let Some(at) = delivered
            .digests
            .iter()
            .zip(history)
            .position(|(got, stored)| got != stored)
        {
            problems.push(format!(
                "chat {chat}: reader {reader} was delivered another #{} than history holds",
                at + 1
            ));
        }
    }
    drop(readers);
    for problem in problems {
        ledger.violation(problem);
    }
}
