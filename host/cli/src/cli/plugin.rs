//! `deskhost plugin`: list, new, install, promote, rollback, shadow, diff, test.

use crate::*;

#[derive(Subcommand)]
pub(crate) enum PluginCommand {
    /// Installed plugins with digest, grants and limits.
    List,
    /// Start a plugin project against this deskhost's WIT: world, manifest, settings,
    /// fixtures, build script.
    New {
        /// The plugin id (lowercase words joined by '-').
        name: String,
        /// The language: rust, python or js.
        #[arg(long)]
        lang: deskhost_engine::scaffold::Lang,
        /// The policy kind.
        #[arg(long, default_value = "triage")]
        kind: PolicyKind,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Install a plugin (its directory or plugin.toml): validate, precompile, run its
    /// fixtures, show the capability diff. It stays inactive until promoted.
    Install {
        /// The plugin's directory or plugin.toml.
        path: PathBuf,
    },
    /// Make an installed version (id@version) the active one of its slot.
    Promote {
        /// id@version.
        plugin: String,
    },
    /// Return a slot to the version active before the current one.
    Rollback {
        /// triage, reply or escalation.
        slot: PolicyKind,
    },
    /// Run an installed version beside the active one; its proposals are stored, never applied.
    Shadow {
        /// id@version.
        plugin: String,
    },
    /// Stop shadowing a slot.
    Unshadow {
        /// triage, reply or escalation.
        slot: PolicyKind,
    },
    /// Compare a shadow's proposals with the active plugin's on the runs it shadowed.
    Diff {
        /// triage, reply or escalation.
        slot: PolicyKind,
        /// The candidate (default: the slot's current shadow).
        #[arg(long)]
        candidate: Option<String>,
    },
    /// Run a plugin on fixtures (its fixtures/ directory and --fixtures DIR).
    Test {
        /// The plugin's directory or plugin.toml.
        path: PathBuf,
        /// More fixtures.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// Run each case this many times and report the median wall time per call.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        repeat: u32,
    },
}

pub(crate) async fn plugin(dir: &Path, cmd: PluginCommand, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    match cmd {
        PluginCommand::List | PluginCommand::New { .. } => unreachable_list(),
        PluginCommand::Install { path } => {
            let runtime = ws.runtime()?;
            let r = lifecycle::install(&ws, &runtime, &path).await?;
            show(&r, json)?;
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Promote { plugin } => {
            let runtime = ws.runtime()?;
            let c = lifecycle::promote(&ws, &runtime, &plugin).await?;
            print_change(&c, json)
        }
        PluginCommand::Rollback { slot } => {
            print_change(&lifecycle::rollback(&ws, slot).await?, json)
        }
        PluginCommand::Shadow { plugin } => {
            let runtime = ws.runtime()?;
            print_change(&lifecycle::shadow(&ws, &runtime, &plugin).await?, json)
        }
        PluginCommand::Unshadow { slot } => {
            print_change(&lifecycle::unshadow(&ws, slot).await?, json)
        }
        PluginCommand::Diff { slot, candidate } => {
            let d = lifecycle::diff(&ws, slot, candidate.as_deref()).await?;
            show(&d, json)?;
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Test {
            path,
            fixtures,
            repeat,
        } => {
            let runtime = ws.runtime()?;
            let manifest = if path.is_dir() {
                path.join("plugin.toml")
            } else {
                path.clone()
            };
            let kind = Manifest::load(&manifest)?.kind;
            let plugin = runtime.load_plugin(&manifest, kind, &ws.config.ceiling)?;
            let mut dirs = Vec::new();
            if let Some(own) = manifest
                .parent()
                .map(|p| p.join("fixtures"))
                .filter(|p| p.is_dir())
            {
                dirs.push(own);
            }
            dirs.extend(fixtures);
            if dirs.is_empty() {
                bail!(
                    "no fixtures: {} has no fixtures/ directory; pass --fixtures DIR",
                    manifest.display()
                );
            }
            let mut all = deskhost_engine::plugin_test::TestReport::default();
            for d in &dirs {
                let r = deskhost_engine::plugin_test::run_dir(&ws, &runtime, &plugin, d, repeat)
                    .await?;
                all.passed += r.passed;
                all.failed += r.failed;
                all.cases.extend(r.cases);
            }
            let failed = all.failed;
            show(
                &Tested {
                    plugin: plugin.identity.key(),
                    report: all,
                },
                json,
            )?;
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

pub(crate) fn unreachable_list() -> Result<ExitCode> {
    bail!("internal: `plugin list` and `plugin new` are dispatched before `plugin`")
}

pub(crate) fn plugin_new(
    name: &str,
    lang: deskhost_engine::scaffold::Lang,
    kind: PolicyKind,
    dir: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let files = deskhost_engine::scaffold::new_plugin(&dir, name, lang, kind)?;
    show(
        &Created {
            dir,
            kind,
            lang,
            files,
        },
        json,
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_change(c: &lifecycle::SlotChange, json: bool) -> Result<ExitCode> {
    show(c, json)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn plugin_list(dir: &Path, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let (rows, problems) = lifecycle::list(&ws).await?;
    for p in &problems {
        note!("{p}");
    }
    show(&Listing(rows), json)?;
    Ok(ExitCode::SUCCESS)
}

/// `plugin test`'s result: which plugin, and its cases.
#[derive(serde::Serialize)]
pub(crate) struct Tested {
    plugin: String,
    #[serde(flatten)]
    report: deskhost_engine::plugin_test::TestReport,
}

/// `plugin new`'s result.
#[derive(serde::Serialize)]
pub(crate) struct Created {
    dir: PathBuf,
    kind: PolicyKind,
    lang: deskhost_engine::scaffold::Lang,
    files: Vec<PathBuf>,
}

/// `plugin list`.
#[derive(serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Listing(Vec<lifecycle::PluginListing>);

impl Render for lifecycle::InstallReport {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "{} {} ({}) sha256 {}",
            if self.already_installed {
                "already installed:"
            } else {
                "installed"
            },
            self.plugin,
            self.kind,
            &self.digest[..12.min(self.digest.len())]
        );
        let (wasi, caps): (Vec<&String>, Vec<&String>) =
            self.imports.iter().partition(|i| i.starts_with("wasi:"));
        let caps: Vec<&str> = caps
            .iter()
            .filter(|i| !i.starts_with("deskhost:plugin/types@"))
            .map(|i| i.as_str())
            .collect();
        say!(
            out,
            "  imports: {}{}",
            if caps.is_empty() {
                "no capabilities".to_string()
            } else {
                caps.join(", ")
            },
            if wasi.is_empty() {
                String::new()
            } else {
                format!(" (+{} wasi interfaces)", wasi.len())
            }
        );
        say!(
            out,
            "  compiled: {}; config {}",
            if self.compile_ms > 0.0 {
                format!("{:.0} ms", self.compile_ms)
            } else {
                "from cache".into()
            },
            if self.bound {
                "bound into memory"
            } else {
                "served by the config capability"
            }
        );
        for f in &self.files {
            say!(
                out,
                "  {:<9} {} ({} bytes, sha256 {})",
                f.key.as_str(),
                f.path.file_name().map_or_else(
                    || f.path.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                ),
                f.bytes,
                &f.sha256[..16.min(f.sha256.len())]
            );
        }
        if let Some(f) = &self.fixtures {
            say!(out, "  fixtures: {} passed", f.passed);
        }
        match &self.diff.replaces {
            Some(v) => say!(out, "  against the active {v}:"),
            None => say!(out, "  grants (the slot has no other version):"),
        }
        for a in &self.diff.added {
            say!(out, "    + {a}");
        }
        for x in &self.diff.removed {
            say!(out, "    - {x}");
        }
        for l in &self.diff.limits {
            say!(out, "    ~ {l}");
        }
        if self.diff.added.is_empty() && self.diff.removed.is_empty() && self.diff.limits.is_empty()
        {
            say!(out, "    same grants and limits");
        }
        say!(
            out,
            "  not active: `deskhost plugin promote {}` makes it so",
            self.plugin
        );
        Ok(())
    }
}

impl Render for lifecycle::ShadowDiff {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "{} shadow {} against {} ({} runs)",
            self.slot.as_str(),
            self.candidate,
            self.incumbents.join(", "),
            self.candidate_stats.runs
        );
        for (field, a) in &self.fields {
            say!(
                out,
                "  {field:<18} agree {:>5.1}% ({}/{})",
                a.rate * 100.0,
                a.same,
                a.total
            );
        }
        let (i, c) = (&self.incumbent_stats, &self.candidate_stats);
        say!(
            out,
            "  latency p50/p95 ms: active {:.2}/{:.2}, shadow {:.2}/{:.2}",
            i.p50_ms,
            i.p95_ms,
            c.p50_ms,
            c.p95_ms
        );
        say!(
            out,
            "  fault rate: active {:.1}%, shadow {:.1}%",
            i.fault_rate * 100.0,
            c.fault_rate * 100.0
        );
        for x in self.disagreements.iter().take(20) {
            say!(
                out,
                "  {} {}: {} → {}",
                x.ticket_id,
                x.field,
                x.incumbent,
                x.candidate
            );
        }
        Ok(())
    }
}

impl Render for Tested {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "{}: {} passed, {} failed",
            self.plugin,
            self.report.passed,
            self.report.failed
        );
        for c in &self.report.cases {
            say!(
                out,
                "  {} {:<40} {:<14} fuel {:>10} calls {:>2} output {:>6} B {:>7.2} ms{}",
                if c.passed { "ok  " } else { "FAIL" },
                c.name,
                c.outcome,
                c.fuel_used.map_or("-".into(), |f| f.to_string()),
                c.host_calls,
                c.output_bytes,
                c.wall_us as f64 / 1000.0,
                if c.problems.is_empty() {
                    String::new()
                } else {
                    format!("\n       {}", c.problems.join("\n       "))
                }
            );
        }
        Ok(())
    }
}

impl Render for Created {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        let dir = &self.dir;

        say!(
            out,
            "created {} ({} {:?} plugin, WIT deskhost:plugin@{}):",
            dir.display(),
            self.kind.as_str(),
            self.lang,
            deskhost_engine::manifest::WIT_VERSION
        );
        for f in &self.files {
            say!(out, "  {}", f.strip_prefix(dir).unwrap_or(f).display());
        }
        say!(
            out,
            "next: {0}/build.sh, then `deskhost -w WORKSPACE plugin test {0}` (see {0}/README.md)",
            dir.display()
        );
        Ok(())
    }
}

impl Render for lifecycle::SlotChange {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "{} slot: {} → {} (event {})",
            self.slot.as_str(),
            self.from.as_deref().unwrap_or("none"),
            self.to.as_deref().unwrap_or("none"),
            self.seq
        );
        Ok(())
    }
}

