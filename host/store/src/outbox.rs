//! The outbox: what goes back to the help desk. Rows are written in the same transaction as
//! the decision that applied an effect or the approval that released one (so nothing applied
//! is lost and nothing is sent that was not applied); the connector's delivery worker claims
//! due rows with a lease, sends each, and records the outcome. A row claimed while another
//! attempt's outcome is unknown (`sending` whose lease ran out: its worker died mid-send, or
//! a retry after a timeout) is marked `uncertain`: the connector first asks the help desk
//! whether it already has it.
//!
//! Also: where tickets came from (`ticket_sources`), connectors' cursors and health
//! (`connector_state`) and close-time feedback (`close_feedback`).

use crate::store::{Col, Store, StoreError, q, unix_ms};
use deskhost_protocol::digest::{new_id, now_rfc3339};
use deskhost_protocol::outbox::{ConnectorStatus, OutboxItem, OutboxState, Outgoing};
use deskhost_protocol::records::TicketInput;
use sqlx::{Any, Transaction};
use std::collections::HashMap;

/// An outbox item claimed for delivery.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The item (state `sending`, attempts counted).
    pub item: OutboxItem,
    /// A previous attempt may have reached the help desk: check before sending again.
    pub uncertain: bool,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    /// The help desk has it (its reference, if it gave one).
    Delivered(Option<String>),
    /// Not to be sent (why).
    Skipped(String),
    /// Failed; try again at `retry_at_ms` unless the attempts are used up.
    Failed {
        /// What went wrong.
        error: String,
        /// When to try again (unix ms).
        retry_at_ms: i64,
        /// Give up now (the help desk refused it for good).
        permanent: bool,
    },
}

/// A ticket version of a connector's intake: the help desk's id and the ticket.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// The help desk's id.
    pub external_id: String,
    /// The ticket as deskhost takes it in (its id is derived from the connector's name and
    /// the external id by the caller).
    pub ticket: TicketInput,
}

/// The columns [`item_row`] reads, in its order.
macro_rules! item_columns {
    () => {
        "seq, id, connector, ticket_id, external_id, kind, payload_json, origin, state, attempts, last_error, delivered_ref, created_at, updated_at"
    };
}

fn item_row(r: &sqlx::any::AnyRow) -> Result<OutboxItem, StoreError> {
    let id: String = r.col(1)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        what: format!("outbox item {id}"),
        detail,
    };
    let payload_text: String = r.col(6)?;
    let payload: Outgoing =
        serde_json::from_str(&payload_text).map_err(|e| corrupt(e.to_string()))?;
    let state_text: String = r.col(8)?;
    let attempts: i64 = r.col(9)?;
    Ok(OutboxItem {
        seq: r.col(0)?,
        connector: r.col(2)?,
        ticket_id: r.col(3)?,
        external_id: r.col(4)?,
        payload,
        origin: r.col(7)?,
        state: state_text.parse().map_err(corrupt)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error: r.col(10)?,
        delivered_ref: r.col(11)?,
        created_at: r.col(12)?,
        updated_at: r.col(13)?,
        id,
    })
}

/// Audit record kind of an attempt to deliver an outbox item (delivered, skipped, failed,
/// dead-lettered).
pub const DELIVERY_ATTEMPT: &str = "delivery-attempt";
/// Audit record kind of an operator sending a dead or skipped item again.
pub const OUTBOX_RETRIED: &str = "outbox-retried";

/// Writes `items` for `ticket_id` to the outbox in `tx`, if the ticket came from a connector
/// (a ticket deskhost took in directly has nowhere to go back to).
pub(crate) async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    ticket_id: &str,
    origin: &str,
    items: &[Outgoing],
) -> Result<(), sqlx::Error> {
    enqueue_many(tx, &[(ticket_id, origin, items)]).await
}

