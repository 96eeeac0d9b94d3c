//! Text that came from a ticket, a plugin or a file, made safe to show an operator.
//!
//! Ticket ids, subjects, guest panic text and log lines are hostile: an ESC sequence can
//! retitle a terminal, clear the screen or hide lines; a bidi override can make text read
//! differently than it is stored. [`terminal`] renders every control character (C0 except
//! line feed and tab, DEL, C1) and every bidi or invisible formatting character as a visible
//! escape such as `\x1b` or `\u{202e}`; [`field`] also escapes line breaks and tabs, for
//! values that must stay on one line. JSON output needs neither: serde escapes controls.

use std::borrow::Cow;
use std::fmt::Write;

/// Characters that reorder or hide text: bidi embeddings, overrides and isolates, marks,
/// zero-width characters and the BOM.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{061C}'
    )
}

fn unsafe_char(c: char, keep_layout: bool) -> bool {
    match c {
        '\n' | '\t' => !keep_layout,
        c if c.is_control() => true,
        c => is_invisible_format(c),
    }
}

fn escape(s: &str, keep_layout: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| unsafe_char(c, keep_layout)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c, keep_layout) {
            out.push(c);
            continue;
        }
        let _ = match c {
            '\n' => write!(out, "\\n"),
            '\t' => write!(out, "\\t"),
            '\r' => write!(out, "\\r"),
            c if (c as u32) < 0x100 => write!(out, "\\x{:02x}", c as u32),
            c => write!(out, "\\u{{{:x}}}", c as u32),
        };
    }
    Cow::Owned(out)
}

/// `s` with every control and invisible formatting character shown as an escape; line
/// feeds and tabs are kept (multi-line text such as a panic message or a report).
pub fn terminal(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// `s` on one line: like [`terminal`], and line feeds and tabs are escaped too (ids,
/// subjects, names).
pub fn field(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// At most `max` bytes of `s` (cut at a character boundary), with a visible marker that
/// says how much was cut. Everything a plugin hands back goes through here.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!(
        "{}…[truncated: {} of {} bytes shown]",
        &s[..cut],
        cut,
        s.len()
    ))
}

/// Whether `s` holds a character an identifier must not: a control, a bidi or invisible
/// formatting character.
pub fn has_hidden_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control() || is_invisible_format(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_executed() {
        let id = "T-1\x1b]0;pwned\x07\x1b[2J";
        assert_eq!(field(id), "T-1\\x1b]0;pwned\\x07\\x1b[2J");
        assert_eq!(terminal("a\nb\tc\u{9b}"), "a\nb\tc\\x9b");
        assert_eq!(field("a\nb"), "a\\nb");
        assert_eq!(
            field("invoice\u{202e}fdp.exe"),
            "invoice\\u{202e}fdp.exe",
            "a right-to-left override is visible"
        );
        assert!(matches!(
            terminal("plain text, ünïcode ok"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn truncation_is_marked_and_respects_characters() {
        assert_eq!(truncate("short", 10), "short");
        let t = truncate("ééééé", 3);
        assert_eq!(t, "é…[truncated: 2 of 10 bytes shown]");
    }

    #[test]
    fn hidden_characters_are_found() {
        assert!(has_hidden_chars("T-1\u{7}"));
        assert!(has_hidden_chars("T\u{200b}1"));
        assert!(!has_hidden_chars("Ticket Ω-7"));
    }
}
