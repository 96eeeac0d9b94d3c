//! Phrase matching for operator rules ("lawyer", "legal action", "chargeback*").
//!
//! The rule language, shared by every triage plugin that reads the operator's rules (the
//! Python and JavaScript examples implement the same):
//! - Text and phrases are split into words (runs of letters and digits); words are compared
//!   lowercased and without diacritics, so `Piraté` matches `pirate` and `NÃO` matches `nao`.
//! - A phrase matches a run of consecutive words: `sue` does not fire inside `issue`, and
//!   `legal action` matches across a line break or punctuation.
//! - A phrase word ending in `*` matches any word that starts with it (`suicid*` matches
//!   `suicide`, `suicidal`); one starting with `*` any word that ends with it (`*magazin`
//!   matches the German compound `Wirtschaftsmagazin`).
//! - `..` between two words allows up to three other words between them
//!   (`mir .. leben .. nehmen` matches `mir das Leben zu nehmen`).
//! - `all_of` groups (see [`TokenizedText::find_all_of`]) fire when one phrase of every
//!   group occurs in the same clause: the text between `.`, `!`, `?`, `;` and line breaks.

use deskhost_nlp::text::{fold, fold_into, token_ranges};
use std::collections::BTreeMap;
use std::ops::Range;

/// Words a `..` may skip.
const MAX_GAP: usize = 3;

/// One element of a phrase.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Element {
    /// A word: exact, or a prefix or suffix of the text's word.
    Word {
        text: String,
        prefix: bool,
        suffix: bool,
    },
    /// Up to [`MAX_GAP`] words of anything.
    Gap,
}

impl Element {
    fn accepts(&self, token: &str) -> bool {
        match self {
            Element::Word {
                text,
                prefix,
                suffix,
            } => match (prefix, suffix) {
                (false, false) => token == text,
                (true, false) => token.starts_with(text.as_str()),
                (false, true) => token.ends_with(text.as_str()),
                (true, true) => token.contains(text.as_str()),
            },
            Element::Gap => true,
        }
    }
}

/// A phrase prepared for matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phrase {
    elements: Vec<Element>,
}

impl Phrase {
    /// Parses `phrase`: words, `word*` / `*word` for a prefix / suffix, `..` for a gap.
    pub fn new(phrase: &str) -> Self {
        let mut elements = Vec::new();
        for part in phrase.split_whitespace() {
            if part == ".." || part == "…" {
                if matches!(elements.last(), Some(Element::Word { .. })) {
                    elements.push(Element::Gap);
                }
                continue;
            }
            let ranges: Vec<Range<usize>> = token_ranges(part).collect();
            let last = ranges.len().saturating_sub(1);
            for (i, r) in ranges.iter().enumerate() {
                elements.push(Element::Word {
                    text: fold(&part[r.clone()]),
                    suffix: i == 0 && part[..r.start].ends_with('*'),
                    prefix: i == last && part[r.end..].starts_with('*'),
                });
            }
        }
        while matches!(elements.last(), Some(Element::Gap)) {
            elements.pop();
        }
        Self { elements }
    }

    /// Where the phrase matches starting exactly at `tokens[0]`: the index after its last
    /// word.
    fn match_at(&self, tokens: &[(String, Range<usize>)]) -> Option<usize> {
        fn go(elements: &[Element], tokens: &[(String, Range<usize>)], at: usize) -> Option<usize> {
            let Some((first, rest)) = elements.split_first() else {
                return Some(at);
            };
            match first {
                Element::Gap => (0..=MAX_GAP).find_map(|skip| {
                    let next = at + skip;
                    (next <= tokens.len())
                        .then(|| go(rest, tokens, next))
                        .flatten()
                }),
                word => {
                    let (token, _) = tokens.get(at)?;
                    if word.accepts(token) {
                        go(rest, tokens, at + 1)
                    } else {
                        None
                    }
                }
            }
        }
        if self.elements.is_empty() {
            return None;
        }
        go(&self.elements, tokens, 0)
    }
}

impl Phrase {
    fn first(&self) -> Option<&Element> {
        self.elements.first()
    }
}

