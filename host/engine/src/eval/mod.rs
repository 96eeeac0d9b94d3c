//! `deskhost eval`: replays labeled history through the installed plugins (or a candidate)
//! without applying anything, and measures quality and throughput against the humans' own
//! baseline.
//!
//! Records are JSON Lines in any of the shapes of `../shared/data`: tickets with `labels`
//! (and optionally `reference_answer`, `handle_seconds`), KB scenarios (`query`,
//! `required_articles`), and conversations (`messages` with `role`/`text`, `summaries`).

pub mod metrics;
pub mod report;

use crate::bindings::types;
use crate::caps::RunScope;
use crate::pipeline::{EscalationMode, Pipeline, Proposals, checks};
use crate::records::{MessageInput, TicketInput, TicketRecord};
use crate::runtime::PolicyOutput;
use futures::StreamExt;
use metrics::{BinaryScores, ClassificationReport, Scored};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// One labeled record.
#[derive(Clone, Debug)]
pub struct EvalRecord {
    /// The ticket as the plugins see it.
    pub ticket: TicketRecord,
    /// Gold labels by field.
    pub labels: BTreeMap<String, String>,
    /// The answer a human sent.
    pub reference_answer: Option<String>,
    /// Articles a correct answer needs.
    pub required_articles: Vec<String>,
    /// Human summaries of the conversation.
    pub summaries: Vec<String>,
    /// Human handle time, seconds.
    pub handle_seconds: Option<f64>,
    /// The conversation in order (for the lead-3 baseline).
    pub conversation: Vec<String>,
}

fn text_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses one record; the error says what is missing.
pub fn parse_record(v: &Value) -> Result<EvalRecord, String> {
    let id = match v.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("missing \"id\"".into()),
    };
    // Conversations: `messages` of {role, text}; the first message is the ticket body.
    let mut conversation = Vec::new();
    let mut messages = Vec::new();
    let mut body = text_of(v, "body");
    if let Some(list) = v.get("messages").and_then(Value::as_array) {
        for m in list {
            let text = text_of(m, "text")
                .or_else(|| text_of(m, "body"))
                .unwrap_or_default();
            let author = text_of(m, "role")
                .or_else(|| text_of(m, "author"))
                .unwrap_or_else(|| "customer".into());
            let author = if author == "agent" || author == "system" {
                author
            } else {
                "customer".into()
            };
            conversation.push(text.clone());
            messages.push(MessageInput {
                author,
                body: text,
                sent_at: text_of(m, "sent_at"),
            });
        }
    }
    if body.is_none() && !messages.is_empty() {
        body = Some(messages.remove(0).body);
    } else if let Some(b) = &body {
        conversation.insert(0, b.clone());
    }
    let body = body
        .or_else(|| text_of(v, "query"))
        .ok_or("missing \"body\" (or \"query\", or \"messages\")")?;
    if conversation.is_empty() {
        conversation.push(body.clone());
    }
    let mut labels = BTreeMap::new();
    if let Some(obj) = v.get("labels").and_then(Value::as_object) {
        for (k, x) in obj {
            match x {
                Value::String(s) => labels.insert(k.clone(), s.clone()),
                Value::Bool(b) => labels.insert(k.clone(), b.to_string()),
                Value::Number(n) => labels.insert(k.clone(), n.to_string()),
                _ => None,
            };
        }
    }
    let input = TicketInput {
        id,
        subject: text_of(v, "subject").unwrap_or_default(),
        body,
        channel: text_of(v, "channel"),
        language: text_of(v, "language"),
        customer_id: text_of(v, "customer_id"),
        requester: None,
        tags: strings(v, "tags"),
        messages,
        created_at: text_of(v, "created_at"),
        labels: BTreeMap::new(),
        reference_answer: None,
        customer: None,
        handle_seconds: None,
    };
    Ok(EvalRecord {
        ticket: TicketRecord {
            content_hash: input.content_hash(),
            input,
            version: 1,
        },
        labels,
        reference_answer: text_of(v, "reference_answer"),
        required_articles: strings(v, "required_articles"),
        summaries: strings(v, "summaries"),
        handle_seconds: v.get("handle_seconds").and_then(Value::as_f64),
        conversation,
    })
}

