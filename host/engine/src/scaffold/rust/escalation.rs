//! __NAME__: a deskhost escalation policy. `./build.sh` builds it; README.md says what next.

wit_bindgen::generate!({ world: "policy", path: "wit", generate_all });

use deskhost::plugin::config;
// `Ticket`, `TriageDecision`, `ReplyProposal`, `EscalationSummary` and `PluginError` come
// with the world (its `use`).
use deskhost::plugin::types::{Priority, Severity};

/// settings.json.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// What the human should do first.
    next_step: String,
}

struct Policy;

impl Guest for Policy {
    fn escalate(
        ticket: Ticket,
        triage: TriageDecision,
        reply: Option<ReplyProposal>,
    ) -> Result<EscalationSummary, PluginError> {
        let settings: Settings =
            serde_json::from_str(&config::settings()).map_err(|e| PluginError {
                code: "bad-settings".into(),
                message: format!("settings.json: {e}"),
            })?;
        let reason = triage.escalate.as_ref().map_or_else(
            || "the triage policy asked for a human".to_string(),
            |e| format!("{}: {}", e.code, e.detail),
        );
        let severity = match triage.priority.value {
            Priority::Urgent => Severity::Critical,
            Priority::High => Severity::High,
            Priority::Medium => Severity::Medium,
            Priority::Low => Severity::Low,
        };
        let mut open_questions = Vec::new();
        if let Some(ReplyProposal::Abstain(a)) = &reply {
            open_questions.push(format!("no reply draft: {}", a.detail));
        }
        let headline = if ticket.subject.trim().is_empty() {
            format!("Ticket {}", ticket.id)
        } else {
            ticket.subject.clone()
        };
        Ok(EscalationSummary {
            headline,
            reason,
            customer_context: vec![],
            steps_tried: vec![],
            verified_facts: vec![],
            open_questions,
            severity,
            recommended_queue: triage.queue.value.clone(),
            next_step: settings.next_step,
            summary: ticket.body.chars().take(300).collect(),
            citations: vec![],
            confidence: 0.5,
        })
    }
}

export!(Policy);
