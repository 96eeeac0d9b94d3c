//! Hashed word and character n-gram features.
//!
//! Word unigrams and bigrams, plus character n-grams taken inside each word padded with
//! spaces (`char_wb` in scikit-learn terms). Every feature is hashed into `2^buckets_log2`
//! buckets with a fixed hash, so the same text gives the same buckets on every platform.

use crate::text::token_ranges;
use std::ops::Range;

/// How text becomes features. Stored in the model so training and inference agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureSpec {
    /// Number of hash buckets is `2^buckets_log2` (10..=24).
    pub buckets_log2: u32,
    /// Longest word n-gram (0 = no word features, 1 = unigrams, 2 = + bigrams).
    pub word_ngram_max: u32,
    /// Shortest character n-gram (when `char_ngram_max > 0`).
    pub char_ngram_min: u32,
    /// Longest character n-gram (0 = no character features).
    pub char_ngram_max: u32,
    /// Tokens read from the text at most; longer texts are cut (bounds the work per ticket).
    pub max_tokens: u32,
    /// Character n-grams over the whole lowercased text, spaces and punctuation included
    /// (scikit-learn's `char`), instead of inside each word (`char_wb`).
    pub char_over_text: bool,
    /// Term frequency as `1 + ln(tf)` (true) or raw counts (false, scikit-learn's default).
    pub sublinear_tf: bool,
}

impl Default for FeatureSpec {
    fn default() -> Self {
        Self {
            buckets_log2: 18,
            word_ngram_max: 2,
            char_ngram_min: 2,
            char_ngram_max: 5,
            max_tokens: 1024,
            char_over_text: false,
            sublinear_tf: false,
        }
    }
}

/// Which family a feature belongs to; each family is L2-normalised on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Block {
    /// Word n-grams.
    Word = 0,
    /// Character n-grams.
    Char = 1,
}

/// The first place a feature was seen, to explain a prediction in the text's own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub bucket: u32,
    pub block: Block,
    /// Index of the first token.
    pub token: u32,
    /// Number of tokens the feature spans (2 for bigrams).
    pub tokens: u32,
}

/// Reusable buffers for feature extraction: keep one per thread and nothing is allocated
/// per call once it has warmed up.
#[derive(Default, Debug)]
pub struct Scratch {
    lowered: Vec<char>,
    /// For whole-text character n-grams: the token each normalised character belongs to.
    char_token: Vec<u32>,
    pub(crate) token_spans: Vec<Range<usize>>,
    token_hashes: Vec<u64>,
    pub(crate) word: Vec<u32>,
    pub(crate) chars: Vec<u32>,
    pub(crate) origins: Vec<Origin>,
    /// Vectorised input.
    pub(crate) x: Vec<Feature>,
    /// Ranges asked of a [`crate::model::RangeReader`]: offsets, and the length of each.
    pub(crate) offsets: Vec<u64>,
    pub(crate) lengths: Vec<u32>,
    /// Rows read through a [`crate::model::RangeReader`]: per row its (idf, scale) and then
    /// its weights, in the order of `x`.
    pub(crate) rows: Vec<u8>,
}

/// One feature of a vectorised text, with where its model row is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Feature {
    pub bucket: u32,
    pub block: Block,
    /// Term frequency, then (once the row is found) the normalised TF-IDF value.
    pub value: f32,
    /// The row's (idf, scale) pair: offset into the bytes it was read from (the model's, or
    /// `Scratch::rows`).
    pub meta: usize,
    /// Its weights, likewise.
    pub weights: usize,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const NS_WORD: u64 = 0x77;
const NS_BIGRAM: u64 = 0x6267_7261_6d00;
const NS_CHAR: u64 = 0x63;

fn fnv_char(h: u64, c: char) -> u64 {
    (h ^ u64::from(u32::from(c))).wrapping_mul(FNV_PRIME)
}

