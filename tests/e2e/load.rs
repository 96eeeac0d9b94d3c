//! `deskhost serve` under a bounded local load, for the record (opt-in: `cargo test --release
//! -p deskhost --test e2e serve_under_load -- --ignored --nocapture`). SQLite workspace, all
//! three plugins, the server's own background worker. Prints ingest requests/s (202, closed
//! loop with 1 and 4 connections), ingest-to-decision latency at a fixed offered rate (from
//! the store's timestamps: `tickets.ingested_at` → `runs.finished_at`), `?wait=true` request
//! latency, and the server's RSS idle and under load. Asserts only that every ticket was
//! decided; no time is asserted.

use super::support::{Server, Ws};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn tickets(ws: &Ws, prefix: &str, n: usize) -> Vec<serde_json::Value> {
    let demo = ws.demo_tickets();
    (0..n)
        .map(|i| {
            let mut t = demo[i % demo.len()].clone();
            t["id"] = format!("{prefix}-{i}").into();
            t
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Posts `tickets` one per request over `conns` connections, each waiting for its answer;
/// returns the elapsed time and each request's latency in ms, sorted.
async fn closed_loop(
    server: &Server,
    token: &str,
    conns: usize,
    tickets: Vec<serde_json::Value>,
    wait: bool,
) -> (Duration, Vec<f64>) {
    let tickets = Arc::new(tickets);
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!(
        "{}/v1/tickets{}",
        server.url,
        if wait { "?wait=true" } else { "" }
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (tickets, next, url) = (tickets.clone(), next.clone(), url.clone());
        let client = server.client_with(token);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(t) = tickets.get(i) else { break };
                let t0 = Instant::now();
                let r = client
                    .post(&url)
                    .json(t)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(r.status().is_success(), "{:?}", r.status());
                let _ = r.bytes().await;
                latencies.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let elapsed = started.elapsed();
    all.sort_by(f64::total_cmp);
    (elapsed, all)
}

/// Offers `rate` tickets per second for `n` tickets (each request on its own task, at most
/// 64 in flight).
async fn open_loop(server: &Server, token: &str, rate: u32, tickets: Vec<serde_json::Value>) {
    let client = server.client_with(token);
    let url = format!("{}/v1/tickets", server.url);
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let mut tasks = Vec::new();
    for t in tickets {
        tick.tick().await;
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(&url)
                .json(&t)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(r.status().is_success(), "{:?}", r.status());
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time with a fraction.
fn instant_of(text: &str) -> f64 {
    let whole = text.get(..19).map(|s| format!("{s}Z")).unwrap_or_default();
    let secs = deskhost_protocol::digest::parse_rfc3339_secs(&whole)
        .unwrap_or_else(|| panic!("not a time: {text}"));
    let frac: f64 = text
        .get(19..)
        .map(|f| f.trim_end_matches('Z'))
        .filter(|f| !f.is_empty())
        .map_or(0.0, |f| format!("0{f}").parse().unwrap_or(0.0));
    secs as f64 + frac
}

async fn drained(ws: &Ws) -> Duration {
    let db = ws.db().await;
    let started = Instant::now();
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM work_queue WHERE state = 'pending'")
                .fetch_one(&db)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        if pending == 0 {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(600), "not drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ingest-to-decision of the tickets whose id starts with `prefix`, ms, sorted.
async fn decision_latencies(ws: &Ws, prefix: &str) -> Vec<f64> {
    let db = ws.db().await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.ingested_at, r.finished_at FROM tickets t
         JOIN runs r ON r.ticket_id = t.id AND r.ticket_version = t.version
         WHERE t.id LIKE $1",
    )
    .bind(format!("{prefix}-%"))
    .fetch_all(&db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut ms: Vec<f64> = rows
        .iter()
        .map(|(a, b)| (instant_of(b) - instant_of(a)) * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; run it by name"]
async fn serve_under_load() {
    let ws = Ws::trained();
    let server = ws.serve(&[]);
    let pid = server.pid();
    let ingest = ws.token("load", "ingest");
    // Warm up: the first decisions compile nothing (cache) but fill the instance pool.
    closed_loop(&server, &ingest, 1, tickets(&ws, "W", 30), true).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid, "VmRSS:");
    println!(
        "serve RSS idle (after 30 warm-up decisions): {:.1} MiB",
        idle as f64 / 1024.0
    );
    println!(
        "\n{:<44} {:>10} {:>9} {:>9}",
        "phase", "req/s", "p50 ms", "p99 ms"
    );
    for conns in [1, 4] {
        let n = 1000;
        let prefix = format!("I{conns}");
        let (elapsed, lat) =
            closed_loop(&server, &ingest, conns, tickets(&ws, &prefix, n), false).await;
        let drain = drained(&ws).await;
        println!(
            "{:<44} {:>10.0} {:>9.2} {:>9.2}",
            format!("ingest 202, {conns} conn, {n} tickets"),
            n as f64 / elapsed.as_secs_f64(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        println!(
            "{:<44} {:>10.0}",
            "  decided by the background worker, per s",
            n as f64 / (elapsed + drain).as_secs_f64()
        );
    }
    for rate in [50u32, 150] {
        let prefix = format!("R{rate}");
        let n = (rate * 10) as usize;
        open_loop(&server, &ingest, rate, tickets(&ws, &prefix, n)).await;
        drained(&ws).await;
        let lat = decision_latencies(&ws, &prefix).await;
        assert_eq!(lat.len(), n, "every ticket decided once");
        println!(
            "{:<44} {:>10} {:>9.2} {:>9.2}",
            format!("ingest→decision at {rate}/s offered, {n} tickets"),
            rate,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
    for conns in [1, 4] {
        let n = 500;
        let prefix = format!("S{conns}");
        let (elapsed, lat) =
            closed_loop(&server, &ingest, conns, tickets(&ws, &prefix, n), true).await;
        println!(
            "{:<44} {:>10.0} {:>9.2} {:>9.2}",
            format!("?wait=true, {conns} conn, {n} tickets"),
            n as f64 / elapsed.as_secs_f64(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
    println!(
        "\nserve RSS after load: {:.1} MiB, peak (VmHWM): {:.1} MiB",
        rss_kib(pid, "VmRSS:") as f64 / 1024.0,
        rss_kib(pid, "VmHWM:") as f64 / 1024.0
    );
}
