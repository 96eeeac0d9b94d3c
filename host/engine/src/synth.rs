//! Seeded synthetic support data for benchmarks: KB articles, search queries and tickets of
//! any count and length. The same seed gives the same data on every machine (splitmix64),
//! so a figure can be reproduced and compared across commits. Words are pronounceable
//! nonsense drawn with a Zipf-like skew: a few are common, most are rare, as in real text.

use crate::records::{ArticleRecord, TicketInput};

/// A small seeded generator (splitmix64).
#[derive(Clone, Debug)]
pub struct Seeded(u64);

impl Seeded {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Words of the synthetic language: pronounceable, 2-3 syllables.
#[derive(Clone, Debug)]
pub struct Vocabulary(Vec<String>);

impl Vocabulary {
    /// `n` words drawn from `seed` (the same seed, the same words).
    pub fn new(seed: u64, n: usize) -> Self {
        const ONSETS: [&str; 12] = ["b", "c", "d", "f", "g", "l", "m", "p", "r", "s", "t", "v"];
        const VOWELS: [&str; 5] = ["a", "e", "i", "o", "u"];
        let mut rng = Seeded::new(seed);
        Self(
            (0..n.max(1))
                .map(|_| {
                    (0..2 + rng.below(2))
                        .map(|_| format!("{}{}", ONSETS[rng.below(12)], VOWELS[rng.below(5)]))
                        .collect()
                })
                .collect(),
        )
    }

    /// A word, small ranks far more often than large ones (rank ~ n^(u^2)).
    pub fn word(&self, rng: &mut Seeded) -> &str {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (self.0.len() as f64).powf(u * u) as usize;
        self.0
            .get(rank.saturating_sub(1).min(self.0.len() - 1))
            .map_or("", String::as_str)
    }

    /// A sentence of `min` to `min + spread - 1` words, ending in a full stop.
    pub fn sentence(&self, rng: &mut Seeded, min: usize, spread: usize) -> String {
        self.sentence_mixed(rng, min, spread, &Mix::default())
    }

    /// [`Self::sentence`], each word drawn from `mix` instead with its share.
    pub fn sentence_mixed(&self, rng: &mut Seeded, min: usize, spread: usize, mix: &Mix) -> String {
        let len = min + rng.below(spread);
        let words: Vec<&str> = (0..len)
            .map(|_| {
                // No draw without a mix: the plain generator's output stays what it was.
                if !mix.words.is_empty() && rng.below(1_000_000) < mix.per_million {
                    mix.words[rng.below(mix.words.len())].as_str()
                } else {
                    self.word(rng)
                }
            })
            .collect();
        format!("{}.", words.join(" "))
    }
}

/// Real words mixed into synthetic text, so that real queries find something in it.
#[derive(Clone, Debug, Default)]
pub struct Mix {
    words: Vec<String>,
    per_million: usize,
}

impl Mix {
    /// `share` (0..=1) of the words drawn uniformly from `words`' tokens (lowercased runs of
    /// 3+ ASCII letters; repeated ones count as often as they occur).
    pub fn new(words: &str, share: f64) -> Self {
        let words: Vec<String> = words
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| w.len() >= 3)
            .map(str::to_ascii_lowercase)
            .collect();
        Self {
            words,
            per_million: (share.clamp(0.0, 1.0) * 1e6) as usize,
        }
    }
}

/// Words in the vocabulary every generator here draws from.
pub const VOCABULARY_WORDS: usize = 20_000;

/// `n` articles of 3-8 paragraphs each (one in ten in the `internal` collection).
pub fn articles(seed: u64, n: usize) -> Vec<ArticleRecord> {
    articles_mixed(seed, n, &Mix::default())
}

/// [`articles`] with `mix` in their words.
pub fn articles_mixed(seed: u64, n: usize, mix: &Mix) -> Vec<ArticleRecord> {
    let words = Vocabulary::new(seed, VOCABULARY_WORDS);
    let mut rng = Seeded::new(seed ^ 0xa27);
    (0..n)
        .map(|i| {
            let paragraphs: Vec<String> = (0..3 + rng.below(6))
                .map(|_| {
                    (0..2 + rng.below(4))
                        .map(|_| words.sentence_mixed(&mut rng, 8, 12, mix))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            ArticleRecord {
                id: format!("kb-{i:06}"),
                title: words.sentence_mixed(&mut rng, 3, 4, mix),
                body: paragraphs.join("\n\n"),
                language: "en".into(),
                collection: if i % 10 == 0 { "internal" } else { "public" }.into(),
                version: 1,
            }
        })
        .collect()
}

/// `n` search queries of 6-25 words, in the articles' language.
pub fn queries(seed: u64, n: usize) -> Vec<String> {
    let words = Vocabulary::new(seed, VOCABULARY_WORDS);
    let mut rng = Seeded::new(seed ^ 0x5eed);
    (0..n).map(|_| words.sentence(&mut rng, 6, 20)).collect()
}

/// `n` tickets whose bodies have about `words` words each (subject 3-6 words), ids
/// `SYN-{seed}-{i}`, no customer.
pub fn tickets(seed: u64, n: usize, words: usize) -> Vec<TicketInput> {
    let vocabulary = Vocabulary::new(seed, VOCABULARY_WORDS);
    let mut rng = Seeded::new(seed ^ 0x71c);
    (0..n)
        .map(|i| {
            let mut body = String::new();
            let mut count = 0;
            while count < words.max(1) {
                let len = (8 + rng.below(12)).min(words.max(1) - count);
                if !body.is_empty() {
                    body.push(' ');
                }
                body.push_str(&vocabulary.sentence(&mut rng, len, 1));
                count += len;
            }
            TicketInput {
                id: format!("SYN-{seed}-{i}"),
                subject: vocabulary.sentence(&mut rng, 3, 4),
                body,
                ..TicketInput::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data() {
        assert_eq!(articles(7, 5), articles(7, 5));
        assert_ne!(articles(7, 5), articles(8, 5));
        assert_eq!(queries(7, 3), queries(7, 3));
        assert_eq!(articles_mixed(7, 5, &Mix::default()), articles(7, 5));
        // A mix of real words at its share.
        let mix = Mix::new("My card was declined; the card payment failed!", 0.25);
        let text: String = articles_mixed(7, 200, &mix)
            .iter()
            .map(|a| format!("{} {} ", a.title, a.body))
            .collect();
        let all = text.split_whitespace().count() as f64;
        let real = text
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| ["card", "declined", "payment", "failed", "was", "the"].contains(w))
            .count() as f64;
        assert!((0.2..0.3).contains(&(real / all)), "{real} of {all}");
        let t = tickets(7, 4, 50);
        assert_eq!(t, tickets(7, 4, 50));
        for ticket in &t {
            assert_eq!(
                ticket.body.split_whitespace().count(),
                50,
                "{}",
                ticket.body
            );
        }
    }
}
