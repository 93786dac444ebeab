//! The messages the search scenario indexes and the queries it asks,
//! both derived from (chat, number) alone, so a query can be aimed at a
//! message known to exist without keeping a million bodies in memory.
//!
//! Words come from a vocabulary of `VOCABULARY_WORDS` Latin pseudo-words
//! (two or three consonant-vowel syllables, lowercase ASCII) with a Zipf
//! law of exponent about 1 over their ranks, as words of natural text
//! have, plus a few words in other scripts and with diacritics so that
//! folding is exercised. Probes (the lag measurement's markers) carry a
//! word with digits, which no corpus word has.

/// Distinct Latin words.
pub const VOCABULARY_WORDS: u64 = 20_000;
/// Words outside ASCII, one in `OTHER_SCRIPT_EVERY` words of a body.
const OTHER_SCRIPT: &[&str] = &[
    "crème",
    "brûlée",
    "привет",
    "встреча",
    "καλημέρα",
    "東京",
    "会議",
    "façade",
];
const OTHER_SCRIPT_EVERY: usize = 20;
const CONSONANTS: &[u8] = b"bcdfghklmnprstvz";
const VOWELS: &[u8] = b"aeiou";
const SYLLABLES: u64 = (CONSONANTS.len() * VOWELS.len()) as u64;

pub use crate::traffic::Rng;

/// The word of vocabulary rank `rank`: distinct ranks give distinct words
/// (ranks below `SYLLABLES²` get two syllables, the rest three).
pub fn word(rank: u64) -> String {
    assert!(
        rank < VOCABULARY_WORDS,
        "rank {rank} is outside the vocabulary"
    );
    let two_syllables = SYLLABLES * SYLLABLES;
    let (mut code, syllables) = if rank < two_syllables {
        (rank, 2)
    } else {
        (rank - two_syllables, 3)
    };
    let mut text = String::with_capacity(6);
    for _ in 0..syllables {
        let syllable = (code % SYLLABLES) as usize;
        code /= SYLLABLES;
        text.push(CONSONANTS[syllable / VOWELS.len()] as char);
        text.push(VOWELS[syllable % VOWELS.len()] as char);
    }
    text
}

/// A rank drawn with P(rank) roughly proportional to 1 / (rank + 1).
fn zipf_rank(rng: &mut Rng) -> u64 {
    let rank = (VOCABULARY_WORDS as f64).powf(rng.unit()) as u64;
    rank.saturating_sub(1).min(VOCABULARY_WORDS - 1)
}

fn message_seed(chat: u64, number: u64) -> u64 {
    chat.wrapping_mul(0x1000_0000_01b3) ^ number.wrapping_mul(0x9e37_79b9)
}

/// The body of message `number` of `chat`: words until about `bytes` bytes.
pub fn body(chat: u64, number: u64, bytes: usize) -> String {
    let mut rng = Rng::new(message_seed(chat, number));
    let mut text = String::with_capacity(bytes + 16);
    loop {
        let word = if rng.below(OTHER_SCRIPT_EVERY) == 0 {
            OTHER_SCRIPT[rng.below(OTHER_SCRIPT.len())].to_string()
        } else {
            word(zipf_rank(&mut rng))
        };
        if !text.is_empty() && text.len() + 1 + word.len() > bytes {
            return text;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&word);
    }
}

/// The probe word of lag probe `probe`: letters and digits, so that no
/// corpus word contains it and it is one word to the tokenizer.
pub fn probe_word(probe: u64) -> String {
    format!("probe{probe}q")
}

/// Three letters from inside the longest Latin word of `body`, from its
/// second letter: they start with a vowel and every Latin word with a
/// consonant, so they match only as an infix, never as a word or a
/// prefix. None for a body without Latin words.
pub fn infix_of(body: &str) -> Option<String> {
    let word = body
        .split(' ')
        .filter(|w| w.len() >= 4 && w.bytes().all(|b| b.is_ascii_lowercase()))
        .max_by_key(|w| w.len())?;
    Some(word[1..4].to_string())
}

/// One of the Latin words of `body`, each as likely as its occurrences.
pub fn latin_word_of(body: &str, rng: &mut Rng) -> Option<String> {
    let words: Vec<&str> = body
        .split(' ')
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words[rng.below(words.len())].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_lowercase_ascii() {
        let words: std::collections::HashSet<String> = (0..VOCABULARY_WORDS).map(word).collect();
        assert_eq!(words.len() as u64, VOCABULARY_WORDS);
        assert!(
            words
                .iter()
                .all(|w| w.bytes().all(|b| b.is_ascii_lowercase()))
        );
    }

    #[test]
    fn bodies_are_deterministic_and_near_their_size() {
        for (chat, number) in [(1, 1), (7, 1_000), (1_000, 999)] {
            let text = body(chat, number, 200);
            assert_eq!(text, body(chat, number, 200));
            assert!((185..=200).contains(&text.len()), "{} bytes", text.len());
        }
        assert_ne!(body(1, 2, 200), body(2, 1, 200));
    }

    #[test]
    fn an_infix_is_inside_a_word_and_not_its_start() {
        let text = body(3, 4, 200);
        let infix = infix_of(&text).expect("a body of 200 bytes has Latin words");
        assert_eq!(infix.len(), 3);
        assert!(text.split(' ').any(|w| w.contains(&infix)));
        // It starts with a vowel and every Latin word with a consonant, so
        // it only ever matches as an infix.
        assert!((0..VOCABULARY_WORDS).all(|rank| !word(rank).starts_with(&infix)));
        assert_eq!(infix_of("ab baba é").as_deref(), Some("aba"));
        assert!(infix_of("ab cd é").is_none());
    }

    #[test]
    fn probe_words_are_not_corpus_words_nor_inside_them() {
        let probe = probe_word(12);
        assert!(probe.bytes().any(|b| b.is_ascii_digit()));
        assert!(!probe_word(12).contains(&probe_word(2)));
        assert!(!probe_word(12).contains(&probe_word(1)));
        assert!(!body(1, 1, 4_096).contains("probe"));
    }
}
