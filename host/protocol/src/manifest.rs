//! The plugin manifest, `plugin.toml`: identity, component, configuration, grants and limits.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.1.0";
/// The manifest file name.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// Errors reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read plugin manifest {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML or not the schema.
    #[error("plugin manifest {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
    /// A value is wrong.
    #[error("plugin manifest {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What and how to fix it.
        message: String,
    },
    /// A file the manifest names is outside the plugin's own directory.
    #[error(transparent)]
    PathEscape(Box<PathEscape>),
}

/// A file a manifest names that is not inside the manifest's own directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "plugin manifest {path}:{line}: {key} = \"{value}\" {problem}; every file a manifest names must be inside its own directory ({dir}): copy the file there and name it relative to plugin.toml"
)]
pub struct PathEscape {
    /// The manifest.
    pub path: PathBuf,
    /// Line of the key.
    pub line: usize,
    /// `component`, `config` or `data`.
    pub key: &'static str,
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
    /// The plugin directory.
    pub dir: PathBuf,
}

/// Checks a plugin id: 1 to 64 lowercase letters, digits and `-`, starting with a letter
/// or digit (ids become directory names).
pub fn check_plugin_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "id \"{}\" must be 1 to 64 lowercase letters, digits and '-', e.g. triage-default",
            crate::sanitize::field(id)
        ))
    }
}

/// Checks a plugin version: `MAJOR.MINOR.PATCH` in decimal digits.
pub fn check_plugin_version(version: &str) -> Result<(), String> {
    let parts: Vec<&str> = version.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "version \"{}\" must be MAJOR.MINOR.PATCH, e.g. 0.1.0",
            crate::sanitize::field(version)
        ))
    }
}

/// Splits and checks a plugin key `id@version` (as `[slots]`, `promote` and `shadow` take
/// it): nothing in it can name a path outside `plugins/<id>/<version>/`.
pub fn parse_plugin_key(key: &str) -> Result<(&str, &str), String> {
    let (id, version) = key.split_once('@').ok_or_else(|| {
        format!(
            "\"{}\" is not id@version, e.g. triage-default@0.1.0 (see `deskhost plugin list`)",
            crate::sanitize::field(key)
        )
    })?;
    check_plugin_id(id)?;
    check_plugin_version(version)?;
    Ok((id, version))
}

/// Which policy slot a plugin fills (and so which WIT world it must export).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// `triage-policy`.
    Triage,
    /// `reply-policy`.
    Reply,
    /// `escalation-policy`.
    Escalation,
}

impl PolicyKind {
    /// All kinds, in pipeline order.
    pub const ALL: [PolicyKind; 3] = [
        PolicyKind::Triage,
        PolicyKind::Reply,
        PolicyKind::Escalation,
    ];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Triage => "triage",
            PolicyKind::Reply => "reply",
            PolicyKind::Escalation => "escalation",
        }
    }

    /// The export this kind's world requires.
    pub fn export_name(self) -> &'static str {
        match self {
            PolicyKind::Triage => "triage",
            PolicyKind::Reply => "reply",
            PolicyKind::Escalation => "escalate",
        }
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown slot `{s}`: use triage, reply or escalation"))
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A capability interface of the WIT package.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum CapabilityName {
    /// `deskhost:plugin/helpdesk`.
    Helpdesk,
    /// `deskhost:plugin/kb`.
    Kb,
    /// `deskhost:plugin/crm`.
    Crm,
    /// `deskhost:plugin/log` (always granted).
    Log,
    /// `deskhost:plugin/config` (always granted).
    Config,
}

impl CapabilityName {
    /// All capabilities.
    pub const ALL: [CapabilityName; 5] = [
        CapabilityName::Helpdesk,
        CapabilityName::Kb,
        CapabilityName::Crm,
        CapabilityName::Log,
        CapabilityName::Config,
    ];

    /// Interface name in WIT.
    pub fn as_str(self) -> &'static str {
        match self {
            CapabilityName::Helpdesk => "helpdesk",
            CapabilityName::Kb => "kb",
            CapabilityName::Crm => "crm",
            CapabilityName::Log => "log",
            CapabilityName::Config => "config",
        }
    }

    /// The fully qualified import name, e.g. `deskhost:plugin/crm@0.1.0`.
    pub fn import_name(self) -> String {
        format!("deskhost:plugin/{}@{WIT_VERSION}", self.as_str())
    }

    /// The capability of a component import name (any version of the package).
    pub fn from_import(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("deskhost:plugin/")?;
        let iface = rest.split('@').next()?;
        Self::ALL.into_iter().find(|c| c.as_str() == iface)
    }

    /// Whether every plugin gets this capability without a grant.
    pub fn always_granted(self) -> bool {
        matches!(self, CapabilityName::Log | CapabilityName::Config)
    }

    /// The manifest lines that grant it.
    pub fn grant_hint(self) -> &'static str {
        match self {
            CapabilityName::Helpdesk => "[grants.helpdesk]",
            CapabilityName::Kb => "[grants.kb]\ncollections = [\"public\"]",
            CapabilityName::Crm => "[grants.crm]\nfields = [\"tier\"]",
            CapabilityName::Log | CapabilityName::Config => "(always granted)",
        }
    }
}