/// [`enqueue`] for many tickets: `(ticket, origin, items)`, in outbox order.
pub(crate) async fn enqueue_many(
    tx: &mut Transaction<'_, Any>,
    batch: &[(&str, &str, &[Outgoing])],
) -> Result<(), sqlx::Error> {
    let backend = crate::batch::backend_of(tx);
    let mut tickets: Vec<&str> = batch
        .iter()
        .filter(|(_, _, items)| !items.is_empty())
        .map(|(t, _, _)| *t)
        .collect();
    tickets.sort_unstable();
    tickets.dedup();
    let mut sources: HashMap<String, (String, String)> = HashMap::new();
    for chunk in tickets.chunks(crate::batch::rows_per_statement(1)) {
        let sql = format!(
            "SELECT ticket_id, connector, external_id FROM ticket_sources WHERE ticket_id IN ({})",
            crate::batch::params_list(backend, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (String, String, String)>(sqlx::AssertSqlSafe(sql));
        for t in chunk {
            query = query.bind(*t);
        }
        for (ticket, connector, external_id) in query.fetch_all(&mut **tx).await? {
            sources.insert(ticket, (connector, external_id));
        }
    }
    if sources.is_empty() {
        return Ok(());
    }
    let now = now_rfc3339();
    let now_ms = unix_ms();
    let mut rows = Vec::new();
    for (ticket_id, origin, items) in batch {
        let Some((connector, external_id)) = sources.get(*ticket_id) else {
            continue;
        };
        for item in *items {
            let payload = serde_json::to_string(item).unwrap_or_else(|_| "null".into());
            rows.push((
                new_id("ob"),
                connector,
                *ticket_id,
                external_id,
                item,
                payload,
                *origin,
            ));
        }
    }
    crate::batch::insert(
        tx,
        "INSERT INTO outbox (id, connector, ticket_id, external_id, kind, payload_json, origin, state, attempts, next_at_ms, created_at, updated_at)",
        12,
        "",
        &rows,
        |q, (id, connector, ticket_id, external_id, item, payload, origin)| {
            q.bind(id)
                .bind(*connector)
                .bind(*ticket_id)
                .bind(*external_id)
                .bind(item.kind())
                .bind(payload)
                .bind(*origin)
                .bind("pending")
                .bind(0_i64)
                .bind(now_ms)
                .bind(&now)
                .bind(&now)
        },
    )
    .await
}

impl Store {
    /// Takes in tickets from connector `connector`: like [`Store::ingest_tickets`], and
    /// records where each came from in the same transaction.
    pub async fn ingest_from(
        &self,
        connector: &str,
        incoming: &[Incoming],
    ) -> Result<Vec<crate::store::Ingested>, StoreError> {
        let tickets: Vec<TicketInput> = incoming.iter().map(|i| i.ticket.clone()).collect();
        let sources: Vec<(String, String)> = incoming
            .iter()
            .map(|i| (i.ticket.id.clone(), i.external_id.clone()))
            .collect();
        self.ingest_tickets_with(&tickets, Some((connector, &sources)), None)
            .await
    }

    /// Claims up to `limit` due items of `connector` for `lease_ms`. An item whose last
    /// attempt's worker died is taken over once `settle_ms` have passed since that attempt
    /// began (the longest a request may take).
    pub async fn claim_outbox(
        &self,
        connector: &str,
        worker: &crate::store::WorkerId,
        limit: u32,
        lease_ms: i64,
        settle_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = unix_ms();
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start claiming outbox items"))?;
        // Due: pending and past its retry time, or sending under a lease that ran out or
        // whose holder (a process of this machine) is gone. A ticket's items go out in
        // order: behind one that is not due (waiting for a retry, or being sent) the rest of
        // its ticket waits too. Dead and skipped items hold nothing up.
        let rows = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            ", lease_owner, lease_until_ms, attempt_at_ms, next_at_ms FROM outbox
             WHERE connector = $1 AND state IN ('pending', 'sending')
             ORDER BY seq LIMIT $2"
        ))
        .bind(connector)
        .bind(i64::from(limit) * 10 + 500)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("read due outbox items"))?;
        let mut out = Vec::with_capacity(rows.len());
        let mut waiting: std::collections::HashSet<String> = std::collections::HashSet::new();
        let stamp = now_rfc3339();
        for r in &rows {
            if out.len() >= limit as usize {
                break;
            }
            let mut item = item_row(r)?;
            if waiting.contains(&item.ticket_id) {
                continue;
            }
            let next_at: i64 = r.col(17)?;
            if item.state == OutboxState::Pending && next_at > now {
                waiting.insert(item.ticket_id.clone());
                continue;
            }
            if item.state == OutboxState::Sending {
                let owner: Option<String> = r.col(14)?;
                let until: Option<i64> = r.col(15)?;
                let started: Option<i64> = r.col(16)?;
                let expired = until.is_none_or(|u| u < now);
                let gone = owner.is_some_and(|o| crate::store::WorkerId::new(o).is_dead_here());
                // A request sent just before its worker died may still be under way at the
                // help desk: look for it only once it must have finished (the request
                // timeout has passed), or the look could miss it and the item go out twice.
                let settled = started.is_none_or(|s| now - s >= settle_ms);
                if !((expired || gone) && settled) {
                    waiting.insert(item.ticket_id.clone());
                    continue;
                }
            }
            let uncertain = item.state == OutboxState::Sending || item.attempts > 0;
            sqlx::query(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1, lease_until_ms = $1, lease_owner = $2, attempt_at_ms = $5, updated_at = $3 WHERE id = $4",
            )
            .bind(now + lease_ms)
            .bind(worker.as_str())
            .bind(&stamp)
            .bind(&item.id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q("claim an outbox item"))?;
            item.state = OutboxState::Sending;
            item.attempts += 1;
            item.updated_at = stamp.clone();
            out.push(Claimed { item, uncertain });
        }
        tx.commit().await.map_err(q("commit outbox claims"))?;
        Ok(out)
    }

    /// Records how an attempt on item `id` ended; a failure past `max_attempts` (or a
    /// permanent one) is dead-lettered. Returns the new state.
    pub async fn finish_outbox(
        &self,
        id: &str,
        attempt: &Attempt,
        max_attempts: u32,
    ) -> Result<OutboxState, StoreError> {
        let now = now_rfc3339();
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start recording a delivery"))?;
        let found: Option<(i64, String, String, String)> =
            sqlx::query_as("SELECT attempts, connector, ticket_id, kind FROM outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("read an outbox item"))?;
        let Some((attempts, connector, ticket_id, kind)) = found else {
            return Err(StoreError::Invalid {
                what: "an outbox item".into(),
                detail: format!("no outbox item {id}"),
            });
        };
        let (state, error, reference, next_at) = match attempt {
            Attempt::Delivered(r) => (OutboxState::Delivered, None, r.clone(), None),
            Attempt::Skipped(why) => (OutboxState::Skipped, Some(why.clone()), None, None),
            Attempt::Failed {
                error,
                retry_at_ms,
                permanent,
            } => {
                let dead = *permanent || attempts >= i64::from(max_attempts.max(1));
                (
                    if dead {
                        OutboxState::Dead
                    } else {
                        OutboxState::Pending
                    },
                    Some(error.clone()),
                    None,
                    Some(*retry_at_ms),
                )
            }
        };
        sqlx::query(
            "UPDATE outbox SET state = $1, last_error = $2, delivered_ref = COALESCE($3, delivered_ref), next_at_ms = COALESCE($4, next_at_ms), lease_until_ms = NULL, lease_owner = NULL, updated_at = $5 WHERE id = $6",
        )
        .bind(state.as_str())
        .bind(&error)
        .bind(&reference)
        .bind(next_at)
        .bind(&now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(q("record a delivery"))?;
        // Every attempt on the help desk is in the audit log, like every host call.
        let record = serde_json::json!({
            "item": id,
            "connector": connector,
            "ticket_id": ticket_id,
            "kind": kind,
            "attempt": attempts,
            "state": state.as_str(),
            "reference": reference,
            "error": error,
        });
        let checkpoint = self
            .audit_in(&mut tx, DELIVERY_ATTEMPT, record)
            .await
            .map_err(q("audit a delivery"))?;
        tx.commit().await.map_err(q("commit a delivery"))?;
        self.published(checkpoint);
        Ok(state)
    }

    /// Outbox items, newest first: of `connector` and in `state` when given.
    pub async fn outbox_items(
        &self,
        connector: Option<&str>,
        state: Option<OutboxState>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM outbox
             WHERE (CAST($1 AS TEXT) IS NULL OR connector = $1) AND (CAST($2 AS TEXT) IS NULL OR state = $2)
             ORDER BY seq DESC LIMIT $3"
        ))
        .bind(connector)
        .bind(state.map(OutboxState::as_str))
        .bind(i64::from(limit.max(1)))
        .fetch_all(self.pool())
        .await
        .map_err(q("read outbox items"))?;
        rows.iter().map(item_row).collect()
    }

    /// One outbox item.
    pub async fn outbox_item(&self, id: &str) -> Result<Option<OutboxItem>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            item_columns!(),
            " FROM outbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read an outbox item"))?
        .as_ref()
        .map(item_row)
        .transpose()
    }

    /// Sends a dead (or skipped) item again: back to `pending` with its attempts reset.
    /// Returns the item, or `None` when there is no such item; an item that is not dead or
    /// skipped is left alone (its state says why).
    pub async fn retry_outbox(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start retrying an outbox item"))?;
        let retried = sqlx::query(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_at_ms = $1, last_error = NULL, updated_at = $2
             WHERE id = $3 AND state IN ('dead', 'skipped')",
        )
        .bind(unix_ms())
        .bind(now_rfc3339())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(q("retry an outbox item"))?
        .rows_affected();
        let mut checkpoint = None;
        if retried > 0 {
            let record = serde_json::json!({ "item": id, "actor": actor });
            checkpoint = self
                .audit_in(&mut tx, OUTBOX_RETRIED, record)
                .await
                .map_err(q("audit a retry"))?;
        }
        tx.commit().await.map_err(q("commit a retry"))?;
        self.published(checkpoint);
        self.outbox_item(id).await
    }

    /// Counts of `connector`'s outbox by state, and when the oldest waiting item was written.
    pub async fn outbox_counts(
        &self,
        connector: &str,
    ) -> Result<(Vec<(String, u64)>, Option<String>), StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM outbox WHERE connector = $1 GROUP BY state ORDER BY state",
        )
        .bind(connector)
        .fetch_all(self.pool())
        .await
        .map_err(q("count outbox items"))?;
        let oldest: Option<String> = sqlx::query_scalar(
            "SELECT MIN(created_at) FROM outbox WHERE connector = $1 AND state IN ('pending', 'sending')",
        )
        .bind(connector)
        .fetch_one(self.pool())
        .await
        .map_err(q("read the oldest outbox item"))?;
        Ok((
            rows.into_iter()
                .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
                .collect(),
            oldest,
        ))
    }

    /// The stored state of connector `name` (cursor, health) with its outbox counts.
    pub async fn connector_status(&self, name: &str) -> Result<ConnectorStatus, StoreError> {
        let row = sqlx::query(
            "SELECT intake_cursor, last_sync_at, last_error, paused FROM connector_state WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read a connector's state"))?;
        let (counts, oldest) = self.outbox_counts(name).await?;
        let count = |states: &[&str]| -> u64 {
            counts
                .iter()
                .filter(|(s, _)| states.contains(&s.as_str()))
                .map(|(_, n)| n)
                .sum()
        };
        let text = |i: usize| -> Result<Option<String>, StoreError> {
            match &row {
                Some(r) => r.col(i),
                None => Ok(None),
            }
        };
        Ok(ConnectorStatus {
            name: name.to_string(),
            cursor: text(0)?,
            last_sync_at: text(1)?,
            last_error: text(2)?,
            paused: text(3)?,
            backlog: count(&["pending", "sending"]),
            dead: count(&["dead"]),
            delivered: count(&["delivered"]),
            oldest_waiting: oldest,
            ..ConnectorStatus::default()
        })
    }

    /// Records a connector's health: `error` (cleared with `None`), `paused` (why, or `None`),
    /// and, after a completed intake, its new `cursor`.
    pub async fn set_connector_state(
        &self,
        name: &str,
        cursor: Option<&str>,
        error: Option<&str>,
        paused: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let synced = cursor.map(|_| now.clone());
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start recording a connector's state"))?;
        sqlx::query(
            "INSERT INTO connector_state (name, intake_cursor, last_sync_at, last_error, paused, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET intake_cursor = COALESCE(excluded.intake_cursor, connector_state.intake_cursor),
               last_sync_at = COALESCE(excluded.last_sync_at, connector_state.last_sync_at),
               last_error = excluded.last_error, paused = excluded.paused, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(cursor)
        .bind(synced)
        .bind(error)
        .bind(paused)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(q("record a connector's state"))?;
        tx.commit().await.map_err(q("commit a connector's state"))
    }

    /// The deskhost ticket id of a help-desk ticket, if it was taken in.
    pub async fn ticket_for_external(
        &self,
        connector: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT ticket_id FROM ticket_sources WHERE connector = $1 AND external_id = $2",
        )
        .bind(connector)
        .bind(external_id)
        .fetch_optional(self.pool())
        .await
        .map_err(q("look up a ticket's source"))
    }
}

