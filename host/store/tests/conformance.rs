//! Store conformance: one suite, run against SQLite and against a real PostgreSQL (started
//! by the test itself; see tests/support/postgres.rs). Every test takes a fresh store of
//! each backend and must behave the same on both.

// Test code: a failed `expect` is the test failing, with its message.
#![allow(clippy::expect_used)]

#[path = "../../../tests/support/postgres.rs"]
mod postgres;

use deskhost_protocol::records::{ArticleRecord, CustomerRecord, TicketInput};
use deskhost_store::audit::{self, AuditEntry};
use deskhost_store::db::{Backend, DbError, Location, Migrations, schema_version};
use deskhost_store::store::{Claim, Store, StoreError, Upsert, WorkerId, unix_ms};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

/// A fresh store of each available backend, with its label.
async fn stores() -> Vec<(&'static str, Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Store::open(&dir.path().join("conformance.db"))
        .await
        .expect("open sqlite");
    let mut out = vec![("sqlite", sqlite, Some(dir))];
    if let Some(server) = postgres::shared() {
        let url = server.database("conformance");
        let pg = Store::connect(&Location::Url(url), 16, Migrations::CreateOnly)
            .await
            .expect("open postgres");
        out.push(("postgres", pg, None));
    }
    out
}

/// Runs `body` once per backend, naming the backend when it fails.
macro_rules! conformance {
    ($name:ident, |$store:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for (backend, $store, _dir) in stores().await {
                let outcome = tokio::spawn(async move { $body }).await;
                if let Err(e) = outcome {
                    panic!("{} on {backend}: {e}", stringify!($name));
                }
            }
        }
    };
}

fn ticket(id: &str, body: &str) -> TicketInput {
    serde_json::from_value(
        json!({"id": id, "subject": "Subject", "body": body, "customer_id": "C-1"}),
    )
    .expect("ticket")
}

fn worker(n: u32) -> WorkerId {
    WorkerId::new(format!("conformance-host:{}:w{n}", 4_000_000 + n))
}

const LEASE: Duration = Duration::from_secs(60);

/// Asserts the audit chain holds and every committed digest matches its tables; returns
/// what the decision check counted.
async fn intact(store: &Store) -> audit::committed::DecisionReport {
    let chain = audit::verify(store.pool()).await.expect("verify chain");
    assert_eq!(chain.broken, None);
    let decisions = audit::committed::verify(store.pool())
        .await
        .expect("verify rows");
    assert_eq!(decisions.problems, Vec::<String>::new());
    decisions
}

conformance!(
    tickets_keep_every_content_version_and_queue_each_once,
    |store| {
        let first = store
            .ingest_tickets(&[ticket("T-1", "a"), ticket("T-2", "b")])
            .await
            .expect("ingest");
        assert!(
            first
                .iter()
                .all(|i| i.version == 1 && i.new_version && i.pending)
        );
        let again = store
            .ingest_tickets(&[ticket("T-1", "a"), ticket("T-2", "b, edited")])
            .await
            .expect("ingest again");
        assert_eq!((again[0].version, again[0].new_version), (1, false));
        assert_eq!((again[1].version, again[1].new_version), (2, true));
        let latest = store
            .latest_ticket("T-2")
            .await
            .expect("read")
            .expect("some");
        assert_eq!(
            (latest.version, latest.input.body.as_str()),
            (2, "b, edited")
        );
        let v1 = store.ticket("T-2", 1).await.expect("read").expect("some");
        assert_eq!(v1.input.body, "b");
        assert_eq!(store.pending_count().await.expect("count"), 3);
        assert!(store.ticket("T-9", 1).await.expect("read").is_none());
        // Many versions in one read, in the order asked.
        let read = store
            .tickets(&[("T-2".into(), 2), ("T-9".into(), 1), ("T-2".into(), 1)])
            .await
            .expect("batch read");
        let bodies: Vec<Option<&str>> = read
            .iter()
            .map(|t| t.as_ref().map(|t| t.input.body.as_str()))
            .collect();
        assert_eq!(bodies, [Some("b, edited"), None, Some("b")]);
        // One import naming a ticket several times reads as imports one after another.
        let repeated = store
            .ingest_tickets(&[
                ticket("T-3", "x"),
                ticket("T-3", "x"),
                ticket("T-3", "y"),
                ticket("T-1", "a"),
                ticket("T-3", "y"),
            ])
            .await
            .expect("ingest repeats");
        let seen: Vec<(&str, u32, bool, bool)> = repeated
            .iter()
            .map(|i| (i.id.as_str(), i.version, i.new_version, i.pending))
            .collect();
        assert_eq!(
            seen,
            [
                ("T-3", 1, true, true),
                ("T-3", 1, false, true),
                ("T-3", 2, true, true),
                ("T-1", 1, false, true),
                ("T-3", 2, false, true),
            ]
        );
        let decided = vec![("T-1".to_string(), 1)];
        assert_eq!(
            store
                .claim(&worker(1), &decided, LEASE)
                .await
                .expect("claim"),
            [Claim::Claimed]
        );
        let bundle = queue_and_note("T-1");
        deskhost_store::commit::write_all(&store, &[&bundle])
            .await
            .expect("decide T-1");
        let after = store
            .ingest_tickets(&[ticket("T-1", "a")])
            .await
            .expect("ingest decided");
        assert_eq!(
            (after[0].version, after[0].new_version, after[0].pending),
            (1, false, false),
            "an unchanged, decided version is not pending"
        );
        let v2 = store.ticket("T-3", 2).await.expect("read").expect("some");
        assert_eq!(v2.input.body, "y");
        assert_eq!(store.pending_count().await.expect("count"), 4);
        intact(&store).await;
    }
);