impl fmt::Display for CapabilityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ticket fields a plugin may see besides id, version, subject and body.
pub const TICKET_FIELDS: &[&str] = &[
    "channel",
    "language",
    "customer_id",
    "requester",
    "tags",
    "messages",
    "created_at",
];
/// CRM fields a plugin may see besides id.
pub const CRM_FIELDS: &[&str] = &[
    "name",
    "email",
    "tier",
    "plan",
    "region",
    "language",
    "lifetime_value_cents",
    "open_incidents",
    "account_status",
    "notes",
];

/// `[grants]` (also the shape of the operator's `[ceiling]`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Help-desk reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helpdesk: Option<HelpdeskGrant>,
    /// Knowledge-base reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kb: Option<KbGrant>,
    /// CRM reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm: Option<CrmGrant>,
    /// Ticket fields visible in the plugin's input.
    #[serde(default)]
    pub ticket: TicketGrant,
}

/// `[grants.helpdesk]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HelpdeskGrant {
    /// Calls per invocation at most (besides the global host-call limit).
    #[serde(default)]
    pub max_calls: Option<u32>,
}

/// `[grants.kb]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KbGrant {
    /// Collections the plugin may search and read.
    #[serde(default)]
    pub collections: Vec<String>,
    /// Calls per invocation at most.
    #[serde(default)]
    pub max_calls: Option<u32>,
}

/// `[grants.crm]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CrmGrant {
    /// Customer fields visible; the rest arrive as `none`.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Calls per invocation at most.
    #[serde(default)]
    pub max_calls: Option<u32>,
}

/// `[grants.ticket]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TicketGrant {
    /// Optional ticket fields visible; the rest arrive as `none`.
    #[serde(default)]
    pub fields: Vec<String>,
}

impl Grants {
    /// Whether `capability` is granted.
    pub fn has(&self, capability: CapabilityName) -> bool {
        match capability {
            CapabilityName::Helpdesk => self.helpdesk.is_some(),
            CapabilityName::Kb => self.kb.is_some(),
            CapabilityName::Crm => self.crm.is_some(),
            CapabilityName::Log | CapabilityName::Config => true,
        }
    }

    /// The per-capability call cap, if any.
    pub fn max_calls(&self, capability: CapabilityName) -> Option<u32> {
        match capability {
            CapabilityName::Helpdesk => self.helpdesk.as_ref().and_then(|g| g.max_calls),
            CapabilityName::Kb => self.kb.as_ref().and_then(|g| g.max_calls),
            CapabilityName::Crm => self.crm.as_ref().and_then(|g| g.max_calls),
            CapabilityName::Log | CapabilityName::Config => None,
        }
    }

    /// Whether the ticket field `name` is granted.
    pub fn ticket_field(&self, name: &str) -> bool {
        self.ticket.fields.iter().any(|f| f == name)
    }

    /// Whether the CRM field `name` is granted.
    pub fn crm_field(&self, name: &str) -> bool {
        self.crm
            .as_ref()
            .is_some_and(|g| g.fields.iter().any(|f| f == name))
    }

    /// Whether the KB collection is granted.
    pub fn kb_collection(&self, name: &str) -> bool {
        self.kb
            .as_ref()
            .is_some_and(|g| g.collections.iter().any(|c| c == name))
    }

    /// Everything in `self` that `ceiling` does not allow, as readable items
    /// (`crm`, `crm.fields.email`, `ticket.fields.requester`, `kb.collections.internal`).
    pub fn beyond(&self, ceiling: &Grants) -> Vec<String> {
        let mut out = Vec::new();
        for cap in [
            CapabilityName::Helpdesk,
            CapabilityName::Kb,
            CapabilityName::Crm,
        ] {
            if self.has(cap) && !ceiling.has(cap) {
                out.push(cap.as_str().to_string());
            }
        }
        if let (Some(g), Some(_)) = (&self.crm, &ceiling.crm) {
            out.extend(
                g.fields
                    .iter()
                    .filter(|f| !ceiling.crm_field(f))
                    .map(|f| format!("crm.fields.{f}")),
            );
        }
        if let (Some(g), Some(_)) = (&self.kb, &ceiling.kb) {
            out.extend(
                g.collections
                    .iter()
                    .filter(|c| !ceiling.kb_collection(c))
                    .map(|c| format!("kb.collections.{c}")),
            );
        }
        out.extend(
            self.ticket
                .fields
                .iter()
                .filter(|f| !ceiling.ticket_field(f))
                .map(|f| format!("ticket.fields.{f}")),
        );
        out
    }
}

