//! Shadow runs (stored, never applied, compared by `plugin diff`) and record/replay
//! (byte-identical with the recorded plugin, the expected difference with another, fixtures
//! exported for `plugin test`).

use super::support::Ws;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A copy of the workspace's trained triage plugin as version 0.2.0, with one more rule:
/// every ticket that says "invoice" is a payments ticket for the payments queue.
fn invoice_candidate(ws: &Ws, into: &Path) -> PathBuf {
    let from = ws.path().join("plugins/triage-default/0.1.0");
    let dir = into.join("triage-0.2.0");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(&from).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let manifest = std::fs::read_to_string(dir.join("plugin.toml"))
        .unwrap_or_default()
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"");
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap_or_else(|e| panic!("{e}"));
    let mut settings: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("settings.json")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    settings["rules"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("the triage settings have rules"))
        .push(json!({ "id": "invoices-are-payments", "any": ["invoice"], "category": "payments", "queue": "payments" }));
    std::fs::write(dir.join("settings.json"), settings.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn says_invoice(ticket: &Value) -> bool {
    let text = format!(
        "{} {}",
        ticket["subject"].as_str().unwrap_or(""),
        ticket["body"].as_str().unwrap_or("")
    )
    .to_lowercase();
    text.split(|c: char| !c.is_alphanumeric())
        .any(|w| w == "invoice")
}

fn field<'a>(r: &'a Value, name: &str) -> &'a str {
    r["triage"]["proposal"][name]["value"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn a_shadow_is_stored_never_applied_and_diffed_field_by_field() {
    let ws = Ws::trained();
    let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let candidate = invoice_candidate(&ws, src.path());
    ws.ok(&["plugin", "install", candidate.to_str().unwrap_or("")]);
    let out = ws.cmd(&["plugin", "shadow", "triage-default@0.1.0"]);
    assert!(
        out.code != 0 && out.stderr.contains("a shadow must be another version"),
        "{out:?}"
    );
    let out = ws
        .ok(&["--json", "plugin", "shadow", "triage-default@0.2.0"])
        .json();
    assert_eq!(out["to"], "triage-default@0.2.0");
    let listed = ws.ok(&["plugin", "list"]).stdout;
    assert!(listed.contains("~ triage-default@0.2.0"), "{listed}");

    let tickets = ws.demo_tickets();
    let (out, results) = ws.run(&tickets);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(results.len(), tickets.len());
    let by_id: BTreeMap<String, &Value> = results
        .iter()
        .map(|r| (r["ticket_id"].as_str().unwrap_or("").to_string(), r))
        .collect();

    // The tickets the candidate must disagree on, from the incumbent's own decisions.
    let mut expect_category = BTreeSet::new();
    let mut expect_queue = BTreeSet::new();
    for t in &tickets {
        let id = t["id"].as_str().unwrap_or("").to_string();
        let r = by_id[&id];
        assert_eq!(r["triage"]["plugin"], "triage-default@0.1.0");
        assert_eq!(
            r["inputs"]["shadow"][0]["plugin"], "triage-default@0.2.0",
            "the run records its shadow: {}",
            r["inputs"]
        );
        if says_invoice(t) && field(r, "category") != "payments" {
            expect_category.insert(id.clone());
        }
        if says_invoice(t) && field(r, "queue") != "payments" {
            expect_queue.insert(id.clone());
        }
    }
    assert!(
        expect_category.len() >= 3,
        "the fixture is built to disagree: {expect_category:?}"
    );

    // Never applied: what the gate applied and what the help desk shows come from the
    // active plugin only.
    let db = ws.db().await;
    for id in &expect_category {
        let (category, queue): (Option<String>, Option<String>) =
            sqlx::query_as("SELECT category, queue FROM ticket_state WHERE id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(category.as_deref(), Some("payments"), "{id}");
        assert_ne!(queue.as_deref(), Some("payments"), "{id}");
        let r = by_id[id];
        for applied in r["gate"]["applied"].as_array().into_iter().flatten() {
            if applied["kind"] == "category" {
                assert_eq!(applied["value"], field(r, "category"), "{id}");
            }
        }
    }
    let payments_effects: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM effects e JOIN run_stages s ON s.run_id = e.run_id AND s.stage = 'triage'
         WHERE e.kind IN ('category', 'queue') AND e.value_json = '\"payments\"'
           AND {} != 'payments'
           AND {} != 'payments'",
        ws.json_text("s.proposal_json", "category.value"),
        ws.json_text("s.proposal_json", "queue.value"),
    )))
    .fetch_one(&db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(payments_effects, 0, "no effect comes from the shadow");
    let shadow_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shadow_runs")
        .fetch_one(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shadow_rows as usize, tickets.len());

    // The diff: exactly the known tickets, every other field in agreement.
    let diff = ws.ok(&["--json", "plugin", "diff", "triage"]).json();
    assert_eq!(diff["candidate"], "triage-default@0.2.0");
    assert_eq!(diff["incumbents"], json!(["triage-default@0.1.0"]));
    let n = tickets.len();
    let agreement = |f: &str| {
        (
            diff["fields"][f]["same"].as_u64().unwrap_or(0) as usize,
            diff["fields"][f]["total"].as_u64().unwrap_or(0) as usize,
        )
    };
    assert_eq!(agreement("category"), (n - expect_category.len(), n));
    assert_eq!(agreement("queue"), (n - expect_queue.len(), n));
    for f in ["priority", "language", "sentiment", "escalate"] {
        assert_eq!(agreement(f), (n, n), "{f}: {}", diff["fields"][f]);
    }
    let disagree = |f: &str| -> BTreeSet<String> {
        diff["disagreements"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["field"] == f)
            .map(|d| {
                assert_eq!(d["candidate"], "payments", "{d}");
                d["ticket_id"].as_str().unwrap_or("").to_string()
            })
            .collect()
    };
    assert_eq!(disagree("category"), expect_category);
    assert_eq!(disagree("queue"), expect_queue);
    for side in ["incumbent_stats", "candidate_stats"] {
        assert_eq!(diff[side]["runs"], n, "{side}");
        assert_eq!(diff[side]["fault_rate"], 0.0, "{side}");
    }
    let text = ws.ok(&["plugin", "diff", "triage"]).stdout;
    assert!(text.contains("category"), "{text}");

    // Unshadowed: later runs are not shadowed; the diff of the past stays available.
    ws.ok(&["plugin", "unshadow", "triage"]);
    let mut more = super::support::two_tickets();
    more[0]["id"] = json!("T-9101");
    more[1]["id"] = json!("T-9102");
    let (_, later) = ws.run(&more);
    assert!(later.iter().all(|r| r["inputs"]["shadow"] == json!([])));
    let out = ws.cmd(&["plugin", "diff", "triage"]);
    assert!(
        out.code != 0 && out.stderr.contains("has no shadow"),
        "{out:?}"
    );
    let again = ws
        .ok(&[
            "--json",
            "plugin",
            "diff",
            "triage",
            "--candidate",
            "triage-default@0.2.0",
        ])
        .json();
    assert_eq!(again["fields"]["category"]["total"], n);
}

