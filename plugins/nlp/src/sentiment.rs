//! Lexicon sentiment for tickets, used when the triage model has no `sentiment` head.
//!
//! Counts positive and negative cue words (with negation flipping the next three words),
//! plus shouting (`!!`, long upper-case words). Small, multilingual, explainable.

use crate::text::token_ranges;
use crate::words::WordTable;

/// Sentiment class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// Unhappy.
    Negative,
    /// Neither.
    Neutral,
    /// Happy.
    Positive,
}

/// A sentiment call with its cue words.
#[derive(Clone, Debug, PartialEq)]
pub struct SentimentGuess {
    /// The class.
    pub polarity: Polarity,
    /// Probability in 0..=1 (heuristic, not calibrated).
    pub confidence: f32,
    /// Cue words as written in the text.
    pub evidence: Vec<String>,
}

const NEGATIVE: &[&str] = &[
    // en
    "angry",
    "annoyed",
    "awful",
    "bad",
    "broken",
    "cancel",
    "complaint",
    "disappointed",
    "disappointing",
    "disgusted",
    "fail",
    "failed",
    "failing",
    "frustrated",
    "frustrating",
    "furious",
    "horrible",
    "lawyer",
    "lost",
    "never",
    "poor",
    "rude",
    "ridiculous",
    "scam",
    "terrible",
    "unacceptable",
    "unhappy",
    "upset",
    "useless",
    "waste",
    "worst",
    "wrong",
    "hate",
    "delayed",
    "stuck",
    "nightmare",
    "incompetent",
    "sue",
    "fraud",
    "crash",
    "crashes",
    "outage",
    "down",
    "error",
    "problem",
    "issue",
    "overcharged",
    "late",
    // de
    "ärgerlich",
    "enttäuscht",
    "enttäuschend",
    "schlecht",
    "schlimm",
    "unverschämt",
    "inakzeptabel",
    "katastrophe",
    "frechheit",
    "wütend",
    "kaputt",
    "fehler",
    "problem",
    "anwalt",
    "betrug",
    "ausfall",
    "leider",
    "nie",
    "falsch",
    "beschwerde",
    "unzufrieden",
    // es
    "enfadado",
    "molesto",
    "terrible",
    "pésimo",
    "horrible",
    "inaceptable",
    "decepcionado",
    "queja",
    "error",
    "problema",
    "abogado",
    "fraude",
    "nunca",
    "mal",
    "falla",
    "fallo",
    // fr
    "déçu",
    "décevant",
    "furieux",
    "inadmissible",
    "inacceptable",
    "horrible",
    "nul",
    "plainte",
    "erreur",
    "problème",
    "avocat",
    "arnaque",
    "jamais",
    "panne",
    "mécontent",
    // pt
    "chateado",
    "decepcionado",
    "péssimo",
    "horrível",
    "inaceitável",
    "reclamação",
    "erro",
    "problema",
    "advogado",
    "fraude",
    "nunca",
    "ruim",
    "falha",
    "insatisfeito",
];

const POSITIVE: &[&str] = &[
    // en
    "thanks",
    "thank",
    "great",
    "awesome",
    "excellent",
    "love",
    "amazing",
    "appreciate",
    "appreciated",
    "happy",
    "helpful",
    "perfect",
    "wonderful",
    "good",
    "best",
    "fantastic",
    "glad",
    "pleased",
    "kind",
    "quick",
    "resolved",
    "nice",
    // de
    "danke",
    "super",
    "toll",
    "großartig",
    "hervorragend",
    "zufrieden",
    "freundlich",
    "hilfreich",
    "perfekt",
    "prima",
    "gut",
    // es
    "gracias",
    "genial",
    "excelente",
    "perfecto",
    "contento",
    "amable",
    "útil",
    "bueno",
    // fr
    "merci",
    "génial",
    "excellent",
    "parfait",
    "content",
    "ravi",
    "aimable",
    "utile",
    // pt
    "obrigado",
    "obrigada",
    "ótimo",
    "excelente",
    "perfeito",
    "contente",
    "feliz",
    "útil",
];

const NEGATIONS: &[&str] = &[
    "not", "no", "never", "don", "didn", "isn", "wasn", "nicht", "kein", "keine", "nie", "no",
    "nunca", "pas", "jamais", "não", "nem",
];

// Politeness formulas that say nothing about the customer's mood.
const FORMULAIC: &[&str] = &[
    "thanks", "thank", "danke", "gracias", "merci", "obrigado", "obrigada",
];

