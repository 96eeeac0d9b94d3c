//! Signed checkpoints: the audit chain anchored outside the database.
//!
//! Anyone who can write the database file can drop the append-only triggers, rewrite the
//! records, recompute every hash and move the head: the chain then verifies. A checkpoint
//! is the chain's (seq, hash) signed with an ed25519 key that lives outside the database;
//! a rebuilt chain no longer matches any checkpoint taken before the rebuild. Checkpoints
//! are stored in `audit_checkpoints`, appended to an optional log file, printed by
//! `deskhost audit checkpoint` and included in `deskhost audit export`, so a copy can be
//! kept where the database's writer cannot reach it.

use super::AuditHead;
use deskhost_protocol::digest::now_rfc3339;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sqlx::{Any, AnyPool, Row, Transaction};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Checkpoint errors: each names the file or value and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The key file could not be read or written.
    #[error("audit signing key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A public key is not `ed25519:<64 hex digits>`.
    #[error("public key \"{0}\" is not ed25519:<64 hex digits>; `deskhost audit keygen` prints it")]
    PublicKey(String),
    /// The store failed.
    #[error("audit checkpoints: {0}")]
    Store(#[from] sqlx::Error),
    /// A checkpoint log could not be written.
    #[error("cannot append to the checkpoint log {path}: {source}")]
    Log {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A signed checkpoint of the audit chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always `checkpoint` (export lines are typed).
    #[serde(rename = "type", default = "checkpoint_type")]
    pub kind: String,
    /// The workspace's id (`meta.workspace_id`).
    pub workspace: String,
    /// The last record covered.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// Records in the chain up to `seq`.
    pub records: i64,
    /// When it was signed (RFC 3339).
    pub signed_at: String,
    /// `ed25519:<hex>`.
    pub public_key: String,
    /// Hex signature over [`Checkpoint::message`].
    pub signature: String,
}

fn checkpoint_type() -> String {
    "checkpoint".into()
}

impl Checkpoint {
    /// The bytes signed.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "deskhost-audit-checkpoint/v1\n{}\n{}\n{}\n{}\n{}",
            self.workspace, self.seq, self.hash, self.records, self.signed_at
        )
        .into_bytes()
    }

    /// Checks the signature with `key` (the trusted public key, not the one the checkpoint
    /// names: whoever forges a checkpoint also writes its `public_key`).
    pub fn verify_with(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(&self.message(), &signature).is_ok()
    }
}

/// `ed25519:<hex>` of a public key.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("ed25519:{}", hex::encode(key.as_bytes()))
}

/// Parses `ed25519:<hex>`.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, CheckpointError> {
    let bad = || CheckpointError::PublicKey(deskhost_protocol::sanitize::field(text).into_owned());
    let hex_part = text.trim().strip_prefix("ed25519:").ok_or_else(bad)?;
    let bytes: [u8; 32] = hex::decode(hex_part)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

const KEY_PREFIX: &str = "deskhost-audit-key:ed25519:";

/// Writes a new signing key to `path` (owner read/write only); refuses to overwrite one.
pub fn keygen(path: &Path) -> Result<VerifyingKey, CheckpointError> {
    let err = |message: String| CheckpointError::Key {
        path: path.to_path_buf(),
        message,
    };
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| err(format!("no randomness from the OS: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        err(if e.kind() == std::io::ErrorKind::AlreadyExists {
            "exists; a key is never overwritten (checkpoints signed with it would no longer verify): choose another path".into()
        } else {
            e.to_string()
        })
    })?;
    writeln!(file, "{KEY_PREFIX}{}", hex::encode(seed))
        .and_then(|()| file.sync_all())
        .map_err(|e| err(e.to_string()))?;
    Ok(key.verifying_key())
}

