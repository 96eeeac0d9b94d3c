//! The review queue's writes: a reviewer's action, its effects on the ticket, the reply it
//! queues for delivery, and the audit record of all three, in one write transaction.
//! Also the API tokens reviewers and clients present.

use crate::audit::committed::{REVIEWED, ReviewActionRow, ReviewedRecord, StateRow};
use crate::audit::{self, AuditEntry};
use crate::commit::apply_effect;
use crate::store::{Col, Store, StoreError, q};
use deskhost_protocol::digest::{new_id, now_rfc3339};
use deskhost_protocol::gate::Effect;
use deskhost_protocol::outbox::Outgoing;
use deskhost_protocol::proposal::{ReplyDraft, ReplyProposal};
use deskhost_protocol::review::{
    Automation, Backlog, FieldKept, Outcomes, ReviewActed, ReviewAction, ReviewEdits, ReviewLabel,
    ReviewReport, Role, TokenInfo,
};
use deskhost_protocol::run::{ReviewItem, ReviewPayload, ReviewStatus};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Why a review action was not taken (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No such item.
    #[error("no review item {0}")]
    NotFound(String),
    /// Someone decided it first.
    #[error("review item {item} was already {status} by {actor} at {at}; nothing was changed")]
    Conflict {
        /// The item.
        item: String,
        /// `approved` or `rejected`.
        status: &'static str,
        /// Who decided it.
        actor: String,
        /// When.
        at: String,
    },
    /// The action is not valid for this item.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a review action row records besides who and when.
#[derive(Serialize)]
struct Detail<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    edits: Option<&'a ReviewEdits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    applied: &'a [Effect],
    notes: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outbound_message: Option<&'a str>,
}

/// The held effects with the reviewer's edits in place of the proposed values (an edited
/// field the gate did not hold is added).
pub fn effects_with_edits(held: &[Effect], edits: &ReviewEdits) -> Vec<Effect> {
    let mut out: Vec<Effect> = held
        .iter()
        .map(|e| match (e, edits) {
            (
                Effect::Category { .. },
                ReviewEdits {
                    category: Some(v), ..
                },
            ) => Effect::Category { value: v.clone() },
            (Effect::Queue { .. }, ReviewEdits { queue: Some(v), .. }) => {
                Effect::Queue { value: v.clone() }
            }
            (
                Effect::Priority { .. },
                ReviewEdits {
                    priority: Some(v), ..
                },
            ) => Effect::Priority { value: v.clone() },
            (
                Effect::Language { .. },
                ReviewEdits {
                    language: Some(v), ..
                },
            ) => Effect::Language { value: v.clone() },
            _ => e.clone(),
        })
        .collect();
    let has = |f: fn(&Effect) -> bool| out.iter().any(f);
    let mut add = Vec::new();
    if let Some(v) = &edits.category
        && !has(|e| matches!(e, Effect::Category { .. }))
    {
        add.push(Effect::Category { value: v.clone() });
    }
    if let Some(v) = &edits.queue
        && !has(|e| matches!(e, Effect::Queue { .. }))
    {
        add.push(Effect::Queue { value: v.clone() });
    }
    if let Some(v) = &edits.priority
        && !has(|e| matches!(e, Effect::Priority { .. }))
    {
        add.push(Effect::Priority { value: v.clone() });
    }
    if let Some(v) = &edits.language
        && !has(|e| matches!(e, Effect::Language { .. }))
    {
        add.push(Effect::Language { value: v.clone() });
    }
    out.extend(add);
    out
}

/// A review item's columns as [`review_row`] reads them: the stored row, the status its
/// verdict gives it, its latest assignment and who decided it.
macro_rules! review_item_select {
    () => {
        "SELECT r.id, r.run_id, r.ticket_id, r.ticket_version,
           COALESCE((SELECT CASE a.action WHEN 'approve' THEN 'approved' ELSE 'rejected' END
                     FROM review_actions a WHERE a.item_id = r.id AND a.action IN ('approve', 'reject')), r.status) AS status,
           r.reasons_json, r.payload_json, r.created_at,
           (SELECT a.detail_json FROM review_actions a WHERE a.item_id = r.id AND a.action = 'assign' ORDER BY a.seq DESC LIMIT 1) AS assigned,
           (SELECT a.actor FROM review_actions a WHERE a.item_id = r.id AND a.action IN ('approve', 'reject')) AS decided_by
         FROM review_items r"
    };
}

