//! The embedded search backend: a tantivy index in `<data_dir>/search`, in
//! this process. One `IndexWriter` lives as long as the index (its threads
//! and heap reused by every commit); one `IndexReader`, reloaded by hand
//! after each commit, serves queries.
//!
//! Durability: a tantivy commit writes and fsyncs the new segment files,
//! then atomically replaces `meta.json` (fsynced temp file, rename) whose
//! `payload` we set to the commit log position the commit covers. Both
//! happen in one step from a reader's point of view, so after a crash the
//! index holds exactly the batches up to its payload's position and feeding
//! resumes right after it: nothing acknowledged is lost, nothing is indexed
//! twice, and no delete is ever needed.
//!
//! Every tantivy call blocks; each runs on tokio's blocking pool.

mod documents;
mod newest;
mod queries;
mod schema;
mod tokenizers;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query};
use tantivy::schema::Value;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument};

use self::schema::Fields;
use super::index::{SearchError, SearchIndex, SearchPage, SearchRequest, ordinal as ordinal_of};
use super::limits::SearchLimits;
use super::pager::{Found, Pager};
use crate::store::LoggedBatch;

/// Indexing threads when the flag names none.
pub const WRITER_THREADS_DEFAULT: usize = 2;
/// The writer's memory budget, in bytes, shared by its threads (tantivy
/// wants at least 15 MB per thread); segments are flushed when it fills.
pub const WRITER_HEAP_BYTES_DEFAULT: usize = 128 * 1024 * 1024;
/// tantivy's floor per indexing thread (`MEMORY_BUDGET_NUM_BYTES_MIN`).
pub const WRITER_HEAP_BYTES_PER_THREAD_MIN: usize = 15_000_000;

#[derive(Debug, Clone)]
pub struct EmbeddedSearchConfig {
    pub dir: PathBuf,
    pub writer_threads: usize,
    pub writer_heap_bytes: usize,
    pub limits: SearchLimits,
}

struct Inner {
    fields: Fields,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    reader: IndexReader,
    limits: SearchLimits,
    index: Index,
}

#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

fn unavailable(error: impl std::fmt::Display) -> SearchError {
    SearchError::Unavailable(error.to_string())
}

/// The payload of a commit: the commit log position it covers.
fn payload_position(payload: Option<&str>) -> Result<u64, SearchError> {
    match payload {
        None => Ok(0),
        Some(text) => text
            .strip_prefix("commit_log_position=")
            .and_then(|number| number.parse().ok())
            .ok_or_else(|| SearchError::Corrupt(format!("commit payload {text:?}"))),
    }
}

impl TantivyIndex {
    /// Opens (creating if needed) the index in `config.dir`. Takes the
    /// directory's writer lock: a second process on the same data dir fails
    /// here rather than corrupting the index.
    pub fn open(config: &EmbeddedSearchConfig) -> Result<Self, SearchError> {
        let min_heap =
            WRITER_HEAP_BYTES_PER_THREAD_MIN.saturating_mul(config.writer_threads.max(1));
        if config.writer_threads == 0 || config.writer_heap_bytes < min_heap {
            return Err(SearchError::Unavailable(format!(
                "the search writer needs at least 1 thread and 15 MB per thread \
                 ({} threads, {} bytes)",
                config.writer_threads, config.writer_heap_bytes
            )));
        }
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| unavailable(format!("{}: {e}", config.dir.display())))?;
        let (schema, fields) = schema::build();
        let directory = MmapDirectory::open(&config.dir).map_err(unavailable)?;
        let index = Index::open_or_create(directory, schema).map_err(unavailable)?;
        // Tokenizers are not stored with the index: registered at every open,
        // before the writer looks them up by the schema's names.
        index
            .tokenizers()
            .register(tokenizers::WORDS, tokenizers::WordsTokenizer::default());
        index.tokenizers().register(
            tokenizers::TRIGRAMS,
            tokenizers::TrigramsTokenizer::default(),
        );
        let writer = index
            .writer_with_num_threads(config.writer_threads, config.writer_heap_bytes)
            .map_err(unavailable)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(unavailable)?;
        Ok(Self {
            inner: Arc::new(Inner {
                fields,
                writer: Mutex::new(writer),
                reader,
                limits: config.limits.clone(),
                index,
            }),
        })
    }

    async fn run<T, F>(&self, operation: F) -> Result<T, SearchError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, SearchError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || operation(&inner))
            .await
            .map_err(|e| SearchError::Unavailable(format!("search task failed: {e}")))?
    }

    /// The directory an index in `data_dir` lives in.
    pub fn dir_in(data_dir: &Path) -> PathBuf {
        data_dir.join("search")
    }
}