/// Reads records; bad lines come back as `file:line: problem`.
pub fn read_records(
    path: &Path,
    limit: Option<usize>,
) -> std::io::Result<(Vec<EvalRecord>, Vec<String>)> {
    let text = std::fs::read_to_string(path)?;
    let mut records = Vec::new();
    let mut rejected = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if limit.is_some_and(|n| records.len() >= n) {
            break;
        }
        match serde_json::from_str::<Value>(line)
            .map_err(|e| e.to_string())
            .and_then(|v| parse_record(&v))
        {
            Ok(r) => records.push(r),
            Err(e) => rejected.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    Ok((records, rejected))
}

/// Settings of one evaluation.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Label fields to score (empty: every field the records carry).
    pub fields: Vec<String>,
    /// Accuracy the automation threshold must reach.
    pub target_precision: f64,
    /// Human seconds per ticket when the data has no handle times.
    pub manual_seconds: Option<f64>,
    /// Records evaluated at once.
    pub concurrency: usize,
    /// Cut-offs for retrieval recall.
    pub ks: Vec<usize>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            fields: Vec::new(),
            target_precision: 0.95,
            manual_seconds: None,
            concurrency: 8,
            ks: vec![1, 5, 10],
        }
    }
}

/// What one record produced, kept for comparisons.
#[derive(Clone, Debug, Serialize)]
pub struct RecordResult {
    /// Ticket id.
    pub id: String,
    /// Field → (predicted value, confidence).
    pub predictions: BTreeMap<String, (String, f64)>,
    /// Gold labels.
    pub gold: BTreeMap<String, String>,
    /// Whether triage asked for escalation.
    pub escalated: bool,
    /// Faults as `stage:kind`.
    pub faults: Vec<String>,
    /// Stage → wall time, microseconds.
    pub latency_us: BTreeMap<String, u64>,
    #[serde(skip)]
    reply: Option<ReplySeen>,
    #[serde(skip)]
    summary: Option<String>,
    #[serde(skip)]
    retrieved: Vec<String>,
}

#[derive(Clone, Debug)]
struct ReplySeen {
    draft: Option<String>,
    citations: usize,
    invalid_citations: usize,
    cited: Vec<String>,
}

/// Reply quality.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplyReport {
    /// Reply proposals made.
    pub proposals: usize,
    /// Drafts among them.
    pub drafts: usize,
    /// Abstentions / proposals.
    pub abstention_rate: f64,
    /// Citations in drafts.
    pub citations: usize,
    /// Citations that passed verification / citations.
    pub citation_validity: f64,
    /// Records with required articles.
    pub retrieval_n: usize,
    /// Mean recall@k (share of the required articles in the top k of the KB search), per k.
    pub retrieval_recall: BTreeMap<usize, f64>,
    /// The best recall@k any ranking could reach (k over the number required), per k.
    pub retrieval_ceiling: BTreeMap<usize, f64>,
    /// Share of records with at least one required article in the top k, per k.
    pub retrieval_hit: BTreeMap<usize, f64>,
    /// Mean share of required articles the drafts cited.
    pub cited_recall: Option<f64>,
    /// Drafts with a reference answer.
    pub answer_n: usize,
    /// Mean ROUGE-L F1 of drafts against reference answers.
    pub answer_rouge_l: Option<f64>,
}

/// Hand-off summary quality.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SummaryReport {
    /// Conversations with reference summaries and a packet.
    pub n: usize,
    /// Mean best-reference ROUGE-L F1 of the packet's summary.
    pub rouge_l: f64,
    /// The same for the first three sentences of the conversation (lead-3).
    pub lead3_rouge_l: f64,
}

/// Latency of one stage, milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latency {
    /// Calls.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// Throughput against the manual baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Throughput {
    /// Records.
    pub records: usize,
    /// Wall time of the whole evaluation, seconds.
    pub wall_seconds: f64,
    /// Records per second.
    pub tickets_per_second: f64,
    /// Per stage.
    pub stages: BTreeMap<String, Latency>,
    /// Faults by `stage:kind`.
    pub faults: BTreeMap<String, usize>,
    /// Human seconds per ticket and where that number comes from.
    pub manual: Option<Manual>,
}