/// Which review items to list.
#[derive(Clone, Debug, Default)]
pub struct ReviewQuery {
    /// Only items with this status.
    pub status: Option<ReviewStatus>,
    /// Only items with a reason of this code (`low-confidence`, …).
    pub reason: Option<String>,
    /// Only items whose triage proposed this queue.
    pub queue: Option<String>,
    /// Only items of runs in which this plugin (`id@version`) ran.
    pub plugin: Option<String>,
    /// Only items assigned to this reviewer.
    pub assignee: Option<String>,
    /// At most this many (0: all).
    pub limit: usize,
}

impl Store {
    /// Review items in queue order: riskiest first, then by proposed priority, then oldest.
    /// A row that does not decode is an error naming the item, never a default.
    pub async fn review_items(&self, query: &ReviewQuery) -> Result<Vec<ReviewItem>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT x.* FROM (",
            review_item_select!(),
            " WHERE (CAST($2 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM run_stages s WHERE s.run_id = r.run_id AND s.plugin = $2))
             ) x WHERE (CAST($1 AS TEXT) IS NULL OR x.status = $1)",
        ))
        .bind(query.status.map(ReviewStatus::as_str))
        .bind(query.plugin.as_deref())
        .fetch_all(self.pool())
        .await
        .map_err(q("read review items"))?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let item = review_row(r)?;
            let keep = query
                .reason
                .as_deref()
                .is_none_or(|code| item.reasons.iter().any(|x| x.code.as_str() == code))
                && query.queue.as_deref().is_none_or(|queue| {
                    item.payload
                        .triage
                        .as_ref()
                        .is_some_and(|t| t.queue.value == queue)
                })
                && query
                    .assignee
                    .as_deref()
                    .is_none_or(|who| item.assignee.as_deref() == Some(who));
            if keep {
                items.push(item);
            }
        }
        items.sort_by(|a, b| {
            (b.risk(), b.priority_rank())
                .cmp(&(a.risk(), a.priority_rank()))
                .then_with(|| a.created_at.cmp(&b.created_at))
                .then_with(|| a.id.cmp(&b.id))
        });
        if query.limit > 0 {
            items.truncate(query.limit);
        }
        Ok(items)
    }

    /// One review item.
    pub async fn review_item(&self, id: &str) -> Result<Option<ReviewItem>, StoreError> {
        let row = sqlx::query(concat!(review_item_select!(), " WHERE r.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(q("read a review item"))?;
        row.as_ref().map(review_row).transpose()
    }

    /// Takes `action` on review item `item_id` as `actor`. One write transaction: the
    /// verdict check, the review log row, the ticket's new state (approve applies the held
    /// effects with the edits), the outbound reply (approve, when a reply was proposed) and
    /// the `reviewed` audit record. Of two verdicts on one item, exactly one is taken; the
    /// other gets [`ReviewError::Conflict`].
    pub async fn act_on_review(
        &self,
        item_id: &str,
        actor: &str,
        action: &ReviewAction,
    ) -> Result<ReviewActed, ReviewError> {
        action.check().map_err(ReviewError::Invalid)?;
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start a review action"))?;
        let item =
            sqlx::query("SELECT ticket_id, run_id, payload_json FROM review_items WHERE id = $1")
                .bind(item_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("read a review item"))?
                .ok_or_else(|| ReviewError::NotFound(item_id.to_string()))?;
        let ticket_id: String = item.col(0)?;
        let run_id: String = item.col(1)?;
        let payload: ReviewPayload =
            serde_json::from_str(item.col::<&str>(2)?).map_err(|e| StoreError::Corrupt {
                what: format!("review item {item_id}"),
                detail: e.to_string(),
            })?;
        let verdict = sqlx::query(
            "SELECT action, actor, created_at FROM review_actions WHERE item_id = $1 AND action IN ('approve', 'reject')",
        )
        .bind(item_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q("read a review verdict"))?;
        if let Some(v) = verdict {
            return Err(ReviewError::Conflict {
                item: item_id.to_string(),
                status: if v.col::<&str>(0)? == "approve" {
                    "approved"
                } else {
                    "rejected"
                },
                actor: v.col(1)?,
                at: v.col(2)?,
            });
        }

        let now = now_rfc3339();
        let (applied, status, reply) = match action {
            ReviewAction::Approve { edits } => {
                let draft = match &payload.reply {
                    Some(ReplyProposal::Draft(d)) => Some(d),
                    _ => None,
                };
                let reply = match (draft, &edits.reply) {
                    (_, Some(body)) => Some((body.clone(), citations(draft))),
                    (Some(d), None) => Some((d.body.clone(), citations(draft))),
                    (None, None) => None,
                };
                (
                    effects_with_edits(&payload.held_effects, edits),
                    Some("approved"),
                    reply,
                )
            }
            ReviewAction::Reject { .. } => (Vec::new(), Some("rejected"), None),
            ReviewAction::Assign { .. } => (Vec::new(), None, None),
        };

        // The ticket's new state: the only other writer of ticket state is the committer,
        // and both go through `apply_effect`.
        let mut notes = Vec::new();
        let state_ref = match status {
            Some(status) => {
                let mut state = StateRow::current(&mut tx, &ticket_id)
                    .await
                    .map_err(q("read a ticket's state"))?
                    .ok_or_else(|| {
                        ReviewError::Invalid(format!(
                            "ticket {ticket_id} of review item {item_id} has no state"
                        ))
                    })?;
                let mut tags: Vec<String> =
                    serde_json::from_str(&state.tags_json).map_err(|e| StoreError::Corrupt {
                        what: format!("the tags of ticket {ticket_id}"),
                        detail: e.to_string(),
                    })?;
                for effect in &applied {
                    if let Some(body) = apply_effect(&mut state, &mut tags, effect) {
                        notes.push(body);
                    }
                }
                state.status = status.to_string();
                state.tags_json = serde_json::to_string(&tags).map_err(|e| {
                    ReviewError::Invalid(format!("tags of ticket {ticket_id}: {e}"))
                })?;
                state.updated_at = now.clone();
                Some(
                    state
                        .write(&mut tx, Some(&run_id))
                        .await
                        .map_err(q("write a ticket's state"))?,
                )
            }
            None => None,
        };

        let message_id = reply.as_ref().map(|_| new_id("msg"));
        let (edits, reason, to) = match action {
            ReviewAction::Approve { edits } => ((!edits.is_empty()).then_some(edits), None, None),
            ReviewAction::Reject { reason } => (None, Some(reason.as_str()), None),
            ReviewAction::Assign { to } => (None, None, Some(to.as_str())),
        };
        let detail = serde_json::to_string(&Detail {
            edits,
            reason,
            to,
            applied: &applied,
            notes,
            outbound_message: message_id.as_deref(),
        })
        .map_err(|e| ReviewError::Invalid(format!("review action: {e}")))?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO review_actions (item_id, ticket_id, action, actor, detail_json, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
        )
        .bind(item_id)
        .bind(&ticket_id)
        .bind(action.name())
        .bind(actor)
        .bind(&detail)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await
        .map_err(q("record a review action"))?;
        if let (Some(id), Some((body, citations))) = (&message_id, &reply) {
            sqlx::query(
                "INSERT INTO outbound_messages (id, ticket_id, review_item, body, citations_json, state, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
            )
            .bind(id)
            .bind(&ticket_id)
            .bind(item_id)
            .bind(body)
            .bind(citations)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(q("queue an approved reply"))?;
        }
        // Approved effects and the reply go back to the help desk the ticket came from.
        let mut outgoing: Vec<Outgoing> = applied.iter().cloned().map(Outgoing::Effect).collect();
        if let Some((body, citations)) = &reply {
            let ids: Vec<String> = serde_json::from_str(citations).unwrap_or_default();
            outgoing.push(Outgoing::reply(body.clone(), ids));
        }
        crate::outbox::enqueue(&mut tx, &ticket_id, &format!("review:{item_id}"), &outgoing)
            .await
            .map_err(q("queue the approval for the help desk"))?;
        let row = ReviewActionRow {
            seq,
            item_id: item_id.to_string(),
            ticket_id: ticket_id.clone(),
            action: action.name().to_string(),
            actor: actor.to_string(),
            detail_json: detail,
            created_at: now.clone(),
        };
        let record = ReviewedRecord {
            seq,
            item_id: item_id.to_string(),
            action: action.name().to_string(),
            actor: actor.to_string(),
            row: row.digest(),
            state: state_ref,
        };
        let payload = serde_json::to_value(&record)
            .map_err(|e| ReviewError::Invalid(format!("review audit record: {e}")))?;
        let mut head = audit::load_head(&mut *tx)
            .await
            .map_err(q("read the audit head"))?;
        audit::append(
            &mut tx,
            &mut head,
            &[AuditEntry::run(&run_id, REVIEWED, payload)],
        )
        .await
        .map_err(q("audit a review action"))?;
        tx.commit().await.map_err(q("commit a review action"))?;
        Ok(ReviewActed {
            seq,
            item_id: item_id.to_string(),
            ticket_id,
            action: action.name().to_string(),
            actor: actor.to_string(),
            status: match status {
                Some("approved") => ReviewStatus::Approved,
                Some(_) => ReviewStatus::Rejected,
                None => ReviewStatus::Open,
            },
            applied,
            outbound_message: message_id,
            at: now,
        })
    }

    /// Every item with a verdict: (item, verdict action, its detail, the plugins of its
    /// run's triage, reply and escalation stages, the ticket's stored input).
    async fn verdicts(&self) -> Result<Vec<Verdict>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.payload_json, v.action, v.detail_json,
               (SELECT s.plugin FROM run_stages s WHERE s.run_id = r.run_id AND s.stage = 'triage'),
               (SELECT s.plugin FROM run_stages s WHERE s.run_id = r.run_id AND s.stage = 'reply'),
               (SELECT s.plugin FROM run_stages s WHERE s.run_id = r.run_id AND s.stage = 'escalation'),
               t.input_json
             FROM review_items r
             JOIN review_actions v ON v.item_id = r.id AND v.action IN ('approve', 'reject')
             JOIN tickets t ON t.id = r.ticket_id AND t.version = r.ticket_version
             ORDER BY v.seq",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("read review verdicts"))?;
        rows.iter()
            .map(|r| {
                let id: String = r.col(0)?;
                let corrupt = |detail: String| StoreError::Corrupt {
                    what: format!("review item {id}"),
                    detail,
                };
                #[derive(serde::Deserialize, Default)]
                struct Detail {
                    #[serde(default)]
                    edits: Option<ReviewEdits>,
                }
                let detail: Detail = serde_json::from_str(r.col::<&str>(3)?)
                    .map_err(|e| corrupt(format!("its verdict: {e}")))?;
                Ok(Verdict {
                    payload: serde_json::from_str(r.col::<&str>(1)?)
                        .map_err(|e| corrupt(e.to_string()))?,
                    approved: r.col::<&str>(2)? == "approve",
                    edits: detail.edits.unwrap_or_default(),
                    triage: r.col(4)?,
                    reply: r.col(5)?,
                    escalation: r.col(6)?,
                    ticket: serde_json::from_str(r.col::<&str>(7)?)
                        .map_err(|e| corrupt(format!("its ticket: {e}")))?,
                })
            })
            .collect()
    }

    /// Reviewers' verdicts as figures: per triage plugin version and field the share kept
    /// unchanged (a rejection keeps nothing), reply and escalation outcomes per plugin
    /// version, the automation rate and the backlog.
    pub async fn review_report(&self) -> Result<ReviewReport, StoreError> {
        let mut fields: BTreeMap<(String, &'static str), (u64, u64)> = BTreeMap::new();
        let mut replies: BTreeMap<String, Outcomes> = BTreeMap::new();
        let mut escalations: BTreeMap<String, Outcomes> = BTreeMap::new();
        let outcomes = |plugin: &str| Outcomes {
            plugin: plugin.to_string(),
            accepted: 0,
            edited: 0,
            rejected: 0,
        };
        for v in self.verdicts().await? {
            if let (Some(plugin), Some(t)) = (&v.triage, &v.payload.triage) {
                let proposed = [
                    ("category", t.category.value.clone(), &v.edits.category),
                    ("queue", t.queue.value.clone(), &v.edits.queue),
                    (
                        "priority",
                        t.priority.value.as_str().to_string(),
                        &v.edits.priority,
                    ),
                    ("language", t.language.value.clone(), &v.edits.language),
                ];
                for (field, value, edit) in proposed {
                    let kept = v.approved && edit.as_ref().is_none_or(|e| *e == value);
                    let entry = fields.entry((plugin.clone(), field)).or_default();
                    entry.0 += 1;
                    entry.1 += u64::from(kept);
                }
            }
            if let (Some(plugin), Some(ReplyProposal::Draft(_))) = (&v.reply, &v.payload.reply) {
                let o = replies
                    .entry(plugin.clone())
                    .or_insert_with(|| outcomes(plugin));
                match (v.approved, v.edits.reply.is_some()) {
                    (false, _) => o.rejected += 1,
                    (true, false) => o.accepted += 1,
                    (true, true) => o.edited += 1,
                }
            }
            if let (Some(plugin), Some(_)) = (&v.escalation, &v.payload.escalation) {
                let o = escalations
                    .entry(plugin.clone())
                    .or_insert_with(|| outcomes(plugin));
                if v.approved {
                    o.accepted += 1;
                } else {
                    o.rejected += 1;
                }
            }
        }
        let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
            .fetch_one(self.pool())
            .await
            .map_err(q("count runs"))?;
        let reviewed: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT run_id) FROM review_items")
            .fetch_one(self.pool())
            .await
            .map_err(q("count review items"))?;
        let backlog = self.review_backlog().await?;
        let runs = u64::try_from(runs).unwrap_or(0);
        let without_review = runs.saturating_sub(u64::try_from(reviewed).unwrap_or(0));
        let rate = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 / whole as f64
            }
        };
        Ok(ReviewReport {
            fields: fields
                .into_iter()
                .map(|((plugin, field), (decided, unchanged))| FieldKept {
                    plugin,
                    field: field.to_string(),
                    decided,
                    unchanged,
                    rate: rate(unchanged, decided),
                })
                .collect(),
            replies: replies.into_values().collect(),
            escalations: escalations.into_values().collect(),
            automation: Automation {
                runs,
                without_review,
                rate: rate(without_review, runs),
            },
            backlog,
            at_close: self
                .close_accuracy()
                .await?
                .into_iter()
                .map(|(plugin, field, decided, unchanged)| FieldKept {
                    plugin,
                    field,
                    decided,
                    unchanged,
                    rate: rate(unchanged, decided),
                })
                .collect(),
        })
    }

    /// The open review items: how many, and when the oldest was created.
    pub async fn review_backlog(&self) -> Result<Backlog, StoreError> {
        let open = sqlx::query(
            "SELECT COUNT(*), MIN(r.created_at) FROM review_items r
             WHERE NOT EXISTS (SELECT 1 FROM review_actions a WHERE a.item_id = r.id AND a.action IN ('approve', 'reject'))",
        )
        .fetch_one(self.pool())
        .await
        .map_err(q("measure the backlog"))?;
        Ok(Backlog {
            open: u64::try_from(open.col::<i64>(0)?).unwrap_or(0),
            oldest: open.col(1)?,
        })
    }

    /// The approved items as labeled tickets (the values the reviewer kept or set), in the
    /// format `train` and `eval` read.
    pub async fn review_labels(&self) -> Result<Vec<ReviewLabel>, StoreError> {
        let mut out = Vec::new();
        for v in self.verdicts().await? {
            let Some(t) = v.payload.triage.as_ref().filter(|_| v.approved) else {
                continue;
            };
            let pick = |edit: &Option<String>, proposed: String| edit.clone().unwrap_or(proposed);
            let mut labels = BTreeMap::new();
            labels.insert(
                "category".into(),
                pick(&v.edits.category, t.category.value.clone()),
            );
            labels.insert("queue".into(), pick(&v.edits.queue, t.queue.value.clone()));
            labels.insert(
                "priority".into(),
                pick(&v.edits.priority, t.priority.value.as_str().to_string()),
            );
            let language = pick(&v.edits.language, t.language.value.clone());
            out.push(ReviewLabel {
                id: v.ticket.id,
                subject: v.ticket.subject,
                body: v.ticket.body,
                language: Some(language),
                labels,
            });
        }
        Ok(out)
    }

    /// Creates an API token; returns it and its secret (shown once; only its hash is kept).
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
    ) -> Result<(TokenInfo, String), StoreError> {
        deskhost_protocol::records::check_id("name", name).map_err(|detail| {
            StoreError::Invalid {
                what: "the token name".into(),
                detail,
            }
        })?;
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| StoreError::Invalid {
            what: "a token".into(),
            detail: format!("no randomness from the system: {e}"),
        })?;
        let secret = format!("dh_{}", hex::encode(bytes));
        let info = TokenInfo {
            id: new_id("tok"),
            name: name.to_string(),
            role,
            created_at: now_rfc3339(),
            revoked_at: None,
        };
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start creating a token"))?;
        sqlx::query("INSERT INTO api_tokens (id, name, role, secret_sha256, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&info.id)
            .bind(&info.name)
            .bind(role.as_str())
            .bind(secret_digest(&secret))
            .bind(&info.created_at)
            .execute(&mut *tx)
            .await
            .map_err(q("store a token"))?;
        self.audit_token(&mut tx, "token-created", &info).await?;
        tx.commit().await.map_err(q("commit a token"))?;
        Ok((info, secret))
    }

    async fn audit_token(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        kind: &str,
        info: &TokenInfo,
    ) -> Result<(), StoreError> {
        let payload = serde_json::to_value(info).map_err(|e| StoreError::Invalid {
            what: "a token".into(),
            detail: e.to_string(),
        })?;
        let mut head = audit::load_head(&mut **tx)
            .await
            .map_err(q("read the audit head"))?;
        audit::append(tx, &mut head, &[AuditEntry::global(kind, payload)])
            .await
            .map_err(q("audit a token"))
    }

    /// Every token, newest first.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY created_at DESC, id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("read tokens"))?;
        rows.iter().map(token_row).collect()
    }

    /// Revokes the token with this id or name (every one of that name); returns those revoked.
    pub async fn revoke_token(&self, id_or_name: &str) -> Result<Vec<TokenInfo>, StoreError> {
        let now = now_rfc3339();
        let mut tx = crate::db::begin_write(self.writer())
            .await
            .map_err(q("start revoking a token"))?;
        let rows = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE (id = $2 OR name = $2) AND revoked_at IS NULL
             RETURNING id, name, role, created_at, revoked_at",
        )
        .bind(&now)
        .bind(id_or_name)
        .fetch_all(&mut *tx)
        .await
        .map_err(q("revoke a token"))?;
        let revoked: Vec<TokenInfo> = rows.iter().map(token_row).collect::<Result<_, _>>()?;
        for info in &revoked {
            self.audit_token(&mut tx, "token-revoked", info).await?;
        }
        tx.commit().await.map_err(q("commit a revocation"))?;
        Ok(revoked)
    }

    /// The live token with this secret, if there is one.
    pub async fn token_for(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        if !secret.starts_with("dh_") || secret.len() > 128 {
            return Ok(None);
        }
        sqlx::query(
            "SELECT id, name, role, created_at, revoked_at FROM api_tokens WHERE secret_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(secret_digest(secret))
        .fetch_optional(self.pool())
        .await
        .map_err(q("look up a token"))?
        .as_ref()
        .map(token_row)
        .transpose()
    }
}

