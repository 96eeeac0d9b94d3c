//! The plugin lifecycle: install (validate, precompile, run the plugin's fixtures, show the
//! capability diff), promote, rollback, shadow, the shadow diff, and the watcher that swaps
//! a running process onto the new versions.

use crate::audit::AuditEntry;
use crate::eval::metrics::percentile;
use crate::manifest::{MANIFEST_FILE, Manifest, ManifestFiles, PolicyKind};
use crate::pipeline::Pipeline;
use crate::registry::{self, CapabilityDiff, SlotAction};
use crate::runtime::{LoadedPlugin, Runtime};
use crate::workspace::{Workspace, WorkspaceError};
use deskhost_protocol::proposal::{EscalationPacket, ReplyProposal, TriageProposal};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Lifecycle errors; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// Workspace, store or loading trouble.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// The plugin was refused.
    #[error("{0}")]
    Refused(String),
}

impl From<crate::store::StoreError> for LifecycleError {
    fn from(e: crate::store::StoreError) -> Self {
        LifecycleError::Workspace(e.into())
    }
}

impl From<crate::runtime::LoadError> for LifecycleError {
    fn from(e: crate::runtime::LoadError) -> Self {
        LifecycleError::Workspace(e.into())
    }
}

type Result<T> = std::result::Result<T, LifecycleError>;

/// What `install` did.
#[derive(Clone, Debug, Serialize)]
pub struct InstallReport {
    /// `id@version`.
    pub plugin: String,
    /// Slot.
    pub kind: PolicyKind,
    /// Installed manifest.
    pub manifest: PathBuf,
    /// Component digest.
    pub digest: String,
    /// The component's imports.
    pub imports: Vec<String>,
    /// Compile time (0 when the cache had it), milliseconds.
    pub compile_ms: f64,
    /// Whether settings and data were bound into the component.
    pub bound: bool,
    /// The component, settings and data files with their sizes and digests.
    pub files: Vec<crate::runtime::PluginFile>,
    /// Fixtures run and passed.
    pub fixtures: Option<crate::plugin_test::TestReport>,
    /// Against the slot's active version.
    pub diff: CapabilityDiff,
    /// The same version was installed already (nothing changed).
    pub already_installed: bool,
}

fn manifest_path_of(source: &Path) -> PathBuf {
    if source.is_dir() {
        source.join(MANIFEST_FILE)
    } else {
        source.to_path_buf()
    }
}

