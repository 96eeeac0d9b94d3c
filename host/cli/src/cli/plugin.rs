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
            if json {
                print_json(&json!(r))?;
            } else {
                out!(
                    "{} {} ({}) sha256 {}",
                    if r.already_installed {
                        "already installed:"
                    } else {
                        "installed"
                    },
                    r.plugin,
                    r.kind,
                    &r.digest[..12.min(r.digest.len())]
                );
                let (wasi, caps): (Vec<&String>, Vec<&String>) =
                    r.imports.iter().partition(|i| i.starts_with("wasi:"));
                let caps: Vec<&str> = caps
                    .iter()
                    .filter(|i| !i.starts_with("deskhost:plugin/types@"))
                    .map(|i| i.as_str())
                    .collect();
                out!(
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
                out!(
                    "  compiled: {}; config {}",
                    if r.compile_ms > 0.0 {
                        format!("{:.0} ms", r.compile_ms)
                    } else {
                        "from cache".into()
                    },
                    if r.bound {
                        "bound into memory"
                    } else {
                        "served by the config capability"
                    }
                );
                for f in &r.files {
                    out!(
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
                if let Some(f) = &r.fixtures {
                    out!("  fixtures: {} passed", f.passed);
                }
                match &r.diff.replaces {
                    Some(v) => out!("  against the active {v}:"),
                    None => out!("  grants (the slot has no other version):"),
                }
                for a in &r.diff.added {
                    out!("    + {a}");
                }
                for x in &r.diff.removed {
                    out!("    - {x}");
                }
                for l in &r.diff.limits {
                    out!("    ~ {l}");
                }
                if r.diff.added.is_empty() && r.diff.removed.is_empty() && r.diff.limits.is_empty()
                {
                    out!("    same grants and limits");
                }
                out!(
                    "  not active: `deskhost plugin promote {}` makes it so",
                    r.plugin
                );
            }
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
            if json {
                print_json(&json!(d))?;
                return Ok(ExitCode::SUCCESS);
            }
            out!(
                "{} shadow {} against {} ({} runs)",
                d.slot.as_str(),
                d.candidate,
                d.incumbents.join(", "),
                d.candidate_stats.runs
            );
            for (field, a) in &d.fields {
                out!(
                    "  {field:<18} agree {:>5.1}% ({}/{})",
                    a.rate * 100.0,
                    a.same,
                    a.total
                );
            }
            let (i, c) = (&d.incumbent_stats, &d.candidate_stats);
            out!(
                "  latency p50/p95 ms: active {:.2}/{:.2}, shadow {:.2}/{:.2}",
                i.p50_ms,
                i.p95_ms,
                c.p50_ms,
                c.p95_ms
            );
            out!(
                "  fault rate: active {:.1}%, shadow {:.1}%",
                i.fault_rate * 100.0,
                c.fault_rate * 100.0
            );
            for x in d.disagreements.iter().take(20) {
                out!(
                    "  {} {}: {} → {}",
                    x.ticket_id,
                    x.field,
                    x.incumbent,
                    x.candidate
                );
            }
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
            if json {
                print_json(&json!(all))?;
            } else {
                out!(
                    "{}: {} passed, {} failed",
                    plugin.identity.key(),
                    all.passed,
                    all.failed
                );
                for c in &all.cases {
                    out!(
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
            }
            Ok(if all.failed == 0 {
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
    if json {
        print_json(&json!({
            "dir": dir,
            "files": files,
        }))?;
    } else {
        out!(
            "created {} ({} {:?} plugin, WIT deskhost:plugin@{}):",
            dir.display(),
            kind.as_str(),
            lang,
            deskhost_engine::manifest::WIT_VERSION
        );
        for f in &files {
            out!("  {}", f.strip_prefix(&dir).unwrap_or(f).display());
        }
        out!(
            "next: {0}/build.sh, then `deskhost -w WORKSPACE plugin test {0}` (see {0}/README.md)",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_change(c: &lifecycle::SlotChange, json: bool) -> Result<ExitCode> {
    if json {
        print_json(&json!(c))?;
    } else {
        out!(
            "{} slot: {} → {} (event {})",
            c.slot.as_str(),
            c.from.as_deref().unwrap_or("none"),
            c.to.as_deref().unwrap_or("none"),
            c.seq
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn plugin_list(dir: &Path, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let (rows, problems) = lifecycle::list(&ws).await?;
    for p in &problems {
        note!("{p}");
    }
    if json {
        print_json(&json!(rows))?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rows {
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
        out!(
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
    if !rows.is_empty() {
        out!("(* active, ~ shadow; the others are installed and can be promoted)");
    }
    Ok(ExitCode::SUCCESS)
}
