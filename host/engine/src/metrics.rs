//! Counters and latency histograms of this process's decisions, in the Prometheus text
//! format (`GET /metrics`). Gauges that live in the store (queue depth, review backlog) are
//! read at scrape time and passed in, so every process sharing a store reports the same.

use deskhost_protocol::run::{RunLine, RunRecord, StageOutcome};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Histogram bounds, seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    ingested: u64,
    decided: u64,
    already: u64,
    failed: u64,
    gate: BTreeMap<&'static str, u64>,
    faults: BTreeMap<(String, &'static str), u64>,
    stages: BTreeMap<&'static str, Histogram>,
    runs: Histogram,
}

/// What the store knows at scrape time.
#[derive(Clone, Debug, Default)]
pub struct StoreGauges {
    /// Ticket versions waiting for a decision.
    pub pending: u64,
    /// Review items without a verdict.
    pub review_open: u64,
    /// Age of the oldest of them, seconds.
    pub review_oldest_seconds: Option<u64>,
    /// Outbox items per connector and state (`pending`, `sending`, `delivered`, `skipped`,
    /// `dead`).
    pub outbox: Vec<(String, String, u64)>,
    /// Per configured connector: whether its last poll of the help desk succeeded (and it is not
    /// paused), and the age in seconds of its oldest waiting outbox item.
    pub connectors: Vec<(String, bool, Option<u64>)>,
}

/// This process's decision metrics.
#[derive(Default)]
pub struct Metrics(Mutex<Inner>);

impl Metrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tickets stored by ingest (new versions).
    pub fn ingested(&self, new_versions: u64) {
        self.inner().ingested += new_versions;
    }

    /// One line of decision output.
    pub fn observe(&self, line: &RunLine) {
        let mut m = self.inner();
        match line {
            RunLine::Decided(record) => {
                m.decided += 1;
                observe_record(&mut m, record);
            }
            RunLine::AlreadyDecided { .. } => m.already += 1,
            RunLine::Error { .. } => m.failed += 1,
        }
    }

    /// The Prometheus text exposition of these metrics and `gauges`.
    pub fn render(&self, gauges: &StoreGauges) -> String {
        let m = self.inner();
        let mut out = String::new();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "deskhost_tickets_ingested_total",
            "counter",
            "New ticket versions stored through this process's API.",
        );
        let _ = writeln!(out, "deskhost_tickets_ingested_total {}", m.ingested);
        family(
            &mut out,
            "deskhost_decisions_total",
            "counter",
            "Ticket versions this process decided, by result.",
        );
        for (result, n) in [
            ("decided", m.decided),
            ("already_decided", m.already),
            ("failed", m.failed),
        ] {
            let _ = writeln!(out, "deskhost_decisions_total{{result=\"{result}\"}} {n}");
        }
        family(
            &mut out,
            "deskhost_gate_outcomes_total",
            "counter",
            "Gate outcomes of decided versions.",
        );
        for (outcome, n) in &m.gate {
            let _ = writeln!(
                out,
                "deskhost_gate_outcomes_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        family(
            &mut out,
            "deskhost_plugin_faults_total",
            "counter",
            "Plugin faults by class and plugin version.",
        );
        for ((plugin, class), n) in &m.faults {
            let _ = writeln!(
                out,
                "deskhost_plugin_faults_total{{plugin=\"{}\",class=\"{class}\"}} {n}",
                label(plugin)
            );
        }
        family(
            &mut out,
            "deskhost_stage_seconds",
            "histogram",
            "Wall time of each policy stage, instantiation included.",
        );
        for (stage, h) in &m.stages {
            h.render(
                &mut out,
                "deskhost_stage_seconds",
                &format!("stage=\"{stage}\""),
            );
        }
        family(
            &mut out,
            "deskhost_decision_seconds",
            "histogram",
            "Wall time of a whole decision.",
        );
        m.runs.render(&mut out, "deskhost_decision_seconds", "");
        family(
            &mut out,
            "deskhost_queue_pending",
            "gauge",
            "Ticket versions waiting for a decision (the whole store).",
        );
        let _ = writeln!(out, "deskhost_queue_pending {}", gauges.pending);
        family(
            &mut out,
            "deskhost_review_backlog",
            "gauge",
            "Review items without a verdict.",
        );
        let _ = writeln!(out, "deskhost_review_backlog {}", gauges.review_open);
        family(
            &mut out,
            "deskhost_review_oldest_seconds",
            "gauge",
            "Age of the oldest open review item (0 when none).",
        );
        let _ = writeln!(
            out,
            "deskhost_review_oldest_seconds {}",
            gauges.review_oldest_seconds.unwrap_or(0)
        );
        family(
            &mut out,
            "deskhost_outbox_items",
            "gauge",
            "Outbox items (effects and replies for the help desks) by connector and state.",
        );
        for (connector, state, n) in &gauges.outbox {
            let _ = writeln!(
                out,
                "deskhost_outbox_items{{connector=\"{}\",state=\"{}\"}} {n}",
                label(connector),
                label(state)
            );
        }
        family(
            &mut out,
            "deskhost_connector_up",
            "gauge",
            "1 when the connector's last poll of its help desk succeeded and it is not paused.",
        );
        for (connector, up, _) in &gauges.connectors {
            let _ = writeln!(
                out,
                "deskhost_connector_up{{connector=\"{}\"}} {}",
                label(connector),
                u8::from(*up)
            );
        }
        family(
            &mut out,
            "deskhost_outbox_oldest_waiting_seconds",
            "gauge",
            "Age of the connector's oldest undelivered outbox item (0 when none).",
        );
        for (connector, _, oldest) in &gauges.connectors {
            let _ = writeln!(
                out,
                "deskhost_outbox_oldest_waiting_seconds{{connector=\"{}\"}} {}",
                label(connector),
                oldest.unwrap_or(0)
            );
        }
        out
    }
}

fn observe_record(m: &mut Inner, record: &RunRecord) {
    *m.gate.entry(record.gate.outcome.as_str()).or_default() += 1;
    m.runs.observe(record.elapsed_us as f64 / 1e6);
    let stages = [
        (
            "triage",
            record
                .triage
                .as_ref()
                .map(|s| (&s.plugin, s.outcome, s.stats.wall_us)),
        ),
        (
            "reply",
            record
                .reply
                .as_ref()
                .map(|s| (&s.plugin, s.outcome, s.stats.wall_us)),
        ),
        (
            "escalation",
            record
                .escalation
                .as_ref()
                .map(|s| (&s.plugin, s.outcome, s.stats.wall_us)),
        ),
    ];
    for (stage, seen) in stages {
        let Some((plugin, outcome, wall_us)) = seen else {
            continue;
        };
        m.stages
            .entry(stage)
            .or_default()
            .observe(wall_us as f64 / 1e6);
        if let StageOutcome::Fault(kind) = outcome {
            *m.faults.entry((plugin.clone(), kind.as_str())).or_default() += 1;
        }
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let mut h = Histogram::default();
        h.observe(0.0003);
        h.observe(0.02);
        let mut out = String::new();
        h.render(&mut out, "x", "stage=\"triage\"");
        assert!(
            out.contains("x_bucket{stage=\"triage\",le=\"0.00025\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{stage=\"triage\",le=\"0.0005\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{stage=\"triage\",le=\"+Inf\"} 2"),
            "{out}"
        );
        assert!(out.contains("x_count{stage=\"triage\"} 2"), "{out}");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
