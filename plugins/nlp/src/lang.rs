//! Language identification for the languages in [`crate::text::LANGUAGES`].
//!
//! Scores each language by the share of its stopwords among the tokens plus letters only it
//! uses, then turns the scores into probabilities. Tickets are short and stopword-rich, which
//! is what this needs; it says `und` (undetermined) when nothing matches.

use crate::text::{LANGUAGES, stopword_languages, token_ranges};

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
    let (tokens, lowered) = tokens_of(text);
    // Each token is looked up once, for every language at a time; a language's score is
    // its stopwords among the tokens, then half a point per letter only it marks (at most
    // six).
    let mut scores = [0.0f64; LANGUAGES.len()];
    let mut hits: Vec<Vec<usize>> = vec![Vec::new(); LANGUAGES.len()];
    for (ti, token) in lowered.iter().enumerate() {
        let languages = stopword_languages(token);
        if languages == 0 {
            continue;
        }
        for (li, (score, hits)) in scores.iter_mut().zip(&mut hits).enumerate() {
            if languages >> li & 1 == 1 {
                *score += 1.0;
                if hits.len() < 5 && !hits.iter().any(|&h| lowered[h] == *token) {
                    hits.push(ti);
                }
            }
        }
    }
    let mut marked = [0usize; LANGUAGES.len()];
    // Every marker letter is outside ASCII, and so is any letter lowercasing to one.
    for c in text.chars().filter(|c| !c.is_ascii()) {
        let lower = c.to_lowercase().next().unwrap_or(c);
        for (count, lang) in marked.iter_mut().zip(LANGUAGES) {
            if marker_letters(lang).contains(&lower) {
                *count += 1;
            }
        }
    }
    for (score, &count) in scores.iter_mut().zip(&marked) {
        // A letter used by several languages is weak evidence; ß or ñ alone is strong.
        *score += 0.5 * (count as f64).min(6.0);
    }
    guess(text, &tokens, &scores, &hits)
}

/// The first 400 tokens of `text`: their byte ranges and their lowercase forms.
fn tokens_of(text: &str) -> (Vec<(usize, usize)>, Vec<String>) {
    let tokens: Vec<(usize, usize)> = token_ranges(text)
        .take(400)
        .map(|r| (r.start, r.end))
        .collect();
    let lowered = tokens
        .iter()
        .map(|&(s, e)| text[s..e].to_lowercase())
        .collect();
    (tokens, lowered)
}

/// The guess from each language's score and the tokens that scored for it (indices into
/// `tokens`): the best language, `und` below one point.
fn guess(
    text: &str,
    tokens: &[(usize, usize)],
    scores: &[f64; LANGUAGES.len()],
    hits: &[Vec<usize>],
) -> LanguageGuess {
    let total_tokens = tokens.len().max(1) as f64;
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
    let evidence = hits
        .get(best)
        .into_iter()
        .flatten()
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

    /// The scoring as first written — every language's stopword list scanned for every
    /// token, its marker letters counted over the whole text — which the table and the single
    /// pass over the letters must reproduce exactly.
    fn detect_by_scanning(text: &str) -> LanguageGuess {
        use crate::text::stopwords;
        let (tokens, lowered) = tokens_of(text);
        let mut scores = [0.0f64; LANGUAGES.len()];
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
            scores[li] += 0.5 * (marked as f64).min(6.0);
        }
        guess(text, &tokens, &scores, &hits)
    }

    #[test]
    fn the_lookup_table_detects_what_scanning_the_lists_does() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut texts: Vec<String> = vec![
            "HALLO, ÜBER DIE RÜCKERSTATTUNG: ICH HABE NICHT BEZAHLT".into(),
            "Ñandú ¿qué? ¡Sí! ÀÈÌÒÙ ÇA Œuvre ÃÕ ß ẞ".into(),
            "the der el le o il de in an es".into(),
            "ok".into(),
            String::new(),
        ];
        for file in ["workspace/tickets.jsonl", "workspace/risk.jsonl"] {
            let path = root.join(file);
            let all = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            texts.extend(all.lines().map(str::to_string));
        }
        assert!(texts.len() > 200, "{}", texts.len());
        for text in &texts {
            assert_eq!(detect(text), detect_by_scanning(text), "{text}");
        }
    }

    #[test]
    fn every_stopword_is_found_in_its_languages_and_only_there() {
        use crate::text::{is_stopword, stopword_languages, stopwords};
        for (i, lang) in LANGUAGES.iter().enumerate() {
            for word in stopwords(lang) {
                let listed: u8 = (0..LANGUAGES.len())
                    .filter(|&j| stopwords(LANGUAGES[j]).contains(word))
                    .map(|j| 1 << j)
                    .sum();
                assert_eq!(stopword_languages(word), listed, "{word}");
                assert!(is_stopword(word, lang), "{word} in {lang}");
                assert_eq!(listed >> i & 1, 1);
            }
        }
        for word in ["", "refund", "thee", "th", "dere", "ÜBER", "The"] {
            assert_eq!(stopword_languages(word), 0, "{word}");
        }
        // An unknown language counts as English.
        assert!(is_stopword("the", "xx") && !is_stopword("der", "xx"));
    }

    #[test]
    fn undetermined_without_evidence() {
        assert_eq!(detect("XJ-42 #$%").language, "und");
    }
}
