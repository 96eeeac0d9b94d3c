//! What each decision wrote, as digests the audit chain carries, and the check that the
//! tables still hold exactly that.
//!
//! The committer writes a run's rows (run, stages, effects, notes, shadows, review item,
//! the ticket's new state) and, in the same transaction, a `committed` audit record with one
//! digest per table. Ingest writes a `ticket-ingested` record per new ticket version with its
//! content hash and the state it set. Every value `ticket_state` takes is also kept in
//! `ticket_state_log`, so the current state can be checked against the last audited one.
//! [`verify`] recomputes every digest from the tables and names the first row that differs,
//! was added, or went missing: changing a decision behind deskhost's back is found even when
//! the chain itself is intact.

use deskhost_protocol::records::TicketInput;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};
use std::collections::{BTreeMap, BTreeSet};

/// Audit record kind of a committed decision.
pub const COMMITTED: &str = "committed";
/// Audit record kind of an ingested ticket version.
pub const INGESTED: &str = "ticket-ingested";
/// Audit record kind of a reviewer's action.
pub const REVIEWED: &str = "reviewed";

/// A `review_actions` row.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewActionRow {
    /// Its place in the review log.
    pub seq: i64,
    /// The item.
    pub item_id: String,
    /// Its ticket.
    pub ticket_id: String,
    /// `approve`, `reject`, `assign`.
    pub action: String,
    /// Who.
    pub actor: String,
    /// What (JSON).
    pub detail_json: String,
    /// When.
    pub created_at: String,
}

impl ReviewActionRow {
    /// The digest its audit record carries.
    pub fn digest(&self) -> String {
        Fields::new("review_actions")
            .int(self.seq)
            .text(&self.item_id)
            .text(&self.ticket_id)
            .text(&self.action)
            .text(&self.actor)
            .text(&self.detail_json)
            .text(&self.created_at)
            .finish()
    }
}

/// What a `reviewed` audit record says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewedRecord {
    /// The review log row.
    pub seq: i64,
    /// The item.
    pub item_id: String,
    /// `approve`, `reject`, `assign`.
    pub action: String,
    /// Who.
    pub actor: String,
    /// The row's digest.
    pub row: String,
    /// The ticket state the action set (approve and reject).
    pub state: Option<StateRef>,
}

/// A digest over typed fields: each field is tagged and length-prefixed, so `None` and
/// `Some("")`, or two fields run together, never hash alike.
struct Fields(Sha256);

impl Fields {
    fn new(table: &str) -> Self {
        Self(Sha256::new()).text(table)
    }

    fn text(mut self, s: &str) -> Self {
        self.0.update([1u8]);
        self.0.update((s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
        self
    }

    fn opt(mut self, s: Option<&str>) -> Self {
        match s {
            Some(s) => self.text(s),
            None => {
                self.0.update([0u8]);
                self
            }
        }
    }

    fn int(mut self, i: i64) -> Self {
        self.0.update([2u8]);
        self.0.update(i.to_le_bytes());
        self
    }

    fn finish(self) -> String {
        deskhost_protocol::digest::hex_lower(&self.0.finalize())
    }
}

/// The digest of several rows in their order.
fn rows_digest(table: &str, digests: &[String]) -> String {
    digests
        .iter()
        .fold(Fields::new(table).int(digests.len() as i64), |f, d| {
            f.text(d)
        })
        .finish()
}

/// A `runs` row.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    /// Run id.
    pub run_id: String,
    /// Ticket.
    pub ticket_id: String,
    /// Ticket version.
    pub ticket_version: i64,
    /// Start.
    pub started_at: String,
    /// Commit time.
    pub finished_at: String,
    /// Gate outcome.
    pub outcome: String,
    /// Input versions (JSON).
    pub inputs_json: String,
    /// The run's output (JSON).
    pub result_json: String,
}

impl RunRow {
    fn digest(&self) -> String {
        Fields::new("runs")
            .text(&self.run_id)
            .text(&self.ticket_id)
            .int(self.ticket_version)
            .text(&self.started_at)
            .text(&self.finished_at)
            .text(&self.outcome)
            .text(&self.inputs_json)
            .text(&self.result_json)
            .finish()
    }
}

/// A `run_stages` row (the run id is the run's).
#[derive(Clone, Debug, PartialEq)]
pub struct StageRow {
    /// `triage`, `reply`, `escalation`.
    pub stage: String,
    /// `id@version`.
    pub plugin: String,
    /// Component digest.
    pub digest: String,
    /// Outcome.
    pub outcome: String,
    /// Proposal (JSON).
    pub proposal_json: Option<String>,
    /// Fault (JSON).
    pub fault_json: Option<String>,
    /// Stats (JSON).
    pub stats_json: String,
    /// Transcript (JSON).
    pub transcript_json: String,
    /// Input (JSON).
    pub input_json: Option<String>,
    /// Output (JSON).
    pub output_json: Option<String>,
}

impl StageRow {
    fn digest(&self) -> String {
        Fields::new("run_stages")
            .text(&self.stage)
            .text(&self.plugin)
            .text(&self.digest)
            .text(&self.outcome)
            .opt(self.proposal_json.as_deref())
            .opt(self.fault_json.as_deref())
            .text(&self.stats_json)
            .text(&self.transcript_json)
            .opt(self.input_json.as_deref())
            .opt(self.output_json.as_deref())
            .finish()
    }
}

/// An `effects` row.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectRow {
    /// Effect kind.
    pub kind: String,
    /// The effect (JSON).
    pub value_json: String,
    /// When it was applied.
    pub applied_at: String,
}

