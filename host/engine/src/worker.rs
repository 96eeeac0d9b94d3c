//! A worker: claims pending ticket versions from the store's work queue, decides them, and
//! waits for more. Any number of workers (processes, machines) share one store: a claim is
//! a lease, so no version is decided by two of them at once, and a crashed worker's versions
//! are taken over when its leases run out (at once on the same machine). Commits are
//! exactly-once whatever happens to leases (the committer only writes a pending version).
//!
//! An idle worker wakes at once when its own process queues work (`serve`'s ingest); on
//! PostgreSQL it also sleeps on `LISTEN deskhost_work` (a trigger notifies on every
//! enqueue, from any process); otherwise it looks again after `idle_poll`.

use crate::pipeline::Pipeline;
use crate::store::StoreError;
use deskhost_protocol::run::RunLine;
use futures::StreamExt;
use std::future::Future;
use std::time::Duration;

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Versions decided at once.
    pub concurrency: usize,
    /// Versions claimed per round (at least `concurrency`).
    pub batch: u32,
    /// Stop when nothing is pending anywhere (not merely nothing claimable).
    pub exit_when_idle: bool,
    /// Longest wait between looks at the queue when idle.
    pub idle_poll: Duration,
}

/// What a worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Versions decided and committed.
    pub decided: u64,
    /// Versions another worker committed first.
    pub already: u64,
    /// Versions that failed (still pending).
    pub failed: u64,
}

/// Runs until `shutdown` resolves (finishing the round in flight) or, with
/// `exit_when_idle`, until the queue is empty. Every line goes to `on_line` as it is decided.
pub async fn run(
    pipeline: &Pipeline,
    options: &WorkerOptions,
    shutdown: impl Future<Output = ()>,
    mut on_line: impl FnMut(&RunLine),
) -> Result<WorkerSummary, StoreError> {
    let store = &pipeline.services.store;
    let mut wake = store.work_signal().await;
    let keeper = pipeline.keep_leases();
    let mut summary = WorkerSummary::default();
    let concurrency = options.concurrency.max(1);
    let batch = options
        .batch
        .max(u32::try_from(concurrency).unwrap_or(u32::MAX));
    tokio::pin!(shutdown);
    let result = loop {
        // Shutdown is looked at before a claim, never raced against one: a claim dropped
        // after its transaction committed would leave its versions leased to no one until
        // the lease ran out (seen as a flaky drain test once the committer moved threads).
        if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
            break Ok(());
        }
        let claimed = store
            .claim_next(pipeline.worker(), batch, pipeline.lease())
            .await;
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        if claimed.is_empty() {
            if options.exit_when_idle {
                match store.pending_count().await {
                    Ok(0) => break Ok(()),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            }
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                _ = wake.wait(options.idle_poll) => {},
            }
            continue;
        }
        // The round in flight finishes even when shutdown is asked for: its versions are
        // claimed, and leaving them would only delay them by a lease.
        // The round's versions read back in a few statements rather than one each (a
        // failed read leaves each decision to read its own).
        let read = match store.tickets(&claimed).await {
            Ok(read) => read,
            Err(_) => vec![None; claimed.len()],
        };
        let mut lines = futures::stream::iter(claimed.into_iter().zip(read))
            .map(|((id, version), read)| pipeline.decide_claimed_in_task(id, version, read))
            .buffer_unordered(concurrency);
        let mut progressed = false;
        while let Some(line) = lines.next().await {
            match &line {
                RunLine::Decided(_) => summary.decided += 1,
                RunLine::AlreadyDecided { .. } => summary.already += 1,
                RunLine::Error { .. } => summary.failed += 1,
            }
            progressed |= !matches!(line, RunLine::Error { .. });
            on_line(&line);
        }
        if !progressed {
            // Only failures (a store or plugin problem): do not spin on them.
            tokio::time::sleep(options.idle_poll).await;
        }
    };
    keeper.abort();
    result.map(|()| summary)
}
