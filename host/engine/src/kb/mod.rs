//! Knowledge-base search: a tantivy (BM25) index over the store's articles.
//!
//! The store is the source of truth; the index is rebuilt from it whenever its version (a
//! digest of every article's id and content) differs from the one the index was built with.
//! Each run records the version it searched.
//!
//! The index holds everything a search or an article lookup needs: one document per
//! passage (searched), and one per article with the whole record (stored only, looked up
//! by id). Opening it reads no article: [`KbIndex::open_current`] trusts the version the
//! store recorded at the last rebuild (any article write clears it), so opening costs the
//! same at 100 or 100,000 articles.

use crate::records::ArticleRecord;
use crate::util::sha256_parts;
use deskhost_nlp::text::{light_stem, sentence_ranges, token_ranges};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tantivy::collector::TopDocs;
use tantivy::query::{Bm25StatisticsProvider, BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument, Term, doc};

/// KB errors.
#[derive(Debug, thiserror::Error)]
pub enum KbError {
    /// tantivy failed.
    #[error("knowledge-base index at {path}: {source}; rebuild it with `deskhost kb reindex`")]
    Index {
        /// Index directory.
        path: PathBuf,
        /// Why.
        source: tantivy::TantivyError,
    },
    /// The index directory could not be prepared.
    #[error("knowledge-base index directory {path}: {source}")]
    Io {
        /// Directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, KbError>;

mod bounds;
mod maxscore;

const ANALYZER: &str = "deskhost";
/// Named by the index format: an index of an older format has no such file and is rebuilt.
const VERSION_FILE: &str = "deskhost-kb-version-4";
/// Name of the fast field [`Fields::article`].
const ARTICLE_FIELD: &str = "article";
/// `kind` of the documents holding whole articles (passages have none).
const ARTICLE_KIND: &str = "article";
/// A passage closes at a blank line or heading once it has this many bytes.
const MIN_PASSAGE: usize = 300;
/// Longer passages are cut at sentence ends.
const MAX_PASSAGE: usize = 1500;
/// Most hits one search returns (a larger `limit` is cut to it).
const MAX_HITS: usize = 1000;
/// Query terms kept after ranking (see `query_terms`). Chosen on half of the kb-banking
/// scenarios (64..192 tried), confirmed on the other half.
const MAX_QUERY_TERMS: usize = 128;

/// One search result.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct KbHitRecord {
    /// Article id.
    pub article_id: String,
    /// Title.
    pub title: String,
    /// Language tag.
    pub language: String,
    /// Collection.
    pub collection: String,
    /// Best-matching passage (verbatim article text).
    pub snippet: String,
    /// BM25 score.
    pub score: f32,
}

/// A query term kept by [`KbIndex::query_terms`].
struct QueryTerm {
    text: String,
    /// `1 + ln` of its count in the query: the boost of its clauses.
    weight: f32,
    /// Documents holding it in their body and in their title.
    df_body: u64,
    df_title: u64,
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    body: Field,
    language: Field,
    collection: Field,
    /// `article` on the documents holding whole articles.
    kind: Field,
    /// The whole article as JSON (stored, not indexed).
    record: Field,
    /// The article's position in the set the index was built from, on every document of
    /// it: a search keeps the best passage per article as it goes.
    article: Field,
}

impl Fields {
    /// The fields a search scores, whose terms have bounds ([`bounds`]): the ones computed
    /// at build are read back only for exactly these.
    fn bounded(&self) -> [Field; 2] {
        [self.title, self.body]
    }
}

/// The index of an article set.
#[derive(Clone)]
pub struct KbIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    version: String,
    /// Articles in it.
    count: usize,
    /// Where it is: the term bounds beside it are read on the first search.
    dir: PathBuf,
    /// Each term's highest BM25 factor ([`bounds`]); `None` when unreadable or stale.
    bounds: Arc<OnceLock<Option<bounds::TermBounds>>>,
    /// The documents passing each search's filters, per segment ([`maxscore::FilterSets`]).
    passing: Arc<maxscore::FilterSets>,
}