/// `[limits]`. Defaults suit the default Rust plugins with headroom.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel (roughly wasm instructions) per call, when the workspace meters fuel.
    pub fuel: u64,
    /// Wall-clock deadline per call, milliseconds.
    pub wall_ms: u64,
    /// Linear memory, MiB (the bound settings and data come on top).
    pub memory_mib: u32,
    /// Host calls per call.
    pub host_calls: u32,
    /// Size of the returned proposal, KiB (as JSON).
    pub output_kib: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 500_000_000,
            wall_ms: 1_000,
            memory_mib: 64,
            host_calls: 32,
            output_kib: 64,
        }
    }
}

/// `rollout`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rollout {
    /// Decides tickets.
    #[default]
    Active,
    /// Runs beside the active plugin; its proposals are stored, never applied.
    Shadow,
}

/// `plugin.toml`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugin id (lowercase letters, digits, `-`).
    pub id: String,
    /// Version (`MAJOR.MINOR.PATCH`).
    pub version: String,
    /// Policy slot.
    pub kind: PolicyKind,
    /// WIT package version the component was built against.
    pub wit: String,
    /// Component file, relative to the manifest.
    pub component: PathBuf,
    /// sha256 of the component file (hex).
    pub sha256: String,
    /// Settings document (JSON), relative to the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// Binary data (e.g. a model), relative to the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// One line for humans.
    #[serde(default)]
    pub description: String,
    /// Active or shadow.
    #[serde(default)]
    pub rollout: Rollout,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Capabilities and fields granted.
    #[serde(default)]
    pub grants: Grants,
    /// Run without `data` when the file is missing or empty (the plugin's own fallbacks);
    /// without this, a missing or empty data file refuses the plugin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_optional: bool,
    /// Where each file key is written, for errors that name the line.
    #[serde(skip)]
    lines: FileKeyLines,
}

/// The line of each file key in the manifest text (1-based; 0 when unknown).
#[derive(Clone, Debug, Default, PartialEq)]
struct FileKeyLines {
    component: usize,
    config: usize,
    data: usize,
}

/// The file keys with their positions (a second, lenient pass over the same text).
#[derive(Deserialize)]
struct FileKeySpans {
    component: Option<toml::Spanned<toml::Value>>,
    config: Option<toml::Spanned<toml::Value>>,
    data: Option<toml::Spanned<toml::Value>>,
}

/// A file a manifest names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKey {
    /// `component`: the Wasm component.
    Component,
    /// `config`: the settings document.
    Config,
    /// `data`: binary data such as a model.
    Data,
}

impl FileKey {
    /// The manifest key.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKey::Component => "component",
            FileKey::Config => "config",
            FileKey::Data => "data",
        }
    }
}

