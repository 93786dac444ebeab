//! The query phases over the seeded corpus: a one-chat infix search, an
//! app-wide word search and an app-wide infix search, each aimed at words
//! the corpus is known to hold, each answer checked.

use serde::Deserialize;

use super::corpus::{self, Rng};
use crate::provision::Provisioner;

#[derive(Deserialize)]
pub struct Page {
    pub hits: Vec<Hit>,
}

#[derive(Deserialize)]
pub struct Hit {
    pub chat: u64,
    pub number: u64,
    pub body: String,
    #[serde(rename = "match")]
    pub matched: String,
    pub highlights: Vec<Highlight>,
}

/// `[start, end)` in chars of the body.
#[derive(Deserialize)]
pub struct Highlight {
    pub start: usize,
    pub end: usize,
}

/// What a query phase asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Three letters inside a word of a message of one chat, in that chat.
    ChatInfix,
    /// A word of some message, in every chat of the app: words are drawn
    /// as the bodies draw theirs, so common words come up as often as
    /// users would type them.
    AppWord,
    /// Three letters inside a word of some message, in every chat.
    AppInfix,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::ChatInfix, Kind::AppWord, Kind::AppInfix];

    pub fn name(self) -> &'static str {
        match self {
            Kind::ChatInfix => "chat-infix",
            Kind::AppWord => "app-word",
            Kind::AppInfix => "app-infix",
        }
    }
}

/// The corpus the phases aim at: `messages` messages in each chat.
pub struct Target<'a> {
    pub chats: &'a [u64],
    pub messages: u64,
    pub body_bytes: usize,
    pub limit: usize,
}

/// The `i`th request of a phase: its URL, its chat (one-chat searches)
/// and its query.
pub fn request(
    prov: &Provisioner,
    target: &Target,
    kind: Kind,
    i: usize,
) -> (String, Option<u64>, String) {
    let mut rng = Rng::new(i as u64 ^ ((kind as u64) << 40));
    let chat = target.chats[rng.below(target.chats.len())];
    let number = 1 + rng.below(target.messages as usize) as u64;
    let body = corpus::body(chat, number, target.body_bytes);
    // Every body of more than a few words has Latin words.
    let infix = || corpus::infix_of(&body).unwrap_or_else(|| "aba".into());
    let (path, chat, q) = match kind {
        Kind::ChatInfix => {
            let q = infix();
            (format!("/v1/chats/{chat}/messages/search"), Some(chat), q)
        }
        Kind::AppWord => {
            let q = corpus::latin_word_of(&body, &mut rng).unwrap_or_else(|| corpus::word(0));
            ("/v1/messages/search".into(), None, q)
        }
        Kind::AppInfix => ("/v1/messages/search".into(), None, infix()),
    };
    let url = prov.api_url(&format!("{path}?q={q}&limit={}", target.limit));
    (url, chat, q)
}

/// Sends a search with the app token; the page, or why not.
pub async fn search(prov: &Provisioner, url: &str) -> Result<Page, String> {
    prov.get_json(url).await
}

/// Checks a page: not empty (the query was aimed at a stored message), at
/// most `limit` hits, each in the asked chat, holding the query, and
/// matched the way the query can match.
pub fn check(
    page: &Page,
    kind: Kind,
    chat: Option<u64>,
    q: &str,
    limit: usize,
) -> Result<(), String> {
    if page.hits.is_empty() || page.hits.len() > limit {
        return Err(format!(
            "{} hits for {q:?}, not 1 to {limit}",
            page.hits.len()
        ));
    }
    for hit in &page.hits {
        if chat.is_some_and(|chat| chat != hit.chat) {
            return Err(format!(
                "a hit of chat {} in a search of chat {chat:?}",
                hit.chat
            ));
        }
        if !highlights_hold(hit, q) {
            return Err(format!(
                "no highlight of hit {}/{} is {q:?}: {:?}",
                hit.chat, hit.number, hit.body
            ));
        }
        // The infixes start with a vowel and no corpus word does: they can
        // match only as infixes.
        if kind != Kind::AppWord && hit.matched != "infix" {
            return Err(format!(
                "hit {}/{} for {q:?} matched as {:?}, not as an infix",
                hit.chat, hit.number, hit.matched
            ));
        }
    }
    // The word is in a stored message, and whole-word matches rank first.
    if kind == Kind::AppWord && page.hits[0].matched != "word" {
        return Err(format!(
            "the first hit for {q:?} matched as {:?}, not as a word",
            page.hits[0].matched
        ));
    }
    Ok(())
}

/// Whether one of the hit's highlights is `q` (ASCII lowercase) up to
/// folding: as many chars, each equal to q's or one that folds to it
/// (`è` for `e`, `E` for `e`), which only a non-ASCII or upper case char can.
fn highlights_hold(hit: &Hit, q: &str) -> bool {
    let body: Vec<char> = hit.body.chars().collect();
    hit.highlights.iter().any(|h| {
        h.start < h.end
            && h.end <= body.len()
            && h.end - h.start == q.chars().count()
            && body[h.start..h.end]
                .iter()
                .zip(q.chars())
                .all(|(&b, q)| b.to_ascii_lowercase() == q || !b.is_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(chat: u64, body: &str, matched: &str, highlights: &[(usize, usize)]) -> Hit {
        Hit {
            chat,
            number: 1,
            body: body.into(),
            matched: matched.into(),
            highlights: highlights
                .iter()
                .map(|&(start, end)| Highlight { start, end })
                .collect(),
        }
    }

    #[test]
    fn an_infix_page_is_checked_hit_by_hit() {
        let good = hit(3, "baba crème", "infix", &[(7, 10)]);
        assert!(
            check(
                &Page { hits: vec![good] },
                Kind::ChatInfix,
                Some(3),
                "eme",
                20
            )
            .is_ok()
        );
        let elsewhere = hit(4, "baba crème", "infix", &[(7, 10)]);
        let page = Page {
            hits: vec![elsewhere],
        };
        assert!(check(&page, Kind::ChatInfix, Some(3), "eme", 20).is_err());
        let misplaced = hit(3, "baba crème", "infix", &[(0, 3)]);
        let page = Page {
            hits: vec![misplaced],
        };
        assert!(check(&page, Kind::ChatInfix, Some(3), "eme", 20).is_err());
        let as_word = hit(3, "aba", "word", &[(0, 3)]);
        let page = Page {
            hits: vec![as_word],
        };
        assert!(check(&page, Kind::AppInfix, None, "aba", 20).is_err());
        assert!(check(&Page { hits: vec![] }, Kind::AppInfix, None, "aba", 20).is_err());
    }

    #[test]
    fn a_word_page_starts_with_a_word_match() {
        let page = Page {
            hits: vec![
                hit(1, "kuba", "word", &[(0, 4)]),
                hit(2, "kubala", "prefix", &[(0, 4)]),
            ],
        };
        assert!(check(&page, Kind::AppWord, None, "kuba", 20).is_ok());
        let page = Page {
            hits: vec![hit(2, "kubala", "prefix", &[(0, 4)])],
        };
        assert!(check(&page, Kind::AppWord, None, "kuba", 20).is_err());
        assert!(check(&page, Kind::AppWord, None, "kuba", 0).is_err());
    }
}