/// The byte range of the first word of `s`; ASCII is read byte by byte (this runs for every
/// phrase of a rule set on every call).
fn first_word(s: &str) -> Option<Range<usize>> {
    let bytes = s.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii() || b.is_ascii_alphanumeric())?;
    if !bytes[start].is_ascii() {
        return token_ranges(s).next();
    }
    let len = bytes[start..]
        .iter()
        .position(|b| !b.is_ascii_alphanumeric())
        .unwrap_or(bytes.len() - start);
    if bytes.get(start + len).is_some_and(|b| !b.is_ascii()) {
        // The word goes on with a non-ASCII letter: let the full tokenizer decide.
        return token_ranges(s).next();
    }
    Some(start..start + len)
}

/// The first two characters of `s` (or all of it), as an index key.
fn head2(s: &str) -> &str {
    s.char_indices().nth(2).map_or(s, |(i, _)| &s[..i])
}

/// The last two characters of `s` (or all of it).
fn tail2(s: &str) -> &str {
    let n = s.chars().count();
    if n <= 2 {
        return s;
    }
    s.char_indices().nth(n - 2).map_or(s, |(i, _)| &s[i..])
}

/// Many phrases compiled for one pass over a text: every occurrence of every phrase is found
/// by looking each word up in an index (exact words; the first or last two characters of
/// prefix and suffix patterns), so the cost grows with the text, not with phrases x text.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    phrases: Vec<Phrase>,
    exact: BTreeMap<String, Vec<usize>>,
    prefix: BTreeMap<String, Vec<usize>>,
    suffix: BTreeMap<String, Vec<usize>>,
    /// Patterns too short to index, and `*x*`: checked at every word.
    scan: Vec<usize>,
}

impl Matcher {
    /// An empty matcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `phrases`; returns their ids (a range, in the order given).
    pub fn add<S: AsRef<str>>(&mut self, phrases: &[S]) -> Range<usize> {
        self.add_for(phrases, None)
    }

    /// Like [`Matcher::add`], but phrases whose first word cannot occur in `text` are not
    /// compiled (they keep their id and never match): with a large rule set most phrases are
    /// ruled out by a cheap look at their first word.
    pub fn add_for<S: AsRef<str>>(
        &mut self,
        phrases: &[S],
        text: Option<&TokenizedText<'_>>,
    ) -> Range<usize> {
        let start = self.phrases.len();
        let mut buf = String::new();
        for p in phrases {
            let id = self.phrases.len();
            if let Some(text) = text
                && !text.may_start(p.as_ref(), &mut buf)
            {
                self.phrases.push(Phrase {
                    elements: Vec::new(),
                });
                continue;
            }
            let phrase = Phrase::new(p.as_ref());
            match phrase.first() {
                Some(Element::Word {
                    text,
                    prefix,
                    suffix,
                }) => match (prefix, suffix) {
                    (false, false) => self.exact.entry(text.clone()).or_default().push(id),
                    (true, false) if text.chars().count() >= 2 => {
                        self.prefix.entry(head2(text).into()).or_default().push(id)
                    }
                    (false, true) if text.chars().count() >= 2 => {
                        self.suffix.entry(tail2(text).into()).or_default().push(id)
                    }
                    _ => self.scan.push(id),
                },
                Some(Element::Gap) | None => {}
            }
            self.phrases.push(phrase);
        }
        start..self.phrases.len()
    }

    /// Every occurrence of every phrase in `text`, ordered by where it starts.
    pub fn scan(&self, text: &TokenizedText<'_>) -> Occurrences {
        let tokens = &text.tokens;
        let mut found = Vec::new();
        let none: &[usize] = &[];
        for at in 0..tokens.len() {
            let token = tokens[at].0.as_str();
            let candidates = self
                .exact
                .get(token)
                .map_or(none, Vec::as_slice)
                .iter()
                .chain(self.prefix.get(head2(token)).map_or(none, Vec::as_slice))
                .chain(self.suffix.get(tail2(token)).map_or(none, Vec::as_slice))
                .chain(&self.scan);
            for &id in candidates {
                if let Some(n) = self.phrases[id].match_at(&tokens[at..]) {
                    found.push((id, at..at + n));
                }
            }
        }
        Occurrences { found }
    }
}

/// What [`Matcher::scan`] found: (phrase id, token range) in text order.
#[derive(Clone, Debug, Default)]
pub struct Occurrences {
    found: Vec<(usize, Range<usize>)>,
}

/// One phrase list compiled on its own (a convenience over [`Matcher`]).
#[derive(Clone, Debug, Default)]
pub struct PhraseSet {
    matcher: Matcher,
}

