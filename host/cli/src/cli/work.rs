//! `deskhost ingest`, `deskhost worker`, `deskhost db`: the work queue and the store behind it.

use crate::cli::render::{Lines, Render, show};
use anyhow::Result;
use clap::{Args, Subcommand};
use deskhost_engine::db::{self, Migrations};
use deskhost_engine::jsonl;
use deskhost_engine::records::TicketInput;
use deskhost_engine::worker::{self, WorkerOptions};
use deskhost_engine::workspace::Workspace;
use deskhost_protocol::run::RunLine;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct IngestArgs {
    /// Tickets (JSON Lines). Each new content becomes a pending version for `worker` or
    /// `run --pending`.
    pub file: PathBuf,
}

#[derive(Args)]
pub struct WorkerArgs {
    /// Versions decided at once (default: [pipeline] concurrency, else 32 x CPUs).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Versions claimed per round.
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
    /// Exit once nothing is pending (instead of waiting for more).
    #[arg(long)]
    pub exit_when_idle: bool,
    /// Longest wait between looks at the queue when idle, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
}

#[derive(Subcommand)]
pub enum DbCommand {
    /// Upgrade the store's schema to this binary's (back it up first).
    Migrate,
    /// Where the store is, its backend, schema version and queue.
    Status,
}

/// `deskhost ingest FILE`: stores tickets and queues new versions; decides nothing.
pub async fn ingest(dir: &Path, args: IngestArgs, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let parsed = jsonl::read(&args.file, TicketInput::check)?;
    for b in &parsed.rejected {
        note!("{b}");
    }
    let tickets: Vec<TicketInput> = parsed.records.into_iter().map(|(_, t)| t).collect();
    let ingested = ws.store.ingest_tickets(&tickets).await?;
    let queued = ingested.iter().filter(|i| i.new_version).count();
    if json {
        let mut out = std::io::stdout().lock();
        for i in &ingested {
            writeln!(out, "{}", serde_json::to_string(i)?)?;
        }
    } else {
        out!(
            "ingested {} tickets: {queued} new versions queued, {} unchanged",
            ingested.len(),
            ingested.len() - queued
        );
    }
    Ok(if parsed.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        note!(
            "{} lines rejected (named above); the others are stored",
            parsed.rejected.len()
        );
        ExitCode::from(2)
    })
}

/// `deskhost worker`: decides pending work until stopped (SIGTERM/SIGINT finish the round in
/// flight) or, with `--exit-when-idle`, until nothing is pending.
pub async fn worker(
    dir: &Path,
    args: WorkerArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    let pipeline = ws.pipeline().await?;
    let watcher =
        deskhost_engine::lifecycle::watch(ws.clone(), pipeline.clone(), Duration::from_millis(200));
    let concurrency = args.concurrency.unwrap_or_else(|| ws.config.concurrency());
    let options = WorkerOptions {
        concurrency,
        batch: args.batch,
        exit_when_idle: args.exit_when_idle,
        idle_poll: Duration::from_millis(args.poll_ms.max(10)),
    };
    note!(
        "worker {} on {} ({}), {concurrency} at once",
        pipeline.worker().as_str(),
        ws.store.location(),
        ws.store.backend().as_str()
    );
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    let mut write_error = None;
    let summary = worker::run(&pipeline, &options, shutdown, |line| {
        if let RunLine::Error {
            ticket_id, error, ..
        } = line
        {
            note!("ticket {ticket_id}: {error}");
        }
        let written = serde_json::to_string(line)
            .map_err(anyhow::Error::from)
            .and_then(|l| writeln!(out, "{l}").map_err(anyhow::Error::from));
        if let Err(e) = written {
            write_error.get_or_insert(e);
        }
    })
    .await?;
    watcher.abort();
    if let Some(e) = write_error {
        return Err(e);
    }
    let secs = started.elapsed().as_secs_f64();
    note!(
        "worker stopped: decided {} ({:.1}/s), {} already decided elsewhere, {} failed",
        summary.decided,
        summary.decided as f64 / secs.max(1e-9),
        summary.already,
        summary.failed
    );
    Ok(ExitCode::SUCCESS)
}

/// `deskhost db migrate|status`.
pub async fn db_command(dir: &Path, cmd: DbCommand, json: bool) -> Result<ExitCode> {
    let migrations = match cmd {
        DbCommand::Migrate => Migrations::Apply,
        DbCommand::Status => Migrations::CreateOnly,
    };
    let ws = Workspace::open_with(dir, migrations).await?;
    let backend = ws.store.backend();
    let pending = ws.store.pending_count().await?;
    let version = db::schema_version(backend);
    show(
        &DbStatus {
            location: ws.store.location().to_string(),
            backend: backend.as_str(),
            schema_version: version,
            pending,
        },
        json,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `db status` and `db migrate`: where the store is and what it holds.
#[derive(serde::Serialize)]
pub struct DbStatus {
    location: String,
    backend: &'static str,
    schema_version: i64,
    pending: u64,
}

impl Render for DbStatus {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "{} store at {}: schema version {}, {} ticket versions pending",
            self.backend,
            self.location,
            self.schema_version,
            self.pending
        );
        Ok(())
    }
}