/// One field of a closed ticket: what deskhost proposed and what the help desk closed with.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CloseField {
    /// `category`, `queue`, `priority`, `language`.
    pub field: String,
    /// The triage plugin (`id@version`) whose proposal it was.
    pub plugin: String,
    /// Its proposal.
    pub proposed: Option<String>,
    /// The value at close.
    pub final_value: Option<String>,
}

impl Store {
    /// Records the final fields of ticket `ticket_id`, closed in the help desk, beside the
    /// latest triage proposal for it (once per ticket and field: a reopened and closed again
    /// ticket keeps its latest close). Returns what was recorded (nothing when deskhost never
    /// triaged the ticket).
    pub async fn record_close(
        &self,
        ticket_id: &str,
        connector: &str,
        finals: &[(String, String)],
    ) -> Result<Vec<CloseField>, StoreError> {
        let latest: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT s.plugin, s.proposal_json FROM runs r JOIN run_stages s ON s.run_id = r.run_id AND s.stage = 'triage'
             WHERE r.ticket_id = $1 ORDER BY r.ticket_version DESC, r.finished_at DESC LIMIT 1",
        )
        .bind(ticket_id)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read a ticket's latest triage"))?;
        let Some((plugin, Some(proposal))) = latest else {
            return Ok(Vec::new());
        };
        let proposal: serde_json::Value = serde_json::from_str(&proposal).unwrap_or_default();
        let now = now_rfc3339();
        let mut recorded = Vec::new();
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start recording a close"))?;
        for field in ["category", "queue", "priority", "language"] {
            let proposed = proposal[field]["value"].as_str().map(str::to_string);
            let final_value = finals
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, v)| v.clone());
            if proposed.is_none() && final_value.is_none() {
                continue;
            }
            sqlx::query(
                "INSERT INTO close_feedback (ticket_id, field, connector, plugin, proposed, final_value, closed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (ticket_id, field) DO UPDATE SET plugin = excluded.plugin, proposed = excluded.proposed,
                   final_value = excluded.final_value, closed_at = excluded.closed_at",
            )
            .bind(ticket_id)
            .bind(field)
            .bind(connector)
            .bind(&plugin)
            .bind(&proposed)
            .bind(&final_value)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(q("record a close"))?;
            recorded.push(CloseField {
                field: field.to_string(),
                plugin: plugin.clone(),
                proposed,
                final_value,
            });
        }
        tx.commit().await.map_err(q("commit a close"))?;
        Ok(recorded)
    }

    /// "Unchanged at close" per triage plugin version and field: (plugin, field, closed,
    /// unchanged).
    pub async fn close_accuracy(&self) -> Result<Vec<(String, String, u64, u64)>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT plugin, field, COUNT(*), SUM(CASE WHEN proposed = final_value THEN 1 ELSE 0 END)
             FROM close_feedback GROUP BY plugin, field ORDER BY plugin, field",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("read close feedback"))?;
        Ok(rows
            .into_iter()
            .map(|(p, f, n, u)| {
                (
                    p,
                    f,
                    u64::try_from(n).unwrap_or(0),
                    u64::try_from(u).unwrap_or(0),
                )
            })
            .collect())
    }
}

impl Store {
    /// Puts a claimed item back as it was before the claim (its attempt did not happen: the
    /// connector paused before sending).
    pub async fn release_outbox(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start releasing an outbox item"))?;
        sqlx::query(
            "UPDATE outbox SET state = 'pending', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, lease_until_ms = NULL, lease_owner = NULL, updated_at = $1 WHERE id = $2 AND state = 'sending'",
        )
        .bind(now_rfc3339())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(q("release an outbox item"))?;
        tx.commit().await.map_err(q("commit a release"))
    }
}

impl Store {
    /// Outbox items per connector and state, for the metrics.
    pub async fn outbox_states(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT connector, state, COUNT(*) FROM outbox GROUP BY connector, state ORDER BY connector, state",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("count outbox items"))?;
        Ok(rows
            .into_iter()
            .map(|(c, s, n)| (c, s, u64::try_from(n).unwrap_or(0)))
            .collect())
    }
}
