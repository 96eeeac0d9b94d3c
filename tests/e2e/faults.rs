//! Plugin faults are contained and classified; the ticket goes to review; the host moves on.

use super::support::{PROBE_GRANTS, Ws, by_id, reasons, two_tickets};
use serde_json::{Value, json};

/// Runs the two tickets with the probe as triage plugin in `mode`, with `limits`; returns
/// the results after checking that both tickets were decided and sent to review.
fn triage_fault(mode: &str, limits: &str) -> Vec<Value> {
    let ws = Ws::new();
    let probe = ws.install_probe(
        "probe",
        "triage",
        json!({ "mode": mode }),
        &format!("[limits]\n{limits}\n{PROBE_GRANTS}"),
    );
    ws.set_slot("triage", Some(&probe));
    let (out, results) = ws.run(&two_tickets());
    assert_eq!(out.code, 0, "a plugin fault is not a host failure: {out:?}");
    assert_eq!(
        results.len(),
        2,
        "the next ticket is processed after a fault: {out:?}"
    );
    for r in &results {
        assert_eq!(r["status"], "decided");
        assert_eq!(r["gate"]["outcome"], "review", "{r}");
        assert!(reasons(r).contains(&"plugin-fault".to_string()), "{r}");
        assert!(
            r["reply"].is_null(),
            "no reply without a valid triage decision"
        );
    }
    let listed = ws.ok(&["--json", "review", "list"]).json();
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(2),
        "both tickets land in review"
    );
    assert_eq!(ws.cmd(&["audit", "verify"]).code, 0);
    results
}

fn fault(r: &Value) -> (String, String) {
    (
        r["triage"]["fault"]["kind"].as_str().unwrap_or("").into(),
        r["triage"]["fault"]["message"]
            .as_str()
            .unwrap_or("")
            .into(),
    )
}

#[test]
fn an_infinite_loop_stops_at_its_deadline() {
    for r in triage_fault("loop", "wall_ms = 100\nfuel = 1_000_000_000_000") {
        let (kind, message) = fault(&r);
        assert_eq!(kind, "deadline", "{r}");
        assert!(message.contains("100 ms"), "{message}");
    }
}

#[test]
fn fuel_stops_a_loop_deterministically() {
    for r in triage_fault("loop", "wall_ms = 20000\nfuel = 5_000_000") {
        let (kind, _) = fault(&r);
        assert_eq!(kind, "fuel", "{r}");
        assert!(
            r["triage"]["stats"]["fuel_used"]
                .as_u64()
                .is_some_and(|f| f >= 5_000_000)
        );
    }
}

#[test]
fn a_memory_bomb_stops_at_its_limit() {
    for r in triage_fault("alloc", "memory_mib = 16") {
        let (kind, message) = fault(&r);
        assert_eq!(kind, "memory", "{r}");
        assert!(message.contains("memory limit exceeded"), "{message}");
        let peak = r["triage"]["stats"]["memory_peak_bytes"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            peak <= 16 * 1024 * 1024 + 64 * 1024 * 1024,
            "peak {peak} stays near the limit"
        );
    }
}

#[test]
fn a_panic_reaches_the_fault_with_its_text() {
    let results = triage_fault("panic", "");
    let r = by_id(&results);
    let (kind, message) = fault(&r["T-9001"]);
    assert_eq!(kind, "guest-panic");
    assert!(
        message.contains("probe panicked on purpose while triaging T-9001"),
        "{message}"
    );
    assert!(
        message.contains("src/lib.rs"),
        "the location is kept: {message}"
    );
}

#[test]
fn unbounded_recursion_is_a_stack_fault() {
    for r in triage_fault("recurse", "") {
        let (kind, message) = fault(&r);
        assert!(kind == "memory" || kind == "guest-trap", "{r}");
        assert!(message.contains("stack"), "{message}");
    }
}

#[test]
fn calls_outside_the_scope_are_denied() {
    for r in triage_fault("crm-other", "") {
        let (kind, message) = fault(&r);
        assert_eq!(kind, "capability-denied", "{r}");
        assert!(
            message.contains("C-SOMEONE-ELSE") && message.contains("crm.lookup-customer"),
            "{message}"
        );
    }
}

#[test]
fn the_host_call_budget_is_enforced() {
    for r in triage_fault("chatty", "host_calls = 5") {
        let (kind, message) = fault(&r);
        assert_eq!(kind, "host-call-limit", "{r}");
        assert!(message.contains("5 host calls"), "{message}");
        assert_eq!(
            r["triage"]["stats"]["host_calls"], 6,
            "five answered, the sixth refused and recorded"
        );
    }
}

#[test]
fn oversized_output_is_refused() {
    for r in triage_fault("huge", "output_kib = 64") {
        assert_eq!(fault(&r).0, "output-too-large", "{r}");
    }
}

