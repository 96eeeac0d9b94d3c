//! Plugins in three languages against one contract: the shared conformance fixtures
//! (tests/conformance/triage) pass for the Rust triage-default, the Python plugin
//! (componentize-py) and the JavaScript plugin (componentize-js), and the Python and
//! JavaScript plugins install, take the slot and decide the demo tickets.
//!
//! The Python and JavaScript components are built by examples/plugins/build.sh (tests/run.sh
//! runs it) into $DESKHOST_LANG_PLUGINS, default `<target>/lang-plugins`.

use super::support::{Ws, repo, target_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn conformance() -> PathBuf {
    repo().join("tests/conformance/triage")
}

fn lang_plugins() -> Option<PathBuf> {
    let dir = std::env::var_os("DESKHOST_LANG_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("lang-plugins"));
    if dir.join("triage-py/plugin.toml").exists() && dir.join("triage-js/plugin.toml").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("DESKHOST_REQUIRE_LANG_PLUGINS").is_none(),
        "DESKHOST_REQUIRE_LANG_PLUGINS is set but {} has no triage-py and triage-js; run examples/plugins/build.sh",
        dir.display()
    );
    eprintln!(
        "skipping the Python and JavaScript plugin tests: {} has no built plugins (run examples/plugins/build.sh)",
        dir.display()
    );
    None
}

/// `plugin test --json` on the conformance fixtures: (passed, failed, problems).
fn conform(ws: &Ws, plugin: &Path, fixtures: &Path) -> (usize, usize, Vec<String>) {
    let out = ws.cmd(&[
        "--json",
        "plugin",
        "test",
        plugin.to_str().unwrap_or(""),
        "--fixtures",
        fixtures.to_str().unwrap_or(""),
    ]);
    let report = out.json();
    let count = |k: &str| report[k].as_u64().unwrap_or(u64::MAX) as usize;
    let problems = report["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["passed"] != Value::Bool(true))
        .map(|c| format!("{}: {}", c["name"], c["problems"]))
        .collect();
    assert_eq!(
        out.code,
        if count("failed") == 0 { 0 } else { 1 },
        "exit code follows the failures: {out:?}"
    );
    (count("passed"), count("failed"), problems)
}

fn fixture_count() -> usize {
    std::fs::read_dir(conformance())
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count()
}

#[test]
fn rust_triage_passes_the_conformance_fixtures_and_they_can_fail() {
    let ws = Ws::trained();
    let rust = ws.path().join("plugins/triage-default/0.1.0");
    let n = fixture_count();
    assert!(n >= 12, "conformance fixtures: {n}");
    let (passed, failed, problems) = conform(&ws, &rust, &conformance());
    assert_eq!((passed, failed), (n, 0), "{problems:#?}");

    // A fixture whose expectation is wrong fails, naming what did not hold.
    let wrong = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(conformance().join("legal-threat.json")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    fixture["expect"]["escalate"] = "vip".into();
    fixture["expect"]["queue"] = "billing".into();
    std::fs::write(wrong.path().join("legal-threat.json"), fixture.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let (passed, failed, problems) = conform(&ws, &rust, wrong.path());
    assert_eq!((passed, failed), (0, 1));
    let text = problems.join(" ");
    assert!(
        text.contains("escalate: expected vip, got legal-threat")
            && text.contains("queue: expected billing, got legal"),
        "{text}"
    );
}

#[test]
fn python_and_javascript_plugins_conform_install_and_decide() {
    let Some(dir) = lang_plugins() else {
        return;
    };
    let ws = Ws::trained();
    let n = fixture_count();
    let tickets = ws.demo_tickets();
    for (id, component) in [
        ("triage-py", "triage_py.wasm"),
        ("triage-js", "triage_js.wasm"),
    ] {
        let plugin = dir.join(id);
        let key = format!("{id}@0.1.0");

        // The built directory ships the conformance fixtures; --fixtures adds them again.
        let (passed, failed, problems) = conform(&ws, &plugin, &conformance());
        assert_eq!((passed, failed), (2 * n, 0), "{id}: {problems:#?}");

        // Install runs the plugin's own fixtures and shows the capability diff.
        let out = ws.ok(&["plugin", "install", plugin.to_str().unwrap_or("")]);
        assert!(
            out.stdout.contains(&format!("fixtures: {n} passed"))
                && out.stdout.contains("deskhost:plugin/crm@0.1.0")
                && out.stdout.contains("~ memory_mib: 32 → 128"),
            "{id}: {out:?}"
        );
        let size = std::fs::metadata(plugin.join(component))
            .map(|m| m.len())
            .unwrap_or(0);
        eprintln!("{id}: component {size} bytes");

        // In the slot, it decides the demo tickets: no faults, every run attributed to it.
        ws.ok(&["plugin", "promote", &key]);
        let fresh: Vec<Value> = tickets
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t["id"] = format!("{}-{id}", t["id"].as_str().unwrap_or("")).into();
                t
            })
            .collect();
        let (out, results) = ws.run(&fresh);
        assert_eq!(out.code, 0, "{id}: {out:?}");
        assert_eq!(results.len(), tickets.len(), "{id}");
        for r in &results {
            let triage = &r["triage"];
            assert_eq!(triage["plugin"], key.as_str(), "{r}");
            assert_eq!(triage["outcome"], "ok", "{id}: {r}");
        }
        let legal = results
            .iter()
            .find(|r| r["ticket_id"] == format!("T-1007-{id}").as_str())
            .unwrap_or_else(|| panic!("T-1007 decided"));
        assert_eq!(
            legal["triage"]["proposal"]["escalate"]["code"], "legal-threat",
            "{legal}"
        );
        ws.ok(&["plugin", "rollback", "triage"]);
    }
}

/// Runs a scaffold's build.sh (Rust builds share one target directory across runs).
fn build_scaffold(dir: &Path) {
    let target = target_dir().join("scaffold-target");
    let out = std::process::Command::new(dir.join("build.sh"))
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert!(
        out.status.success(),
        "{}/build.sh failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plugin_new_scaffolds_build_pass_their_fixtures_and_run() {
    // The Python and JavaScript tools come with the built example plugins.
    if lang_plugins().is_none() {
        return;
    }
    let ws = Ws::trained();
    let projects = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for lang in ["rust", "python", "js"] {
        for kind in ["triage", "reply", "escalation"] {
            let name = format!("new-{kind}-{lang}");
            let dir = projects.path().join(&name);
            let out = ws.ok(&[
                "plugin",
                "new",
                &name,
                "--lang",
                lang,
                "--kind",
                kind,
                "--dir",
                dir.to_str().unwrap_or(""),
            ]);
            assert!(out.stdout.contains("wit/world.wit"), "{out:?}");
            build_scaffold(&dir);
            let test = ws.cmd(&["--json", "plugin", "test", dir.to_str().unwrap_or("")]);
            let report = test.json();
            assert!(
                test.code == 0 && report["failed"] == 0 && report["passed"].as_u64() >= Some(1),
                "{name}: {test:?}"
            );
            ws.ok(&["plugin", "install", dir.to_str().unwrap_or("")]);
        }
    }
    // The refusals name the problem.
    let existing = projects.path().join("new-triage-rust");
    let again = ws.cmd(&[
        "plugin",
        "new",
        "new-triage-rust",
        "--lang",
        "rust",
        "--dir",
        existing.to_str().unwrap_or(""),
    ]);
    assert!(
        again.code != 0 && again.stderr.contains("exists and is not empty"),
        "{again:?}"
    );
    let bad = ws.cmd(&["plugin", "new", "New_Plugin", "--lang", "js"]);
    assert!(
        bad.code != 0
            && bad
                .stderr
                .contains("plugin name \"New_Plugin\" is not valid"),
        "{bad:?}"
    );

    // The Python reply scaffold drafts from the live knowledge base: the host verifies its
    // citations, and the JavaScript escalation scaffold writes the packets.
    ws.ok(&["plugin", "promote", "new-reply-python@0.1.0"]);
    ws.ok(&["plugin", "promote", "new-escalation-js@0.1.0"]);
    let (out, results) = ws.run(&ws.demo_tickets());
    assert_eq!(out.code, 0, "{out:?}");
    let drafts = results
        .iter()
        .filter(|r| r["reply"]["plugin"] == "new-reply-python@0.1.0")
        .filter(|r| r["reply"]["outcome"] == "ok" && r["reply"]["proposal"]["draft"].is_object())
        .count();
    let packets = results
        .iter()
        .filter(|r| r["escalation"]["plugin"] == "new-escalation-js@0.1.0")
        .filter(|r| r["escalation"]["outcome"] == "ok")
        .count();
    let faults: Vec<&Value> = results
        .iter()
        .filter(|r| {
            ["triage", "reply", "escalation"]
                .iter()
                .any(|s| r[*s]["fault"].is_object())
        })
        .collect();
    assert!(faults.is_empty(), "{faults:#?}");
    assert!(
        drafts >= 5 && packets >= 3,
        "drafts {drafts}, packets {packets}"
    );
}
