//! The demo workspace end to end: decisions, replies, escalations, gate, exactly-once,
//! audit and the native/Wasm agreement of the classifier.

use super::support::{Ws, by_id, reasons};
use serde_json::Value;

fn stage<'a>(r: &'a Value, name: &str) -> &'a Value {
    &r[name]
}

#[test]
fn demo_workspace_end_to_end() {
    let ws = Ws::trained();
    let tickets = ws.demo_tickets();
    assert_eq!(tickets.len(), 30);
    let (out, results) = ws.run(&tickets);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(results.len(), 30);
    assert!(out.stderr.contains("decided 30 tickets"), "{}", out.stderr);
    assert!(out.stderr.contains("plugin faults: none"), "{}", out.stderr);

    for r in &results {
        assert_eq!(r["status"], "decided", "{r}");
        assert!(
            r["run_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("run_"))
        );
        assert_eq!(stage(r, "triage")["outcome"], "ok", "{r}");
        let rationale = r["triage"]["proposal"]["rationale"].as_str().unwrap_or("");
        assert!(
            !rationale.contains("no model bound"),
            "the model must reach the plugin: {rationale}"
        );
        // Every reply stage passed the host's citation checks or abstained.
        if !r["reply"].is_null() {
            assert_eq!(r["reply"]["outcome"], "ok", "{r}");
        }
        assert!(
            r["inputs"]["kb_index_version"]
                .as_str()
                .is_some_and(|v| v.len() == 16)
        );
        assert!(
            r["inputs"]["ticket_content_hash"]
                .as_str()
                .is_some_and(|v| v.len() == 64)
        );
    }
    let r = by_id(&results);

    // A German ticket is answered in German from the German article, with citations.
    let t = &r["T-1002"];
    assert_eq!(t["triage"]["proposal"]["language"]["value"], "de");
    assert_eq!(t["triage"]["proposal"]["category"]["value"], "billing");
    let draft = &t["reply"]["proposal"]["draft"];
    assert_eq!(draft["language"], "de");
    let citations = draft["citations"].as_array().cloned().unwrap_or_default();
    assert!(!citations.is_empty());
    assert!(
        citations
            .iter()
            .all(|c| c["article_id"] == "kb-refund-duplicate-charge-de"),
        "{citations:?}"
    );
    assert!(
        draft["body"]
            .as_str()
            .unwrap_or("")
            .contains(citations[0]["quote"].as_str().unwrap_or("?"))
    );
    assert_eq!(
        reasons(t),
        vec!["reply-approval"],
        "a draft is never sent: it is reviewed"
    );
    let applied: Vec<&str> = t["gate"]["applied"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        applied.contains(&"queue") && applied.contains(&"category"),
        "{applied:?}"
    );

    // A legal threat: escalated to Legal, no draft, the packet names the next step.
    let t = &r["T-1007"];
    let triage = &t["triage"]["proposal"];
    assert_eq!(triage["escalate"]["code"], "legal-threat");
    assert_eq!(triage["queue"]["value"], "legal");
    assert_eq!(triage["priority"]["value"], "urgent");
    assert_eq!(t["reply"]["proposal"]["abstain"]["reason"], "needs-human");
    let packet = &t["escalation"]["proposal"];
    assert_eq!(packet["recommended_queue"], "legal");
    assert!(packet["next_step"].as_str().unwrap_or("").contains("Legal"));
    assert_eq!(t["gate"]["outcome"], "review");
    assert!(reasons(t).contains(&"escalation".to_string()));

    // A suspected compromise: security category always reviewed, nothing applied.
    let t = &r["T-1008"];
    assert_eq!(t["triage"]["proposal"]["category"]["value"], "security");
    assert!(reasons(t).contains(&"risk-category".to_string()));
    assert_eq!(t["gate"]["applied"], serde_json::json!([]));

    // An outage report with the steps the customer tried in the packet.
    let t = &r["T-1006"];
    let packet = &t["escalation"]["proposal"];
    assert_eq!(packet["severity"], "critical");
    assert!(packet["steps_tried"].as_array().is_some_and(|s| {
        s.iter()
            .any(|x| x.as_str().unwrap_or("").contains("restarted"))
    }));
    assert!(packet["verified_facts"].as_array().is_some_and(|f| {
        f.iter()
            .any(|x| x["statement"].as_str().unwrap_or("").contains("503"))
    }));
    assert!(
        packet["customer_context"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x["statement"] == "tier: business"))
    );

    // A ticket in a language the KB does not have: no draft, and why.
    let t = &r["T-1018"];
    assert_eq!(t["triage"]["proposal"]["language"]["value"], "it");
    assert_eq!(
        t["reply"]["proposal"]["abstain"]["reason"],
        "no-relevant-article"
    );

    // Review items exist exactly for the results that asked for review.
    let listed = ws.ok(&["--json", "review", "list"]).json();
    let expected = results
        .iter()
        .filter(|r| !r["gate"]["review"].is_null())
        .count();
    assert_eq!(listed.as_array().map(Vec::len), Some(expected));

    // Exactly once: the same file again decides nothing new.
    let (out, again) = ws.run(&tickets);
    assert_eq!(out.code, 0);
    assert_eq!(again.len(), 30);
    assert!(
        again.iter().all(|r| r["status"] == "already-decided"),
        "{again:?}"
    );

    // A changed ticket is a new version and is decided again.
    let mut changed = tickets[0].clone();
    changed["body"] = Value::String(format!(
        "{} Update: it happened again today.",
        changed["body"].as_str().unwrap_or("")
    ));
    let (_, once_more) = ws.run(&[changed]);
    assert_eq!(once_more[0]["status"], "decided");
    assert_eq!(once_more[0]["ticket_version"], 2);

    assert_eq!(ws.cmd(&["audit", "verify"]).code, 0);
    let plugins = ws.ok(&["--json", "plugin", "list"]).json();
    let plugins = plugins.as_array().cloned().unwrap_or_default();
    assert_eq!(plugins.len(), 3);
    assert!(
        plugins
            .iter()
            .all(|p| p["active"] == true && p["digest_ok"] == true),
        "{plugins:?}"
    );
}

