//! The best articles for a disjunction of term clauses within filters, by MaxScore (Turtle
//! and Flood, 1995), without scoring every passage that holds a common word.
//!
//! A KB search is `(t1 | t2 | ... | tn) & collection & language` over passages, an article
//! ranking by its best passage. tantivy prunes a plain disjunction of terms (block-max WAND)
//! but not one intersected with filters: it scores every passage that holds any query term,
//! and on a large KB nearly every passage holds one of the query's common words.
//!
//! MaxScore gives the same ranking and skips most of that. Each clause has an upper bound of
//! what it can add to a score: its BM25 weight, `idf * (1 + k1) * boost`, times the highest
//! `tf / (tf + norm)` the term reaches in any passage ([`super::bounds`]; the formula's limit,
//! 1, for an index without them). Sorted by bound,
//! the cheapest clauses whose bounds together do not exceed the current threshold are
//! "non-essential": a passage holding only those cannot beat it. Candidates come from the
//! other clauses' postings alone (summed a window of documents at a time, as tantivy's own
//! union does), and a non-essential clause is looked up (seeked) for a candidate only while
//! it could still lift the candidate over the threshold. [`top_articles`] sets the threshold:
//! the `limit`-th best *article* so far (not the k-th passage: several passages of one article
//! would keep it low), carried across segments. As it rises, more clauses become
//! non-essential.
//!
//! The result is the one scoring every passage gives (same articles, same scores up to the
//! order floating-point scores are summed in; tested below against exactly that), and
//! `Weight::scorer` is the plain tantivy query's, so counts and explanations are unchanged.
//! What it saves depends on the query: `deskhost bench kb` (synthetic Zipf-like text) at
//! 100k articles measured search p50 10.4 → 4.1 ms, p99 13.7 → 10.1 ms, and with the term
//! bounds, the small first window and the bound checked before the filters ~3.1 / ~8.6 ms;
//! long queries with many mid-frequency words prune least (a candidate holding any one
//! essential word can still reach the threshold with the non-essential ones).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tantivy::fieldnorm::FieldNormReader;
use tantivy::index::SegmentId;
use tantivy::postings::{Postings, SegmentPostings};
use tantivy::query::{
    Bm25Weight, BooleanQuery, BoostQuery, ConstScoreQuery, EnableScoring, Explanation, Occur,
    Query, Scorer, TermQuery, Weight,
};
use tantivy::schema::{IndexRecordOption, Schema};
use tantivy::{DocAddress, DocId, DocSet, Score, Searcher, SegmentReader, TERMINATED, Term};

/// One term in one field, boosted, with the most it can add to a document's score.
#[derive(Clone, Debug)]
pub(super) struct Clause {
    term: Term,
    boost: Score,
    bound: Score,
}

impl Clause {
    /// `term` boosted by `boost`; `doc_freq` documents of `total_docs` (the searcher's
    /// statistics, the ones its BM25 weight is computed from) hold it; `factor`, when known,
    /// is the most its `tf / (tf + norm)` reaches in any of them ([`super::bounds`]).
    pub(super) fn term(
        term: Term,
        boost: Score,
        doc_freq: u64,
        total_docs: u64,
        factor: Option<Score>,
    ) -> Self {
        // tantivy's own weight for the term; with an average length this large the length
        // norm vanishes and its maximum is the limit of `tf / (tf + norm)`, 1: no document
        // scores above it, nor above the factor it reaches at most. The margin covers
        // rounding.
        let bound = Bm25Weight::for_one_term_without_explain(doc_freq, total_docs, Score::MAX)
            .boost_by(boost)
            .max_score()
            * factor.unwrap_or(1.0)
            * 1.0001;
        Self { term, boost, bound }
    }

    fn query(&self) -> Box<dyn Query> {
        Box::new(BoostQuery::new(
            Box::new(TermQuery::new(
                self.term.clone(),
                IndexRecordOption::WithFreqs,
            )),
            self.boost,
        ))
    }
}

