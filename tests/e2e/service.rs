//! The service a team runs: every request is authenticated and checked before anything is
//! stored, and reviewers act on the queue over HTTP — approve with edits applies the held
//! effects and queues the reply, a second verdict is a conflict, and every action is in the
//! audit log under the reviewer's name. Real HTTP on 127.0.0.1:0 against `deskhost serve`.

use super::support::{Server, Ws};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn count(ws: &Ws, table: &str) -> i64 {
    let db = ws.db().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ticket(id: &str) -> Value {
    json!({"id": id, "subject": "Charged twice", "body": "Please refund the duplicate charge.", "customer_id": "C-1010"})
}

async fn status_and_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["code"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_authenticated_and_checked_before_anything_is_stored() {
    let ws = Ws::trained();
    let server = ws.serve(&[]);
    let ingest = ws.token("intake-bot", "ingest");
    let reviewer = ws.token("alice", "reviewer");
    let tickets_before = count(&ws, "tickets").await;
    let url = format!("{}/v1/tickets", server.url);
    let plain = reqwest::Client::new();

    let health = plain
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health.status(), StatusCode::OK, "health needs no token");
    let openapi: Value = plain
        .get(format!("{}/v1/openapi.json", server.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        openapi["openapi"], "3.0.3",
        "the API describes itself without a token"
    );

    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        ("no token", plain.post(&url).json(&ticket("A-1")), StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            "an unknown token",
            server.client_with("dh_000000000000000000000000000000000000000000000000").post(&url).json(&ticket("A-2")),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "a reviewer token ingesting",
            server.client_with(&reviewer).post(&url).json(&ticket("A-3")),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "another Host (DNS rebinding)",
            server.client_with(&ingest).post(&url).header("Host", "evil.example:8080").json(&ticket("A-4")),
            StatusCode::FORBIDDEN,
            "host_not_allowed",
        ),
        (
            "a page of another origin",
            server.client_with(&ingest).post(&url).header("Origin", "https://evil.example").json(&ticket("A-5")),
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
        ),
        (
            "a body over the limit",
            server
                .client_with(&ingest)
                .post(&url)
                .json(&json!({"id": "A-6", "subject": "s", "body": "x".repeat(2 << 20), "customer_id": "C-1010"})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (what, request, status, code) in cases {
        let got = status_and_code(request.send().await.unwrap_or_else(|e| panic!("{e}"))).await;
        assert_eq!(got, (status, code.to_string()), "{what}");
    }
    let plugins = server
        .client_with(&ingest)
        .get(format!("{}/v1/reviews", server.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plugins.status(),
        StatusCode::FORBIDDEN,
        "an ingest token reads no reviews"
    );
    assert_eq!(
        count(&ws, "tickets").await,
        tickets_before,
        "a refused request stored nothing"
    );

    // A revoked token stops working at once.
    ws.ok(&["token", "revoke", "intake-bot"]);
    let revoked = server
        .client_with(&ingest)
        .post(&url)
        .json(&ticket("A-7"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(count(&ws, "tickets").await, tickets_before);
    let listed = ws.ok(&["token", "list", "--json"]).json();
    assert!(
        listed
            .as_array()
            .is_some_and(|l| l.iter().all(|t| t.get("secret").is_none())),
        "secrets are never listed: {listed}"
    );
}

/// Posts the demo tickets with an ingest token; returns the review items they produced.
async fn decided_into_review(ws: &Ws, server: &Server) -> Vec<Value> {
    let ingest = ws.token("intake", "ingest");
    let lines: Value = server
        .client_with(&ingest)
        .post(format!("{}/v1/tickets?wait=true", server.url))
        .json(&ws.demo_tickets())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let in_review = lines.as_array().map_or(0, |l| {
        l.iter().filter(|r| !r["gate"]["review"].is_null()).count()
    });
    assert!(
        in_review >= 2,
        "the demo tickets put at least two in review: {lines}"
    );
    let reviewer = ws.token("queue-reader", "reviewer");
    // What a run stored is what the caller was answered, value for value.
    for line in lines.as_array().into_iter().flatten() {
        let run_id = line["run_id"].as_str().unwrap_or_default();
        let stored = server
            .get_json(&reviewer, &format!("/v1/runs/{run_id}"))
            .await;
        assert_eq!(&stored, line, "GET /v1/runs/{run_id}");
    }
    let items = server.get_json(&reviewer, "/v1/reviews").await;
    let items = items.as_array().cloned().unwrap_or_default();
    assert_eq!(
        items.len(),
        in_review,
        "every review outcome is in the queue"
    );
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_with_edits_over_http_and_the_help_desk_state_follows() {
    let ws = Ws::trained();
    let server = ws.serve(&[]);
    let items = decided_into_review(&ws, &server).await;
    let alice = ws.token("alice", "reviewer");
    let item = &items[0];
    let id = item["id"].as_str().unwrap_or_default();
    let ticket_id = item["ticket_id"].as_str().unwrap_or_default();
    let actions = format!("{}/v1/reviews/{id}/actions", server.url);

    // Bad edits are refused with what to send instead, and change nothing.
    let bad = server
        .client_with(&alice)
        .post(&actions)
        .json(&json!({"action": "approve", "edits": {"queue": "no-such-queue"}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(count(&ws, "review_actions").await, 0);

    let assigned = server
        .client_with(&alice)
        .post(&actions)
        .json(&json!({"action": "assign", "to": "bob"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(assigned.status(), StatusCode::OK);

    let approved: Value = server
        .client_with(&alice)
        .post(&actions)
        .json(&json!({"action": "approve", "edits": {"queue": "billing", "priority": "high", "reply": "We refunded the duplicate charge."}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(approved["status"], "approved", "{approved}");
    assert_eq!(
        approved["actor"], "alice",
        "the token's holder is the reviewer: {approved}"
    );
    assert!(
        approved["applied"]
            .as_array()
            .is_some_and(|a| a.contains(&json!({"kind": "queue", "value": "billing"}))),
        "the edited queue is applied: {approved}"
    );
    let message = approved["outbound_message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.starts_with("msg_"),
        "the reply is queued: {approved}"
    );

    let db = ws.db().await;
    let (queue, priority, status): (Option<String>, Option<String>, String) =
        sqlx::query_as("SELECT queue, priority, status FROM ticket_state WHERE id = $1")
            .bind(ticket_id)
            .fetch_one(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (queue.as_deref(), priority.as_deref(), status.as_str()),
        (Some("billing"), Some("high"), "approved")
    );
    let (body, state): (String, String) =
        sqlx::query_as("SELECT body, state FROM outbound_messages WHERE id = $1")
            .bind(&message)
            .fetch_one(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (body.as_str(), state.as_str()),
        ("We refunded the duplicate charge.", "pending")
    );

    // The item now shows who decided; a second verdict is a conflict that changes nothing.
    let shown = server.get_json(&alice, &format!("/v1/reviews/{id}")).await;
    assert_eq!(
        (
            shown["status"].clone(),
            shown["decided_by"].clone(),
            shown["assignee"].clone()
        ),
        (json!("approved"), json!("alice"), json!("bob"))
    );
    assert_eq!(
        shown["ticket"]["id"], ticket_id,
        "the item carries its ticket: {shown}"
    );
    let cited: Vec<Value> = shown["payload"]["reply"]["draft"]["citations"]
        .as_array()
        .map(|c| c.iter().map(|x| x["article_id"].clone()).collect())
        .unwrap_or_default();
    let articles: Vec<Value> = shown["articles"]
        .as_array()
        .map(|a| a.iter().map(|x| x["id"].clone()).collect())
        .unwrap_or_default();
    assert!(
        cited.iter().all(|c| articles.contains(c)),
        "every cited article's text comes with the item: {cited:?} vs {articles:?}"
    );
    let again = server
        .client_with(&alice)
        .post(&actions)
        .json(&json!({"action": "reject", "reason": "changed my mind"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        status_and_code(again).await,
        (StatusCode::CONFLICT, "review_conflict".into())
    );
    assert_eq!(
        count(&ws, "review_actions").await,
        2,
        "assign and approve only"
    );

    // The CLI sees the same queue, and the audit log holds every action and verifies.
    let cli = ws
        .ok(&["review", "list", "--status", "approved", "--json"])
        .json();
    assert_eq!(cli.as_array().map(Vec::len), Some(1), "{cli}");
    let actors: Vec<String> =
        sqlx::query_scalar("SELECT payload FROM audit WHERE kind = 'reviewed' ORDER BY seq")
            .fetch_all(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(actors.len(), 2);
    assert!(
        actors.iter().all(|p| p.contains("\"actor\":\"alice\"")),
        "{actors:?}"
    );
    ws.ok(&["audit", "verify"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reviewers_deciding_one_item_at_once_exactly_one_wins() {
    let ws = Ws::trained();
    let server = ws.serve(&[]);
    let items = decided_into_review(&ws, &server).await;
    let (alice, bob) = (ws.token("alice", "reviewer"), ws.token("bob", "reviewer"));
    for item in items.iter().take(2) {
        let actions = format!(
            "{}/v1/reviews/{}/actions",
            server.url,
            item["id"].as_str().unwrap_or_default()
        );
        let approve = server
            .client_with(&alice)
            .post(&actions)
            .json(&json!({"action": "approve"}))
            .send();
        let reject = server
            .client_with(&bob)
            .post(&actions)
            .json(&json!({"action": "reject", "reason": "wrong queue"}))
            .send();
        let (a, b) = tokio::join!(approve, reject);
        let mut statuses = [
            a.unwrap_or_else(|e| panic!("{e}")).status(),
            b.unwrap_or_else(|e| panic!("{e}")).status(),
        ];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    }
    let db = ws.db().await;
    let verdicts: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM review_actions WHERE action IN ('approve', 'reject')",
    )
    .fetch_one(&db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verdicts, 2, "one verdict per item");
    ws.ok(&["audit", "verify"]);
}

#[test]
fn the_cli_acts_on_the_queue_as_the_operator() {
    let ws = Ws::trained();
    ws.ok(&["run", &ws.file("tickets.jsonl")]);
    let items = ws.ok(&["review", "list", "--json"]).json();
    let id = items[0]["id"].as_str().unwrap_or_default().to_string();
    let hidden = ws.cmd(&["review", "approve", &id, "--as", "carol\u{1b}[2J"]);
    assert!(
        hidden.code != 0 && hidden.stderr.contains("`--as`"),
        "a name with a terminal escape is refused before anything is written: {hidden:?}"
    );
    let rejected = ws
        .ok(&[
            "review",
            "reject",
            &id,
            "--reason",
            "customer already answered",
            "--as",
            "carol",
            "--json",
        ])
        .json();
    assert_eq!(
        (rejected["status"].clone(), rejected["actor"].clone()),
        (json!("rejected"), json!("cli:carol"))
    );
    let again = ws.cmd(&["review", "approve", &id, "--as", "dave"]);
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains("already rejected by cli:carol"),
        "{again:?}"
    );
    let shown = ws.ok(&["review", "show", &id]);
    assert!(
        shown.stdout.contains("subject:") && shown.stdout.contains("why a person:"),
        "{shown:?}"
    );
    let detail = ws.ok(&["review", "show", &id, "--json"]).json();
    assert!(
        detail["ticket"]["body"].is_string(),
        "the ticket text is shown: {detail}"
    );
    let missing_show = ws.cmd(&["review", "show", "rv_missing"]);
    assert!(
        missing_show.stderr.contains("no review item rv_missing"),
        "{missing_show:?}"
    );
    let missing = ws.cmd(&["review", "approve", "rv_missing"]);
    assert!(
        missing.stderr.contains("no review item rv_missing"),
        "{missing:?}"
    );
    ws.ok(&["audit", "verify"]);
}

#[test]
fn verdicts_become_labels_a_report_and_training_data() {
    let ws = Ws::trained();
    ws.ok(&["run", &ws.file("tickets.jsonl")]);
    let empty = ws.ok(&["review", "report", "--json"]).json();
    assert_eq!(
        empty["fields"],
        json!([]),
        "no verdicts, no figures: {empty}"
    );
    let items = ws.ok(&["review", "list", "--json"]).json();
    let items = items.as_array().cloned().unwrap_or_default();
    let open_before = items.len();
    let with_triage: Vec<&Value> = items
        .iter()
        .filter(|i| !i["payload"]["triage"].is_null())
        .collect();
    assert!(with_triage.len() >= 3, "{items:?}");
    let id = |i: usize| {
        with_triage[i]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let proposed_queue = with_triage[1]["payload"]["triage"]["queue"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let other_queue = if proposed_queue == "billing" {
        "technical"
    } else {
        "billing"
    };
    ws.ok(&["review", "approve", &id(0), "--as", "erin"]);
    ws.ok(&[
        "review",
        "approve",
        &id(1),
        "--queue",
        other_queue,
        "--as",
        "erin",
    ]);
    ws.ok(&[
        "review",
        "reject",
        &id(2),
        "--reason",
        "not ours",
        "--as",
        "erin",
    ]);

    let report = ws.ok(&["review", "report", "--json"]).json();
    let queue = report["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["field"] == "queue").cloned())
        .unwrap_or_else(|| panic!("no queue figure: {report}"));
    assert_eq!(
        (queue["decided"].clone(), queue["unchanged"].clone()),
        (json!(3), json!(1)),
        "kept, edited, rejected: {report}"
    );
    assert_eq!(
        report["backlog"]["open"],
        json!(open_before - 3),
        "{report}"
    );
    assert!(
        report["automation"]["runs"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    let human = ws.ok(&["review", "report"]);
    assert!(human.stdout.contains("kept unchanged"), "{human:?}");

    let labels = ws.ok(&["review", "labels"]).lines();
    assert_eq!(labels.len(), 2, "the approved items are labels: {labels:?}");
    assert_eq!(
        labels[1]["labels"]["queue"], other_queue,
        "the reviewer's edit is the label"
    );
    ws.ok(&[
        "train",
        "--from-reviews",
        &ws.file("history.jsonl"),
        "--fields",
        "category,queue,priority",
    ]);
    let eval = ws.ok(&["eval", "--from-reviews", "--json"]).json();
    assert_eq!(eval["report"]["records"], json!(2), "{eval}");
}

/// Polls until `done` says so (30 s at most).
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn pending(ws: &Ws) -> i64 {
    let db = ws.db().await;
    sqlx::query_scalar("SELECT COUNT(*) FROM work_queue WHERE state = 'pending'")
        .fetch_one(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_is_accepted_and_decided_in_the_background() {
    let ws = Ws::trained();
    let server = ws.serve(&[("RUST_LOG", "deskhost_engine::pipeline=debug")]);
    let ingest = ws.token("intake", "ingest");
    let response = server
        .client_with(&ingest)
        .post(format!("{}/v1/tickets", server.url))
        .json(&ticket("B-1"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        accepted,
        json!({"ticket_id": "B-1", "ticket_version": 1, "new_version": true, "pending": true})
    );
    let follow = format!("{}/v1/tickets/B-1/versions/1", server.url);
    let mut seen = Value::Null;
    eventually("the background worker decides B-1", async || {
        seen = server
            .client()
            .get(&follow)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or(Value::Null);
        seen["state"] == "done"
    })
    .await;
    assert_eq!(seen["decision"]["ticket_id"], "B-1", "{seen}");
    assert!(!seen["decision"]["gate"].is_null(), "{seen}");
    // The ingest client follows its ticket too, without reading the decision (which can
    // carry CRM context).
    let as_ingest: Value = server
        .client_with(&ingest)
        .get(&follow)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    assert_eq!(as_ingest, json!({"state": "done"}));
    let run_id = seen["decision"]["run_id"].as_str().unwrap_or_default();
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("decided") && l.contains(run_id)),
        "the decision's log line carries its run id {run_id}:\n{log}"
    );
    let metrics = server.metrics().await;
    for line in [
        "deskhost_tickets_ingested_total 1",
        "deskhost_decisions_total{result=\"decided\"} 1",
        "deskhost_stage_seconds_bucket{stage=\"triage\",le=\"+Inf\"} 1",
        "deskhost_decision_seconds_count 1",
        "deskhost_queue_pending 0",
        "# TYPE deskhost_review_backlog gauge",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    let anonymous = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let missing = server
        .client()
        .get(format!("{}/v1/tickets/B-1/versions/9", server.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        status_and_code(missing).await,
        (StatusCode::NOT_FOUND, "version_not_found".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after_and_stores_nothing() {
    let ws = Ws::trained();
    let file = ws.many_tickets("Q", 5, "five.jsonl");
    ws.ok(&["ingest", file.to_str().unwrap_or("")]);
    // An ingest-only server (its workers run elsewhere) with room for five pending versions.
    let server = ws.serve_with(&["--workers", "0", "--max-pending", "5"], &[]);
    let before = count(&ws, "tickets").await;
    let response = server
        .client()
        .post(format!("{}/v1/tickets", server.url))
        .json(&ticket("Q-extra"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    assert_eq!(
        status_and_code(response).await,
        (StatusCode::TOO_MANY_REQUESTS, "queue_full".into())
    );
    assert_eq!(count(&ws, "tickets").await, before, "nothing stored");
    assert_eq!(
        pending(&ws).await,
        5,
        "an ingest-only server decides nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_a_restarted_server_resumes_pending_work() {
    let ws = Ws::trained();
    let file = ws.many_tickets("R", 300, "many.jsonl");
    ws.ok(&["ingest", file.to_str().unwrap_or("")]);
    assert_eq!(pending(&ws).await, 300);
    let server = ws.serve_with(&["--workers", "2"], &[]);
    eventually("some of the queue is decided", async || {
        pending(&ws).await < 290
    })
    .await;
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "a clean exit on SIGTERM: {log}");
    assert!(log.contains("drained:"), "{log}");
    let db = ws.db().await;
    let leased: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM work_queue WHERE state = 'pending' AND lease_owner IS NOT NULL",
    )
    .fetch_one(&db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        leased, 0,
        "the round in flight was finished, no claim left behind"
    );
    let left = pending(&ws).await;
    let runs = count(&ws, "runs").await;
    assert_eq!(
        runs + left,
        300,
        "every version decided once or still pending"
    );

    // A new server picks up what is pending by itself.
    let again = ws.serve(&[]);
    eventually("the restarted server drains the queue", async || {
        pending(&ws).await == 0
    })
    .await;
    drop(again);
    assert_eq!(count(&ws, "runs").await, 300);
    ws.ok(&["audit", "verify"]);
}