/// Copies the plugin directory `from` into `to`. A symbolic link is followed only when it
/// stays inside `root` (the source plugin directory); one that leads out is refused, so an
/// install never copies a file from elsewhere on the machine into the workspace.
fn copy_dir(root: &Path, from: &Path, to: &Path) -> std::result::Result<(), String> {
    fn io(p: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
        move |e| format!("{}: {e}", p.display())
    }
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::canonicalize(&path)
                .map_err(|e| format!("{} is a link that does not resolve: {e}", path.display()))?;
            if !target.starts_with(root) {
                return Err(format!(
                    "{} is a symbolic link to {}, outside the plugin directory; replace it with the file itself",
                    path.display(),
                    target.display()
                ));
            }
        }
        if path.is_dir() {
            copy_dir(root, &path, &to.join(entry.file_name()))?;
        } else if path.is_file() {
            std::fs::copy(&path, to.join(entry.file_name())).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Installs the plugin at `source` (its directory or its plugin.toml) into the workspace.
/// Nothing changes for running slots: `promote` makes it active.
pub async fn install(ws: &Workspace, runtime: &Runtime, source: &Path) -> Result<InstallReport> {
    let source_manifest = manifest_path_of(source);
    let manifest = Manifest::load(&source_manifest).map_err(WorkspaceError::from)?;
    let key = manifest.key();
    let dest_dir = ws.plugin_dir(&manifest.id, &manifest.version);
    let dest_manifest = dest_dir.join(MANIFEST_FILE);
    if let Some(existing) = registry::installed(&ws.store, &key).await? {
        if existing.digest == manifest.sha256 {
            let loaded = runtime.load_plugin(&dest_manifest, manifest.kind, &ws.config.ceiling)?;
            return report(ws, &loaded, None, true).await;
        }
        return Err(LifecycleError::Refused(format!(
            "{key} is already installed with component sha256 {}; a version is immutable: give the new build a new version",
            existing.digest
        )));
    }
    let source_dir = source_manifest.parent().unwrap_or(Path::new("."));
    let same_place =
        std::fs::canonicalize(source_dir).ok() == std::fs::canonicalize(&dest_dir).ok();
    let created = !same_place && !dest_dir.exists();
    if !same_place {
        if dest_dir.exists() {
            return Err(LifecycleError::Refused(format!(
                "{} exists but is not a registered install of {key}; remove it or install a new version",
                dest_dir.display()
            )));
        }
        let root = std::fs::canonicalize(source_dir).map_err(|source| WorkspaceError::Io {
            path: source_dir.to_path_buf(),
            source,
        })?;
        if let Err(e) = copy_dir(&root, &root, &dest_dir) {
            let _ = std::fs::remove_dir_all(&dest_dir);
            if let Some(id_dir) = dest_dir.parent() {
                let _ = std::fs::remove_dir(id_dir);
            }
            return Err(LifecycleError::Refused(format!(
                "{key}: {e}; nothing was installed"
            )));
        }
    }
    let undo = |e: LifecycleError| {
        if created {
            let _ = std::fs::remove_dir_all(&dest_dir);
            // plugins/<id>/ too, when this install made it (remove_dir refuses non-empty).
            if let Some(id_dir) = dest_dir.parent() {
                let _ = std::fs::remove_dir(id_dir);
            }
        }
        e
    };
    let loaded = runtime
        .load_plugin(&dest_manifest, manifest.kind, &ws.config.ceiling)
        .map_err(|e| undo(e.into()))?;
    let fixtures_dir = dest_dir.join("fixtures");
    let fixtures = if fixtures_dir.is_dir() {
        let report = crate::plugin_test::run_dir(ws, runtime, &loaded, &fixtures_dir, 1)
            .await
            .map_err(|e| undo(e.into()))?;
        if report.failed > 0 {
            return Err(undo(LifecycleError::Refused(format!(
                "{key}: {} of its {} fixtures fail; nothing was installed:\n{}",
                report.failed,
                report.cases.len(),
                report.failures()
            ))));
        }
        Some(report)
    } else {
        None
    };
    finish(ws, loaded, fixtures).await
}

async fn finish(
    ws: &Workspace,
    loaded: LoadedPlugin,
    fixtures: Option<crate::plugin_test::TestReport>,
) -> Result<InstallReport> {
    registry::register(&ws.store, &loaded.manifest, &loaded.manifest_path).await?;
    let out = report(ws, &loaded, fixtures, false).await?;
    ws.audit(&[AuditEntry::global(
        "plugin-installed",
        json!({ "plugin": out.plugin, "digest": out.digest, "imports": out.imports, "diff": out.diff }),
    )])
    .await?;
    Ok(out)
}

async fn report(
    ws: &Workspace,
    loaded: &LoadedPlugin,
    fixtures: Option<crate::plugin_test::TestReport>,
    already: bool,
) -> Result<InstallReport> {
    let state = ws.slot_state().await?;
    let current = match state.active(loaded.manifest.kind) {
        Some(active) if active != loaded.manifest.key() => ws
            .manifest_for(loaded.manifest.kind, active)
            .ok()
            .and_then(|p| Manifest::load(&p).ok()),
        _ => None,
    };
    Ok(InstallReport {
        plugin: loaded.manifest.key(),
        kind: loaded.manifest.kind,
        manifest: loaded.manifest_path.clone(),
        digest: loaded.manifest.sha256.clone(),
        imports: loaded.imports.clone(),
        compile_ms: if loaded.from_cache {
            0.0
        } else {
            loaded.compile_ms
        },
        bound: loaded.bound,
        files: loaded.files.clone(),
        fixtures,
        diff: registry::capability_diff(current.as_ref(), &loaded.manifest),
        already_installed: already,
    })
}

/// One installed plugin version, as `deskhost plugin list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PluginListing {
    /// Plugin id.
    pub id: String,
    /// Version.
    pub version: String,
    /// Slot kind.
    pub kind: PolicyKind,
    /// The slot's active version.
    pub active: bool,
    /// The slot's shadow.
    pub shadow: bool,
    /// Component sha256 from the manifest.
    pub digest: String,
    /// Whether the component file still has that digest.
    pub digest_ok: bool,
    /// Grants.
    pub grants: crate::manifest::Grants,
    /// Limits.
    pub limits: crate::manifest::Limits,
    /// The manifest.
    pub manifest: PathBuf,
}