impl Render for Listing {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        for r in &self.0 {
            let g = &r.grants;
            let mut grants = Vec::new();
            if let Some(crm) = &g.crm {
                grants.push(format!("crm[{}]", crm.fields.join(",")));
            }
            if let Some(kb) = &g.kb {
                grants.push(format!("kb[{}]", kb.collections.join(",")));
            }
            if g.helpdesk.is_some() {
                grants.push("helpdesk".into());
            }
            if !g.ticket.fields.is_empty() {
                grants.push(format!("ticket[{}]", g.ticket.fields.join(",")));
            }
            let l = &r.limits;
            say!(
                out,
                "{}{}@{} ({})  sha256 {}{}\n    grants: {}\n    limits: fuel {}, wall {} ms, memory {} MiB, host calls {}, output {} KiB",
                if r.active {
                    "* "
                } else if r.shadow {
                    "~ "
                } else {
                    "  "
                },
                r.id,
                r.version,
                r.kind,
                &r.digest[..12.min(r.digest.len())],
                if r.digest_ok {
                    ""
                } else {
                    "  (COMPONENT DOES NOT MATCH ITS DIGEST)"
                },
                if grants.is_empty() {
                    "none".into()
                } else {
                    grants.join(" ")
                },
                l.fuel,
                l.wall_ms,
                l.memory_mib,
                l.host_calls,
                l.output_kib,
            );
        }
        if !self.0.is_empty() {
            say!(
                out,
                "(* active, ~ shadow; the others are installed and can be promoted)"
            );
        }
        Ok(())
    }
}
