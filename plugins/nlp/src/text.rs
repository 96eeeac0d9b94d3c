//! Tokens, sentences, stopwords and a light stemmer for the languages deskhost ships with.
//!
//! Everything returns byte ranges into the caller's text, so quotes taken from it are verbatim.

use crate::words::WordTable;
use std::ops::Range;

/// Languages with stopword lists and templates: English, German, Spanish, French,
/// Portuguese, Italian, Dutch.
pub const LANGUAGES: &[&str] = &["en", "de", "es", "fr", "pt", "it", "nl"];

/// The text a ticket is classified and searched on: subject and body joined by a line break
/// (the body alone when there is no subject). The one definition the host's trainer and
/// the guest SDK share, so what a model is trained on is what it serves on.
pub fn ticket_text(subject: &str, body: &str) -> String {
    if subject.trim().is_empty() {
        body.to_string()
    } else {
        format!("{subject}\n{body}")
    }
}

/// Byte ranges of the alphanumeric runs (words, numbers) of `text`.
pub fn token_ranges(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        // skip separators
        while let Some(&(_, c)) = chars.peek() {
            if c.is_alphanumeric() {
                break;
            }
            chars.next();
        }
        let &(start, _) = chars.peek()?;
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if !c.is_alphanumeric() {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        Some(start..end)
    })
}

/// `word` lowercased with the diacritics of the Latin alphabets deskhost ships with taken
/// off (`Ação` → `acao`, `Straße` → `strasse`), so matching does not depend on accents.
pub fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    fold_into(word, &mut out);
    out
}

/// [`fold`] into `out` (cleared first): for loops that fold many words with one buffer.
pub fn fold_into(word: &str, out: &mut String) {
    out.clear();
    for c in word.chars().flat_map(char::to_lowercase) {
        match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => out.push('a'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'í' | 'ì' | 'î' | 'ï' => out.push('i'),
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => out.push('o'),
            'ú' | 'ù' | 'û' | 'ü' => out.push('u'),
            'ç' => out.push('c'),
            'ñ' => out.push('n'),
            'ß' => out.push_str("ss"),
            other => out.push(other),
        }
    }
}

/// Lowercased tokens of `text`.
pub fn tokens(text: &str) -> Vec<String> {
    token_ranges(text).map(|r| text[r].to_lowercase()).collect()
}

/// Byte ranges of the sentences of `text`, trimmed. A sentence ends at `.`, `!` or `?`
/// followed by white space, or at a line break; list markers and headings become their own
/// sentences, which suits help-center articles.
pub fn sentence_ranges(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let end_here = match b {
            b'\n' => true,
            b'.' | b'!' | b'?' => {
                let next = bytes.get(i + 1).copied();
                matches!(
                    next,
                    None | Some(b' ' | b'\n' | b'\t' | b'\r' | b'"' | b')')
                ) && !is_abbreviation(&text[start..i])
            }
            _ => false,
        };
        if end_here {
            let stop = if b == b'\n' { i } else { i + 1 };
            push_trimmed(text, start..stop, &mut out);
            start = i + 1;
        }
        i += 1;
    }
    push_trimmed(text, start..text.len(), &mut out);
    out
}

fn is_abbreviation(before: &str) -> bool {
    let last = before
        .rsplit(|c: char| c.is_whitespace())
        .next()
        .unwrap_or("");
    matches!(
        last.to_ascii_lowercase().as_str(),
        "e.g" | "i.e" | "etc" | "vs" | "mr" | "mrs" | "dr" | "z.b" | "bzw" | "sr" | "sra" | "no"
    ) || (last.len() == 1 && last.chars().all(|c| c.is_ascii_digit()))
}

fn push_trimmed(text: &str, range: Range<usize>, out: &mut Vec<Range<usize>>) {
    let piece = &text[range.clone()];
    let lead = piece.len() - piece.trim_start().len();
    let trail = piece.len() - piece.trim_end().len();
    let r = range.start + lead..range.end - trail;
    if r.start < r.end && text[r.clone()].chars().any(char::is_alphanumeric) {
        out.push(r);
    }
}