impl EffectRow {
    fn digest(&self) -> String {
        Fields::new("effects")
            .text(&self.kind)
            .text(&self.value_json)
            .text(&self.applied_at)
            .finish()
    }
}

/// A `notes` row.
#[derive(Clone, Debug, PartialEq)]
pub struct NoteRow {
    /// Text.
    pub body: String,
    /// When.
    pub created_at: String,
}

impl NoteRow {
    fn digest(&self) -> String {
        Fields::new("notes")
            .text(&self.body)
            .text(&self.created_at)
            .finish()
    }
}

/// A `shadow_runs` row.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowRow {
    /// Slot.
    pub slot: String,
    /// `id@version`.
    pub plugin: String,
    /// Component digest.
    pub digest: String,
    /// Outcome.
    pub outcome: String,
    /// Proposal (JSON).
    pub proposal_json: Option<String>,
    /// Fault (JSON).
    pub fault_json: Option<String>,
    /// Stats (JSON).
    pub stats_json: String,
    /// When.
    pub created_at: String,
}

impl ShadowRow {
    fn digest(&self) -> String {
        Fields::new("shadow_runs")
            .text(&self.slot)
            .text(&self.plugin)
            .text(&self.digest)
            .text(&self.outcome)
            .opt(self.proposal_json.as_deref())
            .opt(self.fault_json.as_deref())
            .text(&self.stats_json)
            .text(&self.created_at)
            .finish()
    }
}

/// A `review_items` row as created.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewRow {
    /// Item id.
    pub id: String,
    /// Ticket.
    pub ticket_id: String,
    /// Ticket version.
    pub ticket_version: i64,
    /// Status.
    pub status: String,
    /// Reasons (JSON).
    pub reasons_json: String,
    /// Payload (JSON).
    pub payload_json: String,
    /// When.
    pub created_at: String,
}

impl ReviewRow {
    fn digest(&self) -> String {
        Fields::new("review_items")
            .text(&self.id)
            .text(&self.ticket_id)
            .int(self.ticket_version)
            .text(&self.status)
            .text(&self.reasons_json)
            .text(&self.payload_json)
            .text(&self.created_at)
            .finish()
    }
}

/// One value of a ticket's help-desk state (`ticket_state`, kept in `ticket_state_log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRow {
    /// Ticket.
    pub ticket_id: String,
    /// Latest version.
    pub latest_version: i64,
    /// Status.
    pub status: String,
    /// Category applied.
    pub category: Option<String>,
    /// Queue applied.
    pub queue: Option<String>,
    /// Priority applied.
    pub priority: Option<String>,
    /// Language applied.
    pub language: Option<String>,
    /// Tags (JSON array).
    pub tags_json: String,
    /// Ticket creation time.
    pub created_at: String,
    /// This change.
    pub updated_at: String,
}

impl StateRow {
    fn digest(&self) -> String {
        Fields::new("ticket_state")
            .text(&self.ticket_id)
            .int(self.latest_version)
            .text(&self.status)
            .opt(self.category.as_deref())
            .opt(self.queue.as_deref())
            .opt(self.priority.as_deref())
            .opt(self.language.as_deref())
            .text(&self.tags_json)
            .text(&self.created_at)
            .text(&self.updated_at)
            .finish()
    }

