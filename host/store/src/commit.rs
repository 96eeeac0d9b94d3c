//! The committer: the only writer of decisions.
//!
//! Runs arrive as bundles; the committer writes whatever has queued up in one transaction:
//! the run, its stages, effects, notes, review item, the work-queue transition to `done`,
//! and the run's audit records. A ticket version is decided exactly once: a bundle whose
//! version another run already decided is dropped whole.

use crate::audit::committed::{self, CommittedRows, EffectRow, NoteRow, RunRow, StateRow};
use crate::audit::{self, AuditEntry, AuditHead};
use crate::store::Store;
use deskhost_protocol::digest::now_rfc3339;
use deskhost_protocol::gate::Effect;
use deskhost_protocol::outbox::Outgoing;
use sqlx::{Any, Transaction};
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
    /// What the triage made of the ticket (sentiment, confidence), for the help desk.
    pub assessment: Option<Outgoing>,
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
    let mut tx = crate::db::begin_write(store.pool()).await?;
    let mut head = audit::load_head(&mut *tx).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for (bundle, _) in batch {
        outcomes.push(write_one(&mut tx, &mut head, bundle).await?);
    }
    let checkpoint = store.checkpoint_if_due(&mut tx, &head).await?;
    tx.commit().await?;
    store.published(checkpoint);
    Ok(outcomes)
}

