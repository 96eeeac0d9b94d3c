//! `deskhost bench`: measurements of whole flows on this machine, each printed beside what
//! it is compared with (native code or a target), measured side by side in one run. A
//! benchmark reports; it asserts nothing about time.

use crate::*;
use deskhost_engine::caps::{Answers, RunScope};
use deskhost_engine::manifest::PolicyKind;
use deskhost_engine::records::{TicketInput, TicketRecord, redact_ticket};
use deskhost_engine::runtime::{LoadedPlugin, PolicyInput, PolicyOutput, Runtime};
use deskhost_engine::workspace::Workspace;
use deskhost_nlp::{Model, Scratch, lang, sentiment};
use std::sync::Arc;
use std::time::Instant;

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// Triage through Wasm (a fresh pooled instance per ticket, the workspace's limits)
    /// against the default triage plugin's crate compiled natively (and its model code
    /// alone), on the same tickets. Both with PAGEMAP_SCAN and without when the kernel has
    /// it.
    Triage {
        /// Tickets (JSON Lines), e.g. ../shared/data/banking77/dev.jsonl.
        #[arg(required_unless_present = "words")]
        tickets: Option<PathBuf>,
        /// Instead of a file: `--limit` seeded synthetic tickets of this many words each, to
        /// show the cost against ticket length; several lengths (`--words 15,50,200,800`)
        /// are measured in turn (`--json`: an array of their reports).
        #[arg(long, conflicts_with = "tickets", value_delimiter = ',')]
        words: Vec<usize>,
        /// Generator seed for --words (same seed, same tickets).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// At most this many tickets.
        #[arg(long, default_value_t = 2000)]
        limit: usize,
        /// Passes over the tickets per variant (the median pass is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Also draw each variant's cost against the words per ticket, as an SVG file (a
        /// point per length: give several `--words`).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Knowledge-base cost against its size: seeded synthetic articles at each size, the
    /// index build, opening it, and searches (needs no workspace).
    Kb {
        /// Article counts.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        sizes: Vec<usize>,
        /// Searches per size.
        #[arg(long, default_value_t = 300)]
        queries: usize,
        /// Generator seed (same seed, same articles and queries).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Also draw search p50 and p99 against the number of articles, as an SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Writes seeded synthetic KB articles (JSON Lines, for `kb import`) to stdout: the
    /// articles `bench kb` measures, optionally with real words mixed in so that real
    /// tickets' queries find them (e.g. `--mix ../shared/data/banking77/train.jsonl`).
    Articles {
        /// How many.
        count: usize,
        /// Generator seed (same seed, same articles).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Words mixed into the articles: a tickets file (JSON Lines: their subjects and
        /// bodies) or any text.
        #[arg(long)]
        mix: Option<PathBuf>,
        /// Share of the words taken from --mix.
        #[arg(long, default_value_t = 0.15, requires = "mix")]
        share: f64,
    },
}

/// One variant's per-ticket cost.
#[derive(serde::Serialize)]
struct Figure {
    name: String,
    /// Median over the rounds of the mean per ticket, microseconds.
    per_ticket_us: f64,
    /// Tickets per second on one core at that cost.
    per_second: f64,
    /// This figure divided by the native plugin's.
    ratio_to_native: f64,
    /// Of a Wasm call, medians per ticket: the host's `instantiate_us`, its `wall_us`
    /// (instantiate + call), and what the invoke spends after the call returns (output check,
    /// store teardown: resetting the instance's memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    phases: Option<Phases>,
}

#[derive(serde::Serialize, Clone, Copy)]
struct Phases {
    instantiate_us: f64,
    wall_us: f64,
    after_us: f64,
}

#[derive(serde::Serialize)]
struct TriageBench {
    tickets: usize,
    /// The file, or how the tickets were generated.
    source: String,
    /// Mean words per ticket (subject and body).
    words_per_ticket: f64,
    rounds: usize,
    plugin: String,
    model_bytes: usize,
    fuel_metering: bool,
    pagemap_scan_available: bool,
    target_ratio: f64,
    /// Tickets whose native decision (the plugin's crate compiled for the host) is the Wasm
    /// one to the bit (values, confidences, rationale): the two ran the same code on the
    /// same input. Fewer than `tickets` when the workspace's triage plugin is another one
    /// (the native figure is then not its cost) or the plugin read the CRM (native has none).
    native_identical: usize,
    figures: Vec<Figure>,
}

impl Render for TriageBench {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "triage: {} tickets ({}, {:.0} words on average) x {} rounds, {} (model {:.1} MB), fuel {}, PAGEMAP_SCAN {}",
            self.tickets,
            self.source,
            self.words_per_ticket,
            self.rounds,
            self.plugin,
            self.model_bytes as f64 / 1e6,
            if self.fuel_metering { "on" } else { "off" },
            if self.pagemap_scan_available {
                "available"
            } else {
                "not available (kernel < 6.7?)"
            }
        );
        say!(
            out,
            "{:<34} {:>10} {:>10} {:>9}  phases (instantiate / in-call / after, us)",
            "variant",
            "us/ticket",
            "tickets/s",
            "x native"
        );
        for f in &self.figures {
            let phases = f.phases.map_or(String::new(), |p| {
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    p.instantiate_us, p.wall_us, p.after_us
                )
            });
            say!(
                out,
                "{:<34} {:>10.1} {:>10.0} {:>9.2}  {}",
                f.name,
                f.per_ticket_us,
                f.per_second,
                f.ratio_to_native,
                phases
            );
        }
        if self.native_identical < self.tickets {
            say!(
                out,
                "note: the native plugin decided {} of {} tickets as the component did; it is not the same code or input, so the ratios are not its cost",
                self.native_identical,
                self.tickets
            );
        }
        say!(
            out,
            "target: the Wasm invoke within {:.1}x the native plugin",
            self.target_ratio
        );
        Ok(())
    }
}