    const COLUMNS: &'static str = "id, latest_version, status, category, queue, priority, language, tags_json, created_at, updated_at";

    /// Binds the values of [`StateRow::COLUMNS`], in that order.
    fn bind_columns<'q>(&'q self, q: crate::batch::Query<'q>) -> crate::batch::Query<'q> {
        q.bind(&self.ticket_id)
            .bind(self.latest_version)
            .bind(&self.status)
            .bind(&self.category)
            .bind(&self.queue)
            .bind(&self.priority)
            .bind(&self.language)
            .bind(&self.tags_json)
            .bind(&self.created_at)
            .bind(&self.updated_at)
    }

    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            ticket_id: r.try_get(0)?,
            latest_version: r.try_get(1)?,
            status: r.try_get(2)?,
            category: r.try_get(3)?,
            queue: r.try_get(4)?,
            priority: r.try_get(5)?,
            language: r.try_get(6)?,
            tags_json: r.try_get(7)?,
            created_at: r.try_get(8)?,
            updated_at: r.try_get(9)?,
        })
    }

    /// The ticket's current state, if it has one.
    pub async fn current(
        tx: &mut Transaction<'_, Any>,
        ticket_id: &str,
    ) -> Result<Option<Self>, sqlx::Error> {
        let sql = format!("SELECT {} FROM ticket_state WHERE id = $1", Self::COLUMNS);
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ticket_id)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| Self::from_row(&r))
            .transpose()
    }

    /// The current states of `tickets` (those that have one), in no particular order.
    pub async fn current_of(
        tx: &mut Transaction<'_, Any>,
        tickets: &[&str],
    ) -> Result<Vec<Self>, sqlx::Error> {
        let backend = crate::batch::backend_of(tx);
        if tickets.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM ticket_state WHERE id IN ({})",
            Self::COLUMNS,
            crate::batch::params_list(backend, tickets.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in tickets {
            query = query.bind(*t);
        }
        query
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(Self::from_row)
            .collect()
    }

    /// Makes this the ticket's state and logs it; returns the reference the audit record
    /// carries. `run_id` is the run that set it (none for ingest).
    pub async fn write(
        &self,
        tx: &mut Transaction<'_, Any>,
        run_id: Option<&str>,
    ) -> Result<StateRef, sqlx::Error> {
        let mut refs = Self::write_all(tx, &[(self, run_id)]).await?;
        refs.pop()
            .ok_or_else(|| sqlx::Error::Protocol("the state log returned no row".into()))
    }

    /// [`StateRow::write`] for many states in order: each ticket's current state becomes the
    /// last one given for it, and every one is logged. Returns their references, in order.
    pub async fn write_all(
        tx: &mut Transaction<'_, Any>,
        states: &[(&StateRow, Option<&str>)],
    ) -> Result<Vec<StateRef>, sqlx::Error> {
        let backend = crate::batch::backend_of(tx);
        // One row per ticket, its last state: a statement may not upsert a row twice.
        let mut seen = std::collections::HashSet::new();
        let mut last: Vec<&StateRow> = states
            .iter()
            .rev()
            .filter(|(s, _)| seen.insert(s.ticket_id.as_str()))
            .map(|(s, _)| *s)
            .collect();
        last.reverse();
        crate::batch::insert(
            tx,
            &format!("INSERT INTO ticket_state ({})", Self::COLUMNS),
            10,
            "ON CONFLICT(id) DO UPDATE SET latest_version = excluded.latest_version, status = excluded.status,
             category = excluded.category, queue = excluded.queue, priority = excluded.priority,
             language = excluded.language, tags_json = excluded.tags_json, created_at = excluded.created_at,
             updated_at = excluded.updated_at",
            &last,
            |q, s| s.bind_columns(q),
        )
        .await?;
        let mut refs = Vec::with_capacity(states.len());
        for chunk in states.chunks(crate::batch::rows_per_statement(11)) {
            let sql = crate::batch::values_sql(
                backend,
                "INSERT INTO ticket_state_log (ticket_id, latest_version, status, category, queue, priority, language, tags_json, created_at, updated_at, run_id)",
                11,
                chunk.len(),
                "RETURNING seq, ticket_id",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (s, run_id) in chunk {
                query = s.bind_columns(query).bind(*run_id);
            }
            // Log rows are numbered in the order they are inserted, but RETURNING lists them
            // in no promised order: sort by seq and check each lines up with its state.
            let mut logged = query
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            logged.sort_unstable_by_key(|(seq, _)| *seq);
            if logged.len() != chunk.len() {
                return Err(sqlx::Error::Protocol(format!(
                    "the state log returned {} rows for {} states",
                    logged.len(),
                    chunk.len()
                )));
            }
            for ((seq, ticket), (s, _)) in logged.into_iter().zip(chunk) {
                if ticket != s.ticket_id {
                    return Err(sqlx::Error::Protocol(format!(
                        "state log row {seq} is for ticket {ticket}, expected {}",
                        s.ticket_id
                    )));
                }
                refs.push(StateRef {
                    seq,
                    digest: s.digest(),
                });
            }
        }
        Ok(refs)
    }
}

/// A `ticket_state_log` row named by an audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    /// The log row.
    pub seq: i64,
    /// Its digest.
    pub digest: String,
}

