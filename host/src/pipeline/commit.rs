//! The committer: the only writer of decisions.
//!
//! Runs arrive as bundles; the committer writes whatever has queued up in one transaction:
//! the run, its stages, effects, notes, review item, the work-queue transition to `done`,
//! and the run's audit records. A ticket version is decided exactly once: a bundle whose
//! version another run already decided is dropped whole.

use super::gate::Effect;
use crate::audit::{self, AuditEntry, AuditHead};
use crate::store::Store;
use crate::util::now_rfc3339;
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot};

/// One stage of a run, as stored.
#[derive(Clone, Debug)]
pub struct StageRow {
    /// `triage`, `reply`, `escalation`.
    pub stage: String,
    /// `id@version`.
    pub plugin: String,
    /// Component digest.
    pub digest: String,
    /// `ok`, `invalid`, or the fault kind.
    pub outcome: String,
    /// Proposal JSON.
    pub proposal: Option<serde_json::Value>,
    /// Fault JSON.
    pub fault: Option<serde_json::Value>,
    /// Stats JSON.
    pub stats: serde_json::Value,
    /// Host-call transcript JSON.
    pub transcript: serde_json::Value,
    /// The stage's input (WIT values).
    pub input: serde_json::Value,
    /// The stage's output (WIT values), when it produced one.
    pub output: Option<serde_json::Value>,
}

/// A shadow candidate's result for one run.
#[derive(Clone, Debug)]
pub struct ShadowRow {
    /// Slot shadowed.
    pub slot: String,
    /// `id@version`.
    pub plugin: String,
    /// Component digest.
    pub digest: String,
    /// `ok` or the fault kind.
    pub outcome: String,
    /// Proposal JSON.
    pub proposal: Option<serde_json::Value>,
    /// Fault JSON.
    pub fault: Option<serde_json::Value>,
    /// Stats JSON.
    pub stats: serde_json::Value,
}

/// A new review item.
#[derive(Clone, Debug)]
pub struct NewReview {
    /// Item id.
    pub id: String,
    /// Reasons JSON.
    pub reasons: serde_json::Value,
    /// Payload JSON.
    pub payload: serde_json::Value,
}

/// Everything one run writes.
#[derive(Clone, Debug)]
pub struct RunBundle {
    /// Run id.
    pub run_id: String,
    /// Ticket.
    pub ticket_id: String,
    /// Ticket version decided.
    pub ticket_version: u32,
    /// Start time.
    pub started_at: String,
    /// Gate outcome (`applied`, `review`, `applied+review`).
    pub outcome: String,
    /// Input versions.
    pub inputs: serde_json::Value,
    /// The run's full output.
    pub result: serde_json::Value,
    /// Stages.
    pub stages: Vec<StageRow>,
    /// Effects to apply.
    pub effects: Vec<Effect>,
    /// New ticket status.
    pub status: String,
    /// Review item, if any.
    pub review: Option<NewReview>,
    /// Shadow candidates' results (stored, never applied).
    pub shadows: Vec<ShadowRow>,
    /// Audit records.
    pub audit: Vec<AuditEntry>,
}

/// How a commit ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Written.
    Written,
    /// Another run had already decided this ticket version; nothing written.
    AlreadyDecided,
}

type Request = (RunBundle, oneshot::Sender<Result<Committed, String>>);

/// Handle to the committer task.
#[derive(Clone, Debug)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
}

const MAX_BATCH: usize = 128;

