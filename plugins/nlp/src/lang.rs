//! Language identification for the languages in [`crate::text::LANGUAGES`].
//!
//! Scores each language by the share of its stopwords among the tokens plus letters only it
//! uses, then turns the scores into probabilities. Tickets are short and stopword-rich, which
//! is what this needs; it says `und` (undetermined) when nothing matches.

use crate::text::{LANGUAGES, stopwords, token_ranges};

/// A detected language with its probability and the words that decided it.
#[derive(Clone, Debug, PartialEq)]
pub struct LanguageGuess {
    /// Language tag (`en`, `de`, ...) or `und`.
    pub language: &'static str,
    /// Probability in 0..=1.
    pub confidence: f32,
    /// Up to five tokens that are typical for the language, as written in the text.
    pub evidence: Vec<String>,
}

fn marker_letters(language: &str) -> &'static [char] {
    match language {
        "de" => &['ä', 'ö', 'ü', 'ß'],
        "es" => &['ñ', '¿', '¡', 'á', 'í', 'ó', 'ú'],
        "fr" => &['è', 'ê', 'à', 'ù', 'ç', 'œ', 'î', 'ô', 'é'],
        "pt" => &['ã', 'õ', 'ç', 'á', 'â', 'ê', 'ó'],
        "it" => &['ò', 'è', 'à', 'ì', 'ù'],
        _ => &[],
    }
}

/// Guesses the language of `text`.
pub fn detect(text: &str) -> LanguageGuess {
    let tokens: Vec<(usize, usize)> = token_ranges(text)
        .take(400)
        .map(|r| (r.start, r.end))
        .collect();
    let lowered: Vec<String> = tokens
        .iter()
        .map(|&(s, e)| text[s..e].to_lowercase())
        .collect();
    let mut scores = [0.0f64; 7];
    let mut hits: Vec<Vec<usize>> = vec![Vec::new(); LANGUAGES.len()];
    for (li, lang) in LANGUAGES.iter().enumerate() {
        let words = stopwords(lang);
        for (ti, token) in lowered.iter().enumerate() {
            if words.contains(&token.as_str()) {
                scores[li] += 1.0;
                if hits[li].len() < 5 && !hits[li].iter().any(|&h| lowered[h] == *token) {
                    hits[li].push(ti);
                }
            }
        }
        let markers = marker_letters(lang);
        let marked = text
            .chars()
            .filter(|c| markers.contains(&c.to_lowercase().next().unwrap_or(*c)))
            .count();
        // A letter used by several languages is weak evidence; ß or ñ alone is strong.
        scores[li] += 0.5 * (marked as f64).min(6.0);
    }
    let total_tokens = lowered.len().max(1) as f64;
    let best = (0..LANGUAGES.len()).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
    if scores[best] < 1.0 {
        return LanguageGuess {
            language: "und",
            confidence: 0.0,
            evidence: Vec::new(),
        };
    }
    // Softmax over scores normalised by length: long texts get sharper, short ones stay modest.
    let sharpness = 4.0 + 20.0 * (total_tokens.min(40.0) / 40.0);
    let exps: Vec<f64> = scores
        .iter()
        .map(|s| crate::detmath::exp(sharpness * (s - scores[best]) / total_tokens.max(4.0)))
        .collect();
    let sum: f64 = exps.iter().sum();
    let confidence = (exps[best] / sum) as f32;
    let evidence = hits[best]
        .iter()
        .map(|&t| text[tokens[t].0..tokens[t].1].to_string())
        .collect();
    LanguageGuess {
        language: LANGUAGES[best],
        confidence,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_shipped_languages() {
        let cases = [
            (
                "en",
                "Hello, I was charged twice for my subscription and I would like a refund please.",
            ),
            (
                "de",
                "Hallo, ich wurde doppelt belastet und möchte bitte eine Rückerstattung für mein Abo.",
            ),
            (
                "es",
                "Hola, me cobraron dos veces la suscripción y quiero un reembolso por favor.",
            ),
            (
                "fr",
                "Bonjour, j'ai été débité deux fois pour mon abonnement et je voudrais un remboursement.",
            ),
            (
                "pt",
                "Olá, fui cobrado duas vezes pela minha assinatura e gostaria de um reembolso, obrigado.",
            ),
            (
                "it",
                "Ciao, mi è stato addebitato due volte il mio abbonamento e vorrei un rimborso, grazie.",
            ),
            (
                "nl",
                "Hallo, ik ben twee keer belast voor mijn abonnement en ik wil graag mijn geld terug.",
            ),
        ];
        for (want, text) in cases {
            let got = detect(text);
            assert_eq!(got.language, want, "{text}");
            assert!(got.confidence > 0.5, "{text}: {got:?}");
            assert!(!got.evidence.is_empty());
        }
    }

    #[test]
    fn undetermined_without_evidence() {
        assert_eq!(detect("XJ-42 #$%").language, "und");
    }
}
