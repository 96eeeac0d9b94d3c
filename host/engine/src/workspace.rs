//! A workspace directory: `deskhost.toml`, the SQLite store, the KB index, the compile
//! cache and installed plugins.
//!
//! ```text
//! deskhost.toml
//! deskhost.db                       store (tickets, runs, review items, audit)
//! index/kb/                         tantivy index, rebuilt from the store when stale
//! cache/                            compiled components (.cwasm)
//! plugins/<id>/<version>/plugin.toml, component, settings, data
//! ```

use crate::audit::AuditEntry;
use crate::audit::checkpoint::{self, Checkpointer};
use crate::caps::Services;
use crate::config::{CONFIG_FILE, ConfigError, WorkspaceConfig};
use crate::db::{Location, Migrations};
use crate::kb::{KbError, KbIndex};
use crate::manifest::{MANIFEST_FILE, PolicyKind};
use crate::pipeline::{ActivePlugins, Pipeline};
use crate::registry::{self, SlotState};
use crate::runtime::{LoadError, LoadedPlugin, Runtime};
use crate::store::{Store, StoreError};
use crate::util::sha256_hex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable that points every command at a PostgreSQL store.
pub const DATABASE_URL_ENV: &str = "DESKHOST_DATABASE_URL";

/// Workspace errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// Config problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// KB problem.
    #[error(transparent)]
    Kb(#[from] KbError),
    /// Plugin problem.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Manifest problem.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// The engine could not start.
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
    /// A slot names a plugin that is not installed.
    #[error("[slots] {slot} = \"{value}\" in {config}: {problem}")]
    Slot {
        /// The slot.
        slot: PolicyKind,
        /// Its value.
        value: String,
        /// The config file.
        config: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `init` refused.
    #[error("{0}")]
    Init(String),
    /// Audit write failed.
    #[error("audit: {0}")]
    Audit(String),
    /// The audit signing key or a checkpoint is unusable.
    #[error(transparent)]
    Checkpoint(#[from] crate::audit::checkpoint::CheckpointError),
}

type Result<T> = std::result::Result<T, WorkspaceError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `meta` key holding the article-set version of the last KB rebuild (cleared by every
/// article write, see `Store::upsert_article`).
const KB_INDEX_VERSION: &str = deskhost_store::store::KB_INDEX_VERSION;

/// An open workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Its directory.
    pub dir: PathBuf,
    /// `deskhost.toml`.
    pub config: Arc<WorkspaceConfig>,
    /// sha256 of `deskhost.toml`.
    pub config_hash: String,
    /// The store.
    pub store: Store,
}

impl Workspace {
    /// Opens the workspace in `dir` (its store must have this binary's schema, or none yet).
    pub async fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, Migrations::CreateOnly).await
    }

    /// Where the workspace's store lives: `DESKHOST_DATABASE_URL`, else `[store] url`, else
    /// `deskhost.db` in the workspace.
    pub fn store_location(dir: &Path, config: &WorkspaceConfig) -> Location {
        match std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(url) => Location::Url(url),
            None => match &config.store.url {
                Some(url) => Location::Url(url.clone()),
                None => Location::File(dir.join("deskhost.db")),
            },
        }
    }

    /// Opens the workspace in `dir`, upgrading its store's schema with
    /// [`Migrations::Apply`].
    pub async fn open_with(dir: &Path, migrations: Migrations) -> Result<Self> {
        let dir = &std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read(&config_path).map_err(|source| ConfigError::Read {
            path: config_path.clone(),
            source,
        })?;
        let config = WorkspaceConfig::parse(&String::from_utf8_lossy(&text), &config_path)?;
        let location = Self::store_location(dir, &config);
        let mut store = Store::connect(&location, config.store.max_connections, migrations).await?;
        if let Some(key) = &config.audit.signing_key {
            let key = checkpoint::read_key(&dir.join(key))?;
            store = store.with_checkpoints(Checkpointer::new(
                key,
                config.audit.checkpoint_every_records,
                config.audit.checkpoint_every_minutes,
                config.audit.checkpoint_log.as_ref().map(|p| dir.join(p)),
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config: Arc::new(config),
            config_hash: sha256_hex(&text),
            store,
        })
    }

    /// Path of the config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// The KB index, rebuilt from the store if stale.
    pub async fn kb(&self) -> Result<KbIndex> {
        let dir = self.dir.join("index").join("kb");
        // The version recorded at the last rebuild still holds unless an article was
        // written since (every article write clears it): then no article need be read.
        let recorded = self.store.meta(KB_INDEX_VERSION).await?;
        if let Some(kb) = recorded.and_then(|v| KbIndex::open_current(&dir, &v)) {
            return Ok(kb);
        }
        let articles = self.store.articles().await?;
        let (kb, rebuilt) = KbIndex::open_or_rebuild(&dir, articles)?;
        if rebuilt {
            tracing::info!(
                version = kb.version(),
                articles = kb.len(),
                "rebuilt the knowledge-base index"
            );
        }
        self.store.set_meta(KB_INDEX_VERSION, kb.version()).await?;
        Ok(kb)
    }

    /// Rebuilds the KB index from the store.
    pub async fn reindex(&self) -> Result<KbIndex> {
        let kb = KbIndex::build(
            &self.dir.join("index").join("kb"),
            self.store.articles().await?,
        )?;
        self.store.set_meta(KB_INDEX_VERSION, kb.version()).await?;
        Ok(kb)
    }

    /// A runtime using this workspace's compile cache (`DESKHOST_CACHE_DIR` shares one
    /// between workspaces; entries are keyed by component digest and engine settings).
    pub fn runtime(&self) -> Result<Runtime> {
        let cache = std::env::var_os("DESKHOST_CACHE_DIR")
            .map_or_else(|| self.dir.join("cache"), PathBuf::from);
        Runtime::new(&self.config.runtime, &cache)
            .map_err(|e| WorkspaceError::Engine(e.to_string()))
    }

    /// Where version `version` of plugin `id` is installed: `plugins/<id>/<version>/`.
    pub fn plugin_dir(&self, id: &str, version: &str) -> PathBuf {
        self.dir.join("plugins").join(id).join(version)
    }

    /// The manifest path a slot value (`id@version`) points to.
    pub fn manifest_for(&self, slot: PolicyKind, value: &str) -> Result<PathBuf> {
        let slot_err = |problem: String| WorkspaceError::Slot {
            slot,
            value: value.to_string(),
            config: self.config_path(),
            problem,
        };
        let (id, version) = crate::manifest::parse_plugin_key(value).map_err(slot_err)?;
        let path = self.plugin_dir(id, version).join(MANIFEST_FILE);
        // The plugin directory itself may be a link; what it holds must still be the
        // workspace's own plugins/ tree.
        if let (Ok(real), Ok(root)) = (
            std::fs::canonicalize(&path),
            std::fs::canonicalize(self.dir.join("plugins")),
        ) && !real.starts_with(&root)
        {
            return Err(slot_err(format!(
                "{} resolves to {}, outside the workspace's plugins/ directory; install the plugin with `deskhost plugin install`",
                path.display(),
                real.display()
            )));
        }
        if !path.exists() {
            return Err(slot_err(format!(
                "{} does not exist; install the plugin or fix the slot",
                path.display()
            )));
        }
        Ok(path)
    }

    /// The slots' state: deskhost.toml's `[slots]` plus promotions, rollbacks and shadows.
    pub async fn slot_state(&self) -> Result<SlotState> {
        Ok(registry::slot_state(&self.store, &self.config).await?)
    }

    /// Loads the plugins `state` names (active ones and shadows).
    pub fn load_state(&self, runtime: &Runtime, state: &SlotState) -> Result<ActivePlugins> {
        self.reload_state(runtime, state, None, &BTreeSet::new())
    }

    /// Like [`Workspace::load_state`], but keeps the plugins of `current` whose version is
    /// still wanted and whose manifest is not in `stale` (no compile, no bind: a promote
    /// loads only what it changes).
    pub fn reload_state(
        &self,
        runtime: &Runtime,
        state: &SlotState,
        current: Option<&ActivePlugins>,
        stale: &BTreeSet<PathBuf>,
    ) -> Result<ActivePlugins> {
        let reusable: Vec<&Arc<LoadedPlugin>> = current
            .map(|c| c.iter().map(|(_, p)| p).chain(c.shadow.values()).collect())
            .unwrap_or_default();
        let load = |kind: PolicyKind, value: &str| -> Result<Arc<LoadedPlugin>> {
            let path = self.manifest_for(kind, value)?;
            if let Some(p) = reusable.iter().find(|p| {
                p.identity.kind == kind && p.manifest_path == path && !stale.contains(&path)
            }) {
                return Ok(Arc::clone(p));
            }
            Ok(Arc::new(runtime.load_plugin(
                &path,
                kind,
                &self.config.ceiling,
            )?))
        };
        let triage = state
            .active(PolicyKind::Triage)
            .unwrap_or(&self.config.slots.triage);
        let mut shadow = BTreeMap::new();
        for (slot, key) in &state.shadow {
            shadow.insert(*slot, load(*slot, key)?);
        }
        Ok(ActivePlugins {
            triage: load(PolicyKind::Triage, triage)?,
            reply: state
                .active(PolicyKind::Reply)
                .map(|v| load(PolicyKind::Reply, v))
                .transpose()?,
            escalation: state
                .active(PolicyKind::Escalation)
                .map(|v| load(PolicyKind::Escalation, v))
                .transpose()?,
            shadow,
            seq: state.seq,
        })
    }

    /// Loads the active plugins of every slot (and the shadows).
    pub async fn load_plugins(&self, runtime: &Runtime) -> Result<ActivePlugins> {
        let state = self.slot_state().await?;
        self.load_state(runtime, &state)
    }

    /// Everything needed to decide tickets.
    pub async fn pipeline(&self) -> Result<Pipeline> {
        let kb = self.kb().await?;
        let runtime = Arc::new(self.runtime()?);
        let plugins = self.load_plugins(&runtime).await?;
        let services = Arc::new(Services {
            store: self.store.clone(),
            kb,
        });
        Ok(Pipeline::new(
            runtime,
            services,
            self.config.clone(),
            self.config_hash.clone(),
            plugins,
        ))
    }

    /// Appends records outside any run (imports, training).
    pub async fn audit(&self, entries: &[AuditEntry]) -> Result<()> {
        Ok(self.store.append_audit(entries).await?)
    }

    /// The public key checkpoints must verify with: `[audit] public_key`, else the signing
    /// key's; `None` when neither is configured.
    pub fn audit_public_key(&self) -> Result<Option<ed25519_dalek::VerifyingKey>> {
        if let Some(text) = &self.config.audit.public_key {
            return Ok(Some(checkpoint::parse_public_key(text)?));
        }
        Ok(self.store.checkpointer().map(Checkpointer::public_key))
    }
}