#[test]
fn replay_is_byte_identical_with_the_recorded_plugin_and_shows_another_versions_difference() {
    let ws = Ws::trained();
    let tickets = ws.demo_tickets();
    let (out, results) = ws.run(&tickets);
    assert_eq!(out.code, 0, "{out:?}");
    // A run that used all three plugins and their capabilities, on an invoice ticket.
    let run = results
        .iter()
        .find(|r| {
            r["ticket_id"] == "T-1007"
                && r["reply"]["outcome"] == "ok"
                && r["escalation"]["outcome"] == "ok"
        })
        .unwrap_or_else(|| panic!("T-1007 is escalated with a reply: {results:?}"));
    let run_id = run["run_id"].as_str().unwrap_or("");

    // Change what the capabilities would answer now: replay must not notice.
    let articles = ws.path().join("kb/articles.jsonl");
    let changed: String = std::fs::read_to_string(&articles)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut a: Value = serde_json::from_str(l).unwrap_or_default();
            a["body"] = json!(format!(
                "Changed after the run. {}",
                a["body"].as_str().unwrap_or("")
            ));
            format!("{a}\n")
        })
        .collect();
    std::fs::write(&articles, changed).unwrap_or_else(|e| panic!("{e}"));
    ws.ok(&["kb", "import", &ws.file("kb/articles.jsonl")]);

    let report = ws.ok(&["--json", "replay", run_id]).json();
    let stages = report["stages"].as_array().cloned().unwrap_or_default();
    assert_eq!(stages.len(), 3, "{report}");
    for s in &stages {
        assert_eq!(s["identical"], true, "{s}");
        assert_eq!(s["other_component"], false);
        assert_eq!(s["unanswered_calls"], 0);
    }
    let text = ws.ok(&["replay", run_id]).stdout;
    assert_eq!(text.matches("identical output").count(), 3, "{text}");

    // Another version: the expected difference, and only it.
    let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let candidate = invoice_candidate(&ws, src.path());
    let report = ws
        .ok(&[
            "--json",
            "replay",
            run_id,
            "--plugin",
            candidate.to_str().unwrap_or(""),
        ])
        .json();
    let triage = &report["stages"][0];
    assert_eq!(triage["stage"], "triage");
    assert_eq!(triage["replayed_plugin"], "triage-default@0.2.0");
    assert_eq!(triage["identical"], false);
    let paths: BTreeMap<String, (Value, Value)> = triage["differences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["path"].as_str().unwrap_or("").to_string(),
                (d["recorded"].clone(), d["replayed"].clone()),
            )
        })
        .collect();
    assert_eq!(
        paths.get("/triage/category/value").map(|d| &d.1),
        Some(&json!("payments")),
        "{paths:?}"
    );
    assert_eq!(
        paths.get("/triage/queue/value").map(|d| &d.1),
        Some(&json!("payments")),
        "{paths:?}"
    );
    assert!(
        paths.keys().all(|p| p.starts_with("/triage/category")
            || p.starts_with("/triage/queue")
            || p.starts_with("/triage/rationale")
            || p.starts_with("/triage/tags")),
        "only what the rule changes differs: {paths:?}"
    );
    for s in &report["stages"].as_array().cloned().unwrap_or_default()[1..] {
        assert_eq!(
            s["identical"], true,
            "later stages replay their recorded inputs: {s}"
        );
    }

    // Exported fixtures: the recorded plugins pass them, the candidate does not.
    let fixtures = src.path().join("fixtures");
    ws.ok(&[
        "replay",
        run_id,
        "--export",
        fixtures.to_str().unwrap_or(""),
    ]);
    let files: BTreeSet<String> = std::fs::read_dir(&fixtures)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for plugin in ["triage-default", "reply-default", "escalation-default"] {
        let report = ws
            .ok(&[
                "--json",
                "plugin",
                "test",
                &ws.file(&format!("plugins/{plugin}/0.1.0")),
                "--fixtures",
                fixtures.to_str().unwrap_or(""),
            ])
            .json();
        assert_eq!(report["passed"], 1, "{plugin}: {report}");
        let case = &report["cases"][0];
        assert!(case["fuel_used"].as_u64().unwrap_or(0) > 0, "{case}");
        assert!(case["output_bytes"].as_u64().unwrap_or(0) > 0, "{case}");
    }
    let out = ws.cmd(&[
        "plugin",
        "test",
        candidate.to_str().unwrap_or(""),
        "--fixtures",
        fixtures.to_str().unwrap_or(""),
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("output differs from the expected output"),
        "{}",
        out.stdout
    );
}

