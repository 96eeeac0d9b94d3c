//! Protocol values to and from the WIT bindings: the one place the rest of the host's data
//! meets the plugin contract (a second WIT version would add its own conversions here).

use crate::bindings::types;
use deskhost_protocol::manifest::Grants;
use deskhost_protocol::proposal::{
    Citation, EscalationPacket, EscalationRequest, Evidence, EvidenceSource, Fact, Labeled,
    Priority, ReplyAbstention, ReplyDraft, ReplyProposal, Sentiment, Severity, TriageProposal,
    round_confidence,
};
use deskhost_protocol::records::{
    ArticleRecord, CustomerRecord, PLUGIN_BODY_BYTES, PLUGIN_MESSAGE_BYTES, PLUGIN_MESSAGES,
    PLUGIN_SUBJECT_BYTES, TicketRecord, head_and_tail,
};

/// The ticket as `grants` let the plugin see it, with long texts shortened (see
/// [`plugin_cuts`]).
pub fn redact_ticket(ticket: &TicketRecord, grants: &Grants) -> types::Ticket {
    let t = &ticket.input;
    let granted = |f: &str| grants.ticket_field(f);
    let skip = t.messages.len().saturating_sub(PLUGIN_MESSAGES);
    types::Ticket {
        id: t.id.clone(),
        version: ticket.version,
        subject: head_and_tail(&t.subject, PLUGIN_SUBJECT_BYTES).into_owned(),
        body: head_and_tail(&t.body, PLUGIN_BODY_BYTES).into_owned(),
        channel: t.channel.clone().filter(|_| granted("channel")),
        language: t.language.clone().filter(|_| granted("language")),
        customer_id: t.customer_id.clone().filter(|_| granted("customer_id")),
        requester: t.requester.clone().filter(|_| granted("requester")),
        tags: granted("tags").then(|| t.tags.clone()),
        messages: granted("messages").then(|| {
            t.messages
                .iter()
                .skip(skip)
                .map(|m| types::Message {
                    author: match m.author.as_str() {
                        "agent" => types::AuthorRole::Agent,
                        "system" => types::AuthorRole::System,
                        _ => types::AuthorRole::Customer,
                    },
                    body: head_and_tail(&m.body, PLUGIN_MESSAGE_BYTES).into_owned(),
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

/// An article as the `kb` capability hands it out.
pub fn article_to_wit(a: &ArticleRecord) -> types::KbArticle {
    types::KbArticle {
        id: a.id.clone(),
        title: a.title.clone(),
        body: a.body.clone(),
        language: a.language.clone(),
        collection: a.collection.clone(),
        version: a.version,
    }
}

fn source(s: types::EvidenceSource) -> EvidenceSource {
    match s {
        types::EvidenceSource::Ticket => EvidenceSource::Ticket,
        types::EvidenceSource::Conversation => EvidenceSource::Conversation,
        types::EvidenceSource::Crm => EvidenceSource::Crm,
        types::EvidenceSource::KbArticle => EvidenceSource::KbArticle,
        types::EvidenceSource::Model => EvidenceSource::Model,
        types::EvidenceSource::Rule => EvidenceSource::Rule,
        types::EvidenceSource::History => EvidenceSource::History,
    }
}

fn evidence(list: &[types::Evidence]) -> Vec<Evidence> {
    list.iter()
        .map(|e| Evidence {
            source: source(e.source),
            reference: e.reference.clone(),
            quote: e.quote.clone(),
        })
        .collect()
}

fn labeled(v: &types::LabeledValue) -> Labeled<String> {
    Labeled {
        value: v.value.clone(),
        confidence: round_confidence(v.confidence),
        evidence: evidence(&v.evidence),
    }
}

/// A WIT priority as the protocol's.
pub fn priority(p: types::Priority) -> Priority {
    match p {
        types::Priority::Low => Priority::Low,
        types::Priority::Medium => Priority::Medium,
        types::Priority::High => Priority::High,
        types::Priority::Urgent => Priority::Urgent,
    }
}

/// A WIT sentiment as the protocol's.
pub fn sentiment(s: types::Sentiment) -> Sentiment {
    match s {
        types::Sentiment::Negative => Sentiment::Negative,
        types::Sentiment::Neutral => Sentiment::Neutral,
        types::Sentiment::Positive => Sentiment::Positive,
    }
}

/// A triage decision as recorded.
pub fn triage_proposal(d: &types::TriageDecision) -> TriageProposal {
    TriageProposal {
        category: labeled(&d.category),
        queue: labeled(&d.queue),
        priority: Labeled {
            value: priority(d.priority.value),
            confidence: round_confidence(d.priority.confidence),
            evidence: evidence(&d.priority.evidence),
        },
        language: labeled(&d.language),
        sentiment: Labeled {
            value: sentiment(d.sentiment.value),
            confidence: round_confidence(d.sentiment.confidence),
            evidence: evidence(&d.sentiment.evidence),
        },
        fields: d
            .extra_fields
            .iter()
            .map(|x| (x.field.clone(), labeled(&x.decision)))
            .collect(),
        tags: d.tags.clone(),
        escalate: d.escalate.as_ref().map(|e| EscalationRequest {
            code: e.code.clone(),
            detail: e.detail.clone(),
            evidence: evidence(&e.evidence),
        }),
        rationale: d.rationale.clone(),
    }
}

fn citations(list: &[types::Citation]) -> Vec<Citation> {
    list.iter()
        .map(|c| Citation {
            article_id: c.article_id.clone(),
            quote: c.quote.clone(),
        })
        .collect()
}

/// A reply proposal as recorded.
pub fn reply_proposal(r: &types::ReplyProposal) -> ReplyProposal {
    match r {
        types::ReplyProposal::Draft(d) => ReplyProposal::Draft(ReplyDraft {
            body: d.body.clone(),
            language: d.language.clone(),
            citations: citations(&d.citations),
            confidence: round_confidence(d.confidence),
        }),
        types::ReplyProposal::Abstain(a) => ReplyProposal::Abstain(ReplyAbstention {
            reason: a.reason.clone(),
            detail: a.detail.clone(),
        }),
    }
}

fn facts(list: &[types::Fact]) -> Vec<Fact> {
    list.iter()
        .map(|f| Fact {
            statement: f.statement.clone(),
            source: source(f.evidence.source),
            reference: f.evidence.reference.clone(),
            quote: f.evidence.quote.clone(),
        })
        .collect()
}

/// An escalation packet as recorded.
pub fn escalation_packet(e: &types::EscalationSummary) -> EscalationPacket {
    EscalationPacket {
        headline: e.headline.clone(),
        reason: e.reason.clone(),
        severity: match e.severity {
            types::Severity::Low => Severity::Low,
            types::Severity::Medium => Severity::Medium,
            types::Severity::High => Severity::High,
            types::Severity::Critical => Severity::Critical,
        },
        recommended_queue: e.recommended_queue.clone(),
        next_step: e.next_step.clone(),
        customer_context: facts(&e.customer_context),
        steps_tried: e.steps_tried.clone(),
        verified_facts: facts(&e.verified_facts),
        open_questions: e.open_questions.clone(),
        summary: e.summary.clone(),
        citations: citations(&e.citations),
        confidence: round_confidence(e.confidence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskhost_protocol::manifest::{CrmGrant, TicketGrant};
    use deskhost_protocol::records::TicketInput;
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
    fn long_bodies_reach_plugins_cut() {
        let mut t = ticket();
        t.input.body = format!("START {} END", "x".repeat(200_000));
        let view = redact_ticket(&t, &Grants::default());
        assert!(view.body.len() < PLUGIN_BODY_BYTES + 100);
        assert!(view.body.starts_with("START ") && view.body.ends_with(" END"));
    }
}
