//! Loading a plugin: manifest, digest, world and grant checks, config binding, cached
//! compilation, and a linker holding only what the plugin is granted.

use super::Runtime;
use super::bind::{BindError, bind};
use crate::bindings::{config, crm, escalation, helpdesk, kb, log, reply, triage, types};
use crate::caps::{HostState, PluginIdentity};
use crate::manifest::{
    CapabilityName, FileKey, Grants, Manifest, ManifestError, ManifestFiles, PolicyKind,
    WIT_VERSION,
};
use crate::util::{sha256_hex, sha256_parts};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wasmparser::{Parser, Payload};
use wasmtime::component::{Component, HasSelf, Linker};

fn read_hint(path: &Path) -> &'static str {
    if path.extension().is_some_and(|e| e == "dhm") {
        "; `deskhost train` writes the model, or set data_optional = true in the manifest to run on the plugin's fallbacks"
    } else {
        "; the manifest names a file the plugin directory does not have"
    }
}

/// Largest component file accepted (interpreted-language components are ~20 MB).
const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// Reads at most `max` bytes of `path`, refusing larger files before reading them (the
/// size is checked again on the bytes read, in case the file grows meanwhile).
fn read_bounded(path: &Path, max: u64) -> std::io::Result<Result<Vec<u8>, u64>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Ok(Err(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Ok(Err(bytes.len() as u64));
    }
    Ok(Ok(bytes))
}

/// A file a plugin's manifest names, as loaded: what the install report shows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PluginFile {
    /// `component`, `config` or `data`.
    pub key: FileKey,
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its sha256 (hex).
    pub sha256: String,
}

/// Why a plugin could not be loaded. Every message names the plugin and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The manifest is unreadable or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A file named by the manifest could not be read.
    #[error("plugin {plugin}: cannot read {path}: {source}{}", read_hint(path))]
    Read {
        /// `id@version`.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The component is not the one the manifest was written for.
    #[error(
        "plugin {plugin}: {path} has sha256 {actual}, but its manifest {manifest} says {expected}; the file changed after it was installed: reinstall the plugin"
    )]
    Digest {
        /// `id@version`.
        plugin: String,
        /// Component file.
        path: PathBuf,
        /// Manifest file.
        manifest: PathBuf,
        /// Digest in the manifest.
        expected: String,
        /// Digest of the file.
        actual: String,
    },
    /// Not a component.
    #[error(
        "plugin {plugin}: {path} is not a WebAssembly component ({detail}); build plugins with `cargo build --target wasm32-wasip2`"
    )]
    NotAComponent {
        /// `id@version`.
        plugin: String,
        /// Component file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The component imports a capability its manifest does not grant.
    #[error(
        "plugin {plugin} imports capability `{import}` but its manifest {manifest} does not grant it; add\n{hint}\nto {manifest}, or rebuild the plugin without that import"
    )]
    Ungranted {
        /// `id@version`.
        plugin: String,
        /// The import.
        import: String,
        /// Manifest file.
        manifest: PathBuf,
        /// The manifest lines that would grant it.
        hint: String,
    },
    /// The component imports something this host does not provide.
    #[error(
        "plugin {plugin} imports `{import}`, which this host does not provide (it provides deskhost:plugin/*@{WIT_VERSION} and wasi:*); rebuild the plugin against wit/ of this release"
    )]
    UnknownImport {
        /// `id@version`.
        plugin: String,
        /// The import.
        import: String,
    },
    /// The component does not export its kind's function.
    #[error(
        "plugin {plugin} is a {kind} plugin but does not export `{export}` (it exports: {found}); build it for the deskhost:plugin/{kind}-policy world"
    )]
    WrongWorld {
        /// `id@version`.
        plugin: String,
        /// Kind from the manifest.
        kind: PolicyKind,
        /// Expected export.
        export: &'static str,
        /// What it exports.
        found: String,
    },
    /// The manifest asks for more than the operator allows.
    #[error(
        "plugin {plugin} asks for {items} beyond the operator's [ceiling] in deskhost.toml; remove them from {manifest} or ask the operator to allow them"
    )]
    BeyondCeiling {
        /// `id@version`.
        plugin: String,
        /// What exceeds the ceiling.
        items: String,
        /// Manifest file.
        manifest: PathBuf,
    },
    /// Compilation or linking failed.
    #[error("plugin {plugin}: {message}")]
    Wasm {
        /// `id@version`.
        plugin: String,
        /// Detail.
        message: String,
    },
    /// A file named by the manifest is over the operator's size ceiling.
    #[error(
        "plugin {plugin}: {key} file {path} is {bytes} bytes; the ceiling is {limit} bytes ([runtime] {setting} in deskhost.toml); shrink the file or raise the ceiling"
    )]
    TooLarge {
        /// `id@version`.
        plugin: String,
        /// Which file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The ceiling.
        limit: u64,
        /// The config key that sets it.
        setting: &'static str,
    },
    /// The data file is missing or empty and the manifest does not allow that.
    #[error(
        "plugin {plugin}: its data file {path} is empty; `deskhost train` writes the model, or set data_optional = true in {manifest} to run on the plugin's fallbacks"
    )]
    EmptyData {
        /// `id@version`.
        plugin: String,
        /// The data file.
        path: PathBuf,
        /// The manifest.
        manifest: PathBuf,
    },
    /// The data file is a deskhost model that fails its checks (fault class `bad-model`).
    #[error("bad-model: plugin {plugin}: {path}: {detail}")]
    BadModel {
        /// `id@version`.
        plugin: String,
        /// The model file.
        path: PathBuf,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The plugin is configured for a slot of another kind.
    #[error(
        "plugin {plugin} is a {actual} plugin, but the workspace puts it in the {slot} slot; fix [slots] in deskhost.toml"
    )]
    WrongSlot {
        /// `id@version`.
        plugin: String,
        /// Its kind.
        actual: PolicyKind,
        /// The slot.
        slot: PolicyKind,
    },
}

