//! Installed plugin versions (`plugin_versions`, immutable per `id@version`) and the slot
//! event log (`slot_events`, append-only). What the events mean is the engine's
//! (`registry.rs`); this module only stores and reads them.

use crate::store::{Col, Store, StoreError};
use deskhost_protocol::digest::now_rfc3339;
use serde::Serialize;

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// One slot event as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotEvent {
    /// Order.
    pub seq: i64,
    /// Slot name (`triage`, `reply`, `escalation`).
    pub slot: String,
    /// `promote`, `rollback`, `shadow`, `unshadow`.
    pub action: String,
    /// The `id@version` it names, if any.
    pub plugin: Option<String>,
}

/// An installed version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// `id@version`.
    pub key: String,
    /// Slot kind.
    pub kind: String,
    /// Component digest.
    pub digest: String,
    /// Manifest path.
    pub manifest_path: String,
    /// When.
    pub installed_at: String,
}

impl Store {
    /// Every slot event, in order.
    pub async fn slot_events(&self) -> Result<Vec<SlotEvent>, StoreError> {
        let rows = sqlx::query("SELECT seq, slot, action, plugin FROM slot_events ORDER BY seq")
            .fetch_all(self.pool())
            .await
            .map_err(q("read slot events"))?;
        rows.iter()
            .map(|r| {
                Ok(SlotEvent {
                    seq: r.col(0)?,
                    slot: r.col(1)?,
                    action: r.col(2)?,
                    plugin: r.col(3)?,
                })
            })
            .collect()
    }

    /// The number of the latest slot event, 0 when none (cheap; what running processes poll).
    pub async fn latest_slot_seq(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM slot_events")
            .fetch_one(self.pool())
            .await
            .map_err(q("read the latest slot event"))?;
        Ok(seq.unwrap_or(0))
    }

    /// Appends a slot event; returns its seq.
    pub async fn record_slot_event(
        &self,
        slot: &str,
        action: &str,
        plugin: Option<&str>,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO slot_events (slot, action, plugin, at) VALUES ($1, $2, $3, $4) RETURNING seq",
        )
        .bind(slot)
        .bind(action)
        .bind(plugin)
        .bind(now_rfc3339())
        .fetch_one(self.pool())
        .await
        .map_err(q("record a slot event"))?;
        row.col(0)
    }

    /// The installed version `key`, if any.
    pub async fn installed(&self, key: &str) -> Result<Option<Installed>, StoreError> {
        let row = sqlx::query(
            "SELECT key, kind, digest, manifest_path, installed_at FROM plugin_versions WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read an installed version"))?;
        row.map(|r| {
            Ok(Installed {
                key: r.col(0)?,
                kind: r.col(1)?,
                digest: r.col(2)?,
                manifest_path: r.col(3)?,
                installed_at: r.col(4)?,
            })
        })
        .transpose()
    }

    /// Records an installed version (`id@version` = `key`); a key already there is kept as
    /// it is (an installed version never changes).
    pub async fn register_installed(
        &self,
        key: &str,
        id: &str,
        version: &str,
        installed: &Installed,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO plugin_versions (key, id, version, kind, digest, manifest_path, installed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT(key) DO NOTHING",
        )
        .bind(key)
        .bind(id)
        .bind(version)
        .bind(&installed.kind)
        .bind(&installed.digest)
        .bind(&installed.manifest_path)
        .bind(&installed.installed_at)
        .execute(self.writer())
        .await
        .map_err(q("register an installed version"))?;
        Ok(())
    }
}
