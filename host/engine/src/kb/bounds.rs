//! Each indexed term's highest BM25 term-frequency factor, so that a search can bound what a
//! term adds to a passage's score by what it actually adds somewhere, not by the formula's
//! limit.
//!
//! BM25 scores a term in a document `weight * tf / (tf + norm(length))`, `weight = idf *
//! (1 + k1) * boost`. The factor `tf / (tf + norm)` tends to 1 only as `tf` grows without
//! limit; a passage holding a word once, at an average length, gets `1 / (1 + k1) ≈ 0.45`.
//! [`maxscore`](super::maxscore) prunes with bounds, and a bound twice what a term can
//! score keeps it "essential" — its postings walked — long after it could not matter.
//!
//! The factor depends on the average field length of the whole index (every segment), which
//! is fixed once the index is built: it is never updated in place, only rebuilt. So it is
//! computed once at build time from every posting (`tf` and length of every passage holding
//! the term), written beside the index with the statistics it was computed from, and
//! trusted only while the searcher's statistics are still those. A file that is missing,
//! damaged or stale yields no factors, and the search falls back to the formula's limit:
//! slower, never wrong.

use std::path::Path;
use tantivy::query::{Bm25StatisticsProvider, Bm25Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{Score, Searcher, Term};

/// File name beside the index.
pub(super) const FILE: &str = "deskhost-term-bounds";
const MAGIC: &[u8; 8] = b"dhkbtb1\n";

/// Term factors of some fields, as one byte buffer (the file's bytes): lookups binary-search
/// it in place, so loading costs a read, not a parse per term.
///
/// Layout (little-endian): magic; total documents `u64`; field count `u32`, then per field
/// its id `u32` and total tokens `u64`; term count `n` `u32`; `n + 1` key offsets `u32`
/// (into the key bytes, increasing); `n` factors `f32`; the key bytes. A key is the field id
/// (`u32`, big-endian) followed by the term's value bytes, keys in increasing byte order.
pub(super) struct TermBounds {
    bytes: Vec<u8>,
    n: usize,
    offsets_at: usize,
    factors_at: usize,
    keys_at: usize,
}

impl std::fmt::Debug for TermBounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TermBounds")
            .field("terms", &self.n)
            .finish()
    }
}

/// The statistics BM25 weights are computed from: total documents, each field's tokens.
fn statistics(searcher: &Searcher, fields: &[Field]) -> tantivy::Result<(u64, Vec<(u32, u64)>)> {
    let docs = searcher.total_num_docs()?;
    let tokens = fields
        .iter()
        .map(|f| Ok((f.field_id(), searcher.total_num_tokens(*f)?)))
        .collect::<tantivy::Result<Vec<_>>>()?;
    Ok((docs, tokens))
}

fn key(field: Field, value: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + value.len());
    k.extend_from_slice(&field.field_id().to_be_bytes());
    k.extend_from_slice(value);
    k
}