impl PhraseSet {
    /// Compiles `phrases` (order is kept: the first listed wins in [`TokenizedText::find_first`]).
    pub fn new<S: AsRef<str>>(phrases: &[S]) -> Self {
        let mut matcher = Matcher::new();
        matcher.add(phrases);
        Self { matcher }
    }

    /// Whether the set has no phrase.
    pub fn is_empty(&self) -> bool {
        self.matcher.phrases.is_empty()
    }
}

/// A text prepared for phrase lookups: folded words with their spans.
pub struct TokenizedText<'a> {
    text: &'a str,
    tokens: Vec<(String, Range<usize>)>,
    /// The distinct folded words, sorted (for [`Matcher::add_for`]).
    sorted: Vec<String>,
}

impl<'a> TokenizedText<'a> {
    /// Tokenises `text`.
    pub fn new(text: &'a str) -> Self {
        let tokens: Vec<(String, Range<usize>)> = token_ranges(text)
            .map(|r| (fold(&text[r.clone()]), r))
            .collect();
        let mut sorted: Vec<String> = tokens.iter().map(|(t, _)| t.clone()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        Self {
            text,
            tokens,
            sorted,
        }
    }

    /// Whether `phrase`'s first word can be one of this text's words (read without
    /// compiling the phrase).
    fn may_start(&self, phrase: &str, word: &mut String) -> bool {
        let Some(first) = first_word(phrase) else {
            return false;
        };
        let suffix = phrase[..first.start].contains('*');
        let prefix = phrase[first.end..].starts_with('*');
        let raw = &phrase[first];
        // Most rule words are plain lowercase ASCII already: nothing to fold.
        let word: &str = if raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            raw
        } else {
            fold_into(raw, word);
            word
        };
        match (prefix, suffix) {
            (false, false) => self
                .sorted
                .binary_search_by(|t| t.as_str().cmp(word))
                .is_ok(),
            (true, false) => {
                // The sorted words starting with `word` begin where `word` would be inserted.
                let at = self.sorted.partition_point(|t| t.as_str() < word);
                self.sorted.get(at).is_some_and(|t| t.starts_with(word))
            }
            (false, true) => self.sorted.iter().any(|t| t.ends_with(word)),
            (true, true) => self.sorted.iter().any(|t| t.contains(word)),
        }
    }

    fn find_in(&self, phrase: &Phrase, within: Range<usize>) -> Option<Range<usize>> {
        let tokens = &self.tokens[within];
        (0..tokens.len()).find_map(|start| {
            let end = phrase.match_at(&tokens[start..])?;
            Some(tokens[start].1.start..tokens[start + end - 1].1.end)
        })
    }

