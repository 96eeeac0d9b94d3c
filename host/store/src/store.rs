//! The embedded store: SQLite through sqlx (WAL, synchronous=FULL).
//!
//! Tickets keep every content version; customers and articles keep a version counter that
//! moves when their content changes. Decisions are written by the engine's committer (`pipeline/commit.rs`) in
//! one transaction per batch together with their audit records.

use crate::audit::checkpoint::{Checkpoint, Checkpointer};
use crate::audit::committed::{INGESTED, IngestRecord, StateRow};
use crate::audit::{self, AuditEntry};
use crate::db::{self, Backend, DbError, Location, Migrations, begin_write};
use deskhost_protocol::digest::{now_rfc3339, sha256_hex};
use deskhost_protocol::records::{ArticleRecord, CustomerRecord, TicketInput, TicketRecord};
use serde::Serialize;
use sqlx::{AnyPool, Row};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The `meta` key holding the article-set version the knowledge-base index was last built
/// for. Every article write deletes it (in its transaction); a rebuild sets it again.
pub const KB_INDEX_VERSION: &str = "kb_index_version";
const CLEAR_KB_INDEX_VERSION: &str = "DELETE FROM meta WHERE key = 'kb_index_version'";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, reached or migrated, or its schema is not this
    /// binary's.
    #[error(transparent)]
    Db(#[from] DbError),
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

/// Reading a column of a row: a value that does not decode is an error naming the column
/// (a corrupt row), never a panic.
pub trait Col {
    /// Column `i` as `T`.
    fn col<'r, T>(&'r self, i: usize) -> Result<T>
    where
        T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>;

    /// Column `i` as a version number (a non-negative 32-bit integer).
    fn version(&self, i: usize) -> Result<u32> {
        let v: i64 = self.col(i)?;
        u32::try_from(v).map_err(|_| StoreError::Corrupt {
            what: format!("column {i}"),
            detail: format!("{v} is not a version number"),
        })
    }
}

impl Col for sqlx::any::AnyRow {
    fn col<'r, T>(&'r self, i: usize) -> Result<T>
    where
        T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.try_get(i).map_err(|e| StoreError::Corrupt {
            what: format!("column {i}"),
            detail: e.to_string(),
        })
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Maps a query failure to [`StoreError::Query`] naming what was being done.
pub(crate) fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
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

/// Who holds a lease: `host:pid:nonce`, unique per process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerId(String);

impl WorkerId {
    /// This process's id.
    pub fn current() -> Self {
        static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        Self(
            ID.get_or_init(|| {
                let nonce = uuid::Uuid::new_v4().simple().to_string();
                format!("{}:{}:{}", hostname(), std::process::id(), &nonce[..8])
            })
            .clone(),
        )
    }