/// A filter: a document passes when it holds any of these terms (one of the granted
/// collections, the ticket's language). Unscored.
pub(super) type Filter = Vec<Term>;

/// `clauses` or-ed, scored by BM25 (summed), within every one of `filters` (not scored).
#[derive(Clone, Debug)]
pub(super) struct Disjunction {
    clauses: Vec<Clause>,
    filters: Vec<Filter>,
    /// Where the documents passing the filters are kept between searches.
    passing: Arc<FilterSets>,
    /// Documents gathered per window ([`WINDOW`]; tests use small ones to prune often).
    window: usize,
}

impl Disjunction {
    pub(super) fn new(
        clauses: Vec<Clause>,
        filters: Vec<Filter>,
        passing: Arc<FilterSets>,
    ) -> Self {
        Self {
            clauses,
            filters,
            passing,
            window: WINDOW,
        }
    }

    /// The same query in tantivy's own terms (scored the same, pruned only without filters).
    fn plain(&self) -> BooleanQuery {
        let union: Vec<(Occur, Box<dyn Query>)> = self
            .clauses
            .iter()
            .map(|c| (Occur::Should, c.query()))
            .collect();
        let mut all: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(BooleanQuery::new(union)))];
        for filter in &self.filters {
            let any: Vec<(Occur, Box<dyn Query>)> = filter
                .iter()
                .map(|t| {
                    let q: Box<dyn Query> =
                        Box::new(TermQuery::new(t.clone(), IndexRecordOption::Basic));
                    (Occur::Should, q)
                })
                .collect();
            all.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(BooleanQuery::new(any)), 0.0)),
            ));
        }
        BooleanQuery::new(all)
    }
}

impl Query for Disjunction {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        // Each clause's BM25 weight as `TermQuery` computes it and `BoostQuery` scales it.
        let clauses = match scoring {
            EnableScoring::Enabled {
                statistics_provider,
                ..
            } => Some(
                self.clauses
                    .iter()
                    .map(|c| {
                        let weight = Bm25Weight::for_terms(
                            statistics_provider,
                            std::slice::from_ref(&c.term),
                        )?;
                        Ok((c.term.clone(), weight.boost_by(c.boost), c.bound))
                    })
                    .collect::<tantivy::Result<Vec<_>>>()?,
            ),
            EnableScoring::Disabled { .. } => None,
        };
        Ok(Box::new(DisjunctionWeight {
            plain: self.plain(),
            searcher: scoring
                .is_scoring_enabled()
                .then(|| scoring.searcher().cloned())
                .flatten(),
            schema: scoring.schema().clone(),
            plain_weight: OnceLock::new(),
            clauses,
            filters: self.filters.clone(),
            passing: self.passing.clone(),
            window: self.window,
        }))
    }
}

struct DisjunctionWeight {
    /// The query as tantivy runs it, for scores, counts and explanations. A search needs
    /// none of those, so it is weighed (every clause's BM25 weight again) on first use only,
    /// with the searcher this weight was made for (unscored without one).
    plain: BooleanQuery,
    searcher: Option<Searcher>,
    schema: Schema,
    plain_weight: OnceLock<Box<dyn Weight>>,
    /// Each clause's term, BM25 weight and bound, when scoring is enabled (the walk reads
    /// their postings itself, [`TermPostings`]).
    clauses: Option<Vec<(Term, Bm25Weight, Score)>>,
    filters: Vec<Filter>,
    passing: Arc<FilterSets>,
    window: usize,
}

impl DisjunctionWeight {
    fn plain(&self) -> tantivy::Result<&dyn Weight> {
        if let Some(weight) = self.plain_weight.get() {
            return Ok(weight.as_ref());
        }
        let scoring = match &self.searcher {
            Some(searcher) => EnableScoring::enabled_from_searcher(searcher),
            None => EnableScoring::disabled_from_schema(&self.schema),
        };
        let weight = self.plain.weight(scoring)?;
        Ok(self.plain_weight.get_or_init(|| weight).as_ref())
    }
}

