//! Soak benchmark: many tickets at once through a plugin that faults on a third of them
//! (panic, fuel, plugin error), each in a fresh pooled instance. Prints the host's resident
//! memory every 10% of the runs: it must stay flat (no leak per faulted instance), and every
//! outcome must be its own ticket's (no cross-talk). A benchmark, not a test: it asserts
//! nothing about time.
//!
//! Needs the probe component (`cargo build --profile plugin --target wasm32-wasip2 -p
//! deskhost-probe`). Run: `cargo bench -p deskhost-engine --bench fault_soak` (100k runs; set
//! DESKHOST_SOAK_RUNS to change).

use deskhost_engine::caps::{Answers, RunScope, Services};
use deskhost_engine::config::RuntimeConfig;
use deskhost_engine::kb::KbIndex;
use deskhost_engine::manifest::{Grants, PolicyKind};
use deskhost_engine::records::{TicketInput, TicketRecord, redact_ticket};
use deskhost_engine::runtime::{PolicyInput, Runtime};
use deskhost_engine::store::Store;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<f64>().ok())
        })
        .map_or(0.0, |pages| pages * 4096.0 / (1024.0 * 1024.0))
}

fn probe() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("wasm32-wasip2/plugin/deskhost_probe.wasm")
}

fn main() {
    let runs: usize = std::env::var("DESKHOST_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(soak(runs));
}

async fn soak(runs: usize) {
    let component = std::fs::read(probe()).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the probe first (see the header of this file)",
            probe().display()
        )
    });
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let plugin_dir = dir.path().join("probe");
    std::fs::create_dir_all(&plugin_dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(plugin_dir.join("probe.wasm"), &component).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(plugin_dir.join("settings.json"), r#"{"mode":"by-ticket"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let manifest = format!(
        "id = \"probe\"\nversion = \"0.1.0\"\nkind = \"triage\"\nwit = \"0.1.0\"\ncomponent = \"probe.wasm\"\nsha256 = \"{}\"\nconfig = \"settings.json\"\n[limits]\nfuel = 5_000_000\nwall_ms = 200\n[grants.helpdesk]\n[grants.kb]\ncollections = [\"public\"]\n[grants.crm]\nfields = [\"tier\"]\n",
        deskhost_engine::util::sha256_hex(&component)
    );
    std::fs::write(plugin_dir.join("plugin.toml"), manifest).unwrap_or_else(|e| panic!("{e}"));
    let ceiling: Grants = toml::from_str(
        "[helpdesk]\n[kb]\ncollections = [\"public\"]\n[crm]\nfields = [\"tier\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let runtime = Runtime::new(&RuntimeConfig::default(), &dir.path().join("cache"))
        .unwrap_or_else(|e| panic!("{e}"));
    let plugin = Arc::new(
        runtime
            .load_plugin(
                &plugin_dir.join("plugin.toml"),
                PolicyKind::Triage,
                &ceiling,
            )
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let store = Store::open(&dir.path().join("soak.db"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kb = KbIndex::build(&dir.path().join("kb"), Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let services = Arc::new(Services { store, kb });
    let kinds = ["ok", "PANIC", "ok", "LOOP", "ERROR", "ok"];
    let expected = |i: usize| match kinds[i % kinds.len()] {
        "PANIC" => "guest-panic",
        "LOOP" => "fuel",
        "ERROR" => "plugin-error",
        _ => "ok",
    };
    let runtime = &runtime;
    let step = (runs / 10).max(1);
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut crossed = 0usize;
    let mut samples = vec![(0usize, rss_mib())];
    let started = std::time::Instant::now();
    let mut stream = futures::stream::iter(0..runs)
        .map(|i| {
            let plugin = plugin.clone();
            let services = services.clone();
            async move {
                let input: TicketInput = serde_json::from_value(serde_json::json!({
                    "id": format!("S-{i}"),
                    "subject": "soak",
                    "body": format!("ticket {i} says {}", kinds[i % kinds.len()]),
                }))
                .unwrap_or_else(|e| panic!("{e}"));
                let ticket = Arc::new(TicketRecord {
                    content_hash: input.content_hash(),
                    input,
                    version: 1,
                });
                let view = redact_ticket(&ticket, &plugin.identity.grants);
                let scope = RunScope::new(format!("run_{i}"), ticket);
                let invocation = runtime
                    .invoke(
                        &plugin,
                        services,
                        scope,
                        PolicyInput::Triage { ticket: &view },
                        Answers::Live,
                    )
                    .await;
                let outcome = match &invocation.result {
                    Ok(out) => {
                        let own = serde_json::to_string(out)
                            .map(|s| s.contains(&format!("ok S-{i}\"")))
                            .unwrap_or(false);
                        if own { "ok" } else { "crossed" }
                    }
                    Err(f) => {
                        let own =
                            f.kind.as_str() == "fuel" || f.message.contains(&format!("S-{i}"));
                        if own { f.kind.as_str() } else { "crossed" }
                    }
                };
                (i, outcome)
            }
        })
        .buffer_unordered(8);
    let mut done = 0;
    while let Some((i, outcome)) = stream.next().await {
        if outcome == "crossed" || outcome != expected(i) {
            crossed += 1;
        }
        *outcomes.entry(outcome).or_default() += 1;
        done += 1;
        if done % step == 0 {
            samples.push((done, rss_mib()));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fault soak: {runs} runs in {secs:.1}s ({:.0}/s), 8 in flight",
        runs as f64 / secs
    );
    println!("outcomes: {outcomes:?}; results not their own ticket's: {crossed}");
    println!("{:>8}  {:>9}", "runs", "RSS MiB");
    for (n, rss) in &samples {
        println!("{n:>8}  {rss:>9.1}");
    }
    let first = samples.get(1).map_or(0.0, |s| s.1);
    let last = samples.last().map_or(0.0, |s| s.1);
    println!(
        "RSS after {} runs / after {} runs: {:.3}",
        samples.last().map_or(0, |s| s.0),
        samples.get(1).map_or(0, |s| s.0),
        if first > 0.0 { last / first } else { 0.0 }
    );
}
