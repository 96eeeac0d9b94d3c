//! Plugin versions and slots: which versions are installed, which one each slot runs (with
//! rollback history), and which candidate shadows it.
//!
//! State lives in the store as an append-only event log (`slot_events`), so promote and
//! rollback are one row each, every process sees the same order, and a running `run` or
//! `serve` notices a change by polling one number (`MAX(seq)`).

use crate::config::WorkspaceConfig;
use crate::manifest::{Grants, Limits, Manifest, PolicyKind};
use crate::store::{Store, StoreError};
use crate::util::now_rfc3339;
pub use deskhost_store::slots::Installed;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The slots' state after replaying the event log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SlotState {
    /// Active `id@version` per slot.
    pub active: BTreeMap<PolicyKind, String>,
    /// Versions each slot can roll back to, oldest first (the active one excluded).
    pub history: BTreeMap<PolicyKind, Vec<String>>,
    /// Shadow candidate per slot.
    pub shadow: BTreeMap<PolicyKind, String>,
    /// The last event applied (0 = none).
    pub seq: i64,
}

impl SlotState {
    /// The active plugin of `slot`, if the slot is configured.
    pub fn active(&self, slot: PolicyKind) -> Option<&str> {
        self.active.get(&slot).map(String::as_str)
    }
}

fn slot_of(name: &str) -> Option<PolicyKind> {
    PolicyKind::ALL.into_iter().find(|k| k.as_str() == name)
}

/// Replays the event log on top of deskhost.toml's `[slots]`.
pub async fn slot_state(store: &Store, config: &WorkspaceConfig) -> Result<SlotState, StoreError> {
    let mut stacks: BTreeMap<PolicyKind, Vec<String>> = BTreeMap::new();
    stacks.insert(PolicyKind::Triage, vec![config.slots.triage.clone()]);
    if let Some(r) = &config.slots.reply {
        stacks.insert(PolicyKind::Reply, vec![r.clone()]);
    }
    if let Some(e) = &config.slots.escalation {
        stacks.insert(PolicyKind::Escalation, vec![e.clone()]);
    }
    let mut shadow = BTreeMap::new();
    let mut seq = 0;
    for event in store.slot_events().await? {
        seq = event.seq;
        let Some(slot) = slot_of(&event.slot) else {
            continue;
        };
        match (event.action.as_str(), event.plugin) {
            ("promote", Some(p)) => stacks.entry(slot).or_default().push(p),
            ("rollback", _) => {
                let stack = stacks.entry(slot).or_default();
                if stack.len() > 1 {
                    stack.pop();
                }
            }
            ("shadow", Some(p)) => {
                shadow.insert(slot, p);
            }
            ("unshadow", _) => {
                shadow.remove(&slot);
            }
            _ => {}
        }
    }
    let mut active = BTreeMap::new();
    let mut history = BTreeMap::new();
    for (slot, mut stack) in stacks {
        if let Some(top) = stack.pop() {
            active.insert(slot, top);
            history.insert(slot, stack);
        }
    }
    Ok(SlotState {
        active,
        history,
        shadow,
        seq,
    })
}

/// The number of the latest slot event (cheap; what running processes poll).
pub async fn latest_seq(store: &Store) -> Result<i64, StoreError> {
    store.latest_slot_seq().await
}

/// A slot change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotAction {
    /// Make a version active.
    Promote,
    /// Return to the previous active version.
    Rollback,
    /// Run a candidate beside the active version.
    Shadow,
    /// Stop shadowing.
    Unshadow,
}

impl SlotAction {
    fn as_str(self) -> &'static str {
        match self {
            SlotAction::Promote => "promote",
            SlotAction::Rollback => "rollback",
            SlotAction::Shadow => "shadow",
            SlotAction::Unshadow => "unshadow",
        }
    }
}

/// Appends a slot event; returns its seq.
pub async fn record(
    store: &Store,
    slot: PolicyKind,
    action: SlotAction,
    plugin: Option<&str>,
) -> Result<i64, StoreError> {
    store
        .record_slot_event(slot.as_str(), action.as_str(), plugin)
        .await
}

/// The installed version `key`, if any.
pub async fn installed(store: &Store, key: &str) -> Result<Option<Installed>, StoreError> {
    store.installed(key).await
}

/// Records an installed version.
pub async fn register(
    store: &Store,
    manifest: &Manifest,
    manifest_path: &Path,
) -> Result<(), StoreError> {
    let installed = Installed {
        key: manifest.key(),
        kind: manifest.kind.as_str().to_string(),
        digest: manifest.sha256.clone(),
        manifest_path: manifest_path.display().to_string(),
        installed_at: now_rfc3339(),
    };
    store
        .register_installed(&installed.key, &manifest.id, &manifest.version, &installed)
        .await
}

/// What changes, capability-wise, when `next` replaces `current`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CapabilityDiff {
    /// The version being replaced, if any.
    pub replaces: Option<String>,
    /// Grants the new version adds (`crm`, `crm.fields.plan`, `ticket.fields.messages`, ...).
    pub added: Vec<String>,
    /// Grants it drops.
    pub removed: Vec<String>,
    /// Limits that change, as `name: old → new`.
    pub limits: Vec<String>,
}

