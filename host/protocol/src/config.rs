//! The workspace configuration, `deskhost.toml`: taxonomy, active plugins per slot, the gate,
//! the operator's grant ceiling and runtime settings.

use crate::manifest::{CapabilityName, Grants};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors reading `deskhost.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}; run `deskhost init DIR` to create a workspace")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema.
    #[error("{path} is not a valid workspace config: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (line, column, key).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// `deskhost.toml`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// Name and description.
    pub workspace: WorkspaceInfo,
    /// Values the triage decision may take.
    #[serde(default)]
    pub taxonomy: Taxonomy,
    /// The active plugin of each policy slot, as `id@version`.
    pub slots: Slots,
    /// Which stages run.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// What may be applied without a human.
    #[serde(default)]
    pub gate: GateConfig,
    /// The most any plugin may be granted.
    #[serde(default)]
    pub ceiling: Grants,
    /// Engine and pool settings.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Signed checkpoints of the audit chain.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Where decisions are stored.
    #[serde(default)]
    pub store: StoreConfig,
    /// Help desks tickets come from and decisions go back to, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connectors: BTreeMap<String, ConnectorConfig>,
}

/// `[connectors.NAME]`: a help desk deskhost reads tickets from and writes decisions back to.
///
/// Credentials never appear in this file: `secret_env` names an environment variable or
/// `secret_file` a file holding the password (Request Tracker) or API token (Zendesk).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// `rt` (Request Tracker 5, REST2) or `zendesk`.
    pub kind: ConnectorKind,
    /// The help desk's base URL (`https://rt.example.com`, `https://ACME.zendesk.com`).
    pub base_url: String,
    /// The user deskhost acts as (RT user name; Zendesk agent email).
    pub user: String,
    /// Environment variable holding the password or API token.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the password or API token (first line).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// What deskhost may write back: any of `category`, `queue`, `priority`, `language`,
    /// `tags`, `internal_note`, `reply`, `assessment` (sentiment and confidence). The rest is
    /// skipped (and shown as skipped). deskhost
    /// never changes a ticket's status: closing is the help desk's.
    #[serde(default = "all_write_back")]
    pub write_back: Vec<String>,
    /// Help-desk queues whose tickets are taken in (empty: all).
    #[serde(default)]
    pub intake_queues: Vec<String>,
    /// deskhost queue → help-desk queue name (RT), or group id (Zendesk), where they differ.
    #[serde(default)]
    pub queue_map: BTreeMap<String, String>,
    /// Seconds between polls for new and changed tickets.
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: u64,
    /// Attempts before an outbox item is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Longest a help-desk request may take, seconds. An attempt cut short by a crash is
    /// checked for (and not re-sent if it landed) only after this has passed.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Deliveries under way at once, each to a different ticket (a ticket's own items go
    /// out one after another, in order).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Environment variable holding the webhook signing secret (Zendesk).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// Zendesk: the ids of the ticket fields deskhost writes (`category`, `language`,
    /// `sentiment`, `confidence`).
    #[serde(default)]
    pub field_ids: BTreeMap<String, u64>,
}

/// The kinds of help desk deskhost connects to.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    /// Request Tracker 5 through its REST2 API.
    Rt,
    /// Zendesk Support through its REST API.
    Zendesk,
}

impl ConnectorKind {
    /// `rt` or `zendesk`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Rt => "rt",
            ConnectorKind::Zendesk => "zendesk",
        }
    }
}

fn all_write_back() -> Vec<String> {
    crate::outbox::KINDS.iter().map(|k| k.to_string()).collect()
}

fn default_concurrency() -> u32 {
    4
}

fn default_poll_seconds() -> u64 {
    30
}

fn default_max_attempts() -> u32 {
    8
}

fn default_request_timeout() -> u64 {
    30
}

