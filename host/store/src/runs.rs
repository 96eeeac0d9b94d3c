//! Reading decisions back: a run's result and inputs, its stages as recorded (replay), and
//! shadow runs beside the stage they shadowed (diffs). Writing is the committer's
//! ([`crate::commit`]).

use crate::store::{Col, Store, StoreError, q};

/// A stored run's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRun {
    /// Ticket.
    pub ticket_id: String,
    /// Version decided.
    pub ticket_version: u32,
    /// The run's inputs (JSON, as committed).
    pub inputs_json: String,
}

/// One stage of a stored run, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredStage {
    /// `triage`, `reply`, `escalation`.
    pub stage: String,
    /// `id@version`.
    pub plugin: String,
    /// Component digest.
    pub digest: String,
    /// `ok` or the fault kind.
    pub outcome: String,
    /// The host-call transcript (JSON).
    pub transcript_json: String,
    /// The stage's exact input (JSON), absent for runs recorded before inputs were kept.
    pub input_json: Option<String>,
    /// The stage's exact output (JSON), if it produced one.
    pub output_json: Option<String>,
}

/// A shadow run beside the active plugin's stage of the same run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowPair {
    /// Run.
    pub run_id: String,
    /// Ticket.
    pub ticket_id: String,
    /// The candidate's outcome (`ok` or a fault kind).
    pub candidate_outcome: String,
    /// The candidate's proposal (JSON).
    pub candidate_proposal: Option<String>,
    /// The candidate's stats (JSON).
    pub candidate_stats: String,
    /// The active plugin (`id@version`).
    pub incumbent: String,
    /// Its outcome.
    pub incumbent_outcome: String,
    /// Its proposal (JSON).
    pub incumbent_proposal: Option<String>,
    /// Its stats (JSON).
    pub incumbent_stats: String,
}

impl Store {
    /// The result a run committed (the `RunRecord` JSON), if there is such a run.
    pub async fn run_result(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT result_json FROM runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(self.pool())
            .await
            .map_err(q("read a run"))?;
        row.map(|r| r.col(0)).transpose()
    }

    /// Where a ticket version stands in the work queue: `None` when it was never queued,
    /// else its state (`pending` or `done`) and, once done, the decision as stored (a run
    /// line's JSON).
    pub async fn version_state(
        &self,
        ticket_id: &str,
        version: u32,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT w.state, r.result_json FROM work_queue w LEFT JOIN runs r ON r.run_id = w.run_id
             WHERE w.ticket_id = $1 AND w.version = $2",
        )
        .bind(ticket_id)
        .bind(i64::from(version))
        .fetch_optional(self.pool())
        .await
        .map_err(q("read a ticket version's state"))?;
        row.map(|r| Ok((r.col(0)?, r.col(1)?))).transpose()
    }

    /// A run's header, if there is such a run.
    pub async fn run(&self, run_id: &str) -> Result<Option<StoredRun>, StoreError> {
        let row = sqlx::query(
            "SELECT ticket_id, ticket_version, inputs_json FROM runs WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read the run"))?;
        row.map(|r| {
            Ok(StoredRun {
                ticket_id: r.col(0)?,
                ticket_version: r.version(1)?,
                inputs_json: r.col(2)?,
            })
        })
        .transpose()
    }

    /// A run's stages in pipeline order.
    pub async fn run_stages(&self, run_id: &str) -> Result<Vec<StoredStage>, StoreError> {
        let rows = sqlx::query(
            "SELECT stage, plugin, digest, outcome, transcript_json, input_json, output_json FROM run_stages WHERE run_id = $1
             ORDER BY CASE stage WHEN 'triage' THEN 0 WHEN 'reply' THEN 1 ELSE 2 END",
        )
        .bind(run_id)
        .fetch_all(self.pool())
        .await
        .map_err(q("read the run's stages"))?;
        rows.iter()
            .map(|r| {
                Ok(StoredStage {
                    stage: r.col(0)?,
                    plugin: r.col(1)?,
                    digest: r.col(2)?,
                    outcome: r.col(3)?,
                    transcript_json: r.col(4)?,
                    input_json: r.col(5)?,
                    output_json: r.col(6)?,
                })
            })
            .collect()
    }

    /// The shadow runs of `candidate` in `slot`, each with the active stage it shadowed,
    /// oldest first.
    pub async fn shadow_pairs(
        &self,
        slot: &str,
        candidate: &str,
    ) -> Result<Vec<ShadowPair>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.run_id, s.ticket_id, s.outcome, s.proposal_json, s.stats_json, r.plugin, r.outcome, r.proposal_json, r.stats_json
             FROM shadow_runs s JOIN run_stages r ON r.run_id = s.run_id AND r.stage = s.slot
             WHERE s.slot = $1 AND s.plugin = $2 ORDER BY s.created_at, s.run_id",
        )
        .bind(slot)
        .bind(candidate)
        .fetch_all(self.pool())
        .await
        .map_err(q("read shadow runs"))?;
        rows.iter()
            .map(|r| {
                Ok(ShadowPair {
                    run_id: r.col(0)?,
                    ticket_id: r.col(1)?,
                    candidate_outcome: r.col(2)?,
                    candidate_proposal: r.col(3)?,
                    candidate_stats: r.col(4)?,
                    incumbent: r.col(5)?,
                    incumbent_outcome: r.col(6)?,
                    incumbent_proposal: r.col(7)?,
                    incumbent_stats: r.col(8)?,
                })
            })
            .collect()
    }
}
