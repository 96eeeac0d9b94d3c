//! The `deskhost` command line.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use deskhost::audit;
use deskhost::jsonl;
use deskhost::lifecycle;
use deskhost::manifest::{Manifest, ManifestFiles, PolicyKind};
use deskhost::pipeline::unclaimed_line;
use deskhost::records::{self, ArticleRecord, TicketInput};
use deskhost::store::{Claim, Upsert};
use deskhost::workspace::{self, Workspace, import_record};
use deskhost_protocol::run::{ReviewStatus, RunLine, RunRecord, StageOutcome};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use std::time::Instant;

/// `println!` that returns the error instead of panicking (e.g. on a closed pipe) and shows
/// control characters from tickets and plugins as escapes instead of sending them to the
/// terminal.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), "{}", deskhost::sanitize::terminal(&format!($($arg)*)))?
    };
}

/// `eprintln!` with the same sanitizing as [`out!`].
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!("{}", deskhost::sanitize::terminal(&format!($($arg)*)))
    };
}

mod cli;

#[derive(Parser)]
#[command(
    name = "deskhost",
    version,
    about = "Runs support-operations policies as sandboxed WebAssembly plugins"
)]
struct Cli {
    /// The workspace directory.
    #[arg(
        short = 'w',
        long,
        global = true,
        env = "DESKHOST_WORKSPACE",
        default_value = "."
    )]
    workspace: PathBuf,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a workspace from a template and install its plugins.
    Init(InitArgs),
    /// Knowledge base: import, reindex, search.
    #[command(subcommand)]
    Kb(KbCommand),
    /// CRM: import customers.
    #[command(subcommand)]
    Crm(CrmCommand),
    /// Train the triage model from labeled tickets.
    Train(TrainArgs),
    /// Decide tickets: one JSON object per ticket on stdout.
    Run(RunArgs),
    /// Store tickets and queue their new versions for workers; decides nothing.
    Ingest(cli::work::IngestArgs),
    /// Decide queued ticket versions until stopped; many workers may share one store.
    Worker(cli::work::WorkerArgs),
    /// The store: schema migration and status.
    #[command(subcommand)]
    Db(cli::work::DbCommand),
    /// Replay labeled history through the plugins (nothing applied) and report quality and speed.
    Eval(EvalArgs),
    /// Serve the HTTP API; follows promotions and rollbacks without a restart.
    Serve(ServeArgs),
    /// Re-execute a recorded run from its transcript, with the same or another plugin.
    Replay(ReplayArgs),
    /// Review items.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Installed plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Args)]
