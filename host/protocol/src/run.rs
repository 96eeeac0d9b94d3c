//! A decided ticket: one line of `deskhost run` output, one answer of `POST /v1/tickets`, one
//! row of the store's `runs`. The same types everywhere, so the CLI and the API cannot drift.

use crate::fault::{Fault, FaultKind};
use crate::gate::{Effect, ReviewReason};
use crate::proposal::{EscalationPacket, ReplyProposal, TriageProposal};
use crate::records::Cut;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One line of output per ticket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum RunLine {
    /// The ticket version was decided now.
    Decided(Box<RunRecord>),
    /// An earlier run decided this ticket version; nothing was written.
    AlreadyDecided {
        /// Ticket.
        ticket_id: String,
        /// Version.
        ticket_version: u32,
    },
    /// The host could not decide it (it stays pending).
    Error {
        /// Ticket.
        ticket_id: String,
        /// Version.
        ticket_version: u32,
        /// What went wrong.
        error: String,
    },
}

/// Everything one run decided and what it rested on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunRecord {
    /// Ticket.
    pub ticket_id: String,
    /// Version decided.
    pub ticket_version: u32,
    /// Run id.
    pub run_id: String,
    /// The triage stage (absent when no plugin ran, e.g. an empty ticket).
    pub triage: Option<StageReport<TriageProposal>>,
    /// The reply stage, when it ran.
    pub reply: Option<StageReport<ReplyProposal>>,
    /// The escalation stage, when it ran.
    pub escalation: Option<StageReport<EscalationPacket>>,
    /// What the gate did.
    pub gate: GateReport,
    /// The versions of everything the run read.
    pub inputs: RunInputs,
    /// Time from start to decision, microseconds.
    pub elapsed_us: u64,
}

/// How a policy stage ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageOutcome {
    /// A proposal that passed the host's checks.
    Ok,
    /// A fault (or a proposal that failed the checks: `invalid-output`).
    Fault(FaultKind),
}

impl StageOutcome {
    /// `ok` or the fault kind.
    pub fn as_str(self) -> &'static str {
        match self {
            StageOutcome::Ok => "ok",
            StageOutcome::Fault(kind) => kind.as_str(),
        }
    }
}

impl schemars::JsonSchema for StageOutcome {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StageOutcome".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`ok`, or the kind of the stage's fault (as in `fault.kind`)"
        })
    }
}

impl Serialize for StageOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StageOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "ok" {
            return Ok(StageOutcome::Ok);
        }
        serde_json::from_value::<FaultKind>(serde_json::Value::String(text.clone()))
            .map(StageOutcome::Fault)
            .map_err(|_| serde::de::Error::custom(format!("unknown stage outcome {text:?}")))
    }
}

/// One policy stage of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StageReport<P> {
    /// `id@version` of the plugin that ran.
    pub plugin: String,
    /// How it ended.
    pub outcome: StageOutcome,
    /// What it proposed (also when the checks refused it, for the reviewer).
    pub proposal: Option<P>,
    /// Its fault, if any.
    pub fault: Option<Fault>,
    /// Measurements.
    pub stats: InvocationStats,
}

/// Measurements of one plugin call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InvocationStats {
    /// Total wall time, microseconds.
    pub wall_us: u64,
    /// Instantiation time, microseconds.
    pub instantiate_us: u64,
    /// Fuel consumed (when metered).
    pub fuel_used: Option<u64>,
    /// Host calls made.
    pub host_calls: u32,
    /// Largest linear memory reached, bytes.
    pub memory_peak_bytes: u64,
}

/// What the gate did with a run's proposals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum GateOutcome {
    /// Everything allowed was applied; nothing waits for a person.
    #[serde(rename = "applied")]
    Applied,
    /// Nothing was applied; a person reviews.
    #[serde(rename = "review")]
    Review,
    /// Some effects were applied and a person reviews the rest.
    #[serde(rename = "applied+review")]
    AppliedAndReview,
}

impl GateOutcome {
    /// As written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            GateOutcome::Applied => "applied",
            GateOutcome::Review => "review",
            GateOutcome::AppliedAndReview => "applied+review",
        }
    }
}