/// The lexicon's lists, looked up once per token: bit 0 [`NEGATIONS`], 1 [`POSITIVE`],
/// 2 [`NEGATIVE`], 3 [`FORMULAIC`].
static LEXICON: WordTable<1024> = WordTable::new(&[NEGATIONS, POSITIVE, NEGATIVE, FORMULAIC]);
const IS_NEGATION: u8 = 1;
const IS_POSITIVE: u8 = 2;
const IS_NEGATIVE: u8 = 4;
const IS_FORMULAIC: u8 = 8;

/// Guesses the sentiment of `text`.
pub fn detect(text: &str) -> SentimentGuess {
    let mut negative = 0.0f32;
    let mut positive = 0.0f32;
    let mut evidence = Vec::new();
    let mut negate_left = 0u32;
    let mut formulaic_positive = 0.0f32;
    for range in token_ranges(text).take(600) {
        let original = &text[range];
        let word = original.to_lowercase();
        let negated = negate_left > 0;
        negate_left = negate_left.saturating_sub(1);
        let lists = LEXICON.get(&word);
        if lists & IS_NEGATION != 0 {
            negate_left = 3;
            continue;
        }
        let (is_pos, is_neg) = (lists & IS_POSITIVE != 0, lists & IS_NEGATIVE != 0);
        let weight = if original.chars().count() >= 4
            && original.chars().all(|c| !c.is_lowercase())
            && original.chars().any(char::is_alphabetic)
        {
            1.5
        } else {
            1.0
        };
        if is_pos && !negated {
            if lists & IS_FORMULAIC != 0 {
                formulaic_positive += 0.5;
            } else {
                positive += weight;
            }
            push_unique(&mut evidence, original);
        } else if is_neg || (is_pos && negated) {
            negative += weight;
            push_unique(&mut evidence, original);
        }
    }
    let exclaims = text.matches("!!").count() as f32 + text.matches("?!").count() as f32;
    negative += 0.5 * exclaims.min(4.0);
    positive += formulaic_positive.min(0.5);
    let score = positive - negative;
    let (polarity, margin) = if score <= -1.0 {
        (Polarity::Negative, -score)
    } else if score >= 1.0 {
        (Polarity::Positive, score)
    } else {
        (Polarity::Neutral, 1.0 - score.abs())
    };
    let confidence = (0.45 + 0.12 * margin).min(0.9);
    evidence.truncate(5);
    SentimentGuess {
        polarity,
        confidence,
        evidence,
    }
}

fn push_unique(list: &mut Vec<String>, word: &str) {
    if !list.iter().any(|w| w.eq_ignore_ascii_case(word)) {
        list.push(word.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lexicon_table_holds_each_word_on_exactly_its_lists() {
        let lists = [NEGATIONS, POSITIVE, NEGATIVE, FORMULAIC];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let tickets = std::fs::read_to_string(root.join("workspace/tickets.jsonl"))
            .unwrap_or_else(|e| panic!("{e}"));
        let words: Vec<String> = lists
            .iter()
            .flat_map(|l| l.iter().map(|w| w.to_string()))
            .chain(token_ranges(&tickets).map(|r| tickets[r].to_lowercase()))
            .collect();
        assert!(words.len() > 500, "{}", words.len());
        for word in &words {
            let on: u8 = (0..lists.len())
                .filter(|&i| lists[i].contains(&word.as_str()))
                .map(|i| 1 << i)
                .sum();
            assert_eq!(LEXICON.get(word), on, "{word}");
        }
    }

    #[test]
    fn polarity_follows_cues_and_negation() {
        assert_eq!(
            detect("This is unacceptable, the app is broken AGAIN!!").polarity,
            Polarity::Negative
        );
        assert_eq!(
            detect("Great support, I love the new dashboard").polarity,
            Polarity::Positive
        );
        assert_eq!(
            detect("How do I export my data? Thanks").polarity,
            Polarity::Neutral
        );
        assert_eq!(
            detect("The support was not helpful at all").polarity,
            Polarity::Negative
        );
        assert_eq!(
            detect("Ich bin sehr enttäuscht, das ist eine Frechheit").polarity,
            Polarity::Negative
        );
    }

    #[test]
    fn evidence_quotes_the_text() {
        let got = detect("Terrible experience, totally UNACCEPTABLE");
        assert_eq!(got.evidence, vec!["Terrible", "UNACCEPTABLE"]);
    }
}
