//! Altering or deleting audit rows makes `deskhost audit verify` fail and name the record.

use super::support::{Ws, two_tickets};

async fn tamper(ws: &Ws, sql: &'static str) {
    let db = ws.db().await;
    // The triggers refuse this; an attacker with the file drops them first.
    for &stmt in ws.drop_audit_triggers().iter().chain([&sql]) {
        sqlx::query(stmt)
            .execute(&db)
            .await
            .unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    db.close().await;
}

fn decided() -> Ws {
    let ws = Ws::trained();
    let (out, _) = ws.run(&two_tickets());
    assert_eq!(out.code, 0, "{out:?}");
    let ok = ws.cmd(&["audit", "verify"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("audit chain intact"), "{}", ok.stdout);
    ws
}

#[tokio::test]
async fn the_audit_log_refuses_updates() {
    let ws = decided();
    let db = ws.db().await;
    let err = sqlx::query("UPDATE audit SET payload = '{}' WHERE seq = 3")
        .execute(&db)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("append-only"), "{err}");
}

#[tokio::test]
async fn an_altered_record_is_named() {
    let ws = decided();
    tamper(
        &ws,
        "UPDATE audit SET payload = payload || ' ' WHERE seq = 5",
    )
    .await;
    let out = ws.cmd(&["audit", "verify"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("record 5") && out.stderr.contains("Altered"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_deleted_record_is_named() {
    let ws = decided();
    tamper(&ws, "DELETE FROM audit WHERE seq = 4").await;
    let out = ws.cmd(&["audit", "verify"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("record 5") && out.stderr.contains("Missing"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_deleted_tail_is_detected() {
    let ws = decided();
    tamper(
        &ws,
        "DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)",
    )
    .await;
    let out = ws.cmd(&["audit", "verify"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("TailRemoved"), "{}", out.stderr);
}
