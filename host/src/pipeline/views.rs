//! The JSON shape of proposals in `deskhost run` output, review items and the store.
//!
//! Written out explicitly (lowercase enum values, stable keys) because it is a public
//! interface: scripts and CI read it.

use crate::bindings::types;
use serde_json::{Value, json};

fn source(s: types::EvidenceSource) -> &'static str {
    match s {
        types::EvidenceSource::Ticket => "ticket",
        types::EvidenceSource::Conversation => "conversation",
        types::EvidenceSource::Crm => "crm",
        types::EvidenceSource::KbArticle => "kb-article",
        types::EvidenceSource::Model => "model",
        types::EvidenceSource::Rule => "rule",
        types::EvidenceSource::History => "history",
    }
}

fn evidence(list: &[types::Evidence]) -> Value {
    Value::Array(list.iter().map(|e| json!({ "source": source(e.source), "reference": e.reference, "quote": e.quote })).collect())
}

fn labeled(v: &types::LabeledValue) -> Value {
    json!({ "value": v.value, "confidence": round(v.confidence), "evidence": evidence(&v.evidence) })
}

fn round(x: f32) -> f64 {
    (f64::from(x) * 10_000.0).round() / 10_000.0
}

/// Lowercase sentiment name.
pub fn sentiment_name(s: types::Sentiment) -> &'static str {
    match s {
        types::Sentiment::Negative => "negative",
        types::Sentiment::Neutral => "neutral",
        types::Sentiment::Positive => "positive",
    }
}

/// A triage decision.
pub fn triage(d: &types::TriageDecision) -> Value {
    let mut fields = serde_json::Map::new();
    for extra in &d.extra_fields {
        fields.insert(extra.field.clone(), labeled(&extra.decision));
    }
    json!({
        "category": labeled(&d.category),
        "queue": labeled(&d.queue),
        "priority": {
            "value": super::gate::priority_name(d.priority.value),
            "confidence": round(d.priority.confidence),
            "evidence": evidence(&d.priority.evidence),
        },
        "language": labeled(&d.language),
        "sentiment": {
            "value": sentiment_name(d.sentiment.value),
            "confidence": round(d.sentiment.confidence),
            "evidence": evidence(&d.sentiment.evidence),
        },
        "fields": fields,
        "tags": d.tags,
        "escalate": d.escalate.as_ref().map(|e| json!({ "code": e.code, "detail": e.detail, "evidence": evidence(&e.evidence) })),
        "rationale": d.rationale,
    })
}

fn citations(list: &[types::Citation]) -> Value {
    Value::Array(
        list.iter()
            .map(|c| json!({ "article_id": c.article_id, "quote": c.quote }))
            .collect(),
    )
}

/// A reply proposal.
pub fn reply(r: &types::ReplyProposal) -> Value {
    match r {
        types::ReplyProposal::Draft(d) => json!({
            "draft": {
                "body": d.body,
                "language": d.language,
                "citations": citations(&d.citations),
                "confidence": round(d.confidence),
            }
        }),
        types::ReplyProposal::Abstain(a) => {
            json!({ "abstain": { "reason": a.reason, "detail": a.detail } })
        }
    }
}

fn facts(list: &[types::Fact]) -> Value {
    Value::Array(
        list.iter()
            .map(|f| {
                json!({
                    "statement": f.statement,
                    "source": source(f.evidence.source),
                    "reference": f.evidence.reference,
                    "quote": f.evidence.quote,
                })
            })
            .collect(),
    )
}

/// An escalation packet.
pub fn escalation(e: &types::EscalationSummary) -> Value {
    let severity = match e.severity {
        types::Severity::Low => "low",
        types::Severity::Medium => "medium",
        types::Severity::High => "high",
        types::Severity::Critical => "critical",
    };
    json!({
        "headline": e.headline,
        "reason": e.reason,
        "severity": severity,
        "recommended_queue": e.recommended_queue,
        "next_step": e.next_step,
        "customer_context": facts(&e.customer_context),
        "steps_tried": e.steps_tried,
        "verified_facts": facts(&e.verified_facts),
        "open_questions": e.open_questions,
        "summary": e.summary,
        "citations": citations(&e.citations),
        "confidence": round(e.confidence),
    })
}