impl std::fmt::Debug for KbIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbIndex")
            .field("version", &self.version)
            .field("articles", &self.count)
            .finish()
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        title: b.add_text_field("title", text.clone()),
        body: b.add_text_field("body", text),
        language: b.add_text_field("language", STRING | STORED),
        collection: b.add_text_field("collection", STRING | STORED),
        kind: b.add_text_field("kind", STRING),
        record: b.add_text_field("record", STORED),
        article: b.add_u64_field(ARTICLE_FIELD, FAST),
    };
    (b.build(), fields)
}

fn register(index: &Index) {
    let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build();
    index.tokenizers().register(ANALYZER, analyzer);
}

/// Changes whenever the analyzer does, so indexes built by another analyzer are rebuilt.
const ANALYZER_VERSION: &str = "simple+lower+fold;passages/3";

/// The version of an article set: digest over ids and content hashes, order-independent.
pub fn version_of(articles: &[ArticleRecord]) -> String {
    let mut items: Vec<(String, String)> = articles
        .iter()
        .map(|a| (a.id.clone(), a.content_hash()))
        .collect();
    items.sort();
    let mut flat: Vec<&[u8]> = vec![ANALYZER_VERSION.as_bytes()];
    flat.extend(items.iter().flat_map(|(i, h)| [i.as_bytes(), h.as_bytes()]));
    sha256_parts(&flat)[..16].to_string()
}

impl KbIndex {
    /// Opens the index in `dir` if it was built from exactly `articles`, else rebuilds it.
    /// Returns whether it rebuilt.
    pub fn open_or_rebuild(dir: &Path, articles: Vec<ArticleRecord>) -> Result<(Self, bool)> {
        let version = version_of(&articles);
        if let Some(index) = Self::open_current(dir, &version) {
            return Ok((index, false));
        }
        Ok((Self::build(dir, articles)?, true))
    }

    /// Opens the index in `dir` when it was built for article-set `version` (and in this
    /// format); `None` otherwise. Reads no article.
    pub fn open_current(dir: &Path, version: &str) -> Option<Self> {
        let current = std::fs::read_to_string(dir.join(VERSION_FILE)).ok()?;
        if current.trim() != version {
            return None;
        }
        let index = Index::open_in_dir(dir).ok()?;
        register(&index);
        let (_, fields) = schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .ok()?;
        Some(Self::with(dir, index, reader, fields, version.to_string()))
    }

    fn with(
        dir: &Path,
        index: Index,
        reader: IndexReader,
        fields: Fields,
        version: String,
    ) -> Self {
        let count = reader
            .searcher()
            .doc_freq(&Term::from_field_text(fields.kind, ARTICLE_KIND))
            .unwrap_or(0) as usize;
        Self {
            index,
            reader,
            fields,
            version,
            count,
            dir: dir.to_path_buf(),
            bounds: Arc::default(),
            passing: Arc::default(),
        }
    }

    /// (Re)builds the index in `dir` from `articles`.
    pub fn build(dir: &Path, articles: Vec<ArticleRecord>) -> Result<Self> {
        let io = |source| KbError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let err = |source| KbError::Index {
            path: dir.to_path_buf(),
            source,
        };
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let (schema, fields) = schema();
        let index = Index::create_in_dir(dir, schema).map_err(err)?;
        register(&index);
        let mut writer: tantivy::IndexWriter =
            index.writer_with_num_threads(1, 50_000_000).map_err(err)?;
        // One document per passage: an article is found by its best section, not diluted
        // by the length of the rest.
        for (ordinal, a) in (0u64..).zip(&articles) {
            let record = serde_json::to_string(a).unwrap_or_default();
            writer
                .add_document(doc!(
                    fields.id => a.id.clone(),
                    fields.kind => ARTICLE_KIND,
                    fields.record => record,
                    fields.article => ordinal,
                ))
                .map_err(err)?;
            for range in passages(&a.body) {
                writer
                    .add_document(doc!(
                        fields.id => a.id.clone(),
                        fields.title => a.title.clone(),
                        fields.body => a.body[range].to_string(),
                        fields.language => a.language.clone(),
                        fields.collection => a.collection.clone(),
                        fields.article => ordinal,
                    ))
                    .map_err(err)?;
            }
        }
        writer.commit().map_err(err)?;
        // One segment: a search then looks each clause up once, carries one threshold from
        // its first document and keeps one filter set per filter. The writer flushes a
        // segment per 50 MB of its budget (3 at 100k articles); merging them measured search
        // p50 2.0-2.7 -> 2.1 ms, p99 5.8-9.0 -> 5.8-7.2 ms at 100k (`bench kb`, interleaved),
        // for ~3 s and ~330 MB more at the peak of a 100k-article import.
        let segments = index.searchable_segment_ids().map_err(err)?;
        if segments.len() > 1 {
            writer.merge(&segments).wait().map_err(err)?;
        }
        writer.wait_merging_threads().map_err(err)?;
        let reader: IndexReader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        // The bounds and then the version file: an index without the latter is rebuilt.
        let bounds =
            bounds::TermBounds::compute(&reader.searcher(), &fields.bounded()).map_err(err)?;
        bounds.write(dir).map_err(io)?;
        let version = version_of(&articles);
        std::fs::write(dir.join(VERSION_FILE), &version).map_err(io)?;
        let built = Self::with(dir, index, reader, fields, version);
        let _ = built.bounds.set(Some(bounds));
        Ok(built)
    }

