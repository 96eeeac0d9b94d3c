//! `deskhost serve`: the HTTP API, and the shutdown signal long-running commands share.

use crate::*;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// How often to look for promotions, rollbacks and changed plugin files, milliseconds.
    #[arg(long, default_value_t = 200)]
    watch_ms: u64,
    /// A host name clients may address this server by (besides localhost, 127.0.0.1 and
    /// ::1): needed when it listens beyond loopback. Repeatable.
    #[arg(long = "allowed-host")]
    allowed_hosts: Vec<String>,
    /// Largest request body, bytes (larger: 413).
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Background decisions at once (the server's own worker; it resumes whatever is
    /// pending at start). 0: none, for a server that only takes tickets in while
    /// `deskhost worker` processes decide them.
    #[arg(long)]
    workers: Option<usize>,
    /// Pending ticket versions beyond which ingest answers 429 with Retry-After (0: no
    /// limit).
    #[arg(long, default_value_t = 10_000)]
    max_pending: u64,
    /// Mark the review UI's session cookie `Secure`: use it when a TLS proxy serves the UI
    /// over HTTPS (browsers then never send the cookie over plain HTTP).
    #[arg(long)]
    secure_cookies: bool,
}

pub(crate) async fn shutdown_signal() {
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

pub(crate) async fn serve(dir: &Path, args: ServeArgs) -> Result<ExitCode> {
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
    let concurrency = ws.config.concurrency();
    if !addr.ip().is_loopback() && args.allowed_hosts.is_empty() {
        note!(
            "note: listening on {addr} beyond loopback, but only requests addressed to localhost are accepted; pass --allowed-host NAME for the name clients use"
        );
    }
    // One stop signal for both: the HTTP server stops taking requests and finishes those in
    // flight; the worker finishes the round it claimed. Then the process exits.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Help-desk connectors: intake and delivery beside the API (a bad configuration stops
    // the start, with the reason).
    let connectors: Vec<std::sync::Arc<deskhost_connectors::Connector>> =
        deskhost_connectors::connectors(&ws.config)?
            .into_iter()
            .map(std::sync::Arc::new)
            .collect();
    let connector_loops: Vec<_> = connectors
        .iter()
        .map(|c| {
            let (c, store, stop) = (c.clone(), ws.store.clone(), until_stopped(stopped.clone()));
            note!("connector {} ({})", c.name, c.config.base_url);
            tokio::spawn(async move { deskhost_connectors::run_loop(&c, &store, stop).await })
        })
        .collect();
    let workers = args.workers.unwrap_or(concurrency);
    let background = (workers > 0).then(|| {
        // Its own claimant id: a request that must answer with a decision waits for the
        // worker's claim instead of taking it for its own.
        let pipeline = pipeline.as_worker(deskhost_engine::store::WorkerId::another());
        let options = deskhost_engine::worker::WorkerOptions {
            concurrency: workers,
            batch: u32::try_from(workers * 2).unwrap_or(u32::MAX),
            exit_when_idle: false,
            idle_poll: Duration::from_millis(200),
        };
        let stop = until_stopped(stopped.clone());
        tokio::spawn(async move {
            deskhost_engine::worker::run(&pipeline, &options, stop, |line| {
                if let RunLine::Error {
                    ticket_id, error, ..
                } = line
                {
                    note!("background: ticket {ticket_id}: {error}");
                }
            })
            .await
        })
    });
    out!("listening on http://{addr}");
    note!("review UI: http://{addr}/ui/ (sign in with a reviewer token)");
    std::io::stdout().flush()?;
    let options = deskhost_server::ServerOptions {
        concurrency,
        allowed_hosts: args.allowed_hosts,
        max_body_bytes: args.max_body_bytes,
        max_pending: args.max_pending,
        secure_cookies: args.secure_cookies,
        connectors,
    };
    deskhost_server::serve(listener, ws, pipeline, options, until_stopped(stopped)).await?;
    if let Some(task) = background {
        match task.await {
            Ok(Ok(s)) => note!(
                "drained: {} decided in the background, {} already decided elsewhere, {} failed (still pending)",
                s.decided,
                s.already,
                s.failed
            ),
            Ok(Err(e)) => note!("the background worker stopped: {e}"),
            Err(e) => note!("the background worker stopped: {e}"),
        }
    }
    for l in connector_loops {
        let _ = l.await;
    }
    watcher.abort();
    note!("stopped");
    Ok(ExitCode::SUCCESS)
}