#[test]
fn proposals_outside_the_taxonomy_are_invalid() {
    let ws = Ws::new();
    let probe = ws.install_probe(
        "probe",
        "triage",
        json!({ "mode": "off-taxonomy" }),
        PROBE_GRANTS,
    );
    ws.set_slot("triage", Some(&probe));
    let (_, results) = ws.run(&two_tickets());
    for r in &results {
        assert_eq!(r["triage"]["outcome"], "invalid-output", "{r}");
        assert!(
            r["triage"]["fault"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("made-up-category")
        );
        assert!(reasons(r).contains(&"invalid-proposal".to_string()));
        assert_eq!(r["gate"]["applied"], json!([]));
    }
}

#[test]
fn an_ungranted_import_is_refused_naming_plugin_capability_and_grant() {
    let ws = Ws::new();
    // The probe imports kb and crm; grant only kb.
    let probe = ws.install_probe(
        "probe",
        "triage",
        json!({ "mode": "ok" }),
        "[grants.kb]\ncollections = [\"public\"]\n",
    );
    ws.set_slot("triage", Some(&probe));
    let (out, results) = ws.run(&two_tickets());
    assert_eq!(out.code, 1, "{out:?}");
    assert!(results.is_empty());
    let e = &out.stderr;
    assert!(e.contains("plugin probe@0.1.0"), "{e}");
    assert!(e.contains("deskhost:plugin/crm@0.1.0"), "{e}");
    assert!(e.contains("[grants.crm]"), "{e}");
    assert!(e.contains("plugins/probe/0.1.0/plugin.toml"), "{e}");
}

#[test]
fn grants_beyond_the_operator_ceiling_are_refused() {
    let ws = Ws::new();
    let tail =
        "[grants.kb]\ncollections = [\"public\"]\n[grants.crm]\nfields = [\"tier\", \"email\"]\n";
    let probe = ws.install_probe("probe", "triage", json!({ "mode": "ok" }), tail);
    ws.set_slot("triage", Some(&probe));
    let (out, _) = ws.run(&two_tickets());
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("crm.fields.email") && out.stderr.contains("[ceiling]"),
        "{}",
        out.stderr
    );
}

#[test]
fn redacted_crm_fields_are_absent_inside_the_plugin() {
    let ws = Ws::new();
    let probe = ws.install_probe(
        "probe",
        "triage",
        json!({ "mode": "crm-echo" }),
        PROBE_GRANTS,
    );
    ws.set_slot("triage", Some(&probe));
    let (_, results) = ws.run(&two_tickets());
    let r = by_id(&results);
    let seen = r["T-9001"]["triage"]["proposal"]["rationale"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(seen.contains("id: \"C-1007\""), "{seen}");
    assert!(
        seen.contains("tier: Some(\"vip\")"),
        "the granted field arrives: {seen}"
    );
    for hidden in [
        "name: None",
        "email: None",
        "plan: None",
        "lifetime-value-cents: None",
        "notes: None",
    ] {
        assert!(seen.contains(hidden), "{hidden} in {seen}");
    }
    assert!(
        !seen.contains("juniper") && !seen.contains("Juniper"),
        "no trace of ungranted data: {seen}"
    );
}

#[test]
fn a_forged_citation_is_rejected() {
    let ws = Ws::trained();
    for (mode, expected) in [
        ("forge", "is not in article"),
        ("unseen", "did not return in this run"),
    ] {
        let id = format!("probe-{mode}");
        let probe = ws.install_probe(&id, "reply", json!({ "mode": mode }), PROBE_GRANTS);
        ws.set_slot("reply", Some(&probe));
        let ticket = json!({"id": format!("T-8{}", mode.len()), "subject": "Charged twice", "body": "I was charged twice for my invoice and want a refund of the duplicate charge.", "customer_id": "C-1010"});
        let (out, results) = ws.run(&[ticket]);
        assert_eq!(out.code, 0, "{out:?}");
        let r = &results[0];
        assert_eq!(r["reply"]["outcome"], "invalid-output", "{r}");
        assert!(
            r["reply"]["fault"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(expected),
            "{r}"
        );
        assert!(reasons(r).contains(&"invalid-proposal".to_string()), "{r}");
        assert_eq!(
            r["gate"]["applied"],
            json!([]),
            "nothing applies when a proposal is invalid"
        );
    }
}

#[test]
fn a_changed_or_corrupt_component_is_refused() {
    let ws = Ws::trained();
    let component = ws
        .path()
        .join("plugins/reply-default/0.1.0/deskhost_reply.wasm");
    let mut bytes = std::fs::read(&component).unwrap_or_default();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&component, &bytes).unwrap_or_default();
    let (out, _) = ws.run(&two_tickets());
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("reply-default@0.1.0")
            && out.stderr.contains("sha256")
            && out.stderr.contains("reinstall"),
        "{}",
        out.stderr
    );

    // A file that is not a component, with a matching digest, is refused for what it is.
    let garbage = b"\0asm\x01\0\0\0 this is a core module header followed by junk".to_vec();
    std::fs::write(&component, &garbage).unwrap_or_default();
    let manifest = ws.path().join("plugins/reply-default/0.1.0/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    let fixed: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("sha256") {
                format!("sha256 = \"{}\"", deskhost::util::sha256_hex(&garbage))
            } else {
                l.into()
            }
        })
        .collect();
    std::fs::write(&manifest, fixed.join("\n")).unwrap_or_default();
    let (out, _) = ws.run(&two_tickets());
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("not a WebAssembly component"),
        "{}",
        out.stderr
    );
}