    /// The version of the article set this index was built from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of articles.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the KB is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// One article by id, as indexed.
    pub fn article(&self, id: &str) -> Option<ArticleRecord> {
        let f = self.fields;
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.id, id),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.kind, ARTICLE_KIND),
                    IndexRecordOption::Basic,
                )),
            ),
        ]);
        let searcher = self.reader.searcher();
        let (_, address) = searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())
            .ok()?
            .into_iter()
            .next()?;
        let doc: TantivyDocument = searcher.doc(address).ok()?;
        let record = doc.get_first(f.record).and_then(|v| v.as_str())?;
        serde_json::from_str(record).ok()
    }

    /// Documents that are passages (the whole-article ones are not searched).
    fn passage_count(&self, searcher: &Searcher) -> u64 {
        searcher.num_docs().saturating_sub(self.count as u64)
    }

    /// The query's most distinctive terms with their weights. Long tickets carry greetings,
    /// signatures and story around the question; keeping every term drowns it. Terms are
    /// ranked by `(1 + ln tf_query) * idf_kb`, terms absent from the KB are dropped, and the
    /// best [`MAX_QUERY_TERMS`] are kept, weighted by their query frequency. No stopword
    /// lists: common words have a low idf and fall out of long queries by themselves.
    fn query_terms(&self, searcher: &Searcher, query: &str) -> Vec<QueryTerm> {
        let Ok(mut analyzer) = self.index.tokenizer_for_field(self.fields.body) else {
            return Vec::new();
        };
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut stream = analyzer.token_stream(query);
        let mut tokens = 0;
        while stream.advance() && tokens < 8192 {
            tokens += 1;
            let t = &stream.token().text;
            if t.chars().count() < 2 {
                continue;
            }
            let count = counts.entry(t.clone()).or_insert(0);
            if *count == 0 {
                order.push(t.clone());
            }
            *count += 1;
        }
        let docs = self.passage_count(searcher).max(1) as f64;
        let mut scored: Vec<(usize, f64, QueryTerm)> = order
            .into_iter()
            .enumerate()
            .filter_map(|(position, t)| {
                let df_body = searcher
                    .doc_freq(&Term::from_field_text(self.fields.body, &t))
                    .unwrap_or(0);
                let df_title = searcher
                    .doc_freq(&Term::from_field_text(self.fields.title, &t))
                    .unwrap_or(0);
                let df = df_body + df_title;
                if df == 0 {
                    return None;
                }
                let df = (df as f64).min(docs);
                let idf = (1.0 + (docs - df + 0.5) / (df + 0.5)).ln();
                let tf = f64::from(counts.get(&t).copied().unwrap_or(1));
                let weight = 1.0 + tf.ln();
                Some((
                    position,
                    weight * idf,
                    QueryTerm {
                        text: t,
                        weight: weight as f32,
                        df_body,
                        df_title,
                    },
                ))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(MAX_QUERY_TERMS);
        scored.into_iter().map(|(_, _, t)| t).collect()
    }

    /// BM25 search over `collections`, optionally one `language`: at most `limit` (and
    /// [`MAX_HITS`]) articles, best first, each ranked by its best passage. The query is the
    /// disjunction of the kept query terms in title and body, within the filters, walked by
    /// [`maxscore::top_articles`] (exact, without scoring every passage that holds a common
    /// word).
    pub fn search(
        &self,
        query: &str,
        language: Option<&str>,
        collections: &[String],
        limit: usize,
    ) -> Result<Vec<KbHitRecord>> {
        let limit = limit.min(MAX_HITS);
        let searcher = self.reader.searcher();
        let terms = self.query_terms(&searcher, query);
        if terms.is_empty() || collections.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let index_err = |source| KbError::Index {
            path: PathBuf::new(),
            source,
        };
        // What tantivy's BM25 weights see: every document of every segment.
        let total_docs = searcher.total_num_docs().map_err(index_err)?.max(1);
        let bounds = self
            .bounds
            .get_or_init(|| bounds::TermBounds::read(&self.dir, &searcher, &f.bounded()))
            .as_ref();
        let mut clauses = Vec::with_capacity(terms.len() * 2);
        for t in &terms {
            for (field, df) in [(f.title, t.df_title), (f.body, t.df_body)] {
                if df > 0 {
                    let term = Term::from_field_text(field, &t.text);
                    let factor = bounds.and_then(|b| b.factor(&term));
                    clauses.push(maxscore::Clause::term(
                        term, t.weight, df, total_docs, factor,
                    ));
                }
            }
        }
        // Filters only filter (a scored one would rank a smaller collection's articles above
        // the rest by its term's idf). One that every passage passes is left out.
        let passages = self.passage_count(&searcher);
        let holding = |field: Field, value: &str| {
            searcher
                .doc_freq(&Term::from_field_text(field, value))
                .unwrap_or(0)
        };
        let mut filters: Vec<maxscore::Filter> = Vec::new();
        let granted: BTreeSet<&String> = collections.iter().collect();
        if granted
            .iter()
            .map(|c| holding(f.collection, c))
            .sum::<u64>()
            < passages
        {
            filters.push(
                granted
                    .iter()
                    .map(|c| Term::from_field_text(f.collection, c))
                    .collect(),
            );
        }
        if let Some(lang) = language
            && holding(f.language, lang) < passages
        {
            filters.push(vec![Term::from_field_text(f.language, lang)]);
        }
        let query = maxscore::Disjunction::new(clauses, filters, self.passing.clone());
        // Articles, best first, each by its best passage.
        let top =
            maxscore::top_articles(&searcher, &query, ARTICLE_FIELD, limit).map_err(index_err)?;
        let words: Vec<String> = terms.into_iter().map(|t| t.text).collect();
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address).map_err(index_err)?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let id = text(f.id);
            if id.is_empty() {
                continue;
            }
            let passage = text(f.body);
            hits.push(KbHitRecord {
                article_id: id,
                title: text(f.title),
                language: text(f.language),
                collection: text(f.collection),
                snippet: best_passage(&passage, &words).to_string(),
                score,
            });
        }
        Ok(hits)
    }
}