/// Every installed plugin version with its grants and limits, and the manifests that do not
/// read (as readable problems).
pub async fn list(ws: &Workspace) -> Result<(Vec<PluginListing>, Vec<String>)> {
    let state = ws.slot_state().await?;
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for path in crate::workspace::find_manifests(&ws.dir.join("plugins"))? {
        let m = match Manifest::load(&path) {
            Ok(m) => m,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let digest_ok = match m.resolve(&path, crate::manifest::FileKey::Component) {
            Ok(Some(component)) => std::fs::read(&component)
                .map(|b| crate::util::sha256_hex(&b) == m.sha256)
                .unwrap_or(false),
            _ => false,
        };
        rows.push(PluginListing {
            active: state.active(m.kind) == Some(m.key().as_str()),
            shadow: state.shadow.get(&m.kind) == Some(&m.key()),
            id: m.id,
            version: m.version,
            kind: m.kind,
            digest: m.sha256,
            digest_ok,
            grants: m.grants,
            limits: m.limits,
            manifest: path,
        });
    }
    Ok((rows, problems))
}

/// A slot change that happened.
#[derive(Clone, Debug, Serialize)]
pub struct SlotChange {
    /// The slot.
    pub slot: PolicyKind,
    /// Active (or shadow) before.
    pub from: Option<String>,
    /// After.
    pub to: Option<String>,
    /// The event's seq.
    pub seq: i64,
}

/// Finds and validates the installed version `key` (`id@version`).
fn load_key(ws: &Workspace, runtime: &Runtime, key: &str) -> Result<LoadedPlugin> {
    let (id, version) = crate::manifest::parse_plugin_key(key).map_err(LifecycleError::Refused)?;
    let path = ws.plugin_dir(id, version).join(MANIFEST_FILE);
    if !path.exists() {
        return Err(LifecycleError::Refused(format!(
            "{key} is not installed ({} does not exist); run `deskhost plugin install` first",
            path.display()
        )));
    }
    let kind = Manifest::load(&path).map_err(WorkspaceError::from)?.kind;
    Ok(runtime.load_plugin(&path, kind, &ws.config.ceiling)?)
}

async fn change(
    ws: &Workspace,
    slot: PolicyKind,
    action: SlotAction,
    plugin: Option<&str>,
    from: Option<String>,
) -> Result<SlotChange> {
    let seq = registry::record(&ws.store, slot, action, plugin).await?;
    let state = ws.slot_state().await?;
    let to = match action {
        SlotAction::Promote | SlotAction::Rollback => state.active(slot).map(str::to_string),
        SlotAction::Shadow | SlotAction::Unshadow => state.shadow.get(&slot).cloned(),
    };
    let out = SlotChange {
        slot,
        from,
        to,
        seq,
    };
    ws.audit(&[AuditEntry::global(
        &format!("slot-{}", format!("{action:?}").to_lowercase()),
        json!(out),
    )])
    .await?;
    Ok(out)
}

/// Makes the installed version `key` the active one of its slot.
pub async fn promote(ws: &Workspace, runtime: &Runtime, key: &str) -> Result<SlotChange> {
    let loaded = load_key(ws, runtime, key)?;
    registry::register(&ws.store, &loaded.manifest, &loaded.manifest_path).await?;
    let slot = loaded.manifest.kind;
    let from = ws.slot_state().await?.active(slot).map(str::to_string);
    if from.as_deref() == Some(key) {
        return Err(LifecycleError::Refused(format!(
            "{key} is already the active {slot} plugin"
        )));
    }
    change(ws, slot, SlotAction::Promote, Some(key), from).await
}

/// Returns `slot` to the version active before the current one.
pub async fn rollback(ws: &Workspace, slot: PolicyKind) -> Result<SlotChange> {
    let state = ws.slot_state().await?;
    if state.history.get(&slot).is_none_or(Vec::is_empty) {
        return Err(LifecycleError::Refused(format!(
            "the {slot} slot has no earlier version to roll back to (it runs the one deskhost.toml names)"
        )));
    }
    change(
        ws,
        slot,
        SlotAction::Rollback,
        None,
        state.active(slot).map(str::to_string),
    )
    .await
}

/// Runs the installed version `key` as a shadow of its slot.
pub async fn shadow(ws: &Workspace, runtime: &Runtime, key: &str) -> Result<SlotChange> {
    let loaded = load_key(ws, runtime, key)?;
    registry::register(&ws.store, &loaded.manifest, &loaded.manifest_path).await?;
    let slot = loaded.manifest.kind;
    let state = ws.slot_state().await?;
    if state.active(slot) == Some(key) {
        return Err(LifecycleError::Refused(format!(
            "{key} is the active {slot} plugin; a shadow must be another version"
        )));
    }
    change(
        ws,
        slot,
        SlotAction::Shadow,
        Some(key),
        state.shadow.get(&slot).cloned(),
    )
    .await
}

/// Stops shadowing `slot`.
pub async fn unshadow(ws: &Workspace, slot: PolicyKind) -> Result<SlotChange> {
    let state = ws.slot_state().await?;
    let Some(current) = state.shadow.get(&slot).cloned() else {
        return Err(LifecycleError::Refused(format!(
            "the {slot} slot has no shadow"
        )));
    };
    change(ws, slot, SlotAction::Unshadow, None, Some(current)).await
}

/// The decision fields of a recorded proposal (its stored JSON) that a diff compares; a
/// proposal that does not decode is an error (a corrupt row), not an empty diff.
pub fn decision_fields(
    slot: PolicyKind,
    stored: &str,
) -> std::result::Result<BTreeMap<String, String>, serde_json::Error> {
    let mut out = BTreeMap::new();
    match slot {
        PolicyKind::Triage => {
            let t: TriageProposal = serde_json::from_str(stored)?;
            for (f, v) in [
                ("category", t.category.value),
                ("queue", t.queue.value),
                ("priority", t.priority.value.as_str().to_string()),
                ("language", t.language.value),
                ("sentiment", t.sentiment.value.as_str().to_string()),
            ] {
                out.insert(f.to_string(), v);
            }
            out.insert(
                "escalate".into(),
                t.escalate.map_or_else(|| "none".into(), |e| e.code),
            );
            for (k, v) in t.fields {
                out.insert(k, v.value);
            }
        }
        PolicyKind::Reply => {
            let (kind, mut cited) = match serde_json::from_str::<ReplyProposal>(stored)? {
                ReplyProposal::Draft(d) => (
                    "draft",
                    d.citations.into_iter().map(|c| c.article_id).collect(),
                ),
                ReplyProposal::Abstain(_) => ("abstain", Vec::new()),
            };
            cited.sort();
            cited.dedup();
            out.insert("reply".into(), kind.into());
            out.insert("articles".into(), cited.join(","));
        }
        PolicyKind::Escalation => {
            let e: EscalationPacket = serde_json::from_str(stored)?;
            out.insert(
                "severity".into(),
                serde_json::to_value(e.severity)?
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
            out.insert("recommended_queue".into(), e.recommended_queue);
        }
    }
    Ok(out)
}

/// Agreement of one field.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Agreement {
    /// Runs where both decided the field the same.
    pub same: usize,
    /// Runs compared.
    pub total: usize,
    /// same / total.
    pub rate: f64,
}

/// Latency and faults of one side.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SideStats {
    /// Runs.
    pub runs: usize,
    /// Median wall time, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// Share of runs that faulted.
    pub fault_rate: f64,
}

