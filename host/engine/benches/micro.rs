//! Micro benchmarks of the host's hot paths, one at a time (divan). Whole flows — Wasm vs
//! native triage, KB build/open/search by size, `serve` under load — are `deskhost bench`
//! and the e2e load test; see the README's Performance section and `examples/bench/README.md`.
//!
//! Run: `cargo bench -p deskhost-engine --bench micro` (add `-- host_call` to pick one).
//!
//! - `host_call`: one call through the capability choke point — admission (grant, call
//!   limits), the capability's body, and the record every call leaves in the run's audited
//!   transcript (arguments, their digest, the answer and its size, latency). The body is
//!   `helpdesk.get-ticket` of the ticket under decision, as a plugin makes it; the crossing
//!   of the Wasm boundary (lifting and lowering the values) is not included. Target < 1 µs.
//! - `kb_search`: BM25 search of a seeded synthetic KB (`deskhost_engine::synth`) by size.
//! - `commit`: writing a batch of decisions through the committer's path (one SQLite
//!   transaction, fsync included), per decision, by batch size.

use deskhost_engine::caps::{CallContext, CapResult, PluginIdentity, RunScope, Services};
use deskhost_engine::kb::KbIndex;
use deskhost_engine::manifest::{CapabilityName, Grants, Limits, PolicyKind};
use deskhost_engine::records::{TicketRecord, redact_ticket};
use deskhost_engine::store::Store;
use deskhost_engine::synth;
use divan::{Bencher, counter::ItemsCount};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The allocator the `deskhost` binary uses (host/cli/src/main.rs), so the figures are its.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio: {e}"))
}

struct CallFixture {
    plugin: Arc<PluginIdentity>,
    services: Arc<Services>,
    ticket: Arc<TicketRecord>,
    _dir: tempfile::TempDir,
}

fn call_fixture(rt: &tokio::runtime::Runtime) -> CallFixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = rt
        .block_on(Store::open(&dir.path().join("bench.db")))
        .unwrap_or_else(|e| panic!("{e}"));
    let kb = KbIndex::build(&dir.path().join("kb"), Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let grants: Grants = toml::from_str("[helpdesk]\n[kb]\ncollections = [\"public\"]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let plugin = Arc::new(PluginIdentity {
        id: "bench".into(),
        version: "0.1.0".into(),
        kind: PolicyKind::Triage,
        digest: "0".repeat(64),
        config_digest: "0".repeat(64),
        grants,
        limits: Limits {
            host_calls: u32::MAX,
            ..Limits::default()
        },
        settings: Arc::from(Vec::new()),
        data: Arc::from(Vec::new()),
    });
    let input = synth::tickets(1, 1, 120)
        .pop()
        .unwrap_or_else(|| panic!("no ticket"));
    let ticket = Arc::new(TicketRecord {
        content_hash: input.content_hash(),
        input,
        version: 1,
    });
    CallFixture {
        plugin,
        services: Arc::new(Services { store, kb }),
        ticket,
        _dir: dir,
    }
}

/// One `helpdesk.get-ticket` of the ticket under decision through the choke point, with its
/// transcript record (a fresh call context per sample batch, not timed).
#[divan::bench]
fn host_call(bencher: Bencher) {
    let rt = runtime();
    let f = call_fixture(&rt);
    bencher
        .with_inputs(|| {
            CallContext::new(
                f.plugin.clone(),
                RunScope::new("run_bench".into(), f.ticket.clone()),
                f.services.clone(),
            )
        })
        .bench_local_refs(|ctx| {
            let id = f.ticket.input.id.clone();
            let args = serde_json::json!({ "id": id });
            let answer = futures::executor::block_on(ctx.call(
                CapabilityName::Helpdesk,
                "get-ticket",
                args,
                false,
                async |ctx: &CallContext| {
                    CapResult::Ok(redact_ticket(&ctx.scope.ticket, &ctx.plugin.grants))
                },
            ));
            divan::black_box(answer.is_ok())
        });
}

/// A five-hit search of a synthetic KB of `n` articles (public collection, English).
#[divan::bench(args = [1_000, 10_000], sample_count = 200)]
fn kb_search(bencher: Bencher, n: usize) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let index = KbIndex::build(dir.path(), synth::articles(7, n)).unwrap_or_else(|e| panic!("{e}"));
    let queries = synth::queries(7, 256);
    let public = vec!["public".to_string()];
    let mut i = 0usize;
    bencher.bench_local(|| {
        i = i.wrapping_add(1);
        let q = &queries[i % queries.len()];
        divan::black_box(index.search(q, Some("en"), &public, 5).map(|h| h.len()))
    });
}

static NEXT_TICKET: AtomicU64 = AtomicU64::new(0);

/// Writing `n` decisions in one transaction (what the committer does with what has queued
/// up); reported per decision. Each sample decides fresh, pending tickets.
#[divan::bench(args = [1, 8, 32, 128], sample_count = 30, sample_size = 1)]
fn commit(bencher: Bencher, n: usize) {
    use deskhost_protocol::gate::Effect;
    use deskhost_store::commit::{RunBundle, StageRow, write_all};
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = rt
        .block_on(Store::open(&dir.path().join("bench.db")))
        .unwrap_or_else(|e| panic!("{e}"));
    let stage = |name: &str| StageRow {
        stage: name.into(),
        plugin: format!("{name}-default@0.1.0"),
        digest: "0".repeat(64),
        outcome: "ok".into(),
        proposal: Some(
            serde_json::json!({"category": {"value": "billing", "confidence": 0.9}}).into(),
        ),
        fault: None,
        stats: serde_json::json!({"wall_us": 120, "fuel": 100000}).into(),
        transcript: serde_json::json!({"calls": [], "logs": []}).into(),
        input: serde_json::json!({"ticket": {"subject": "s", "body": "b".repeat(400)}}).into(),
        output: Some(serde_json::json!({"ok": true}).into()),
    };
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| {
            let first = NEXT_TICKET.fetch_add(n as u64, Ordering::Relaxed);
            let mut tickets = synth::tickets(first, n, 60);
            for (i, t) in tickets.iter_mut().enumerate() {
                t.id = format!("B-{}", first + i as u64);
            }
            rt.block_on(store.ingest_tickets(&tickets))
                .unwrap_or_else(|e| panic!("{e}"));
            tickets
                .iter()
                .map(|t| RunBundle {
                    run_id: format!("run_{}", t.id),
                    ticket_id: t.id.clone(),
                    ticket_version: 1,
                    started_at: "2026-12-02T00:00:00Z".into(),
                    outcome: "applied".into(),
                    inputs: serde_json::json!({"ticket_version": 1}).into(),
                    result: serde_json::json!({"ticket_id": t.id}).into(),
                    stages: vec![stage("triage"), stage("reply")],
                    effects: vec![
                        Effect::Category {
                            value: "billing".into(),
                        },
                        Effect::Queue {
                            value: "billing".into(),
                        },
                        Effect::InternalNote {
                            body: "reply drafted".into(),
                        },
                    ],
                    assessment: None,
                    status: "triaged".into(),
                    review: None,
                    shadows: Vec::new(),
                    audit: vec![deskhost_store::audit::AuditEntry::run(
                        &format!("run_{}", t.id),
                        "run-inputs",
                        serde_json::json!({"ticket": t.id}),
                    )],
                })
                .collect::<Vec<_>>()
        })
        .bench_local_values(|bundles| {
            let refs: Vec<&RunBundle> = bundles.iter().collect();
            rt.block_on(write_all(&store, &refs))
                .unwrap_or_else(|e| panic!("{e}"))
                .len()
        });
}