impl ConnectorConfig {
    /// Checks what needs no I/O: the name, the URL, the write-back kinds.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(format!(
                "[connectors.{name}]: a connector name is lowercase letters, digits, `-` and `_` (it prefixes ticket ids: NAME:ID)"
            ));
        }
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err(format!(
                "[connectors.{name}] base_url {:?} must start with https:// (or http:// on a trusted network)",
                self.base_url
            ));
        }
        for kind in &self.write_back {
            if !crate::outbox::KINDS.contains(&kind.as_str()) {
                return Err(format!(
                    "[connectors.{name}] write_back {kind:?} is not one of {}",
                    crate::outbox::KINDS.join(", ")
                ));
            }
        }
        if !(1..=32).contains(&self.concurrency) {
            return Err(format!(
                "[connectors.{name}] concurrency = {} is out of range; use 1 to 32 deliveries at once",
                self.concurrency
            ));
        }
        if self.secret_env.is_none() && self.secret_file.is_none() {
            return Err(format!(
                "[connectors.{name}] needs secret_env (an environment variable) or secret_file holding the password or token"
            ));
        }
        Ok(())
    }
}

/// `[store]`: the embedded SQLite file (default) or a PostgreSQL database shared by workers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`; unset: `deskhost.db` in the workspace.
    /// The environment variable `DESKHOST_DATABASE_URL` overrides it (keep the password
    /// there rather than in this file).
    pub url: Option<String>,
    /// Connections per process.
    pub max_connections: u32,
    /// How long a worker's claim on a ticket version lasts; a crashed worker's claims are
    /// taken over after this.
    pub lease_seconds: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
            lease_seconds: 60,
        }
    }
}

/// `[audit]`: signed checkpoints anchor the audit chain outside the database.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The ed25519 signing key (`deskhost audit keygen PATH` writes one). Relative to the
    /// workspace; the one path deskhost.toml may point outside it, on purpose: a key kept
    /// beside the database anchors nothing against whoever can write the database.
    pub signing_key: Option<PathBuf>,
    /// The public key checkpoints must verify with (`ed25519:<hex>`); default: the signing
    /// key's. Set it where only verification happens.
    pub public_key: Option<String>,
    /// Sign a checkpoint when this many records were appended since the last (0: never).
    pub checkpoint_every_records: u64,
    /// ... or when this many minutes passed since the last and records were appended (0:
    /// never).
    pub checkpoint_every_minutes: u64,
    /// Also append every checkpoint to this file (JSON Lines), e.g. on another volume.
    pub checkpoint_log: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            public_key: None,
            checkpoint_every_records: 1000,
            checkpoint_every_minutes: 60,
            checkpoint_log: None,
        }
    }
}

/// `[workspace]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceInfo {
    /// Display name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// `[taxonomy]`: known values. Empty lists accept any value.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Taxonomy {
    /// Categories (intents).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Queues.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Extra fields and their values, e.g. `type = ["incident", "request"]`.
    #[serde(default)]
    pub fields: BTreeMap<String, Vec<String>>,
}

/// `[slots]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slots {
    /// The triage policy (required).
    pub triage: String,
    /// The reply policy.
    #[serde(default)]
    pub reply: Option<String>,
    /// The escalation policy.
    #[serde(default)]
    pub escalation: Option<String>,
}

/// `[pipeline]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Tickets decided concurrently (0 = [`WorkspaceConfig::concurrency`] picks).
    pub concurrency: usize,
    /// Categories the reply policy is not asked about (a human writes those).
    pub no_reply_categories: Vec<String>,
}

/// Effects the gate may apply without a human.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    /// Set the ticket's category.
    Category,
    /// Route to a queue.
    Queue,
    /// Set the priority.
    Priority,
    /// Set the language.
    Language,
    /// Add tags.
    Tags,
    /// Add an internal note (the triage rationale or the escalation packet).
    InternalNote,
}

/// `[gate]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Effects that may be applied without review when their field clears its threshold.
    pub auto_apply: Vec<EffectKind>,
    /// Minimum confidence per field (`category`, `queue`, `priority`, `language`); a field
    /// without a threshold never auto-applies.
    pub thresholds: BTreeMap<String, f32>,
    /// Rules that force review regardless of confidence.
    pub risk: RiskRules,
}