impl Inner {
    fn writer(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, IndexWriter<TantivyDocument>>, SearchError> {
        self.writer
            .lock()
            .map_err(|_| SearchError::Unavailable("the search writer panicked".into()))
    }

    fn committed_position(&self) -> Result<u64, SearchError> {
        let metas = self.index.load_metas().map_err(unavailable)?;
        payload_position(metas.payload.as_deref())
    }

    fn add(&self, batches: Vec<LoggedBatch>) -> Result<usize, SearchError> {
        let writer = self.writer()?;
        let mut builder = documents::Builder::default();
        let mut added = 0;
        for batch in &batches {
            for (index, logged) in batch.messages.iter().enumerate() {
                // Placeholders of lost messages have no text and no reader.
                if logged.message.is_lost() {
                    continue;
                }
                let ordinal = ordinal_of(batch.position, index)?;
                let doc = builder.document(&self.fields, logged, ordinal);
                writer.add_document(doc).map_err(unavailable)?;
                added += 1;
            }
        }
        Ok(added)
    }

    fn commit(&self, position: u64) -> Result<(), SearchError> {
        let mut writer = self.writer()?;
        let mut prepared = writer.prepare_commit().map_err(unavailable)?;
        prepared.set_payload(&format!("commit_log_position={position}"));
        prepared.commit().map_err(unavailable)?;
        drop(writer);
        self.reader.reload().map_err(unavailable)
    }

    fn clear(&self, position: u64) -> Result<(), SearchError> {
        self.writer()?.delete_all_documents().map_err(unavailable)?;
        self.commit(position)
    }

    fn rollback(&self) -> Result<u64, SearchError> {
        self.writer()?.rollback().map_err(unavailable)?;
        self.committed_position()
    }

    /// The stored chat, number, sender, time and body of a document.
    fn stored(&self, doc: &TantivyDocument) -> Option<(u64, u64, String, i64, String)> {
        let fields = &self.fields;
        let u64_of = |field| doc.get_first(field).and_then(|v| v.as_u64());
        let chat = u64_of(fields.chat)?;
        let number = u64_of(fields.number)?;
        let from = doc
            .get_first(fields.sender)
            .and_then(|v| v.as_str())?
            .to_owned();
        let sent_at = doc.get_first(fields.sent_at).and_then(|v| v.as_i64())?;
        let body = doc
            .get_first(fields.body)
            .and_then(|v| v.as_str())?
            .to_owned();
        Some((chat, number, from, sent_at, body))
    }

    /// The chunks of each tier (see `queries`) that the shared keyset walk
    /// (`search::pager`) asks for, newest first.
    fn search(&self, request: &SearchRequest) -> Result<SearchPage, SearchError> {
        let searcher = self.reader.searcher();
        let mut pager = Pager::new(request, self.limits.candidates_scan_max);
        for mut walk in pager.tiers() {
            if pager.is_done() {
                break;
            }
            let matches = queries::tier(
                &self.fields,
                request,
                walk.tier,
                self.limits.prefix_expansions_max,
            );
            while let Some(chunk) = pager.next_chunk() {
                let mut clauses: Vec<(Occur, Box<dyn Query>)> =
                    vec![(Occur::Must, matches.box_clone())];
                clauses.extend(
                    queries::filters(&self.fields, request)
                        .into_iter()
                        .map(|q| (Occur::Must, q)),
                );
                if let Some(bound) = walk.bound {
                    clauses.push((Occur::Must, queries::before_ordinal(&self.fields, bound)));
                }
                let query = BooleanQuery::new(clauses);
                let found = newest::newest(&searcher, &query, chunk).map_err(unavailable)?;
                let exhausted = found.len() < chunk;
                for (ordinal, address) in found {
                    let doc: TantivyDocument = searcher.doc(address).map_err(unavailable)?;
                    let Some((chat, number, from, sent_at_us, body)) = self.stored(&doc) else {
                        return Err(SearchError::Corrupt(
                            "a document without its stored fields".into(),
                        ));
                    };
                    let found = Found {
                        ordinal,
                        chat,
                        number,
                        from,
                        sent_at_us,
                        body,
                    };
                    pager.examine(&mut walk, found);
                    if pager.is_done() {
                        break;
                    }
                }
                if exhausted {
                    break;
                }
            }
        }
        Ok(pager.finish())
    }
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn indexed_position(&self) -> Result<u64, SearchError> {
        self.run(|inner| inner.committed_position()).await
    }

    async fn add(&self, batches: Vec<LoggedBatch>) -> Result<usize, SearchError> {
        self.run(move |inner| inner.add(batches)).await
    }

    async fn commit(&self, position: u64) -> Result<(), SearchError> {
        self.run(move |inner| inner.commit(position)).await
    }

    async fn rollback(&self) -> Result<u64, SearchError> {
        self.run(|inner| inner.rollback()).await
    }

    async fn clear(&self, position: u64) -> Result<(), SearchError> {
        self.run(move |inner| inner.clear(position)).await
    }

    async fn search(&self, request: SearchRequest) -> Result<SearchPage, SearchError> {
        self.run(move |inner| inner.search(&request)).await
    }
}