/// The manual baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Manual {
    /// `data` (handle times in the records) or `flag` (--manual-seconds).
    pub source: String,
    /// Human seconds per ticket (mean).
    pub seconds_per_ticket: f64,
    /// The agent's wall seconds per ticket in this run.
    pub agent_seconds_per_ticket: f64,
    /// Human / agent.
    pub speedup: f64,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    /// The data file.
    pub dataset: String,
    /// Records evaluated.
    pub records: usize,
    /// Lines rejected.
    pub rejected: usize,
    /// Plugins evaluated, `slot → id@version (digest)`.
    pub plugins: BTreeMap<String, String>,
    /// Per label field.
    pub fields: BTreeMap<String, ClassificationReport>,
    /// The escalate decision against an `escalate` label.
    pub escalation: Option<BinaryScores>,
    /// Replies.
    pub replies: Option<ReplyReport>,
    /// Hand-off summaries.
    pub summaries: Option<SummaryReport>,
    /// Speed.
    pub throughput: Throughput,
}

/// The predicted value and confidence of `field` in a triage decision.
pub fn predicted(d: &types::TriageDecision, field: &str) -> Option<(String, f64)> {
    let lv = |v: &types::LabeledValue| Some((v.value.clone(), f64::from(v.confidence)));
    match field {
        "category" => lv(&d.category),
        "queue" => lv(&d.queue),
        "language" => lv(&d.language),
        "priority" => Some((
            crate::pipeline::gate::priority_name(d.priority.value).to_string(),
            f64::from(d.priority.confidence),
        )),
        "sentiment" => Some((
            crate::runtime::convert::sentiment(d.sentiment.value)
                .as_str()
                .to_string(),
            f64::from(d.sentiment.confidence),
        )),
        other => d
            .extra_fields
            .iter()
            .find(|x| x.field == other)
            .and_then(|x| lv(&x.decision)),
    }
}

fn gold_of(record: &EvalRecord, field: &str) -> Option<String> {
    record.labels.get(field).cloned().or_else(|| {
        (field == "language")
            .then(|| record.ticket.input.language.clone())
            .flatten()
    })
}

async fn run_one(
    pipeline: &Pipeline,
    record: &EvalRecord,
    fields: &[String],
    n: usize,
) -> RecordResult {
    let plugins = pipeline.active();
    let ticket = Arc::new(record.ticket.clone());
    let scope = RunScope::new(format!("eval_{n}"), ticket.clone());
    let mode = if record.summaries.is_empty() {
        EscalationMode::WhenRequested
    } else {
        EscalationMode::Always
    };
    let Proposals {
        scope,
        stages,
        triage,
        reply,
        escalation,
    } = pipeline.propose(&plugins, ticket, scope, mode).await;
    let mut predictions = BTreeMap::new();
    let mut gold = BTreeMap::new();
    for f in fields {
        if let Some(g) = gold_of(record, f) {
            let p = triage
                .as_ref()
                .and_then(|d| predicted(d, f))
                .unwrap_or_else(|| ("<none>".into(), 0.0));
            predictions.insert(f.clone(), p);
            gold.insert(f.clone(), g);
        }
    }
    let seen = scope
        .articles_seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    // Judge the reply as proposed, even when it failed the checks.
    let proposed_reply = stages.iter().find_map(|s| match &s.invocation.result {
        Ok(PolicyOutput::Reply(r)) => Some(r.clone()),
        _ => None,
    });
    let reply_seen = proposed_reply.map(|r| match &r {
        types::ReplyProposal::Draft(d) => {
            let mut problems = checks::Problems::default();
            let invalid = checks::citations(&mut problems, "citations", &d.citations, &seen);
            ReplySeen {
                draft: reply.as_ref().map(|_| d.body.clone()),
                citations: d.citations.len(),
                invalid_citations: invalid,
                cited: d.citations.iter().map(|c| c.article_id.clone()).collect(),
            }
        }
        types::ReplyProposal::Abstain(_) => ReplySeen {
            draft: None,
            citations: 0,
            invalid_citations: 0,
            cited: Vec::new(),
        },
    });
    let retrieved = if record.required_articles.is_empty() {
        Vec::new()
    } else {
        let collections = pipeline.retrieval_collections();
        let text =
            crate::train::ticket_text(&record.ticket.input.subject, &record.ticket.input.body);
        let k = 10;
        pipeline
            .services
            .kb
            .search(&text, None, &collections, k)
            .map(|hits| hits.into_iter().map(|h| h.article_id).collect())
            .unwrap_or_default()
    };
    RecordResult {
        id: record.ticket.input.id.clone(),
        predictions,
        gold,
        escalated: triage.as_ref().is_some_and(|d| d.escalate.is_some()),
        faults: stages
            .iter()
            .filter_map(|s| s.fault().map(|f| format!("{}:{}", s.stage, f.kind)))
            .collect(),
        latency_us: stages
            .iter()
            .map(|s| (s.stage.as_str().to_string(), s.invocation.stats.wall_us))
            .collect(),
        reply: reply_seen,
        summary: escalation.map(|e| e.summary),
        retrieved,
    }
}