/// Very common words (lowercase) of each of [`LANGUAGES`], in its order.
const STOPWORDS: [&[&str]; LANGUAGES.len()] = [
    // en
    &[
        "the", "a", "an", "and", "or", "but", "to", "of", "in", "on", "for", "with", "is", "are",
        "was", "were", "be", "been", "it", "this", "that", "i", "my", "me", "we", "our", "you",
        "your", "have", "has", "had", "do", "does", "did", "not", "no", "can", "could", "would",
        "will", "please", "at", "from", "as", "so", "if", "what", "when", "how", "there", "am",
        "any", "just", "still", "about", "by", "get", "got", "all", "hi", "hello", "thanks",
        "thank", "dear", "regards", "they", "them", "their", "its", "an", "into", "out", "up",
        "which", "who", "why", "where", "should",
    ],
    // de
    &[
        "der",
        "die",
        "das",
        "und",
        "oder",
        "aber",
        "zu",
        "von",
        "in",
        "im",
        "auf",
        "für",
        "mit",
        "ist",
        "sind",
        "war",
        "ich",
        "mein",
        "meine",
        "meinen",
        "mir",
        "mich",
        "wir",
        "unser",
        "sie",
        "ihr",
        "ihre",
        "ihnen",
        "haben",
        "habe",
        "hat",
        "nicht",
        "kein",
        "keine",
        "kann",
        "können",
        "bitte",
        "ein",
        "eine",
        "einen",
        "dem",
        "den",
        "des",
        "es",
        "wie",
        "was",
        "wenn",
        "noch",
        "schon",
        "auch",
        "sehr",
        "seit",
        "nach",
        "bei",
        "hallo",
        "danke",
        "grüße",
        "freundlichen",
        "geehrte",
        "damen",
        "herren",
        "dass",
        "wurde",
        "wird",
        "werden",
        "um",
        "an",
        "aus",
    ],
    // es
    &[
        "el",
        "la",
        "los",
        "las",
        "un",
        "una",
        "y",
        "o",
        "pero",
        "de",
        "del",
        "en",
        "con",
        "por",
        "para",
        "es",
        "son",
        "fue",
        "mi",
        "mis",
        "me",
        "yo",
        "nosotros",
        "su",
        "sus",
        "usted",
        "tengo",
        "tiene",
        "no",
        "puedo",
        "puede",
        "por favor",
        "que",
        "qué",
        "cómo",
        "como",
        "cuando",
        "ya",
        "todavía",
        "hola",
        "gracias",
        "saludos",
        "estimado",
        "lo",
        "le",
        "se",
        "al",
        "este",
        "esta",
        "está",
        "estoy",
        "muy",
        "hace",
        "desde",
    ],
    // fr
    &[
        "le",
        "la",
        "les",
        "un",
        "une",
        "des",
        "et",
        "ou",
        "mais",
        "de",
        "du",
        "en",
        "dans",
        "avec",
        "pour",
        "par",
        "sur",
        "est",
        "sont",
        "était",
        "je",
        "mon",
        "ma",
        "mes",
        "moi",
        "nous",
        "notre",
        "vous",
        "votre",
        "vos",
        "ai",
        "avons",
        "avez",
        "ne",
        "pas",
        "peux",
        "pouvez",
        "que",
        "qui",
        "quoi",
        "comment",
        "quand",
        "déjà",
        "encore",
        "bonjour",
        "merci",
        "cordialement",
        "madame",
        "monsieur",
        "ce",
        "cette",
        "il",
        "elle",
        "au",
        "aux",
        "très",
        "depuis",
        "j",
    ],
    // pt
    &[
        "o",
        "a",
        "os",
        "as",
        "um",
        "uma",
        "e",
        "ou",
        "mas",
        "de",
        "do",
        "da",
        "dos",
        "das",
        "em",
        "no",
        "na",
        "com",
        "por",
        "para",
        "é",
        "são",
        "foi",
        "eu",
        "meu",
        "minha",
        "me",
        "nós",
        "nosso",
        "você",
        "seu",
        "sua",
        "tenho",
        "tem",
        "não",
        "posso",
        "pode",
        "que",
        "como",
        "quando",
        "já",
        "ainda",
        "olá",
        "obrigado",
        "obrigada",
        "atenciosamente",
        "prezado",
        "prezados",
        "isso",
        "este",
        "esta",
        "está",
        "estou",
        "muito",
        "desde",
        "ao",
        "se",
        "lhe",
    ],
    // it
    &[
        "il", "lo", "la", "i", "gli", "le", "un", "una", "e", "o", "ma", "di", "del", "della",
        "in", "con", "per", "su", "è", "sono", "era", "io", "mio", "mia", "mi", "noi", "vostro",
        "lei", "ho", "ha", "non", "posso", "può", "che", "come", "quando", "già", "ancora", "ciao",
        "grazie", "saluti", "gentile", "questo", "questa", "molto", "da",
    ],
    // nl
    &[
        "de",
        "het",
        "een",
        "en",
        "of",
        "maar",
        "van",
        "in",
        "op",
        "voor",
        "met",
        "is",
        "zijn",
        "was",
        "ik",
        "mijn",
        "mij",
        "wij",
        "ons",
        "u",
        "uw",
        "jullie",
        "heb",
        "heeft",
        "niet",
        "geen",
        "kan",
        "kunt",
        "alstublieft",
        "dat",
        "wat",
        "hoe",
        "wanneer",
        "al",
        "nog",
        "hallo",
        "bedankt",
        "dank",
        "groet",
        "geachte",
        "deze",
        "dit",
        "er",
        "ook",
        "zeer",
        "sinds",
        "naar",
        "bij",
    ],
];

