//! The limits of search, each a named default that a flag can change
//! (`chat api --help`, the `CHAT_SEARCH_*` variables). They bound every
//! query's work: its size, the candidates it may verify, the chats it names.

/// Longest query, in Unicode scalar values.
pub const QUERY_CHARS_MAX: usize = 256;
/// Most terms (bare words and phrases) in one query.
pub const QUERY_TERMS_MAX: usize = 8;
/// Most words in one phrase.
pub const PHRASE_WORDS_MAX: usize = 16;
/// Hits per page when the request names no `limit`.
pub const PAGE_SIZE_DEFAULT: usize = 20;
/// Largest `limit`.
pub const PAGE_SIZE_MAX: usize = 100;
/// Most chat numbers in a `chats=` list.
pub const CHATS_FILTER_MAX: usize = 100;
/// Most chats a user token searches across (the lowest numbered, when the
/// user is a member of more; `chats=` names others).
pub const USER_CHATS_MAX: usize = 10_000;
/// Most index candidates one page verifies against their bodies; past it
/// the page ends early with a cursor, so no query is a long scan.
pub const CANDIDATES_SCAN_MAX: usize = 2_000;
/// Most distinct indexed words one prefix term expands to (per segment).
pub const PREFIX_EXPANSIONS_MAX: u32 = 1_000;

#[derive(Debug, Clone)]
pub struct SearchLimits {
    pub query_chars_max: usize,
    pub query_terms_max: usize,
    pub phrase_words_max: usize,
    pub page_size_default: usize,
    pub page_size_max: usize,
    pub chats_filter_max: usize,
    pub user_chats_max: usize,
    pub candidates_scan_max: usize,
    pub prefix_expansions_max: u32,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            query_chars_max: QUERY_CHARS_MAX,
            query_terms_max: QUERY_TERMS_MAX,
            phrase_words_max: PHRASE_WORDS_MAX,
            page_size_default: PAGE_SIZE_DEFAULT,
            page_size_max: PAGE_SIZE_MAX,
            chats_filter_max: CHATS_FILTER_MAX,
            user_chats_max: USER_CHATS_MAX,
            candidates_scan_max: CANDIDATES_SCAN_MAX,
            prefix_expansions_max: PREFIX_EXPANSIONS_MAX,
        }
    }
}

impl SearchLimits {
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            self.query_chars_max,
            self.query_terms_max,
            self.phrase_words_max,
            self.page_size_default,
            self.page_size_max,
            self.chats_filter_max,
            self.user_chats_max,
            self.candidates_scan_max,
            self.prefix_expansions_max as usize,
        ];
        if positive.contains(&0) {
            return Err("search limits must be at least 1".into());
        }
        if self.page_size_default > self.page_size_max {
            return Err("the default search page size is above its maximum".into());
        }
        if self.candidates_scan_max <= self.page_size_max {
            return Err("the search candidate scan must be larger than a page".into());
        }
        Ok(())
    }
}
