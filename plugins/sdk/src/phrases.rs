//! Whole-word phrase matching, for operator rules such as "lawyer" or "legal action".
//!
//! Matching is on lowercase tokens, so `sue` does not fire inside `issue` and `legal action`
//! matches across line breaks and punctuation.

use deskhost_nlp::text::token_ranges;

/// A text prepared for phrase lookups: lowercase tokens with their spans.
pub struct TokenizedText<'a> {
    text: &'a str,
    tokens: Vec<(String, std::ops::Range<usize>)>,
}

impl<'a> TokenizedText<'a> {
    /// Tokenises `text`.
    pub fn new(text: &'a str) -> Self {
        let tokens = token_ranges(text)
            .map(|r| (text[r.clone()].to_lowercase(), r))
            .collect();
        Self { text, tokens }
    }

    /// The first occurrence of `phrase` (any case), as the verbatim text it matched.
    pub fn find(&self, phrase: &str) -> Option<&'a str> {
        let wanted: Vec<String> = token_ranges(phrase)
            .map(|r| phrase[r].to_lowercase())
            .collect();
        if wanted.is_empty() || wanted.len() > self.tokens.len() {
            return None;
        }
        (0..=self.tokens.len() - wanted.len()).find_map(|start| {
            let window = &self.tokens[start..start + wanted.len()];
            window
                .iter()
                .zip(&wanted)
                .all(|((t, _), w)| t == w)
                .then(|| &self.text[window[0].1.start..window[wanted.len() - 1].1.end])
        })
    }

    /// The first of `phrases` found, with the text it matched.
    pub fn find_any<'p>(&self, phrases: &'p [String]) -> Option<(&'p str, &'a str)> {
        phrases
            .iter()
            .find_map(|p| self.find(p).map(|m| (p.as_str(), m)))
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
}