impl Manifest {
    /// Parses and checks `text` (named `path` in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Ok(spans) = toml::from_str::<FileKeySpans>(text) {
            let line = |s: Option<toml::Spanned<toml::Value>>| {
                s.map_or(0, |s| {
                    text.get(..s.span().start)
                        .map_or(0, |t| t.matches('\n').count() + 1)
                })
            };
            manifest.lines = FileKeyLines {
                component: line(spans.component),
                config: line(spans.config),
                data: line(spans.data),
            };
        }
        manifest.check(path)?;
        Ok(manifest)
    }

    /// The relative path the manifest gives for `key`, if any.
    pub fn file(&self, key: FileKey) -> Option<&Path> {
        match key {
            FileKey::Component => Some(&self.component),
            FileKey::Config => self.config.as_deref(),
            FileKey::Data => self.data.as_deref(),
        }
    }

    /// The line of `key` in the manifest's text (1-based; 0 when unknown), for errors.
    pub fn key_line(&self, key: FileKey) -> usize {
        match key {
            FileKey::Component => self.lines.component,
            FileKey::Config => self.lines.config,
            FileKey::Data => self.lines.data,
        }
    }

    fn check(&self, path: &Path) -> Result<(), ManifestError> {
        let invalid = |message: String| {
            Err(ManifestError::Invalid {
                path: path.to_path_buf(),
                message,
            })
        };
        check_plugin_id(&self.id).or_else(invalid)?;
        check_plugin_version(&self.version).or_else(invalid)?;
        if self.wit != WIT_VERSION {
            return invalid(format!(
                "wit = \"{}\" but this host implements deskhost:plugin@{WIT_VERSION}; rebuild the plugin against wit/ of this release",
                self.wit
            ));
        }
        if self.sha256.len() != 64 || !self.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return invalid("sha256 must be the 64-hex-digit digest of the component (deskhost init/plugin install fill it in)".into());
        }
        for f in &self.grants.ticket.fields {
            if !TICKET_FIELDS.contains(&f.as_str()) {
                return invalid(format!(
                    "[grants.ticket] unknown field \"{f}\"; known: {}",
                    TICKET_FIELDS.join(", ")
                ));
            }
        }
        if let Some(kb) = &self.grants.kb {
            for c in &kb.collections {
                crate::records::check_collection(c)
                    .or_else(|e| invalid(format!("[grants.kb] {e}")))?;
            }
        }
        if let Some(crm) = &self.grants.crm {
            for f in &crm.fields {
                if !CRM_FIELDS.contains(&f.as_str()) {
                    return invalid(format!(
                        "[grants.crm] unknown field \"{f}\"; known: {}",
                        CRM_FIELDS.join(", ")
                    ));
                }
            }
        }
        let l = &self.limits;
        if l.wall_ms == 0 || l.memory_mib == 0 || l.output_kib == 0 || l.fuel == 0 {
            return invalid(
                "[limits] fuel, wall_ms, memory_mib and output_kib must be above 0".into(),
            );
        }
        Ok(())
    }

    /// `id@version`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> String {
        format!(
            "id = \"triage-x\"\nversion = \"1.2.3\"\nkind = \"triage\"\nwit = \"0.1.0\"\ncomponent = \"c.wasm\"\nsha256 = \"{}\"\n{extra}",
            "ab".repeat(32)
        )
    }

    #[test]
    fn parses_grants_and_defaults() {
        let text = manifest(
            "[grants.crm]\nfields = [\"tier\"]\n[grants.ticket]\nfields = [\"customer_id\"]\n",
        );
        let Ok(m) = Manifest::parse(&text, Path::new("p/plugin.toml")) else {
            panic!("parses")
        };
        assert_eq!(m.key(), "triage-x@1.2.3");
        assert!(m.grants.has(CapabilityName::Crm) && !m.grants.has(CapabilityName::Kb));
        assert!(m.grants.crm_field("tier") && !m.grants.crm_field("email"));
        assert_eq!(m.limits, Limits::default());
    }

    #[test]
    fn unknown_fields_and_bad_versions_are_named() {
        let Err(e) = Manifest::parse(
            &manifest("[grants.crm]\nfields = [\"ssn\"]\n"),
            Path::new("p/plugin.toml"),
        ) else {
            panic!("must fail")
        };
        assert!(
            e.to_string().contains("\"ssn\"") && e.to_string().contains("p/plugin.toml"),
            "{e}"
        );
        let text = manifest("").replace("0.1.0", "9.9.9");
        let Err(e) = Manifest::parse(&text, Path::new("p/plugin.toml")) else {
            panic!("must fail")
        };
        assert!(e.to_string().contains("deskhost:plugin@0.1.0"), "{e}");
    }

    #[test]
    fn beyond_lists_what_the_ceiling_does_not_allow() {
        let ceiling = Grants {
            crm: Some(CrmGrant {
                fields: vec!["tier".into()],
                max_calls: None,
            }),
            ticket: TicketGrant {
                fields: vec!["customer_id".into()],
            },
            ..Grants::default()
        };
        let wanted = Grants {
            crm: Some(CrmGrant {
                fields: vec!["tier".into(), "email".into()],
                max_calls: None,
            }),
            kb: Some(KbGrant::default()),
            ticket: TicketGrant {
                fields: vec!["customer_id".into(), "requester".into()],
            },
            ..Grants::default()
        };
        assert_eq!(
            wanted.beyond(&ceiling),
            vec!["kb", "crm.fields.email", "ticket.fields.requester"]
        );
    }

    #[test]
    fn import_names_map_to_capabilities() {
        assert_eq!(
            CapabilityName::from_import("deskhost:plugin/crm@0.1.0"),
            Some(CapabilityName::Crm)
        );
        assert_eq!(CapabilityName::from_import("wasi:cli/stderr@0.2.0"), None);
        assert_eq!(CapabilityName::Kb.import_name(), "deskhost:plugin/kb@0.1.0");
    }
}