impl TermBounds {
    /// Every term of `fields` in `searcher`, with its highest factor over every posting of
    /// every segment (deleted documents included: that only raises a bound).
    pub(super) fn compute(searcher: &Searcher, fields: &[Field]) -> tantivy::Result<Self> {
        let (docs, tokens) = statistics(searcher, fields)?;
        let mut factors: std::collections::BTreeMap<Vec<u8>, Score> = Default::default();
        for (&field, &(_, field_tokens)) in fields.iter().zip(&tokens) {
            // tantivy's own average, as `Bm25Weight::for_terms` computes it. Any idf will do:
            // the factor is a score over the weight's maximum (its weight, to within f32
            // precision).
            let average = field_tokens as Score / docs.max(1) as Score;
            let weight = Bm25Weight::for_one_term_without_explain(1, 2, average);
            let unit = weight.max_score();
            for reader in searcher.segment_readers() {
                let inverted = reader.inverted_index(field)?;
                let norms = reader.get_fieldnorms_reader(field)?;
                let mut terms = inverted.terms().stream()?;
                while terms.advance() {
                    let mut postings = inverted.read_block_postings_from_terminfo(
                        terms.value(),
                        IndexRecordOption::WithFreqs,
                    )?;
                    let mut best: Score = 0.0;
                    loop {
                        let docs = postings.docs();
                        if docs.is_empty() {
                            break;
                        }
                        for (&doc, &tf) in docs.iter().zip(postings.freqs()) {
                            best = best.max(weight.score(norms.fieldnorm_id(doc), tf));
                        }
                        postings.advance();
                    }
                    let factor = (best / unit).min(1.0);
                    let entry = factors.entry(key(field, terms.key())).or_insert(0.0);
                    *entry = entry.max(factor);
                }
            }
        }
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&docs.to_le_bytes());
        bytes.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
        for (field, count) in &tokens {
            bytes.extend_from_slice(&field.to_le_bytes());
            bytes.extend_from_slice(&count.to_le_bytes());
        }
        bytes.extend_from_slice(&(factors.len() as u32).to_le_bytes());
        let mut at = 0u32;
        bytes.extend_from_slice(&at.to_le_bytes());
        for k in factors.keys() {
            at = at.saturating_add(k.len() as u32);
            bytes.extend_from_slice(&at.to_le_bytes());
        }
        for f in factors.values() {
            bytes.extend_from_slice(&f.to_le_bytes());
        }
        for k in factors.keys() {
            bytes.extend_from_slice(k);
        }
        Self::parse(bytes).ok_or_else(|| {
            tantivy::TantivyError::InternalError("term bounds exceed 4 GiB".to_string())
        })
    }

    /// The bounds in `dir` when they were computed from `searcher`'s statistics for
    /// exactly `fields`; `None` when missing, damaged or stale.
    pub(super) fn read(dir: &Path, searcher: &Searcher, fields: &[Field]) -> Option<Self> {
        let bounds = Self::parse(std::fs::read(dir.join(FILE)).ok()?)?;
        let (docs, tokens) = statistics(searcher, fields).ok()?;
        (bounds.statistics()? == (docs, tokens)).then_some(bounds)
    }

    pub(super) fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join(FILE), &self.bytes)
    }

    /// What `term` can add at most, as a fraction of its weight (`idf * (1 + k1) * boost`);
    /// `None` for a term not in these bounds.
    pub(super) fn factor(&self, term: &Term) -> Option<Score> {
        let wanted = key(term.field(), term.serialized_value_bytes());
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key_at(mid)?.cmp(&wanted[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.factor_at(mid),
            }
        }
        None
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b = self.bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }

    fn u64_at(&self, at: usize) -> Option<u64> {
        let b = self.bytes.get(at..at.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    fn key_at(&self, i: usize) -> Option<&[u8]> {
        let start = self.u32_at(self.offsets_at + 4 * i)? as usize;
        let end = self.u32_at(self.offsets_at + 4 * (i + 1))? as usize;
        self.bytes
            .get(self.keys_at.checked_add(start)?..self.keys_at.checked_add(end)?)
    }

    fn factor_at(&self, i: usize) -> Option<Score> {
        let factor = f32::from_bits(self.u32_at(self.factors_at + 4 * i)?);
        // A factor is a fraction of the weight; anything else is damage.
        (factor.is_finite() && factor > 0.0 && factor <= 1.0).then_some(factor)
    }

    fn statistics(&self) -> Option<(u64, Vec<(u32, u64)>)> {
        let docs = self.u64_at(8)?;
        let count = self.u32_at(16)? as usize;
        let mut tokens = Vec::with_capacity(count.min(16));
        for i in 0..count {
            let at = 20 + 12 * i;
            tokens.push((self.u32_at(at)?, self.u64_at(at + 4)?));
        }
        Some((docs, tokens))
    }

    /// Checks the layout: magic, sizes, offsets increasing and within the key bytes.
    fn parse(bytes: Vec<u8>) -> Option<Self> {
        if bytes.get(..8)? != MAGIC {
            return None;
        }
        let mut this = Self {
            bytes,
            n: 0,
            offsets_at: 0,
            factors_at: 0,
            keys_at: 0,
        };
        let fields = this.u32_at(16)? as usize;
        let n_at = fields.checked_mul(12)?.checked_add(20)?;
        let n = this.u32_at(n_at)? as usize;
        this.offsets_at = n_at + 4;
        this.factors_at = this
            .offsets_at
            .checked_add(n.checked_add(1)?.checked_mul(4)?)?;
        this.keys_at = this.factors_at.checked_add(n.checked_mul(4)?)?;
        let keys_len = this.bytes.len().checked_sub(this.keys_at)?;
        let mut previous = 0;
        for i in 0..=n {
            let offset = this.u32_at(this.offsets_at + 4 * i)? as usize;
            if offset < previous || offset > keys_len || (i == 0 && offset != 0) {
                return None;
            }
            previous = offset;
        }
        if previous != keys_len {
            return None;
        }
        this.n = n;
        Some(this)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{DocSet, Index, TERMINATED, doc};

    fn synthetic(articles: usize) -> (Index, Field, Field) {
        let mut b = Schema::builder();
        let title = b.add_text_field("title", TEXT);
        let body = b.add_text_field("body", TEXT);
        let index = Index::create_in_ram(b.build());
        let mut writer: tantivy::IndexWriter =
            index.writer_with_num_threads(1, 15_000_000).unwrap();
        for (i, a) in synth::articles(5, articles).into_iter().enumerate() {
            for paragraph in a.body.split("\n\n") {
                writer
                    .add_document(doc!(title => a.title.clone(), body => paragraph.to_string()))
                    .unwrap();
            }
            if i == articles / 2 {
                writer.commit().unwrap(); // a second segment, with its own average length
            }
        }
        writer.commit().unwrap();
        (index, title, body)
    }

    /// No posting of any term, in any segment, scores above its bound (the bound as a search
    /// computes it: the weight's maximum times the factor, with its margin), and most terms'
    /// bounds are well below the formula's limit.
    #[test]
    fn every_posting_scores_within_its_terms_bound() {
        let (index, title, body) = synthetic(400);
        let searcher = index.reader().unwrap().searcher();
        assert!(searcher.segment_readers().len() >= 2);
        let bounds = TermBounds::compute(&searcher, &[title, body]).unwrap();
        let (mut postings, mut below_half) = (0u64, 0);
        for field in [title, body] {
            let weight =
                |term: &Term| Bm25Weight::for_terms(&searcher, std::slice::from_ref(term)).unwrap();
            let mut seen = std::collections::BTreeSet::new();
            for reader in searcher.segment_readers() {
                let inverted = reader.inverted_index(field).unwrap();
                let norms = reader.get_fieldnorms_reader(field).unwrap();
                let mut terms = inverted.terms().stream().unwrap();
                while terms.advance() {
                    let text = std::str::from_utf8(terms.key()).unwrap().to_string();
                    let term = Term::from_field_text(field, &text);
                    let w = weight(&term);
                    let factor = bounds.factor(&term).expect("every term has a bound");
                    let bound = w.max_score() * factor * 1.0001;
                    if seen.insert(text.clone()) && factor < 0.5 {
                        below_half += 1;
                    }
                    let mut p = inverted
                        .read_postings(&term, IndexRecordOption::WithFreqs)
                        .unwrap()
                        .unwrap();
                    let mut doc = p.doc();
                    while doc != TERMINATED {
                        use tantivy::postings::Postings;
                        let score = w.score(norms.fieldnorm_id(doc), p.term_freq());
                        assert!(score <= bound, "{text}: {score} > {bound}");
                        postings += 1;
                        doc = p.advance();
                    }
                }
            }
        }
        assert!(postings > 10_000, "{postings} postings");
        assert!(
            below_half > 100,
            "only {below_half} terms bounded below half the limit"
        );
        let absent = Term::from_field_text(body, "zzzz-not-a-word");
        assert_eq!(bounds.factor(&absent), None);
    }

    /// Written and read back they answer the same; a file that is damaged, truncated or
    /// computed from other statistics is not used.
    #[test]
    fn only_intact_current_bounds_are_read() {
        let (index, title, body) = synthetic(60);
        let searcher = index.reader().unwrap().searcher();
        let bounds = TermBounds::compute(&searcher, &[title, body]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        bounds.write(dir.path()).unwrap();
        let read = TermBounds::read(dir.path(), &searcher, &[title, body]).expect("reads back");
        assert_eq!(read.n, bounds.n);
        for i in 0..bounds.n {
            let key = bounds.key_at(i).unwrap();
            let term = Term::from_field_text(
                Field::from_field_id(u32::from_be_bytes(key[..4].try_into().unwrap())),
                std::str::from_utf8(&key[4..]).unwrap(),
            );
            assert_eq!(read.factor(&term), bounds.factor(&term));
            assert!(bounds.factor(&term).is_some());
        }
        // Other fields: other statistics.
        assert!(TermBounds::read(dir.path(), &searcher, &[body]).is_none());
        // Another index (more documents): stale.
        let (other, other_title, other_body) = synthetic(61);
        let other = other.reader().unwrap().searcher();
        assert!(TermBounds::read(dir.path(), &other, &[other_title, other_body]).is_none());
        // Damage: every truncation, a bad magic, offsets out of order.
        let path = dir.path().join(FILE);
        let good = std::fs::read(&path).unwrap();
        for cut in [0, 7, 8, 19, 40, good.len() / 2, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(
                TermBounds::read(dir.path(), &searcher, &[title, body]).is_none(),
                "{cut}"
            );
        }
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(TermBounds::parse(bad).is_none());
        let mut bad = good.clone();
        let first_offset = bounds.offsets_at + 4;
        bad[first_offset..first_offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(TermBounds::parse(bad).is_none());
        // A factor outside (0, 1] is no bound.
        let mut bad = good;
        bad[bounds.factors_at..bounds.factors_at + 4].copy_from_slice(&2.5f32.to_le_bytes());
        let damaged = TermBounds::parse(bad).unwrap();
        assert_eq!(damaged.factor_at(0), None);
    }
}