struct InitArgs {
    /// Directory to create.
    dir: PathBuf,
    /// Template workspace.
    #[arg(long, env = "DESKHOST_TEMPLATE", default_value = "examples/workspace")]
    from: PathBuf,
    /// Directory with the built plugin components (default: next to this binary's target
    /// directory, `wasm32-wasip2/plugin`).
    #[arg(long, env = "DESKHOST_PLUGIN_DIR")]
    plugins: Option<PathBuf>,
    /// Replace a non-empty directory.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum KbCommand {
    /// Import articles (JSON Lines: id, title, body, language, collection) and reindex.
    Import {
        /// Articles file.
        file: PathBuf,
    },
    /// Rebuild the search index from the store.
    Reindex,
    /// Search as a plugin would.
    Search {
        /// Query text.
        query: String,
        /// Only this language.
        #[arg(long)]
        language: Option<String>,
        /// Collections to search.
        #[arg(long, default_value = "public")]
        collection: Vec<String>,
        /// Hits.
        #[arg(long, default_value_t = 5)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum CrmCommand {
    /// Import customers (JSON Lines). A line updates the fields it has (`null` clears one)
    /// and keeps the others; --replace makes each line the whole record.
    Import {
        /// Customers file.
        file: PathBuf,
        /// Each line replaces the stored record instead of updating its fields.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// Labeled tickets (JSON Lines with subject, body, labels); several files are read in
    /// order, and each field is learned from the lines that label it.
    #[arg(required = true)]
    files: Vec<PathBuf>,
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

#[derive(Args)]
struct RunArgs {
    /// Tickets (JSON Lines). Omit with --pending.
    file: Option<PathBuf>,
    /// Also decide tickets left pending by earlier runs.
    #[arg(long)]
    pending: bool,
    /// Tickets decided at once (default from deskhost.toml, else 2 x CPUs).
    #[arg(long)]
    concurrency: Option<usize>,
}

#[derive(Args)]
struct EvalArgs {
    /// Labeled records (JSON Lines: tickets with labels, KB scenarios, or conversations).
    file: PathBuf,
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

#[derive(Subcommand)]
enum ReviewCommand {
    /// List review items.
    List {
        /// Which items.
        #[arg(long, value_enum, default_value = "open")]
        status: StatusFilter,
    },
}

/// Review items by status.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StatusFilter {
    /// Waiting for a person.
    Open,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
    /// Every item.
    All,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain, every decision against its digests, and the signed
    /// checkpoints; exits non-zero and names the first problem.
    Verify {
        /// Checkpoints kept outside the database (a checkpoint log, `audit checkpoint`
        /// output or an export); a chain rebuilt after any of them is detected.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// The public key checkpoints must verify with (default: [audit] in deskhost.toml).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Sign a checkpoint of the chain now and print it (keep a copy elsewhere).
    Checkpoint {
        /// Also append it to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Stream the audit records and checkpoints as JSON Lines (for another system).
    Export {
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// First record.
        #[arg(long, default_value_t = 1)]
        from: i64,
    },
    /// Check an export on its own (e.g. on another machine): the chain and its checkpoints.
    VerifyExport {
        /// The file `audit export` wrote.
        file: PathBuf,
        /// The public key checkpoints must verify with.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Create an ed25519 signing key for checkpoints (never overwrites); prints its public
    /// key. Keep it outside the workspace and name it in [audit] signing_key.
    Keygen {
        /// Where to write the key.
        path: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// How often to look for promotions, rollbacks and changed plugin files, milliseconds.
    #[arg(long, default_value_t = 200)]
    watch_ms: u64,
}

#[derive(Args)]
struct ReplayArgs {
    /// The run id (from `deskhost run` output).
    run_id: String,
    /// Replay with this plugin (its plugin.toml or directory) in its slot.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Write each stage as a test fixture into this directory.
    #[arg(long)]
    export: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Installed plugins with digest, grants and limits.
    List,
    /// Start a plugin project against this deskhost's WIT: world, manifest, settings,
    /// fixtures, build script.
    New {
        /// The plugin id (lowercase words joined by '-').
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: deskhost::scaffold::Lang,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            note!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        // `deskhost review list | head`: the reader has what it wanted.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            note!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause once: our errors often quote their source already.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let ws_dir = cli.workspace.clone();
    match cli.command {
        Command::Init(args) => init(args, cli.json),
        Command::Kb(cmd) => kb(&ws_dir, cmd, cli.json).await,
        Command::Crm(CrmCommand::Import { file, replace }) => {
            crm_import(&ws_dir, &file, replace, cli.json).await
        }
        Command::Train(args) => train(&ws_dir, args, cli.json).await,
        Command::Run(args) => run(&ws_dir, args).await,
        Command::Ingest(args) => cli::work::ingest(&ws_dir, args, cli.json).await,
        Command::Worker(args) => cli::work::worker(&ws_dir, args, shutdown_signal()).await,
        Command::Db(cmd) => cli::work::db_command(&ws_dir, cmd, cli.json).await,
        Command::Eval(args) => eval(&ws_dir, args, cli.json).await,
        Command::Review(ReviewCommand::List { status }) => {
            review_list(&ws_dir, status, cli.json).await
        }
        Command::Audit(cmd) => audit_command(&ws_dir, cmd, cli.json).await,
        Command::Plugin(PluginCommand::List) => plugin_list(&ws_dir, cli.json).await,
        Command::Plugin(PluginCommand::New {
            name,
            lang,
            kind,
            dir,
        }) => plugin_new(&name, lang, kind, dir, cli.json),
        Command::Plugin(cmd) => plugin(&ws_dir, cmd, cli.json).await,
        Command::Serve(args) => serve(&ws_dir, args).await,
        Command::Replay(args) => replay(&ws_dir, args, cli.json).await,
    }
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn default_plugin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .and_then(Path::parent)
                .map(|t| t.join("wasm32-wasip2").join("plugin"))
        })
        .unwrap_or_else(|| PathBuf::from("target/wasm32-wasip2/plugin"))
}

fn init(args: InitArgs, json: bool) -> Result<ExitCode> {
    let components = args.plugins.unwrap_or_else(default_plugin_dir);
    let report = workspace::init(&args.dir, &args.from, &components, args.force)?;
    if json {
        print_json(&json!(report))?;
    } else {
        out!("created workspace {}", report.dir.display());
        for (manifest, digest) in &report.plugins {
            out!(
                "  installed {} (sha256 {})",
                manifest.display(),
                &digest[..12]
            );
        }
        out!(
            "next: deskhost -w {} kb import FILE, crm import FILE, train FILE, run FILE",
            report.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a JSON Lines file into `T`s; bad lines (not UTF-8, not JSON, not `T`, failing
/// `check`) are reported with their number and skipped, not fatal.
fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<jsonl::Parsed<T>> {
    Ok(jsonl::read(path, check)?)
}

fn check_article(a: &ArticleRecord) -> Result<(), String> {
    records::check_id("id", &a.id)?;
    records::check_collection(&a.collection).map_err(|e| format!("article {}: {e}", a.id))?;
    if !deskhost::pipeline::checks::is_language_tag(&a.language) {
        return Err(format!(
            "article {}: language \"{}\" is not a language tag such as en or pt-BR",
            a.id,
            deskhost::sanitize::field(&a.language)
        ));
    }
    if a.body.trim().is_empty() || a.title.trim().is_empty() {
        return Err(format!(
            "article {}: title and body must not be empty",
            a.id
        ));
    }
    Ok(())
}

fn check_customer_line(line: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    match line.get("id") {
        Some(serde_json::Value::String(id)) => records::check_id("id", id),
        _ => Err("`id` must be a string: the customer's CRM id".into()),
    }
}

fn count(outcomes: &[Upsert]) -> serde_json::Value {
    let n = |u: Upsert| outcomes.iter().filter(|&&o| o == u).count();
    json!({ "inserted": n(Upsert::Inserted), "updated": n(Upsert::Updated), "unchanged": n(Upsert::Unchanged) })
}

async fn kb(dir: &Path, cmd: KbCommand, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    match cmd {
        KbCommand::Import { file } => {
            let jsonl::Parsed {
                records: articles,
                rejected: bad,
            } = read_jsonl::<ArticleRecord>(&file, check_article)?;
            for b in &bad {
                note!("{b}");
            }
            let mut outcomes = Vec::new();
            for (_, a) in &articles {
                outcomes.push(ws.store.upsert_article(a).await?.0);
            }
            let kb = ws.reindex().await?;
            let counts = count(&outcomes);
            ws.audit(&[import_record(
                "kb-import",
                &file,
                json!({ "articles": counts, "rejected": bad.len(), "index_version": kb.version() }),
            )])
            .await?;
            if json {
                print_json(
                    &json!({ "articles": counts, "rejected": bad.len(), "index_version": kb.version(), "total": kb.len() }),
                )?;
            } else {
                out!(
                    "kb import: {counts}, {} rejected; index {} with {} articles",
                    bad.len(),
                    kb.version(),
                    kb.len()
                );
            }
            Ok(if bad.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        KbCommand::Reindex => {
            let kb = ws.reindex().await?;
            out!(
                "reindexed {} articles, index version {}",
                kb.len(),
                kb.version()
            );
            Ok(ExitCode::SUCCESS)
        }
        KbCommand::Search {
            query,
            language,
            collection,
            limit,
        } => {
            let kb = ws.kb().await?;
            let hits = kb.search(&query, language.as_deref(), &collection, limit)?;
            if json {
                print_json(&json!(hits))?;
            } else {
                for h in hits {
                    out!(
                        "{:>7.3}  {}  [{}] {}\n         {}",
                        h.score,
                        h.article_id,
                        h.language,
                        h.title,
                        h.snippet
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn crm_import(dir: &Path, file: &Path, replace: bool, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let jsonl::Parsed {
        records: lines,
        rejected: mut bad,
    } = read_jsonl::<serde_json::Map<String, serde_json::Value>>(file, check_customer_line)?;
    let mut outcomes = Vec::new();
    for (number, line) in &lines {
        match ws.store.import_customer(line, replace).await {
            Ok((outcome, _)) => outcomes.push(outcome),
            Err(deskhost::store::StoreError::Invalid { what, detail }) => bad.push(format!(
                "{}:{number}: {what}: {detail}; line skipped",
                file.display()
            )),
            Err(e) => return Err(e.into()),
        }
    }
    for b in &bad {
        note!("{b}");
    }
    let counts = count(&outcomes);
    ws.audit(&[import_record(
        "crm-import",
        file,
        json!({ "customers": counts, "rejected": bad.len() }),
    )])
    .await?;
    if json {
        print_json(&json!({ "customers": counts, "rejected": bad.len() }))?;
    } else {
        out!("crm import: {counts}, {} rejected", bad.len());
    }
    Ok(if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn train(dir: &Path, args: TrainArgs, json: bool) -> Result<ExitCode> {
    let dtype = match args.dtype.as_str() {
        "i8" => deskhost_nlp::DType::I8,
        "f32" => deskhost_nlp::DType::F32,
        other => bail!("--dtype {other}: use i8 or f32"),
    };
    let ws = if args.out.is_none() {
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
    let options = deskhost::train::TrainOptions {
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
    let summary = deskhost::train::run(&options)?;
    if let Some(ws) = &ws {
        ws.audit(&[audit::AuditEntry::global(
            "model-trained",
            json!({ "files": args.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(), "model": summary.out.display().to_string(), "sha256": summary.sha256 }),
        )])
        .await?;
    }
    let r = &summary.report;
    if json {
        let heads: Vec<_> = r
            .heads
            .iter()
            .map(|h| json!({ "field": h.field, "classes": h.labels.len(), "examples": h.examples, "heldout_accuracy": h.heldout_accuracy, "temperature": h.temperature }))
            .collect();
        print_json(
            &json!({ "model": summary, "train_examples": r.train_examples, "heldout_examples": r.heldout_examples, "rows": r.rows, "epochs": r.epochs_run, "heads": heads }),
        )?;
    } else {
        out!(
            "trained {} on {} examples ({} held out, {} skipped) in {:.1}s: {} feature rows, {} epochs, {} KiB",
            summary.out.display(),
            r.train_examples,
            r.heldout_examples,
            summary.skipped,
            summary.seconds,
            r.rows,
            r.epochs_run,
            summary.bytes / 1024
        );
        for h in &r.heads {
            out!(
                "  {:<10} {:>3} classes  {:>5} examples  held-out accuracy {:.3}  temperature {:.2}",
                h.field,
                h.labels.len(),
                h.examples,
                h.heldout_accuracy,
                h.temperature
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl RunSummary {
    /// Counts a decided run.
    fn count(&mut self, r: &RunRecord) {
        self.decided += 1;
        *self
            .outcomes
            .entry(r.gate.outcome.as_str().to_string())
            .or_default() += 1;
        let stages = [
            r.triage
                .as_ref()
                .map(|s| ("triage", s.outcome, s.stats.host_calls)),
            r.reply
                .as_ref()
                .map(|s| ("reply", s.outcome, s.stats.host_calls)),
            r.escalation
                .as_ref()
                .map(|s| ("escalation", s.outcome, s.stats.host_calls)),
        ];
        for (stage, outcome, calls) in stages.into_iter().flatten() {
            if let StageOutcome::Fault(kind) = outcome {
                *self.faults.entry(format!("{stage}:{kind}")).or_default() += 1;
            }
            self.host_calls += u64::from(calls);
        }
        self.escalated += usize::from(r.escalation.as_ref().is_some_and(|s| s.proposal.is_some()));
        self.abstained += usize::from(r.reply.as_ref().is_some_and(|s| {
            matches!(
                s.proposal,
                Some(deskhost_protocol::proposal::ReplyProposal::Abstain(_))
            )
        }));
    }
}

#[derive(Default)]
struct RunSummary {
    decided: usize,
    already: usize,
    failed: usize,
    outcomes: BTreeMap<String, usize>,
    faults: BTreeMap<String, usize>,
    escalated: usize,
    abstained: usize,
    host_calls: u64,
}

async fn run(dir: &Path, args: RunArgs) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let pipeline = ws.pipeline().await?;
    // A promotion or rollback during a long run takes effect for the tickets after it.
    let watcher = lifecycle::watch(ws.clone(), pipeline.clone(), Duration::from_millis(200));
    let mut rejected = 0;
    let mut work: Vec<(String, u32)> = Vec::new();
    let mut out = std::io::stdout().lock();
    if let Some(file) = &args.file {
        let jsonl::Parsed {
            records: tickets,
            rejected: bad,
        } = read_jsonl::<TicketInput>(file, TicketInput::check)?;
        rejected += bad.len();
        for b in &bad {
            note!("{b}");
        }
        let valid: Vec<TicketInput> = tickets.into_iter().map(|(_, t)| t).collect();
        for ingested in ws.store.ingest_tickets(&valid).await? {
            if ingested.pending {
                work.push((ingested.id, ingested.version));
            } else {
                let line = RunLine::AlreadyDecided {
                    ticket_id: ingested.id,
                    ticket_version: ingested.version,
                };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            }
        }
    } else if !args.pending {
        bail!("give a tickets file (JSON Lines), or --pending to decide what earlier runs left");
    }
    // Claim before deciding: a worker or another `run` on the same store skips what this
    // process holds, and this one skips what they hold.
    let mut claimed = Vec::with_capacity(work.len());
    let claims = ws
        .store
        .claim(pipeline.worker(), &work, pipeline.lease())
        .await?;
    for ((id, version), claim) in work.into_iter().zip(claims) {
        if claim == Claim::Claimed {
            claimed.push((id, version));
        } else {
            let line = unclaimed_line(&id, version, Some(&claim));
            if let RunLine::Error { error, .. } = &line {
                note!("{error}");
            }
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        }
    }
    if args.pending {
        claimed.extend(
            ws.store
                .claim_next(pipeline.worker(), u32::MAX, pipeline.lease())
                .await?,
        );
    }
    let work = claimed;
    let keeper = pipeline.keep_leases();
    let concurrency = args
        .concurrency
        .or((ws.config.pipeline.concurrency > 0).then_some(ws.config.pipeline.concurrency))
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(2, |n| n.get()));
    let progress = progress_bar(work.len(), "tickets");

    let started = Instant::now();
    let mut summary = RunSummary::default();
    let pipeline = &pipeline;
    let mut results = futures::stream::iter(work.iter().cloned())
        .map(|(id, version)| async move { pipeline.decide_claimed_line(&id, version).await })
        .buffered(concurrency.max(1));
    while let Some(line) = results.next().await {
        progress.inc(1);
        match &line {
            RunLine::AlreadyDecided { .. } => summary.already += 1,
            RunLine::Decided(record) => summary.count(record),
            RunLine::Error {
                ticket_id, error, ..
            } => {
                summary.failed += 1;
                note!("ticket {ticket_id}: {error}");
            }
        }
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    progress.finish_and_clear();
    watcher.abort();
    keeper.abort();
    let secs = started.elapsed().as_secs_f64();
    note!(
        "decided {} tickets in {:.2}s ({:.1} tickets/s){}{}",
        summary.decided,
        secs,
        summary.decided as f64 / secs.max(1e-9),
        if summary.already > 0 {
            format!(", {} already decided", summary.already)
        } else {
            String::new()
        },
        if summary.failed > 0 {
            format!(", {} failed (still pending)", summary.failed)
        } else {
            String::new()
        },
    );
    let outcomes: Vec<String> = summary
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    note!(
        "  gate: {}",
        if outcomes.is_empty() {
            "-".into()
        } else {
            outcomes.join(", ")
        }
    );
    note!(
        "  escalations {}, reply abstentions {}",
        summary.escalated,
        summary.abstained
    );
    let faults: Vec<String> = summary
        .faults
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    note!(
        "  plugin faults: {}",
        if faults.is_empty() {
            "none".into()
        } else {
            faults.join(", ")
        }
    );
    if summary.decided > 0 {
        note!(
            "  audited host calls per ticket: {:.2}",
            summary.host_calls as f64 / summary.decided as f64
        );
    }
    if rejected > 0 {
        note!("  {rejected} input line(s) rejected (see above); fix them and run again");
    }
    Ok(if summary.failed > 0 {
        ExitCode::FAILURE
    } else if rejected > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn progress_bar(len: usize, what: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}} {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

async fn eval(dir: &Path, args: EvalArgs, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let (records, rejected) = deskhost::eval::read_records(&args.file, args.limit)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    for r in &rejected {
        note!("{r}; line skipped");
    }
    if records.is_empty() {
        bail!("{} has no usable records", args.file.display());
    }
    let mut pipeline = ws.pipeline().await?;
    let runtime = pipeline.runtime.clone();
    let load = |path: &Path| -> Result<std::sync::Arc<deskhost::runtime::LoadedPlugin>> {
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
    let options = deskhost::eval::EvalOptions {
        fields: args.fields.clone(),
        target_precision: args.target_precision,
        manual_seconds: args.manual_seconds,
        concurrency: args.concurrency,
        ..deskhost::eval::EvalOptions::default()
    };
    let dataset = args.file.display().to_string();
    let runs = if args.compare.is_some() { 2 } else { 1 };
    let bar = progress_bar(records.len() * runs, "records");
    let tick = || bar.inc(1);
    let (report, results) = deskhost::eval::evaluate(
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
            let (report_b, results_b) = deskhost::eval::evaluate(
                &other,
                &dataset,
                &records,
                rejected.len(),
                &options,
                &tick,
            )
            .await;
            Some(deskhost::eval::compare(
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
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| ws.dir.join("reports").join(format!("eval-{stem}")));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let summary = deskhost::eval::report::text(&report, comparison.as_ref());
    let full = json!({ "report": report, "comparison": comparison });
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_vec_pretty(&full)?,
    )?;
    std::fs::write(
        out_dir.join("report.html"),
        deskhost::eval::report::html(&report, comparison.as_ref()),
    )?;
    std::fs::write(out_dir.join("summary.txt"), &summary)?;
    if json {
        print_json(&full)?;
    } else {
        out!("{summary}");
        out!("report: {}", out_dir.join("report.html").display());
    }
    Ok(if rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn serve(dir: &Path, args: ServeArgs) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let pipeline = ws.pipeline().await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let watcher = lifecycle::watch(
        ws.clone(),
        pipeline.clone(),
        Duration::from_millis(args.watch_ms.max(10)),
    );
    let concurrency = if ws.config.pipeline.concurrency > 0 {
        ws.config.pipeline.concurrency
    } else {
        2 * std::thread::available_parallelism().map_or(2, |n| n.get())
    };
    out!("listening on http://{addr}");
    std::io::stdout().flush()?;
    deskhost::api::serve(listener, ws, pipeline, concurrency, shutdown_signal()).await?;
    watcher.abort();
    note!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn replay(dir: &Path, args: ReplayArgs, json: bool) -> Result<ExitCode> {
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
    let report = deskhost::replay::replay(
        &ws,
        &runtime,
        &args.run_id,
        candidate.as_ref(),
        args.export.as_deref(),
    )
    .await?;
    if json {
        print_json(&json!(report))?;
    } else {
        out!(
            "replay of {} (ticket {} v{})",
            report.run_id,
            report.ticket_id,
            report.ticket_version
        );
        for s in &report.stages {
            let verdict = if s.identical {
                "identical output".to_string()
            } else {
                format!("{} difference(s)", s.differences.len())
            };
            out!(
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
                out!("      {}: {} → {}", d.path, d.recorded, d.replayed);
            }
        }
        if let Some(dir) = &args.export {
            out!("fixtures written to {}", dir.display());
        }
    }
    let all_identical = report.stages.iter().all(|s| s.identical);
    Ok(if all_identical || args.plugin.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

async fn plugin(dir: &Path, cmd: PluginCommand, json: bool) -> Result<ExitCode> {
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
            let mut all = deskhost::plugin_test::TestReport::default();
            for d in &dirs {
                let r = deskhost::plugin_test::run_dir(&ws, &runtime, &plugin, d, repeat).await?;
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

fn unreachable_list() -> Result<ExitCode> {
    bail!("internal: `plugin list` and `plugin new` are dispatched before `plugin`")
}

fn plugin_new(
    name: &str,
    lang: deskhost::scaffold::Lang,
    kind: PolicyKind,
    dir: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let files = deskhost::scaffold::new_plugin(&dir, name, lang, kind)?;
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
            deskhost::manifest::WIT_VERSION
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

fn print_change(c: &lifecycle::SlotChange, json: bool) -> Result<ExitCode> {
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

async fn review_list(dir: &Path, status: StatusFilter, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let filter = match status {
        StatusFilter::All => None,
        StatusFilter::Open => Some(ReviewStatus::Open),
        StatusFilter::Approved => Some(ReviewStatus::Approved),
        StatusFilter::Rejected => Some(ReviewStatus::Rejected),
    };
    let items = ws.store.review_items(filter).await?;
    if json {
        print_json(&json!(items))?;
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{} review item(s) ({})",
        items.len(),
        filter.map_or("all", ReviewStatus::as_str)
    );
    for item in &items {
        let codes: Vec<&str> = item.reasons.iter().map(|r| r.code.as_str()).collect();
        out!(
            "{}  {:<8} v{}  {}",
            item.id,
            deskhost::sanitize::field(&item.ticket_id),
            item.ticket_version,
            codes.join(", ")
        );
        for r in &item.reasons {
            out!("    - {}", deskhost::sanitize::field(&r.detail));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit_command(dir: &Path, cmd: AuditCommand, json: bool) -> Result<ExitCode> {
    if let AuditCommand::Keygen { path } = &cmd {
        let public = audit::checkpoint::keygen(path)?;
        let text = audit::checkpoint::public_key_text(&public);
        if json {
            print_json(&json!({ "path": path, "public_key": text }))?;
        } else {
            out!("wrote {} (mode 600); public key {text}", path.display());
            out!(
                "add to deskhost.toml:\n[audit]\nsigning_key = \"{}\"",
                path.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let AuditCommand::VerifyExport { file, public_key } = &cmd {
        let key = public_key
            .as_deref()
            .map(audit::checkpoint::parse_public_key)
            .transpose()?;
        let report = audit::verify_export(file, key.as_ref()).map_err(anyhow::Error::msg)?;
        if json {
            print_json(&json!(report))?;
        }
        if let Some(problem) = &report.problem {
            note!("export BROKEN: {problem}");
            return Ok(ExitCode::FAILURE);
        }
        if !json {
            out!(
                "export intact: {} records chain, {} signed checkpoints match",
                report.records,
                report.checkpoints
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ws = Workspace::open(dir).await?;
    match cmd {
        AuditCommand::Keygen { .. } | AuditCommand::VerifyExport { .. } => {
            bail!("internal: handled above")
        }
        AuditCommand::Verify {
            checkpoint,
            public_key,
        } => {
            let key = match &public_key {
                Some(text) => Some(audit::checkpoint::parse_public_key(text)?),
                None => ws.audit_public_key()?,
            };
            let mut external = Vec::new();
            for file in &checkpoint {
                external.extend(audit::read_checkpoints(file).map_err(anyhow::Error::msg)?);
            }
            if !external.is_empty() && key.is_none() {
                bail!(
                    "checkpoints can only be checked against a trusted public key: pass --public-key ed25519:... or set [audit] public_key or signing_key in deskhost.toml"
                );
            }
            let expect = ws
                .store
                .checkpointer()
                .map(|_| ws.config.audit.checkpoint_every_records);
            let report =
                audit::verify_all(ws.store.pool(), key.as_ref(), &external, expect).await?;
            if json {
                print_json(&json!(report))?;
            }
            if let Some(problem) = report.first_problem() {
                note!("{problem}");
                let more = report.checkpoints.problems.len().saturating_sub(1)
                    + report.decisions.as_ref().map_or(0, |d| d.problems.len());
                if more > 0 && report.chain.broken.is_none() {
                    for p in report
                        .checkpoints
                        .problems
                        .iter()
                        .skip(1)
                        .chain(report.decisions.iter().flat_map(|d| d.problems.iter()))
                        .take(20)
                    {
                        note!("  also: {p}");
                    }
                }
                return Ok(ExitCode::FAILURE);
            }
            if !json {
                out!(
                    "audit chain intact: {} records, last seq {}",
                    report.chain.records,
                    report.chain.last_seq
                );
                if let Some(d) = &report.decisions {
                    out!(
                        "decisions intact: {} runs, {} ticket versions and {} ticket states match their audit records",
                        d.runs,
                        d.ticket_versions,
                        d.ticket_states
                    );
                }
                let c = &report.checkpoints;
                match (&c.public_key, c.stored + c.external) {
                    (_, 0) => out!(
                        "checkpoints: none (without signed checkpoints a rebuilt chain cannot be told apart; see `deskhost audit keygen`)"
                    ),
                    (None, n) => out!(
                        "checkpoints: {n} not verified: no public key (set [audit] in deskhost.toml or pass --public-key)"
                    ),
                    (Some(k), _) => out!(
                        "checkpoints: {} match the chain ({} stored, {} given; the last covers record {}), key {k}",
                        c.matched,
                        c.stored,
                        c.external,
                        c.last_seq.unwrap_or(0)
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint { out } => {
            let Some(checkpointer) = ws.store.checkpointer() else {
                bail!(
                    "no signing key: create one with `deskhost audit keygen PATH` (outside the workspace) and set [audit] signing_key = \"PATH\" in {}",
                    ws.config_path().display()
                );
            };
            let cp = audit::sign_now(ws.store.pool(), checkpointer.key()).await?;
            ws.store.published(Some(cp.clone()));
            if let Some(path) = &out {
                audit::checkpoint::append_to_log(path, &cp)?;
            }
            if json {
                print_json(&json!(cp))?;
            } else {
                out!("{}", serde_json::to_string(&cp)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { out, from } => {
            let written = match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    audit::export(ws.store.pool(), from, &mut w).await?
                }
                None => {
                    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                    audit::export(ws.store.pool(), from, &mut w).await?
                }
            };
            if let Some(path) = &out {
                note!("exported {written} records to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn plugin_list(dir: &Path, json: bool) -> Result<ExitCode> {
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
