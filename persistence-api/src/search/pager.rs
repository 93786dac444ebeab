//! One search page's keyset walk, which both backends share: tier by tier
//! (relevance: 3, 2, 1; recent: 0), newest first inside a tier in chunks
//! below the last ordinal seen (a keyset, never an offset), every candidate
//! verified by `matching::verify` (so hits, classes and highlights are the
//! shared code's), until the page has one hit more than asked (so a next
//! page is known to exist) or `candidates_scan_max` candidates were
//! examined. A backend only fetches a tier's chunks; the pager says how
//! many to fetch, which are hits and where the next page starts.

use super::index::{Hit, Position, SearchPage, SearchRequest, SortOrder};
use super::matching::verify;

/// Fewest candidates fetched at once (a page that wants 1 hit may have to
/// skip unverified candidates).
pub const CHUNK_CANDIDATES_MIN: usize = 32;

/// A candidate as a backend read it, in its tier's order.
pub struct Found {
    pub ordinal: u64,
    pub chat: u64,
    pub number: u64,
    pub from: String,
    pub sent_at_us: i64,
    pub body: String,
}

/// One tier's walk: the next chunk is fetched below `bound`.
pub struct TierWalk {
    pub tier: u8,
    pub bound: Option<u64>,
}

pub struct Pager<'a> {
    request: &'a SearchRequest,
    scan_max: usize,
    /// One hit more than the page holds.
    want: usize,
    hits: Vec<Hit>,
    scanned: usize,
    last_examined: Option<Position>,
    /// The scan bound ended the walk before the page was full.
    capped: bool,
}

impl<'a> Pager<'a> {
    pub fn new(request: &'a SearchRequest, scan_max: usize) -> Self {
        let want = request.limit.saturating_add(1);
        Self {
            request,
            scan_max,
            want,
            hits: Vec::with_capacity(want.min(256)),
            scanned: 0,
            last_examined: None,
            capped: false,
        }
    }

    /// The tiers of the request's order that its cursor has not passed,
    /// each starting at the cursor's ordinal in its own tier.
    pub fn tiers(&self) -> Vec<TierWalk> {
        let tiers: &[u8] = match self.request.sort {
            SortOrder::Relevance => &[3, 2, 1],
            SortOrder::Recent => &[0],
        };
        tiers
            .iter()
            .filter_map(|&tier| {
                let bound = match self.request.after {
                    Some(after) if after.tier < tier => return None,
                    Some(after) if after.tier == tier => Some(after.ordinal),
                    _ => None,
                };
                Some(TierWalk { tier, bound })
            })
            .collect()
    }

    /// Whether the page is full or the scan bound was reached.
    pub fn is_done(&self) -> bool {
        self.hits.len() == self.want || self.capped
    }

    /// How many candidates to fetch next; `None` when the page is done.
    pub fn next_chunk(&mut self) -> Option<usize> {
        if self.is_done() {
            return None;
        }
        let chunk = (self.want - self.hits.len())
            .max(CHUNK_CANDIDATES_MIN)
            .min(self.scan_max - self.scanned);
        if chunk == 0 {
            self.capped = true;
            return None;
        }
        Some(chunk)
    }

    /// Examines the next candidate of `walk`'s tier (each in order, until
    /// [`Self::is_done`]): it moves the tier's bound and, if it verifies,
    /// is a hit.
    pub fn examine(&mut self, walk: &mut TierWalk, found: Found) {
        debug_assert!(!self.is_done(), "a candidate examined past the page");
        self.scanned += 1;
        walk.bound = Some(found.ordinal);
        let position = Position {
            tier: walk.tier,
            ordinal: found.ordinal,
        };
        self.last_examined = Some(position);
        let Some(verified) = verify(&found.body, &self.request.query) else {
            return;
        };
        self.hits.push(Hit {
            chat: found.chat,
            number: found.number,
            from: found.from,
            sent_at_us: found.sent_at_us,
            body: found.body,
            class: verified.class,
            highlights: verified.highlights,
            position,
        });
    }

