//! The embedded store: SQLite through sqlx (WAL, synchronous=FULL).
//!
//! Tickets keep every content version; customers and articles keep a version counter that
//! moves when their content changes. Decisions are written by [`crate::pipeline::commit`] in
//! one transaction per batch together with their audit records.

use crate::audit::checkpoint::{Checkpoint, Checkpointer};
use crate::audit::committed::{INGESTED, IngestRecord, StateRow};
use crate::audit::{self, AuditEntry};
use crate::records::{ArticleRecord, CustomerRecord, TicketInput, TicketRecord};
use crate::util::{now_rfc3339, sha256_hex};
use deskhost_protocol::run::{ReviewItem, ReviewStatus};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// Database file.
        path: PathBuf,
        /// Why.
        source: sqlx::Error,
    },
    /// Schema migration failed.
    #[error("cannot migrate the store at {path}: {source}")]
    Migrate {
        /// Database file.
        path: PathBuf,
        /// Why.
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("store: {what} failed: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: sqlx::Error,
    },
    /// A stored value does not decode.
    #[error("store: {what} is corrupt: {detail}")]
    Corrupt {
        /// Which value.
        what: String,
        /// Why.
        detail: String,
    },
    /// A record to store is not valid (nothing was written).
    #[error("{what} is not valid: {detail}")]
    Invalid {
        /// Which record.
        what: String,
        /// What is wrong.
        detail: String,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// What happened to an ingested ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ingested {
    /// Ticket id.
    pub id: String,
    /// The version its content maps to.
    pub version: u32,
    /// A new version was stored.
    pub new_version: bool,
    /// The version still waits for a decision.
    pub pending: bool,
}

/// How an upsert went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Upsert {
    /// New record.
    Inserted,
    /// Content changed; version moved.
    Updated,
    /// Same content.
    Unchanged,
}

/// A short view of a ticket, for `helpdesk.recent-tickets`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TicketSummaryRow {
    /// Id.
    pub id: String,
    /// Latest version.
    pub version: u32,
    /// Subject.
    pub subject: String,
    /// Help-desk status.
    pub status: String,
    /// Category applied, if any.
    pub category: Option<String>,
    /// Creation time.
    pub created_at: String,
}