conformance!(
    concurrent_ingests_lose_nothing_and_keep_the_chain,
    |store| {
        // Many callers at once (as API requests are): each gets its own answer, a ticket two
        // callers send with the same content is stored once, and the chain verifies.
        let mut tasks = Vec::new();
        for n in 0..24u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mine = ticket(&format!("C-{n}"), &format!("body {n}"));
                let shared = ticket("SHARED", "the same for everyone");
                store.ingest_tickets(&[mine, shared]).await.expect("ingest")
            }));
        }
        let mut new_shared = 0;
        for (n, t) in tasks.into_iter().enumerate() {
            let out = t.await.expect("task");
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].id, format!("C-{n}"));
            assert_eq!(
                (out[0].version, out[0].new_version, out[0].pending),
                (1, true, true)
            );
            assert_eq!((out[1].id.as_str(), out[1].version), ("SHARED", 1));
            new_shared += usize::from(out[1].new_version);
        }
        assert_eq!(
            new_shared, 1,
            "the shared ticket is new to exactly one caller"
        );
        assert_eq!(store.pending_count().await.expect("count"), 25);
        assert_eq!(intact(&store).await.ticket_versions, 25);
    }
);

conformance!(
    a_claimed_version_is_held_until_released_or_expired,
    |store| {
        store
            .ingest_tickets(&[ticket("T-1", "a")])
            .await
            .expect("ingest");
        let version = vec![("T-1".to_string(), 1)];
        let (a, b) = (worker(1), worker(2));
        assert_eq!(
            store.claim(&a, &version, LEASE).await.expect("claim"),
            [Claim::Claimed]
        );
        // The holder may claim again (it extends); another worker may not.
        assert_eq!(
            store.claim(&a, &version, LEASE).await.expect("claim"),
            [Claim::Claimed]
        );
        match store
            .claim(&b, &version, LEASE)
            .await
            .expect("claim")
            .as_slice()
        {
            [Claim::Held { owner, until_ms }] => {
                assert_eq!(owner, a.as_str());
                assert!(*until_ms > unix_ms());
            }
            other => panic!("expected held, got {other:?}"),
        }
        assert!(
            store
                .claim_next(&b, 10, LEASE)
                .await
                .expect("next")
                .is_empty()
        );
        store.release(&a, "T-1", 1).await.expect("release");
        assert_eq!(
            store
                .claim(&b, &version, Duration::from_millis(1))
                .await
                .expect("claim"),
            [Claim::Claimed]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        // b's lease ran out: a takes it over.
        assert_eq!(
            store.claim_next(&a, 10, LEASE).await.expect("next"),
            version
        );
        let unknown = store
            .claim(&a, &[("T-404".to_string(), 1)], LEASE)
            .await
            .expect("claim");
        assert_eq!(unknown, [Claim::Unknown]);
    }
);

conformance!(
    tickets_ingested_for_a_waiting_caller_are_its_own_until_the_lease_ends,
    |store| {
        let (a, b) = (worker(1), worker(2));
        let got = store
            .ingest_tickets_claimed(&[ticket("T-1", "a"), ticket("T-2", "b")], &a, LEASE)
            .await
            .expect("ingest");
        assert!(got.iter().all(|i| i.new_version && i.pending), "{got:?}");
        // No other worker takes them: not by scanning the queue, not by name.
        assert!(
            store
                .claim_next(&b, 10, LEASE)
                .await
                .expect("next")
                .is_empty()
        );
        let one = [("T-1".to_string(), 1)];
        assert!(matches!(
            store.claim(&b, &one, LEASE).await.expect("claim").as_slice(),
            [Claim::Held { owner, .. }] if owner == a.as_str()
        ));
        assert_eq!(
            store.claim(&a, &one, LEASE).await.expect("claim"),
            [Claim::Claimed]
        );
        // A version stored before is not claimed again by ingesting it; a new one is.
        let again = store
            .ingest_tickets_claimed(&[ticket("T-2", "b"), ticket("T-1", "changed")], &b, LEASE)
            .await
            .expect("ingest");
        assert_eq!(
            again
                .iter()
                .map(|i| (i.id.as_str(), i.version, i.new_version))
                .collect::<Vec<_>>(),
            [("T-2", 1, false), ("T-1", 2, true)]
        );
        assert!(matches!(
            store
                .claim(&a, &[("T-1".to_string(), 2)], LEASE)
                .await
                .expect("claim")
                .as_slice(),
            [Claim::Held { owner, .. }] if owner == b.as_str()
        ));
        // A lease that ran out frees the version for anyone.
        store
            .ingest_tickets_claimed(&[ticket("T-3", "c")], &a, Duration::from_millis(1))
            .await
            .expect("ingest");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            store.claim_next(&b, 10, LEASE).await.expect("next"),
            [("T-3".to_string(), 1)]
        );
    }
);