/// A ticket the two versions decided differently.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ShadowDisagreement {
    /// Run.
    pub run_id: String,
    /// Ticket.
    pub ticket_id: String,
    /// Field.
    pub field: String,
    /// The active plugin's value.
    pub incumbent: String,
    /// The shadow's value.
    pub candidate: String,
}

/// What `deskhost plugin diff` reports.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ShadowDiff {
    /// Slot.
    pub slot: PolicyKind,
    /// The shadow plugin.
    pub candidate: String,
    /// Active plugins it ran beside.
    pub incumbents: Vec<String>,
    /// Per field.
    pub fields: BTreeMap<String, Agreement>,
    /// Where they differ (at most 500).
    pub disagreements: Vec<ShadowDisagreement>,
    /// The active plugin's latency and faults on the same runs.
    pub incumbent_stats: SideStats,
    /// The shadow's.
    pub candidate_stats: SideStats,
}

fn side(stats: &[(f64, bool)]) -> SideStats {
    let ms: Vec<f64> = stats.iter().map(|s| s.0).collect();
    SideStats {
        runs: stats.len(),
        p50_ms: percentile(&ms, 0.5),
        p95_ms: percentile(&ms, 0.95),
        fault_rate: if stats.is_empty() {
            0.0
        } else {
            stats.iter().filter(|s| s.1).count() as f64 / stats.len() as f64
        },
    }
}