    /// Another id of this process (same host and pid, a new nonce): a second claimant in
    /// one process, e.g. `serve`'s background worker beside its request handlers, so that
    /// neither takes the other's claim for its own.
    pub fn another() -> Self {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        Self(format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            &nonce[..8]
        ))
    }

    /// A given id (tests, other processes' leases).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id names a process of this machine that is gone.
    pub(crate) fn is_dead_here(&self) -> bool {
        let mut parts = self.0.rsplitn(3, ':');
        let (_nonce, pid, host) = (parts.next(), parts.next(), parts.next());
        match (host, pid.and_then(|p| p.parse::<u32>().ok())) {
            (Some(host), Some(pid)) if host == hostname() => {
                pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Wakes an idle worker when work is queued: PostgreSQL's `LISTEN deskhost_work` (a trigger
/// notifies on every enqueue); on SQLite, or when the listener fails, a timer.
pub struct WorkSignal {
    listener: Option<sqlx::postgres::PgListener>,
    local: Arc<tokio::sync::Notify>,
}

impl WorkSignal {
    /// Returns when work may have been queued (by this process: at once; by another, on
    /// PostgreSQL, through the listener), or after `at_most`.
    pub async fn wait(&mut self, at_most: Duration) {
        match self.listener.as_mut() {
            Some(listener) => tokio::select! {
                _ = tokio::time::sleep(at_most) => {},
                _ = self.local.notified() => {},
                got = listener.recv() => if let Err(e) = got {
                    tracing::warn!("LISTEN deskhost_work: {e}; polling instead");
                    self.listener = None;
                },
            },
            None => tokio::select! {
                _ = tokio::time::sleep(at_most) => {},
                _ = self.local.notified() => {},
            },
        }
    }
}

/// What a claim on one ticket version got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Leased to the caller.
    Claimed,
    /// Already decided.
    Done,
    /// Another worker holds it.
    Held {
        /// Who.
        owner: String,
        /// Until when (unix ms).
        until_ms: i64,
    },
    /// No such version in the queue.
    Unknown,
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

/// The store: SQLite or PostgreSQL (see [`crate::db`]).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// Writes go through here (see [`db::writer_pool`]).
    writer: AnyPool,
    location: Location,
    checkpoints: Option<Arc<Checkpointer>>,
    /// SQLite: the write-ahead log copied into the database off the writers' path.
    wal: Option<Arc<db::WalCheckpoints>>,
    /// Wakes this process's idle worker when this process queues work (no poll delay).
    local_work: Arc<tokio::sync::Notify>,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::connect(
            &Location::File(path.to_path_buf()),
            8,
            Migrations::CreateOnly,
        )
        .await
    }

    /// Opens the store at `location`: a new database gets the schema; one behind this binary
    /// is upgraded only with [`Migrations::Apply`] (`deskhost db migrate`).
    pub async fn connect(
        location: &Location,
        max_connections: u32,
        migrations: Migrations,
    ) -> Result<Self> {
        let pool = db::connect(location, max_connections, migrations).await?;
        Ok(Self {
            writer: db::writer_pool(&pool),
            wal: (location.backend() == Backend::Sqlite).then(Arc::default),
            pool,
            location: location.clone(),
            checkpoints: None,
            local_work: Arc::new(tokio::sync::Notify::new()),
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
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
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

    /// Appends one record of `kind` to the audit log inside `tx` (which holds the write
    /// lock); publish the checkpoint it returns once `tx` has committed.
    pub(crate) async fn audit_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        kind: &str,
        payload: serde_json::Value,
    ) -> std::result::Result<Option<Checkpoint>, sqlx::Error> {
        let mut head = audit::load_head(&mut **tx).await?;
        audit::append(tx, &mut head, &[AuditEntry::global(kind, payload)]).await?;
        self.checkpoint_if_due(tx, &head).await
    }

    /// Appends `entries` to the audit log in a transaction of their own (imports, plugin
    /// events), with a checkpoint when one is due.
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        // IMMEDIATE: hold the write lock from the head read to the commit, so two processes
        // appending cannot fork the chain.
        let mut tx = begin_write(&self.writer)
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
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool to write through: on SQLite one connection, so this process's writers queue
    /// instead of colliding on the database's write lock (see [`db::writer_pool`]).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// After a commit: SQLite copies its write-ahead log into the database soon, on a reader
    /// connection (see [`db::WalCheckpoints`]). PostgreSQL: nothing to do.
    pub fn wal_written(&self) {
        if let Some(wal) = &self.wal {
            wal.soon(&self.pool);
        }
    }

    /// Whether a WAL checkpoint is running now (SQLite).
    pub fn wal_checkpoint_running(&self) -> bool {
        self.wal.as_ref().is_some_and(|w| w.running())
    }

    /// Where the store lives (a file, or a URL with its password masked when shown).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.location.backend()
    }

    /// Stores each ticket as a new version if its content changed, and queues new versions.
    pub async fn ingest_tickets(&self, inputs: &[TicketInput]) -> Result<Vec<Ingested>> {
        self.ingest_tickets_with(inputs, None, None).await
    }

    /// [`Store::ingest_tickets`] for a caller that decides what it stores at once (`serve`'s
    /// `?wait=true`): each new version is queued already claimed by `owner` for `lease`, so
    /// no other worker takes it between the commit and the caller's decision. Versions stored
    /// before (`new_version: false`) are not claimed here.
    pub async fn ingest_tickets_claimed(
        &self,
        inputs: &[TicketInput],
        owner: &WorkerId,
        lease: Duration,
    ) -> Result<Vec<Ingested>> {
        let until = unix_ms() + duration_ms(lease);
        self.ingest_tickets_with(inputs, None, Some((owner.as_str(), until)))
            .await
    }

    /// [`Store::ingest_tickets`], recording for each ticket id in `source.1` the connector
    /// `source.0` and the help desk's id (same transaction).
    pub(crate) async fn ingest_tickets_with(
        &self,
        inputs: &[TicketInput],
        source: Option<(&str, &[(String, String)])>,
        lease: Option<(&str, i64)>,
    ) -> Result<Vec<Ingested>> {
        // IMMEDIATE: this transaction reads, then writes; a deferred one would fail with
        // SQLITE_BUSY (no wait) when another writer commits between its read and its write.
        let mut tx = begin_write(&self.writer).await.map_err(q("begin ingest"))?;
        let now = now_rfc3339();
        let (out, audited) = ingest_in(&mut tx, inputs, &now, lease).await?;
        let mut checkpoint = None;
        if let Some((connector, links)) = source {
            crate::batch::insert(
                &mut tx,
                "INSERT INTO ticket_sources (ticket_id, connector, external_id)",
                3,
                "ON CONFLICT (ticket_id) DO NOTHING",
                links,
                |q, (ticket_id, external_id)| q.bind(ticket_id).bind(connector).bind(external_id),
            )
            .await
            .map_err(q("record a ticket's source"))?;
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
        self.wal_written();
        self.published(checkpoint);
        if lease.is_none() && out.iter().any(|i| i.new_version) {
            // A permit is kept if the worker is not waiting yet: it looks again at once.
            self.local_work.notify_one();
        }
        Ok(out)
    }

    /// One ticket version.
    pub async fn ticket(&self, id: &str, version: u32) -> Result<Option<TicketRecord>> {
        let row = sqlx::query(
            "SELECT version, content_hash, input_json FROM tickets WHERE id = $1 AND version = $2",
        )
        .bind(id)
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read ticket"))?;
        row.map(|r| decode_ticket(id, &r)).transpose()
    }

    /// Many ticket versions at once (one statement per few thousand), in the order asked;
    /// `None` for a version not stored or not readable (and for a repeat in `versions`).
    pub async fn tickets(&self, versions: &[(String, u32)]) -> Result<Vec<Option<TicketRecord>>> {
        let mut found: HashMap<(String, u32), TicketRecord> =
            HashMap::with_capacity(versions.len());
        for chunk in versions.chunks(crate::batch::rows_per_statement(2)) {
            let sql = crate::batch::values_sql(
                self.backend(),
                "SELECT version, content_hash, input_json, id FROM tickets WHERE (id, version) IN (",
                2,
                chunk.len(),
                ")",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, version) in chunk {
                query = query.bind(id).bind(i64::from(*version));
            }
            for row in query
                .fetch_all(&self.pool)
                .await
                .map_err(q("read tickets"))?
            {
                let id: String = row.col(3)?;
                // One that does not decode is left out: read alone, it names its problem.
                if let Ok(ticket) = decode_ticket(&id, &row) {
                    found.insert((id, ticket.version), ticket);
                }
            }
        }
        Ok(versions.iter().map(|key| found.remove(key)).collect())
    }

    /// The latest version of a ticket.
    pub async fn latest_ticket(&self, id: &str) -> Result<Option<TicketRecord>> {
        let row = sqlx::query("SELECT version, content_hash, input_json FROM tickets WHERE id = $1 ORDER BY version DESC LIMIT 1")
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
             WHERE t.customer_id = $1 AND s.id <> $2
             ORDER BY s.created_at DESC, s.id DESC LIMIT $3",
        )
        .bind(customer_id)
        .bind(exclude)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(q("read recent tickets"))?;
        rows.iter()
            .map(|r| {
                let id: String = r.col(0)?;
                let input: TicketInput =
                    serde_json::from_str(r.col::<&str>(2)?).map_err(|e| StoreError::Corrupt {
                        what: format!("ticket {id}"),
                        detail: e.to_string(),
                    })?;
                Ok(TicketSummaryRow {
                    version: r.version(1)?,
                    subject: input.subject,
                    status: r.col(3)?,
                    category: r.col(4)?,
                    created_at: r.col(5)?,
                    id,
                })
            })
            .collect()
    }

    /// Claims `versions` for `owner` until `lease` from now, in one transaction: each one
    /// that is pending and not held by another worker's live lease. What was not claimed is
    /// said per version.
    pub async fn claim(
        &self,
        owner: &WorkerId,
        versions: &[(String, u32)],
        lease: Duration,
    ) -> Result<Vec<Claim>> {
        let claims = self.try_claim(owner, versions, lease).await?;
        let held = claims.iter().any(|c| matches!(c, Claim::Held { .. }));
        if held && self.reap_dead_local_leases().await? > 0 {
            return self.try_claim(owner, versions, lease).await;
        }
        Ok(claims)
    }

    async fn try_claim(
        &self,
        owner: &WorkerId,
        versions: &[(String, u32)],
        lease: Duration,
    ) -> Result<Vec<Claim>> {
        let now = unix_ms();
        let until = now + duration_ms(lease);
        let mut tx = begin_write(&self.writer).await.map_err(q("begin claim"))?;
        let backend = crate::batch::backend_of(&tx);
        // One statement claims every version it can; one more says why the others could not.
        let mut claimed: HashSet<(String, u32)> = HashSet::with_capacity(versions.len());
        for chunk in versions.chunks(crate::batch::rows_per_statement(5)) {
            let sql = crate::batch::values_sql(
                backend,
                "UPDATE work_queue SET lease_owner = v.column3, lease_until = v.column4 FROM (",
                5,
                chunk.len(),
                ") AS v WHERE work_queue.ticket_id = v.column1 AND work_queue.version = v.column2 \
                 AND work_queue.state = 'pending' AND (work_queue.lease_owner IS NULL \
                 OR work_queue.lease_owner = v.column3 OR work_queue.lease_until < v.column5) \
                 RETURNING work_queue.ticket_id, work_queue.version",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, version) in chunk {
                query = query
                    .bind(id)
                    .bind(i64::from(*version))
                    .bind(owner.as_str())
                    .bind(until)
                    .bind(now);
            }
            for row in query
                .fetch_all(&mut *tx)
                .await
                .map_err(q("claim ticket versions"))?
            {
                claimed.insert((row.col(0)?, row.version(1)?));
            }
        }
        let missed: Vec<&(String, u32)> = versions
            .iter()
            .filter(|(id, v)| !claimed.contains(&(id.clone(), *v)))
            .collect();
        let mut seen: HashMap<(String, u32), Claim> = HashMap::with_capacity(missed.len());
        for chunk in missed.chunks(crate::batch::rows_per_statement(2)) {
            let sql = crate::batch::values_sql(
                backend,
                "SELECT ticket_id, version, state, lease_owner, lease_until FROM work_queue \
                 WHERE (ticket_id, version) IN (",
                2,
                chunk.len(),
                ")",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, version) in chunk {
                query = query.bind(id).bind(i64::from(*version));
            }
            for r in query.fetch_all(&mut *tx).await.map_err(q("read claims"))? {
                let claim = if r.col::<&str>(2)? == "done" {
                    Claim::Done
                } else {
                    Claim::Held {
                        owner: r.col::<Option<String>>(3)?.unwrap_or_default(),
                        until_ms: r.col::<Option<i64>>(4)?.unwrap_or_default(),
                    }
                };
                seen.insert((r.col(0)?, r.version(1)?), claim);
            }
        }
        let out = versions
            .iter()
            .map(|key| {
                if claimed.contains(key) {
                    Claim::Claimed
                } else {
                    seen.get(key).cloned().unwrap_or(Claim::Unknown)
                }
            })
            .collect();
        tx.commit().await.map_err(q("commit claims"))?;
        Ok(out)
    }

    /// Claims up to `limit` pending versions no live lease holds, oldest first, for `owner`
    /// until `lease` from now. Concurrent callers (other processes, other machines) get
    /// disjoint sets: PostgreSQL skips rows another claim has locked (`FOR UPDATE SKIP
    /// LOCKED`); SQLite has one writer at a time.
    pub async fn claim_next(
        &self,
        owner: &WorkerId,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<(String, u32)>> {
        let mut claimed = self.try_claim_next(owner, limit, lease).await?;
        let short = u32::try_from(claimed.len()).unwrap_or(u32::MAX) < limit;
        if short && self.reap_dead_local_leases().await? > 0 {
            let rest = limit - u32::try_from(claimed.len()).unwrap_or(limit);
            claimed.extend(self.try_claim_next(owner, rest, lease).await?);
            claimed.sort();
        }
        Ok(claimed)
    }

    async fn try_claim_next(
        &self,
        owner: &WorkerId,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<(String, u32)>> {
        let now = unix_ms();
        // PostgreSQL skips rows another worker's claim has locked; SQLite has one writer.
        let skip_locked = match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE work_queue SET lease_owner = $1, lease_until = $2
             WHERE (ticket_id, version) IN (
                 SELECT ticket_id, version FROM work_queue
                 WHERE state = 'pending' AND (lease_until IS NULL OR lease_until < $3)
                 ORDER BY enqueued_at, ticket_id, version LIMIT $4 {skip_locked})
             RETURNING ticket_id, version"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner.as_str())
            .bind(now + duration_ms(lease))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
            .await
            .map_err(q("claim pending work"))?;
        let mut out = rows
            .iter()
            .map(|r| Ok((r.col::<String>(0)?, r.version(1)?)))
            .collect::<Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    /// Extends every lease `owner` holds on pending work (a worker's heartbeat).
    pub async fn renew_leases(&self, owner: &WorkerId, lease: Duration) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE work_queue SET lease_until = $1 WHERE lease_owner = $2 AND state = 'pending'",
        )
        .bind(unix_ms() + duration_ms(lease))
        .bind(owner.as_str())
        .execute(&self.writer)
        .await
        .map_err(q("renew leases"))?;
        Ok(done.rows_affected())
    }

    /// Gives back `owner`'s lease on a version it could not decide (another worker may try).
    pub async fn release(&self, owner: &WorkerId, id: &str, version: u32) -> Result<()> {
        sqlx::query(
            "UPDATE work_queue SET lease_owner = NULL, lease_until = NULL
             WHERE ticket_id = $1 AND version = $2 AND lease_owner = $3 AND state = 'pending'",
        )
        .bind(id)
        .bind(i64::from(version))
        .bind(owner.as_str())
        .execute(&self.writer)
        .await
        .map_err(q("release a lease"))?;
        Ok(())
    }

    /// Leases held by processes of this machine that no longer exist end now, rather than
    /// when they expire (a `run` killed mid-way, then `run --pending`).
    /// Returns how many leases it ended. Run only when a claim came up short, not on every
    /// claim.
    async fn reap_dead_local_leases(&self) -> Result<u64> {
        let owners: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM work_queue
             WHERE state = 'pending' AND lease_owner IS NOT NULL AND lease_until >= $1",
        )
        .bind(unix_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(q("read leases"))?;
        let mut ended = 0;
        for owner in owners {
            if WorkerId(owner.clone()).is_dead_here() {
                ended += sqlx::query(
                    "UPDATE work_queue SET lease_owner = NULL, lease_until = NULL
                     WHERE lease_owner = $1 AND state = 'pending'",
                )
                .bind(&owner)
                .execute(&self.writer)
                .await
                .map_err(q("end a dead worker's leases"))?
                .rows_affected();
            }
        }
        Ok(ended)
    }

    /// What an idle worker waits on (see [`WorkSignal`]).
    pub async fn work_signal(&self) -> WorkSignal {
        let listener = match &self.location {
            Location::Url(url) => match sqlx::postgres::PgListener::connect(url).await {
                Ok(mut listener) => match listener.listen("deskhost_work").await {
                    Ok(()) => Some(listener),
                    Err(e) => {
                        tracing::warn!("LISTEN deskhost_work failed ({e}); polling instead");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!("cannot open a listener connection ({e}); polling instead");
                    None
                }
            },
            Location::File(_) => None,
        };
        WorkSignal {
            listener,
            local: self.local_work.clone(),
        }
    }

    /// How many versions wait for a decision (leased or not).
    pub async fn pending_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM work_queue WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(q("count pending work"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Inserts or updates a customer; the version moves when the content changes.
    pub async fn upsert_customer(&self, c: &CustomerRecord) -> Result<(Upsert, u32)> {
        let json = serde_json::to_string(c).map_err(|e| StoreError::Corrupt {
            what: format!("customer {}", c.id),
            detail: e.to_string(),
        })?;
        let hash = sha256_hex(json.as_bytes());
        self.upsert_versioned("SELECT version, content_hash FROM customers WHERE id = $1", &c.id, &hash, None, |version| {
            sqlx::query(
                "INSERT INTO customers (id, version, content_hash, record_json, updated_at) VALUES ($1, $2, $3, $4, $5)
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
        let mut tx = begin_write(&self.writer)
            .await
            .map_err(q("begin customer import"))?;
        let current =
            sqlx::query("SELECT version, content_hash, record_json FROM customers WHERE id = $1")
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
            "INSERT INTO customers (id, version, content_hash, record_json, updated_at) VALUES ($1, $2, $3, $4, $5)
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
        let row = sqlx::query("SELECT record_json, version FROM customers WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read customer"))?;
        row.map(|r| {
            let c: CustomerRecord =
                serde_json::from_str(r.col::<&str>(0)?).map_err(|e| StoreError::Corrupt {
                    what: format!("customer {id}"),
                    detail: e.to_string(),
                })?;
            Ok((c, r.version(1)?))
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

    /// Inserts or updates an article; the version moves when the content changes. A change
    /// clears the recorded KB index version in the same transaction, so the next open
    /// compares the articles with the index again.
    pub async fn upsert_article(&self, a: &ArticleRecord) -> Result<(Upsert, u32)> {
        let hash = a.content_hash();
        self.upsert_versioned("SELECT version, content_hash FROM kb_articles WHERE id = $1", &a.id, &hash, Some(CLEAR_KB_INDEX_VERSION), |version| {
            sqlx::query(
                "INSERT INTO kb_articles (id, version, content_hash, title, body, language, collection, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
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
        on_change: Option<&'static str>,
        write: impl FnOnce(u32) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<(Upsert, u32)> {
        // One write transaction: two importers of the same record cannot both take a version.
        let mut tx = begin_write(&self.writer)
            .await
            .map_err(q("begin record write"))?;
        let row = sqlx::query(select_current)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read current version"))?;
        let current =
            |r: &sqlx::any::AnyRow| -> Result<(u32, String)> { Ok((r.version(0)?, r.col(1)?)) };
        let (outcome, version) = match row.as_ref().map(current).transpose()? {
            Some((version, stored)) if stored == hash => {
                return Ok((Upsert::Unchanged, version));
            }
            Some((version, _)) => (Upsert::Updated, version.saturating_add(1)),
            None => (Upsert::Inserted, 1),
        };
        write(version)
            .execute(&mut *tx)
            .await
            .map_err(q("write record"))?;
        if let Some(statement) = on_change {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(q("note the record change"))?;
        }
        tx.commit().await.map_err(q("commit record write"))?;
        Ok((outcome, version))
    }

    /// One article, as stored now.
    pub async fn article(&self, id: &str) -> Result<Option<ArticleRecord>> {
        let row = sqlx::query(
            "SELECT id, title, body, language, collection, version FROM kb_articles WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read an article"))?;
        row.as_ref().map(article_row).transpose()
    }

    /// All articles, by id.
    pub async fn articles(&self) -> Result<Vec<ArticleRecord>> {
        let rows = sqlx::query(
            "SELECT id, title, body, language, collection, version FROM kb_articles ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("read articles"))?;
        rows.iter().map(article_row).collect()
    }

    /// A value from the `meta` table.
    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read meta"))
    }

    /// Sets a value in the `meta` table.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await
            .map_err(q("write meta"))?;
        Ok(())
    }
}

/// An article from `SELECT id, title, body, language, collection, version`.
fn article_row(r: &sqlx::any::AnyRow) -> Result<ArticleRecord> {
    Ok(ArticleRecord {
        id: r.col(0)?,
        title: r.col(1)?,
        body: r.col(2)?,
        language: r.col(3)?,
        collection: r.col(4)?,
        version: r.version(5)?,
    })
}

fn decode_ticket(id: &str, r: &sqlx::any::AnyRow) -> Result<TicketRecord> {
    let input: TicketInput =
        serde_json::from_str(r.col::<&str>(2)?).map_err(|e| StoreError::Corrupt {
            what: format!("ticket {id}"),
            detail: e.to_string(),
        })?;
    Ok(TicketRecord {
        input,
        version: r.version(0)?,
        content_hash: r.col(1)?,
    })
}

/// Stores each of `inputs` as a new version if its content changed and queues the new
/// versions, in `tx`, a table at a time; returns what became of each input (in order) and
/// the audit records of the new versions. A ticket given twice is handled as if the
/// inputs were ingested one after the other.
async fn ingest_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    inputs: &[TicketInput],
    now: &str,
    lease: Option<(&str, i64)>,
) -> Result<(Vec<Ingested>, Vec<IngestRecord>)> {
    let backend = crate::batch::backend_of(tx);
    let mut ids: Vec<&str> = inputs.iter().map(|i| i.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    // Each ticket's latest stored version and content hash.
    let mut latest: HashMap<String, (u32, String)> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(crate::batch::rows_per_statement(1)) {
        let sql = format!(
            "SELECT t.id, t.version, t.content_hash FROM tickets t
             WHERE t.id IN ({}) AND t.version = (SELECT MAX(m.version) FROM tickets m WHERE m.id = t.id)",
            crate::batch::params_list(backend, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query
            .fetch_all(&mut **tx)
            .await
            .map_err(q("read latest ticket versions"))?
        {
            latest.insert(row.col(0)?, (row.version(1)?, row.col(2)?));
        }
    }
    let mut states: HashMap<String, StateRow> = HashMap::new();
    for chunk in ids.chunks(crate::batch::rows_per_statement(1)) {
        for state in StateRow::current_of(tx, chunk)
            .await
            .map_err(q("read ticket states"))?
        {
            states.insert(state.ticket_id.clone(), state);
        }
    }
    let mut out = Vec::with_capacity(inputs.len());
    // Unchanged inputs whose queue state is still to be read: (index in `out`, id, version).
    let mut unchanged: Vec<(usize, &str, u32)> = Vec::new();
    let mut queued_now: HashSet<(&str, u32)> = HashSet::new();
    let mut new_rows: Vec<(&TicketInput, u32, String, String)> = Vec::new();
    let mut new_states: Vec<StateRow> = Vec::new();
    for input in inputs {
        let hash = input.content_hash();
        let (latest_version, latest_hash) = latest
            .get(&input.id)
            .map_or((0, ""), |(v, h)| (*v, h.as_str()));
        if latest_version > 0 && latest_hash == hash {
            if queued_now.contains(&(input.id.as_str(), latest_version)) {
                out.push(Ingested {
                    id: input.id.clone(),
                    version: latest_version,
                    new_version: false,
                    pending: true,
                });
            } else {
                unchanged.push((out.len(), &input.id, latest_version));
                out.push(Ingested {
                    id: input.id.clone(),
                    version: latest_version,
                    new_version: false,
                    pending: false,
                });
            }
            continue;
        }
        let version = latest_version + 1;
        let json = serde_json::to_string(input).map_err(|e| StoreError::Corrupt {
            what: format!("ticket {}", input.id),
            detail: e.to_string(),
        })?;
        let state = match states.remove(&input.id) {
            Some(current) => StateRow {
                latest_version: i64::from(version),
                status: "new".into(),
                updated_at: now.to_string(),
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
                created_at: input.created_at.clone().unwrap_or_else(|| now.to_string()),
                updated_at: now.to_string(),
            },
        };
        states.insert(input.id.clone(), state.clone());
        new_states.push(state);
        latest.insert(input.id.clone(), (version, hash.clone()));
        queued_now.insert((&input.id, version));
        new_rows.push((input, version, hash, json));
        out.push(Ingested {
            id: input.id.clone(),
            version,
            new_version: true,
            pending: true,
        });
    }
    for chunk in unchanged.chunks(crate::batch::rows_per_statement(2)) {
        let sql = crate::batch::values_sql(
            backend,
            "SELECT ticket_id, version, state FROM work_queue WHERE (ticket_id, version) IN (",
            2,
            chunk.len(),
            ")",
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (_, id, version) in chunk {
            query = query.bind(*id).bind(i64::from(*version));
        }
        let mut pending: HashSet<(String, u32)> = HashSet::new();
        for row in query
            .fetch_all(&mut **tx)
            .await
            .map_err(q("read queue states"))?
        {
            if row.col::<&str>(2)? == "pending" {
                pending.insert((row.col(0)?, row.version(1)?));
            }
        }
        for (at, id, version) in chunk {
            if let Some(i) = out.get_mut(*at) {
                i.pending = pending.contains(&(id.to_string(), *version));
            }
        }
    }
    crate::batch::insert(
        tx,
        "INSERT INTO tickets (id, version, content_hash, input_json, customer_id, ingested_at)",
        6,
        "",
        &new_rows,
        |q, (input, version, hash, json)| {
            q.bind(&input.id)
                .bind(i64::from(*version))
                .bind(hash)
                .bind(json)
                .bind(&input.customer_id)
                .bind(now)
        },
    )
    .await
    .map_err(q("insert tickets"))?;
    let logged: Vec<(&StateRow, Option<&str>)> = new_states.iter().map(|s| (s, None)).collect();
    let refs = StateRow::write_all(tx, &logged)
        .await
        .map_err(q("update ticket states"))?;
    crate::batch::insert(
        tx,
        "INSERT INTO work_queue (ticket_id, version, state, enqueued_at, lease_owner, lease_until)",
        6,
        "",
        &new_rows,
        |q, (input, version, _, _)| {
            q.bind(&input.id)
                .bind(i64::from(*version))
                .bind("pending")
                .bind(now)
                .bind(lease.map(|(owner, _)| owner))
                .bind(lease.map(|(_, until)| until))
        },
    )
    .await
    .map_err(q("enqueue tickets"))?;
    let audited = new_rows
        .iter()
        .zip(refs)
        .map(|((input, version, hash, _), state)| IngestRecord {
            ticket_id: input.id.clone(),
            version: i64::from(*version),
            content_hash: hash.clone(),
            state,
        })
        .collect();
    Ok((out, audited))
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
    async fn the_write_ahead_log_reaches_the_database_file_off_the_writers_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open(&path).await.unwrap();
        let settle = async || {
            for _ in 0..500 {
                if !store.wal_checkpoint_running() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the checkpoint did not finish");
        };
        settle().await;
        tokio::time::sleep(db::WalCheckpoints::EVERY).await;
        let before = std::fs::metadata(&path).unwrap().len();
        let body = "words ".repeat(200);
        let tickets: Vec<TicketInput> =
            (0..300).map(|i| ticket(&format!("T-{i}"), &body)).collect();
        store.ingest_tickets(&tickets).await.unwrap();
        assert!(
            store.wal_checkpoint_running(),
            "the commit asked for a checkpoint"
        );
        settle().await;
        let after = std::fs::metadata(&path).unwrap().len();
        // 300 tickets of ~1.2 KB: without the checkpoint they would all still be in the log
        // (the writers' own checkpoint waits for 10,000 pages).
        assert!(after >= before + 300 * 1024, "{before} -> {after} bytes");
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
        assert_eq!(store.pending_count().await.unwrap(), 2);
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
    async fn an_article_write_clears_the_recorded_kb_index_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let mut a = ArticleRecord {
            id: "refunds".into(),
            title: "Refunds".into(),
            body: "Within 5 days.".into(),
            language: "en".into(),
            collection: "public".into(),
            version: 0,
        };
        store.upsert_article(&a).await.unwrap();
        store.set_meta(KB_INDEX_VERSION, "v1").await.unwrap();
        store.upsert_article(&a).await.unwrap();
        assert_eq!(
            store.meta(KB_INDEX_VERSION).await.unwrap().as_deref(),
            Some("v1"),
            "an unchanged article changes nothing"
        );
        a.body = "Within 3 days.".into();
        assert_eq!(
            store.upsert_article(&a).await.unwrap(),
            (Upsert::Updated, 2)
        );
        assert_eq!(store.meta(KB_INDEX_VERSION).await.unwrap(), None);
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