fn grant_items(g: &Grants) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(h) = &g.helpdesk {
        out.push("helpdesk".to_string());
        if let Some(m) = h.max_calls {
            out.push(format!("helpdesk.max_calls={m}"));
        }
    }
    if let Some(k) = &g.kb {
        out.push("kb".to_string());
        out.extend(k.collections.iter().map(|c| format!("kb.collections.{c}")));
        if let Some(m) = k.max_calls {
            out.push(format!("kb.max_calls={m}"));
        }
    }
    if let Some(c) = &g.crm {
        out.push("crm".to_string());
        out.extend(c.fields.iter().map(|f| format!("crm.fields.{f}")));
        if let Some(m) = c.max_calls {
            out.push(format!("crm.max_calls={m}"));
        }
    }
    out.extend(g.ticket.fields.iter().map(|f| format!("ticket.fields.{f}")));
    out
}

fn limit_items(l: &Limits) -> Vec<(&'static str, u64)> {
    vec![
        ("fuel", l.fuel),
        ("wall_ms", l.wall_ms),
        ("memory_mib", u64::from(l.memory_mib)),
        ("host_calls", u64::from(l.host_calls)),
        ("output_kib", u64::from(l.output_kib)),
    ]
}

/// The capability diff of `next` against `current` (None: a new slot).
pub fn capability_diff(current: Option<&Manifest>, next: &Manifest) -> CapabilityDiff {
    let Some(current) = current else {
        return CapabilityDiff {
            added: grant_items(&next.grants),
            ..CapabilityDiff::default()
        };
    };
    let old = grant_items(&current.grants);
    let new = grant_items(&next.grants);
    let limits = limit_items(&current.limits)
        .into_iter()
        .zip(limit_items(&next.limits))
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, b)| format!("{}: {} → {}", a.0, a.1, b.1))
        .collect();
    CapabilityDiff {
        replaces: Some(current.key()),
        added: new.iter().filter(|x| !old.contains(x)).cloned().collect(),
        removed: old.iter().filter(|x| !new.contains(x)).cloned().collect(),
        limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WorkspaceConfig {
        let text =
            "[workspace]\nname = \"t\"\n[slots]\ntriage = \"t@1.0.0\"\nreply = \"r@1.0.0\"\n";
        WorkspaceConfig::parse(text, Path::new("deskhost.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn promote_and_rollback_form_a_stack() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("r.db")).await.unwrap();
        let c = config();
        assert_eq!(
            slot_state(&store, &c)
                .await
                .unwrap()
                .active(PolicyKind::Triage),
            Some("t@1.0.0")
        );
        record(
            &store,
            PolicyKind::Triage,
            SlotAction::Promote,
            Some("t@2.0.0"),
        )
        .await
        .unwrap();
        record(
            &store,
            PolicyKind::Triage,
            SlotAction::Promote,
            Some("t@3.0.0"),
        )
        .await
        .unwrap();
        let s = slot_state(&store, &c).await.unwrap();
        assert_eq!(s.active(PolicyKind::Triage), Some("t@3.0.0"));
        assert_eq!(s.history[&PolicyKind::Triage], vec!["t@1.0.0", "t@2.0.0"]);
        record(&store, PolicyKind::Triage, SlotAction::Rollback, None)
            .await
            .unwrap();
        assert_eq!(
            slot_state(&store, &c)
                .await
                .unwrap()
                .active(PolicyKind::Triage),
            Some("t@2.0.0")
        );
        record(&store, PolicyKind::Triage, SlotAction::Rollback, None)
            .await
            .unwrap();
        record(&store, PolicyKind::Triage, SlotAction::Rollback, None)
            .await
            .unwrap();
        let s = slot_state(&store, &c).await.unwrap();
        assert_eq!(
            s.active(PolicyKind::Triage),
            Some("t@1.0.0"),
            "the configured version is the floor"
        );
        assert_eq!(s.active(PolicyKind::Reply), Some("r@1.0.0"));
        assert_eq!(s.seq, latest_seq(&store).await.unwrap());
        record(
            &store,
            PolicyKind::Reply,
            SlotAction::Shadow,
            Some("r@2.0.0"),
        )
        .await
        .unwrap();
        assert_eq!(
            slot_state(&store, &c).await.unwrap().shadow[&PolicyKind::Reply],
            "r@2.0.0"
        );
        record(&store, PolicyKind::Reply, SlotAction::Unshadow, None)
            .await
            .unwrap();
        assert!(slot_state(&store, &c).await.unwrap().shadow.is_empty());
    }

    #[test]
    fn capability_diff_names_grants_and_limits() {
        let parse = |extra: &str| {
            let text = format!(
                "id = \"x\"\nversion = \"1.0.0\"\nkind = \"triage\"\nwit = \"0.1.0\"\ncomponent = \"c.wasm\"\nsha256 = \"{}\"\n{extra}",
                "ab".repeat(32)
            );
            Manifest::parse(&text, Path::new("p.toml")).unwrap_or_else(|e| panic!("{e}"))
        };
        let old = parse("[limits]\nwall_ms = 500\n[grants.crm]\nfields = [\"tier\"]\n");
        let mut new = parse(
            "[limits]\nwall_ms = 800\n[grants.crm]\nfields = [\"tier\", \"plan\"]\n[grants.kb]\ncollections = [\"public\"]\n",
        );
        new.version = "2.0.0".into();
        let d = capability_diff(Some(&old), &new);
        assert_eq!(d.replaces.as_deref(), Some("x@1.0.0"));
        assert_eq!(
            d.added,
            vec!["kb", "kb.collections.public", "crm.fields.plan"]
        );
        assert!(d.removed.is_empty());
        assert_eq!(d.limits, vec!["wall_ms: 500 → 800"]);
    }
}