/// What a `committed` audit record says a run wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitDigests {
    /// The run.
    pub run_id: String,
    /// `runs` row.
    pub run: String,
    /// `run_stages` rows, by stage name.
    pub stages: String,
    /// `effects` rows, in order.
    pub effects: String,
    /// `notes` rows, in order.
    pub notes: String,
    /// `shadow_runs` rows, by slot.
    pub shadows: String,
    /// `review_items` row, when the run created one.
    pub review: Option<String>,
    /// The ticket state the run set.
    pub state: StateRef,
}

/// Everything one run writes, as stored.
#[derive(Clone, Debug, Default)]
pub struct CommittedRows {
    /// Stages.
    pub stages: Vec<StageRow>,
    /// Effects, in order.
    pub effects: Vec<EffectRow>,
    /// Notes, in order.
    pub notes: Vec<NoteRow>,
    /// Shadows.
    pub shadows: Vec<ShadowRow>,
    /// Review item.
    pub review: Option<ReviewRow>,
}

impl CommittedRows {
    /// The digests of `run` and these rows, with the state reference.
    pub fn digests(&self, run: &RunRow, state: StateRef) -> CommitDigests {
        let mut stages: Vec<&StageRow> = self.stages.iter().collect();
        stages.sort_by(|a, b| a.stage.cmp(&b.stage));
        let mut shadows: Vec<&ShadowRow> = self.shadows.iter().collect();
        shadows.sort_by(|a, b| a.slot.cmp(&b.slot));
        CommitDigests {
            run_id: run.run_id.clone(),
            run: run.digest(),
            stages: rows_digest(
                "run_stages",
                &stages.iter().map(|s| s.digest()).collect::<Vec<_>>(),
            ),
            effects: rows_digest(
                "effects",
                &self
                    .effects
                    .iter()
                    .map(EffectRow::digest)
                    .collect::<Vec<_>>(),
            ),
            notes: rows_digest(
                "notes",
                &self.notes.iter().map(NoteRow::digest).collect::<Vec<_>>(),
            ),
            shadows: rows_digest(
                "shadow_runs",
                &shadows.iter().map(|s| s.digest()).collect::<Vec<_>>(),
            ),
            review: self.review.as_ref().map(ReviewRow::digest),
            state,
        }
    }
}

/// What an ingest audit record says about one ticket version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestRecord {
    /// Ticket.
    pub ticket_id: String,
    /// Version stored.
    pub version: i64,
    /// Its content hash.
    pub content_hash: String,
    /// The state ingest set.
    pub state: StateRef,
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct DecisionReport {
    /// Runs whose rows were checked against their audit record.
    pub runs: u64,
    /// Ticket versions checked against their ingest record.
    pub ticket_versions: u64,
    /// Ticket states checked against the last audited one.
    pub ticket_states: u64,
    /// Reviewers' actions checked against their audit records.
    pub review_actions: u64,
    /// Every mismatch found, the first first (at most 100).
    pub problems: Vec<String>,
}

const MAX_PROBLEMS: usize = 100;

impl DecisionReport {
    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    report: &mut DecisionReport,
    seq: i64,
    payload: &str,
) -> Option<T> {
    match serde_json::from_str(payload) {
        Ok(v) => Some(v),
        Err(e) => {
            report.problem(format!("audit record {seq} does not decode: {e}"));
            None
        }
    }
}