/// Compares the shadow `candidate` (default: the slot's current shadow) with the active
/// plugin on every run it shadowed.
pub async fn diff(ws: &Workspace, slot: PolicyKind, candidate: Option<&str>) -> Result<ShadowDiff> {
    let candidate = match candidate {
        Some(c) => c.to_string(),
        None => ws.slot_state().await?.shadow.get(&slot).cloned().ok_or_else(|| {
            LifecycleError::Refused(format!("the {slot} slot has no shadow; name the candidate (id@version) to compare its past shadow runs"))
        })?,
    };
    let rows = ws.store.shadow_pairs(slot.as_str(), &candidate).await?;
    let mut fields: BTreeMap<String, Agreement> = BTreeMap::new();
    let mut disagreements = Vec::new();
    let mut incumbents: Vec<String> = Vec::new();
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    let wall_ms = |s: &str| {
        serde_json::from_str::<Value>(s)
            .ok()
            .and_then(|v| v["wall_us"].as_f64())
            .unwrap_or(0.0)
            / 1000.0
    };
    for r in rows {
        let run_id = r.run_id;
        let ticket_id = r.ticket_id;
        if !incumbents.contains(&r.incumbent) {
            incumbents.push(r.incumbent);
        }
        theirs.push((wall_ms(&r.candidate_stats), r.candidate_outcome != "ok"));
        mine.push((wall_ms(&r.incumbent_stats), r.incumbent_outcome != "ok"));
        let (Some(a), Some(b)) = (r.incumbent_proposal, r.candidate_proposal) else {
            continue;
        };
        let corrupt = |e: serde_json::Error| crate::store::StoreError::Corrupt {
            what: format!("the {slot} proposals of run {run_id}"),
            detail: e.to_string(),
        };
        let fa = decision_fields(slot, &a).map_err(corrupt)?;
        let fb = decision_fields(slot, &b).map_err(corrupt)?;
        for (field, value) in &fa {
            let other = fb.get(field).cloned().unwrap_or_else(|| "none".into());
            let entry = fields.entry(field.clone()).or_default();
            entry.total += 1;
            if *value == other {
                entry.same += 1;
            } else if disagreements.len() < 500 {
                disagreements.push(ShadowDisagreement {
                    run_id: run_id.clone(),
                    ticket_id: ticket_id.clone(),
                    field: field.clone(),
                    incumbent: value.clone(),
                    candidate: other,
                });
            }
        }
    }
    for a in fields.values_mut() {
        a.rate = if a.total == 0 {
            1.0
        } else {
            a.same as f64 / a.total as f64
        };
    }
    Ok(ShadowDiff {
        slot,
        candidate,
        incumbents,
        fields,
        disagreements,
        incumbent_stats: side(&mine),
        candidate_stats: side(&theirs),
    })
}