/// Evaluates `records` through `pipeline`; `progress` is called after each record.
pub async fn evaluate(
    pipeline: &Pipeline,
    dataset: &str,
    records: &[EvalRecord],
    rejected: usize,
    options: &EvalOptions,
    progress: &(dyn Fn() + Sync),
) -> (EvalReport, Vec<RecordResult>) {
    let fields: Vec<String> = if options.fields.is_empty() {
        let mut all: Vec<String> = records
            .iter()
            .flat_map(|r| r.labels.keys().cloned())
            .collect();
        all.sort();
        all.dedup();
        all.retain(|f| f != "escalate");
        all
    } else {
        options.fields.clone()
    };
    let started = Instant::now();
    let results: Vec<RecordResult> = futures::stream::iter(records.iter().enumerate())
        .map(|(n, r)| {
            let fields = &fields;
            async move {
                let out = run_one(pipeline, r, fields, n).await;
                progress();
                out
            }
        })
        .buffered(options.concurrency.max(1))
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    let report = aggregate(
        pipeline, dataset, records, &results, rejected, &fields, options, wall,
    );
    (report, results)
}

#[allow(clippy::too_many_arguments)]
fn aggregate(
    pipeline: &Pipeline,
    dataset: &str,
    records: &[EvalRecord],
    results: &[RecordResult],
    rejected: usize,
    fields: &[String],
    options: &EvalOptions,
    wall: f64,
) -> EvalReport {
    let mut field_reports = BTreeMap::new();
    for f in fields {
        let items: Vec<Scored> = results
            .iter()
            .filter_map(|r| {
                let g = r.gold.get(f)?;
                let (p, c) = r.predictions.get(f)?;
                Some(Scored {
                    gold: g.clone(),
                    predicted: p.clone(),
                    confidence: *c,
                })
            })
            .collect();
        if !items.is_empty() {
            field_reports.insert(
                f.clone(),
                metrics::classification(&items, options.target_precision),
            );
        }
    }

    let escalation_pairs: Vec<(bool, bool)> = records
        .iter()
        .zip(results)
        .filter_map(|(rec, res)| {
            let g = rec.labels.get("escalate")?;
            Some((
                matches!(g.to_ascii_lowercase().as_str(), "true" | "yes" | "1"),
                res.escalated,
            ))
        })
        .collect();

    let replies = {
        let seen: Vec<(&EvalRecord, &ReplySeen)> = records
            .iter()
            .zip(results)
            .filter_map(|(rec, r)| r.reply.as_ref().map(|x| (rec, x)))
            .collect();
        let with_required: Vec<(&EvalRecord, &RecordResult)> = records
            .iter()
            .zip(results)
            .filter(|(rec, _)| !rec.required_articles.is_empty())
            .collect();
        if seen.is_empty() && with_required.is_empty() {
            None
        } else {
            let drafts = seen
                .iter()
                .filter(|(_, x)| x.draft.is_some() || x.citations > 0)
                .count();
            let citations: usize = seen.iter().map(|(_, x)| x.citations).sum();
            let invalid: usize = seen.iter().map(|(_, x)| x.invalid_citations).sum();
            let mut retrieval_recall = BTreeMap::new();
            let mut retrieval_ceiling = BTreeMap::new();
            let mut retrieval_hit = BTreeMap::new();
            for &k in &options.ks {
                let at_k = |f: &dyn Fn(&EvalRecord, &RecordResult) -> f64| {
                    mean(with_required.iter().map(|(rec, res)| f(rec, res))).unwrap_or(0.0)
                };
                retrieval_recall.insert(
                    k,
                    at_k(&|rec, res| {
                        metrics::recall_at_k(&res.retrieved, &rec.required_articles, k)
                    }),
                );
                retrieval_ceiling.insert(
                    k,
                    at_k(&|rec, _| {
                        k.min(rec.required_articles.len()) as f64
                            / rec.required_articles.len() as f64
                    }),
                );
                retrieval_hit.insert(
                    k,
                    at_k(&|rec, res| metrics::hit_at_k(&res.retrieved, &rec.required_articles, k)),
                );
            }
            let cited_recall = mean(
                seen.iter()
                    .filter(|(rec, _)| !rec.required_articles.is_empty())
                    .map(|(rec, x)| {
                        metrics::recall_at_k(&x.cited, &rec.required_articles, usize::MAX)
                    }),
            );
            let answers: Vec<f64> = seen
                .iter()
                .filter_map(|(rec, x)| {
                    Some(metrics::rouge_l(x.draft.as_deref()?, rec.reference_answer.as_deref()?).2)
                })
                .collect();
            Some(ReplyReport {
                proposals: seen.len(),
                drafts,
                abstention_rate: if seen.is_empty() {
                    0.0
                } else {
                    1.0 - drafts as f64 / seen.len() as f64
                },
                citations,
                citation_validity: if citations == 0 {
                    1.0
                } else {
                    1.0 - invalid as f64 / citations as f64
                },
                retrieval_n: with_required.len(),
                retrieval_recall,
                retrieval_ceiling,
                retrieval_hit,
                cited_recall,
                answer_n: answers.len(),
                answer_rouge_l: mean(answers.iter().copied()),
            })
        }
    };

    let summary_pairs: Vec<(f64, f64)> = records
        .iter()
        .zip(results)
        .filter(|(rec, _)| !rec.summaries.is_empty())
        .filter_map(|(rec, res)| {
            let summary = res.summary.as_deref()?;
            let lead3 = lead_n(&rec.conversation, 3);
            Some((
                metrics::rouge_l_multi(summary, &rec.summaries),
                metrics::rouge_l_multi(&lead3, &rec.summaries),
            ))
        })
        .collect();
    let summaries = (!summary_pairs.is_empty()).then(|| SummaryReport {
        n: summary_pairs.len(),
        rouge_l: mean(summary_pairs.iter().map(|p| p.0)).unwrap_or(0.0),
        lead3_rouge_l: mean(summary_pairs.iter().map(|p| p.1)).unwrap_or(0.0),
    });

    let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        for (stage, us) in &r.latency_us {
            stages
                .entry(stage.clone())
                .or_default()
                .push(*us as f64 / 1000.0);
        }
        for f in &r.faults {
            *faults.entry(f.clone()).or_default() += 1;
        }
    }
    let stages = stages
        .into_iter()
        .map(|(k, v)| {
            let latency = Latency {
                n: v.len(),
                p50_ms: metrics::percentile(&v, 0.50),
                p95_ms: metrics::percentile(&v, 0.95),
                p99_ms: metrics::percentile(&v, 0.99),
                mean_ms: mean(v.iter().copied()).unwrap_or(0.0),
            };
            (k, latency)
        })
        .collect();
    let n = results.len().max(1) as f64;
    let agent = wall / n;
    let from_data = mean(records.iter().filter_map(|r| r.handle_seconds));
    let manual = match (from_data, options.manual_seconds) {
        (Some(s), _) => Some(("data", s)),
        (None, Some(s)) => Some(("flag", s)),
        (None, None) => None,
    }
    .map(|(source, s)| Manual {
        source: source.into(),
        seconds_per_ticket: s,
        agent_seconds_per_ticket: agent,
        speedup: if agent > 0.0 { s / agent } else { 0.0 },
    });

    EvalReport {
        dataset: dataset.to_string(),
        records: results.len(),
        rejected,
        plugins: pipeline
            .active()
            .iter()
            .map(|(slot, p)| {
                (
                    slot.as_str().to_string(),
                    format!("{} ({})", p.identity.key(), &p.identity.digest[..12]),
                )
            })
            .collect(),
        fields: field_reports,
        escalation: (!escalation_pairs.is_empty()).then(|| metrics::binary(&escalation_pairs)),
        replies,
        summaries,
        throughput: Throughput {
            records: results.len(),
            wall_seconds: wall,
            tickets_per_second: results.len() as f64 / wall.max(1e-9),
            stages,
            faults,
            manual,
        },
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / count as f64)
}

