//! What reviewers do: the actions on a review item (the API's request bodies and the CLI's
//! arguments), what an action did, and API tokens' roles.

use crate::gate::Effect;
use crate::run::ReviewStatus;
use serde::{Deserialize, Serialize};

/// Longest reject reason, in characters.
pub const MAX_REASON_CHARS: usize = 2_000;
/// Longest reply a reviewer may write, in characters.
pub const MAX_REPLY_CHARS: usize = 20_000;

/// A reviewer's step on a review item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReviewAction {
    /// Apply the held effects (with the reviewer's edits) and queue the reply for delivery.
    Approve {
        /// The reviewer's corrections; none means "approved as proposed".
        #[serde(default)]
        edits: ReviewEdits,
    },
    /// Apply nothing; the ticket needs a person.
    Reject {
        /// Why (shown to the team, kept as a label).
        reason: String,
    },
    /// Hand the item to another reviewer.
    Assign {
        /// The reviewer's name.
        to: String,
    },
}

impl ReviewAction {
    /// The name stored and audited: `approve`, `reject`, `assign`.
    pub fn name(&self) -> &'static str {
        match self {
            ReviewAction::Approve { .. } => "approve",
            ReviewAction::Reject { .. } => "reject",
            ReviewAction::Assign { .. } => "assign",
        }
    }

    /// Checks what needs no configuration: lengths, names, hidden characters.
    pub fn check(&self) -> Result<(), String> {
        match self {
            ReviewAction::Approve { edits } => edits.check(),
            ReviewAction::Reject { reason } => {
                if reason.trim().is_empty() {
                    return Err("`reason` is empty: say why the proposal is rejected".into());
                }
                if reason.chars().count() > MAX_REASON_CHARS {
                    return Err(format!(
                        "`reason` is longer than {MAX_REASON_CHARS} characters"
                    ));
                }
                Ok(())
            }
            ReviewAction::Assign { to } => crate::records::check_id("to", to),
        }
    }
}

/// A reviewer's corrections to the proposals. Each field set replaces the proposal's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewEdits {
    /// Category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The reply body to send instead of the proposed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

impl ReviewEdits {
    /// Whether the reviewer changed nothing.
    pub fn is_empty(&self) -> bool {
        self == &ReviewEdits::default()
    }

    fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("category", &self.category),
            ("queue", &self.queue),
            ("priority", &self.priority),
            ("language", &self.language),
        ] {
            if let Some(v) = value {
                crate::records::check_id(name, v)?;
            }
        }
        if let Some(reply) = &self.reply {
            if reply.trim().is_empty() {
                return Err("`reply` is empty: leave it out to send the proposed reply".into());
            }
            if reply.chars().count() > MAX_REPLY_CHARS {
                return Err(format!(
                    "`reply` is longer than {MAX_REPLY_CHARS} characters"
                ));
            }
        }
        Ok(())
    }
}

/// What a review action did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewActed {
    /// Its place in the review log.
    pub seq: i64,
    /// The item.
    pub item_id: String,
    /// Its ticket.
    pub ticket_id: String,
    /// `approve`, `reject` or `assign`.
    pub action: String,
    /// Who (the token's name or the operator's).
    pub actor: String,
    /// The item's status after it.
    pub status: ReviewStatus,
    /// Effects applied to the ticket.
    pub applied: Vec<Effect>,
    /// The reply queued for delivery, if any.
    pub outbound_message: Option<String>,
    /// When.
    pub at: String,
}

/// What an API token may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Send tickets in.
    Ingest,
    /// Read decisions and act on the review queue.
    Reviewer,
    /// Everything.
    Admin,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self == needed || self == Role::Admin
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ingest" => Ok(Role::Ingest),
            "reviewer" => Ok(Role::Reviewer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: use ingest, reviewer or admin"
            )),
        }
    }
}

/// An API token as listed (its secret is shown once, at creation, and stored only hashed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenInfo {
    /// Id (not secret).
    pub id: String,
    /// Who or what holds it; the identity audited for its actions.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// When it was created.
    pub created_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// Reviewers' verdicts as quality figures: what they kept, what the host applied on its own,
/// and what still waits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewReport {
    /// Per plugin version and field: how often reviewers kept the proposed value.
    pub fields: Vec<FieldKept>,
    /// Per reply plugin version: drafts sent as written, edited, or rejected.
    pub replies: Vec<Outcomes>,
    /// Per escalation plugin version: hand-offs approved or rejected.
    pub escalations: Vec<Outcomes>,
    /// Decisions applied without a person.
    pub automation: Automation,
    /// What waits.
    pub backlog: Backlog,
    /// Per plugin version and field: how often the help desk closed a ticket with the
    /// proposed value ("unchanged at close", from the connectors' close-time feedback).
    #[serde(default)]
    pub at_close: Vec<FieldKept>,
}

/// "Unchanged at review" for one field of one plugin version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FieldKept {
    /// `id@version` of the triage plugin.
    pub plugin: String,
    /// `category`, `queue`, `priority`, `language`.
    pub field: String,
    /// Items with a verdict and a proposal for this field.
    pub decided: u64,
    /// Of those, approved with the proposed value.
    pub unchanged: u64,
    /// `unchanged / decided` (0 when nothing was decided).
    pub rate: f64,
}

/// Verdicts on one plugin version's proposals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Outcomes {
    /// `id@version`.
    pub plugin: String,
    /// Approved as proposed.
    pub accepted: u64,
    /// Approved with the reviewer's own text.
    pub edited: u64,
    /// Rejected.
    pub rejected: u64,
}

/// Decisions applied without review.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Automation {
    /// Runs decided.
    pub runs: u64,
    /// Of those, with no review item.
    pub without_review: u64,
    /// `without_review / runs`.
    pub rate: f64,
}

/// The open review items.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Backlog {
    /// Items without a verdict.
    pub open: u64,
    /// When the oldest was created.
    pub oldest: Option<String>,
}

/// A ticket with the values reviewers settled on, in the training format (`labels`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewLabel {
    /// Ticket id.
    pub id: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Its language, as settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Field → value a reviewer approved (kept or edited).
    pub labels: std::collections::BTreeMap<String, String>,
}
