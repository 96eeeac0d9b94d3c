//! What goes back to the help desk: each applied effect and each approved reply of a ticket
//! that came from a connector, as an outbox item with its delivery state.

use crate::gate::Effect;
use crate::proposal::{Sentiment, TriageProposal};
use serde::{Deserialize, Serialize};

/// One thing to write to the help desk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Outgoing {
    /// An effect the gate applied or a reviewer approved.
    Effect(Effect),
    /// An approved reply to the customer.
    Reply(OutgoingReply),
    /// What the triage made of the ticket, for the agents who see it in the help desk.
    Assessment(OutgoingAssessment),
}

/// The triage's sentiment and confidence, written with each decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutgoingAssessment {
    /// Always `assessment`.
    pub kind: AssessmentKind,
    /// The customer's sentiment.
    pub sentiment: Sentiment,
    /// The lowest confidence of the triage fields, rounded to four decimals (`null` for NaN).
    #[serde(with = "crate::proposal::confidence")]
    #[schemars(with = "Option<f64>")]
    pub confidence: f64,
}

/// The tag of [`OutgoingAssessment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssessmentKind {
    /// An assessment.
    Assessment,
}

/// An approved reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutgoingReply {
    /// Always `reply`.
    pub kind: ReplyKind,
    /// The text sent to the customer.
    pub body: String,
    /// The article ids it cites.
    #[serde(default)]
    pub citations: Vec<String>,
}

/// The tag of [`OutgoingReply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// A public reply.
    Reply,
}

impl Outgoing {
    /// An approved reply.
    pub fn reply(body: impl Into<String>, citations: Vec<String>) -> Self {
        Outgoing::Reply(OutgoingReply {
            kind: ReplyKind::Reply,
            body: body.into(),
            citations,
        })
    }

    /// The assessment of a triage proposal.
    pub fn assessment(triage: &TriageProposal) -> Self {
        Outgoing::Assessment(OutgoingAssessment {
            kind: AssessmentKind::Assessment,
            sentiment: triage.sentiment.value,
            confidence: (triage.confidence() * 10_000.0).round() / 10_000.0,
        })
    }

    /// The kind stored and shown: `category`, `queue`, `priority`, `language`, `tags`,
    /// `internal_note`, `reply` or `assessment`. Connectors' `write_back` lists name these.
    pub fn kind(&self) -> &'static str {
        match self {
            Outgoing::Effect(Effect::Category { .. }) => "category",
            Outgoing::Effect(Effect::Queue { .. }) => "queue",
            Outgoing::Effect(Effect::Priority { .. }) => "priority",
            Outgoing::Effect(Effect::Language { .. }) => "language",
            Outgoing::Effect(Effect::Tags { .. }) => "tags",
            Outgoing::Effect(Effect::InternalNote { .. }) => "internal_note",
            Outgoing::Reply(_) => "reply",
            Outgoing::Assessment(_) => "assessment",
        }
    }
}

/// Every kind an outbox item can have.
pub const KINDS: [&str; 8] = [
    "category",
    "queue",
    "priority",
    "language",
    "tags",
    "internal_note",
    "reply",
    "assessment",
];

/// Where an outbox item stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Waiting for its first attempt or its next retry.
    Pending,
    /// An attempt is under way (or was, when its worker stopped: the next attempt first
    /// checks whether the help desk has it).
    Sending,
    /// The help desk has it.
    Delivered,
    /// Not sent: the connector may not write this kind (its `write_back`).
    Skipped,
    /// Gave up after the connector's `max_attempts`, or refused for good by the help desk;
    /// `deskhost outbox retry ID` sends it again.
    Dead,
}

impl OutboxState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sending => "sending",
            OutboxState::Delivered => "delivered",
            OutboxState::Skipped => "skipped",
            OutboxState::Dead => "dead",
        }
    }
}

impl std::str::FromStr for OutboxState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(OutboxState::Pending),
            "sending" => Ok(OutboxState::Sending),
            "delivered" => Ok(OutboxState::Delivered),
            "skipped" => Ok(OutboxState::Skipped),
            "dead" => Ok(OutboxState::Dead),
            other => Err(format!(
                "{other:?} is not pending, sending, delivered, skipped or dead"
            )),
        }
    }
}

/// An outbox item as `deskhost outbox list` and the API show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutboxItem {
    /// Its place in the outbox (delivery order).
    pub seq: i64,
    /// Id; also the idempotency key sent to the help desk.
    pub id: String,
    /// The connector that delivers it.
    pub connector: String,
    /// The deskhost ticket.
    pub ticket_id: String,
    /// The help desk's id of the ticket.
    pub external_id: String,
    /// What to write.
    pub payload: Outgoing,
    /// `run:RUN_ID` (applied by the gate) or `review:ITEM_ID` (approved by a reviewer).
    pub origin: String,
    /// Where it stands.
    pub state: OutboxState,
    /// Attempts so far.
    pub attempts: u32,
    /// The last attempt's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The help desk's reference for what was written (a transaction or comment id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_ref: Option<String>,
    /// When it was written.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

/// A connector's state, as `deskhost connector status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConnectorStatus {
    /// The connector's name in deskhost.toml.
    pub name: String,
    /// `rt` or `zendesk`.
    pub kind: String,
    /// Its base URL.
    pub base_url: String,
    /// The intake cursor (where the next poll starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// When intake last completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_at: Option<String>,
    /// The last error, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why the connector is paused (wrong credentials), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Outbox items waiting (pending or sending).
    pub backlog: u64,
    /// Dead-lettered items.
    pub dead: u64,
    /// Delivered items.
    pub delivered: u64,
    /// When the oldest waiting item was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_waiting: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_and_replies_round_trip_through_the_stored_form() {
        for item in [
            Outgoing::Effect(Effect::Queue {
                value: "billing".into(),
            }),
            Outgoing::Effect(Effect::InternalNote { body: "n".into() }),
            Outgoing::reply("Hello", vec!["kb-1".into()]),
        ] {
            let text = serde_json::to_string(&item).unwrap_or_default();
            let back: Outgoing = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, item, "{text}");
            assert!(KINDS.contains(&item.kind()));
        }
    }
}