/// `[gate.risk]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RiskRules {
    /// Categories a human always reviews.
    pub always_review_categories: Vec<String>,
    /// CRM tiers a human always reviews.
    pub review_customer_tiers: Vec<String>,
    /// Negative sentiment at this priority or above goes to review (`none` = off).
    pub negative_sentiment_min_priority: Option<String>,
    /// Escalated tickets go to review (default true).
    pub review_escalations: bool,
}

impl Default for RiskRules {
    fn default() -> Self {
        Self {
            always_review_categories: Vec::new(),
            review_customer_tiers: Vec::new(),
            negative_sentiment_min_priority: Some("high".into()),
            review_escalations: true,
        }
    }
}

/// `[runtime]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Meter fuel (a deterministic instruction budget per call). Costs ~40% speed; the
    /// wall-clock deadline is always on.
    pub fuel_metering: bool,
    /// Instances that may exist at once in the pool (invocations beyond it wait for one).
    pub pool_instances: u32,
    /// Largest linear memory any plugin may reach, MiB (per-plugin limits are lower).
    pub max_memory_mib: u32,
    /// Largest settings document (manifest `config`) a plugin may have, KiB.
    pub max_settings_kib: u32,
    /// Largest data file (manifest `data`, e.g. a model) a plugin may have, MiB.
    pub max_data_mib: u32,
    /// Reset an instance's memory by scanning for the pages its slot has written (Linux 6.7+
    /// `PAGEMAP_SCAN`) instead of copying back the whole kept-resident region. Used when the
    /// kernel has it; `false` turns it off.
    pub pagemap_scan: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            fuel_metering: true,
            pool_instances: 128,
            max_memory_mib: 512,
            max_settings_kib: 1024,
            max_data_mib: 64,
            pagemap_scan: true,
        }
    }
}

/// The fields `[gate.thresholds]` may name.
pub const THRESHOLD_FIELDS: &[&str] = &["category", "queue", "priority", "language"];