impl Weight for DisjunctionWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        self.plain()?.scorer(reader, boost)
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.plain()?.explain(reader, doc)
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        self.plain()?.count(reader)
    }

    fn for_each_pruning(
        &self,
        threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        // Unscored there is nothing to prune by: tantivy's own walk.
        let Some(terms) = &self.clauses else {
            return self.plain()?.for_each_pruning(threshold, reader, callback);
        };
        let mut clauses: Vec<(TermPostings, Score)> = Vec::with_capacity(terms.len());
        for (term, weight, bound) in terms {
            if let Some(postings) = TermPostings::new(reader, term, weight)? {
                clauses.push((postings, *bound));
            }
        }
        let passing = if self.filters.is_empty() {
            None
        } else {
            Some(self.passing.get(reader, &self.filters)?)
        };
        max_score(
            &mut clauses,
            passing.as_deref(),
            self.window,
            threshold,
            callback,
        );
        Ok(())
    }
}

/// A term's postings in one segment, scored as tantivy's `TermScorer` (private to tantivy)
/// scores them: the term's BM25 weight of its frequency and its document's field norm. A
/// concrete type, so that the walk over the essential clauses' postings — most of a search's
/// time — calls it directly instead of through a `Box<dyn Scorer>`, three indirect calls a
/// posting.
struct TermPostings {
    postings: SegmentPostings,
    norms: FieldNormReader,
    weight: Bm25Weight,
}

impl TermPostings {
    /// `term`'s postings in `reader` (`None` when it has none), with their frequencies.
    fn new(
        reader: &SegmentReader,
        term: &Term,
        weight: &Bm25Weight,
    ) -> tantivy::Result<Option<Self>> {
        let field = term.field();
        let Some(postings) = reader
            .inverted_index(field)?
            .read_postings(term, IndexRecordOption::WithFreqs)?
        else {
            return Ok(None);
        };
        if postings.doc() == TERMINATED {
            return Ok(None);
        }
        // A field indexed without norms counts as one token everywhere, as in tantivy.
        let norms = match reader.fieldnorms_readers().get_field(field)? {
            Some(norms) => norms,
            None => FieldNormReader::constant(reader.max_doc(), 1),
        };
        Ok(Some(Self {
            postings,
            norms,
            weight: weight.clone(),
        }))
    }
}

impl DocSet for TermPostings {
    #[inline]
    fn advance(&mut self) -> DocId {
        self.postings.advance()
    }

    #[inline]
    fn seek(&mut self, target: DocId) -> DocId {
        self.postings.seek(target)
    }

    #[inline]
    fn doc(&self) -> DocId {
        self.postings.doc()
    }

    fn size_hint(&self) -> u32 {
        self.postings.size_hint()
    }
}

impl Scorer for TermPostings {
    #[inline]
    fn score(&mut self) -> Score {
        let norm = self.norms.fieldnorm_id(self.postings.doc());
        self.weight.score(norm, self.postings.term_freq())
    }
}

/// The documents of a segment that pass a query's filters, one bit each, kept between
/// searches: the filters are few (granted collections, a language) and their postings long,
/// so looking a candidate up in them cost a fifth of a search at 100k articles; a bit costs
/// nothing. Keyed by segment (its contents never change; deletions are checked apart) and
/// filters; at most [`MAX_FILTER_SETS`] are kept (a language comes from the ticket), each
/// one bit per document of its segment.
#[derive(Debug, Default)]
pub(super) struct FilterSets {
    sets: Mutex<HashMap<FilterKey, Arc<DocBits>>>,
}

/// A segment and the filters its set passes.
type FilterKey = (SegmentId, Vec<Filter>);

