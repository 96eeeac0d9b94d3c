//! `deskhost bench triage` on a trained workspace: the same tickets natively and through
//! Wasm, a figure per variant with its ratio to native, PAGEMAP_SCAN reported as it is.
//! Nothing here asserts a time; the shape and the bookkeeping are what is checked.

use super::support::Ws;

#[test]
fn bench_triage_reports_native_and_wasm_side_by_side() {
    let ws = Ws::trained();
    let tickets = ws.file("tickets.jsonl");
    let out = ws.ok(&[
        "bench", "triage", &tickets, "--limit", "8", "--rounds", "2", "--json",
    ]);
    let report = out.json();
    assert_eq!(report["tickets"], 8, "{report}");
    assert_eq!(report["plugin"], "triage-default@0.1.0", "{report}");
    let figures = report["figures"].as_array().cloned().unwrap_or_default();
    assert_eq!(figures[0]["ratio_to_native"], 1.0, "{report}");
    // The native figure is the plugin's own crate: it decided every ticket exactly as the
    // component did (values, confidences, rationale), so it ran the same code on the same
    // input.
    assert_eq!(report["native_identical"], 8, "{report}");
    let wasm: Vec<_> = figures
        .iter()
        .filter(|f| f.get("phases").is_some())
        .collect();
    assert_eq!(
        wasm.len() + 2,
        figures.len(),
        "two native figures: {report}"
    );
    // One engine as configured; a second with PAGEMAP_SCAN the other way when the kernel
    // has it.
    let available = report["pagemap_scan_available"] == true;
    assert_eq!(wasm.len(), if available { 2 } else { 1 }, "{report}");
    for f in &wasm {
        let us = f["per_ticket_us"].as_f64().unwrap_or(0.0);
        let ratio = f["ratio_to_native"].as_f64().unwrap_or(0.0);
        let native = figures[0]["per_ticket_us"].as_f64().unwrap_or(0.0);
        assert!(us > 0.0 && native > 0.0, "{report}");
        assert!(
            (ratio - us / native).abs() < 1e-6 * ratio.max(1.0),
            "{report}"
        );
        let phases = &f["phases"];
        assert!(
            phases["wall_us"].as_f64().unwrap_or(0.0)
                >= phases["instantiate_us"].as_f64().unwrap_or(f64::MAX),
            "the in-call time includes instantiation: {report}"
        );
    }
    if available {
        assert!(
            wasm.iter().any(|f| f["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("PAGEMAP_SCAN on"))),
            "the configured engine uses PAGEMAP_SCAN when the kernel has it: {report}"
        );
    }
    // Synthetic tickets of a given length, for the cost against ticket length.
    let long = ws
        .ok(&[
            "bench", "triage", "--words", "300", "--limit", "4", "--rounds", "1", "--json",
        ])
        .json();
    assert_eq!(long["tickets"], 4, "{long}");
    let words = long["words_per_ticket"].as_f64().unwrap_or(0.0);
    assert!(
        (300.0..=310.0).contains(&words),
        "body of 300 words plus a subject: {long}"
    );
    // Several lengths in turn, drawn against the words per ticket.
    let plot = ws.path().join("triage.svg");
    let plot_arg = plot.to_string_lossy().to_string();
    let lengths = ws
        .ok(&[
            "bench", "triage", "--words", "20,80", "--limit", "3", "--rounds", "1", "--json",
            "--plot", &plot_arg,
        ])
        .json();
    let reports = lengths.as_array().cloned().unwrap_or_default();
    assert_eq!(reports.len(), 2, "one report per length: {lengths}");
    assert!(
        reports[0]["words_per_ticket"].as_f64() < reports[1]["words_per_ticket"].as_f64(),
        "{lengths}"
    );
    let svg = std::fs::read_to_string(&plot).unwrap_or_default();
    let variants = reports[0]["figures"].as_array().map_or(0, Vec::len);
    assert_eq!(svg.matches("<polyline").count(), variants, "{svg}");
    assert_eq!(svg.matches("<circle").count(), 2 * variants, "{svg}");
    assert!(svg.contains("native"), "{svg}");
    let none = ws.cmd(&["bench", "triage"]);
    assert_ne!(none.code, 0, "neither a file nor --words: {none:?}");
    // A file without tickets is refused with its name.
    std::fs::write(ws.path().join("empty.jsonl"), "").unwrap_or_else(|e| panic!("{e}"));
    let empty = ws.cmd(&["bench", "triage", &ws.file("empty.jsonl")]);
    assert_ne!(empty.code, 0);
    assert!(empty.stderr.contains("empty.jsonl"), "{empty:?}");
}

#[test]
fn bench_kb_reports_each_size_and_is_reproducible_by_seed() {
    let ws = Ws::new();
    let plot = ws.path().join("kb.svg");
    let plot_arg = plot.to_string_lossy().to_string();
    let run = || {
        ws.ok(&[
            "bench",
            "kb",
            "--sizes",
            "50,200",
            "--queries",
            "20",
            "--seed",
            "3",
            "--json",
            "--plot",
            &plot_arg,
        ])
        .json()
    };
    let report = run();
    let sizes = report["sizes"].as_array().cloned().unwrap_or_default();
    let svg = std::fs::read_to_string(&plot).unwrap_or_default();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 2, "p50 and p99: {svg}");
    assert!(svg.contains("search p99") && svg.contains(">200<"), "{svg}");
    let unwritable = ws.cmd(&[
        "bench",
        "kb",
        "--sizes",
        "50",
        "--queries",
        "1",
        "--plot",
        "/nonexistent/dir/kb.svg",
    ]);
    assert_ne!(unwritable.code, 0);
    assert!(
        unwritable.stderr.contains("/nonexistent/dir/kb.svg"),
        "the error names the file: {unwritable:?}"
    );
    let counts: Vec<u64> = sizes
        .iter()
        .filter_map(|s| s["articles"].as_u64())
        .collect();
    assert_eq!(counts, [50, 200], "{report}");
    for s in &sizes {
        for key in [
            "build_seconds",
            "open_ms",
            "search_p50_us",
            "article_p50_us",
        ] {
            assert!(s[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {report}");
        }
        assert!(
            s["search_p99_us"].as_f64() >= s["search_p50_us"].as_f64(),
            "{report}"
        );
    }
    assert_eq!(run()["seed"], 3);
}

/// `DESKHOST_PROFILER` names a profiler for plugin code or the command refuses to start,
/// naming the variable (a typo must not silently profile nothing).
#[test]
fn an_unknown_profiler_is_refused_naming_the_variable() {
    let ws = Ws::trained();
    let tickets = ws.file("tickets.jsonl");
    let out = ws.cmd_env(
        &["run", &tickets],
        &[("DESKHOST_PROFILER", "perf\u{1b}[2Jmap")],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("DESKHOST_PROFILER"), "{out:?}");
    assert!(out.stderr.contains("perfmap or jitdump"), "{out:?}");
    assert!(
        !out.stderr.contains('\u{1b}'),
        "the value is escaped: {out:?}"
    );
    // Unset, empty or `none`: no profiler, and the same tickets are all decided.
    let (out, lines) = ws.run_with(&ws.demo_tickets(), &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(lines.len(), ws.demo_tickets().len(), "{out:?}");
}

/// With `perfmap`, wasmtime writes perf's map of JIT code (`/tmp/perf-PID.map`), and it names
/// the plugins' own functions (what `perf report` shows instead of bare addresses).
#[test]
fn perfmap_names_the_plugins_functions_for_perf() {
    let ws = Ws::trained();
    let tickets = ws.file("tickets.jsonl");
    let mut child = ws.spawn_env(&["run", &tickets], &[("DESKHOST_PROFILER", "perfmap")]);
    let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&map).unwrap_or_default();
    let _ = std::fs::remove_file(&map);
    assert!(status.success(), "{status:?}");
    assert!(
        text.lines().any(|l| l.contains("deskhost_triage")),
        "no triage plugin function in {}: {}",
        map.display(),
        text.lines().take(5).collect::<Vec<_>>().join("\n")
    );
}