/// murmur3's 64-bit finaliser: spreads FNV's low-entropy low bits before masking.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Fills `scratch.word` and `scratch.chars` with the buckets of `text`'s features (with
/// repeats, in text order) and, when `explain` is set, `scratch.origins`.
pub fn extract(text: &str, spec: &FeatureSpec, scratch: &mut Scratch, explain: bool) {
    let mask = (1u64 << spec.buckets_log2.clamp(1, 30)) - 1;
    let bucket = |h: u64| (mix(h) & mask) as u32;
    scratch.word.clear();
    scratch.chars.clear();
    scratch.origins.clear();
    scratch.token_spans.clear();
    scratch.token_hashes.clear();
    // Room for a typical text's features up front (a word has about as many character
    // n-grams as letters, four lengths each), so the buffers do not grow by doubling, each
    // step a copy, on every fresh instance. A reused scratch keeps its capacity anyway.
    let chars = text.len().min(spec.max_tokens as usize * 8);
    let tokens = chars / 4 + 1;
    scratch.token_spans.reserve(tokens);
    scratch.token_hashes.reserve(tokens);
    scratch.word.reserve(2 * tokens);
    if spec.char_ngram_max > 0 {
        scratch.chars.reserve(4 * chars);
    }
    if explain {
        scratch.origins.reserve(2 * tokens + 4 * chars);
    }

    let mut previous_word: Option<(u64, u32)> = None;
    for (index, range) in token_ranges(text)
        .take(spec.max_tokens as usize)
        .enumerate()
    {
        let index = index as u32;
        scratch.lowered.clear();
        for c in text[range.clone()].chars() {
            scratch.lowered.extend(c.to_lowercase());
        }
        scratch.token_spans.push(range);
        let lowered = &scratch.lowered;

        let mut h = FNV_OFFSET ^ NS_WORD;
        for &c in lowered {
            h = fnv_char(h, c);
        }
        scratch.token_hashes.push(h);

        // Word features skip one-character tokens, as scikit-learn's default pattern does.
        if spec.word_ngram_max >= 1 && lowered.len() >= 2 {
            let b = bucket(h);
            scratch.word.push(b);
            if explain {
                scratch.origins.push(Origin {
                    bucket: b,
                    block: Block::Word,
                    token: index,
                    tokens: 1,
                });
            }
            if spec.word_ngram_max >= 2
                && let Some((prev, prev_index)) = previous_word
            {
                let b = bucket(prev.rotate_left(23) ^ h ^ NS_BIGRAM);
                scratch.word.push(b);
                if explain {
                    scratch.origins.push(Origin {
                        bucket: b,
                        block: Block::Word,
                        token: prev_index,
                        tokens: index - prev_index + 1,
                    });
                }
            }
            previous_word = Some((h, index));
        }

        if spec.char_ngram_max > 0 && !spec.char_over_text {
            let min = spec.char_ngram_min.max(1) as usize;
            let max = spec.char_ngram_max as usize;
            // " word " padded, walked without building the padded string.
            let padded_len = lowered.len() + 2;
            let at = |i: usize| -> char {
                if i == 0 || i == padded_len - 1 {
                    ' '
                } else {
                    lowered[i - 1]
                }
            };
            for start in 0..padded_len {
                let mut h = FNV_OFFSET ^ NS_CHAR;
                for n in 1..=max {
                    if start + n > padded_len {
                        break;
                    }
                    h = fnv_char(h, at(start + n - 1));
                    if n >= min {
                        let b = bucket(h);
                        scratch.chars.push(b);
                        if explain {
                            scratch.origins.push(Origin {
                                bucket: b,
                                block: Block::Char,
                                token: index,
                                tokens: 1,
                            });
                        }
                    }
                }
            }
        }
    }
    if spec.char_ngram_max > 0 && spec.char_over_text {
        text_char_ngrams(text, spec, scratch, explain, &bucket);
    }
}

/// Character n-grams over the lowercased text with runs of white space folded to one space.
fn text_char_ngrams(
    text: &str,
    spec: &FeatureSpec,
    scratch: &mut Scratch,
    explain: bool,
    bucket: &dyn Fn(u64) -> u32,
) {
    let limit = spec.max_tokens as usize * 12;
    scratch.lowered.clear();
    scratch.char_token.clear();
    let mut token = 0usize;
    let mut pending_space = false;
    for (byte, c) in text.char_indices() {
        if scratch.lowered.len() >= limit {
            break;
        }
        while token + 1 < scratch.token_spans.len() && scratch.token_spans[token].end <= byte {
            token += 1;
        }
        if c.is_whitespace() {
            pending_space = !scratch.lowered.is_empty();
            continue;
        }
        if pending_space {
            scratch.lowered.push(' ');
            scratch.char_token.push(token as u32);
            pending_space = false;
        }
        for l in c.to_lowercase() {
            scratch.lowered.push(l);
            scratch.char_token.push(token as u32);
        }
    }
    let min = spec.char_ngram_min.max(1) as usize;
    let max = spec.char_ngram_max as usize;
    let len = scratch.lowered.len();
    for start in 0..len {
        let mut h = FNV_OFFSET ^ NS_CHAR;
        for n in 1..=max.min(len - start) {
            h = fnv_char(h, scratch.lowered[start + n - 1]);
            if n >= min {
                let b = bucket(h);
                scratch.chars.push(b);
                if explain && !scratch.token_spans.is_empty() {
                    scratch.origins.push(Origin {
                        bucket: b,
                        block: Block::Char,
                        token: scratch.char_token[start],
                        tokens: 1,
                    });
                }
            }
        }
    }
}