/// Filter sets kept at most (then all are dropped and built again as searches need them).
const MAX_FILTER_SETS: usize = 256;

impl FilterSets {
    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<FilterKey, Arc<DocBits>>> {
        // A panic elsewhere while it was held leaves whole entries: still good.
        self.sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The documents of `reader` that pass every one of `filters`.
    fn get(&self, reader: &SegmentReader, filters: &[Filter]) -> tantivy::Result<Arc<DocBits>> {
        let key = (reader.segment_id(), filters.to_vec());
        if let Some(set) = self.kept().get(&key) {
            return Ok(set.clone());
        }
        let set = Arc::new(DocBits::passing(reader, filters)?);
        let mut sets = self.kept();
        if sets.len() >= MAX_FILTER_SETS {
            sets.clear();
        }
        sets.insert(key, set.clone());
        Ok(set)
    }
}

/// One bit per document of a segment.
struct DocBits(Vec<u64>);

impl std::fmt::Debug for DocBits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let passing: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        write!(f, "DocBits({passing} of {})", self.0.len() * 64)
    }
}

impl DocBits {
    /// The documents of `reader` holding at least one term of each of `filters`.
    fn passing(reader: &SegmentReader, filters: &[Filter]) -> tantivy::Result<Self> {
        let words = (reader.max_doc() as usize).div_ceil(64);
        let mut all = vec![u64::MAX; words];
        let mut any = vec![0u64; words];
        for filter in filters {
            any.fill(0);
            for term in filter {
                let Some(mut postings) = reader
                    .inverted_index(term.field())?
                    .read_postings(term, IndexRecordOption::Basic)?
                else {
                    continue;
                };
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    if let Some(word) = any.get_mut(doc as usize / 64) {
                        *word |= 1 << (doc % 64);
                    }
                    doc = postings.advance();
                }
            }
            for (a, b) in all.iter_mut().zip(&any) {
                *a &= b;
            }
        }
        Ok(Self(all))
    }

    #[inline]
    fn contains(&self, doc: DocId) -> bool {
        self.0
            .get(doc as usize / 64)
            .is_some_and(|w| w >> (doc % 64) & 1 == 1)
    }

    /// The first document at or after `from` that is in the set, [`TERMINATED`] if none.
    fn next(&self, from: DocId) -> DocId {
        let mut i = from as usize / 64;
        let Some(&first) = self.0.get(i) else {
            return TERMINATED;
        };
        let mut word = first & (u64::MAX << (from % 64));
        loop {
            if word != 0 {
                return (i * 64) as DocId + word.trailing_zeros();
            }
            i += 1;
            match self.0.get(i) {
                Some(&w) => word = w,
                None => return TERMINATED,
            }
        }
    }
}

/// The best `limit` articles for `query`, each as its best-scoring document (articles are
/// told apart by the u64 fast field `article`), best first (ties: the earlier document).
/// The threshold handed to the query's pruning walk is the `limit`-th best article's score,
/// carried from segment to segment, so a walk skips what cannot change the result.
pub(super) fn top_articles(
    searcher: &Searcher,
    query: &dyn Query,
    article: &str,
    limit: usize,
) -> tantivy::Result<Vec<(Score, DocAddress)>> {
    let weight = query.weight(EnableScoring::enabled_from_searcher(searcher))?;
    // (score, document, article), at most `limit`, unordered.
    let mut best: Vec<(Score, DocAddress, u64)> = Vec::with_capacity(limit.min(64) + 1);
    let mut threshold = Score::MIN;
    for (ord, reader) in (0u32..).zip(searcher.segment_readers()) {
        let articles = reader.fast_fields().u64(article)?;
        let alive = reader.alive_bitset();
        weight.for_each_pruning(threshold, reader, &mut |doc, score| {
            if alive.is_some_and(|a| a.is_deleted(doc)) {
                return threshold;
            }
            let Some(id) = articles.first(doc) else {
                return threshold;
            };
            let address = DocAddress::new(ord, doc);
            match best.iter_mut().find(|(_, _, a)| *a == id) {
                Some(seen) if score > seen.0 => *seen = (score, address, id),
                Some(_) => {}
                None => {
                    best.push((score, address, id));
                    if best.len() > limit
                        && let Some(worst) = (0..best.len()).min_by(|&i, &j| {
                            best[i]
                                .0
                                .total_cmp(&best[j].0)
                                .then(best[j].1.cmp(&best[i].1))
                        })
                    {
                        best.swap_remove(worst);
                    }
                }
            }
            if best.len() == limit {
                threshold = best.iter().map(|b| b.0).fold(Score::MAX, Score::min);
            }
            threshold
        })?;
    }
    best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(best.into_iter().map(|(s, d, _)| (s, d)).collect())
}

