//! The operator's gate: which proposed effects apply now and what goes to a human.
//!
//! Fails closed: a plugin fault or an invalid proposal applies nothing; a risk rule applies
//! nothing; a customer-facing reply is never sent, it becomes a review item. Otherwise each
//! allowed effect applies when its field clears its threshold, and the fields that do not
//! clear it are reviewed.

use crate::bindings::types;
use crate::config::{EffectKind, GateConfig};
use crate::runtime::fault::FaultKind;
pub use deskhost_protocol::gate::{Effect, GateDecision, ReviewCode, ReviewReason};

/// Escalations a person always handles, whatever `[gate.risk] review_escalations` says
/// (like the hand-offs mature help desks do not let anyone switch off): a rule or model
/// that raises one of these codes holds every effect of the ticket for review.
pub const MANDATORY_REVIEW_ESCALATIONS: &[&str] = &[
    "self-harm",
    "account-takeover",
    "security-incident",
    "payment-dispute",
    "regulator-complaint",
    "media-inquiry",
    "legal-threat",
    "outage",
];

/// The facts the gate decides on.
pub struct GateInput<'a> {
    /// The validated triage decision (None if it faulted or failed checks).
    pub triage: Option<&'a types::TriageDecision>,
    /// The validated reply proposal.
    pub reply: Option<&'a types::ReplyProposal>,
    /// The validated escalation packet.
    pub escalation: Option<&'a types::EscalationSummary>,
    /// Faults and invalid proposals, as (stage, kind, message).
    pub faults: Vec<(String, FaultKind, String)>,
    /// The customer's CRM tier (the host reads it; plugins may not see it).
    pub customer_tier: Option<String>,
}

fn priority_rank(p: &str) -> u8 {
    match p {
        "low" => 0,
        "medium" => 1,
        "high" => 2,
        _ => 3,
    }
}

/// Lowercase priority name.
pub fn priority_name(p: types::Priority) -> &'static str {
    match p {
        types::Priority::Low => "low",
        types::Priority::Medium => "medium",
        types::Priority::High => "high",
        types::Priority::Urgent => "urgent",
    }
}