/// A run stored before stage outputs were kept as text had them as value trees: keys sorted,
/// `f32` confidences widened to `f64` (`0.9648000001907349`). Replay still finds it identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stored_with_sorted_keys_and_widened_floats_still_replays_identical() {
    fn widen(v: &mut Value) {
        match v {
            Value::Number(n) if n.is_f64() => {
                let wide = f64::from(n.as_f64().unwrap_or_default() as f32);
                *v = json!(wide);
            }
            Value::Array(items) => items.iter_mut().for_each(widen),
            Value::Object(map) => map.values_mut().for_each(widen),
            _ => {}
        }
    }
    let ws = Ws::trained();
    let (out, results) = ws.run(&ws.demo_tickets());
    assert_eq!(out.code, 0, "{out:?}");
    let run = results
        .iter()
        .find(|r| r["ticket_id"] == "T-1007" && r["escalation"]["outcome"] == "ok")
        .unwrap_or_else(|| panic!("T-1007 is escalated: {results:?}"));
    let run_id = run["run_id"].as_str().unwrap_or("");

    let db = ws.db().await;
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT stage, output_json FROM run_stages WHERE run_id = $1")
            .bind(run_id)
            .fetch_all(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.len(), 3);
    let mut widened_any = false;
    for (stage, text) in &stored {
        let mut old: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        widen(&mut old);
        let old = old.to_string();
        assert_ne!(&old, text, "{stage}: the old rendering differs in its text");
        widened_any |= old.contains("00000");
        sqlx::query("UPDATE run_stages SET output_json = $1 WHERE run_id = $2 AND stage = $3")
            .bind(&old)
            .bind(run_id)
            .bind(stage)
            .execute(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(widened_any, "some confidence was widened: {stored:?}");
    let report = ws.ok(&["--json", "replay", run_id]).json();
    let stages = report["stages"].as_array().cloned().unwrap_or_default();
    assert_eq!(stages.len(), 3, "{report}");
    for s in &stages {
        assert_eq!(s["identical"], true, "{s}");
        assert_eq!(s["differences"], json!([]), "{s}");
    }
}