/// What a running process watches of one plugin: its directory's files, with modification
/// time and size.
type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

fn fingerprint(manifest: &Path) -> Fingerprint {
    let mut out = Vec::new();
    let Some(Ok(entries)) = manifest.parent().map(std::fs::read_dir) else {
        return out;
    };
    for e in entries.flatten() {
        if let Ok(meta) = e.metadata()
            && meta.is_file()
        {
            out.push((e.path(), meta.modified().ok(), meta.len()));
        }
    }
    out.sort();
    out
}

fn fingerprints(pipeline: &Pipeline) -> BTreeMap<PathBuf, Fingerprint> {
    let active = pipeline.active();
    active
        .iter()
        .map(|(_, p)| p)
        .chain(active.shadow.values())
        .map(|p| (p.manifest_path.clone(), fingerprint(&p.manifest_path)))
        .collect()
}

/// Keeps `pipeline` on the workspace's current plugins: polls the slot event log and the
/// loaded plugins' directories every `every`, loads what changed (compile cache first; the
/// unchanged plugins are kept as they are) and swaps atomically. Runs in flight finish on
/// the plugins they started with. A version that fails to load is reported and the current
/// one keeps serving.
pub fn watch(ws: Workspace, pipeline: Pipeline, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen_seq = pipeline.active().seq;
        let mut seen_files = fingerprints(&pipeline);
        loop {
            tokio::time::sleep(every).await;
            let seq = match registry::latest_seq(&ws.store).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("plugin watcher: {e}");
                    continue;
                }
            };
            let files: BTreeMap<PathBuf, Fingerprint> = seen_files
                .keys()
                .map(|m| (m.clone(), fingerprint(m)))
                .collect();
            let stale: BTreeSet<PathBuf> = files
                .iter()
                .filter(|(m, fp)| seen_files.get(*m) != Some(fp))
                .map(|(m, _)| m.clone())
                .collect();
            if seq == seen_seq && stale.is_empty() {
                continue;
            }
            seen_seq = seq;
            seen_files = files;
            let state = match ws.slot_state().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("plugin watcher: {e}");
                    continue;
                }
            };
            let (ws2, runtime, current) = (ws.clone(), pipeline.runtime.clone(), pipeline.active());
            let started = std::time::Instant::now();
            let loaded = tokio::task::spawn_blocking(move || {
                ws2.reload_state(&runtime, &state, Some(&current), &stale)
            })
            .await;
            match loaded {
                Ok(Ok(plugins)) => {
                    let keys: Vec<String> = plugins.iter().map(|(_, p)| p.identity.key()).collect();
                    pipeline.swap(plugins);
                    seen_files = fingerprints(&pipeline);
                    tracing::info!(
                        seq,
                        plugins = ?keys,
                        load_ms = started.elapsed().as_secs_f64() * 1e3,
                        "swapped plugins"
                    );
                }
                Ok(Err(e)) => tracing::error!("keeping the current plugins: {e}"),
                Err(e) => tracing::error!("keeping the current plugins: loader failed: {e}"),
            }
        }
    })
}
