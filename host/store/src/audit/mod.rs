//! The audit log: append-only, hash-chained, batched.
//!
//! Record `n` stores `hash_n = sha256(hash_{n-1}, n, time, run, kind, payload)`; the last
//! record's seq and hash are kept in `audit_head`. Altering a record breaks its own hash;
//! deleting one leaves a gap in `seq` and a broken link; deleting the tail disagrees with the
//! head. `verify` names the first record where any of that happens.
//!
//! Records are appended inside the caller's transaction (the committer writes a batch of
//! runs and their records together), so a decision and its audit trail land or fail as one.

pub mod checkpoint;
pub mod committed;

use deskhost_protocol::digest::{now_rfc3339, sha256_parts};
use deskhost_protocol::json::JsonText;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::{Any, AnyPool, Row, Transaction};
use std::borrow::Borrow;

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One record to append.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AuditEntry {
    /// The run it belongs to, if any.
    pub run_id: Option<String>,
    /// What happened: `run-inputs`, `host-call`, `plugin-outcome`, `decision`, `kb-import`, ...
    pub kind: String,
    /// Details, as the JSON text stored and hashed.
    pub payload: JsonText,
}

impl AuditEntry {
    /// An entry for `run_id`.
    pub fn run(run_id: &str, kind: &str, payload: impl Into<JsonText>) -> Self {
        Self {
            run_id: Some(run_id.to_string()),
            kind: kind.to_string(),
            payload: payload.into(),
        }
    }

    /// An entry outside any run.
    pub fn global(kind: &str, payload: impl Into<JsonText>) -> Self {
        Self {
            run_id: None,
            kind: kind.to_string(),
            payload: payload.into(),
        }
    }
}

/// Position of the chain's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHead {
    /// Last seq (0 when empty).
    pub seq: i64,
    /// Last hash ([`GENESIS`] when empty).
    pub hash: String,
}

/// Hash of one record.
pub fn record_hash(
    prev: &str,
    seq: i64,
    recorded_at: &str,
    run_id: Option<&str>,
    kind: &str,
    payload: &str,
) -> String {
    sha256_parts(&[
        prev.as_bytes(),
        &seq.to_le_bytes(),
        recorded_at.as_bytes(),
        run_id.unwrap_or("").as_bytes(),
        kind.as_bytes(),
        payload.as_bytes(),
    ])
}

/// Reads the chain's head (through a pool or inside a transaction).
pub async fn load_head<'e, E: sqlx::Executor<'e, Database = Any>>(
    executor: E,
) -> Result<AuditHead, sqlx::Error> {
    let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_optional(executor)
        .await?;
    Ok(match row {
        Some(r) => AuditHead {
            seq: r.try_get(0)?,
            hash: r.try_get(1)?,
        },
        None => AuditHead {
            seq: 0,
            hash: GENESIS.to_string(),
        },
    })
}

/// Appends `entries` (owned or borrowed) in `tx`, advancing `head`. The caller commits.
pub async fn append<E: Borrow<AuditEntry>>(
    tx: &mut Transaction<'_, Any>,
    head: &mut AuditHead,
    entries: &[E],
) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let recorded_at = now_rfc3339();
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        let e: &AuditEntry = e.borrow();
        let seq = head.seq + 1;
        let payload = e.payload.as_str();
        let hash = record_hash(
            &head.hash,
            seq,
            &recorded_at,
            e.run_id.as_deref(),
            &e.kind,
            payload,
        );
        rows.push((seq, head.hash.clone(), hash.clone(), e, payload));
        *head = AuditHead { seq, hash };
    }
    // Many rows per statement: one round trip per chunk rather than per record (what a
    // networked database charges for).
    crate::batch::insert(
        tx,
        "INSERT INTO audit (seq, prev_hash, hash, recorded_at, run_id, kind, payload)",
        7,
        "",
        &rows,
        |q, (seq, prev, hash, e, payload)| {
            q.bind(*seq)
                .bind(prev)
                .bind(hash)
                .bind(&recorded_at)
                .bind(&e.run_id)
                .bind(&e.kind)
                .bind(*payload)
        },
    )
    .await?;
    sqlx::query("INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash")
        .bind(head.seq)
        .bind(&head.hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Appends `entries` in a transaction of their own (imports, plugin events).
pub async fn append_now(pool: &AnyPool, entries: &[AuditEntry]) -> Result<(), sqlx::Error> {
    // IMMEDIATE: hold the write lock from the head read to the commit (see the committer).
    let mut tx = crate::db::begin_write(pool).await?;
    let mut head = load_head(&mut *tx).await?;
    append(&mut tx, &mut head, entries).await?;
    tx.commit().await
}

/// Signs a checkpoint of the chain as it is now (its own transaction).
pub async fn sign_now(
    pool: &AnyPool,
    key: &ed25519_dalek::SigningKey,
) -> Result<checkpoint::Checkpoint, sqlx::Error> {
    let mut tx = crate::db::begin_write(pool).await?;
    let head = load_head(&mut *tx).await?;
    let cp = checkpoint::sign(&mut tx, key, &head).await?;
    tx.commit().await?;
    Ok(cp)
}

/// What `verify` found.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read.
    pub records: u64,
    /// Seq of the last record read.
    pub last_seq: i64,
    /// The first problem, if any.
    pub broken: Option<ChainBreak>,
}