pub(crate) async fn bench(dir: &Path, cmd: BenchCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Triage {
            tickets,
            words,
            seed,
            limit,
            rounds,
            plot,
        } => {
            let sources: Vec<Tickets> = match tickets {
                Some(file) => vec![Tickets::File(file)],
                None if !words.is_empty() => words
                    .iter()
                    .map(|&words| Tickets::Synthetic { words, seed })
                    .collect(),
                None => bail!(
                    "give a tickets file (JSON Lines), or --words N for synthetic tickets of N words"
                ),
            };
            let mut reports = Vec::with_capacity(sources.len());
            for source in &sources {
                let report = triage(dir, source, limit, rounds.max(1)).await?;
                if !json {
                    show(&report, false)?;
                }
                reports.push(report);
            }
            if let Some(path) = &plot {
                write_plot(path, &triage_chart(&reports))?;
            }
            if json {
                let mut out = std::io::stdout().lock();
                match reports.as_slice() {
                    [one] => serde_json::to_writer_pretty(&mut out, one)?,
                    all => serde_json::to_writer_pretty(&mut out, all)?,
                }
                writeln!(out)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Kb {
            sizes,
            queries,
            seed,
            plot,
        } => {
            let report = kb(&sizes, queries.max(1), seed)?;
            if let Some(path) = &plot {
                write_plot(path, &kb_chart(&report))?;
            }
            show(&report, json)?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Articles {
            count,
            seed,
            mix,
            share,
        } => {
            use std::io::Write;
            if !(0.0..=1.0).contains(&share) {
                bail!("--share {share}: give a share of the words between 0 and 1 (e.g. 0.15)");
            }
            let mix = match &mix {
                Some(file) => {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read --mix {}", file.display()))?;
                    // Tickets (JSON Lines): their subjects and bodies; other text as it is.
                    let words: String = text
                        .lines()
                        .map(
                            |line| match serde_json::from_str::<serde_json::Value>(line) {
                                Ok(serde_json::Value::Object(o)) => ["subject", "body"]
                                    .iter()
                                    .filter_map(|k| o.get(*k).and_then(|v| v.as_str()))
                                    .collect::<Vec<_>>()
                                    .join(" "),
                                _ => line.to_string(),
                            },
                        )
                        .collect::<Vec<_>>()
                        .join("\n");
                    deskhost_engine::synth::Mix::new(&words, share)
                }
                None => deskhost_engine::synth::Mix::default(),
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for article in deskhost_engine::synth::articles_mixed(seed, count, &mix) {
                serde_json::to_writer(&mut out, &article)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes `chart` to `path` as SVG.
fn write_plot(path: &Path, chart: &super::plot::Chart) -> Result<()> {
    std::fs::write(path, chart.svg())
        .with_context(|| format!("cannot write the plot to {}", path.display()))?;
    note!("plot written to {}", path.display());
    Ok(())
}

/// Each variant's cost per ticket against the tickets' mean length, one report per length.
fn triage_chart(reports: &[TriageBench]) -> super::plot::Chart {
    let mut series: Vec<super::plot::Series> = Vec::new();
    for report in reports {
        for (i, figure) in report.figures.iter().enumerate() {
            if series.len() <= i {
                series.push(super::plot::Series {
                    name: figure.name.clone(),
                    points: Vec::new(),
                });
            }
            if let Some(s) = series.get_mut(i) {
                s.points
                    .push((report.words_per_ticket, figure.per_ticket_us));
            }
        }
    }
    super::plot::Chart {
        title: "Triage per ticket against ticket length".into(),
        x_label: "words per ticket".into(),
        y_label: "µs per ticket".into(),
        series,
    }
}

/// Search p50 and p99 against the number of articles.
fn kb_chart(report: &KbBench) -> super::plot::Chart {
    let line = |name: &str, pick: fn(&KbSize) -> f64| super::plot::Series {
        name: name.into(),
        points: report
            .sizes
            .iter()
            .map(|s| (s.articles as f64, pick(s) / 1000.0))
            .collect(),
    };
    super::plot::Chart {
        title: format!("KB search against its size ({} queries)", report.queries),
        x_label: "articles".into(),
        y_label: "ms per search".into(),
        series: vec![
            line("search p50", |s| s.search_p50_us),
            line("search p99", |s| s.search_p99_us),
        ],
    }
}

fn median(xs: &[f64]) -> f64 {
    deskhost_engine::eval::metrics::percentile(xs, 0.5)
}

/// What `bench triage` measures on.
enum Tickets {
    /// A JSON Lines file.
    File(PathBuf),
    /// `deskhost_engine::synth::tickets` of `words` words.
    Synthetic { words: usize, seed: u64 },
}

/// What a triage decision says, to the bit: its values, their confidences and the
/// rationale (which cites the rules that fired). The component's output (the host's WIT
/// types) and the native plugin's (the guest SDK's) are the same record, so one text.
macro_rules! fingerprint {
    ($d:expr) => {{
        let d = $d;
        format!(
            "{}|{:08x}|{}|{:08x}|{:?}|{:08x}|{}|{:?}|{:?}|{}",
            d.category.value,
            d.category.confidence.to_bits(),
            d.queue.value,
            d.queue.confidence.to_bits(),
            d.priority.value,
            d.priority.confidence.to_bits(),
            d.language.value,
            d.sentiment.value,
            d.escalate.as_ref().map(|e| &e.code),
            d.rationale
        )
    }};
}

async fn triage(dir: &Path, source: &Tickets, limit: usize, rounds: usize) -> Result<TriageBench> {
    let ws = Workspace::open(dir).await?;
    let (inputs, described): (Vec<TicketInput>, String) = match source {
        Tickets::File(file) => {
            let parsed = cli::data::read_jsonl::<TicketInput>(file, TicketInput::check)?;
            let inputs: Vec<TicketInput> = parsed
                .records
                .into_iter()
                .map(|(_, t)| t)
                .take(limit)
                .collect();
            if inputs.is_empty() {
                bail!("{} holds no valid ticket to measure", file.display());
            }
            (inputs, file.display().to_string())
        }
        Tickets::Synthetic { words, seed } => (
            deskhost_engine::synth::tickets(*seed, limit.max(1), *words),
            format!("synthetic, {words} words each, seed {seed}"),
        ),
    };
    let words_per_ticket = inputs
        .iter()
        .map(|t| t.subject.split_whitespace().count() + t.body.split_whitespace().count())
        .sum::<usize>() as f64
        / inputs.len().max(1) as f64;
    let pipeline = ws.pipeline().await?;
    let plugin = pipeline.active().triage.clone();
    let data = plugin.manifest.data.as_ref().with_context(|| {
        format!(
            "the triage plugin {} has no model (`data` in its manifest); train one first",
            plugin.identity.key()
        )
    })?;
    // The manifest names its files relative to itself.
    let beside_manifest = |file: &Path| {
        plugin
            .manifest_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(file)
    };
    let model_path = beside_manifest(data);
    let model_bytes = std::fs::read(&model_path)
        .with_context(|| format!("cannot read the model {}", model_path.display()))?;
    let model =
        Model::parse(&model_bytes).map_err(|e| anyhow::anyhow!("{}: {e}", model_path.display()))?;
    let records: Vec<Arc<TicketRecord>> = inputs
        .into_iter()
        .map(|input| {
            Arc::new(TicketRecord {
                content_hash: input.content_hash(),
                input,
                version: 1,
            })
        })
        .collect();

    // Native, the plugin: the default triage plugin's crate compiled for the host, over the
    // plugin's settings and model bytes as they are bound into the component (parsed on
    // every call there too), each ticket as the component is shown it. The CRM is not
    // there natively: a tier lookup answers none (and the decisions would differ).
    let settings = match &plugin.manifest.config {
        Some(file) => {
            let path = beside_manifest(file);
            std::fs::read(&path)
                .with_context(|| format!("cannot read the settings {}", path.display()))?
        }
        None => Vec::new(),
    };
    let views: Vec<deskhost_sdk::Ticket> = records
        .iter()
        .map(|r| sdk_ticket(redact_ticket(r, &plugin.identity.grants)))
        .collect();
    let no_crm = |_: &str| None;
    let mut native_decisions = Vec::with_capacity(views.len());
    let mut plugin_rounds = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let started = Instant::now();
        for view in &views {
            let decided = deskhost_triage::triage_with(view, &settings, &model_bytes, &no_crm);
            if round == 0 {
                native_decisions.push(decided.ok().map(|d| fingerprint!(&d)));
            } else {
                std::hint::black_box(decided.is_ok());
            }
        }
        plugin_rounds.push(started.elapsed().as_secs_f64() * 1e6 / records.len() as f64);
    }
    let native = median(&plugin_rounds);

    // Native, the model code alone (deskhost-nlp): vectorize with explanations, predict
    // every head, the top 3 n-grams per head, language and sentiment detection — no
    // settings, rules or decision to build.
    let mut model_rounds = Vec::with_capacity(rounds);
    let mut scratch = Scratch::default();
    let mut sink = 0usize;
    for _ in 0..rounds {
        let started = Instant::now();
        for r in &records {
            let text = deskhost_nlp::text::ticket_text(&r.input.subject, &r.input.body);
            model.vectorize(&text, &mut scratch, true)?;
            for p in model.predict(&scratch) {
                if let Some(head) = model.head(&p.field) {
                    sink += model.explain(&text, &scratch, &head, p.best, 3).len();
                }
            }
            sink += lang::detect(&text).language.len();
            sink += sentiment::detect(&text).evidence.len();
        }
        model_rounds.push(started.elapsed().as_secs_f64() * 1e6 / records.len() as f64);
    }
    std::hint::black_box(sink);
    let model_only = median(&model_rounds);

    let mut figures = vec![
        Figure {
            name: "native plugin (deskhost-triage)".into(),
            per_ticket_us: native,
            per_second: 1e6 / native.max(1e-9),
            ratio_to_native: 1.0,
            phases: None,
        },
        Figure {
            name: "native model code (deskhost-nlp)".into(),
            per_ticket_us: model_only,
            per_second: 1e6 / model_only.max(1e-9),
            ratio_to_native: model_only / native.max(1e-9),
            phases: None,
        },
    ];
    let available = deskhost_engine::runtime::pagemap_scan_available();
    let mut variants = vec![(pipeline.runtime.clone(), plugin.clone())];
    let other = !pipeline.runtime.pagemap_scan() || available;
    if other {
        // The same plugin on an engine with the other PAGEMAP_SCAN setting.
        let mut config = ws.config.runtime.clone();
        config.pagemap_scan = !pipeline.runtime.pagemap_scan();
        let cache = std::env::var_os("DESKHOST_CACHE_DIR")
            .map_or_else(|| ws.dir.join("cache"), PathBuf::from);
        let runtime = Arc::new(
            Runtime::new(&config, &cache).map_err(|e| anyhow::anyhow!("second engine: {e}"))?,
        );
        let loaded = runtime.load_plugin(
            &plugin.manifest_path,
            PolicyKind::Triage,
            &ws.config.ceiling,
        )?;
        variants.push((runtime, Arc::new(loaded)));
    }
    // Counted against every engine's decisions (they must not differ either).
    let mut native_identical = records.len();
    for (runtime, plugin) in &variants {
        let (per_ticket, phases, decided) =
            wasm_rounds(runtime, plugin, &pipeline, &records, rounds).await?;
        native_identical = native_identical.min(
            decided
                .iter()
                .zip(&native_decisions)
                .filter(|(wasm, native)| native.as_ref() == Some(wasm))
                .count(),
        );
        figures.push(Figure {
            name: format!(
                "Wasm invoke, PAGEMAP_SCAN {}",
                if runtime.pagemap_scan() { "on" } else { "off" }
            ),
            per_ticket_us: per_ticket,
            per_second: 1e6 / per_ticket.max(1e-9),
            ratio_to_native: per_ticket / native.max(1e-9),
            phases: Some(phases),
        });
    }
    Ok(TriageBench {
        tickets: records.len(),
        source: described,
        words_per_ticket,
        rounds,
        plugin: plugin.identity.key(),
        model_bytes: model_bytes.len(),
        fuel_metering: pipeline.runtime.fuel_metering(),
        pagemap_scan_available: available,
        target_ratio: 1.5,
        native_identical,
        figures,
    })
}

/// The ticket the component is shown, as the guest SDK's type (the same WIT record).
fn sdk_ticket(t: deskhost_engine::bindings::types::Ticket) -> deskhost_sdk::Ticket {
    use deskhost_engine::bindings::types::AuthorRole as Host;
    deskhost_sdk::Ticket {
        id: t.id,
        version: t.version,
        subject: t.subject,
        body: t.body,
        channel: t.channel,
        language: t.language,
        customer_id: t.customer_id,
        requester: t.requester,
        tags: t.tags,
        messages: t.messages.map(|messages| {
            messages
                .into_iter()
                .map(|m| deskhost_sdk::Message {
                    author: match m.author {
                        Host::Customer => deskhost_sdk::AuthorRole::Customer,
                        Host::Agent => deskhost_sdk::AuthorRole::Agent,
                        Host::System => deskhost_sdk::AuthorRole::System,
                    },
                    body: m.body,
                    sent_at: m.sent_at,
                })
                .collect()
        }),
        created_at: t.created_at,
    }
}

/// Median per-ticket cost of a full `Runtime::invoke` (instantiate, call, output check,
/// teardown) over `rounds` passes, one ticket at a time, its phases, and each ticket's
/// decision (`fingerprint!`, from the first pass).
async fn wasm_rounds(
    runtime: &Runtime,
    plugin: &Arc<LoadedPlugin>,
    pipeline: &deskhost_engine::pipeline::Pipeline,
    records: &[Arc<TicketRecord>],
    rounds: usize,
) -> Result<(f64, Phases, Vec<String>)> {
    let mut per_round = Vec::with_capacity(rounds);
    let mut decided = Vec::with_capacity(records.len());
    let (mut inst, mut wall, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let started = Instant::now();
        for (i, r) in records.iter().enumerate() {
            let view = redact_ticket(r, &plugin.identity.grants);
            let scope = RunScope::new(format!("bench_{round}_{i}"), r.clone());
            let one = Instant::now();
            let invocation = runtime
                .invoke(
                    plugin,
                    pipeline.services.clone(),
                    scope,
                    PolicyInput::Triage { ticket: &view },
                    Answers::Live,
                )
                .await;
            let took = one.elapsed().as_secs_f64() * 1e6;
            match &invocation.result {
                Err(fault) => bail!(
                    "ticket {}: the triage plugin failed: {}",
                    r.input.id,
                    fault.message
                ),
                Ok(PolicyOutput::Triage(d)) if round == 0 => decided.push(fingerprint!(d)),
                Ok(_) => {}
            }
            if round == rounds / 2 {
                inst.push(invocation.stats.instantiate_us as f64);
                wall.push(invocation.stats.wall_us as f64);
                total.push(took);
            }
        }
        per_round.push(started.elapsed().as_secs_f64() * 1e6 / records.len() as f64);
    }
    let (instantiate_us, wall_us, total_us) = (median(&inst), median(&wall), median(&total));
    Ok((
        median(&per_round),
        Phases {
            instantiate_us,
            wall_us,
            after_us: (total_us - wall_us).max(0.0),
        },
        decided,
    ))
}

#[derive(serde::Serialize)]
struct KbBench {
    seed: u64,
    queries: usize,
    sizes: Vec<KbSize>,
}

#[derive(serde::Serialize)]
struct KbSize {
    articles: usize,
    build_seconds: f64,
    /// Opening the built index for its recorded version (what every workspace open does).
    open_ms: f64,
    search_p50_us: f64,
    search_p99_us: f64,
    /// Looking one article up by id (what a citation check does).
    article_p50_us: f64,
}

impl Render for KbBench {
    fn human(&self, out: &mut Lines<'_>) -> std::io::Result<()> {
        say!(
            out,
            "knowledge base: seeded articles (seed {}), {} searches per size",
            self.seed,
            self.queries
        );
        say!(
            out,
            "{:>9} {:>9} {:>9} {:>11} {:>11} {:>12}",
            "articles",
            "build s",
            "open ms",
            "search p50",
            "search p99",
            "article p50"
        );
        for s in &self.sizes {
            say!(
                out,
                "{:>9} {:>9.2} {:>9.2} {:>9.0}us {:>9.0}us {:>10.0}us",
                s.articles,
                s.build_seconds,
                s.open_ms,
                s.search_p50_us,
                s.search_p99_us,
                s.article_p50_us
            );
        }
        say!(out, "target: open and a single search independent of size");
        Ok(())
    }
}

fn kb(sizes: &[usize], queries: usize, seed: u64) -> Result<KbBench> {
    use deskhost_engine::kb::{KbIndex, version_of};
    use deskhost_engine::synth;
    let mut out = Vec::new();
    for &n in sizes {
        let articles = synth::articles(seed, n);
        let asked = synth::queries(seed, queries);
        let mut rng = synth::Seeded::new(seed ^ 0x1d);
        let ids: Vec<String> = (0..queries)
            .map(|_| articles[rng.below(articles.len())].id.clone())
            .collect();
        let dir = tempfile::tempdir()?;
        let version = version_of(&articles);
        let started = Instant::now();
        drop(KbIndex::build(dir.path(), articles)?);
        let build_seconds = started.elapsed().as_secs_f64();
        // Opened once before it is timed: the first open right after the build stalls (~40 ms
        // at 100k articles, in reading meta.json), a later one does not; every command opens
        // an index built by an earlier one (`kb search` on a 100k-article workspace: ~12 ms
        // for the whole process).
        drop(KbIndex::open_current(dir.path(), &version));
        let started = Instant::now();
        let index = KbIndex::open_current(dir.path(), &version)
            .context("the index just built does not open")?;
        let open_ms = started.elapsed().as_secs_f64() * 1e3;
        let public = vec!["public".to_string()];
        let mut searches = Vec::with_capacity(queries);
        for q in &asked {
            let t = Instant::now();
            std::hint::black_box(index.search(q, Some("en"), &public, 5)?);
            searches.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let mut lookups = Vec::with_capacity(queries);
        for id in &ids {
            let t = Instant::now();
            std::hint::black_box(index.article(id));
            lookups.push(t.elapsed().as_secs_f64() * 1e6);
        }
        out.push(KbSize {
            articles: n,
            build_seconds,
            open_ms,
            search_p50_us: median(&searches),
            search_p99_us: deskhost_engine::eval::metrics::percentile(&searches, 0.99),
            article_p50_us: median(&lookups),
        });
    }
    Ok(KbBench {
        seed,
        queries,
        sizes: out,
    })
}