conformance!(renewed_leases_outlive_their_first_term, |store| {
    store
        .ingest_tickets(&[ticket("T-1", "a"), ticket("T-2", "b")])
        .await
        .expect("ingest");
    let (a, b) = (worker(1), worker(2));
    let claimed = store
        .claim_next(&a, 10, Duration::from_millis(300))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    assert_eq!(store.renew_leases(&a, LEASE).await.expect("renew"), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store
            .claim_next(&b, 10, LEASE)
            .await
            .expect("next")
            .is_empty()
    );
});

conformance!(
    a_dead_local_workers_claims_are_taken_over_at_once,
    |store| {
        store
            .ingest_tickets(&[ticket("T-1", "a"), ticket("T-2", "b")])
            .await
            .expect("ingest");
        // A process of this machine that no longer exists (pid far above pid_max).
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        let dead = WorkerId::new(format!("{}:99999999:deadbeef", host.trim()));
        let t1 = vec![("T-1".to_string(), 1)];
        assert_eq!(store.claim_next(&dead, 1, LEASE).await.expect("claim"), t1);
        // Its claim ends at once; another machine's worker with the same pid is not assumed dead.
        let remote = WorkerId::new("elsewhere:99999999:cafebabe");
        assert_eq!(
            store
                .claim_next(&remote, 10, LEASE)
                .await
                .expect("claim")
                .len(),
            2
        );
        assert!(
            store
                .claim_next(&worker(1), 10, LEASE)
                .await
                .expect("claim")
                .is_empty()
        );
    }
);

conformance!(concurrent_claims_never_overlap_and_miss_nothing, |store| {
    let tickets: Vec<TicketInput> = (0..200)
        .map(|i| ticket(&format!("T-{i:03}"), "x"))
        .collect();
    store.ingest_tickets(&tickets).await.expect("ingest");
    let mut tasks = Vec::new();
    for n in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let me = worker(n);
            let mut mine = Vec::new();
            loop {
                let got = store.claim_next(&me, 7, LEASE).await.expect("claim");
                if got.is_empty() {
                    break mine;
                }
                mine.extend(got);
            }
        }));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for t in tasks {
        let mine = t.await.expect("task");
        total += mine.len();
        seen.extend(mine);
    }
    assert_eq!(total, 200, "a version was claimed twice");
    assert_eq!(seen.len(), 200);
});