/// Recomputes what every decision and ingest wrote and compares it with the audit log's
/// digests. Call it after the chain itself verified (the digests are only as good as it).
pub async fn verify(pool: &AnyPool) -> Result<DecisionReport, sqlx::Error> {
    let mut report = DecisionReport::default();
    let mut committed: BTreeMap<String, (i64, CommitDigests)> = BTreeMap::new();
    let mut ingested: BTreeMap<(String, i64), (i64, IngestRecord)> = BTreeMap::new();
    let mut state_refs: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    let mut reviewed: BTreeMap<i64, (i64, ReviewedRecord)> = BTreeMap::new();
    let mut rows =
        sqlx::query("SELECT seq, kind, payload FROM audit WHERE kind IN ($1, $2, $3) ORDER BY seq")
            .bind(COMMITTED)
            .bind(INGESTED)
            .bind(REVIEWED)
            .fetch(pool);
    while let Some(r) = rows.try_next().await? {
        let seq: i64 = r.try_get(0)?;
        let kind: String = r.try_get(1)?;
        let payload: String = r.try_get(2)?;
        if kind == COMMITTED {
            if let Some(d) = decode::<CommitDigests>(&mut report, seq, &payload) {
                state_refs.insert(d.state.seq, (seq, d.state.digest.clone()));
                committed.insert(d.run_id.clone(), (seq, d));
            }
        } else if kind == REVIEWED {
            if let Some(r) = decode::<ReviewedRecord>(&mut report, seq, &payload) {
                if let Some(state) = &r.state {
                    state_refs.insert(state.seq, (seq, state.digest.clone()));
                }
                reviewed.insert(r.seq, (seq, r));
            }
        } else if let Some(list) = decode::<Vec<IngestRecord>>(&mut report, seq, &payload) {
            for i in list {
                state_refs.insert(i.state.seq, (seq, i.state.digest.clone()));
                ingested.insert((i.ticket_id.clone(), i.version), (seq, i));
            }
        }
    }
    drop(rows);

    // Runs and everything they wrote.
    let mut runs = sqlx::query(
        "SELECT run_id, ticket_id, ticket_version, started_at, finished_at, outcome, inputs_json, result_json FROM runs ORDER BY run_id",
    )
    .fetch(pool);
    let mut seen_runs = BTreeSet::new();
    let mut run_rows = Vec::new();
    while let Some(r) = runs.try_next().await? {
        run_rows.push(RunRow {
            run_id: r.try_get(0)?,
            ticket_id: r.try_get(1)?,
            ticket_version: r.try_get(2)?,
            started_at: r.try_get(3)?,
            finished_at: r.try_get(4)?,
            outcome: r.try_get(5)?,
            inputs_json: r.try_get(6)?,
            result_json: r.try_get(7)?,
        });
    }
    drop(runs);
    for run in run_rows {
        report.runs += 1;
        seen_runs.insert(run.run_id.clone());
        let Some((seq, expected)) = committed.get(&run.run_id) else {
            report.problem(format!(
                "run {} (ticket {} v{}) has no committed audit record: it was written outside deskhost",
                run.run_id, run.ticket_id, run.ticket_version
            ));
            continue;
        };
        let rows = read_rows(pool, &run.run_id).await?;
        let actual = rows.digests(&run, expected.state.clone());
        for (table, a, e) in [
            ("runs", &actual.run, &expected.run),
            ("run_stages", &actual.stages, &expected.stages),
            ("effects", &actual.effects, &expected.effects),
            ("notes", &actual.notes, &expected.notes),
            ("shadow_runs", &actual.shadows, &expected.shadows),
        ] {
            if a != e {
                report.problem(format!(
                    "run {}: its {table} rows differ from what was committed (audit record {seq})",
                    run.run_id
                ));
            }
        }
        if actual.review != expected.review {
            report.problem(format!(
                "run {}: its review item differs from what was committed (audit record {seq})",
                run.run_id
            ));
        }
        let queued: Option<(String, Option<String>)> = sqlx::query(
            "SELECT state, run_id FROM work_queue WHERE ticket_id = $1 AND version = $2",
        )
        .bind(&run.ticket_id)
        .bind(run.ticket_version)
        .fetch_optional(pool)
        .await?
        .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?;
        if queued != Some(("done".into(), Some(run.run_id.clone()))) {
            report.problem(format!(
                "run {}: the work queue does not record ticket {} v{} as decided by it",
                run.run_id, run.ticket_id, run.ticket_version
            ));
        }
    }
    for (run_id, (seq, _)) in &committed {
        if !seen_runs.contains(run_id) {
            report.problem(format!(
                "run {run_id} was committed (audit record {seq}) but its row is gone"
            ));
        }
    }
    for (table, column) in [
        ("run_stages", "run_id"),
        ("effects", "run_id"),
        ("notes", "run_id"),
        ("shadow_runs", "run_id"),
        ("review_items", "run_id"),
    ] {
        let sql = format!(
            "SELECT DISTINCT t.{column} FROM {table} t LEFT JOIN runs r ON r.run_id = t.{column} WHERE r.run_id IS NULL"
        );
        let orphans: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await?;
        for o in orphans {
            report.problem(format!("{table} has rows of run {o}, which does not exist"));
        }
    }

    // Reviewers' actions against their audit records.
    let mut actions = sqlx::query(
        "SELECT seq, item_id, ticket_id, action, actor, detail_json, created_at FROM review_actions ORDER BY seq",
    )
    .fetch(pool);
    let mut seen_actions = BTreeSet::new();
    while let Some(r) = actions.try_next().await? {
        let row = ReviewActionRow {
            seq: r.try_get(0)?,
            item_id: r.try_get(1)?,
            ticket_id: r.try_get(2)?,
            action: r.try_get(3)?,
            actor: r.try_get(4)?,
            detail_json: r.try_get(5)?,
            created_at: r.try_get(6)?,
        };
        report.review_actions += 1;
        seen_actions.insert(row.seq);
        match reviewed.get(&row.seq) {
            None => report.problem(format!(
                "review action {} on item {} has no audit record: it was written outside deskhost",
                row.seq, row.item_id
            )),
            Some((seq, rec)) if rec.row != row.digest() || rec.item_id != row.item_id => {
                report.problem(format!(
                    "review action {} on item {}: it differs from what was recorded (audit record {seq})",
                    row.seq, row.item_id
                ));
            }
            Some(_) => {}
        }
    }
    drop(actions);
    for (action, (seq, rec)) in &reviewed {
        if !seen_actions.contains(action) {
            report.problem(format!(
                "review action {action} on item {} was recorded (audit record {seq}) but its row is gone",
                rec.item_id
            ));
        }
    }

    // Ticket versions against their ingest records.
    let mut tickets = sqlx::query(
        "SELECT id, version, content_hash, input_json FROM tickets ORDER BY id, version",
    )
    .fetch(pool);
    let mut seen_versions = BTreeSet::new();
    while let Some(r) = tickets.try_next().await? {
        let id: String = r.try_get(0)?;
        let version: i64 = r.try_get(1)?;
        let hash: String = r.try_get(2)?;
        let input: String = r.try_get(3)?;
        report.ticket_versions += 1;
        let recomputed = serde_json::from_str::<TicketInput>(&input)
            .map(|t| t.content_hash())
            .unwrap_or_default();
        match ingested.get(&(id.clone(), version)) {
            None => report.problem(format!(
                "ticket {id} v{version} has no ingest audit record: it was written outside deskhost"
            )),
            Some((seq, i)) if i.content_hash != hash || recomputed != hash => {
                report.problem(format!(
                    "ticket {id} v{version}: its content differs from what was ingested (audit record {seq})"
                ));
            }
            Some(_) => {}
        }
        seen_versions.insert((id, version));
    }
    drop(tickets);
    for ((id, version), (seq, _)) in &ingested {
        if !seen_versions.contains(&(id.clone(), *version)) {
            report.problem(format!(
                "ticket {id} v{version} was ingested (audit record {seq}) but is gone"
            ));
        }
    }

    // Every state a ticket took, and the current one.
    let sql = format!(
        "SELECT seq, {} FROM ticket_state_log ORDER BY seq",
        StateRow::COLUMNS.replacen("id,", "ticket_id,", 1)
    );
    let mut log = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
    let mut latest: BTreeMap<String, StateRow> = BTreeMap::new();
    let mut seen_refs = BTreeSet::new();
    while let Some(r) = log.try_next().await? {
        let seq: i64 = r.try_get(0)?;
        let state = StateRow {
            ticket_id: r.try_get(1)?,
            latest_version: r.try_get(2)?,
            status: r.try_get(3)?,
            category: r.try_get(4)?,
            queue: r.try_get(5)?,
            priority: r.try_get(6)?,
            language: r.try_get(7)?,
            tags_json: r.try_get(8)?,
            created_at: r.try_get(9)?,
            updated_at: r.try_get(10)?,
        };
        match state_refs.get(&seq) {
            None => report.problem(format!(
                "ticket {}: state change {seq} has no audit record: it was written outside deskhost",
                state.ticket_id
            )),
            Some((at, digest)) if *digest != state.digest() => report.problem(format!(
                "ticket {}: state change {seq} differs from what was audited (audit record {at})",
                state.ticket_id
            )),
            Some(_) => {}
        }
        seen_refs.insert(seq);
        latest.insert(state.ticket_id.clone(), state);
    }
    drop(log);
    for (seq, (at, _)) in &state_refs {
        if !seen_refs.contains(seq) {
            report.problem(format!(
                "state change {seq} (audit record {at}) is missing from ticket_state_log"
            ));
        }
    }
    let sql = format!("SELECT {} FROM ticket_state ORDER BY id", StateRow::COLUMNS);
    let current: Vec<StateRow> = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?
        .iter()
        .map(StateRow::from_row)
        .collect::<Result<_, _>>()?;
    for state in current {
        report.ticket_states += 1;
        match latest.get(&state.ticket_id) {
            Some(audited) if *audited == state => {}
            Some(_) => report.problem(format!(
                "ticket {}: its current state differs from the last audited one (category, queue, priority, language, tags or status were changed directly)",
                state.ticket_id
            )),
            None => report.problem(format!(
                "ticket {} has a state but no audited state change",
                state.ticket_id
            )),
        }
    }
    Ok(report)
}