/// The first `n` sentences of a conversation (the lead-n baseline).
pub fn lead_n(conversation: &[String], n: usize) -> String {
    conversation
        .iter()
        .flat_map(|m| {
            deskhost_nlp::text::sentence_ranges(m)
                .into_iter()
                .map(move |r| m[r].to_string())
        })
        .take(n)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Two evaluations of the same records side by side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The incumbent plugin.
    pub incumbent: String,
    /// The candidate plugin.
    pub candidate: String,
    /// Per field.
    pub fields: BTreeMap<String, FieldComparison>,
    /// Median triage latency, ms: (incumbent, candidate).
    pub triage_p50_ms: (f64, f64),
}

/// One field of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldComparison {
    /// Accuracy: (incumbent, candidate).
    pub accuracy: (f64, f64),
    /// Macro-F1: (incumbent, candidate).
    pub macro_f1: (f64, f64),
    /// Share of records where both predicted the same value.
    pub agreement: f64,
    /// Records where they differ (at most 200).
    pub disagreements: Vec<Disagreement>,
}

/// A record the two versions decide differently.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Disagreement {
    /// Ticket id.
    pub id: String,
    /// Gold label.
    pub gold: String,
    /// Incumbent's value.
    pub incumbent: String,
    /// Candidate's value.
    pub candidate: String,
}