conformance!(
    customers_and_articles_move_versions_only_on_change,
    |store| {
        let c: CustomerRecord =
            serde_json::from_value(json!({"id": "C-1", "name": "Ana", "tier": "gold"})).expect("c");
        assert_eq!(
            store.upsert_customer(&c).await.expect("upsert"),
            (Upsert::Inserted, 1)
        );
        assert_eq!(
            store.upsert_customer(&c).await.expect("upsert"),
            (Upsert::Unchanged, 1)
        );
        let mut changed = c.clone();
        changed.name = Some("Ana B".into());
        assert_eq!(
            store.upsert_customer(&changed).await.expect("upsert"),
            (Upsert::Updated, 2)
        );
        let (read, version) = store.customer("C-1").await.expect("read").expect("some");
        assert_eq!((read.name.as_deref(), version), (Some("Ana B"), 2));
        assert_eq!(store.customer_count().await.expect("count"), 1);

        let a: ArticleRecord = serde_json::from_value(json!({
            "id": "KB-1", "title": "Refunds", "body": "How refunds work.", "language": "en",
            "collection": "billing"
        }))
        .expect("article");
        assert_eq!(
            store.upsert_article(&a).await.expect("upsert"),
            (Upsert::Inserted, 1)
        );
        let mut edited = a.clone();
        edited.body = "How refunds work, edited.".into();
        assert_eq!(
            store.upsert_article(&edited).await.expect("upsert"),
            (Upsert::Updated, 2)
        );
        let all = store.articles().await.expect("articles");
        assert_eq!(
            (all.len(), all[0].body.as_str()),
            (1, "How refunds work, edited.")
        );

        assert_eq!(store.meta("k").await.expect("meta"), None);
        store.set_meta("k", "v1").await.expect("meta");
        store.set_meta("k", "v2").await.expect("meta");
        assert_eq!(store.meta("k").await.expect("meta").as_deref(), Some("v2"));
    }
);

conformance!(concurrent_audit_appends_never_fork_the_chain, |store| {
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let entry = AuditEntry {
                    run_id: None,
                    kind: "conformance".into(),
                    payload: json!({"writer": n, "i": i}).into(),
                };
                store.append_audit(&[entry]).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let report = audit::verify(store.pool()).await.expect("verify");
    assert_eq!(report.broken, None);
    assert_eq!((report.records, report.last_seq), (80, 80));
});