/// Runs the gate.
pub fn decide(config: &GateConfig, input: &GateInput<'_>) -> GateDecision {
    let mut out = GateDecision::default();
    for (stage, kind, message) in &input.faults {
        let code = if *kind == FaultKind::InvalidOutput {
            ReviewCode::InvalidProposal
        } else {
            ReviewCode::PluginFault
        };
        out.reasons.push(ReviewReason::new(
            code,
            format!("{stage}: {kind}: {message}"),
        ));
    }
    let mut proposed: Vec<(Effect, Option<(&str, f32)>)> = Vec::new();
    if let Some(t) = input.triage {
        let risk = &config.risk;
        if risk
            .always_review_categories
            .iter()
            .any(|c| c == &t.category.value)
        {
            out.reasons.push(ReviewReason::new(
                ReviewCode::RiskCategory,
                format!("category {} is always reviewed", t.category.value),
            ));
        }
        if let Some(tier) = &input.customer_tier
            && risk
                .review_customer_tiers
                .iter()
                .any(|x| x.eq_ignore_ascii_case(tier))
        {
            out.reasons.push(ReviewReason::new(
                ReviewCode::RiskCustomerTier,
                format!("customer tier {tier} is always reviewed"),
            ));
        }
        let priority = priority_name(t.priority.value);
        if let Some(min) = &risk.negative_sentiment_min_priority
            && t.sentiment.value == types::Sentiment::Negative
            && priority_rank(priority) >= priority_rank(min)
        {
            out.reasons.push(ReviewReason::new(
                ReviewCode::RiskNegativeSentiment,
                format!("negative sentiment at {priority} priority"),
            ));
        }
        if let Some(e) = &t.escalate
            && (risk.review_escalations || MANDATORY_REVIEW_ESCALATIONS.contains(&e.code.as_str()))
        {
            out.reasons.push(ReviewReason::new(
                ReviewCode::Escalation,
                format!("{}: {}", e.code, e.detail),
            ));
        }
        proposed.push((
            Effect::Category {
                value: t.category.value.clone(),
            },
            Some(("category", t.category.confidence)),
        ));
        proposed.push((
            Effect::Queue {
                value: t.queue.value.clone(),
            },
            Some(("queue", t.queue.confidence)),
        ));
        proposed.push((
            Effect::Priority {
                value: priority.into(),
            },
            Some(("priority", t.priority.confidence)),
        ));
        proposed.push((
            Effect::Language {
                value: t.language.value.clone(),
            },
            Some(("language", t.language.confidence)),
        ));
        if !t.tags.is_empty() {
            proposed.push((
                Effect::Tags {
                    values: t.tags.clone(),
                },
                None,
            ));
        }
        proposed.push((
            Effect::InternalNote {
                body: format!("Triage: {}", t.rationale),
            },
            None,
        ));
    }
    if let Some(e) = input.escalation {
        proposed.push((
            Effect::InternalNote {
                body: escalation_note(e),
            },
            None,
        ));
    }
    if let Some(types::ReplyProposal::Draft(d)) = input.reply {
        out.reasons.push(ReviewReason::new(
            ReviewCode::ReplyApproval,
            format!(
                "customer-facing reply draft ({}, confidence {:.2}) awaits approval",
                d.language, d.confidence
            ),
        ));
    }

    let blocked = out
        .reasons
        .iter()
        .any(|r| r.code != ReviewCode::ReplyApproval);
    for (effect, field) in proposed {
        let kind = effect_kind(&effect);
        let allowed = config.auto_apply.contains(&kind);
        let clears = match field {
            None => true,
            Some((name, confidence)) => match config.thresholds.get(name) {
                Some(&threshold) if confidence >= threshold => true,
                Some(&threshold) => {
                    if allowed && !blocked {
                        out.reasons.push(ReviewReason::new(
                            ReviewCode::LowConfidence,
                            format!("{name} {} at {confidence:.2} is below the {threshold:.2} threshold", effect_value(&effect)),
                        ));
                    }
                    false
                }
                None => false,
            },
        };
        if allowed && clears && !blocked {
            out.apply.push(effect);
        } else {
            out.held.push(effect);
        }
    }
    out
}

fn effect_kind(e: &Effect) -> EffectKind {
    match e {
        Effect::Category { .. } => EffectKind::Category,
        Effect::Queue { .. } => EffectKind::Queue,
        Effect::Priority { .. } => EffectKind::Priority,
        Effect::Language { .. } => EffectKind::Language,
        Effect::Tags { .. } => EffectKind::Tags,
        Effect::InternalNote { .. } => EffectKind::InternalNote,
    }
}

fn effect_value(e: &Effect) -> String {
    match e {
        Effect::Category { value }
        | Effect::Queue { value }
        | Effect::Priority { value }
        | Effect::Language { value } => value.clone(),
        Effect::Tags { values } => values.join(","),
        Effect::InternalNote { .. } => "note".into(),
    }
}