/// The typed, pre-linked instance factory of a plugin.
pub enum PolicyPre {
    /// A triage policy.
    Triage(triage::TriagePolicyPre<HostState>),
    /// A reply policy.
    Reply(reply::ReplyPolicyPre<HostState>),
    /// An escalation policy.
    Escalation(escalation::EscalationPolicyPre<HostState>),
}

/// A plugin ready to be invoked.
pub struct LoadedPlugin {
    /// Identity, grants, limits, config.
    pub identity: Arc<PluginIdentity>,
    /// The manifest.
    pub manifest: Manifest,
    /// Where the manifest is.
    pub manifest_path: PathBuf,
    /// Instance factory.
    pub pre: PolicyPre,
    /// Memory limit in bytes, bound config included.
    pub memory_limit_bytes: usize,
    /// Whether settings/data were bound into memory (else served by `config`).
    pub bound: bool,
    /// The component's imports.
    pub imports: Vec<String>,
    /// Loaded from the compile cache.
    pub from_cache: bool,
    /// Time to compile or deserialize, milliseconds.
    pub compile_ms: f64,
    /// Size of the component file, bytes.
    pub component_bytes: u64,
    /// What one instance takes from the pool, in instances ([`super::pool_share`]).
    pub pool_share: u32,
    /// The component, settings and data files with their sizes and digests.
    pub files: Vec<PluginFile>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("plugin", &self.identity.key())
            .field("bound", &self.bound)
            .finish()
    }
}

struct Surface {
    imports: Vec<String>,
    exports: Vec<String>,
}