async fn write_one(
    tx: &mut Transaction<'_, Any>,
    head: &mut AuditHead,
    b: &RunBundle,
) -> Result<Committed, sqlx::Error> {
    let claimed = sqlx::query("UPDATE work_queue SET state = 'done', run_id = $1, lease_owner = NULL, lease_until = NULL WHERE ticket_id = $2 AND version = $3 AND state = 'pending'")
        .bind(&b.run_id)
        .bind(&b.ticket_id)
        .bind(i64::from(b.ticket_version))
        .execute(&mut **tx)
        .await?;
    if claimed.rows_affected() != 1 {
        return Ok(Committed::AlreadyDecided);
    }
    let now = now_rfc3339();
    let run = RunRow {
        run_id: b.run_id.clone(),
        ticket_id: b.ticket_id.clone(),
        ticket_version: i64::from(b.ticket_version),
        started_at: b.started_at.clone(),
        finished_at: now.clone(),
        outcome: b.outcome.clone(),
        inputs_json: b.inputs.to_string(),
        result_json: b.result.to_string(),
    };
    sqlx::query("INSERT INTO runs (run_id, ticket_id, ticket_version, started_at, finished_at, outcome, inputs_json, result_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&run.run_id)
        .bind(&run.ticket_id)
        .bind(run.ticket_version)
        .bind(&run.started_at)
        .bind(&run.finished_at)
        .bind(&run.outcome)
        .bind(&run.inputs_json)
        .bind(&run.result_json)
        .execute(&mut **tx)
        .await?;
    let mut rows = CommittedRows::default();
    for s in &b.stages {
        let row = committed::StageRow {
            stage: s.stage.clone(),
            plugin: s.plugin.clone(),
            digest: s.digest.clone(),
            outcome: s.outcome.clone(),
            proposal_json: s.proposal.as_ref().map(|v| v.to_string()),
            fault_json: s.fault.as_ref().map(|v| v.to_string()),
            stats_json: s.stats.to_string(),
            transcript_json: s.transcript.to_string(),
            input_json: Some(s.input.to_string()),
            output_json: s.output.as_ref().map(|v| v.to_string()),
        };
        sqlx::query(
            "INSERT INTO run_stages (run_id, stage, plugin, digest, outcome, proposal_json, fault_json, stats_json, transcript_json, input_json, output_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&b.run_id)
        .bind(&row.stage)
        .bind(&row.plugin)
        .bind(&row.digest)
        .bind(&row.outcome)
        .bind(&row.proposal_json)
        .bind(&row.fault_json)
        .bind(&row.stats_json)
        .bind(&row.transcript_json)
        .bind(&row.input_json)
        .bind(&row.output_json)
        .execute(&mut **tx)
        .await?;
        rows.stages.push(row);
    }

    // Apply effects to the help desk's view of the ticket: the only place decisions change
    // ticket state.
    let current = StateRow::current(tx, &b.ticket_id).await?;
    let mut state = current.unwrap_or_else(|| StateRow {
        ticket_id: b.ticket_id.clone(),
        latest_version: i64::from(b.ticket_version),
        status: "new".into(),
        category: None,
        queue: None,
        priority: None,
        language: None,
        tags_json: "[]".into(),
        created_at: now.clone(),
        updated_at: now.clone(),
    });
    let mut tags: Vec<String> = serde_json::from_str(&state.tags_json).unwrap_or_default();
    for effect in &b.effects {
        if let Some(body) = apply_effect(&mut state, &mut tags, effect) {
            sqlx::query(
                "INSERT INTO notes (ticket_id, run_id, body, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&b.ticket_id)
            .bind(&b.run_id)
            .bind(body)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
            rows.notes.push(NoteRow {
                body: body.to_string(),
                created_at: now.clone(),
            });
        }
        let row = EffectRow {
            kind: effect_kind_name(effect).into(),
            value_json: serde_json::to_string(effect).unwrap_or_default(),
            applied_at: now.clone(),
        };
        sqlx::query("INSERT INTO effects (run_id, ticket_id, kind, value_json, applied_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&b.run_id)
            .bind(&b.ticket_id)
            .bind(&row.kind)
            .bind(&row.value_json)
            .bind(&row.applied_at)
            .execute(&mut **tx)
            .await?;
        rows.effects.push(row);
    }
    // What was applied goes back to the help desk the ticket came from, if any.
    let outgoing: Vec<Outgoing> = (b.effects.iter().cloned().map(Outgoing::Effect))
        .chain(b.assessment.clone())
        .collect();
    crate::outbox::enqueue(tx, &b.ticket_id, &format!("run:{}", b.run_id), &outgoing).await?;
    state.status = b.status.clone();
    state.tags_json = serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into());
    state.updated_at = now.clone();
    let state = state.write(tx, Some(&b.run_id)).await?;

    for sh in &b.shadows {
        let row = committed::ShadowRow {
            slot: sh.slot.clone(),
            plugin: sh.plugin.clone(),
            digest: sh.digest.clone(),
            outcome: sh.outcome.clone(),
            proposal_json: sh.proposal.as_ref().map(|v| v.to_string()),
            fault_json: sh.fault.as_ref().map(|v| v.to_string()),
            stats_json: sh.stats.to_string(),
            created_at: now.clone(),
        };
        sqlx::query(
            "INSERT INTO shadow_runs (run_id, slot, plugin, digest, ticket_id, ticket_version, outcome, proposal_json, fault_json, stats_json, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&b.run_id)
        .bind(&row.slot)
        .bind(&row.plugin)
        .bind(&row.digest)
        .bind(&b.ticket_id)
        .bind(i64::from(b.ticket_version))
        .bind(&row.outcome)
        .bind(&row.proposal_json)
        .bind(&row.fault_json)
        .bind(&row.stats_json)
        .bind(&row.created_at)
        .execute(&mut **tx)
        .await?;
        rows.shadows.push(row);
    }
    if let Some(r) = &b.review {
        let row = committed::ReviewRow {
            id: r.id.clone(),
            ticket_id: b.ticket_id.clone(),
            ticket_version: i64::from(b.ticket_version),
            status: "open".into(),
            reasons_json: r.reasons.to_string(),
            payload_json: r.payload.to_string(),
            created_at: now.clone(),
        };
        sqlx::query(
            "INSERT INTO review_items (id, run_id, ticket_id, ticket_version, status, reasons_json, payload_json, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&row.id)
        .bind(&b.run_id)
        .bind(&row.ticket_id)
        .bind(row.ticket_version)
        .bind(&row.status)
        .bind(&row.reasons_json)
        .bind(&row.payload_json)
        .bind(&row.created_at)
        .execute(&mut **tx)
        .await?;
        rows.review = Some(row);
    }
    let digests = rows.digests(&run, state);
    let mut entries = b.audit.clone();
    entries.push(AuditEntry::run(
        &b.run_id,
        committed::COMMITTED,
        serde_json::json!(digests),
    ));
    audit::append(tx, head, &entries).await?;
    Ok(Committed::Written)
}

/// Applies `effect` to a ticket's state (`tags` is its tag list, decoded); returns the body
/// of an internal note, which the caller stores. Decisions and approvals both change ticket
/// state only through here.
pub(crate) fn apply_effect<'e>(
    state: &mut StateRow,
    tags: &mut Vec<String>,
    effect: &'e Effect,
) -> Option<&'e str> {
    match effect {
        Effect::Category { value } => state.category = Some(value.clone()),
        Effect::Queue { value } => state.queue = Some(value.clone()),
        Effect::Priority { value } => state.priority = Some(value.clone()),
        Effect::Language { value } => state.language = Some(value.clone()),
        Effect::Tags { values } => {
            for v in values {
                if !tags.contains(v) {
                    tags.push(v.clone());
                }
            }
        }
        Effect::InternalNote { body } => return Some(body),
    }
    None
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