/// The escalation packet as an internal note.
pub fn escalation_note(e: &types::EscalationSummary) -> String {
    let severity = match e.severity {
        types::Severity::Low => "low",
        types::Severity::Medium => "medium",
        types::Severity::High => "high",
        types::Severity::Critical => "critical",
    };
    let mut s = format!(
        "Escalation [{severity}] {}\nReason: {}\nNext step: {}\n",
        e.headline, e.reason, e.next_step
    );
    if !e.summary.is_empty() {
        s.push_str(&format!("Summary: {}\n", e.summary));
    }
    for f in &e.customer_context {
        s.push_str(&format!("- customer: {}\n", f.statement));
    }
    for step in &e.steps_tried {
        s.push_str(&format!("- tried: {step}\n"));
    }
    for f in &e.verified_facts {
        s.push_str(&format!(
            "- fact: {} ({})\n",
            f.statement, f.evidence.reference
        ));
    }
    for q in &e.open_questions {
        s.push_str(&format!("- open: {q}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RiskRules;
    use std::collections::BTreeMap;

    fn lv(value: &str, confidence: f32) -> types::LabeledValue {
        types::LabeledValue {
            value: value.into(),
            confidence,
            evidence: vec![],
        }
    }

    fn triage(category: &str, confidence: f32) -> types::TriageDecision {
        types::TriageDecision {
            category: lv(category, confidence),
            queue: lv("billing", 0.95),
            priority: types::PriorityCall {
                value: types::Priority::Medium,
                confidence: 0.9,
                evidence: vec![],
            },
            language: lv("en", 0.99),
            sentiment: types::SentimentCall {
                value: types::Sentiment::Neutral,
                confidence: 0.7,
                evidence: vec![],
            },
            extra_fields: vec![],
            tags: vec![],
            escalate: None,
            rationale: "r".into(),
        }
    }

    fn config() -> GateConfig {
        GateConfig {
            auto_apply: vec![
                EffectKind::Category,
                EffectKind::Queue,
                EffectKind::Priority,
                EffectKind::InternalNote,
            ],
            thresholds: BTreeMap::from([
                ("category".into(), 0.8),
                ("queue".into(), 0.8),
                ("priority".into(), 0.7),
            ]),
            risk: RiskRules {
                always_review_categories: vec!["security".into()],
                ..RiskRules::default()
            },
        }
    }

    fn input(t: &types::TriageDecision) -> GateInput<'_> {
        GateInput {
            triage: Some(t),
            reply: None,
            escalation: None,
            faults: vec![],
            customer_tier: None,
        }
    }

    #[test]
    fn confident_fields_apply_and_weak_ones_are_reviewed() {
        let t = triage("billing", 0.6);
        let d = decide(&config(), &input(&t));
        assert!(d.apply.contains(&Effect::Queue {
            value: "billing".into()
        }));
        assert!(d.held.contains(&Effect::Category {
            value: "billing".into()
        }));
        assert_eq!(d.reasons.len(), 1);
        assert_eq!(d.reasons[0].code, ReviewCode::LowConfidence);
        // language is not in auto_apply: held without a reason of its own
        assert!(d.held.contains(&Effect::Language { value: "en".into() }));
    }

    #[test]
    fn risk_and_faults_apply_nothing() {
        let t = triage("security", 0.99);
        let d = decide(&config(), &input(&t));
        assert!(d.apply.is_empty());
        assert_eq!(d.reasons[0].code, ReviewCode::RiskCategory);
        let t = triage("billing", 0.99);
        let mut i = input(&t);
        i.faults
            .push(("reply".into(), FaultKind::Deadline, "50 ms".into()));
        let d = decide(&config(), &i);
        assert!(d.apply.is_empty());
        assert_eq!(d.reasons[0].code, ReviewCode::PluginFault);
    }

    #[test]
    fn high_risk_escalations_are_reviewed_even_when_escalation_review_is_off() {
        let mut c = config();
        c.risk.review_escalations = false;
        let mut t = triage("billing", 0.99);
        t.escalate = Some(types::EscalationRequest {
            code: "vip".into(),
            detail: "d".into(),
            evidence: vec![],
        });
        assert!(
            decide(&c, &input(&t)).reasons.is_empty(),
            "an ordinary escalation"
        );
        for code in MANDATORY_REVIEW_ESCALATIONS {
            t.escalate = Some(types::EscalationRequest {
                code: (*code).into(),
                detail: "d".into(),
                evidence: vec![],
            });
            let d = decide(&c, &input(&t));
            assert_eq!(d.reasons[0].code, ReviewCode::Escalation, "{code}");
            assert!(d.apply.is_empty(), "{code}: nothing applies");
        }
    }

    #[test]
    fn a_reply_draft_is_reviewed_but_does_not_block_routing() {
        let t = triage("billing", 0.99);
        let draft = types::ReplyProposal::Draft(types::ReplyDraft {
            body: "b".into(),
            language: "en".into(),
            citations: vec![],
            confidence: 0.9,
        });
        let mut i = input(&t);
        i.reply = Some(&draft);
        let d = decide(&config(), &i);
        assert_eq!(
            d.reasons.iter().map(|r| r.code).collect::<Vec<_>>(),
            vec![ReviewCode::ReplyApproval]
        );
        assert!(d.apply.contains(&Effect::Category {
            value: "billing".into()
        }));
    }
}