/// Documents are gathered this many at a time: the essential clauses' postings in the window
/// are summed into an array, then its documents are checked in order.
const WINDOW: usize = 4096;

/// Calls `callback` with every document in `passing` (every one when `None`) whose summed clause score exceeds
/// the threshold (initially `threshold`, then what `callback` returns), in increasing order,
/// skipping documents that cannot exceed it.
fn max_score(
    clauses: &mut [(TermPostings, Score)],
    passing: Option<&DocBits>,
    window: usize,
    mut threshold: Score,
    callback: &mut dyn FnMut(DocId, Score) -> Score,
) {
    clauses.sort_by(|a, b| a.1.total_cmp(&b.1));
    // below[i]: the sum of the bounds of clauses[..i].
    let mut below = Vec::with_capacity(clauses.len() + 1);
    below.push(0.0);
    for (_, bound) in clauses.iter() {
        below.push(below.last().copied().unwrap_or(0.0) + bound);
    }
    // clauses[..essential] cannot lift a document above the threshold on their own.
    let non_essential = |threshold: Score| below.iter().rposition(|&b| b <= threshold).unwrap_or(0);
    let mut essential = non_essential(threshold);
    let window = window.max(64) / 64 * 64;
    let mut scores = vec![0.0 as Score; window];
    let mut seen = vec![0u64; window / 64];
    // While every clause is essential (no threshold yet) a window costs every clause's
    // postings in it; a small first window sets a threshold sooner. Windows then double.
    let mut span = if essential == 0 {
        (window / 32).max(64)
    } else {
        window
    };
    'windows: while essential < clauses.len() {
        // The window starts at the first document an essential clause and every filter hold.
        let first = |clauses: &[(TermPostings, Score)]| {
            clauses
                .iter()
                .map(|(s, _)| s.doc())
                .min()
                .unwrap_or(TERMINATED)
        };
        let mut start = first(&clauses[essential..]);
        loop {
            if start == TERMINATED {
                break 'windows;
            }
            let next = passing.map_or(start, |p| p.next(start));
            if next == start {
                break;
            }
            if next == TERMINATED {
                break 'windows;
            }
            for (scorer, _) in &mut clauses[essential..] {
                if scorer.doc() < next {
                    scorer.seek(next);
                }
            }
            start = first(&clauses[essential..]);
        }
        let end = start.saturating_add(span as DocId);
        span = (span * 2).min(window);
        for (scorer, _) in &mut clauses[essential..] {
            let mut doc = scorer.doc();
            while doc < end {
                let i = (doc - start) as usize;
                scores[i] += scorer.score();
                seen[i / 64] |= 1 << (i % 64);
                doc = scorer.advance();
            }
        }
        for (word, bits) in seen.iter_mut().enumerate() {
            let mut bits = std::mem::take(bits);
            while bits != 0 {
                let i = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let mut score = std::mem::take(&mut scores[i]);
                let doc = start + i as DocId;
                // What the non-essential clauses could add at most does not lift it: neither
                // the filters nor they need be looked up.
                if score + below[essential] <= threshold {
                    continue;
                }
                if passing.is_some_and(|p| !p.contains(doc)) {
                    continue;
                }
                // Non-essential clauses, largest bound first, while they can still matter.
                for j in (0..essential).rev() {
                    if score + below[j + 1] <= threshold {
                        break;
                    }
                    let scorer = &mut clauses[j].0;
                    if scorer.doc() < doc {
                        scorer.seek(doc);
                    }
                    if scorer.doc() == doc {
                        score += scorer.score();
                    }
                }
                if score > threshold {
                    threshold = callback(doc, score);
                }
            }
        }
        essential = essential.max(non_essential(threshold));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;
    use std::collections::HashMap;
    use tantivy::query::Bm25StatisticsProvider;
    use tantivy::schema::{FAST, INDEXED, STRING, Schema, TEXT};
    use tantivy::{Index, doc};

    /// Every article's best score under `query`, scoring every document (no pruning).
    fn brute_force(searcher: &Searcher, query: &dyn Query, limit: usize) -> Vec<(Score, u64)> {
        let weight = query
            .weight(EnableScoring::enabled_from_searcher(searcher))
            .unwrap();
        let mut best: HashMap<u64, (Score, DocAddress)> = HashMap::new();
        for (ord, reader) in (0u32..).zip(searcher.segment_readers()) {
            let articles = reader.fast_fields().u64("article").unwrap();
            let mut scorer = weight.scorer(reader, 1.0).unwrap();
            let mut doc = scorer.doc();
            while doc != TERMINATED {
                let alive = reader.alive_bitset().is_none_or(|a| a.is_alive(doc));
                if let (true, Some(a)) = (alive, articles.first(doc)) {
                    let here = (scorer.score(), DocAddress::new(ord, doc));
                    let entry = best.entry(a).or_insert(here);
                    if here.0 > entry.0 {
                        *entry = here;
                    }
                }
                doc = scorer.advance();
            }
        }
        let mut all: Vec<(Score, DocAddress, u64)> =
            best.into_iter().map(|(a, (s, d))| (s, d, a)).collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter()
            .take(limit)
            .map(|(s, _, a)| (s, a))
            .collect()
    }

    /// The pruned walk finds the articles (and scores) that scoring every document finds, on
    /// seeded synthetic text (a Zipf-like vocabulary: common words in nearly every passage),
    /// with no filter, a filter most documents pass and one few pass, several segments,
    /// deleted documents, and several limits.
    #[test]
    fn finds_the_best_articles_scoring_every_document_finds() {
        let mut b = Schema::builder();
        let title = b.add_text_field("title", TEXT);
        let body = b.add_text_field("body", TEXT);
        let lang = b.add_text_field("lang", STRING);
        let article = b.add_u64_field("article", FAST | INDEXED);
        let index = Index::create_in_ram(b.build());
        let mut writer: tantivy::IndexWriter =
            index.writer_with_num_threads(1, 15_000_000).unwrap();
        // Three passages per article, a fifth of the articles in German.
        for (i, a) in (0u64..).zip(synth::articles(11, 1200)) {
            let language = if i % 5 == 0 { "de" } else { "en" };
            for paragraph in a.body.split("\n\n").take(3) {
                writer
                    .add_document(
                        doc!(title => a.title.clone(), body => paragraph.to_string(),
                        lang => language, article => i),
                    )
                    .unwrap();
            }
            if i == 500 {
                writer.commit().unwrap(); // a second segment
            }
        }
        for deleted in [3, 700] {
            writer.delete_term(Term::from_field_u64(article, deleted));
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        assert!(searcher.segment_readers().len() >= 2);
        let total = searcher.total_num_docs().unwrap();
        assert!(searcher.num_docs() < total, "no document was deleted");
        let bounds = super::super::bounds::TermBounds::compute(&searcher, &[title, body]).unwrap();
        let (mut compared, mut tightened) = (0, 0);
        // One store of filter sets for every query: later ones find theirs kept.
        let passing = Arc::new(FilterSets::default());
        for (q, query) in synth::queries(12, 45).iter().enumerate() {
            // Half the queries bounded by the formula's limit, half by each term's factor.
            let tight = q % 2 == 1;
            let mut clauses = Vec::new();
            for (w, word) in query.trim_end_matches('.').split(' ').enumerate() {
                for field in [title, body] {
                    let term = Term::from_field_text(field, word);
                    let df = searcher.doc_freq(&term).unwrap();
                    if df > 0 {
                        let factor = if tight { bounds.factor(&term) } else { None };
                        assert!(!tight || factor.is_some(), "{word}: no bound");
                        tightened += usize::from(factor.is_some_and(|f| f < 0.8));
                        let boost = 1.0 + (w % 3) as f32 * 0.5;
                        clauses.push(Clause::term(term, boost, df, total, factor));
                    }
                }
            }
            let only = |l: &str| -> Vec<Filter> { vec![vec![Term::from_field_text(lang, l)]] };
            let either = || {
                vec![
                    Term::from_field_text(lang, "de"),
                    Term::from_field_text(lang, "en"),
                ]
            };
            let filters = match q % 5 {
                0 => vec![],
                1 => only("en"),
                2 => only("de"),
                // One filter of two terms (either passes), and two filters (both must).
                3 => vec![either()],
                _ => [only("de"), vec![either()]].concat(),
            };
            let mut pruned = Disjunction::new(clauses, filters, passing.clone());
            let plain = pruned.plain();
            for (limit, window) in [(1, 64), (5, 64), (5, WINDOW), (20, 128)] {
                pruned.window = window;
                let found = top_articles(&searcher, &pruned, "article", limit).unwrap();
                let expected = brute_force(&searcher, &plain, limit);
                // Scoring every document through the pruned query's own scorer: the same.
                assert_eq!(brute_force(&searcher, &pruned, limit), expected);
                assert_eq!(found.len(), expected.len(), "query {q} limit {limit}");
                for ((score, address), (expected_score, expected_article)) in
                    found.iter().zip(&expected)
                {
                    let close = |a: Score, b: Score| (a - b).abs() <= 1e-4 * b.abs();
                    assert!(
                        close(*score, *expected_score),
                        "query {q}: {score} vs {expected_score}"
                    );
                    let reader = searcher.segment_reader(address.segment_ord);
                    let got = reader
                        .fast_fields()
                        .u64("article")
                        .unwrap()
                        .first(address.doc_id);
                    // Articles tied on score (up to summation order) may trade places.
                    assert!(
                        got == Some(*expected_article)
                            || expected
                                .iter()
                                .any(|(s, a)| close(*s, *score) && Some(*a) == got),
                        "query {q} limit {limit}: article {got:?}, expected {expected_article}"
                    );
                }
                compared += found.len();
            }
        }
        assert!(compared > 800, "compared {compared} articles");
        assert!(
            tightened > 100,
            "only {tightened} clauses had a tighter bound"
        );
    }

    /// A filter set's lookups at word edges and past its end.
    #[test]
    fn a_filter_set_finds_its_next_document() {
        let docs = [0u32, 63, 64, 130, 199];
        let mut words = vec![0u64; 200usize.div_ceil(64)];
        for d in docs {
            words[d as usize / 64] |= 1 << (d % 64);
        }
        let set = DocBits(words);
        for d in 0..260 {
            assert_eq!(set.contains(d), docs.contains(&d), "{d}");
            let next = docs.iter().copied().find(|&x| x >= d).unwrap_or(TERMINATED);
            assert_eq!(set.next(d), next, "from {d}");
        }
        assert_eq!(set.next(TERMINATED), TERMINATED);
        assert_eq!(DocBits(Vec::new()).next(0), TERMINATED);
    }
}