/// Where and how the chain breaks.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first record (seq) that fails.
    pub seq: i64,
    /// What is wrong.
    pub problem: BreakKind,
    /// Human detail.
    pub detail: String,
}

/// Kinds of chain breaks.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BreakKind {
    /// The record's content does not match its hash.
    Altered,
    /// Records before this one are missing (a gap in seq).
    Missing,
    /// The record does not link to the one before it.
    Unlinked,
    /// Records after the last one are missing (the head is further on).
    TailRemoved,
}

/// Walks the whole chain.
pub async fn verify(pool: &AnyPool) -> Result<VerifyReport, sqlx::Error> {
    let head = load_head(pool).await?;
    let mut rows = sqlx::query(
        "SELECT seq, prev_hash, hash, recorded_at, run_id, kind, payload FROM audit ORDER BY seq",
    )
    .fetch(pool);
    let mut expected_seq = 1i64;
    let mut prev = GENESIS.to_string();
    let mut records = 0u64;
    let mut last_seq = 0;
    let brk = |seq, problem, detail: String| {
        Some(ChainBreak {
            seq,
            problem,
            detail,
        })
    };
    while let Some(r) = rows.try_next().await? {
        let seq: i64 = r.try_get(0)?;
        let prev_hash: String = r.try_get(1)?;
        let hash: String = r.try_get(2)?;
        let recorded_at: String = r.try_get(3)?;
        let run_id: Option<String> = r.try_get(4)?;
        let kind: String = r.try_get(5)?;
        let payload: String = r.try_get(6)?;
        records += 1;
        let broken = if seq != expected_seq {
            brk(
                seq,
                BreakKind::Missing,
                format!(
                    "expected record {expected_seq} next, found {seq}: records {expected_seq}..{} were removed",
                    seq - 1
                ),
            )
        } else if prev_hash != prev {
            brk(
                seq,
                BreakKind::Unlinked,
                "its prev_hash does not match the previous record's hash".into(),
            )
        } else if record_hash(
            &prev_hash,
            seq,
            &recorded_at,
            run_id.as_deref(),
            &kind,
            &payload,
        ) != hash
        {
            brk(
                seq,
                BreakKind::Altered,
                format!("its content ({kind}) does not match its hash: the record was changed"),
            )
        } else {
            None
        };
        if let Some(b) = broken {
            return Ok(VerifyReport {
                records,
                last_seq: seq,
                broken: Some(b),
            });
        }
        prev = hash;
        last_seq = seq;
        expected_seq = seq + 1;
    }
    let broken = if head.seq != last_seq || (head.seq > 0 && head.hash != prev) {
        brk(
            last_seq + 1,
            BreakKind::TailRemoved,
            format!(
                "the chain ends at record {last_seq} but its head says {}: records after {last_seq} were removed",
                head.seq
            ),
        )
    } else {
        None
    };
    Ok(VerifyReport {
        records,
        last_seq,
        broken,
    })
}

/// How the stored and given checkpoints compare with the chain.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The trusted public key, if one is known.
    pub public_key: Option<String>,
    /// Checkpoints stored in the database.
    pub stored: usize,
    /// Checkpoints given from outside (`--checkpoint FILE`).
    pub external: usize,
    /// Checkpoints whose signature and hash matched.
    pub matched: usize,
    /// The latest checkpoint's seq.
    pub last_seq: Option<i64>,
    /// What did not match, readable.
    pub problems: Vec<String>,
    /// Stored checkpoints not checked for lack of a trusted key.
    pub unverified: usize,
}