/// Byte ranges of an article's passages: sections split at Markdown headings and blank
/// lines (once a passage has [`MIN_PASSAGE`] bytes), long ones cut at sentence ends.
pub fn passages(body: &str) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let trimmed = line.trim();
        let boundary = trimmed.is_empty() || trimmed.starts_with('#');
        if boundary && offset - start >= MIN_PASSAGE {
            out.push(start..offset);
            // A blank separator belongs to neither passage; a heading opens the next one.
            start = if trimmed.is_empty() {
                offset + line.len()
            } else {
                offset
            };
        }
        offset += line.len();
    }
    if start < body.len() && body[start..].chars().any(char::is_alphanumeric) {
        out.push(start..body.len());
    }
    // Cut long passages at sentence ends.
    let mut cut = Vec::new();
    for r in out {
        if r.len() <= MAX_PASSAGE {
            cut.push(r);
            continue;
        }
        let mut piece_start = r.start;
        for s in sentence_ranges(&body[r.clone()]) {
            let end = r.start + s.end;
            if end - piece_start >= MAX_PASSAGE {
                cut.push(piece_start..end);
                piece_start = end;
            }
        }
        if r.end > piece_start && body[piece_start..r.end].chars().any(char::is_alphanumeric) {
            cut.push(piece_start..r.end);
        }
    }
    if cut.is_empty() {
        cut.push(0..body.len());
    }
    cut
}

