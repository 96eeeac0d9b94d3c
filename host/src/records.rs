//! The host's data: tickets, customers and articles as users supply them (JSON Lines) and as
//! the store keeps them, plus their redacted WIT views for plugins.

use crate::bindings::types;
use crate::manifest::Grants;
use crate::util::sha256_hex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A ticket as it arrives (one JSON object per line). Also accepts the labeled-history
/// format of evaluation data (`labels`, `reference_answer`, ...), which `run` ignores.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TicketInput {
    /// Stable id from the help desk.
    pub id: String,
    /// Subject line.
    #[serde(default)]
    pub subject: String,
    /// First message.
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
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
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

impl TicketInput {
    /// Checks what serde cannot: non-empty id and body, known message authors.
    pub fn check(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("`id` is empty; every ticket needs a stable id".into());
        }
        if self.body.trim().is_empty() && self.subject.trim().is_empty() {
            return Err(format!("ticket {} has neither subject nor body", self.id));
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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TicketRecord {
    /// Content.
    pub input: TicketInput,
    /// Version, from 1.
    pub version: u32,
    /// [`TicketInput::content_hash`].
    pub content_hash: String,
}

/// A CRM customer as imported (one JSON object per line) and stored.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Default)]
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
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
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
        crate::util::sha256_parts(&[
            id.as_bytes(),
            title.as_bytes(),
            body.as_bytes(),
            language.as_bytes(),
            collection.as_bytes(),
        ])
    }

    /// The WIT view.
    pub fn to_wit(&self) -> types::KbArticle {
        types::KbArticle {
            id: self.id.clone(),
            title: self.title.clone(),
            body: self.body.clone(),
            language: self.language.clone(),
            collection: self.collection.clone(),
            version: self.version,
        }
    }
}

/// The ticket as `grants` let the plugin see it.
pub fn redact_ticket(ticket: &TicketRecord, grants: &Grants) -> types::Ticket {
    let t = &ticket.input;
    let granted = |f: &str| grants.ticket_field(f);
    types::Ticket {
        id: t.id.clone(),
        version: ticket.version,
        subject: t.subject.clone(),
        body: t.body.clone(),
        channel: t.channel.clone().filter(|_| granted("channel")),
        language: t.language.clone().filter(|_| granted("language")),
        customer_id: t.customer_id.clone().filter(|_| granted("customer_id")),
        requester: t.requester.clone().filter(|_| granted("requester")),
        tags: granted("tags").then(|| t.tags.clone()),
        messages: granted("messages").then(|| {
            t.messages
                .iter()
                .map(|m| types::Message {
                    author: match m.author.as_str() {
                        "agent" => types::AuthorRole::Agent,
                        "system" => types::AuthorRole::System,
                        _ => types::AuthorRole::Customer,
                    },
                    body: m.body.clone(),
                    sent_at: m.sent_at.clone().unwrap_or_default(),
                })
                .collect()
        }),
        created_at: t.created_at.clone().filter(|_| granted("created_at")),
    }
}

/// The customer as `grants` let the plugin see it.
pub fn redact_customer(c: &CustomerRecord, grants: &Grants) -> types::Customer {
    let g = |f: &str| grants.crm_field(f);
    types::Customer {
        id: c.id.clone(),
        name: c.name.clone().filter(|_| g("name")),
        email: c.email.clone().filter(|_| g("email")),
        tier: c.tier.clone().filter(|_| g("tier")),
        plan: c.plan.clone().filter(|_| g("plan")),
        region: c.region.clone().filter(|_| g("region")),
        language: c.language.clone().filter(|_| g("language")),
        lifetime_value_cents: c.lifetime_value_cents.filter(|_| g("lifetime_value_cents")),
        open_incidents: c.open_incidents.filter(|_| g("open_incidents")),
        account_status: c.account_status.clone().filter(|_| g("account_status")),
        notes: c.notes.clone().filter(|_| g("notes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{CrmGrant, TicketGrant};
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
    fn ungranted_ticket_fields_are_none() {
        let grants = Grants {
            ticket: TicketGrant {
                fields: vec!["customer_id".into()],
            },
            ..Grants::default()
        };
        let t = redact_ticket(&ticket(), &grants);
        assert_eq!(t.customer_id.as_deref(), Some("C-1"));
        assert_eq!(t.requester, None);
        assert_eq!(t.tags, None);
        assert_eq!(t.messages, None);
        assert_eq!(t.version, 3);
    }

    #[test]
    fn ungranted_crm_fields_are_none() {
        let c = CustomerRecord {
            id: "C-1".into(),
            email: Some("x@y.z".into()),
            tier: Some("vip".into()),
            ..Default::default()
        };
        let grants = Grants {
            crm: Some(CrmGrant {
                fields: vec!["tier".into()],
                max_calls: None,
            }),
            ..Grants::default()
        };
        let r = redact_customer(&c, &grants);
        assert_eq!(r.tier.as_deref(), Some("vip"));
        assert_eq!(r.email, None);
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
