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
    let concurrency = if ws.config.pipeline.concurrency > 0 {
        ws.config.pipeline.concurrency
    } else {
        2 * std::thread::available_parallelism().map_or(2, |n| n.get())
    };
    if !addr.ip().is_loopback() && args.allowed_hosts.is_empty() {
        note!(
            "note: listening on {addr} beyond loopback, but only requests addressed to localhost are accepted; pass --allowed-host NAME for the name clients use"
        );
    }
    out!("listening on http://{addr}");
    std::io::stdout().flush()?;
    let options = deskhost_server::ServerOptions {
        concurrency,
        allowed_hosts: args.allowed_hosts,
        max_body_bytes: args.max_body_bytes,
    };
    deskhost_server::serve(listener, ws, pipeline, options, shutdown_signal()).await?;
    watcher.abort();
    note!("stopped");
    Ok(ExitCode::SUCCESS)
}
