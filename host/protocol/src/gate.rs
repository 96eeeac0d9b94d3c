//! What the gate decides: effects applied or held, and why a person must look.

use serde::{Deserialize, Serialize};

/// An effect on the ticket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// Set the category.
    Category {
        /// New value.
        value: String,
    },
    /// Route to a queue.
    Queue {
        /// New value.
        value: String,
    },
    /// Set the priority.
    Priority {
        /// New value.
        value: String,
    },
    /// Set the language.
    Language {
        /// New value.
        value: String,
    },
    /// Add tags.
    Tags {
        /// Tags to add.
        values: Vec<String>,
    },
    /// Add an internal note.
    InternalNote {
        /// Note text.
        body: String,
    },
}

/// Why a ticket needs a person.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewCode {
    /// A plugin faulted (deadline, fuel, memory, panic, ...).
    PluginFault,
    /// A proposal failed the host's checks.
    InvalidProposal,
    /// The category is one the operator always reviews.
    RiskCategory,
    /// The customer's tier is one the operator always reviews.
    RiskCustomerTier,
    /// Negative sentiment at a high priority.
    RiskNegativeSentiment,
    /// The triage decision asked for a person.
    Escalation,
    /// A field the operator auto-applies is below its threshold.
    LowConfidence,
    /// A customer-facing reply waits for approval.
    ReplyApproval,
    /// The ticket has no text at all.
    EmptyTicket,
}

impl ReviewCode {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewCode::PluginFault => "plugin-fault",
            ReviewCode::InvalidProposal => "invalid-proposal",
            ReviewCode::RiskCategory => "risk-category",
            ReviewCode::RiskCustomerTier => "risk-customer-tier",
            ReviewCode::RiskNegativeSentiment => "risk-negative-sentiment",
            ReviewCode::Escalation => "escalation",
            ReviewCode::LowConfidence => "low-confidence",
            ReviewCode::ReplyApproval => "reply-approval",
            ReviewCode::EmptyTicket => "empty-ticket",
        }
    }
}

impl std::fmt::Display for ReviewCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a ticket needs a person: the code and a readable detail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewReason {
    /// The kind of reason.
    pub code: ReviewCode,
    /// Readable detail.
    pub detail: String,
}

impl ReviewReason {
    /// A reason of `code` with `detail`.
    pub fn new(code: ReviewCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// The ticket has neither subject nor body: no plugin ran.
    pub fn empty_ticket() -> Self {
        Self::new(
            ReviewCode::EmptyTicket,
            "the ticket has neither subject nor body (attachments only, or text lost on the way); a person must open it in the help desk",
        )
    }
}

/// What the gate decided.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GateDecision {
    /// Effects to apply now.
    pub apply: Vec<Effect>,
    /// Effects proposed but held for review.
    pub held: Vec<Effect>,
    /// Why a human must look (empty: nothing to review).
    pub reasons: Vec<ReviewReason>,
}
