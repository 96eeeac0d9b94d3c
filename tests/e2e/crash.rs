//! Crash safety: `deskhost run` killed with SIGKILL at arbitrary points of a batch, several
//! times, then `run --pending`: every ticket version is decided exactly once, nothing a run
//! writes is left without its run, and the audit log (chain and decisions) verifies.

use super::support::Ws;
use std::time::Duration;

/// Enough that a run takes about a second here (~2,500 decisions/s with start-up), so most
/// kill points (80-500 ms) land mid-batch.
const TICKETS: usize = 2_000;

#[tokio::test]
async fn sigkill_mid_batch_loses_and_doubles_nothing() {
    let ws = Ws::trained();
    let file = ws.many_tickets("K", TICKETS, "batch.jsonl");
    // Kill points spread over start-up, ingest and deciding (a fixed seed: reproducible).
    let mut seed: u64 = 0x5eed_cafe;
    let mut kills = Vec::new();
    let db = ws.db().await;
    for _ in 0..8 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let ms = 80 + (seed >> 33) % 420;
        let mut child = ws.spawn(&["run", file.to_str().unwrap_or("")]);
        std::thread::sleep(Duration::from_millis(ms));
        let finished = child.try_wait().ok().flatten().is_some();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let decided: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
            .fetch_one(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        kills.push((ms, finished, decided));
    }
    db.close().await;
    eprintln!("kills (ms after start, had finished, runs stored): {kills:?}");
    assert!(
        kills.iter().filter(|k| !k.1).count() >= 4,
        "most kills must land mid-batch: {kills:?}"
    );
    let out = ws.cmd(&["run", "--pending"]);
    assert!(out.code == 0, "{out:?}");

    let db = ws.db().await;
    let scalar = async |sql: &str| -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    assert_eq!(
        scalar("SELECT COUNT(*) FROM tickets").await,
        TICKETS as i64,
        "every ticket stored once"
    );
    assert_eq!(
        scalar("SELECT COUNT(*) FROM work_queue WHERE state = 'pending'").await,
        0
    );
    assert_eq!(
        scalar("SELECT COUNT(*) FROM runs").await,
        TICKETS as i64,
        "one run per ticket version"
    );
    assert_eq!(
        scalar("SELECT COUNT(*) FROM (SELECT ticket_id, ticket_version FROM runs GROUP BY 1, 2 HAVING COUNT(*) > 1) AS doubled").await,
        0,
        "no version decided twice"
    );
    for (table, sql) in [
        (
            "effects",
            "SELECT COUNT(*) FROM effects e LEFT JOIN runs r ON r.run_id = e.run_id WHERE r.run_id IS NULL",
        ),
        (
            "review_items",
            "SELECT COUNT(*) FROM review_items e LEFT JOIN runs r ON r.run_id = e.run_id WHERE r.run_id IS NULL",
        ),
        (
            "run_stages",
            "SELECT COUNT(*) FROM run_stages e LEFT JOIN runs r ON r.run_id = e.run_id WHERE r.run_id IS NULL",
        ),
    ] {
        assert_eq!(scalar(sql).await, 0, "no orphan {table}");
    }
    db.close().await;
    let verify = ws.cmd(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert!(
        verify
            .stdout
            .contains(&format!("decisions intact: {TICKETS} runs")),
        "{}",
        verify.stdout
    );
}