conformance!(the_audit_log_refuses_updates_and_deletes, |store| {
    // Ingest appends an audit record and a ticket_state_log row.
    store
        .ingest_tickets(&[ticket("T-1", "a")])
        .await
        .expect("ingest");
    for sql in [
        "UPDATE audit SET payload = '{}' WHERE seq = 1",
        "DELETE FROM audit WHERE seq = 1",
        "UPDATE ticket_state_log SET status = 'x'",
        "DELETE FROM ticket_state_log",
    ] {
        let e = sqlx::query(sql)
            .execute(store.pool())
            .await
            .expect_err(sql)
            .to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
});

conformance!(ui_sessions_end_on_expiry_sign_out_and_revocation, |store| {
    use deskhost_protocol::review::Role;
    let (alice, alice_secret) = store
        .create_token("alice", Role::Reviewer)
        .await
        .expect("token");
    assert!(
        store
            .token_for(&alice_secret)
            .await
            .expect("lookup")
            .is_some()
    );
    let open = store.open_session(&alice, 3600).await.expect("open");
    let live = store
        .session_for(&open.secret)
        .await
        .expect("lookup")
        .expect("a fresh session is live");
    assert_eq!((live.token.name.as_str(), live.csrf.len()), ("alice", 64));
    assert_ne!(
        open.secret, live.csrf,
        "the cookie and the CSRF secret differ"
    );
    assert!(
        store
            .session_for(&"0".repeat(64))
            .await
            .expect("lookup")
            .is_none(),
        "an unknown secret opens nothing"
    );
    let expired = store.open_session(&alice, 0).await.expect("open");
    assert!(
        store
            .session_for(&expired.secret)
            .await
            .expect("lookup")
            .is_none()
    );
    store.close_session(&open.secret).await.expect("close");
    assert!(
        store
            .session_for(&open.secret)
            .await
            .expect("lookup")
            .is_none()
    );
    let again = store.open_session(&alice, 3600).await.expect("open");
    store.revoke_token("alice").await.expect("revoke");
    assert!(
        store
            .session_for(&again.secret)
            .await
            .expect("lookup")
            .is_none(),
        "revoking the token ends its sessions"
    );
});

/// A decision of `ticket_id` (run `run-TICKET`) that applied a queue and an internal note.
fn queue_and_note(ticket_id: &str) -> deskhost_store::commit::RunBundle {
    use deskhost_protocol::gate::Effect;
    deskhost_store::commit::RunBundle {
        run_id: format!("run-{ticket_id}"),
        ticket_id: ticket_id.into(),
        ticket_version: 1,
        started_at: "2026-12-02T00:00:00Z".into(),
        outcome: "applied".into(),
        inputs: json!({}).into(),
        result: json!({}).into(),
        stages: vec![],
        effects: vec![
            Effect::Queue {
                value: "billing".into(),
            },
            Effect::InternalNote {
                body: "note".into(),
            },
        ],
        assessment: None,
        status: "triaged".into(),
        review: None,
        shadows: vec![],
        audit: vec![],
    }
}

conformance!(
    one_batch_of_decisions_writes_what_one_by_one_would,
    |store| {
        use deskhost_protocol::gate::Effect;
        use deskhost_store::commit::{Committed, RunBundle, write_all};
        store
            .ingest_tickets(&[ticket("T-1", "first"), ticket("T-2", "other")])
            .await
            .expect("ingest");
        store
            .ingest_tickets(&[ticket("T-1", "second, edited")])
            .await
            .expect("ingest v2");
        let decide = |ticket_id: &str, version: u32, run: &str, queue: &str| RunBundle {
            run_id: run.into(),
            ticket_version: version,
            effects: vec![
                Effect::Queue {
                    value: queue.into(),
                },
                Effect::Tags {
                    values: vec![queue.into()],
                },
                Effect::InternalNote {
                    body: format!("note of {run}"),
                },
            ],
            ..queue_and_note(ticket_id)
        };
        let batch = [
            decide("T-1", 1, "run-a", "billing"),
            decide("T-2", 1, "run-b", "cards"),
            // Same version again in the same batch: the first decides it.
            decide("T-1", 1, "run-c", "fraud"),
            // The next version of T-1 starts from the state run-a left.
            decide("T-1", 2, "run-d", "refunds"),
        ];
        let refs: Vec<&RunBundle> = batch.iter().collect();
        let outcomes = write_all(&store, &refs).await.expect("write batch");
        assert_eq!(
            outcomes,
            [
                Committed::Written,
                Committed::Written,
                Committed::AlreadyDecided,
                Committed::Written
            ]
        );
        // A later batch cannot decide a version already done.
        let again = decide("T-2", 1, "run-e", "fraud");
        assert_eq!(
            write_all(&store, &[&again]).await.expect("second batch"),
            [Committed::AlreadyDecided]
        );
        let runs: Vec<(String, String)> =
            sqlx::query_as("SELECT run_id, ticket_id FROM runs ORDER BY run_id")
                .fetch_all(store.pool())
                .await
                .expect("runs");
        assert_eq!(
            runs,
            [
                ("run-a".to_string(), "T-1".to_string()),
                ("run-b".into(), "T-2".into()),
                ("run-d".into(), "T-1".into())
            ]
        );
        let (queue, tags): (Option<String>, String) =
            sqlx::query_as("SELECT queue, tags_json FROM ticket_state WHERE id = 'T-1'")
                .fetch_one(store.pool())
                .await
                .expect("state");
        assert_eq!(queue.as_deref(), Some("refunds"));
        assert_eq!(
            tags, r#"["billing","refunds"]"#,
            "run-d builds on run-a's tags"
        );
        let logged: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT run_id, queue FROM ticket_state_log WHERE ticket_id = 'T-1' ORDER BY seq",
        )
        .fetch_all(store.pool())
        .await
        .expect("state log");
        assert_eq!(
            logged,
            [
                (None, None),
                (None, None),
                (Some("run-a".to_string()), Some("billing".to_string())),
                (Some("run-d".into()), Some("refunds".into()))
            ]
        );
        let notes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes")
            .fetch_one(store.pool())
            .await
            .expect("notes");
        let effects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM effects")
            .fetch_one(store.pool())
            .await
            .expect("effects");
        assert_eq!((notes, effects), (3, 9));
        let pending: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT ticket_id, version, state FROM work_queue ORDER BY ticket_id, version",
        )
        .fetch_all(store.pool())
        .await
        .expect("work queue");
        assert!(pending.iter().all(|(_, _, s)| s == "done"), "{pending:?}");
        // Every digest the committed records carry matches the tables, and the chain holds.
        assert_eq!(intact(&store).await.runs, 3);
    }
);