/// Compares two evaluations of the same records.
pub fn compare(
    a: (&EvalReport, &[RecordResult]),
    b: (&EvalReport, &[RecordResult]),
    incumbent: &str,
    candidate: &str,
) -> Comparison {
    let mut fields = BTreeMap::new();
    for (name, ra) in &a.0.fields {
        let Some(rb) = b.0.fields.get(name) else {
            continue;
        };
        let mut same = 0usize;
        let mut total = 0usize;
        let mut disagreements = Vec::new();
        for (x, y) in a.1.iter().zip(b.1) {
            let (Some(px), Some(py)) = (x.predictions.get(name), y.predictions.get(name)) else {
                continue;
            };
            total += 1;
            if px.0 == py.0 {
                same += 1;
            } else if disagreements.len() < 200 {
                disagreements.push(Disagreement {
                    id: x.id.clone(),
                    gold: x.gold.get(name).cloned().unwrap_or_default(),
                    incumbent: px.0.clone(),
                    candidate: py.0.clone(),
                });
            }
        }
        fields.insert(
            name.clone(),
            FieldComparison {
                accuracy: (ra.accuracy, rb.accuracy),
                macro_f1: (ra.macro_f1, rb.macro_f1),
                agreement: if total == 0 {
                    1.0
                } else {
                    same as f64 / total as f64
                },
                disagreements,
            },
        );
    }
    let p50 = |r: &EvalReport| r.throughput.stages.get("triage").map_or(0.0, |l| l.p50_ms);
    Comparison {
        incumbent: incumbent.into(),
        candidate: candidate.into(),
        fields,
        triage_p50_ms: (p50(a.0), p50(b.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shared_data_shape() {
        let ticket = serde_json::json!({"id": "b-1", "subject": "", "body": "card lost", "language": "en", "labels": {"intent": "lost_card"}});
        let r = parse_record(&ticket).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.ticket.input.body.as_str(), r.labels["intent"].as_str()),
            ("card lost", "lost_card")
        );

        let scenario = serde_json::json!({"id": "task_1", "query": "I want a card", "required_articles": ["doc_a", "doc_b"]});
        let r = parse_record(&scenario).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.ticket.input.body.as_str(), r.required_articles.len()),
            ("I want a card", 2)
        );

        let dialog = serde_json::json!({"id": "d1", "messages": [
            {"role": "customer", "text": "My phone died. Help?"},
            {"role": "agent", "text": "Sorry! Try a restart."}], "summaries": ["s1", "s2"]});
        let r = parse_record(&dialog).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.ticket.input.body, "My phone died. Help?");
        assert_eq!(r.ticket.input.messages.len(), 1);
        assert_eq!(r.ticket.input.messages[0].author, "agent");
        assert_eq!(lead_n(&r.conversation, 3), "My phone died. Help? Sorry!");

        assert!(parse_record(&serde_json::json!({"body": "x"})).is_err());
    }
}