/// Reads a signing key written by [`keygen`].
pub fn read_key(path: &Path) -> Result<SigningKey, CheckpointError> {
    let err = |message: String| CheckpointError::Key {
        path: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        err(format!(
            "{e}; create one with `deskhost audit keygen {}` or fix [audit] signing_key",
            path.display()
        ))
    })?;
    if meta.len() > 4096 {
        return Err(err("is not a deskhost audit key (too large)".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "is readable by others (mode {:o}); run chmod 600 on it",
                meta.permissions().mode() & 0o777
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let seed: [u8; 32] = text
        .trim()
        .strip_prefix(KEY_PREFIX)
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            err("is not a deskhost audit key (deskhost audit keygen writes them)".into())
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The workspace id checkpoints name (created on first use).
pub async fn workspace_id(tx: &mut Transaction<'_, Any>) -> Result<String, sqlx::Error> {
    let id: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'workspace_id'")
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(id) = id {
        return Ok(id);
    }
    let id = deskhost_protocol::digest::new_id("ws");
    sqlx::query("INSERT INTO meta (key, value) VALUES ('workspace_id', $1)")
        .bind(&id)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// Signs and stores a checkpoint of `head` inside `tx`.
pub async fn sign(
    tx: &mut Transaction<'_, Any>,
    key: &SigningKey,
    head: &AuditHead,
) -> Result<Checkpoint, sqlx::Error> {
    let mut cp = Checkpoint {
        kind: checkpoint_type(),
        workspace: workspace_id(tx).await?,
        seq: head.seq,
        hash: head.hash.clone(),
        records: head.seq,
        signed_at: now_rfc3339(),
        public_key: public_key_text(&key.verifying_key()),
        signature: String::new(),
    };
    cp.signature = hex::encode(key.sign(&cp.message()).to_bytes());
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, hash, records, signed_at, public_key, signature) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT(seq) DO UPDATE SET hash = excluded.hash, records = excluded.records, signed_at = excluded.signed_at,
         public_key = excluded.public_key, signature = excluded.signature",
    )
    .bind(cp.seq)
    .bind(&cp.hash)
    .bind(cp.records)
    .bind(&cp.signed_at)
    .bind(&cp.public_key)
    .bind(&cp.signature)
    .execute(&mut **tx)
    .await?;
    Ok(cp)
}

/// The checkpoints stored in the database, oldest first.
pub async fn stored(pool: &AnyPool) -> Result<Vec<Checkpoint>, sqlx::Error> {
    let workspace: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'workspace_id'")
            .fetch_optional(pool)
            .await?;
    sqlx::query("SELECT seq, hash, records, signed_at, public_key, signature FROM audit_checkpoints ORDER BY seq")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Checkpoint {
                kind: checkpoint_type(),
                workspace: workspace.clone().unwrap_or_default(),
                seq: r.try_get(0)?,
                hash: r.try_get(1)?,
                records: r.try_get(2)?,
                signed_at: r.try_get(3)?,
                public_key: r.try_get(4)?,
                signature: r.try_get(5)?,
            })
        })
        .collect()
}