conformance!(the_outbox_delivers_once_retries_and_dead_letters, |store| {
    use deskhost_protocol::outbox::OutboxState;
    use deskhost_store::commit::{Committer, RunBundle, StageRow};
    use deskhost_store::outbox::{Attempt, Incoming};
    // A ticket from a connector and one taken in directly; both decided with two effects.
    store
        .ingest_from(
            "rt",
            &[Incoming {
                external_id: "42".into(),
                ticket: ticket("rt:42", "Refund please"),
            }],
        )
        .await
        .expect("ingest from rt");
    store
        .ingest_tickets(&[ticket("T-1", "Refund please")])
        .await
        .expect("ingest");
    let committer = Committer::start(store.clone());
    for id in ["rt:42", "T-1"] {
        let proposal = json!({"category": {"value": "billing"}, "queue": {"value": "billing"}});
        committer
            .commit(RunBundle {
                stages: vec![StageRow {
                    stage: "triage".into(),
                    plugin: "triage-default@0.1.0".into(),
                    digest: "d".into(),
                    outcome: "ok".into(),
                    proposal: Some(proposal.into()),
                    fault: None,
                    stats: json!({}).into(),
                    transcript: json!([]).into(),
                    input: json!({}).into(),
                    output: None,
                }],
                ..queue_and_note(id)
            })
            .await
            .expect("commit");
    }
    let items = store.outbox_items(None, None, 100).await.expect("list");
    assert_eq!(
        items.len(),
        2,
        "only the connector's ticket goes back: {items:?}"
    );
    assert!(
        items
            .iter()
            .all(|i| i.external_id == "42" && i.origin == "run:run-rt:42")
    );

    let w = worker(1);
    let claimed = store
        .claim_outbox("rt", &w, 10, 60_000, 0)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| !c.uncertain && c.item.attempts == 1));
    assert!(
        store
            .claim_outbox("rt", &worker(2), 10, 60_000, 0)
            .await
            .expect("claim")
            .is_empty(),
        "leased items are not claimed twice"
    );
    let (first, second) = (&claimed[0].item.id, &claimed[1].item.id);
    let delivered = store
        .finish_outbox(first, &Attempt::Delivered(Some("txn-1".into())), 2)
        .await
        .expect("finish");
    assert_eq!(delivered, OutboxState::Delivered);
    let failed = Attempt::Failed {
        error: "HTTP 503".into(),
        retry_at_ms: 0,
        permanent: false,
    };
    assert_eq!(
        store
            .finish_outbox(second, &failed, 2)
            .await
            .expect("finish"),
        OutboxState::Pending
    );
    let retried = store
        .claim_outbox("rt", &w, 10, 60_000, 0)
        .await
        .expect("claim");
    assert_eq!(retried.len(), 1);
    assert!(retried[0].uncertain, "an item tried before may have landed");
    assert_eq!(
        store
            .finish_outbox(second, &failed, 2)
            .await
            .expect("finish"),
        OutboxState::Dead,
        "the second failure of two allowed is dead-lettered"
    );
    let again = store
        .retry_outbox(second, "cli:ops")
        .await
        .expect("retry")
        .expect("item");
    assert_eq!((again.state, again.attempts), (OutboxState::Pending, 0));

    // A worker of this machine that died mid-send: its item is taken over once the request
    // it sent must have finished, and flagged uncertain.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let dead = WorkerId::new(format!("{}:4000123:dead", host.trim()));
    assert_eq!(
        store
            .claim_outbox("rt", &dead, 10, 600_000, 0)
            .await
            .expect("claim")
            .len(),
        1
    );
    assert!(
        store
            .claim_outbox("rt", &w, 10, 600_000, 60_000)
            .await
            .expect("claim")
            .is_empty(),
        "not before it settles"
    );
    let taken = store
        .claim_outbox("rt", &w, 10, 600_000, 0)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1);
    assert!(taken[0].uncertain);

    let status = store.connector_status("rt").await.expect("status");
    assert_eq!((status.backlog, status.delivered, status.dead), (1, 1, 0));
    store
        .set_connector_state(
            "rt",
            Some("2026-12-02 00:00:00"),
            None,
            Some("credentials refused"),
        )
        .await
        .expect("state");
    let status = store.connector_status("rt").await.expect("status");
    assert_eq!(status.cursor.as_deref(), Some("2026-12-02 00:00:00"));
    assert_eq!(status.paused.as_deref(), Some("credentials refused"));

    // Closed in the help desk with another category than proposed.
    let closed = store
        .record_close(
            "rt:42",
            "rt",
            &[
                ("category".into(), "how_to".into()),
                ("queue".into(), "billing".into()),
            ],
        )
        .await
        .expect("close");
    assert_eq!(closed.len(), 2);
    let accuracy = store.close_accuracy().await.expect("accuracy");
    assert_eq!(
        accuracy,
        vec![
            ("triage-default@0.1.0".into(), "category".into(), 1, 0),
            ("triage-default@0.1.0".into(), "queue".into(), 1, 1),
        ]
    );
});