    /// The page, and where the next starts: after its last hit when one
    /// more was found, after the last candidate examined when the scan
    /// bound ended it, else nowhere.
    pub fn finish(mut self) -> SearchPage {
        let next = if self.hits.len() > self.request.limit {
            self.hits.truncate(self.request.limit);
            self.hits.last().map(|hit| hit.position)
        } else if self.capped {
            self.last_examined
        } else {
            None
        };
        SearchPage {
            hits: self.hits,
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::index::ChatScope;
    use crate::search::limits::SearchLimits;

    fn request(limit: usize, sort: SortOrder, after: Option<Position>) -> SearchRequest {
        SearchRequest {
            app: 1,
            chats: ChatScope::All,
            viewer: None,
            from: None,
            before: None,
            query: crate::search::query::parse("hello", &SearchLimits::default()).unwrap(),
            sort,
            after,
            limit,
        }
    }

    fn found(ordinal: u64, body: &str) -> Found {
        Found {
            ordinal,
            chat: 1,
            number: ordinal,
            from: "alice".into(),
            sent_at_us: 0,
            body: body.into(),
        }
    }

    /// Walks the first tier over `candidates` (newest first), as a backend
    /// would; a candidate is a hit when its body matches.
    fn walk(pager: &mut Pager<'_>, candidates: &[(u64, &str)]) {
        let mut walk = pager.tiers().remove(0);
        let mut rest = candidates.iter();
        while let Some(chunk) = pager.next_chunk() {
            let taken: Vec<_> = rest.by_ref().take(chunk).collect();
            let exhausted = taken.len() < chunk;
            for &&(ordinal, body) in &taken {
                pager.examine(&mut walk, found(ordinal, body));
                assert_eq!(walk.bound, Some(ordinal));
                if pager.is_done() {
                    break;
                }
            }
            if exhausted {
                break;
            }
        }
    }

    #[test]
    fn the_cursor_skips_the_tiers_it_has_passed() {
        let after = Some(Position {
            tier: 2,
            ordinal: 7,
        });
        let request = request(10, SortOrder::Relevance, after);
        let pager = Pager::new(&request, 100);
        let tiers: Vec<(u8, Option<u64>)> =
            pager.tiers().iter().map(|w| (w.tier, w.bound)).collect();
        assert_eq!(tiers, [(2, Some(7)), (1, None)]);
    }

    #[test]
    fn a_full_page_ends_after_its_last_hit() {
        let request = request(2, SortOrder::Recent, None);
        let mut pager = Pager::new(&request, 100);
        walk(
            &mut pager,
            &[
                (9, "hello"),
                (8, "nope"),
                (7, "hello"),
                (6, "hello"),
                (5, "hello"),
            ],
        );
        let page = pager.finish();
        let numbers: Vec<u64> = page.hits.iter().map(|hit| hit.number).collect();
        assert_eq!(numbers, [9, 7]);
        assert_eq!(
            page.next,
            Some(Position {
                tier: 0,
                ordinal: 7
            })
        );
    }

    #[test]
    fn the_scan_bound_ends_a_page_after_the_last_candidate_examined() {
        let request = request(10, SortOrder::Recent, None);
        let candidates: Vec<(u64, &str)> = (1..=40).rev().map(|n| (n, "nope")).collect();
        let mut pager = Pager::new(&request, 32);
        walk(&mut pager, &candidates);
        let page = pager.finish();
        assert!(page.hits.is_empty());
        assert_eq!(
            page.next,
            Some(Position {
                tier: 0,
                ordinal: 9
            })
        );
    }

    #[test]
    fn a_tier_read_to_its_end_is_the_last_page() {
        let request = request(10, SortOrder::Recent, None);
        let candidates: Vec<(u64, &str)> = (1..=5).rev().map(|n| (n, "hello")).collect();
        let mut pager = Pager::new(&request, 40);
        walk(&mut pager, &candidates);
        let page = pager.finish();
        assert_eq!(page.hits.len(), 5);
        assert_eq!(page.next, None, "everything was read");
    }
}