    /// The first occurrence of `phrase`, as the verbatim text it matched.
    pub fn find(&self, phrase: &str) -> Option<&'a str> {
        self.find_in(&Phrase::new(phrase), 0..self.tokens.len())
            .map(|r| &self.text[r])
    }

    /// The first of `phrases` found, with the text it matched.
    pub fn find_any<'p>(&self, phrases: &'p [String]) -> Option<(&'p str, &'a str)> {
        let set = PhraseSet::new(phrases);
        let (i, text) = self.find_first(&set)?;
        Some((phrases.get(i)?.as_str(), text))
    }

    /// The first phrase of `set` (in its order) that occurs, with the text it matched.
    pub fn find_first(&self, set: &PhraseSet) -> Option<(usize, &'a str)> {
        let all = set.matcher.scan(self);
        self.first_of(&all, 0..set.matcher.phrases.len())
    }

    /// Of the phrases `ids` (in their order), the first that occurs in `found`, with the
    /// verbatim text of its first occurrence.
    pub fn first_of(&self, found: &Occurrences, ids: Range<usize>) -> Option<(usize, &'a str)> {
        let (id, span) = found
            .found
            .iter()
            .filter(|(id, _)| ids.contains(id))
            .min_by_key(|(id, span)| (*id, span.start))?;
        Some((id - ids.start, &self.text[self.span_text(span.clone())]))
    }

    /// The first clause in which a phrase of every group (`ids` ranges of one scan) occurs,
    /// as the verbatim text from its first to its last matched phrase (at most 200 bytes).
    pub fn all_of(&self, found: &Occurrences, groups: &[Range<usize>]) -> Option<&'a str> {
        if groups.is_empty() || groups.iter().any(|g| g.is_empty()) {
            return None;
        }
        self.clauses().into_iter().find_map(|clause| {
            let mut spans = Vec::new();
            for group in groups {
                let (_, hit) = found.found.iter().find(|(id, span)| {
                    group.contains(id) && clause.contains(&span.start) && span.end <= clause.end
                })?;
                spans.push(self.span_text(hit.clone()));
            }
            let start = spans.iter().map(|r| r.start).min()?;
            let mut end = spans.iter().map(|r| r.end).max()?;
            end = end.min(start + 200);
            while !self.text.is_char_boundary(end) {
                end -= 1;
            }
            Some(&self.text[start..end])
        })
    }

    fn span_text(&self, tokens: Range<usize>) -> Range<usize> {
        self.tokens[tokens.start].1.start..self.tokens[tokens.end - 1].1.end
    }

    /// The token index ranges of the clauses: split where `.`, `!`, `?`, `;` or a line
    /// break falls between two words.
    fn clauses(&self) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        for i in 1..self.tokens.len() {
            let gap = &self.text[self.tokens[i - 1].1.end..self.tokens[i].1.start];
            if gap.contains(['.', '!', '?', ';', '\n', '\r']) {
                out.push(start..i);
                start = i;
            }
        }
        if start < self.tokens.len() {
            out.push(start..self.tokens.len());
        }
        out
    }

    /// The first clause in which a phrase of every group occurs, as the verbatim text from
    /// its first to its last matched phrase (at most 200 bytes).
    pub fn find_all_of(&self, groups: &[Vec<String>]) -> Option<&'a str> {
        let mut matcher = Matcher::new();
        let ids: Vec<Range<usize>> = groups.iter().map(|g| matcher.add(g)).collect();
        self.all_of(&matcher.scan(self), &ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_words_across_punctuation() {
        let t = TokenizedText::new("I have an ISSUE. My lawyer will take Legal\naction!");
        assert_eq!(t.find("sue"), None);
        assert_eq!(t.find("lawyer"), Some("lawyer"));
        assert_eq!(t.find("legal action"), Some("Legal\naction"));
        let phrases = vec!["refund".to_string(), "legal action".to_string()];
        assert_eq!(
            t.find_any(&phrases),
            Some(("legal action", "Legal\naction"))
        );
    }

    #[test]
    fn prefixes_and_diacritics() {
        let t = TokenizedText::new("Mon compte a été PIRATÉ hier; je pense au suicide.");
        assert_eq!(t.find("pirate*"), Some("PIRATÉ"));
        assert_eq!(t.find("suicid*"), Some("suicide"));
        assert_eq!(t.find("compte a ete"), Some("compte a été"));
        assert_eq!(t.find("pirates"), None, "without * the word must be whole");
        let t = TokenizedText::new("NÃO quero mais viver");
        assert_eq!(t.find("nao quero mais viver"), Some("NÃO quero mais viver"));
    }

    #[test]
    fn gaps_and_suffixes() {
        let t = TokenizedText::new("Ich denke daran, mir das Leben zu nehmen.");
        assert_eq!(
            t.find("mir .. leben .. nehmen"),
            Some("mir das Leben zu nehmen")
        );
        assert_eq!(t.find("mir leben nehmen"), None);
        let t = TokenizedText::new("Redakteurin bei einem Wirtschaftsmagazin");
        assert_eq!(t.find("*magazin"), Some("Wirtschaftsmagazin"));
        assert_eq!(t.find("redakteur*"), Some("Redakteurin"));
        let t = TokenizedText::new("a b c d e f");
        assert_eq!(t.find("a .. e"), Some("a b c d e"));
        assert_eq!(t.find("a .. f"), None, "at most three words between");
        assert_eq!(t.find(".. a"), Some("a"), "a leading gap is meaningless");
    }

    #[test]
    fn all_of_needs_every_group_in_one_clause() {
        let groups = vec![
            vec!["someone".to_string(), "somebody".to_string()],
            vec!["account".to_string(), "log* in".to_string()],
        ];
        let t = TokenizedText::new("Thanks. Somebody logged in to my account last night!");
        assert_eq!(t.find_all_of(&groups), Some("Somebody logged in"));
        let t = TokenizedText::new("Someone from finance asked. My account page is slow.");
        assert_eq!(t.find_all_of(&groups), None, "different clauses");
        assert_eq!(TokenizedText::new("x").find_all_of(&[]), None);
    }
}