/// What `init` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InitReport {
    /// The new workspace.
    pub dir: PathBuf,
    /// Plugins installed: (manifest path, component sha256).
    pub plugins: Vec<(PathBuf, String)>,
    /// Where its store is (a PostgreSQL URL with the password masked, or the SQLite file).
    pub store: String,
    /// The store is a server database other workspaces may share: `init` neither empties it
    /// nor creates it (`--force` replaces the directory, not the database).
    pub shared_store: bool,
}

/// Creates a workspace in `target` from the template directory `template`, installing each
/// template plugin's component from `components` (a directory of built `.wasm` files).
pub fn init(target: &Path, template: &Path, components: &Path, force: bool) -> Result<InitReport> {
    if !template.join(CONFIG_FILE).exists() {
        return Err(WorkspaceError::Init(format!(
            "{} has no {CONFIG_FILE}; pass --from with a workspace template such as examples/workspace",
            template.display()
        )));
    }
    if target.exists()
        && std::fs::read_dir(target)
            .map_err(io(target))?
            .next()
            .is_some()
    {
        if !force {
            return Err(WorkspaceError::Init(format!(
                "{} exists and is not empty; choose another directory or pass --force to replace it",
                target.display()
            )));
        }
        std::fs::remove_dir_all(target).map_err(io(target))?;
    }
    copy_dir(template, target)?;
    let mut plugins = Vec::new();
    for manifest in find_manifests(&target.join("plugins"))? {
        let text = std::fs::read_to_string(&manifest).map_err(io(&manifest))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            WorkspaceError::Init(format!(
                "template manifest {} is not TOML: {e}",
                manifest.display()
            ))
        })?;
        let Some(component) = table.get("component").and_then(|v| v.as_str()) else {
            return Err(WorkspaceError::Init(format!(
                "template manifest {} has no component",
                manifest.display()
            )));
        };
        let dir = manifest.parent().unwrap_or(target);
        let installed = dir.join(component);
        if !installed.exists() {
            let built = components.join(component);
            std::fs::copy(&built, &installed).map_err(|e| {
                WorkspaceError::Init(format!(
                    "cannot install {}: {e}; build the plugins first (cargo build --profile plugin --target wasm32-wasip2) or pass --plugins DIR",
                    built.display()
                ))
            })?;
        }
        let digest = sha256_hex(&std::fs::read(&installed).map_err(io(&installed))?);
        let filled: String = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("sha256") {
                    format!("sha256 = \"{digest}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&manifest, filled + "\n").map_err(io(&manifest))?;
        plugins.push((manifest, digest));
    }
    let config_path = target.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let config = WorkspaceConfig::parse(&text, &config_path)?;
    let location = Workspace::store_location(target, &config);
    Ok(InitReport {
        dir: target.to_path_buf(),
        plugins,
        store: location.to_string(),
        shared_store: matches!(location, Location::Url(_)),
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Every `plugin.toml` under `dir` (two levels: `<id>/<version>/`).
pub fn find_manifests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for id in std::fs::read_dir(dir).map_err(io(dir))? {
        let id = id.map_err(io(dir))?.path();
        if !id.is_dir() {
            continue;
        }
        for version in std::fs::read_dir(&id).map_err(io(&id))? {
            let manifest = version.map_err(io(&id))?.path().join(MANIFEST_FILE);
            if manifest.exists() {
                out.push(manifest);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// An audit record for an import: the file and what the import did.
pub fn import_record(
    kind: &str,
    file: &Path,
    counts: &impl serde::Serialize,
) -> std::result::Result<AuditEntry, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Import<'a, C> {
        file: String,
        counts: &'a C,
    }
    let payload = serde_json::to_value(Import {
        file: file.display().to_string(),
        counts,
    })?;
    Ok(AuditEntry::global(kind, payload))
}