/// The SQLite store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    checkpoints: Option<Arc<Checkpointer>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            pool,
            path: path.to_path_buf(),
            checkpoints: None,
        })
    }

    /// This store, signing audit checkpoints with `checkpointer` whenever one is due.
    pub fn with_checkpoints(mut self, checkpointer: Checkpointer) -> Self {
        self.checkpoints = Some(Arc::new(checkpointer));
        self
    }

    /// The automatic checkpointer, if a signing key is configured.
    pub fn checkpointer(&self) -> Option<&Checkpointer> {
        self.checkpoints.as_deref()
    }

    /// After audit records were appended in `tx` up to `head`: signs a checkpoint if one is
    /// due. Pass the result to [`Store::published`] once `tx` committed.
    pub async fn checkpoint_if_due(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        head: &audit::AuditHead,
    ) -> std::result::Result<Option<Checkpoint>, sqlx::Error> {
        match &self.checkpoints {
            Some(c) => c.after_append(tx, head).await,
            None => Ok(None),
        }
    }

    /// Publishes a committed checkpoint to the configured log file.
    pub fn published(&self, checkpoint: Option<Checkpoint>) {
        if let (Some(c), Some(cp)) = (&self.checkpoints, checkpoint) {
            c.publish(&cp);
        }
    }

    /// Appends `entries` to the audit log in a transaction of their own (imports, plugin
    /// events), with a checkpoint when one is due.
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        // IMMEDIATE: hold the write lock from the head read to the commit, so two processes
        // appending cannot fork the chain.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(q("begin audit append"))?;
        let mut head = audit::load_head(&mut *tx)
            .await
            .map_err(q("read the audit head"))?;
        audit::append(&mut tx, &mut head, entries)
            .await
            .map_err(q("append audit records"))?;
        let cp = self
            .checkpoint_if_due(&mut tx, &head)
            .await
            .map_err(q("sign an audit checkpoint"))?;
        tx.commit().await.map_err(q("commit audit records"))?;
        self.published(cp);
        Ok(())
    }

    /// The connection pool (for the committer and the audit verifier).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores each ticket as a new version if its content changed, and queues new versions.
    pub async fn ingest_tickets(&self, inputs: &[TicketInput]) -> Result<Vec<Ingested>> {
        // IMMEDIATE: this transaction reads, then writes; a deferred one would fail with
        // SQLITE_BUSY (no wait) when another writer commits between its read and its write.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(q("begin ingest"))?;
        let now = now_rfc3339();
        let mut out = Vec::with_capacity(inputs.len());
        let mut audited = Vec::new();
        let mut checkpoint = None;
        for input in inputs {
            let hash = input.content_hash();
            let latest = sqlx::query("SELECT version, content_hash FROM tickets WHERE id = ? ORDER BY version DESC LIMIT 1")
                .bind(&input.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("read latest ticket version"))?;
            let (latest_version, latest_hash) = match latest {
                Some(row) => (row.get::<i64, _>(0) as u32, row.get::<String, _>(1)),
                None => (0, String::new()),
            };
            if latest_version > 0 && latest_hash == hash {
                let state: Option<String> = sqlx::query_scalar(
                    "SELECT state FROM work_queue WHERE ticket_id = ? AND version = ?",
                )
                .bind(&input.id)
                .bind(i64::from(latest_version))
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("read queue state"))?;
                out.push(Ingested {
                    id: input.id.clone(),
                    version: latest_version,
                    new_version: false,
                    pending: state.as_deref() == Some("pending"),
                });
                continue;
            }
            let version = latest_version + 1;
            let json = serde_json::to_string(input).map_err(|e| StoreError::Corrupt {
                what: format!("ticket {}", input.id),
                detail: e.to_string(),
            })?;
            sqlx::query("INSERT INTO tickets (id, version, content_hash, input_json, customer_id, ingested_at) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(&input.id)
                .bind(i64::from(version))
                .bind(&hash)
                .bind(&json)
                .bind(&input.customer_id)
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(q("insert ticket"))?;
            let state = match StateRow::current(&mut tx, &input.id)
                .await
                .map_err(q("read ticket state"))?
            {
                Some(current) => StateRow {
                    latest_version: i64::from(version),
                    status: "new".into(),
                    updated_at: now.clone(),
                    ..current
                },
                None => StateRow {
                    ticket_id: input.id.clone(),
                    latest_version: i64::from(version),
                    status: "new".into(),
                    category: None,
                    queue: None,
                    priority: None,
                    language: None,
                    tags_json: serde_json::to_string(&input.tags).unwrap_or_else(|_| "[]".into()),
                    created_at: input.created_at.clone().unwrap_or_else(|| now.clone()),
                    updated_at: now.clone(),
                },
            };
            let state = state
                .write(&mut tx, None)
                .await
                .map_err(q("update ticket state"))?;
            audited.push(IngestRecord {
                ticket_id: input.id.clone(),
                version: i64::from(version),
                content_hash: hash.clone(),
                state,
            });
            sqlx::query("INSERT INTO work_queue (ticket_id, version, state, enqueued_at) VALUES (?, ?, 'pending', ?)")
                .bind(&input.id)
                .bind(i64::from(version))
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(q("enqueue ticket"))?;
            out.push(Ingested {
                id: input.id.clone(),
                version,
                new_version: true,
                pending: true,
            });
        }
        if !audited.is_empty() {
            let mut head = audit::load_head(&mut *tx)
                .await
                .map_err(q("read the audit head"))?;
            let entry = AuditEntry::global(INGESTED, serde_json::json!(audited));
            audit::append(&mut tx, &mut head, &[entry])
                .await
                .map_err(q("audit the ingest"))?;
            checkpoint = self
                .checkpoint_if_due(&mut tx, &head)
                .await
                .map_err(q("sign an audit checkpoint"))?;
        }
        tx.commit().await.map_err(q("commit ingest"))?;
        self.published(checkpoint);
        Ok(out)
    }

    /// One ticket version.
    pub async fn ticket(&self, id: &str, version: u32) -> Result<Option<TicketRecord>> {
        let row = sqlx::query(
            "SELECT version, content_hash, input_json FROM tickets WHERE id = ? AND version = ?",
        )
        .bind(id)
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read ticket"))?;
        row.map(|r| decode_ticket(id, &r)).transpose()
    }

    /// The latest version of a ticket.
    pub async fn latest_ticket(&self, id: &str) -> Result<Option<TicketRecord>> {
        let row = sqlx::query("SELECT version, content_hash, input_json FROM tickets WHERE id = ? ORDER BY version DESC LIMIT 1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read ticket"))?;
        row.map(|r| decode_ticket(id, &r)).transpose()
    }

    /// The customer's other tickets, newest first.
    pub async fn recent_tickets(
        &self,
        customer_id: &str,
        exclude: &str,
        limit: u32,
    ) -> Result<Vec<TicketSummaryRow>> {
        let rows = sqlx::query(
            "SELECT s.id, s.latest_version, t.input_json, s.status, s.category, s.created_at
             FROM ticket_state s JOIN tickets t ON t.id = s.id AND t.version = s.latest_version
             WHERE t.customer_id = ? AND s.id <> ?
             ORDER BY s.created_at DESC, s.id DESC LIMIT ?",
        )
        .bind(customer_id)
        .bind(exclude)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(q("read recent tickets"))?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                let input: TicketInput =
                    serde_json::from_str(r.get::<&str, _>(2)).map_err(|e| StoreError::Corrupt {
                        what: format!("ticket {id}"),
                        detail: e.to_string(),
                    })?;
                Ok(TicketSummaryRow {
                    version: r.get::<i64, _>(1) as u32,
                    subject: input.subject,
                    status: r.get(3),
                    category: r.get(4),
                    created_at: r.get(5),
                    id,
                })
            })
            .collect()
    }

    /// Ticket versions waiting for a decision, oldest first.
    pub async fn pending(&self) -> Result<Vec<(String, u32)>> {
        let rows = sqlx::query("SELECT ticket_id, version FROM work_queue WHERE state = 'pending' ORDER BY enqueued_at, ticket_id")
            .fetch_all(&self.pool)
            .await
            .map_err(q("read pending work"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) as u32))
            .collect())
    }

    /// Inserts or updates a customer; the version moves when the content changes.
    pub async fn upsert_customer(&self, c: &CustomerRecord) -> Result<(Upsert, u32)> {
        let json = serde_json::to_string(c).map_err(|e| StoreError::Corrupt {
            what: format!("customer {}", c.id),
            detail: e.to_string(),
        })?;
        let hash = sha256_hex(json.as_bytes());
        self.upsert_versioned("SELECT version, content_hash FROM customers WHERE id = ?", &c.id, &hash, |version| {
            sqlx::query(
                "INSERT INTO customers (id, version, content_hash, record_json, updated_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT(id) DO UPDATE SET version = excluded.version, content_hash = excluded.content_hash,
                 record_json = excluded.record_json, updated_at = excluded.updated_at",
            )
            .bind(c.id.clone())
            .bind(i64::from(version))
            .bind(hash.clone())
            .bind(json.clone())
            .bind(now_rfc3339())
        })
        .await
    }

    /// Imports one CRM line. By default it is a merge: the fields the line has replace the
    /// stored ones, a field set to `null` is cleared, fields the line leaves out are kept.
    /// With `replace`, the line is the whole record. Read and write happen in one
    /// transaction, so concurrent imports cannot lose each other's fields.
    pub async fn import_customer(
        &self,
        line: &serde_json::Map<String, serde_json::Value>,
        replace: bool,
    ) -> Result<(Upsert, u32)> {
        let id = line
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(q("begin customer import"))?;
        let current =
            sqlx::query("SELECT version, content_hash, record_json FROM customers WHERE id = ?")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("read customer"))?;
        let corrupt = |detail: String| StoreError::Corrupt {
            what: format!("customer {id}"),
            detail,
        };
        let mut merged = serde_json::Map::new();
        let mut stored = None;
        if let Some(row) = &current {
            let version: i64 = row.try_get(0).map_err(|e| corrupt(e.to_string()))?;
            let hash: String = row.try_get(1).map_err(|e| corrupt(e.to_string()))?;
            let json: String = row.try_get(2).map_err(|e| corrupt(e.to_string()))?;
            if !replace {
                merged = serde_json::from_str(&json).map_err(|e| corrupt(e.to_string()))?;
            }
            stored = Some((version as u32, hash));
        }
        for (k, v) in line {
            if v.is_null() {
                merged.remove(k);
            } else {
                merged.insert(k.clone(), v.clone());
            }
        }
        let record: CustomerRecord = serde_json::from_value(serde_json::Value::Object(merged))
            .map_err(|e| StoreError::Invalid {
                what: format!("customer {id}"),
                detail: e.to_string(),
            })?;
        let json = serde_json::to_string(&record).map_err(|e| corrupt(e.to_string()))?;
        let hash = sha256_hex(json.as_bytes());
        let (outcome, version) = match stored {
            Some((version, old)) if old == hash => return Ok((Upsert::Unchanged, version)),
            Some((version, _)) => (Upsert::Updated, version + 1),
            None => (Upsert::Inserted, 1),
        };
        sqlx::query(
            "INSERT INTO customers (id, version, content_hash, record_json, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET version = excluded.version, content_hash = excluded.content_hash,
             record_json = excluded.record_json, updated_at = excluded.updated_at",
        )
        .bind(&record.id)
        .bind(i64::from(version))
        .bind(&hash)
        .bind(&json)
        .bind(now_rfc3339())
        .execute(&mut *tx)
        .await
        .map_err(q("write customer"))?;
        tx.commit().await.map_err(q("commit customer import"))?;
        Ok((outcome, version))
    }

    /// A customer and its version.
    pub async fn customer(&self, id: &str) -> Result<Option<(CustomerRecord, u32)>> {
        let row = sqlx::query("SELECT record_json, version FROM customers WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read customer"))?;
        row.map(|r| {
            let c: CustomerRecord =
                serde_json::from_str(r.get::<&str, _>(0)).map_err(|e| StoreError::Corrupt {
                    what: format!("customer {id}"),
                    detail: e.to_string(),
                })?;
            Ok((c, r.get::<i64, _>(1) as u32))
        })
        .transpose()
    }

    /// Number of customers.
    pub async fn customer_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers")
            .fetch_one(&self.pool)
            .await
            .map_err(q("count customers"))?;
        Ok(n as u64)
    }

    /// Inserts or updates an article; the version moves when the content changes.
    pub async fn upsert_article(&self, a: &ArticleRecord) -> Result<(Upsert, u32)> {
        let hash = a.content_hash();
        self.upsert_versioned("SELECT version, content_hash FROM kb_articles WHERE id = ?", &a.id, &hash, |version| {
            sqlx::query(
                "INSERT INTO kb_articles (id, version, content_hash, title, body, language, collection, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT(id) DO UPDATE SET version = excluded.version, content_hash = excluded.content_hash, title = excluded.title,
                 body = excluded.body, language = excluded.language, collection = excluded.collection, updated_at = excluded.updated_at",
            )
            .bind(a.id.clone())
            .bind(i64::from(version))
            .bind(hash.clone())
            .bind(a.title.clone())
            .bind(a.body.clone())
            .bind(a.language.clone())
            .bind(a.collection.clone())
            .bind(now_rfc3339())
        })
        .await
    }

    async fn upsert_versioned<'q>(
        &self,
        select_current: &'static str,
        id: &str,
        hash: &str,
        write: impl FnOnce(u32) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<(Upsert, u32)> {
        let row = sqlx::query(select_current)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read current version"))?;
        let (outcome, version) = match row {
            Some(r) if r.get::<String, _>(1) == hash => {
                return Ok((Upsert::Unchanged, r.get::<i64, _>(0) as u32));
            }
            Some(r) => (Upsert::Updated, r.get::<i64, _>(0) as u32 + 1),
            None => (Upsert::Inserted, 1),
        };
        write(version)
            .execute(&self.pool)
            .await
            .map_err(q("write record"))?;
        Ok((outcome, version))
    }

    /// All articles, by id.
    pub async fn articles(&self) -> Result<Vec<ArticleRecord>> {
        let rows = sqlx::query(
            "SELECT id, title, body, language, collection, version FROM kb_articles ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("read articles"))?;
        Ok(rows
            .iter()
            .map(|r| ArticleRecord {
                id: r.get(0),
                title: r.get(1),
                body: r.get(2),
                language: r.get(3),
                collection: r.get(4),
                version: r.get::<i64, _>(5) as u32,
            })
            .collect())
    }

    /// A value from the `meta` table.
    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read meta"))
    }

    /// Sets a value in the `meta` table.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(q("write meta"))?;
        Ok(())
    }

    /// Review items, oldest first, optionally only those with `status`. A row that does
    /// not decode is an error naming the item, never a default.
    pub async fn review_items(&self, status: Option<ReviewStatus>) -> Result<Vec<ReviewItem>> {
        let rows = sqlx::query(
            "SELECT id, run_id, ticket_id, ticket_version, status, reasons_json, payload_json, created_at
             FROM review_items WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at, id",
        )
        .bind(status.map(ReviewStatus::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(q("read review items"))?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(q("read a review item"))?;
                let corrupt = |detail: String| StoreError::Corrupt {
                    what: format!("review item {id}"),
                    detail,
                };
                let json = |i: usize| -> Result<String> {
                    r.try_get(i).map_err(|e| corrupt(e.to_string()))
                };
                let status_text = json(4)?;
                Ok(ReviewItem {
                    run_id: json(1)?,
                    ticket_id: json(2)?,
                    ticket_version: r
                        .try_get::<i64, _>(3)
                        .map_err(|e| corrupt(e.to_string()))?
                        .try_into()
                        .map_err(|_| corrupt("ticket_version out of range".into()))?,
                    status: serde_json::from_value(serde_json::Value::String(status_text.clone()))
                        .map_err(|_| corrupt(format!("unknown status {status_text:?}")))?,
                    reasons: serde_json::from_str(&json(5)?).map_err(|e| corrupt(e.to_string()))?,
                    payload: serde_json::from_str(&json(6)?).map_err(|e| corrupt(e.to_string()))?,
                    created_at: json(7)?,
                    id,
                })
            })
            .collect()
    }
}