/// The sentence of `body` sharing the most terms with the query, verbatim; the first
/// sentence when none shares any. `terms` are analyzer output (folded and stemmed).
pub fn best_passage<'a>(body: &'a str, terms: &[String]) -> &'a str {
    let wanted: BTreeSet<String> = terms.iter().cloned().collect();
    let mut best: Option<(usize, std::ops::Range<usize>)> = None;
    for range in sentence_ranges(body) {
        let sentence = &body[range.clone()];
        let have: BTreeSet<String> = token_ranges(sentence)
            .map(|r| deskhost_nlp::text::fold(&sentence[r]))
            .map(|w| light_stem(&w).to_string())
            .filter(|w| wanted.contains(w))
            .collect();
        if best.as_ref().is_none_or(|(n, _)| have.len() > *n) {
            best = Some((have.len(), range));
        }
    }
    best.map_or("", |(_, r)| &body[r])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(
        id: &str,
        title: &str,
        body: &str,
        language: &str,
        collection: &str,
    ) -> ArticleRecord {
        ArticleRecord {
            id: id.into(),
            title: title.into(),
            body: body.into(),
            language: language.into(),
            collection: collection.into(),
            version: 1,
        }
    }

    fn corpus() -> Vec<ArticleRecord> {
        vec![
            article(
                "refunds-en",
                "Refunds",
                "We refund duplicate charges within 5 business days. Refunds go to the original card.",
                "en",
                "public",
            ),
            article(
                "refunds-de",
                "Rückerstattungen",
                "Doppelte Abbuchungen erstatten wir innerhalb von 5 Werktagen.",
                "de",
                "public",
            ),
            article(
                "password-en",
                "Reset your password",
                "Use the Forgot password link on the sign-in page.",
                "en",
                "public",
            ),
            article(
                "legal-runbook",
                "Legal threats",
                "Do not reply; forward to legal. Refund questions go to billing.",
                "en",
                "internal",
            ),
        ]
    }

    #[test]
    fn filters_do_not_score_a_rarer_collection_or_language_higher() {
        let dir = tempfile::tempdir().unwrap();
        let mut articles = vec![
            article(
                "a-internal",
                "Chargeback",
                "Dispute a chargeback with the bank.",
                "en",
                "internal",
            ),
            article(
                "a-public",
                "Chargeback",
                "Dispute a chargeback with the bank.",
                "en",
                "public",
            ),
        ];
        for i in 0..20 {
            articles.push(article(
                &format!("other-{i}"),
                "Shipping",
                "Parcels leave the warehouse daily.",
                "en",
                "public",
            ));
        }
        articles.push(article(
            "de",
            "Versand",
            "Pakete gehen täglich raus.",
            "de",
            "public",
        ));
        let kb = KbIndex::build(dir.path(), articles).unwrap();
        let both = vec!["internal".to_string(), "public".to_string()];
        let hits = kb
            .search("chargeback dispute bank", Some("en"), &both, 5)
            .unwrap();
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert_eq!(
            hits[0].score, hits[1].score,
            "the same text scores the same in either collection: {hits:?}"
        );
        let public = vec!["public".to_string()];
        let alone = kb
            .search("chargeback dispute bank", Some("en"), &public, 5)
            .unwrap();
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].article_id, "a-public");
        assert_eq!(
            alone[0].score, hits[0].score,
            "a filter adds nothing to a score"
        );
    }

    #[test]
    fn an_index_opens_without_its_articles_and_answers_from_itself() {
        let dir = tempfile::tempdir().unwrap();
        let articles = corpus();
        let version = version_of(&articles);
        let built = KbIndex::build(dir.path(), articles.clone()).unwrap();
        let public = vec!["public".to_string()];
        let query = "I was charged twice, please refund";
        let expected = built.search(query, Some("en"), &public, 5).unwrap();
        drop(built);
        assert!(
            KbIndex::open_current(dir.path(), "another-version").is_none(),
            "an index built for other articles is not opened"
        );
        let kb = KbIndex::open_current(dir.path(), &version).expect("opens");
        assert_eq!(kb.len(), articles.len());
        assert_eq!(kb.search(query, Some("en"), &public, 5).unwrap(), expected);
        for a in &articles {
            assert_eq!(kb.article(&a.id).as_ref(), Some(a), "{}", a.id);
        }
        assert_eq!(kb.article("refunds"), None, "ids match whole");
        // An index of the previous format (no whole-article documents) is not opened.
        std::fs::rename(
            dir.path().join(VERSION_FILE),
            dir.path().join("deskhost-kb-version"),
        )
        .unwrap();
        assert!(KbIndex::open_current(dir.path(), &version).is_none());
        let (_, rebuilt) = KbIndex::open_or_rebuild(dir.path(), articles).unwrap();
        assert!(rebuilt);
    }

    #[test]
    fn searches_with_language_and_collection_filters() {
        let dir = tempfile::tempdir().unwrap();
        let kb = KbIndex::build(dir.path(), corpus()).unwrap();
        let public = vec!["public".to_string()];
        let hits = kb
            .search("I was charged twice, please refund", Some("en"), &public, 5)
            .unwrap();
        assert_eq!(hits[0].article_id, "refunds-en");
        assert_eq!(
            hits[0].snippet,
            "We refund duplicate charges within 5 business days."
        );
        assert!(
            hits.iter().all(|h| h.collection == "public"),
            "internal articles stay hidden"
        );
        let de = kb
            .search("doppelte Abbuchungen", Some("de"), &public, 5)
            .unwrap();
        assert_eq!(de.len(), 1);
        assert_eq!(de[0].article_id, "refunds-de");
        assert!(
            kb.search("zyxwv qqqq", None, &public, 5)
                .unwrap()
                .is_empty(),
            "terms the KB does not have match nothing"
        );
        // Long tickets: the distinctive terms decide, not the greeting and the story.
        let long = format!(
            "{} I was charged twice, please refund the duplicate charge.",
            "Hello team, hope you are well. ".repeat(40)
        );
        let hits = kb.search(&long, Some("en"), &public, 1).unwrap();
        assert_eq!(hits[0].article_id, "refunds-en");
        // Each article once, however many of its passages match and however many are asked.
        let all = kb
            .search(
                "refund card password Abbuchungen",
                None,
                &public,
                usize::MAX,
            )
            .unwrap();
        let ids: BTreeSet<&str> = all.iter().map(|h| h.article_id.as_str()).collect();
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(ids.len(), all.len(), "{all:?}");
        assert!(all.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn passages_split_at_sections_and_cover_the_body() {
        let section = |h: &str| {
            format!(
                "## {h}\n{}\n\n",
                "A sentence about this section. ".repeat(12)
            )
        };
        let body = format!("{}{}{}", section("One"), section("Two"), "Short tail.");
        let parts = passages(&body);
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(body[parts[0].clone()].starts_with("## One"));
        assert!(body[parts[1].clone()].starts_with("## Two"));
        assert_eq!(parts.last().map(|r| r.end), Some(body.len()));
        let long = "Word word word word. ".repeat(200);
        assert!(passages(&long).iter().all(|r| r.len() <= MAX_PASSAGE + 40));
        assert_eq!(passages("tiny"), vec![0..4]);
    }

    #[test]
    fn reopens_when_unchanged_and_rebuilds_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let built = KbIndex::build(dir.path(), corpus()).unwrap();
        let (same, rebuilt) = KbIndex::open_or_rebuild(dir.path(), corpus()).unwrap();
        assert!(!rebuilt);
        assert_eq!(same.version(), built.version());
        let mut changed = corpus();
        changed[0].body.push_str(" Contact billing.");
        let (new, rebuilt) = KbIndex::open_or_rebuild(dir.path(), changed).unwrap();
        assert!(rebuilt);
        assert_ne!(new.version(), built.version());
    }
}