/// The gate's part of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GateReport {
    /// Outcome.
    pub outcome: GateOutcome,
    /// Effects applied now.
    pub applied: Vec<Effect>,
    /// Effects held for review.
    pub held: Vec<Effect>,
    /// The review item, when a person must look.
    pub review: Option<ReviewRef>,
}

/// A review item created by a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewRef {
    /// Its id.
    pub item_id: String,
    /// Why.
    pub reasons: Vec<ReviewReason>,
}

/// The versions of everything a run read: what makes it replayable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunInputs {
    /// Ticket.
    pub ticket_id: String,
    /// Version.
    pub ticket_version: u32,
    /// Its content hash.
    pub ticket_content_hash: String,
    /// The clock plugins saw (Unix ms).
    pub clock_ms: u64,
    /// Shadow candidates that ran beside.
    pub shadow: Vec<ShadowRef>,
    /// The plugins that ran, by slot.
    pub plugins: Vec<PluginRef>,
    /// The knowledge-base index version.
    pub kb_index_version: String,
    /// sha256 of deskhost.toml.
    pub config_hash: String,
    /// CRM record versions read, by customer id.
    pub crm_versions: BTreeMap<String, u32>,
    /// What plugins were not handed of a long ticket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuts: Vec<Cut>,
}

/// A plugin that decided a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PluginRef {
    /// Slot.
    pub slot: String,
    /// `id@version`.
    pub plugin: String,
    /// Component sha256.
    pub digest: String,
    /// sha256 over its settings and data.
    pub config_digest: String,
}

/// A shadow candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShadowRef {
    /// Slot.
    pub slot: String,
    /// `id@version`.
    pub plugin: String,
}

/// What a review item holds for the person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewPayload {
    /// The triage decision, if one was made.
    pub triage: Option<TriageProposal>,
    /// The reply proposal, if one was made.
    pub reply: Option<ReplyProposal>,
    /// The escalation packet, if one was made.
    pub escalation: Option<EscalationPacket>,
    /// Effects the gate held.
    pub held_effects: Vec<Effect>,
    /// Faults of the run's stages.
    pub faults: Vec<StageFault>,
}

/// A stage's fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StageFault {
    /// `triage`, `reply` or `escalation`.
    pub stage: String,
    /// The fault.
    pub fault: Fault,
}

/// Where a review item stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReviewStatus {
    /// Waiting for a person.
    Open,
    /// A person approved it.
    Approved,
    /// A person rejected it.
    Rejected,
}

impl ReviewStatus {
    /// The lowercase name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Open => "open",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected => "rejected",
        }
    }
}

/// A review item as stored and listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewItem {
    /// Item id.
    pub id: String,
    /// The run that created it.
    pub run_id: String,
    /// Ticket.
    pub ticket_id: String,
    /// Ticket version.
    pub ticket_version: u32,
    /// Where it stands.
    pub status: ReviewStatus,
    /// Why it needs a person.
    pub reasons: Vec<ReviewReason>,
    /// The proposals, held effects and faults to review.
    pub payload: ReviewPayload,
    /// When it was created.
    pub created_at: String,
    /// The reviewer it is assigned to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// Who approved or rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

impl ReviewItem {
    /// How risky it is to leave waiting (higher first in the queue): an escalation, then a
    /// risky category or customer, then faults and negative sentiment, then low confidence.
    pub fn risk(&self) -> u8 {
        use crate::gate::ReviewCode as C;
        self.reasons
            .iter()
            .map(|r| match r.code {
                C::Escalation => 4,
                C::RiskCategory | C::RiskCustomerTier => 3,
                C::RiskNegativeSentiment | C::PluginFault | C::InvalidProposal => 2,
                C::LowConfidence | C::EmptyTicket => 1,
                C::ReplyApproval => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// The proposed priority (0 = none or low … 3 = urgent).
    pub fn priority_rank(&self) -> u8 {
        use crate::proposal::Priority as P;
        match self.payload.triage.as_ref().map(|t| t.priority.value) {
            Some(P::Urgent) => 3,
            Some(P::High) => 2,
            Some(P::Medium) => 1,
            _ => 0,
        }
    }
}