fn surface(bytes: &[u8]) -> Result<Surface, String> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
        match &payload {
            Payload::Version { encoding, .. }
                if depth == 0 && *encoding != wasmparser::Encoding::Component =>
            {
                return Err("it is a core module".into());
            }
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader.clone() {
                    let import = import.map_err(|e| e.to_string())?;
                    // `use types.{ticket, ..}` in a world imports type names at the top
                    // level; they carry no capability.
                    if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader.clone() {
                    exports.push(export.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            _ => {}
        }
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(Surface { imports, exports })
}

/// Refuses data a plugin cannot run on: empty (unless the manifest allows it) or a
/// deskhost model whose layout or sha256 digest does not hold.
fn check_data(
    key: &str,
    manifest_path: &Path,
    manifest: &Manifest,
    path: &Path,
    data: &[u8],
) -> Result<(), LoadError> {
    if data.is_empty() {
        if manifest.data_optional {
            return Ok(());
        }
        return Err(LoadError::EmptyData {
            plugin: key.to_string(),
            path: path.to_path_buf(),
            manifest: manifest_path.to_path_buf(),
        });
    }
    let looks_like_model = data.starts_with(&deskhost_nlp::model::MAGIC[..7])
        || path.extension().is_some_and(|e| e == "dhm");
    if looks_like_model {
        let bad = |e: deskhost_nlp::ModelError| LoadError::BadModel {
            plugin: key.to_string(),
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        deskhost_nlp::Model::parse(data)
            .map_err(bad)?
            .verify_digest()
            .map_err(bad)?;
    }
    Ok(())
}

impl Runtime {
    /// Loads the plugin whose manifest is at `manifest_path`, for the `slot` slot, within the
    /// operator's `ceiling`.
    pub fn load_plugin(
        &self,
        manifest_path: &Path,
        slot: PolicyKind,
        ceiling: &Grants,
    ) -> Result<LoadedPlugin, LoadError> {
        let manifest = Manifest::load(manifest_path)?;
        let key = manifest.key();
        if manifest.kind != slot {
            return Err(LoadError::WrongSlot {
                plugin: key,
                actual: manifest.kind,
                slot,
            });
        }
        let mut files = Vec::new();
        // Reads a file the manifest names: confined to the plugin directory, bounded.
        let mut read = |file: FileKey, limit: u64, setting: &'static str| {
            let Some(path) = manifest.resolve(manifest_path, file)? else {
                return Ok(None);
            };
            let bytes = match read_bounded(&path, limit) {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(bytes)) => {
                    return Err(LoadError::TooLarge {
                        plugin: key.clone(),
                        key: file.as_str(),
                        path,
                        bytes,
                        limit,
                        setting,
                    });
                }
                Err(source)
                    if file == FileKey::Data
                        && manifest.data_optional
                        && source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Vec::new()
                }
                Err(source) => {
                    return Err(LoadError::Read {
                        plugin: key.clone(),
                        path,
                        source,
                    });
                }
            };
            files.push(PluginFile {
                key: file,
                path: path.clone(),
                bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
            });
            Ok(Some((path, bytes)))
        };
        let (component_path, bytes) = read(
            FileKey::Component,
            MAX_COMPONENT_BYTES,
            "(component files: 256 MiB)",
        )?
        .ok_or_else(|| LoadError::Wasm {
            plugin: key.clone(),
            message: "the manifest names no component".into(),
        })?;
        let settings = read(
            FileKey::Config,
            self.blob_limits.settings_bytes,
            "max_settings_kib",
        )?;
        let data = read(FileKey::Data, self.blob_limits.data_bytes, "max_data_mib")?;
        let digest = sha256_hex(&bytes);
        if !digest.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(LoadError::Digest {
                plugin: key,
                path: component_path,
                manifest: manifest_path.to_path_buf(),
                expected: manifest.sha256.clone(),
                actual: digest,
            });
        }
        if let Some((path, data)) = &data {
            check_data(&key, manifest_path, &manifest, path, data)?;
        }
        let settings: Arc<[u8]> = settings.map_or_else(|| Arc::from(Vec::new()), |(_, b)| b.into());
        let data: Arc<[u8]> = data.map_or_else(|| Arc::from(Vec::new()), |(_, b)| b.into());
        let Surface { imports, exports } =
            surface(&bytes).map_err(|detail| LoadError::NotAComponent {
                plugin: key.clone(),
                path: component_path.clone(),
                detail,
            })?;

        let beyond = manifest.grants.beyond(ceiling);
        if !beyond.is_empty() {
            return Err(LoadError::BeyondCeiling {
                plugin: key,
                items: beyond.join(", "),
                manifest: manifest_path.to_path_buf(),
            });
        }
        let grants = manifest.grants.clone();
        let mut linked = Vec::new();
        let types_import = format!("deskhost:plugin/types@{WIT_VERSION}");
        let mut needs_types = false;
        for import in &imports {
            if import.starts_with("wasi:") {
                continue;
            }
            // The shared types interface has no functions: nothing to grant.
            if *import == types_import {
                needs_types = true;
                continue;
            }
            let capability = match CapabilityName::from_import(import) {
                Some(c) if import.ends_with(&format!("@{WIT_VERSION}")) => c,
                _ => {
                    return Err(LoadError::UnknownImport {
                        plugin: key,
                        import: import.clone(),
                    });
                }
            };
            if !grants.has(capability) {
                return Err(LoadError::Ungranted {
                    plugin: key,
                    import: import.clone(),
                    manifest: manifest_path.to_path_buf(),
                    hint: capability.grant_hint().to_string(),
                });
            }
            linked.push(capability);
        }
        let export = manifest.kind.export_name();
        if !exports.iter().any(|e| e == export) {
            return Err(LoadError::WrongWorld {
                plugin: key,
                kind: manifest.kind,
                export,
                found: exports.join(", "),
            });
        }

        let config_digest = sha256_parts(&[&settings, &data]);
        let wasm_err = |message: String| LoadError::Wasm {
            plugin: key.clone(),
            message,
        };

        let (runnable, bound, bound_bytes) = match bind(&bytes, &settings, &data) {
            Ok(Some(b)) => (b.component, true, b.added_bytes),
            Ok(None) => (bytes.clone(), false, 0),
            Err(BindError::Malformed(m)) => {
                return Err(wasm_err(format!("malformed component: {m}")));
            }
            Err(e) => {
                tracing::warn!(plugin = %key, "serving config through the config capability: {e}");
                (bytes.clone(), false, 0)
            }
        };
        let started = Instant::now();
        let (component, from_cache) = self
            .compile_cached(&runnable)
            .map_err(|e| wasm_err(format!("cannot compile: {e}")))?;
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;

        let mut linker: Linker<HostState> = Linker::new(&self.engine);
        let link = |r: wasmtime::Result<()>| r.map_err(|e| wasm_err(format!("cannot link: {e}")));
        link(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
        if needs_types {
            link(types::add_to_linker::<HostState, HasSelf<HostState>>(
                &mut linker,
                |s| s,
            ))?;
        }
        for capability in &linked {
            link(match capability {
                CapabilityName::Helpdesk => {
                    helpdesk::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                }
                CapabilityName::Kb => {
                    kb::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                }
                CapabilityName::Crm => {
                    crm::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                }
                CapabilityName::Log => {
                    log::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                }
                CapabilityName::Config => {
                    config::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
                }
            })?;
        }
        // A component that imports modules does not say what it needs: one share.
        let pool_share = component
            .resources_required()
            .map_or(1, |r| super::pool_share(r.num_memories, r.num_tables));
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| wasm_err(format!("cannot link: {e}")))?;
        let world = |e: wasmtime::Error| {
            wasm_err(format!(
                "does not match the deskhost:plugin/{}-policy world: {e}",
                manifest.kind
            ))
        };
        let pre = match manifest.kind {
            PolicyKind::Triage => {
                PolicyPre::Triage(triage::TriagePolicyPre::new(instance_pre).map_err(world)?)
            }
            PolicyKind::Reply => {
                PolicyPre::Reply(reply::ReplyPolicyPre::new(instance_pre).map_err(world)?)
            }
            PolicyKind::Escalation => PolicyPre::Escalation(
                escalation::EscalationPolicyPre::new(instance_pre).map_err(world)?,
            ),
        };

        let memory_limit_bytes =
            manifest.limits.memory_mib as usize * 1024 * 1024 + bound_bytes as usize;
        let identity = Arc::new(PluginIdentity {
            id: manifest.id.clone(),
            version: manifest.version.clone(),
            kind: manifest.kind,
            digest,
            config_digest,
            grants,
            limits: manifest.limits.clone(),
            settings,
            data,
        });
        Ok(LoadedPlugin {
            identity,
            manifest_path: manifest_path.to_path_buf(),
            manifest,
            pre,
            memory_limit_bytes,
            bound,
            imports,
            from_cache,
            compile_ms,
            component_bytes: bytes.len() as u64,
            pool_share,
            files,
        })
    }

    /// Compiles `bytes`, or loads the result of an earlier compile of the same bytes under
    /// the same engine settings from the cache directory.
    fn compile_cached(&self, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let mut hasher = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let file = format!(
            "{}-{:016x}-deskhost{}.cwasm",
            sha256_hex(bytes),
            hasher.finish(),
            env!("CARGO_PKG_VERSION")
        );
        let path = self.cache_dir.join(file);
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of this host into the
            // workspace's own cache directory, and its name carries the engine's
            // compatibility hash. Whoever can write there can also replace the host binary.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => tracing::warn!(
                    "ignoring unusable compile cache entry {}: {e}",
                    path.display()
                ),
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        if std::fs::create_dir_all(&self.cache_dir).is_ok() {
            let serialized = component.serialize()?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, &serialized).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        Ok((component, false))
    }
}