conformance!(
    a_tickets_outbox_items_go_out_in_order_and_are_audited,
    |store| {
        use deskhost_protocol::outbox::{OutboxState, Outgoing};
        use deskhost_protocol::proposal::Sentiment;
        use deskhost_store::commit::{Committer, RunBundle};
        use deskhost_store::outbox::{Attempt, DELIVERY_ATTEMPT, Incoming, OUTBOX_RETRIED};
        let incoming: Vec<Incoming> = ["1", "2"]
            .iter()
            .map(|n| Incoming {
                external_id: (*n).into(),
                ticket: ticket(&format!("rt:{n}"), "Refund please"),
            })
            .collect();
        store.ingest_from("rt", &incoming).await.expect("ingest");
        let committer = Committer::start(store.clone());
        let assessment: Outgoing = serde_json::from_value(
            json!({"kind": "assessment", "sentiment": "negative", "confidence": 0.4321}),
        )
        .expect("assessment");
        for n in ["1", "2"] {
            committer
                .commit(RunBundle {
                    assessment: Some(assessment.clone()),
                    ..queue_and_note(&format!("rt:{n}"))
                })
                .await
                .expect("commit");
        }
        let mut items = store
            .outbox_items(Some("rt"), None, 100)
            .await
            .expect("list");
        items.reverse();
        let kinds: Vec<(&str, &str)> = items
            .iter()
            .map(|i| (i.ticket_id.as_str(), i.payload.kind()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("rt:1", "queue"),
                ("rt:1", "internal_note"),
                ("rt:1", "assessment"),
                ("rt:2", "queue"),
                ("rt:2", "internal_note"),
                ("rt:2", "assessment"),
            ]
        );
        assert!(matches!(
            &items[2].payload,
            Outgoing::Assessment(a) if a.sentiment == Sentiment::Negative && a.confidence == 0.4321
        ));

        // rt:1's first item fails and waits for its retry: the rest of rt:1 waits behind it,
        // rt:2 goes on.
        let w = worker(7);
        let claimed = store
            .claim_outbox("rt", &w, 10, 60_000, 0)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 6);
        let later = unix_ms() + 600_000;
        let failed = Attempt::Failed {
            error: "HTTP 503".into(),
            retry_at_ms: later,
            permanent: false,
        };
        store
            .finish_outbox(&claimed[0].item.id, &failed, 5)
            .await
            .expect("fail");
        for c in &claimed[1..3] {
            store.release_outbox(&c.item.id).await.expect("release");
        }
        store
            .finish_outbox(&claimed[3].item.id, &Attempt::Delivered(None), 5)
            .await
            .expect("deliver");
        for c in &claimed[4..] {
            store.release_outbox(&c.item.id).await.expect("release");
        }
        let next: Vec<String> = store
            .claim_outbox("rt", &w, 10, 60_000, 0)
            .await
            .expect("claim")
            .into_iter()
            .map(|c| format!("{} {}", c.item.ticket_id, c.item.payload.kind()))
            .collect();
        assert_eq!(
            next,
            ["rt:2 internal_note", "rt:2 assessment"],
            "rt:1 waits for its first item"
        );
        let released = store
            .outbox_item(&claimed[1].item.id)
            .await
            .expect("item")
            .expect("there");
        assert_eq!(
            (released.state, released.attempts),
            (OutboxState::Pending, 0),
            "a released item was not attempted"
        );
        // A dead item holds nothing up.
        let dead = Attempt::Failed {
            error: "HTTP 400".into(),
            retry_at_ms: 0,
            permanent: true,
        };
        store
            .finish_outbox(&claimed[0].item.id, &dead, 5)
            .await
            .expect("dead");
        let after: Vec<String> = store
            .claim_outbox("rt", &w, 10, 60_000, 0)
            .await
            .expect("claim")
            .into_iter()
            .map(|c| c.item.id)
            .collect();
        assert_eq!(
            after,
            [claimed[1].item.id.clone(), claimed[2].item.id.clone()]
        );
        store
            .retry_outbox(&claimed[0].item.id, "cli:ops")
            .await
            .expect("retry");

        // Each attempt and the operator's retry are in the audit chain.
        let kinds: Vec<(String, String)> =
            sqlx::query_as("SELECT kind, payload FROM audit WHERE kind IN ($1, $2) ORDER BY seq")
                .bind(DELIVERY_ATTEMPT)
                .bind(OUTBOX_RETRIED)
                .fetch_all(store.pool())
                .await
                .expect("audit");
        let states: Vec<String> = kinds
            .iter()
            .map(|(k, p)| {
                let v: serde_json::Value = serde_json::from_str(p).expect("payload");
                format!(
                    "{k} {}",
                    v["state"].as_str().or(v["actor"].as_str()).unwrap_or("?")
                )
            })
            .collect();
        assert_eq!(
            states,
            [
                "delivery-attempt pending",
                "delivery-attempt delivered",
                "delivery-attempt dead",
                "outbox-retried cli:ops",
            ]
        );
        let report = audit::verify(store.pool()).await.expect("verify");
        assert_eq!(report.broken, None);
    }
);

