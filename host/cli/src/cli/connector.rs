//! `deskhost connector` and `deskhost outbox`: help desks in, decisions out.

use crate::*;
use deskhost_connectors::{Connector, DeliverySummary, IntakeSummary};
use deskhost_engine::worker::{self, WorkerOptions};
use deskhost_engine::workspace::Workspace;
use deskhost_protocol::outbox::{ConnectorStatus, OutboxItem, OutboxState};
use std::time::Duration;

#[derive(Subcommand)]
pub(crate) enum ConnectorCommand {
    /// Each connector's cursor, last sync, errors, pause and outbox backlog.
    Status {
        /// One connector (default: all).
        name: Option<String>,
    },
    /// One pass: take in what changed, decide it, deliver what is due.
    Sync {
        /// One connector (default: all).
        name: Option<String>,
    },
    /// Keep syncing (and deciding) until stopped.
    Run {
        /// One connector (default: all).
        name: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum OutboxCommand {
    /// Outbox items, newest first.
    List {
        /// Only this connector's.
        #[arg(long)]
        connector: Option<String>,
        /// Only items in this state: pending, sending, delivered, skipped, dead.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send a dead (or skipped) item again.
    Retry {
        /// The item's id (ob_…).
        id: String,
        /// Who sends it again, for the audit log (default: $USER).
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
}

fn selected(ws: &Workspace, name: Option<&str>) -> Result<Vec<Connector>> {
    let all = deskhost_connectors::connectors(&ws.config)?;
    if all.is_empty() {
        anyhow::bail!(
            "no connector in deskhost.toml; add a [connectors.NAME] table (see the README, \"Help desks\")"
        );
    }
    match name {
        None => Ok(all),
        Some(n) => {
            let names: Vec<String> = all.iter().map(|c| c.name.clone()).collect();
            let one: Vec<Connector> = all.into_iter().filter(|c| c.name == n).collect();
            if one.is_empty() {
                anyhow::bail!(
                    "no connector {:?} in deskhost.toml (there are: {})",
                    deskhost_engine::sanitize::field(n),
                    names.join(", ")
                );
            }
            Ok(one)
        }
    }
}

#[derive(serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Statuses(Vec<ConnectorStatus>);

impl Render for Statuses {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        for s in &self.0 {
            say!(out, "{} ({} at {})", s.name, s.kind, s.base_url);
            say!(
                out,
                "  cursor {}, last sync {}",
                s.cursor.as_deref().unwrap_or("none yet"),
                s.last_sync_at.as_deref().unwrap_or("never")
            );
            say!(
                out,
                "  outbox: {} waiting{}, {} delivered, {} dead",
                s.backlog,
                s.oldest_waiting
                    .as_deref()
                    .map(|o| format!(" (oldest {o})"))
                    .unwrap_or_default(),
                s.delivered,
                s.dead
            );
            if let Some(p) = &s.paused {
                say!(out, "  PAUSED: {p}");
            }
            if let Some(e) = &s.last_error {
                say!(out, "  last error: {e}");
            }
        }
        Ok(())
    }
}

#[derive(serde::Serialize)]
pub(crate) struct Synced {
    connector: String,
    intake: IntakeSummary,
    decided: u64,
    delivery: DeliverySummary,
    status: ConnectorStatus,
    /// Seconds spent taking in, deciding and delivering.
    seconds: Phases,
}

#[derive(Default, serde::Serialize)]
pub(crate) struct Phases {
    intake: f64,
    decide: f64,
    deliver: f64,
}

impl Render for Synced {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "{}: read {} tickets ({} new versions, {} closed), decided {}, delivered {} ({} already there), skipped {}, retrying {}, dead {}",
            self.connector,
            self.intake.read,
            self.intake.new_versions,
            self.intake.closed,
            self.decided,
            self.delivery.delivered,
            self.delivery.already_there,
            self.delivery.skipped,
            self.delivery.retrying,
            self.delivery.dead
        );
        say!(
            out,
            "  took {:.2} s to take in, {:.2} s to decide, {:.2} s to deliver",
            self.seconds.intake,
            self.seconds.decide,
            self.seconds.deliver
        );
        if let Some(p) = &self.status.paused {
            say!(out, "  PAUSED: {p}");
        }
        Ok(())
    }
}

#[derive(serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Items(Vec<OutboxItem>);

impl Render for Items {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        if self.0.is_empty() {
            say!(out, "the outbox is empty");
        }
        for i in &self.0 {
            say!(
                out,
                "{} {} {} → {} #{} {} (attempts {}){}",
                i.id,
                i.state.as_str(),
                i.payload.kind(),
                i.connector,
                i.external_id,
                i.origin,
                i.attempts,
                i.last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }
}

async fn decide_pending(ws: &Workspace) -> Result<u64> {
    if ws.store.pending_count().await? == 0 {
        return Ok(0);
    }
    let pipeline = ws.pipeline().await?;
    let options = WorkerOptions {
        concurrency: ws.config.concurrency(),
        batch: 64,
        exit_when_idle: true,
        idle_poll: Duration::from_millis(50),
    };
    let summary = worker::run(&pipeline, &options, std::future::pending(), |line| {
        if let deskhost_protocol::run::RunLine::Error {
            ticket_id, error, ..
        } = line
        {
            note!("ticket {ticket_id}: {error}");
        }
    })
    .await?;
    Ok(summary.decided)
}

pub(crate) async fn connector(dir: &Path, cmd: ConnectorCommand, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    match cmd {
        ConnectorCommand::Status { name } => {
            let mut out = Vec::new();
            for c in selected(&ws, name.as_deref())? {
                out.push(c.status(&ws.store).await?);
            }
            show(&Statuses(out), json)?;
            Ok(ExitCode::SUCCESS)
        }
        ConnectorCommand::Sync { name } => {
            let mut failed = false;
            for c in selected(&ws, name.as_deref())? {
                let usable = match c.check_credentials(&ws.store).await {
                    Ok(ok) => ok,
                    Err(deskhost_connectors::Error::Store(e)) => return Err(e.into()),
                    Err(e) => {
                        note!(
                            "{}: {e}; the outbox keeps everything until it is back",
                            c.name
                        );
                        false
                    }
                };
                if !usable {
                    failed = true;
                    show(
                        &Synced {
                            connector: c.name.clone(),
                            intake: IntakeSummary::default(),
                            decided: 0,
                            delivery: DeliverySummary::default(),
                            status: c.status(&ws.store).await?,
                            seconds: Phases::default(),
                        },
                        json,
                    )?;
                    continue;
                }
                let t0 = std::time::Instant::now();
                let intake = c.intake(&ws.store).await?;
                let t1 = std::time::Instant::now();
                let decided = decide_pending(&ws).await?;
                let t2 = std::time::Instant::now();
                let delivery = c.deliver_due(&ws.store).await?;
                let seconds = Phases {
                    intake: (t1 - t0).as_secs_f64(),
                    decide: (t2 - t1).as_secs_f64(),
                    deliver: t2.elapsed().as_secs_f64(),
                };
                failed |= delivery.dead > 0;
                show(
                    &Synced {
                        connector: c.name.clone(),
                        intake,
                        decided,
                        delivery,
                        status: c.status(&ws.store).await?,
                        seconds,
                    },
                    json,
                )?;
            }
            Ok(if failed {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        ConnectorCommand::Run { name } => {
            let connectors = selected(&ws, name.as_deref())?;
            let pipeline = ws.pipeline().await?;
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let options = WorkerOptions {
                concurrency: ws.config.concurrency(),
                batch: 64,
                exit_when_idle: false,
                idle_poll: Duration::from_millis(200),
            };
            let decider = {
                let (pipeline, stop) = (pipeline.clone(), stopped(stop_rx.clone()));
                tokio::spawn(async move { worker::run(&pipeline, &options, stop, |_| {}).await })
            };
            let mut loops = Vec::new();
            for c in connectors {
                let (store, stop) = (ws.store.clone(), stopped(stop_rx.clone()));
                note!("connector {} ({}) running", c.name, c.config.base_url);
                loops.push(tokio::spawn(async move {
                    deskhost_connectors::run_loop(&c, &store, stop).await;
                }));
            }
            shutdown_signal().await;
            let _ = stop_tx.send(true);
            for l in loops {
                let _ = l.await;
            }
            let _ = decider.await;
            note!("connectors stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) async fn outbox(dir: &Path, cmd: OutboxCommand, json: bool) -> Result<ExitCode> {
    let ws = Workspace::open(dir).await?;
    match cmd {
        OutboxCommand::List {
            connector,
            state,
            limit,
        } => {
            let state: Option<OutboxState> = state
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e: String| anyhow::anyhow!("--state {e}"))?;
            let items = ws
                .store
                .outbox_items(connector.as_deref(), state, limit)
                .await?;
            show(&Items(items), json)?;
            Ok(ExitCode::SUCCESS)
        }
        OutboxCommand::Retry { id, actor } => match ws
            .store
            .retry_outbox(&id, &super::review::operator(actor)?)
            .await?
        {
            Some(item) => {
                if item.state != OutboxState::Pending {
                    note!(
                        "{} is {}: only dead or skipped items are sent again",
                        item.id,
                        item.state.as_str()
                    );
                }
                show(&Items(vec![item]), json)?;
                Ok(ExitCode::SUCCESS)
            }
            None => anyhow::bail!(
                "no outbox item {}; `deskhost outbox list --state dead` shows the dead ones",
                deskhost_engine::sanitize::field(&id)
            ),
        },
    }
}
