//! Knowledge-base search: a tantivy (BM25) index over the store's articles.
//!
//! The store is the source of truth; the index is rebuilt from it whenever its version (a
//! digest of every article's id and content) differs from the one the index was built with.
//! Each run records the version it searched.

use crate::records::ArticleRecord;
use crate::util::sha256_parts;
use deskhost_nlp::text::{is_stopword, light_stem, sentence_ranges, token_ranges};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term, doc};

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

const ANALYZER: &str = "deskhost";
const VERSION_FILE: &str = "deskhost-kb-version";

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

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    body: Field,
    language: Field,
    collection: Field,
}

/// The index plus the articles it was built from.
#[derive(Clone)]
pub struct KbIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    version: String,
    articles: Arc<HashMap<String, ArticleRecord>>,
}

impl std::fmt::Debug for KbIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbIndex")
            .field("version", &self.version)
            .field("articles", &self.articles.len())
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

/// The version of an article set: digest over ids and content hashes, order-independent.
pub fn version_of(articles: &[ArticleRecord]) -> String {
    let mut items: Vec<(String, String)> = articles
        .iter()
        .map(|a| (a.id.clone(), a.content_hash()))
        .collect();
    items.sort();
    let flat: Vec<&[u8]> = items
        .iter()
        .flat_map(|(i, h)| [i.as_bytes(), h.as_bytes()])
        .collect();
    sha256_parts(&flat)[..16].to_string()
}

impl KbIndex {
    /// Opens the index in `dir` if it was built from exactly `articles`, else rebuilds it.
    /// Returns whether it rebuilt.
    pub fn open_or_rebuild(dir: &Path, articles: Vec<ArticleRecord>) -> Result<(Self, bool)> {
        let version = version_of(&articles);
        let current = std::fs::read_to_string(dir.join(VERSION_FILE)).unwrap_or_default();
        if current.trim() == version
            && let Ok(index) = Self::open(dir, &version, &articles)
        {
            return Ok((index, false));
        }
        Ok((Self::build(dir, articles)?, true))
    }

    fn open(dir: &Path, version: &str, articles: &[ArticleRecord]) -> Result<Self> {
        let err = |source| KbError::Index {
            path: dir.to_path_buf(),
            source,
        };
        let index = Index::open_in_dir(dir).map_err(err)?;
        register(&index);
        let (_, fields) = schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        let articles = articles.iter().map(|a| (a.id.clone(), a.clone())).collect();
        Ok(Self {
            index,
            reader,
            fields,
            version: version.to_string(),
            articles: Arc::new(articles),
        })
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
        for a in &articles {
            writer
                .add_document(doc!(
                    fields.id => a.id.clone(),
                    fields.title => a.title.clone(),
                    fields.body => a.body.clone(),
                    fields.language => a.language.clone(),
                    fields.collection => a.collection.clone(),
                ))
                .map_err(err)?;
        }
        writer.commit().map_err(err)?;
        writer.wait_merging_threads().map_err(err)?;
        let version = version_of(&articles);
        std::fs::write(dir.join(VERSION_FILE), &version).map_err(io)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        let articles = articles.into_iter().map(|a| (a.id.clone(), a)).collect();
        Ok(Self {
            index,
            reader,
            fields,
            version,
            articles: Arc::new(articles),
        })
    }

    /// The version of the article set this index was built from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of articles.
    pub fn len(&self) -> usize {
        self.articles.len()
    }

    /// True when the KB is empty.
    pub fn is_empty(&self) -> bool {
        self.articles.is_empty()
    }

    /// One article by id.
    pub fn article(&self, id: &str) -> Option<&ArticleRecord> {
        self.articles.get(id)
    }

    fn query_terms(&self, query: &str, language: Option<&str>) -> Vec<String> {
        let Ok(mut analyzer) = self.index.tokenizer_for_field(self.fields.body) else {
            return Vec::new();
        };
        let mut stream = analyzer.token_stream(query);
        let mut terms = Vec::new();
        let mut seen = BTreeSet::new();
        while stream.advance() {
            let t = stream.token().text.clone();
            if t.chars().count() < 2
                || is_stopword(&t, language.unwrap_or("en"))
                || is_stopword(&t, "en")
            {
                continue;
            }
            if seen.insert(t.clone()) {
                terms.push(t);
            }
            if terms.len() >= 48 {
                break;
            }
        }
        terms
    }

    /// BM25 search over `collections`, optionally one `language`, best first.
    pub fn search(
        &self,
        query: &str,
        language: Option<&str>,
        collections: &[String],
        limit: usize,
    ) -> Result<Vec<KbHitRecord>> {
        let terms = self.query_terms(query, language);
        if terms.is_empty() || collections.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for t in &terms {
            let title = TermQuery::new(
                Term::from_field_text(f.title, t),
                IndexRecordOption::WithFreqs,
            );
            should.push((
                Occur::Should,
                Box::new(BoostQuery::new(Box::new(title), 2.0)),
            ));
            should.push((
                Occur::Should,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.body, t),
                    IndexRecordOption::WithFreqs,
                )),
            ));
        }
        let in_collections: Vec<(Occur, Box<dyn Query>)> = collections
            .iter()
            .map(|c| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(f.collection, c),
                    IndexRecordOption::Basic,
                ));
                (Occur::Should, q)
            })
            .collect();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, Box::new(BooleanQuery::new(should))),
            (Occur::Must, Box::new(BooleanQuery::new(in_collections))),
        ];
        if let Some(lang) = language {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.language, lang),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(limit).order_by_score())
            .map_err(|source| KbError::Index {
                path: PathBuf::new(),
                source,
            })?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address).map_err(|source| KbError::Index {
                path: PathBuf::new(),
                source,
            })?;
            let Some(id) = doc.get_first(f.id).and_then(|v| v.as_str()) else {
                continue;
            };
            let Some(article) = self.articles.get(id) else {
                continue;
            };
            hits.push(KbHitRecord {
                article_id: article.id.clone(),
                title: article.title.clone(),
                language: article.language.clone(),
                collection: article.collection.clone(),
                snippet: best_passage(&article.body, &terms).to_string(),
                score,
            });
        }
        Ok(hits)
    }
}

/// The sentence of `body` sharing the most (stemmed) terms with the query, verbatim; the
/// first sentence when none shares any.
pub fn best_passage<'a>(body: &'a str, terms: &[String]) -> &'a str {
    let wanted: BTreeSet<String> = terms.iter().map(|t| light_stem(t).to_string()).collect();
    let mut best: Option<(usize, std::ops::Range<usize>)> = None;
    for range in sentence_ranges(body) {
        let sentence = &body[range.clone()];
        let have: BTreeSet<String> = token_ranges(sentence)
            .map(|r| fold(&sentence[r].to_lowercase()))
            .map(|w| light_stem(&w).to_string())
            .filter(|w| wanted.contains(w))
            .collect();
        if best.as_ref().is_none_or(|(n, _)| have.len() > *n) {
            best = Some((have.len(), range));
        }
    }
    best.map_or("", |(_, r)| &body[r])
}

/// ASCII folding as the index does it, for comparing sentence words with index terms.
fn fold(word: &str) -> String {
    word.chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            'ß' => 's',
            other => other,
        })
        .collect()
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
            kb.search("the and of", None, &public, 5)
                .unwrap()
                .is_empty(),
            "stopwords alone match nothing"
        );
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