/// A database migrated to `upto` (an older binary's schema).
async fn old_database(backend: Backend, upto: i64) -> (Location, Option<tempfile::TempDir>) {
    let (location, dir, url) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("old.db");
            let url = format!("sqlite://{}?mode=rwc", path.display());
            (Location::File(path), Some(dir), url)
        }
        Backend::Postgres => {
            let Some(server) = postgres::shared() else {
                return (Location::Url(String::new()), None);
            };
            let url = server.database("old");
            (Location::Url(url.clone()), None, url)
        }
    };
    let source = tempfile::tempdir().expect("tempdir");
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend.as_str());
    for entry in std::fs::read_dir(migrations).expect("migrations") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().to_string();
        let version: i64 = name[..4].parse().expect("version");
        if version <= upto {
            std::fs::copy(entry.path(), source.path().join(&name)).expect("copy");
        }
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
    sqlx::migrate::Migrator::new(source.path())
        .await
        .expect("migrator")
        .run(&pool)
        .await
        .expect("old migrations");
    pool.close().await;
    (location, dir)
}

#[tokio::test]
async fn an_older_schema_is_refused_until_migrated_and_a_newer_one_always() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (location, _dir) = old_database(backend, 3).await;
        if matches!(&location, Location::Url(u) if u.is_empty()) {
            continue;
        }
        let refused = Store::connect(&location, 2, Migrations::CreateOnly).await;
        match refused {
            Err(StoreError::Db(DbError::Outdated {
                found, expected, ..
            })) => {
                assert_eq!((found, expected), (3, schema_version(backend)));
            }
            other => panic!("{backend:?}: expected Outdated, got {other:?}"),
        }
        let message = Store::connect(&location, 2, Migrations::CreateOnly)
            .await
            .expect_err("outdated")
            .to_string();
        assert!(message.contains("deskhost db migrate"), "{message}");
        let store = Store::connect(&location, 2, Migrations::Apply)
            .await
            .expect("migrate");
        store
            .ingest_tickets(&[ticket("T-1", "a")])
            .await
            .expect("works after migrating");
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (9999, 'from the future', TRUE, $1, 0)",
        )
        .bind(vec![0u8; 48])
        .execute(store.pool())
        .await
        .expect("forge a newer version");
        let newer = Store::connect(&location, 2, Migrations::Apply).await;
        assert!(
            matches!(
                newer,
                Err(StoreError::Db(DbError::TooNew { found: 9999, .. }))
            ),
            "{backend:?}: {newer:?}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_database_names_where_and_what_to_check() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let location = Location::Url(format!("postgres://desk:s3cret@127.0.0.1:{port}/deskhost"));
    let e = Store::connect(&location, 1, Migrations::CreateOnly)
        .await
        .expect_err("nothing listens")
        .to_string();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(e.contains("pg_isready"), "{e}");
    assert!(!e.contains("s3cret"), "the password leaked: {e}");
}
