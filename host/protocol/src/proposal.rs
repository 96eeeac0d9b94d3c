//! What policies propose, as the host records and shows it (`deskhost run` output, review
//! items, the store). The runtime converts the plugins' WIT values into these; confidences
//! are rounded to four decimals here so that the recorded JSON is stable.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a piece of evidence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceSource {
    /// The ticket's own text or fields.
    Ticket,
    /// A follow-up message.
    Conversation,
    /// The CRM record.
    Crm,
    /// A knowledge-base article.
    KbArticle,
    /// A model's features.
    Model,
    /// An operator rule.
    Rule,
    /// Earlier tickets.
    History,
}

/// What a decision rests on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Evidence {
    /// Its source.
    pub source: EvidenceSource,
    /// Which one (rule id, article id, field, model name).
    pub reference: String,
    /// The words it rests on.
    pub quote: String,
}

/// A value with its confidence and evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Labeled<T> {
    /// The value.
    pub value: T,
    /// Probability in 0..1, rounded to four decimals (`null` when a plugin sent NaN or an
    /// infinity, which JSON cannot hold).
    #[serde(with = "confidence")]
    #[schemars(with = "Option<f64>")]
    pub confidence: f64,
    /// What it rests on.
    pub evidence: Vec<Evidence>,
}

/// A ticket's priority.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Urgent.
    Urgent,
}

impl Priority {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

/// The customer's sentiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sentiment {
    /// Negative.
    Negative,
    /// Neutral.
    Neutral,
    /// Positive.
    Positive,
}

impl Sentiment {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Negative => "negative",
            Sentiment::Neutral => "neutral",
            Sentiment::Positive => "positive",
        }
    }
}

/// A request for a person to take over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EscalationRequest {
    /// Why, as a code (`legal-threat`, `self-harm`, ...).
    pub code: String,
    /// Readable detail.
    pub detail: String,
    /// What it rests on.
    pub evidence: Vec<Evidence>,
}

/// A triage decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TriageProposal {
    /// Category (intent).
    pub category: Labeled<String>,
    /// Queue.
    pub queue: Labeled<String>,
    /// Priority.
    pub priority: Labeled<Priority>,
    /// Language tag.
    pub language: Labeled<String>,
    /// Sentiment.
    pub sentiment: Labeled<Sentiment>,
    /// Further fields (other model heads), by name.
    pub fields: BTreeMap<String, Labeled<String>>,
    /// Tags to add.
    pub tags: Vec<String>,
    /// Set when a person must take over.
    pub escalate: Option<EscalationRequest>,
    /// Why, in a sentence.
    pub rationale: String,
}

impl TriageProposal {
    /// The lowest confidence among category, queue, priority and language (what the gate
    /// compares with its threshold).
    pub fn confidence(&self) -> f64 {
        [
            self.category.confidence,
            self.queue.confidence,
            self.priority.confidence,
            self.language.confidence,
        ]
        .into_iter()
        .fold(1.0, f64::min)
    }
}

/// A citation of a knowledge-base article.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Citation {
    /// The article.
    pub article_id: String,
    /// A verbatim span of it.
    pub quote: String,
}

/// A reply draft grounded in the knowledge base.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplyDraft {
    /// The text for the customer.
    pub body: String,
    /// Its language.
    pub language: String,
    /// The articles it rests on.
    pub citations: Vec<Citation>,
    /// Confidence, rounded to four decimals (`null` for NaN or an infinity).
    #[serde(with = "confidence")]
    #[schemars(with = "Option<f64>")]
    pub confidence: f64,
}

/// Why the reply policy wrote nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplyAbstention {
    /// A code (`needs-human`, `no-relevant-article`, ...).
    pub reason: String,
    /// Readable detail.
    pub detail: String,
}

/// A reply proposal: `{"draft": …}` or `{"abstain": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplyProposal {
    /// A draft for a person to approve.
    Draft(ReplyDraft),
    /// No draft.
    Abstain(ReplyAbstention),
}

/// How serious an escalation is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// A statement in a hand-off packet with its evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Fact {
    /// The statement.
    pub statement: String,
    /// Where it comes from.
    pub source: EvidenceSource,
    /// Which one.
    pub reference: String,
    /// The words it rests on.
    pub quote: String,
}

/// The hand-off packet for the person who takes over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EscalationPacket {
    /// One line.
    pub headline: String,
    /// Why a person must take over.
    pub reason: String,
    /// How serious.
    pub severity: Severity,
    /// Where it should go.
    pub recommended_queue: String,
    /// The first thing to do.
    pub next_step: String,
    /// What the CRM and earlier tickets say.
    pub customer_context: Vec<Fact>,
    /// What the customer already tried.
    pub steps_tried: Vec<String>,
    /// Facts with their evidence.
    pub verified_facts: Vec<Fact>,
    /// What is still unknown.
    pub open_questions: Vec<String>,
    /// A short summary of the conversation.
    pub summary: String,
    /// Articles cited.
    pub citations: Vec<Citation>,
    /// Confidence, rounded to four decimals (`null` for NaN or an infinity).
    #[serde(with = "confidence")]
    #[schemars(with = "Option<f64>")]
    pub confidence: f64,
}

/// Rounds a confidence to four decimals (what records keep).
pub fn round_confidence(x: f32) -> f64 {
    (f64::from(x) * 10_000.0).round() / 10_000.0
}

/// A confidence as JSON: a number, or `null` for a value JSON cannot hold (a plugin's NaN or
/// infinity, kept so a reviewer sees the proposal), read back as NaN.
pub(crate) mod confidence {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() {
            s.serialize_f64(*x)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_confidence_is_recorded_as_null_and_read_back() {
        let l = Labeled {
            value: "billing".to_string(),
            confidence: f64::NAN,
            evidence: vec![],
        };
        let json = serde_json::to_string(&l).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"value":"billing","confidence":null,"evidence":[]}"#
        );
        let back: Labeled<String> = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.confidence.is_nan());
    }
}
