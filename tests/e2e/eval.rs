//! `deskhost eval`: a stable report on a fixture, the HTML report in a real browser, and
//! side-by-side comparison of two plugin versions.

use super::support::{PROBE_GRANTS, Ws, bin, repo};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> String {
    repo()
        .join("tests")
        .join("fixtures")
        .join("eval-small.jsonl")
        .to_string_lossy()
        .into_owned()
}

fn eval(ws: &Ws, extra: &[&str]) -> (serde_json::Value, PathBuf) {
    let out_dir = ws.path().join("report");
    let fixture = fixture();
    let mut args = vec![
        "--json",
        "eval",
        &fixture,
        "--manual-seconds",
        "300",
        "--concurrency",
        "1",
    ];
    let out_str = out_dir.to_string_lossy().into_owned();
    args.extend_from_slice(&["--out", &out_str]);
    args.extend_from_slice(extra);
    let out = ws.ok(&args);
    (out.json(), out_dir)
}

#[test]
fn eval_report_on_a_fixture_is_stable() {
    let ws = Ws::trained();
    let (report, dir) = eval(&ws, &[]);
    for file in ["report.json", "report.html", "summary.txt"] {
        assert!(dir.join(file).exists(), "{file} written");
    }
    // Timings, digests and paths vary between runs; everything else must not.
    insta::assert_json_snapshot!("eval_small", report, {
        ".report.dataset" => "[dataset]",
        ".report.plugins.*" => "[plugin digest]",
        ".report.throughput.wall_seconds" => "[seconds]",
        ".report.throughput.tickets_per_second" => "[rate]",
        ".report.throughput.stages.*.*" => "[latency]",
        ".report.throughput.manual.agent_seconds_per_ticket" => "[seconds]",
        ".report.throughput.manual.speedup" => "[ratio]",
    });
}

#[test]
fn eval_reports_every_section_the_data_supports() {
    let ws = Ws::trained();
    let (report, dir) = eval(&ws, &[]);
    let r = &report["report"];
    assert_eq!(r["records"], 21);
    for field in ["category", "queue", "priority"] {
        let f = &r["fields"][field];
        assert_eq!(f["n"], 20, "{field}");
        assert_eq!(f["automation"].as_array().map(Vec::len), Some(101));
        assert!(f["confusion"].is_array() && f["calibration"].is_array());
    }
    assert_eq!(r["escalation"]["n"], 5);
    assert_eq!(r["escalation"]["positives"], 2);
    assert_eq!(r["replies"]["retrieval_n"], 3);
    assert!(r["replies"]["answer_n"].as_u64().is_some());
    assert_eq!(r["summaries"]["n"], 1);
    assert_eq!(
        r["throughput"]["manual"]["source"], "data",
        "handle times in the data win over the flag"
    );
    let summary = std::fs::read_to_string(dir.join("summary.txt")).unwrap_or_default();
    assert!(
        summary.contains("macro-F1")
            && summary.contains("hand-off summaries")
            && summary.contains("p95"),
        "{summary}"
    );
}

#[test]
fn compare_and_candidate_plugins() {
    let ws = Ws::trained();
    let probe = ws.install_probe(
        "probe",
        "triage",
        serde_json::json!({ "mode": "ok", "category": "billing" }),
        PROBE_GRANTS,
    );
    let manifest = ws.path().join("plugins/probe/0.1.0/plugin.toml");
    let manifest = manifest.to_string_lossy().into_owned();
    let (report, _) = eval(&ws, &["--compare", &manifest]);
    let c = &report["comparison"];
    assert_eq!(c["incumbent"], "triage-default@0.1.0");
    assert_eq!(c["candidate"], probe);
    let category = &c["fields"]["category"];
    let disagreements = category["disagreements"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!disagreements.is_empty());
    assert!(
        disagreements
            .iter()
            .all(|d| d["candidate"] == "billing" && d["incumbent"] != "billing"),
        "{disagreements:?}"
    );
    let agreement = category["agreement"].as_f64().unwrap_or(-1.0);
    assert!((agreement - (1.0 - disagreements.len() as f64 / 20.0)).abs() < 1e-9);

    // --plugin evaluates the candidate alone: it always says billing.
    let (alone, _) = eval(&ws, &["--plugin", &manifest]);
    let accuracy = alone["report"]["fields"]["category"]["accuracy"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!(
        (accuracy - 4.0 / 20.0).abs() < 1e-9,
        "4 of the 20 fixture tickets are billing: {accuracy}"
    );
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DESKHOST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.exists())
            })
        })
}

fn headless(browser: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()))
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("DESKHOST_REQUIRE_BROWSER").is_none(),
            "DESKHOST_REQUIRE_BROWSER is set but no chromium was found; tests/run.sh installs it"
        );
        eprintln!("skipping the browser test: no chromium on PATH (tests/run.sh installs it)");
        return;
    };
    let ws = Ws::trained();
    let (_, dir) = eval(&ws, &[]);
    let page = format!("file://{}", dir.join("report.html").display());
    let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    let dom = headless(&browser, profile.path(), &["--dump-dom", &page]);
    let html = String::from_utf8_lossy(&dom.stdout);
    for plot in ["plot reliability", "plot automation", "plot confusion"] {
        assert_eq!(
            html.matches(plot).count(),
            3,
            "one {plot} per field in the rendered DOM"
        );
    }
    assert!(
        html.contains("<rect") && html.contains("<polyline"),
        "plots have their shapes"
    );
    let log = String::from_utf8_lossy(&dom.stderr);
    let page_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(
        page_errors.is_empty(),
        "the page logged errors: {page_errors:?}"
    );

    let shot = bin()
        .parent()
        .map(|d| d.join("eval-report-screenshot.png"))
        .unwrap_or_default();
    let _ = std::fs::remove_file(&shot);
    let out = headless(
        &browser,
        profile.path(),
        &[
            "--window-size=1200,1600",
            &format!("--screenshot={}", shot.display()),
            &page,
        ],
    );
    let bytes = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        bytes > 20_000,
        "screenshot of the rendered report ({bytes} bytes): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "screenshot of the HTML report: {} ({bytes} bytes)",
        shot.display()
    );
}
