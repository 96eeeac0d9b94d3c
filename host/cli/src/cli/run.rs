//! `deskhost run`: decide tickets, one JSON line each.

use crate::*;

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Tickets (JSON Lines). Omit with --pending.
    file: Option<PathBuf>,
    /// Also decide tickets left pending by earlier runs.
    #[arg(long)]
    pending: bool,
    /// Tickets in flight at once (default: [pipeline] concurrency, else 8 per pooled
    /// instance). At most `[runtime] pool_instances` are inside a plugin at any moment; the
    /// others wait for an instance or for their commit.
    #[arg(long)]
    concurrency: Option<usize>,
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
pub(crate) struct RunSummary {
    decided: usize,
    already: usize,
    failed: usize,
    outcomes: BTreeMap<String, usize>,
    faults: BTreeMap<String, usize>,
    escalated: usize,
    abstained: usize,
    host_calls: u64,
}

pub(crate) async fn run(dir: &Path, args: RunArgs) -> Result<ExitCode> {
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
        .unwrap_or_else(|| ws.config.batch_concurrency());
    let progress = progress_bar(work.len(), "tickets");

    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let mut summary = RunSummary::default();
    // The claimed versions read back in a few statements rather than one per ticket; each
    // decided in its own task; `buffered` keeps the output in input order.
    let read = ws.store.tickets(&work).await?;
    let mut results = futures::stream::iter(work.iter().cloned().zip(read))
        .map(|((id, version), read)| pipeline.decide_claimed_in_task(id, version, read))
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
    // CPU of every thread over the same span, per decided ticket: steadier than the rate
    // on a machine shared with other work (the figure `README.md`'s Performance compares).
    // Counted in 1/100 s, so given only once there is enough of it to be within ~2 %.
    let cpu = match (cpu_started, cpu_seconds()) {
        (Some(a), Some(b)) if summary.decided > 0 && b - a >= 0.5 => {
            format!(", {:.0}us CPU each", (b - a) * 1e6 / summary.decided as f64)
        }
        _ => String::new(),
    };
    note!(
        "decided {} tickets in {:.2}s ({:.1} tickets/s{cpu}){}{}",
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

pub(crate) fn progress_bar(len: usize, what: &str) -> ProgressBar {
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

/// CPU time of the whole process so far (user and system, every thread), from
/// `/proc/self/stat` in the kernel's 1/100 s ticks; `None` where there is no such file.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; fields 14 and 15
    // (utime, stime) are the 12th and 13th after it.
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after.split_ascii_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}
