//! Holes an attacker or a careless operator found, each closed: manifest paths, size
//! ceilings, hostile ids and text, the model blob, operator typos, long and empty tickets,
//! decisions changed behind the audit log's back, a rebuilt chain, high-risk tickets.

use super::support::{PROBE_GRANTS, Ws, edit_file, reasons, two_tickets, write_probe};
use serde_json::{Value, json};
use std::path::Path;

/// A plugin directory (outside the workspace) with the probe component and `manifest_tail`
/// appended to a valid manifest; returns the directory.
fn evil_plugin(root: &Path, name: &str, manifest_tail: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    write_probe(
        &dir,
        name,
        "0.1.0",
        "triage",
        &json!({ "mode": "ok" }),
        PROBE_GRANTS,
    );
    let manifest = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    let text = text.replace("config = \"settings.json\"\n", "");
    std::fs::write(&manifest, format!("{manifest_tail}\n{text}")).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn manifest_paths_outside_the_plugin_directory_are_refused_at_install_and_load() {
    let ws = Ws::trained();
    let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        (
            "abs-config",
            "config = \"/etc/passwd\"",
            "config = \"/etc/passwd\" is an absolute path",
        ),
        (
            "up-data",
            "data = \"../../../deskhost.db\"",
            "data = \"../../../deskhost.db\" climbs out",
        ),
    ];
    for (name, line, needle) in cases {
        let dir = evil_plugin(src.path(), name, line);
        let out = ws.cmd(&["plugin", "install", dir.to_str().unwrap_or("")]);
        assert_ne!(out.code, 0, "{name}: {out:?}");
        assert!(
            out.stderr.contains(needle)
                && out.stderr.contains("plugin.toml:1")
                && out.stderr.contains("inside its own directory"),
            "{name}: {}",
            out.stderr
        );
        assert!(
            !ws.path().join("plugins").join(name).exists(),
            "{name}: nothing installed"
        );
    }
    // A component from a sibling directory.
    let dir = evil_plugin(src.path(), "up-component", "");
    edit_file(
        &dir.join("plugin.toml"),
        "component = \"deskhost_probe.wasm\"",
        "component = \"../abs-config/deskhost_probe.wasm\"",
    );
    let out = ws.cmd(&["plugin", "install", dir.to_str().unwrap_or("")]);
    assert!(
        out.stderr
            .contains("component = \"../abs-config/deskhost_probe.wasm\" climbs out"),
        "{}",
        out.stderr
    );

    // A settings file that is a link to a file elsewhere: refused at install (copy) ...
    let dir = evil_plugin(src.path(), "link-settings", "config = \"settings.json\"");
    std::fs::remove_file(dir.join("settings.json")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("/etc/passwd", dir.join("settings.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = ws.cmd(&["plugin", "install", dir.to_str().unwrap_or("")]);
    assert!(
        out.stderr.contains("symbolic link to /etc/passwd")
            && out.stderr.contains("nothing was installed"),
        "{}",
        out.stderr
    );
    // ... and at load, when it is placed in the workspace by hand.
    let placed = ws.path().join("plugins/link-settings/0.1.0");
    std::fs::create_dir_all(placed.parent().unwrap_or(Path::new(".")))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&dir, &placed).unwrap_or_else(|e| panic!("{e}"));
    ws.set_slot("triage", Some("link-settings@0.1.0"));
    let (out, results) = ws.run(&two_tickets());
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        results.is_empty(),
        "nothing is decided with a refused plugin"
    );
    assert!(
        out.stderr.contains(
            "config = \"settings.json\" resolves (through a symbolic link) to /etc/passwd"
        ),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("root:x:0:0"),
        "the file never reaches anyone: {}",
        out.stderr
    );

    // A slot that climbs out of plugins/.
    ws.set_slot("triage", Some("../../etc@0.1.0"));
    let out = ws.cmd(&["plugin", "list"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("deskhost.toml:") && out.stderr.contains("[slots] triage"),
        "{}",
        out.stderr
    );
}

#[test]
fn settings_and_data_are_capped_and_the_install_report_shows_them() {
    let ws = Ws::new();
    let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = evil_plugin(
        src.path(),
        "big-data",
        "data = \"blob.bin\"\ndata_optional = true\nconfig = \"settings.json\"",
    );
    std::fs::write(dir.join("blob.bin"), vec![7u8; 3 << 20]).unwrap_or_else(|e| panic!("{e}"));
    ws.edit(
        "deskhost.toml",
        "max_memory_mib = 512",
        "max_memory_mib = 512
max_data_mib = 2",
    );
    let out = ws.cmd(&["plugin", "install", dir.to_str().unwrap_or("")]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("data file")
            && out.stderr.contains("3145728 bytes")
            && out.stderr.contains("max_data_mib"),
        "{}",
        out.stderr
    );
    std::fs::write(dir.join("blob.bin"), vec![7u8; 1 << 20]).unwrap_or_else(|e| panic!("{e}"));
    let out = ws.ok(&["plugin", "install", dir.to_str().unwrap_or("")]);
    let digest = deskhost_engine::util::sha256_hex(&vec![7u8; 1 << 20]);
    assert!(
        out.stdout.contains(&format!(
            "data      blob.bin (1048576 bytes, sha256 {})",
            &digest[..16]
        )) && out.stdout.contains("config    settings.json ("),
        "{}",
        out.stdout
    );
}

#[test]
fn hostile_ticket_ids_are_refused_at_ingest_and_the_rest_is_decided() {
    let ws = Ws::trained();
    let (out, results) = ws.run(&[
        json!({"id": "T-1\u{1b}]0;pwned\u{7}\u{1b}[2J", "subject": "s", "body": "b"}),
        json!({"id": "x".repeat(300), "subject": "s", "body": "b"}),
        json!({"id": "T-OK", "subject": "Invoice", "body": "Where is my invoice?"}),
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["ticket_id"], "T-OK");
    assert!(
        out.stderr
            .contains(":1: `id` \"T-1\\x1b]0;pwned\\x07\\x1b[2J\" contains control"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(":2: `id` is 300 bytes long"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains('\u{1b}'),
        "no raw escape reaches the terminal"
    );
}

#[test]
fn a_tampered_empty_or_missing_model_is_refused() {
    // Missing (never trained).
    let ws = Ws::new();
    let (out, _) = ws.run(&two_tickets());
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("model.dhm") && out.stderr.contains("deskhost train"),
        "{}",
        out.stderr
    );

    let ws = Ws::trained();
    let model = ws.path().join("plugins/triage-default/0.1.0/model.dhm");
    let original = std::fs::read(&model).unwrap_or_default();
    // Flipped sign bits in the weights.
    let mut flipped = original.clone();
    for b in flipped.iter_mut().skip(original.len() / 2).take(64) {
        *b ^= 0x80;
    }
    std::fs::write(&model, &flipped).unwrap_or_else(|e| panic!("{e}"));
    let (out, results) = ws.run(&two_tickets());
    assert_eq!(out.code, 1, "{out:?}");
    assert!(results.is_empty());
    assert!(
        out.stderr
            .contains("bad-model: plugin triage-default@0.1.0")
            && out.stderr.contains("sha256 does not match"),
        "{}",
        out.stderr
    );
    // Empty.
    std::fs::write(&model, b"").unwrap_or_else(|e| panic!("{e}"));
    let (out, _) = ws.run(&two_tickets());
    assert!(
        out.stderr.contains("is empty") && out.stderr.contains("data_optional"),
        "{}",
        out.stderr
    );
    // A manifest that opts into fallbacks runs without it.
    let manifest = ws.path().join("plugins/triage-default/0.1.0/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    std::fs::write(&manifest, format!("data_optional = true\n{text}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (out, results) = ws.run(&two_tickets());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        results[0]["triage"]["proposal"]["rationale"]
            .as_str()
            .unwrap_or("")
            .contains("no model bound")
    );
}

#[tokio::test]
async fn operator_typos_are_named_and_partial_crm_lines_merge() {
    let ws = Ws::new();
    ws.edit("deskhost.toml", "category = 0.70", "categroy = 0.99");
    let out = ws.cmd(&["plugin", "list"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("\"categroy\"") && out.stderr.contains("did you mean category?"),
        "{}",
        out.stderr
    );
    ws.edit("deskhost.toml", "categroy = 0.99", "category = 0.70");

    let crm = ws.path().join("crm-update.jsonl");
    std::fs::write(
        &crm,
        "{\"id\": \"\", \"tier\": \"vip\"}\n{\"id\": \"C-1001\", \"tier\": \"enterprise\"}\n{\"id\": \"C-1002\", \"teir\": \"x\"}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = ws.cmd(&["crm", "import", crm.to_str().unwrap_or("")]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains(":1: `id` is empty"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(":3: customer C-1002: unknown field `teir`"),
        "{}",
        out.stderr
    );
    let db = ws.db().await;
    let record: String =
        sqlx::query_scalar("SELECT record_json FROM customers WHERE id = 'C-1001'")
            .fetch_one(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let record: Value = serde_json::from_str(&record).unwrap_or_default();
    assert_eq!(record["tier"], "enterprise");
    assert_eq!(
        record["name"], "Bäckerei Sommer GmbH",
        "the fields the line left out are kept"
    );

    let kb = ws.path().join("kb-bad.jsonl");
    std::fs::write(
        &kb,
        "{\"id\": \"A-1\", \"title\": \"t\", \"body\": \"b\", \"collection\": \"../../etc\"}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = ws.cmd(&["kb", "import", kb.to_str().unwrap_or("")]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("collection \"../../etc\" is not a valid name"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_bad_utf8_line_and_a_bom_do_not_stop_the_file() {
    let ws = Ws::trained();
    let path = ws.path().join("mixed.jsonl");
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend_from_slice(
        json!({"id": "U-1", "subject": "Invoice", "body": "Where is my invoice?"})
            .to_string()
            .as_bytes(),
    );
    bytes.extend_from_slice(b"\n{\"id\": \"U-2\", \"body\": \"caf\xe9\"}\n");
    bytes.extend_from_slice(
        json!({"id": "U-3", "subject": "Refund", "body": "Please refund me."})
            .to_string()
            .as_bytes(),
    );
    bytes.push(b'\n');
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    let out = ws.cmd(&["run", path.to_str().unwrap_or("")]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("mixed.jsonl:2: not valid UTF-8"),
        "{}",
        out.stderr
    );
    let ids: Vec<String> = out
        .lines()
        .iter()
        .map(|r| r["ticket_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids, vec!["U-1", "U-3"]);
}

#[test]
fn a_long_ticket_is_decided_with_the_cut_recorded() {
    let ws = Ws::trained();
    let body = format!(
        "I was charged twice for my invoice. {}",
        "Here is the full export of our ledger. ".repeat(8000)
    );
    let (out, results) = ws.run(&[
        json!({"id": "L-1", "subject": "Charged twice", "body": body, "customer_id": "C-1010"}),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let r = &results[0];
    assert_eq!(r["triage"]["outcome"], "ok", "{}", r["triage"]);
    let cut = &r["inputs"]["cuts"][0];
    assert_eq!(cut["field"], "body");
    assert_eq!(cut["original"], body.len());
    assert!(
        cut["kept"].as_u64().unwrap_or(u64::MAX) <= 32 * 1024 + 64,
        "{cut}"
    );
}

#[test]
fn an_empty_ticket_is_stored_and_sent_to_a_person() {
    let ws = Ws::trained();
    let (out, results) = ws.run(&[
        json!({"id": "E-1", "subject": " ", "body": ""}),
        two_tickets()[0].clone(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let r = &results[0];
    assert_eq!(r["ticket_id"], "E-1");
    assert_eq!(r["gate"]["outcome"], "review", "{r}");
    assert_eq!(reasons(r), vec!["empty-ticket"]);
    assert!(
        r["triage"].is_null(),
        "no plugin guesses at an empty ticket"
    );
    assert_eq!(results[1]["status"], "decided");
    assert_eq!(ws.cmd(&["audit", "verify"]).code, 0);
}

async fn sql(ws: &Ws, statements: &[&str]) {
    let db = ws.db().await;
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&db)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    db.close().await;
}

#[tokio::test]
async fn decisions_changed_behind_the_audit_log_are_named() {
    let cases: [(&str, &[&str], &str); 5] = [
        (
            "state",
            &["UPDATE ticket_state SET queue = 'legal' WHERE id = 'T-1001'"],
            "ticket T-1001: its current state differs",
        ),
        (
            "effect",
            &[
                "UPDATE effects SET value_json = '{\"kind\":\"queue\",\"value\":\"legal\"}' WHERE id = (SELECT MIN(id) FROM effects)",
            ],
            "its effects rows differ",
        ),
        (
            "review",
            &["DELETE FROM review_items WHERE id = (SELECT MIN(id) FROM review_items)"],
            "its review item differs",
        ),
        (
            "run",
            &["UPDATE runs SET result_json = replace(result_json, 'decided', 'DECIDED')"],
            "its runs rows differ",
        ),
        (
            "ticket",
            &["UPDATE tickets SET input_json = replace(input_json, 'twice', 'once')"],
            "its content differs from what was ingested",
        ),
    ];
    for (name, statements, needle) in cases {
        let ws = Ws::trained();
        let (out, _) = ws.run(&ws.demo_tickets()[..6]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(ws.cmd(&["audit", "verify"]).code, 0);
        sql(&ws, statements).await;
        let out = ws.cmd(&["audit", "verify"]);
        assert_eq!(out.code, 1, "{name}: {out:?}");
        assert!(
            out.stderr.contains("decisions ALTERED") && out.stderr.contains(needle),
            "{name}: {}",
            out.stderr
        );
    }
}

/// Rewrites record `from` onwards with recomputed hashes and moves the head, as someone with
/// write access to the database file would.
async fn rebuild_chain(ws: &Ws, from: i64) {
    let db = ws.db().await;
    for &s in ws.drop_audit_triggers() {
        sqlx::query(s)
            .execute(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let rows: Vec<(i64, String, String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT seq, prev_hash, recorded_at, run_id, kind, payload FROM audit WHERE seq >= $1 ORDER BY seq",
    )
    .bind(from)
    .fetch_all(&db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut prev = rows.first().map(|r| r.1.clone()).unwrap_or_default();
    for (i, (seq, _, at, run, kind, payload)) in rows.into_iter().enumerate() {
        // The first rewritten record gets different content; the rest are only rehashed.
        let payload = if i == 0 { payload + " " } else { payload };
        let hash =
            deskhost_engine::audit::record_hash(&prev, seq, &at, run.as_deref(), &kind, &payload);
        sqlx::query("UPDATE audit SET prev_hash = $1, hash = $2, payload = $3 WHERE seq = $4")
            .bind(&prev)
            .bind(&hash)
            .bind(&payload)
            .bind(seq)
            .execute(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2")
            .bind(seq)
            .bind(&hash)
            .execute(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        prev = hash;
    }
    db.close().await;
}

#[tokio::test]
async fn signed_checkpoints_detect_a_rebuilt_chain() {
    let ws = Ws::trained();
    let keys = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = keys.path().join("audit.key");
    let out = ws.ok(&["audit", "keygen", key.to_str().unwrap_or("")]);
    assert!(out.stdout.contains("public key ed25519:"), "{out:?}");
    let log = keys.path().join("checkpoints.jsonl");
    let config = ws.path().join("deskhost.toml");
    let text = std::fs::read_to_string(&config).unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "{text}\n[audit]\nsigning_key = \"{}\"\ncheckpoint_every_records = 20\ncheckpoint_log = \"{}\"\n",
            key.display(),
            log.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (out, _) = ws.run(&ws.demo_tickets()[..10]);
    assert_eq!(out.code, 0, "{out:?}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.lines().count() >= 1,
        "automatic checkpoints are appended to the log"
    );
    let external = keys.path().join("shipped.jsonl");
    let out = ws.ok(&[
        "audit",
        "checkpoint",
        "--out",
        external.to_str().unwrap_or(""),
    ]);
    assert!(out.stdout.contains("\"signature\""), "{out:?}");
    let ok = ws.ok(&[
        "audit",
        "verify",
        "--checkpoint",
        external.to_str().unwrap_or(""),
    ]);
    assert!(
        ok.stdout.contains("checkpoints:") && ok.stdout.contains("match the chain"),
        "{ok:?}"
    );

    // The export streams every record and checkpoint.
    let export = keys.path().join("export.jsonl");
    ws.ok(&["audit", "export", "--out", export.to_str().unwrap_or("")]);
    let lines: Vec<Value> = std::fs::read_to_string(&export)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_default())
        .collect();
    assert_eq!(lines[0]["type"], "export");
    assert!(lines.iter().any(|l| l["type"] == "checkpoint"));
    let records = lines.iter().filter(|l| l["type"] == "record").count();
    assert_eq!(Some(records as u64), lines[0]["to"].as_u64());
    let public_key = ok
        .stdout
        .split("key ")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    let checked = ws.ok(&[
        "audit",
        "verify-export",
        export.to_str().unwrap_or(""),
        "--public-key",
        &public_key,
    ]);
    assert!(
        checked
            .stdout
            .contains(&format!("export intact: {records} records chain")),
        "{checked:?}"
    );
    let text = std::fs::read_to_string(&export).unwrap_or_default();
    let altered = keys.path().join("altered.jsonl");
    std::fs::write(
        &altered,
        text.replacen("\"kind\":\"run-inputs\"", "\"kind\":\"run-inputz\"", 1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = ws.cmd(&[
        "audit",
        "verify-export",
        altered.to_str().unwrap_or(""),
        "--public-key",
        &public_key,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("does not match its hash"),
        "{}",
        out.stderr
    );

    // Someone with the database file rebuilds the chain from record 5 and deletes the
    // stored checkpoints: the chain verifies on its own ...
    rebuild_chain(&ws, 5).await;
    sql(&ws, &["DELETE FROM audit_checkpoints"]).await;
    let config_text = std::fs::read_to_string(&config).unwrap_or_default();
    // (without the key configured, nothing says checkpoints were expected)
    std::fs::write(&config, config_text.split("\n[audit]").next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}"));
    let alone = ws.cmd(&["audit", "verify"]);
    assert_eq!(
        alone.code, 0,
        "a rebuilt chain verifies without a checkpoint: {alone:?}"
    );
    // ... but not against a checkpoint shipped before.
    let public = public_key.clone();
    let out = ws.cmd(&[
        "audit",
        "verify",
        "--checkpoint",
        external.to_str().unwrap_or(""),
        "--public-key",
        &public,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("REWRITTEN") && out.stderr.contains("rebuilt after the checkpoint"),
        "{}",
        out.stderr
    );
    let out = ws.cmd(&[
        "audit",
        "verify",
        "--checkpoint",
        log.to_str().unwrap_or(""),
        "--public-key",
        &public,
    ]);
    assert_eq!(
        out.code, 1,
        "the automatic checkpoint log anchors it too: {out:?}"
    );
    // A forged checkpoint (other key) is refused.
    let other = keys.path().join("other.key");
    ws.ok(&["audit", "keygen", other.to_str().unwrap_or("")]);
    let out = ws.cmd(&[
        "audit",
        "verify",
        "--checkpoint",
        external.to_str().unwrap_or(""),
        "--public-key",
        "ed25519:0000",
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("is not ed25519:<64 hex digits>"),
        "{}",
        out.stderr
    );
}

#[test]
fn high_risk_tickets_always_reach_a_person() {
    let ws = Ws::trained();
    // Even with escalation review switched off, these codes are reviewed.
    ws.edit(
        "deskhost.toml",
        "review_escalations = true",
        "review_escalations = false",
    );
    // Round 2 of the development examples: every high-risk one.
    let round: Vec<Value> = std::fs::read_to_string(ws.path().join("risk.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|t| {
            t["id"].as_str().unwrap_or("").starts_with("h2-") && t["labels"]["risk"] != "none"
        })
        .collect();
    let tickets: Vec<Value> = round
        .iter()
        .map(|t| json!({"id": t["id"], "subject": t["subject"], "body": t["body"], "customer_id": "C-1007"}))
        .collect();
    let expect: std::collections::BTreeMap<String, String> = round
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap_or("").to_string(),
                t["labels"]["risk"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let (out, results) = ws.run(&tickets);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(results.len(), 60);
    for r in &results {
        let id = r["ticket_id"].as_str().unwrap_or("");
        let code = r["triage"]["proposal"]["escalate"]["code"]
            .as_str()
            .unwrap_or("");
        assert_eq!(Some(code), expect.get(id).map(String::as_str), "{id}: {r}");
        let priority = r["triage"]["proposal"]["priority"]["value"]
            .as_str()
            .unwrap_or("");
        assert!(
            priority == "high" || priority == "urgent",
            "{id}: {priority}"
        );
        assert_eq!(r["gate"]["outcome"], "review", "{id}: {r}");
        assert_eq!(r["gate"]["applied"], json!([]), "{id}: nothing applies");
        assert!(reasons(r).contains(&"escalation".to_string()), "{id}: {r}");
        assert_eq!(
            r["escalation"]["outcome"], "ok",
            "{id}: a packet is written: {r}"
        );
        let queue = r["escalation"]["proposal"]["recommended_queue"]
            .as_str()
            .unwrap_or("");
        assert!(!queue.is_empty(), "{id}");
    }
}

/// The held-out round through the trained demo workspace (rules and the model's risk head):
/// what it catches is counted, and it must not fall below what was measured when it was
/// first run (tests/conformance/high-risk/README.md).
#[test]
fn held_out_high_risk_tickets_caught_by_rules_and_model() {
    let ws = Ws::trained();
    let path = super::support::repo().join("tests/conformance/high-risk/heldout.jsonl");
    let out = ws.cmd(&["run", path.to_str().unwrap_or("")]);
    assert_eq!(out.code, 0, "{out:?}");
    let want: std::collections::BTreeMap<String, String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|t| {
            (
                t["id"].as_str().unwrap_or("").to_string(),
                t["labels"]["risk"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let (mut caught, mut reached, mut false_alarms, mut misses) = (0, 0, 0, Vec::new());
    for r in out.lines() {
        let id = r["ticket_id"].as_str().unwrap_or("").to_string();
        let got = r["triage"]["proposal"]["escalate"]["code"]
            .as_str()
            .unwrap_or("none")
            .to_string();
        let expected = want.get(&id).cloned().unwrap_or_default();
        let mandatory =
            deskhost_engine::pipeline::gate::MANDATORY_REVIEW_ESCALATIONS.contains(&got.as_str());
        if mandatory {
            assert_eq!(r["gate"]["applied"], json!([]), "{id}: nothing applies");
            assert_eq!(r["gate"]["outcome"], "review", "{id}");
        }
        match expected.as_str() {
            "none" => false_alarms += usize::from(got != "none"),
            _ => {
                caught += usize::from(got == expected);
                reached += usize::from(mandatory);
                if got != expected {
                    misses.push(format!("{id}: want {expected}, got {got}"));
                }
            }
        }
    }
    eprintln!(
        "held out, rules + model: {caught}/60 with the right code, {reached}/60 reach a person, {false_alarms}/12 false alarms; missed: {misses:#?}"
    );
    assert!(
        caught >= HELD_OUT_CAUGHT,
        "recall fell below {HELD_OUT_CAUGHT}: {misses:#?}"
    );
    assert!(
        reached >= HELD_OUT_REACHED,
        "fewer reach a person than {HELD_OUT_REACHED}"
    );
    assert!(false_alarms <= 1, "{false_alarms} false alarms");
}

/// What the held-out round gave on its first run through rules + model (see
/// tests/conformance/high-risk/README.md): right code, and any code a person must handle.
const HELD_OUT_CAUGHT: usize = 35;
const HELD_OUT_REACHED: usize = 38;
