//! The newest matches of a query, by ordinal, without visiting every
//! segment. tantivy's `Searcher::search` runs a collector over every
//! segment, so an app-wide search for a common word would read the ordinal
//! of every match in the index to keep the newest few. Segments hold runs
//! of nearby commits (merges join segments of a size, and the recent
//! segments hold the recent messages), and each segment's largest ordinal,
//! which its fast-field column knows without a scan, bounds what it can
//! add: segments are visited newest first, and the walk stops as soon as
//! it holds `limit` matches all newer than the next segment's largest.
//! The answer is exactly what a collection over every segment would give.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tantivy::query::{EnableScoring, Query};
use tantivy::{DocAddress, DocId, Searcher, TantivyError};

use super::schema::ORDINAL;

/// One match: its ordinal and where its document is.
pub type Match = (u64, DocAddress);

/// The `limit` matches of `query` with the largest ordinals, largest first.
pub fn newest(searcher: &Searcher, query: &dyn Query, limit: usize) -> tantivy::Result<Vec<Match>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    let mut segments = Vec::with_capacity(searcher.segment_readers().len());
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let ordinals = reader.fast_fields().u64(ORDINAL)?;
        segments.push((ordinals.max_value(), ord as u32, ordinals));
    }
    segments.sort_unstable_by_key(|&(largest, ord, _)| Reverse((largest, ord)));
    // The newest `limit` so far, the oldest of them on top.
    let mut kept: BinaryHeap<Reverse<Match>> = BinaryHeap::with_capacity(limit + 1);
    let mut values: Vec<Option<u64>> = Vec::new();
    let mut missing = false;
    for (largest, ord, ordinals) in segments {
        if kept.len() == limit
            && kept
                .peek()
                .is_some_and(|Reverse((oldest, _))| *oldest > largest)
        {
            break;
        }
        let reader = searcher.segment_reader(ord);
        let alive = reader.alive_bitset();
        weight.for_each_no_score(reader, &mut |docs: &[DocId]| {
            values.resize(docs.len(), None);
            ordinals.first_vals(docs, &mut values);
            for (&doc, &ordinal) in docs.iter().zip(&values) {
                if alive.is_some_and(|alive| !alive.is_alive(doc)) {
                    continue;
                }
                let Some(ordinal) = ordinal else {
                    missing = true;
                    continue;
                };
                if kept.len() == limit {
                    match kept.peek() {
                        Some(Reverse((oldest, _))) if *oldest >= ordinal => continue,
                        _ => {
                            kept.pop();
                        }
                    }
                }
                kept.push(Reverse((ordinal, DocAddress::new(ord, doc))));
            }
        })?;
        if missing {
            return Err(TantivyError::InternalError(
                "a document without an ordinal".into(),
            ));
        }
    }
    let mut found: Vec<Match> = kept.into_iter().map(|Reverse(found)| found).collect();
    found.sort_unstable_by(|a, b| b.cmp(a));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::collector::TopDocs;
    use tantivy::indexer::NoMergePolicy;
    use tantivy::query::TermQuery;
    use tantivy::schema::{FAST, INDEXED, IndexRecordOption, Schema};
    use tantivy::{Index, IndexWriter, Order, TantivyDocument, Term};

    /// Segments of overlapping and disjoint ordinal runs, some matches
    /// deleted: the walk must answer what a full collection answers.
    #[test]
    fn the_newest_matches_are_those_of_a_full_collection() {
        let mut builder = Schema::builder();
        let ordinal = builder.add_u64_field(ORDINAL, INDEXED | FAST);
        let tag = builder.add_u64_field("tag", INDEXED);
        let index = Index::create_in_ram(builder.build());
        let mut writer: IndexWriter<TantivyDocument> =
            index.writer_with_num_threads(1, 15_000_000).unwrap();
        writer.set_merge_policy(Box::new(NoMergePolicy));
        // Each commit one segment: runs 0..300, 300..600 (every other
        // ordinal, the rest in the next), 301..600 odd, then 900..1000.
        let runs: [Vec<u64>; 4] = [
            (0..300).collect(),
            (300..600).step_by(2).collect(),
            (301..600).step_by(2).collect(),
            (900..1000).collect(),
        ];
        for run in &runs {
            for &n in run {
                let mut doc = TantivyDocument::default();
                doc.add_u64(ordinal, n);
                doc.add_u64(tag, n % 7);
                writer.add_document(doc).unwrap();
            }
            writer.commit().unwrap();
        }
        writer.delete_term(Term::from_field_u64(ordinal, 994));
        writer.delete_term(Term::from_field_u64(ordinal, 598));
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        assert_eq!(searcher.segment_readers().len(), 4);
        for wanted in [0u64, 3] {
            let query = TermQuery::new(Term::from_field_u64(tag, wanted), IndexRecordOption::Basic);
            for limit in [0, 1, 5, 14, 15, 16, 40, 100, 1000] {
                let all: Vec<Match> = searcher
                    .search(
                        &query,
                        &TopDocs::with_limit(limit.max(1))
                            .order_by_fast_field::<u64>(ORDINAL, Order::Desc),
                    )
                    .unwrap()
                    .into_iter()
                    .take(limit)
                    .map(|(n, address)| (n.unwrap(), address))
                    .collect();
                let found = newest(&searcher, &query, limit).unwrap();
                assert_eq!(found, all, "tag {wanted}, limit {limit}");
            }
        }
    }
}