/// The rows a run wrote, read back in commit order.
async fn read_rows(pool: &AnyPool, run_id: &str) -> Result<CommittedRows, sqlx::Error> {
    let stages = sqlx::query(
        "SELECT stage, plugin, digest, outcome, proposal_json, fault_json, stats_json, transcript_json, input_json, output_json FROM run_stages WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(StageRow {
            stage: r.try_get(0)?,
            plugin: r.try_get(1)?,
            digest: r.try_get(2)?,
            outcome: r.try_get(3)?,
            proposal_json: r.try_get(4)?,
            fault_json: r.try_get(5)?,
            stats_json: r.try_get(6)?,
            transcript_json: r.try_get(7)?,
            input_json: r.try_get(8)?,
            output_json: r.try_get(9)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let effects = sqlx::query(
        "SELECT kind, value_json, applied_at FROM effects WHERE run_id = $1 ORDER BY id",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(EffectRow {
            kind: r.try_get(0)?,
            value_json: r.try_get(1)?,
            applied_at: r.try_get(2)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let notes = sqlx::query("SELECT body, created_at FROM notes WHERE run_id = $1 ORDER BY id")
        .bind(run_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(NoteRow {
                body: r.try_get(0)?,
                created_at: r.try_get(1)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let shadows = sqlx::query(
        "SELECT slot, plugin, digest, outcome, proposal_json, fault_json, stats_json, created_at FROM shadow_runs WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(ShadowRow {
            slot: r.try_get(0)?,
            plugin: r.try_get(1)?,
            digest: r.try_get(2)?,
            outcome: r.try_get(3)?,
            proposal_json: r.try_get(4)?,
            fault_json: r.try_get(5)?,
            stats_json: r.try_get(6)?,
            created_at: r.try_get(7)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let reviews: Vec<ReviewRow> = sqlx::query(
        "SELECT id, ticket_id, ticket_version, status, reasons_json, payload_json, created_at FROM review_items WHERE run_id = $1 ORDER BY id",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(ReviewRow {
            id: r.try_get(0)?,
            ticket_id: r.try_get(1)?,
            ticket_version: r.try_get(2)?,
            status: r.try_get(3)?,
            reasons_json: r.try_get(4)?,
            payload_json: r.try_get(5)?,
            created_at: r.try_get(6)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let review = match reviews.len() {
        0 => None,
        // Two items for one run: only one was committed; make the digest differ.
        n => reviews.into_iter().reduce(|mut a, b| {
            a.payload_json.push_str(&format!("+{n}:{}", b.id));
            a
        }),
    };
    Ok(CommittedRows {
        stages,
        effects,
        notes,
        shadows,
        review,
    })
}
