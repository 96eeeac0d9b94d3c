//! The host's data: tickets, customers and articles as users supply them (JSON Lines) and as
//! the store keeps them, plus their redacted WIT views for plugins.

use crate::digest::sha256_hex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A ticket as it arrives (one JSON object per line). Also accepts the labeled-history
/// format of evaluation data (`labels`, `reference_answer`, ...), which `run` ignores.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketInput {
    /// Stable id from the help desk.
    pub id: String,
    /// Subject line.
    #[serde(default)]
    pub subject: String,
    /// First message (may be empty: such a ticket goes to a human).
    #[serde(default)]
    pub body: String,
    /// `email`, `chat`, `web`, `social`, `phone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Language tag, if the channel knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// CRM customer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Requester address or handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// Tags already set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Follow-up messages, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageInput>,
    /// Creation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Labels a human set (evaluation data).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The answer a human sent (evaluation data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_answer: Option<String>,
    /// Customer details carried by some datasets (evaluation data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<serde_json::Value>,
    /// Human handle time in seconds (evaluation data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_seconds: Option<f64>,
}

/// A follow-up message.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageInput {
    /// `customer`, `agent` or `system`.
    pub author: String,
    /// Text.
    pub body: String,
    /// Sent time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
}

/// Longest id accepted for a ticket, customer or article.
pub const MAX_ID_BYTES: usize = 128;
/// Most tags a ticket may carry, and the longest tag.
pub const MAX_TAGS: usize = 100;
const MAX_TAG_BYTES: usize = 128;
/// Most follow-up messages kept per ticket.
pub const MAX_MESSAGES: usize = 500;

/// Checks an identifier from the outside world (`what` names it in the error): 1 to
/// [`MAX_ID_BYTES`] bytes, no surrounding white space, no control or invisible formatting
/// characters (they would reach terminals, file names and URLs).
pub fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err(format!("`{what}` is empty; it must be a stable identifier"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "`{what}` is {} bytes long; at most {MAX_ID_BYTES} are allowed",
            id.len()
        ));
    }
    if crate::sanitize::has_hidden_chars(id) {
        return Err(format!(
            "`{what}` \"{}\" contains control or invisible characters; use printable text",
            crate::sanitize::field(id)
        ));
    }
    if id.trim() != id {
        return Err(format!(
            "`{what}` \"{id}\" starts or ends with white space; remove it"
        ));
    }
    Ok(())
}

/// Checks a KB collection name: lowercase letters, digits, `-` and `_`, 1 to 64 characters,
/// starting with a letter or digit (collections appear in grants and file paths).
pub fn check_collection(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "collection \"{}\" is not a valid name; use lowercase letters, digits, '-' and '_' (at most 64), e.g. \"public\"",
            crate::sanitize::field(name)
        ))
    }
}

impl TicketInput {
    /// Checks what serde cannot: a valid id (and customer id), bounded tags and messages,
    /// known message authors. A ticket with neither subject nor body is valid: it is stored
    /// and sent to a human.
    pub fn check(&self) -> Result<(), String> {
        check_id("id", &self.id)?;
        if let Some(c) = &self.customer_id {
            check_id("customer_id", c).map_err(|e| format!("ticket {}: {e}", self.id))?;
        }
        if self.tags.len() > MAX_TAGS
            || self
                .tags
                .iter()
                .any(|t| t.len() > MAX_TAG_BYTES || crate::sanitize::has_hidden_chars(t))
        {
            return Err(format!(
                "ticket {}: at most {MAX_TAGS} tags of at most {MAX_TAG_BYTES} bytes each, without control characters",
                self.id
            ));
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(format!(
                "ticket {}: {} messages; at most {MAX_MESSAGES} are accepted",
                self.id,
                self.messages.len()
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if !matches!(m.author.as_str(), "customer" | "agent" | "system") {
                return Err(format!(
                    "ticket {}: messages[{i}].author is \"{}\"; use customer, agent or system",
                    self.id, m.author
                ));
            }
        }
        Ok(())
    }

    /// Whether the ticket has no text at all: no subject, no body, no message with words
    /// (a human must look at it).
    pub fn is_blank(&self) -> bool {
        self.subject.trim().is_empty()
            && self.body.trim().is_empty()
            && self.messages.iter().all(|m| m.body.trim().is_empty())
    }

    /// Hash of the content that decides the ticket (evaluation labels excluded), so a
    /// re-import of the same ticket is the same version.
    pub fn content_hash(&self) -> String {
        let content = TicketInput {
            labels: BTreeMap::new(),
            reference_answer: None,
            customer: None,
            handle_seconds: None,
            ..self.clone()
        };
        sha256_hex(&serde_json::to_vec(&content).unwrap_or_default())
    }
}

/// A stored ticket version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct TicketRecord {
    /// Content.
    pub input: TicketInput,
    /// Version, from 1.
    pub version: u32,
    /// [`TicketInput::content_hash`].
    pub content_hash: String,
}

/// A CRM customer as imported (one JSON object per line) and stored.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerRecord {
    /// CRM id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Contact address.
    #[serde(default)]
    pub email: Option<String>,
    /// Service tier.
    #[serde(default)]
    pub tier: Option<String>,
    /// Plan.
    #[serde(default)]
    pub plan: Option<String>,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// Preferred language.
    #[serde(default)]
    pub language: Option<String>,
    /// Lifetime value, smallest currency unit.
    #[serde(default)]
    pub lifetime_value_cents: Option<u64>,
    /// Open incidents.
    #[serde(default)]
    pub open_incidents: Option<u32>,
    /// Account status.
    #[serde(default)]
    pub account_status: Option<String>,
    /// Staff notes.
    #[serde(default)]
    pub notes: Option<String>,
}

