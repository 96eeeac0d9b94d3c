//! `deskhost eval`: replay labeled history through the plugins and report.

use crate::*;

#[derive(Args)]
pub(crate) struct EvalArgs {
    /// Labeled records (JSON Lines: tickets with labels, KB scenarios, or conversations).
    #[arg(
        required_unless_present = "from_reviews",
        conflicts_with = "from_reviews"
    )]
    file: Option<PathBuf>,
    /// Score the plugins against what reviewers approved (their edits are the labels).
    #[arg(long)]
    from_reviews: bool,
    /// Label fields to score, comma-separated (default: every field in the data).
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Evaluate this plugin (its plugin.toml) instead of the active one of its slot.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Also evaluate this plugin (its plugin.toml) and compare it with the active one.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Directory for report.json, report.html and summary.txt (default WORKSPACE/reports/eval-FILE).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Accuracy the automation threshold must reach.
    #[arg(long, default_value_t = 0.95)]
    target_precision: f64,
    /// Human handle time per ticket in seconds, when the data has none.
    #[arg(long)]
    manual_seconds: Option<f64>,
    /// Evaluate only the first N records.
    #[arg(long)]
    limit: Option<usize>,
    /// Records evaluated at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

pub(crate) async fn eval(dir: &Path, args: EvalArgs, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let file = match &args.file {
        Some(file) => file.clone(),
        None => {
            let (file, n) = crate::cli::review::labels_file(&ws).await?;
            if n == 0 {
                bail!(
                    "no approved review items yet: approve some (`deskhost review approve`) before `eval --from-reviews`"
                );
            }
            note!("{n} reviewed tickets from {}", file.display());
            file
        }
    };
    let (records, rejected) = deskhost_engine::eval::read_records(&file, args.limit)
        .with_context(|| format!("cannot read {}", file.display()))?;
    for r in &rejected {
        note!("{r}; line skipped");
    }
    if records.is_empty() {
        bail!("{} has no usable records", file.display());
    }
    let mut pipeline = ws.pipeline().await?;
    let runtime = pipeline.runtime.clone();
    let load = |path: &Path| -> Result<std::sync::Arc<deskhost_engine::runtime::LoadedPlugin>> {
        let kind = Manifest::load(path)?.kind;
        Ok(std::sync::Arc::new(runtime.load_plugin(
            path,
            kind,
            &ws.config.ceiling,
        )?))
    };
    if let Some(path) = &args.plugin {
        let candidate = load(path)?;
        pipeline = pipeline.with_plugin(candidate);
    }
    let options = deskhost_engine::eval::EvalOptions {
        fields: args.fields.clone(),
        target_precision: args.target_precision,
        manual_seconds: args.manual_seconds,
        concurrency: args.concurrency,
        ..deskhost_engine::eval::EvalOptions::default()
    };
    let dataset = file.display().to_string();
    let runs = if args.compare.is_some() { 2 } else { 1 };
    let bar = progress_bar(records.len() * runs, "records");
    let tick = || bar.inc(1);
    let (report, results) = deskhost_engine::eval::evaluate(
        &pipeline,
        &dataset,
        &records,
        rejected.len(),
        &options,
        &tick,
    )
    .await;
    let comparison = match &args.compare {
        Some(path) => {
            let candidate = load(path)?;
            let slot = candidate.identity.kind;
            let incumbent = pipeline
                .active()
                .iter()
                .find(|(k, _)| *k == slot)
                .map(|(_, p)| p.identity.key())
                .unwrap_or_default();
            let key = candidate.identity.key();
            let other = pipeline.with_plugin(candidate);
            let (report_b, results_b) = deskhost_engine::eval::evaluate(
                &other,
                &dataset,
                &records,
                rejected.len(),
                &options,
                &tick,
            )
            .await;
            Some(deskhost_engine::eval::compare(
                (&report, &results),
                (&report_b, &results_b),
                &incumbent,
                &key,
            ))
        }
        None => None,
    };
    bar.finish_and_clear();

    let stem = args
        .file
        .as_ref()
        .and_then(|f| f.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "reviews".into());
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| ws.dir.join("reports").join(format!("eval-{stem}")));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let summary = deskhost_engine::eval::report::text(&report, comparison.as_ref());
    let full = Evaluated {
        report,
        comparison,
        summary,
        html: out_dir.join("report.html"),
    };
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_vec_pretty(&full)?,
    )?;
    std::fs::write(
        out_dir.join("report.html"),
        deskhost_engine::eval::report::html(&full.report, full.comparison.as_ref()),
    )?;
    std::fs::write(out_dir.join("summary.txt"), &full.summary)?;
    show(&full, json)?;
    Ok(if rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `eval`'s result, as written to `report.json` and printed by `--json`.
#[derive(serde::Serialize)]
pub(crate) struct Evaluated {
    report: deskhost_engine::eval::EvalReport,
    comparison: Option<deskhost_engine::eval::Comparison>,
    #[serde(skip)]
    summary: String,
    #[serde(skip)]
    html: PathBuf,
}

impl Render for Evaluated {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(out, "{}", self.summary);
        say!(out, "report: {}", self.html.display());
        Ok(())
    }
}