/// The known name closest to `word` (at most two edits away), for "did you mean".
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cost = usize::from(ca != *cb);
                let next = (row[j] + 1).min(row[j + 1] + 1).min(prev + cost);
                prev = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    }
    known
        .iter()
        .map(|k| (distance(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Where keys are written, for errors that name the line (a lenient second pass).
#[derive(Deserialize, Default)]
struct KeySpans {
    #[serde(default)]
    slots: BTreeMap<String, toml::Spanned<toml::Value>>,
    #[serde(default)]
    gate: GateSpans,
}

#[derive(Deserialize, Default)]
struct GateSpans {
    #[serde(default)]
    thresholds: BTreeMap<String, toml::Spanned<toml::Value>>,
}

impl KeySpans {
    fn line(&self, text: &str, table: &str, key: &str) -> usize {
        let span = match table {
            "slots" => self.slots.get(key),
            "gate.thresholds" => self.gate.thresholds.get(key),
            _ => None,
        };
        span.and_then(|s| text.get(..s.span().start))
            .map_or(0, |t| t.matches('\n').count() + 1)
    }
}

/// The file name of the workspace config.
pub const CONFIG_FILE: &str = "deskhost.toml";

impl WorkspaceConfig {
    /// Tickets decided at once by a worker (`serve`'s, `work`): `[pipeline] concurrency`,
    /// or else 32 per CPU, at most half the instance pool. Decisions wait on the store far
    /// more than they compute (a decided ticket keeps its place until its commit is on
    /// disk), and the committer writes whatever is queued in one transaction, so many in
    /// flight make few, large commits. (`run`, banking77 dev, 2 CPUs: 64 in flight decided
    /// 8-15 % more per second than 32, for ~12 MB more memory.) A worker claims this many
    /// per round, so more here makes `serve` slower to answer (measured in
    /// `examples/bench/README.md`).
    pub fn concurrency(&self) -> usize {
        if self.pipeline.concurrency > 0 {
            return self.pipeline.concurrency;
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = usize::try_from(self.runtime.pool_instances / 2).unwrap_or(usize::MAX);
        (32 * cpus).min(pool).max(1)
    }

    /// Tickets `run` keeps in flight: `[pipeline] concurrency`, or else 8 per pooled
    /// instance (1,024 with the default pool). A ticket holds an instance only while a
    /// plugin runs (the runtime makes the rest wait for one), and most of its time in
    /// flight is spent waiting for its commit, so a batch fills both the plugins and the
    /// committer only with many more in flight than instances. (banking77 train, 2 CPUs,
    /// three interleaved rounds: 64 / 256 / 1,024 / 4,096 in flight decided 4,630-5,200 /
    /// 4,900-5,300 / 5,620-6,070 / 5,260-5,480 per second; peak PSS 81 / 94 / 113 MB at
    /// 64 / 256 / 1,024.)
    pub fn batch_concurrency(&self) -> usize {
        if self.pipeline.concurrency > 0 {
            return self.pipeline.concurrency;
        }
        usize::try_from(self.runtime.pool_instances)
            .unwrap_or(usize::MAX)
            .saturating_mul(8)
            .max(1)
    }

    /// Parses and checks `text` (named `path` in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: WorkspaceConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let spans: KeySpans = toml::from_str(text).unwrap_or_default();
        config.check(path, &|table, key| spans.line(text, table, key))?;
        Ok(config)
    }

    fn check(&self, path: &Path, line: &dyn Fn(&str, &str) -> usize) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        // An error at the line of `table.key` (`deskhost.toml:12: ...`).
        let at = |table: &str, key: &str, message: String| ConfigError::Invalid {
            path: PathBuf::from(format!("{}:{}", path.display(), line(table, key))),
            message,
        };
        for (slot, value) in [
            ("triage", Some(&self.slots.triage)),
            ("reply", self.slots.reply.as_ref()),
            ("escalation", self.slots.escalation.as_ref()),
        ] {
            if let Some(value) = value {
                crate::manifest::parse_plugin_key(value)
                    .map_err(|e| at("slots", slot, format!("[slots] {slot}: {e}")))?;
            }
        }
        for (name, connector) in &self.connectors {
            connector
                .check(name)
                .map_err(|m| at(&format!("connectors.{name}"), "base_url", m))?;
        }
        for field in self.gate.thresholds.keys() {
            if !THRESHOLD_FIELDS.contains(&field.as_str()) {
                let hint = closest(field, THRESHOLD_FIELDS)
                    .map(|c| format!("did you mean {c}? "))
                    .unwrap_or_default();
                return Err(at(
                    "gate.thresholds",
                    field,
                    format!(
                        "[gate.thresholds] has no field \"{}\"; {hint}the gate reads {}",
                        crate::sanitize::field(field),
                        THRESHOLD_FIELDS.join(", ")
                    ),
                ));
            }
        }
        if let Some(kb) = &self.ceiling.kb {
            for c in &kb.collections {
                crate::records::check_collection(c)
                    .map_err(|e| invalid(format!("[ceiling.kb] {e}")))?;
            }
        }
        for (field, threshold) in &self.gate.thresholds {
            if !(0.0..=1.0).contains(threshold) {
                return Err(invalid(format!(
                    "[gate.thresholds] {field} = {threshold} is outside 0..1; use a probability such as 0.8"
                )));
            }
        }
        for effect in &self.gate.auto_apply {
            let field = match effect {
                EffectKind::Category => "category",
                EffectKind::Queue => "queue",
                EffectKind::Priority => "priority",
                EffectKind::Language => "language",
                EffectKind::Tags | EffectKind::InternalNote => continue,
            };
            if !self.gate.thresholds.contains_key(field) {
                return Err(invalid(format!(
                    "[gate] auto_apply includes {field} but [gate.thresholds] has no {field}; add e.g. {field} = 0.8"
                )));
            }
        }
        if let Some(p) = &self.gate.risk.negative_sentiment_min_priority
            && !matches!(p.as_str(), "low" | "medium" | "high" | "urgent")
        {
            return Err(invalid(format!(
                "[gate.risk] negative_sentiment_min_priority = \"{p}\" is not a priority; use low, medium, high or urgent"
            )));
        }
        if self.runtime.max_memory_mib == 0 || self.runtime.pool_instances == 0 {
            return Err(invalid(
                "[runtime] max_memory_mib and pool_instances must be above 0".into(),
            ));
        }
        if self.store.max_connections == 0 || self.store.lease_seconds == 0 {
            return Err(invalid(
                "[store] max_connections and lease_seconds must be above 0".into(),
            ));
        }
        if let Some(url) = &self.store.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "[store] url must start with postgres:// (leave it unset for the workspace's SQLite file)"
                    .into(),
            ));
        }
        if self.runtime.max_data_mib > 2048 {
            return Err(invalid(format!(
                "[runtime] max_data_mib = {} is above 2048; plugin data is bound into a 32-bit memory",
                self.runtime.max_data_mib
            )));
        }
        Ok(())
    }

    /// Capabilities the ceiling allows.
    pub fn ceiling_allows(&self, capability: CapabilityName) -> bool {
        self.ceiling.has(capability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[workspace]
name = "t"
[slots]
triage = "triage-default@0.1.0"
"#;

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let Ok(c) = WorkspaceConfig::parse(MINIMAL, Path::new("deskhost.toml")) else {
            panic!("parses")
        };
        assert!(
            c.gate.auto_apply.is_empty(),
            "nothing auto-applies unless the operator says so"
        );
        assert!(c.gate.risk.review_escalations);
        assert!(c.runtime.fuel_metering);
        assert!(
            !c.ceiling_allows(CapabilityName::Crm),
            "the default ceiling grants nothing"
        );
    }

    #[test]
    fn auto_applied_fields_need_a_threshold() {
        let bad = format!("{MINIMAL}\n[gate]\nauto_apply = [\"queue\", \"tags\"]\n");
        let Err(e) = WorkspaceConfig::parse(&bad, Path::new("deskhost.toml")) else {
            panic!("must fail")
        };
        assert!(
            e.to_string().contains("[gate.thresholds] has no queue"),
            "{e}"
        );
    }

    #[test]
    fn typos_are_named_with_their_line_and_a_suggestion() {
        let bad = format!("{MINIMAL}\n[gate.thresholds]\ncategroy = 0.99\n");
        let Err(e) = WorkspaceConfig::parse(&bad, Path::new("ws/deskhost.toml")) else {
            panic!("must fail")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("ws/deskhost.toml:8")
                && msg.contains("\"categroy\"")
                && msg.contains("did you mean category?"),
            "{msg}"
        );
        let bad = MINIMAL.replace("triage-default@0.1.0", "../../etc@0.1.0");
        let Err(e) = WorkspaceConfig::parse(&bad, Path::new("deskhost.toml")) else {
            panic!("must fail")
        };
        assert!(
            e.to_string().contains("deskhost.toml:5") && e.to_string().contains("[slots] triage"),
            "{e}"
        );
        let bad = format!("{MINIMAL}\n[ceiling.kb]\ncollections = [\"../../etc\"]\n");
        assert!(WorkspaceConfig::parse(&bad, Path::new("deskhost.toml")).is_err());
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let bad = format!("{MINIMAL}\n[gate.thresholds]\nqueue = 1.5\n");
        let Err(e) = WorkspaceConfig::parse(&bad, Path::new("ws/deskhost.toml")) else {
            panic!("must fail")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("ws/deskhost.toml") && msg.contains("queue = 1.5"),
            "{msg}"
        );
        let Err(e) = WorkspaceConfig::parse("[workspace]\nname = 1", Path::new("x.toml")) else {
            panic!("must fail")
        };
        assert!(e.to_string().contains("x.toml"), "{e}");
    }
}
