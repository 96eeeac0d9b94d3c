//! `deskhost train`: the triage model from labeled tickets.

use crate::*;

#[derive(Args)]
pub(crate) struct TrainArgs {
    /// Labeled tickets (JSON Lines with subject, body, labels); several files are read in
    /// order, and each field is learned from the lines that label it.
    #[arg(required_unless_present = "from_reviews")]
    files: Vec<PathBuf>,
    /// Also learn from what reviewers approved (their edits are the labels).
    #[arg(long)]
    from_reviews: bool,
    /// Label fields to learn, comma-separated (e.g. category,queue,priority).
    #[arg(long, value_delimiter = ',', required = true)]
    fields: Vec<String>,
    /// Held-out file for early stopping and calibration (default: 10% of FILE).
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Output model file (default: the data file of the workspace's triage plugin).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Model name.
    #[arg(long, default_value = "triage")]
    name: String,
    /// log2 of the number of hash buckets.
    #[arg(long, default_value_t = 18)]
    buckets: u32,
    /// Maximum epochs.
    #[arg(long, default_value_t = 30)]
    epochs: u32,
    /// Weight storage: i8 (small) or f32.
    #[arg(long, default_value = "i8")]
    dtype: String,
    /// Inverse regularisation strength.
    #[arg(long, default_value_t = 10.0)]
    c: f32,
    /// Class weighting: 0 none, 1 fully balanced; 0.5 raises macro-F1 on skewed fields and
    /// leaves balanced ones alone.
    #[arg(long, default_value_t = 0.5)]
    class_balance: f32,
    /// Character n-grams over the whole text (punctuation and spaces included) instead of
    /// inside words.
    #[arg(long)]
    char_over_text: bool,
    /// Term frequency as 1 + ln(count) instead of the raw count.
    #[arg(long)]
    sublinear_tf: bool,
}

pub(crate) async fn train(dir: &Path, mut args: TrainArgs, json: bool) -> Result<ExitCode> {
    if args.from_reviews {
        let ws = Workspace::open(dir).await?;
        let (file, n) = crate::cli::review::labels_file(&ws).await?;
        note!("{n} reviewed tickets from {}", file.display());
        args.files.push(file);
    }
    let dtype = match args.dtype.as_str() {
        "i8" => deskhost_nlp::DType::I8,
        "f32" => deskhost_nlp::DType::F32,
        other => bail!("--dtype {other}: use i8 or f32"),
    };
    let ws = if args.out.is_none() || args.from_reviews {
        Some(Workspace::open(dir).await?)
    } else {
        None
    };
    let out = match (&args.out, &ws) {
        (Some(out), _) => out.clone(),
        (None, Some(ws)) => {
            let manifest_path = ws.manifest_for(PolicyKind::Triage, &ws.config.slots.triage)?;
            let manifest = Manifest::load(&manifest_path)?;
            let data = manifest.data.with_context(|| {
                format!("{} has no `data` file to write the model to; add data = \"model.dhm\" or pass --out", manifest_path.display())
            })?;
            manifest_path.parent().unwrap_or(Path::new(".")).join(data)
        }
        (None, None) => bail!("pass --out or a workspace"),
    };
    let options = deskhost_engine::train::TrainOptions {
        inputs: args.files.clone(),
        dev: args.dev,
        fields: args.fields,
        out,
        name: args.name,
        buckets_log2: args.buckets,
        epochs: args.epochs,
        dtype,
        c: args.c,
        class_balance: args.class_balance,
        char_over_text: args.char_over_text,
        sublinear_tf: args.sublinear_tf,
    };
    let summary = deskhost_engine::train::run(&options)?;
    if let Some(ws) = &ws {
        ws.audit(&[audit::AuditEntry::global(
            "model-trained",
            serde_json::to_value(ModelTrained {
                files: &args.files,
                model: &summary.out,
                sha256: &summary.sha256,
            })?,
        )])
        .await?;
    }
    show(&Trained::from(summary), json)?;
    Ok(ExitCode::SUCCESS)
}

/// The payload of the `model-trained` audit record.
#[derive(serde::Serialize)]
struct ModelTrained<'a> {
    files: &'a [PathBuf],
    model: &'a Path,
    sha256: &'a str,
}

/// `train`'s result.
#[derive(serde::Serialize)]
pub(crate) struct Trained {
    model: deskhost_engine::train::TrainSummary,
    train_examples: usize,
    heldout_examples: usize,
    rows: usize,
    epochs: u32,
    heads: Vec<Head>,
}

/// One field the model predicts.
#[derive(serde::Serialize)]
struct Head {
    field: String,
    classes: usize,
    examples: usize,
    heldout_accuracy: f32,
    temperature: f32,
}

impl From<deskhost_engine::train::TrainSummary> for Trained {
    fn from(model: deskhost_engine::train::TrainSummary) -> Self {
        let r = &model.report;
        let heads = r
            .heads
            .iter()
            .map(|h| Head {
                field: h.field.clone(),
                classes: h.labels.len(),
                examples: h.examples,
                heldout_accuracy: h.heldout_accuracy,
                temperature: h.temperature,
            })
            .collect();
        Trained {
            train_examples: r.train_examples,
            heldout_examples: r.heldout_examples,
            rows: r.rows,
            epochs: r.epochs_run,
            heads,
            model,
        }
    }
}

impl Render for Trained {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        let m = &self.model;
        say!(
            out,
            "trained {} on {} examples ({} held out, {} skipped) in {:.1}s: {} feature rows, {} epochs, {} KiB",
            m.out.display(),
            self.train_examples,
            self.heldout_examples,
            m.skipped,
            m.seconds,
            self.rows,
            self.epochs,
            m.bytes / 1024
        );
        for h in &self.heads {
            say!(
                out,
                "  {:<10} {:>3} classes  {:>5} examples  held-out accuracy {:.3}  temperature {:.2}",
                h.field,
                h.classes,
                h.examples,
                h.heldout_accuracy,
                h.temperature
            );
        }
        Ok(())
    }
}
