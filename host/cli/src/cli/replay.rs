//! `deskhost replay`: re-execute a recorded run.

use crate::*;

#[derive(Args)]
pub(crate) struct ReplayArgs {
    /// The run id (from `deskhost run` output).
    run_id: String,
    /// Replay with this plugin (its plugin.toml or directory) in its slot.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Write each stage as a test fixture into this directory.
    #[arg(long)]
    export: Option<PathBuf>,
}

pub(crate) async fn replay(dir: &Path, args: ReplayArgs, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let runtime = ws.runtime()?;
    let candidate = match &args.plugin {
        Some(path) => {
            let manifest = if path.is_dir() {
                path.join("plugin.toml")
            } else {
                path.clone()
            };
            let kind = Manifest::load(&manifest)?.kind;
            Some(runtime.load_plugin(&manifest, kind, &ws.config.ceiling)?)
        }
        None => None,
    };
    let report = deskhost_engine::replay::replay(
        &ws,
        &runtime,
        &args.run_id,
        candidate.as_ref(),
        args.export.as_deref(),
    )
    .await?;
    show(&report, json)?;
    if let Some(dir) = &args.export {
        note!("fixtures written to {}", dir.display());
    }
    let all_identical = report.stages.iter().all(|s| s.identical);
    Ok(if all_identical || args.plugin.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

impl Render for deskhost_engine::replay::ReplayReport {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "replay of {} (ticket {} v{})",
            self.run_id,
            self.ticket_id,
            self.ticket_version
        );
        for s in &self.stages {
            let verdict = if s.identical {
                "identical output".to_string()
            } else {
                format!("{} difference(s)", s.differences.len())
            };
            say!(
                out,
                "  {:<11} {} → {}{}: {} ({} → {}){}",
                s.stage.as_str(),
                s.recorded_plugin,
                s.replayed_plugin,
                if s.other_component {
                    " (other component)"
                } else {
                    ""
                },
                verdict,
                s.recorded_outcome,
                s.replayed_outcome,
                if s.unanswered_calls > 0 {
                    format!(", {} call(s) not in the transcript", s.unanswered_calls)
                } else {
                    String::new()
                }
            );
            for d in s.differences.iter().take(20) {
                say!(out, "      {}: {} → {}", d.path, d.recorded, d.replayed);
            }
        }
        Ok(())
    }
}