/// A knowledge-base article as imported and stored.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArticleRecord {
    /// Article id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Body (plain text or Markdown).
    pub body: String,
    /// Language tag.
    #[serde(default = "default_language")]
    pub language: String,
    /// Collection (grants are per collection).
    #[serde(default = "default_collection")]
    pub collection: String,
    /// Version (set by the store).
    #[serde(default)]
    pub version: u32,
}

fn default_language() -> String {
    "en".into()
}

fn default_collection() -> String {
    "public".into()
}

impl ArticleRecord {
    /// Hash of the content (version excluded).
    pub fn content_hash(&self) -> String {
        let ArticleRecord {
            id,
            title,
            body,
            language,
            collection,
            version: _,
        } = self;
        crate::digest::sha256_parts(&[
            id.as_bytes(),
            title.as_bytes(),
            body.as_bytes(),
            language.as_bytes(),
            collection.as_bytes(),
        ])
    }
}

/// The most of a body a plugin is handed (head and tail of longer ones): a policy decides
/// on the opening and the latest words, and its fuel and deadline stay predictable.
pub const PLUGIN_BODY_BYTES: usize = 32 * 1024;
/// The most of a subject a plugin is handed.
pub const PLUGIN_SUBJECT_BYTES: usize = 1024;
/// The most of each follow-up message a plugin is handed.
pub const PLUGIN_MESSAGE_BYTES: usize = 8 * 1024;
/// The latest follow-up messages a plugin is handed.
pub const PLUGIN_MESSAGES: usize = 50;

/// A part of a ticket the host shortened before handing it to plugins (recorded in the run's
/// inputs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cut {
    /// `subject`, `body`, `messages` or `messages[i]`.
    pub field: String,
    /// Bytes (or, for `messages`, messages) in the ticket.
    pub original: usize,
    /// Bytes (or messages) handed to plugins.
    pub kept: usize,
}

/// `s` if it fits `max` bytes, else its head (three quarters) and tail joined by a marker
/// that says how much was left out.
pub fn head_and_tail(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut head = max * 3 / 4;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - (max - max * 3 / 4);
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}\n\n[… {} bytes left out by deskhost …]\n\n{}",
        &s[..head],
        tail - head,
        &s[tail..]
    ))
}

/// What [`redact_ticket`] shortens of this ticket.
pub fn plugin_cuts(t: &TicketInput) -> Vec<Cut> {
    let mut cuts = Vec::new();
    let mut cut = |field: String, text: &str, max: usize| {
        let kept = head_and_tail(text, max).len();
        if kept != text.len() {
            cuts.push(Cut {
                field,
                original: text.len(),
                kept,
            });
        }
    };
    cut("subject".into(), &t.subject, PLUGIN_SUBJECT_BYTES);
    cut("body".into(), &t.body, PLUGIN_BODY_BYTES);
    let skip = t.messages.len().saturating_sub(PLUGIN_MESSAGES);
    for (i, m) in t.messages.iter().enumerate().skip(skip) {
        cut(format!("messages[{i}]"), &m.body, PLUGIN_MESSAGE_BYTES);
    }
    if skip > 0 {
        cuts.push(Cut {
            field: "messages".into(),
            original: t.messages.len(),
            kept: PLUGIN_MESSAGES,
        });
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn ticket() -> TicketRecord {
        let input: TicketInput = serde_json::from_str(
            r#"{"id":"T-1","subject":"s","body":"b","customer_id":"C-1","requester":"a@b.c","tags":["x"],
                "messages":[{"author":"agent","body":"hi"}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        TicketRecord {
            content_hash: input.content_hash(),
            input,
            version: 3,
        }
    }

    #[test]
    fn long_bodies_are_cut_to_head_and_tail() {
        let mut t = ticket();
        t.input.body = format!("START {} END", "x".repeat(200_000));
        let cut = head_and_tail(&t.input.body, PLUGIN_BODY_BYTES);
        assert!(cut.len() < PLUGIN_BODY_BYTES + 100);
        assert!(cut.starts_with("START ") && cut.ends_with(" END"));
        assert!(cut.contains("bytes left out by deskhost"));
        let cuts = plugin_cuts(&t.input);
        assert_eq!(cuts.len(), 1);
        assert_eq!(
            (cuts[0].field.as_str(), cuts[0].original),
            ("body", 200_010)
        );
        assert!(plugin_cuts(&ticket().input).is_empty());
        // Multi-byte characters are never split.
        let s = "é".repeat(40_000);
        let cut = head_and_tail(&s, 1001);
        assert!(cut.starts_with('é') && cut.ends_with('é'));
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("id", "T-1").is_ok());
        for bad in ["", " T-1", "T-1\u{1b}[2J", &"x".repeat(200), "T\u{202e}1"] {
            assert!(check_id("id", bad).is_err(), "{bad:?}");
        }
        assert!(check_collection("public").is_ok());
        for bad in ["../../etc", "", "Public", "a/b", "-x"] {
            assert!(check_collection(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_do_not_change_the_version_hash() {
        let mut a = ticket().input;
        let h = a.content_hash();
        a.labels.insert("queue".into(), "billing".into());
        assert_eq!(a.content_hash(), h);
        a.body.push('!');
        assert_ne!(a.content_hash(), h);
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let e = serde_json::from_str::<TicketInput>(r#"{"id":"1","body":"b","subjet":"typo"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("subjet"), "{e}");
    }
}
