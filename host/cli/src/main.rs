//! The `deskhost` command line.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use deskhost_engine::audit;
use deskhost_engine::jsonl;
use deskhost_engine::lifecycle;
use deskhost_engine::manifest::{Manifest, ManifestFiles, PolicyKind};
use deskhost_engine::pipeline::unclaimed_line;
use deskhost_engine::records::{self, ArticleRecord, TicketInput};
use deskhost_engine::store::{Claim, Upsert};
use deskhost_engine::workspace::{self, Workspace, import_record};
use deskhost_protocol::run::{ReviewStatus, RunLine, RunRecord, StageOutcome};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use std::time::Instant;

/// mimalloc instead of glibc's allocator: the host makes many small, short-lived allocations
/// on every host call and commit (JSON text, transcript records). A host call with its audit
/// record went from ~1.0 to ~0.75 µs (`cargo bench -p deskhost-engine --bench micro --
/// host_call`, which uses it too). mimalloc v2 without transparent huge pages (the workspace's
/// features): v3 with them measured 0.89 µs and doubled `serve`'s idle RSS (44 → 91 MiB);
/// this one costs ~11 MiB (55 MiB), a `run` of 1,462 tickets peaks at ~101 MB (was 82–90).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` that returns the error instead of panicking (e.g. on a closed pipe) and shows
/// control characters from tickets and plugins as escapes instead of sending them to the
/// terminal.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), "{}", deskhost_engine::sanitize::terminal(&format!($($arg)*)))?
    };
}

/// `eprintln!` with the same sanitizing as [`out!`].
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!("{}", deskhost_engine::sanitize::terminal(&format!($($arg)*)))
    };
}

/// One line of a [`cli::render::Render::human`] text: `say!(out, "{x}")`.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))?
    };
}

mod cli;

use cli::render::{Lines, Render, show};
use cli::{
    audit::*, connector::*, data::*, eval::*, plugin::*, replay::*, review::*, run::*, serve::*,
    token::*, train::*,
};

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
    /// The review queue: list, approve, reject, assign.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// API tokens for `serve`: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Installed plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Help-desk connectors: status, one sync pass, or keep running.
    #[command(subcommand)]
    Connector(ConnectorCommand),
    /// What goes back to the help desks: list, retry dead items.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Measure whole flows on this machine against native code or their targets.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
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
        Command::Review(cmd) => review(&ws_dir, cmd, cli.json).await,
        Command::Token(cmd) => token(&ws_dir, cmd, cli.json).await,
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
        Command::Connector(cmd) => connector(&ws_dir, cmd, cli.json).await,
        Command::Outbox(cmd) => outbox(&ws_dir, cmd, cli.json).await,
        Command::Bench(cmd) => cli::bench::bench(&ws_dir, cmd, cli.json).await,
    }
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