/// Sorts `buckets` and calls `f(bucket, count)` for each distinct bucket in ascending order.
pub(crate) fn for_each_count(buckets: &mut [u32], mut f: impl FnMut(u32, u32)) {
    buckets.sort_unstable();
    let mut i = 0;
    while i < buckets.len() {
        let b = buckets[i];
        let mut j = i + 1;
        while j < buckets.len() && buckets[j] == b {
            j += 1;
        }
        f(b, (j - i) as u32);
        i = j;
    }
}

/// The term-frequency factor of a feature seen `count` times: `1 + ln(count)` (with
/// [`crate::detmath`]) when `sublinear`, else `count`.
pub(crate) fn tf(count: u32, sublinear: bool) -> f32 {
    if sublinear {
        match SUBLINEAR_TF.get(count as usize) {
            Some(&tf) => tf,
            None => sublinear_tf(count),
        }
    } else {
        count as f32
    }
}

const fn sublinear_tf(count: u32) -> f32 {
    let count = if count == 0 { 1 } else { count };
    (1.0 + crate::detmath::ln(count as f64)) as f32
}

/// [`sublinear_tf`] of the counts nearly every feature has, computed at compile time by the
/// same function (so the same bits): a `ln` per feature was a tenth of a ticket's triage.
const SUBLINEAR_TF: [f32; 64] = {
    let mut out = [0.0; 64];
    let mut count = 0;
    while count < 64 {
        out[count] = sublinear_tf(count as u32);
        count += 1;
    }
    out
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precomputed_term_frequencies_are_the_computed_ones() {
        for count in 0..200u32 {
            let want = (1.0 + crate::detmath::ln(f64::from(count.max(1)))) as f32;
            assert_eq!(tf(count, true).to_bits(), want.to_bits(), "{count}");
            assert_eq!(tf(count, false), count as f32);
        }
    }

    #[test]
    fn same_text_same_buckets_and_case_insensitive() {
        let spec = FeatureSpec::default();
        let mut a = Scratch::default();
        let mut b = Scratch::default();
        extract("Refund my ORDER", &spec, &mut a, false);
        extract("refund my order", &spec, &mut b, false);
        assert_eq!(a.word, b.word);
        assert_eq!(a.chars, b.chars);
        // 3 unigrams + 2 bigrams
        assert_eq!(a.word.len(), 5);
        // " refund " has 8 chars: n-grams of 2..=5 = 7 + 6 + 5 + 4
        let refund = 7 + 6 + 5 + 4;
        // " my " = 4 chars: 3 + 2 + 1 + 0
        let my = 3 + 2 + 1;
        // " order " = 7 chars: 6 + 5 + 4 + 3
        let order = 6 + 5 + 4 + 3;
        assert_eq!(a.chars.len(), refund + my + order);
    }

    #[test]
    fn text_char_ngrams_cross_words_and_keep_punctuation() {
        let spec = FeatureSpec {
            char_over_text: true,
            word_ngram_max: 0,
            char_ngram_min: 2,
            char_ngram_max: 2,
            ..FeatureSpec::default()
        };
        let mut s = Scratch::default();
        extract("Hi  :)", &spec, &mut s, true);
        // "hi :)" has 5 characters: 4 bigrams ("hi", "i ", " :", ":)")
        assert_eq!(s.chars.len(), 4);
        let mut upper = Scratch::default();
        extract("HI :)", &spec, &mut upper, false);
        assert_eq!(
            s.chars, upper.chars,
            "case and white space runs do not matter"
        );
    }

    #[test]
    fn max_tokens_bounds_the_work() {
        let spec = FeatureSpec {
            max_tokens: 2,
            char_ngram_max: 0,
            ..FeatureSpec::default()
        };
        let mut s = Scratch::default();
        extract("one two three four", &spec, &mut s, false);
        assert_eq!(s.word.len(), 3, "two unigrams and one bigram");
    }

    #[test]
    fn counts_are_grouped() {
        let mut v = vec![5, 1, 5, 3, 1, 5];
        let mut seen = Vec::new();
        for_each_count(&mut v, |b, c| seen.push((b, c)));
        assert_eq!(seen, vec![(1, 2), (3, 1), (5, 3)]);
    }
}