/// Everything `deskhost audit verify` checks.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FullReport {
    /// The hash chain.
    pub chain: VerifyReport,
    /// Decisions, tickets and states against their audit records (skipped when the chain
    /// is broken: its digests cannot be trusted then).
    pub decisions: Option<committed::DecisionReport>,
    /// Signed checkpoints.
    pub checkpoints: CheckpointReport,
}

impl FullReport {
    /// The first problem, readable; `None` when everything holds.
    pub fn first_problem(&self) -> Option<String> {
        if let Some(b) = &self.chain.broken {
            return Some(format!(
                "audit chain BROKEN at record {}: {:?}: {}",
                b.seq, b.problem, b.detail
            ));
        }
        if let Some(p) = self.checkpoints.problems.first() {
            return Some(format!("audit chain REWRITTEN: {p}"));
        }
        self.decisions
            .as_ref()
            .and_then(|d| d.problems.first())
            .map(|p| format!("decisions ALTERED: {p}"))
    }
}

/// Verifies the chain, every decision against its digests, and the stored checkpoints plus
/// `external` ones against the chain, trusting `key`. `expect_checkpoints`: signing is
/// configured to checkpoint every that many records, so a long chain without any stored
/// checkpoint means they were removed.
pub async fn verify_all(
    pool: &AnyPool,
    key: Option<&ed25519_dalek::VerifyingKey>,
    external: &[checkpoint::Checkpoint],
    expect_checkpoints: Option<u64>,
) -> Result<FullReport, sqlx::Error> {
    let chain = verify(pool).await?;
    let stored = checkpoint::stored(pool).await?;
    let workspace: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'workspace_id'")
            .fetch_optional(pool)
            .await?;
    let mut report = CheckpointReport {
        public_key: key.map(checkpoint::public_key_text),
        stored: stored.len(),
        external: external.len(),
        last_seq: stored.iter().chain(external).map(|c| c.seq).max(),
        ..CheckpointReport::default()
    };
    for (origin, cp) in stored
        .iter()
        .map(|c| ("stored", c))
        .chain(external.iter().map(|c| ("given", c)))
    {
        let Some(key) = key else {
            report.unverified += 1;
            continue;
        };
        let ws = if origin == "stored" {
            None
        } else {
            workspace.as_deref()
        };
        let what = format!(
            "the {origin} checkpoint of record {} signed {}",
            cp.seq, cp.signed_at
        );
        match checkpoint::check(pool, cp, key, ws).await? {
            checkpoint::CheckpointCheck::Matches => report.matched += 1,
            checkpoint::CheckpointCheck::BadSignature => report.problems.push(format!(
                "{what} is not signed by the trusted key {}",
                checkpoint::public_key_text(key)
            )),
            checkpoint::CheckpointCheck::OtherWorkspace => report.problems.push(format!(
                "{what} belongs to workspace {}, not this one",
                cp.workspace
            )),
            checkpoint::CheckpointCheck::Rewritten { found } => report.problems.push(format!(
                "{what} says its hash is {}, the chain now has {}: the chain was rebuilt after the checkpoint",
                cp.hash, found
            )),
            checkpoint::CheckpointCheck::Truncated { chain_ends_at } => report.problems.push(format!(
                "{what}, but the chain ends at record {chain_ends_at}: records were removed"
            )),
        }
    }
    if let Some(every) = expect_checkpoints
        && every > 0
        && stored.is_empty()
        && chain.last_seq as u64 >= 2 * every
    {
        report.problems.push(format!(
            "the chain has {} records and checkpoints are signed every {every}, but none is stored: they were removed",
            chain.last_seq
        ));
    }
    let decisions = if chain.broken.is_none() {
        Some(committed::verify(pool).await?)
    } else {
        None
    };
    Ok(FullReport {
        chain,
        decisions,
        checkpoints: report,
    })
}

