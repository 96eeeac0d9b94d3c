//! The bodies of the HTTP API (`deskhost serve`) that are not records of their own.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every API error: a stable `code` to branch on, a `type` grouping codes, and a message
/// for a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiErrorBody {
    /// What went wrong and what to do.
    pub message: String,
    /// Stable, e.g. `invalid_ticket`.
    pub code: String,
    /// `invalid_request` (fix the request) or `internal` (the host failed).
    #[serde(rename = "type")]
    pub kind: String,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /v1/plugins`: the plugin key (`id@version`) active in each slot, and each shadow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ActivePlugins {
    /// The slot event this view follows (grows with every promote, rollback or shadow).
    pub seq: i64,
    /// Slot name → active plugin key.
    pub active: BTreeMap<String, String>,
    /// Slot name → shadow plugin key.
    pub shadow: BTreeMap<String, String>,
}

/// A request body or answer that is one item or a list of them, as the client sent it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A JSON array.
    Many(Vec<T>),
    /// A single JSON value.
    One(T),
}

/// `POST /v1/tickets` without `?wait=true` (202): what was stored and queued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Accepted {
    /// Ticket id.
    pub ticket_id: String,
    /// The version its content maps to (follow it at `/v1/tickets/{id}/versions/{version}`).
    pub ticket_version: u32,
    /// A new version was stored (an unchanged ticket is not decided twice).
    pub new_version: bool,
    /// It waits for a decision.
    pub pending: bool,
}

/// `GET /v1/tickets/{id}/versions/{version}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VersionState {
    /// `pending` or `done`.
    pub state: String,
    /// The decision, once done (for reviewer and admin tokens only: it can carry CRM context).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<serde_json::Value>,
}

/// `GET /v1/reviews/{id}`: the item with what a reviewer reads beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewDetail {
    /// The item (proposals with confidence and evidence, gate reasons, faults, held effects).
    #[serde(flatten)]
    pub item: crate::run::ReviewItem,
    /// The ticket version it is about.
    pub ticket: Option<crate::records::TicketInput>,
    /// The articles the reply draft cites, as stored now (a deleted one is missing).
    pub articles: Vec<crate::records::ArticleRecord>,
}
