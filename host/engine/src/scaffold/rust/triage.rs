//! __NAME__: a deskhost triage policy. `./build.sh` builds it; README.md says what next.

wit_bindgen::generate!({ world: "policy", path: "wit", generate_all });

// `Ticket`, `TriageDecision` and `PluginError` come with the world (its `use`).
use deskhost::plugin::types::{
    EscalationRequest, Evidence, EvidenceSource, LabeledValue, LogLevel, Priority, PriorityCall,
    Sentiment, SentimentCall,
};
use deskhost::plugin::{config, log};

/// settings.json.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The category of every ticket (a value of the workspace's taxonomy).
    category: String,
    /// The queue of every ticket (a value of the workspace's taxonomy).
    queue: String,
    /// Words that hand the ticket to a human (lowercase).
    escalate_words: Vec<String>,
}

struct Policy;

impl Guest for Policy {
    fn triage(ticket: Ticket) -> Result<TriageDecision, PluginError> {
        let settings: Settings =
            serde_json::from_str(&config::settings()).map_err(|e| PluginError {
                code: "bad-settings".into(),
                message: format!("settings.json: {e}"),
            })?;
        let text = format!("{}\n{}", ticket.subject, ticket.body).to_lowercase();
        let label = |value: &str| LabeledValue {
            value: value.into(),
            confidence: 0.5,
            evidence: vec![],
        };
        let escalate = settings
            .escalate_words
            .iter()
            .find(|w| text.contains(w.as_str()))
            .map(|w| {
                log::log(LogLevel::Info, &format!("escalating: the ticket says {w:?}"));
                EscalationRequest {
                    code: "keyword".into(),
                    detail: format!("the ticket says \"{w}\""),
                    evidence: vec![Evidence {
                        source: EvidenceSource::Ticket,
                        reference: "ticket.body".into(),
                        quote: w.clone(),
                    }],
                }
            });
        Ok(TriageDecision {
            category: label(&settings.category),
            queue: label(&settings.queue),
            priority: PriorityCall {
                value: if escalate.is_some() { Priority::High } else { Priority::Medium },
                confidence: 0.5,
                evidence: vec![],
            },
            language: label(ticket.language.as_deref().unwrap_or("und")),
            sentiment: SentimentCall {
                value: Sentiment::Neutral,
                confidence: 0.5,
                evidence: vec![],
            },
            extra_fields: vec![],
            tags: vec![],
            rationale: format!("category {}, queue {}", settings.category, settings.queue),
            escalate,
        })
    }
}

export!(Policy);