#[tokio::test]
async fn every_host_call_is_audited_with_the_run_inputs() {
    let ws = Ws::trained();
    let tickets = ws.demo_tickets();
    let (_, results) = ws.run(&tickets[..10]);
    let reported: u64 = results
        .iter()
        .flat_map(|r| {
            ["triage", "reply", "escalation"]
                .map(|s| r[s]["stats"]["host_calls"].as_u64().unwrap_or(0))
        })
        .sum();
    assert!(reported > 0);
    let db = ws.db().await;
    let audited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE kind = 'host-call'")
        .fetch_one(&db)
        .await
        .unwrap_or(-1);
    assert_eq!(audited as u64, reported, "one audit record per host call");
    let inputs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE kind = 'run-inputs'")
        .fetch_one(&db)
        .await
        .unwrap_or(-1);
    let decisions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE kind = 'decision'")
        .fetch_one(&db)
        .await
        .unwrap_or(-1);
    assert_eq!((inputs, decisions), (10, 10));
    let sample: String =
        sqlx::query_scalar("SELECT payload FROM audit WHERE kind = 'host-call' LIMIT 1")
            .fetch_one(&db)
            .await
            .unwrap_or_default();
    let sample: Value = serde_json::from_str(&sample).unwrap_or_default();
    for key in [
        "plugin",
        "digest",
        "capability",
        "function",
        "args_digest",
        "result_bytes",
        "latency_us",
        "outcome",
    ] {
        assert!(
            !sample[key].is_null(),
            "host-call record lacks {key}: {sample}"
        );
    }
}

#[test]
fn bad_input_lines_are_named_and_the_rest_is_decided() {
    let ws = Ws::trained();
    let path = ws.path().join("mixed.jsonl");
    let lines = [
        r#"{"id":"T-7001","subject":"Refund","body":"I was charged twice, please refund."}"#,
        r#"{"id":"T-7002","subjet":"typo","body":"b"}"#,
        "not json at all",
        r#"{"id":"T-7003","subject":"Password","body":"How do I reset my password?","messages":[{"author":"robot","body":"x"}]}"#,
        r#"{"id":"T-7004","subject":"Export","body":"How can I export all my invoices as CSV?"}"#,
    ];
    std::fs::write(&path, lines.join("\n")).unwrap_or_default();
    let out = ws.cmd(&["run", path.to_str().unwrap_or("")]);
    assert_eq!(out.code, 2, "rejected lines give exit code 2: {out:?}");
    assert!(
        out.stderr.contains("mixed.jsonl:2") && out.stderr.contains("subjet"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("mixed.jsonl:3"), "{}", out.stderr);
    assert!(
        out.stderr.contains("mixed.jsonl:4") && out.stderr.contains("robot"),
        "{}",
        out.stderr
    );
    let decided: Vec<String> = out
        .lines()
        .iter()
        .filter_map(|r| r["ticket_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(decided, vec!["T-7001", "T-7004"]);
}

/// The run line is the protocol's `RunLine`: its whole shape is pinned (ids, times, digests
/// and measurements redacted), for the CLI and, through the same type, the HTTP API.
#[test]
fn a_run_line_has_a_stable_shape() {
    let ws = Ws::trained();
    let tickets = ws.demo_tickets();
    let (out, results) = ws.run(&[tickets[0].clone(), tickets[7].clone()]);
    assert_eq!(out.code, 0, "{out:?}");
    let (_, again) = ws.run(&[tickets[0].clone()]);
    for (name, line) in [
        ("run_line_decided", &results[0]),
        ("run_line_escalated", &results[1]),
        ("run_line_already_decided", &again[0]),
    ] {
        insta::assert_json_snapshot!(name, line, {
            ".run_id" => "[run id]",
            ".elapsed_us" => "[us]",
            ".inputs.clock_ms" => "[ms]",
            ".inputs.ticket_content_hash" => "[sha256]",
            ".inputs.config_hash" => "[sha256]",
            ".inputs.kb_index_version" => "[version]",
            ".inputs.plugins[].digest" => "[sha256]",
            ".inputs.plugins[].config_digest" => "[sha256]",
            ".gate.review.item_id" => "[review id]",
            ".*.stats" => "[stats]",
        });
    }
}