/// Streams the chain from record `from` (and the checkpoints) as JSON Lines to `out`: a
/// header, one `record` line per record with its payload exactly as hashed, and each
/// checkpoint after the record it covers. Returns the number of records written.
pub async fn export(
    pool: &AnyPool,
    from: i64,
    out: &mut impl std::io::Write,
) -> Result<u64, ExportError> {
    let head = load_head(pool).await?;
    let checkpoints = checkpoint::stored(pool).await?;
    let workspace = checkpoints.first().map(|c| c.workspace.clone());
    serde_json::to_writer(
        &mut *out,
        &serde_json::json!({
            "type": "export",
            "format": 1,
            "workspace": workspace,
            "from": from,
            "to": head.seq,
            "head_hash": head.hash,
            "deskhost": env!("CARGO_PKG_VERSION"),
        }),
    )?;
    writeln!(out)?;
    let mut pending = checkpoints.into_iter().filter(|c| c.seq >= from).peekable();
    let mut rows = sqlx::query(
        "SELECT seq, prev_hash, hash, recorded_at, run_id, kind, payload FROM audit WHERE seq >= $1 ORDER BY seq",
    )
    .bind(from)
    .fetch(pool);
    let mut written = 0;
    while let Some(r) = rows.try_next().await? {
        let seq: i64 = r.try_get(0)?;
        serde_json::to_writer(
            &mut *out,
            &serde_json::json!({
                "type": "record",
                "seq": seq,
                "prev_hash": r.try_get::<String, _>(1)?,
                "hash": r.try_get::<String, _>(2)?,
                "recorded_at": r.try_get::<String, _>(3)?,
                "run_id": r.try_get::<Option<String>, _>(4)?,
                "kind": r.try_get::<String, _>(5)?,
                "payload": r.try_get::<String, _>(6)?,
            }),
        )?;
        writeln!(out)?;
        written += 1;
        while let Some(cp) = pending.next_if(|c| c.seq <= seq) {
            serde_json::to_writer(&mut *out, &cp)?;
            writeln!(out)?;
        }
    }
    for cp in pending {
        serde_json::to_writer(&mut *out, &cp)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(written)
}

/// An export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store failed.
    #[error("cannot read the audit log: {0}")]
    Store(#[from] sqlx::Error),
    /// Writing failed.
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    /// Encoding failed.
    #[error("cannot encode the export: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What [`verify_export`] found in an exported file.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ExportReport {
    /// Records read.
    pub records: u64,
    /// Checkpoints whose signature and hash matched.
    pub checkpoints: u64,
    /// The first problem, readable.
    pub problem: Option<String>,
}

/// Verifies an export (from `deskhost audit export`) on its own, e.g. on another machine:
/// the records chain from the first one (or genesis), each checkpoint is signed by `key` and
/// names the hash its record has. Only as strong as the key it trusts.
pub fn verify_export(
    path: &std::path::Path,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<ExportReport, String> {
    let parsed =
        crate::jsonl::read::<serde_json::Value>(path, |_| Ok(())).map_err(|e| e.to_string())?;
    let mut report = ExportReport::default();
    if let Some(bad) = parsed.rejected.first() {
        report.problem = Some(bad.clone());
        return Ok(report);
    }
    let mut prev: Option<String> = None;
    let mut expected_seq: Option<i64> = None;
    let mut hashes: std::collections::BTreeMap<i64, String> = std::collections::BTreeMap::new();
    let mut pending = Vec::new();
    let name = path.display();
    for (line, v) in parsed.records {
        let fail = |what: String| Some(format!("{name}:{line}: {what}"));
        match v.get("type").and_then(|t| t.as_str()) {
            Some("record") => {
                let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                let seq = v
                    .get("seq")
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0);
                let prev_hash = text("prev_hash");
                if expected_seq.is_some_and(|e| e != seq) {
                    report.problem = fail(format!(
                        "record {seq} follows record {}: records are missing",
                        expected_seq.unwrap_or(0) - 1
                    ));
                    return Ok(report);
                }
                if let Some(p) = &prev
                    && *p != prev_hash
                {
                    report.problem = fail(format!(
                        "record {seq} does not link to the record before it"
                    ));
                    return Ok(report);
                }
                if seq == 1 && prev_hash != GENESIS {
                    report.problem = fail("record 1 does not start from the genesis hash".into());
                    return Ok(report);
                }
                let hash = record_hash(
                    &prev_hash,
                    seq,
                    &text("recorded_at"),
                    v.get("run_id").and_then(|x| x.as_str()),
                    &text("kind"),
                    &text("payload"),
                );
                if hash != text("hash") {
                    report.problem =
                        fail(format!("record {seq}: its content does not match its hash"));
                    return Ok(report);
                }
                report.records += 1;
                hashes.insert(seq, hash.clone());
                prev = Some(hash);
                expected_seq = Some(seq + 1);
            }
            Some("checkpoint") => match serde_json::from_value::<checkpoint::Checkpoint>(v) {
                Ok(cp) => pending.push((line, cp)),
                Err(e) => {
                    report.problem = fail(format!("not a checkpoint: {e}"));
                    return Ok(report);
                }
            },
            _ => {}
        }
    }
    for (line, cp) in pending {
        let Some(key) = key else {
            return Err(
                "checkpoints can only be checked against a trusted key: pass --public-key".into(),
            );
        };
        let fail = |what: String| Some(format!("{name}:{line}: {what}"));
        if !cp.verify_with(key) {
            report.problem = fail(format!(
                "the checkpoint of record {} is not signed by the trusted key",
                cp.seq
            ));
            return Ok(report);
        }
        match hashes.get(&cp.seq) {
            Some(h) if *h == cp.hash => report.checkpoints += 1,
            Some(_) => {
                report.problem = fail(format!(
                    "record {} has another hash than its signed checkpoint: the chain was rebuilt",
                    cp.seq
                ));
                return Ok(report);
            }
            None => {}
        }
    }
    Ok(report)
}

/// Checkpoints in a JSON Lines file (a checkpoint log, `audit checkpoint` output or an
/// export: other lines are skipped).
pub fn read_checkpoints(path: &std::path::Path) -> Result<Vec<checkpoint::Checkpoint>, String> {
    let parsed =
        crate::jsonl::read::<serde_json::Value>(path, |_| Ok(())).map_err(|e| e.to_string())?;
    if let Some(bad) = parsed.rejected.first() {
        return Err(bad.clone());
    }
    let mut out = Vec::new();
    for (line, v) in parsed.records {
        let is_checkpoint =
            v.get("signature").is_some() && v.get("type").is_none_or(|t| t == "checkpoint");
        if is_checkpoint {
            out.push(
                serde_json::from_value(v)
                    .map_err(|e| format!("{}:{line}: not a checkpoint: {e}", path.display()))?,
            );
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{} holds no checkpoint; `deskhost audit checkpoint` prints one",
            path.display()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use serde_json::json;

    async fn store_with(n: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).await.unwrap();
        let entries: Vec<AuditEntry> = (0..n)
            .map(|i| AuditEntry::run("run_1", "host-call", json!({ "i": i })))
            .collect();
        append_now(store.pool(), &entries[..n / 2]).await.unwrap();
        append_now(store.pool(), &entries[n / 2..]).await.unwrap();
        (dir, store)
    }

    async fn tamper(store: &Store, sql: &str) {
        sqlx::query("DROP TRIGGER audit_no_update")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("DROP TRIGGER audit_no_delete")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(store.pool())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn intact_chain_verifies() {
        let (_d, store) = store_with(6).await;
        let r = verify(store.pool()).await.unwrap();
        assert_eq!((r.records, r.last_seq, r.broken), (6, 6, None));
    }

    #[tokio::test]
    async fn altered_record_is_named() {
        let (_d, store) = store_with(6).await;
        tamper(
            &store,
            "UPDATE audit SET payload = '{\"i\":99}' WHERE seq = 3",
        )
        .await;
        let b = verify(store.pool()).await.unwrap().broken.unwrap();
        assert_eq!((b.seq, b.problem), (3, BreakKind::Altered));
    }

    #[tokio::test]
    async fn deleted_record_is_named() {
        let (_d, store) = store_with(6).await;
        tamper(&store, "DELETE FROM audit WHERE seq = 4").await;
        let b = verify(store.pool()).await.unwrap().broken.unwrap();
        assert_eq!((b.seq, b.problem), (5, BreakKind::Missing));
        assert!(b.detail.contains("4..4"), "{}", b.detail);
    }

    #[tokio::test]
    async fn deleted_tail_is_detected() {
        let (_d, store) = store_with(6).await;
        tamper(&store, "DELETE FROM audit WHERE seq >= 5").await;
        let b = verify(store.pool()).await.unwrap().broken.unwrap();
        assert_eq!((b.seq, b.problem), (5, BreakKind::TailRemoved));
    }

    #[tokio::test]
    async fn rehashed_record_breaks_the_next_link() {
        let (_d, store) = store_with(6).await;
        // An attacker who recomputes the altered record's own hash still breaks record 4.
        let r = sqlx::query("SELECT prev_hash, recorded_at, run_id, kind FROM audit WHERE seq = 3")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let forged = record_hash(
            r.try_get::<&str, _>(0).unwrap(),
            3,
            r.try_get::<&str, _>(1).unwrap(),
            r.try_get::<Option<&str>, _>(2).unwrap(),
            r.try_get::<&str, _>(3).unwrap(),
            "{}",
        );
        tamper(
            &store,
            &format!("UPDATE audit SET payload = '{{}}', hash = '{forged}' WHERE seq = 3"),
        )
        .await;
        let b = verify(store.pool()).await.unwrap().broken.unwrap();
        assert_eq!((b.seq, b.problem), (4, BreakKind::Unlinked));
    }
}