/// Appends `cp` as one JSON line to `path` and syncs it.
pub fn append_to_log(path: &Path, cp: &Checkpoint) -> Result<(), CheckpointError> {
    let log = |source| CheckpointError::Log {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(log)?;
    let line = serde_json::to_string(cp).unwrap_or_default();
    writeln!(file, "{line}")
        .and_then(|()| file.sync_data())
        .map_err(log)
}

/// Automatic checkpoints: after appends, sign when enough records or time went by.
#[derive(Debug)]
pub struct Checkpointer {
    key: SigningKey,
    every_records: u64,
    every: Option<Duration>,
    log: Option<PathBuf>,
    last: Mutex<Option<(i64, Instant)>>,
}

impl Checkpointer {
    /// A checkpointer with `key`, signing every `every_records` records or `every_minutes`
    /// minutes (0 turns either off), appending to `log` if given.
    pub fn new(
        key: SigningKey,
        every_records: u64,
        every_minutes: u64,
        log: Option<PathBuf>,
    ) -> Self {
        Self {
            key,
            every_records,
            every: (every_minutes > 0).then(|| Duration::from_secs(every_minutes * 60)),
            log,
            last: Mutex::new(None),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Called inside the appending transaction with the new head: signs a checkpoint when
    /// one is due. Publish the result with [`Checkpointer::publish`] after the commit.
    pub async fn after_append(
        &self,
        tx: &mut Transaction<'_, Any>,
        head: &AuditHead,
    ) -> Result<Option<Checkpoint>, sqlx::Error> {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (last_seq, last_at) = match last {
            Some(l) => l,
            None => {
                let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints")
                    .fetch_one(&mut **tx)
                    .await?;
                (seq.unwrap_or(0), Instant::now())
            }
        };
        let grown = head.seq.saturating_sub(last_seq).max(0) as u64;
        let due = grown > 0
            && ((self.every_records > 0 && grown >= self.every_records)
                || self.every.is_some_and(|e| last_at.elapsed() >= e));
        if !due {
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((last_seq, last_at));
            return Ok(None);
        }
        let cp = sign(tx, &self.key, head).await?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((head.seq, Instant::now()));
        Ok(Some(cp))
    }

    /// Appends a committed checkpoint to the log file, if one is configured (a failure is
    /// reported, not fatal: the checkpoint is in the database).
    pub fn publish(&self, cp: &Checkpoint) {
        if let Some(path) = &self.log
            && let Err(e) = append_to_log(path, cp)
        {
            tracing::error!("{e}");
        }
    }
}

/// How one checkpoint compares with the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum CheckpointCheck {
    /// Signature valid; the chain has the signed hash at its seq.
    Matches,
    /// Not signed by the trusted key (forged, or another key).
    BadSignature,
    /// Signed for another workspace.
    OtherWorkspace,
    /// The chain's record at `seq` has another hash: the chain was rewritten.
    Rewritten {
        /// What the chain has now.
        found: String,
    },
    /// The chain no longer reaches `seq`: records were removed.
    Truncated {
        /// Where the chain ends.
        chain_ends_at: i64,
    },
}

/// Compares `cp` with the chain in `pool`, trusting `key`.
pub async fn check(
    pool: &AnyPool,
    cp: &Checkpoint,
    key: &VerifyingKey,
    workspace: Option<&str>,
) -> Result<CheckpointCheck, sqlx::Error> {
    if !cp.verify_with(key) {
        return Ok(CheckpointCheck::BadSignature);
    }
    if workspace.is_some_and(|w| w != cp.workspace) {
        return Ok(CheckpointCheck::OtherWorkspace);
    }
    let hash: Option<String> = sqlx::query_scalar("SELECT hash FROM audit WHERE seq = $1")
        .bind(cp.seq)
        .fetch_optional(pool)
        .await?;
    Ok(match hash {
        Some(h) if h == cp.hash => CheckpointCheck::Matches,
        Some(found) => CheckpointCheck::Rewritten { found },
        None => {
            let end: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit")
                .fetch_one(pool)
                .await?;
            CheckpointCheck::Truncated {
                chain_ends_at: end.unwrap_or(0),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_only_with_its_key_and_content() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.key");
        let public = keygen(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(keygen(&path).is_err(), "a key is never overwritten");
        let key = read_key(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.verifying_key(), public);
        let mut cp = Checkpoint {
            kind: checkpoint_type(),
            workspace: "ws_1".into(),
            seq: 10,
            hash: "ab".repeat(32),
            records: 10,
            signed_at: "2026-12-01T00:00:00.000000Z".into(),
            public_key: public_key_text(&public),
            signature: String::new(),
        };
        cp.signature = hex::encode(key.sign(&cp.message()).to_bytes());
        assert!(cp.verify_with(&public));
        let parsed = parse_public_key(&cp.public_key).unwrap_or_else(|e| panic!("{e}"));
        assert!(cp.verify_with(&parsed));
        let mut forged = cp.clone();
        forged.hash = "cd".repeat(32);
        assert!(
            !forged.verify_with(&public),
            "a changed hash breaks the signature"
        );
        let other = keygen(&dir.path().join("other.key")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!cp.verify_with(&other));
        assert!(parse_public_key("ed25519:zz").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.key");
        keygen(&path).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = read_key(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