impl Committer {
    /// Starts the committer on `store`.
    pub fn start(store: Store) -> Self {
        let (tx, mut rx) = mpsc::channel::<Request>(1024);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let result = write_batch(&store, &batch).await;
                match result {
                    Ok(outcomes) => {
                        for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        let message = e.to_string();
                        for (_, reply) in batch {
                            let _ = reply.send(Err(message.clone()));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Writes `bundle` (with whatever else is queued) and waits until it is durable.
    pub async fn commit(&self, bundle: RunBundle) -> Result<Committed, String> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((bundle, reply))
            .await
            .map_err(|_| "the committer stopped".to_string())?;
        wait.await
            .map_err(|_| "the committer stopped".to_string())?
    }
}

async fn write_batch(store: &Store, batch: &[Request]) -> Result<Vec<Committed>, sqlx::Error> {
    // IMMEDIATE takes the write lock before the head is read, so another process appending
    // to the audit log (an import, a second `run`) cannot slip in between and fork the chain.
    let mut tx = store.pool().begin_with("BEGIN IMMEDIATE").await?;
    let mut head = audit::load_head(&mut *tx).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for (bundle, _) in batch {
        outcomes.push(write_one(&mut tx, &mut head, bundle).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn write_one(
    tx: &mut Transaction<'_, Sqlite>,
    head: &mut AuditHead,
    b: &RunBundle,
) -> Result<Committed, sqlx::Error> {
    let claimed = sqlx::query("UPDATE work_queue SET state = 'done', run_id = ? WHERE ticket_id = ? AND version = ? AND state = 'pending'")
        .bind(&b.run_id)
        .bind(&b.ticket_id)
        .bind(i64::from(b.ticket_version))
        .execute(&mut **tx)
        .await?;
    if claimed.rows_affected() != 1 {
        return Ok(Committed::AlreadyDecided);
    }
    let now = now_rfc3339();
    sqlx::query("INSERT INTO runs (run_id, ticket_id, ticket_version, started_at, finished_at, outcome, inputs_json, result_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(&b.run_id)
        .bind(&b.ticket_id)
        .bind(i64::from(b.ticket_version))
        .bind(&b.started_at)
        .bind(&now)
        .bind(&b.outcome)
        .bind(b.inputs.to_string())
        .bind(b.result.to_string())
        .execute(&mut **tx)
        .await?;
    for s in &b.stages {
        sqlx::query(
            "INSERT INTO run_stages (run_id, stage, plugin, digest, outcome, proposal_json, fault_json, stats_json, transcript_json, input_json, output_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&b.run_id)
        .bind(&s.stage)
        .bind(&s.plugin)
        .bind(&s.digest)
        .bind(&s.outcome)
        .bind(s.proposal.as_ref().map(|v| v.to_string()))
        .bind(s.fault.as_ref().map(|v| v.to_string()))
        .bind(s.stats.to_string())
        .bind(s.transcript.to_string())
        .bind(s.input.to_string())
        .bind(s.output.as_ref().map(|v| v.to_string()))
        .execute(&mut **tx)
        .await?;
    }

    // Apply effects to the help desk's view of the ticket.
    let tags_json: Option<String> = sqlx::query("SELECT tags_json FROM ticket_state WHERE id = ?")
        .bind(&b.ticket_id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.get(0));
    let mut tags: Vec<String> = tags_json
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let (mut category, mut queue, mut priority, mut language) = (None, None, None, None);
    for effect in &b.effects {
        match effect {
            Effect::Category { value } => category = Some(value.clone()),
            Effect::Queue { value } => queue = Some(value.clone()),
            Effect::Priority { value } => priority = Some(value.clone()),
            Effect::Language { value } => language = Some(value.clone()),
            Effect::Tags { values } => {
                for v in values {
                    if !tags.contains(v) {
                        tags.push(v.clone());
                    }
                }
            }
            Effect::InternalNote { body } => {
                sqlx::query(
                    "INSERT INTO notes (ticket_id, run_id, body, created_at) VALUES (?, ?, ?, ?)",
                )
                .bind(&b.ticket_id)
                .bind(&b.run_id)
                .bind(body)
                .bind(&now)
                .execute(&mut **tx)
                .await?;
            }
        }
        sqlx::query("INSERT INTO effects (run_id, ticket_id, kind, value_json, applied_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&b.run_id)
            .bind(&b.ticket_id)
            .bind(effect_kind_name(effect))
            .bind(serde_json::to_string(effect).unwrap_or_default())
            .bind(&now)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
        "UPDATE ticket_state SET status = ?, category = COALESCE(?, category), queue = COALESCE(?, queue),
         priority = COALESCE(?, priority), language = COALESCE(?, language), tags_json = ?, updated_at = ? WHERE id = ?",
    )
    .bind(&b.status)
    .bind(category)
    .bind(queue)
    .bind(priority)
    .bind(language)
    .bind(serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()))
    .bind(&now)
    .bind(&b.ticket_id)
    .execute(&mut **tx)
    .await?;

    for sh in &b.shadows {
        sqlx::query(
            "INSERT INTO shadow_runs (run_id, slot, plugin, digest, ticket_id, ticket_version, outcome, proposal_json, fault_json, stats_json, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&b.run_id)
        .bind(&sh.slot)
        .bind(&sh.plugin)
        .bind(&sh.digest)
        .bind(&b.ticket_id)
        .bind(i64::from(b.ticket_version))
        .bind(&sh.outcome)
        .bind(sh.proposal.as_ref().map(|v| v.to_string()))
        .bind(sh.fault.as_ref().map(|v| v.to_string()))
        .bind(sh.stats.to_string())
        .bind(&now)
        .execute(&mut **tx)
        .await?;
    }
    if let Some(r) = &b.review {
        sqlx::query(
            "INSERT INTO review_items (id, run_id, ticket_id, ticket_version, status, reasons_json, payload_json, created_at) VALUES (?, ?, ?, ?, 'open', ?, ?, ?)",
        )
        .bind(&r.id)
        .bind(&b.run_id)
        .bind(&b.ticket_id)
        .bind(i64::from(b.ticket_version))
        .bind(r.reasons.to_string())
        .bind(r.payload.to_string())
        .bind(&now)
        .execute(&mut **tx)
        .await?;
    }
    audit::append(tx, head, &b.audit).await?;
    Ok(Committed::Written)
}

fn effect_kind_name(e: &Effect) -> &'static str {
    match e {
        Effect::Category { .. } => "category",
        Effect::Queue { .. } => "queue",
        Effect::Priority { .. } => "priority",
        Effect::Language { .. } => "language",
        Effect::Tags { .. } => "tags",
        Effect::InternalNote { .. } => "internal_note",
    }
}