/// Very common words of `language` (lowercase), or an empty list for other languages.
pub fn stopwords(language: &str) -> &'static [&'static str] {
    LANGUAGES
        .iter()
        .position(|l| *l == language)
        .and_then(|i| STOPWORDS.get(i))
        .copied()
        .unwrap_or(&[])
}

/// Every stopword with the languages it is one in (bit `i`: `LANGUAGES[i]`).
static STOPWORD_TABLE: WordTable<2048> = WordTable::new(&STOPWORDS);

/// The languages `word` (lowercase) is a stopword in, one bit each (bit `i`:
/// `LANGUAGES[i]`); 0 for none.
pub fn stopword_languages(word: &str) -> u8 {
    STOPWORD_TABLE.get(word)
}

/// True if `word` (lowercase) is a stopword in `language` or, when `language` is unknown,
/// in English.
pub fn is_stopword(word: &str, language: &str) -> bool {
    // English is LANGUAGES[0].
    let i = LANGUAGES.iter().position(|l| *l == language).unwrap_or(0);
    stopword_languages(word) >> i & 1 == 1
}

/// Removes common inflection suffixes so that `refunds`/`refunded`/`refund` and
/// `Rechnungen`/`Rechnung` meet. Deliberately light: it only has to make overlap counting
/// work, not produce linguistic stems.
pub fn light_stem(word: &str) -> &str {
    let n = word.chars().count();
    if n <= 4 {
        return word;
    }
    const SUFFIXES: &[&str] = &[
        "ations", "ation", "ungen", "ments", "ement", "ments", "ing", "edly", "ness", "ions",
        "ion", "ung", "ies", "ied", "ed", "es", "en", "er", "ly", "s", "e", "n",
    ];
    for suffix in SUFFIXES {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.chars().count() >= 4
        {
            return stem;
        }
    }
    word
}

/// Content words of `text`: lowercase, not stopwords in `language`, at least two characters,
/// light-stemmed. Order of first appearance, no duplicates.
pub fn content_terms(text: &str, language: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for range in token_ranges(text) {
        let word = text[range].to_lowercase();
        if word.chars().count() < 2 || is_stopword(&word, language) {
            continue;
        }
        let stem = light_stem(&word).to_string();
        if !out.contains(&stem) {
            out.push(stem);
        }
    }
    out
}

/// Collapses runs of white space to one space, so spans can be compared across line wraps.
pub fn squash_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn tokens_are_lowercase_alphanumeric_runs() {
        assert_eq!(
            tokens("Hi! My card #4431 isn't working—über-fast?"),
            vec![
                "hi", "my", "card", "4431", "isn", "t", "working", "über", "fast"
            ]
        );
    }

    #[test]
    fn sentences_are_verbatim_trimmed_spans() {
        let text = "Refunds take 5 days. Contact us e.g. by chat!\n- Step one\nDone";
        let got: Vec<&str> = sentence_ranges(text)
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(
            got,
            vec![
                "Refunds take 5 days.",
                "Contact us e.g. by chat!",
                "- Step one",
                "Done"
            ]
        );
    }

    #[test]
    fn light_stem_meets_inflections() {
        assert_eq!(light_stem("refunds"), "refund");
        assert_eq!(light_stem("refunded"), "refund");
        assert_eq!(light_stem("rechnungen"), "rechn");
        assert_eq!(light_stem("rechnung"), "rechn");
        assert_eq!(light_stem("card"), "card");
    }

    #[test]
    fn content_terms_drop_stopwords_and_duplicates() {
        assert_eq!(
            content_terms("I want a refund for my refunds, please", "en"),
            vec!["want", "refund"]
        );
    }

    #[test]
    fn squash_whitespace_normalises_wraps() {
        assert_eq!(squash_whitespace("  a \n\t b  c "), "a b c");
    }
}