/// The article ids a reply cites (an edited reply keeps the draft's citations: the
/// reviewer answered from the same articles).
fn citations(draft: Option<&ReplyDraft>) -> String {
    let ids: Vec<&str> = draft
        .map(|d| d.citations.iter().map(|c| c.article_id.as_str()).collect())
        .unwrap_or_default();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

fn review_row(r: &sqlx::any::AnyRow) -> Result<ReviewItem, StoreError> {
    let id: String = r.col(0)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        what: format!("review item {id}"),
        detail,
    };
    let status_text: String = r.col(4)?;
    let assigned: Option<String> = r.col(8)?;
    #[derive(serde::Deserialize)]
    struct Assigned {
        to: String,
    }
    let assignee = assigned
        .map(|d| serde_json::from_str::<Assigned>(&d).map(|a| a.to))
        .transpose()
        .map_err(|e| corrupt(format!("its assignment: {e}")))?;
    Ok(ReviewItem {
        run_id: r.col(1)?,
        ticket_id: r.col(2)?,
        ticket_version: r.version(3)?,
        status: serde_json::from_value(serde_json::Value::String(status_text.clone()))
            .map_err(|_| corrupt(format!("unknown status {status_text:?}")))?,
        reasons: serde_json::from_str(r.col::<&str>(5)?).map_err(|e| corrupt(e.to_string()))?,
        payload: serde_json::from_str(r.col::<&str>(6)?).map_err(|e| corrupt(e.to_string()))?,
        created_at: r.col(7)?,
        assignee,
        decided_by: r.col(9)?,
        id,
    })
}

fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn token_row(r: &sqlx::any::AnyRow) -> Result<TokenInfo, StoreError> {
    let role: String = r.col(2)?;
    Ok(TokenInfo {
        id: r.col(0)?,
        name: r.col(1)?,
        role: role.parse().map_err(|detail| StoreError::Corrupt {
            what: "a token's role".into(),
            detail,
        })?,
        created_at: r.col(3)?,
        revoked_at: r.col(4)?,
    })
}

/// An item with a verdict, as the report and the labels read it.
struct Verdict {
    payload: ReviewPayload,
    approved: bool,
    edits: ReviewEdits,
    triage: Option<String>,
    reply: Option<String>,
    escalation: Option<String>,
    ticket: deskhost_protocol::records::TicketInput,
}