fn decode_ticket(id: &str, r: &sqlx::sqlite::SqliteRow) -> Result<TicketRecord> {
    let input: TicketInput =
        serde_json::from_str(r.get::<&str, _>(2)).map_err(|e| StoreError::Corrupt {
            what: format!("ticket {id}"),
            detail: e.to_string(),
        })?;
    Ok(TicketRecord {
        input,
        version: r.get::<i64, _>(0) as u32,
        content_hash: r.get(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(id: &str, body: &str) -> TicketInput {
        TicketInput {
            id: id.into(),
            subject: "s".into(),
            body: body.into(),
            channel: None,
            language: None,
            customer_id: Some("C-1".into()),
            requester: None,
            tags: vec![],
            messages: vec![],
            created_at: None,
            labels: Default::default(),
            reference_answer: None,
            customer: None,
            handle_seconds: None,
        }
    }

    #[tokio::test]
    async fn tickets_version_on_content_change_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let a = store
            .ingest_tickets(&[ticket("T-1", "hello")])
            .await
            .unwrap();
        assert_eq!(
            a[0],
            Ingested {
                id: "T-1".into(),
                version: 1,
                new_version: true,
                pending: true
            }
        );
        let b = store
            .ingest_tickets(&[ticket("T-1", "hello")])
            .await
            .unwrap();
        assert_eq!((b[0].version, b[0].new_version), (1, false));
        let c = store
            .ingest_tickets(&[ticket("T-1", "hello again")])
            .await
            .unwrap();
        assert_eq!((c[0].version, c[0].new_version), (2, true));
        assert_eq!(store.pending().await.unwrap().len(), 2);
        assert_eq!(
            store
                .latest_ticket("T-1")
                .await
                .unwrap()
                .unwrap()
                .input
                .body,
            "hello again"
        );
        assert_eq!(
            store.ticket("T-1", 1).await.unwrap().unwrap().input.body,
            "hello"
        );
    }

    #[tokio::test]
    async fn customers_and_articles_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let mut c = CustomerRecord {
            id: "C-1".into(),
            tier: Some("vip".into()),
            ..Default::default()
        };
        assert_eq!(
            store.upsert_customer(&c).await.unwrap(),
            (Upsert::Inserted, 1)
        );
        assert_eq!(
            store.upsert_customer(&c).await.unwrap(),
            (Upsert::Unchanged, 1)
        );
        c.tier = Some("standard".into());
        assert_eq!(
            store.upsert_customer(&c).await.unwrap(),
            (Upsert::Updated, 2)
        );
        let (back, v) = store.customer("C-1").await.unwrap().unwrap();
        assert_eq!((back.tier.as_deref(), v), (Some("standard"), 2));
    }

    #[tokio::test]
    async fn a_partial_crm_line_merges_and_null_clears() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let line = |v: serde_json::Value| v.as_object().unwrap().clone();
        let full =
            line(serde_json::json!({"id": "C-1", "name": "Acme", "tier": "vip", "plan": "Team"}));
        assert_eq!(
            store.import_customer(&full, false).await.unwrap(),
            (Upsert::Inserted, 1)
        );
        let partial = line(serde_json::json!({"id": "C-1", "tier": "standard", "plan": null}));
        assert_eq!(
            store.import_customer(&partial, false).await.unwrap(),
            (Upsert::Updated, 2)
        );
        let (c, _) = store.customer("C-1").await.unwrap().unwrap();
        assert_eq!(
            (c.name.as_deref(), c.tier.as_deref(), c.plan.as_deref()),
            (Some("Acme"), Some("standard"), None),
            "the name the line left out is kept"
        );
        let replace = line(serde_json::json!({"id": "C-1", "tier": "vip"}));
        store.import_customer(&replace, true).await.unwrap();
        let (c, v) = store.customer("C-1").await.unwrap().unwrap();
        assert_eq!((c.name, c.tier.as_deref(), v), (None, Some("vip"), 3));
        let typo = line(serde_json::json!({"id": "C-1", "teir": "vip"}));
        let e = store.import_customer(&typo, false).await.unwrap_err();
        assert!(e.to_string().contains("teir"), "{e}");
        assert_eq!(
            store.customer("C-1").await.unwrap().unwrap().1,
            3,
            "nothing stored"
        );
    }

    #[tokio::test]
    async fn audit_rows_cannot_be_updated_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        sqlx::query("INSERT INTO audit (seq, prev_hash, hash, recorded_at, kind, payload) VALUES (1, '', 'h', 't', 'k', '{}')")
            .execute(store.pool())
            .await
            .unwrap();
        let update = sqlx::query("UPDATE audit SET payload = 'x'")
            .execute(store.pool())
            .await;
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = sqlx::query("DELETE FROM audit").execute(store.pool()).await;
        assert!(delete.unwrap_err().to_string().contains("append-only"));
    }
}
