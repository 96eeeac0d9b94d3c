//! Rendering an evaluation: a one-screen text summary and a self-contained HTML page with
//! inline SVG plots (reliability diagram, automation curve, confusion matrix). No scripts, no
//! external resources: the page opens anywhere, offline.

use super::metrics::{AutomationPoint, CalibrationBin, ClassificationReport};
use super::{Comparison, EvalReport};
use std::fmt::Write;

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The one-screen text summary.
pub fn text(report: &EvalReport, comparison: Option<&Comparison>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "deskhost eval: {} ({} records, {} rejected)",
        report.dataset, report.records, report.rejected
    );
    for (slot, plugin) in &report.plugins {
        let _ = writeln!(s, "  {slot:<11} {plugin}");
    }
    if !report.fields.is_empty() {
        let _ = writeln!(
            s,
            "\n{:<14} {:>6} {:>8} {:>9} {:>6}   auto-apply at {} precision",
            "field",
            "n",
            "accuracy",
            "macro-F1",
            "ECE",
            pct(report
                .fields
                .values()
                .next()
                .map_or(0.95, |f| f.target_precision))
        );
        for (name, f) in &report.fields {
            let auto = match &f.threshold_for_target {
                Some(p) => format!("threshold {:.2} covers {}", p.threshold, pct(p.coverage)),
                None => "not reachable".into(),
            };
            let _ = writeln!(
                s,
                "{name:<14} {:>6} {:>8.3} {:>9.3} {:>6.3}   {auto}",
                f.n, f.accuracy, f.macro_f1, f.ece
            );
        }
    }
    if let Some(e) = &report.escalation {
        let _ = writeln!(
            s,
            "\nescalation: precision {:.3}, recall {:.3} ({} records, {} should escalate)",
            e.precision, e.recall, e.n, e.positives
        );
    }
    if let Some(r) = &report.replies {
        let _ = writeln!(
            s,
            "\nreplies: {} proposals, {} drafts, abstention {}, citations valid {} of {}",
            r.proposals,
            r.drafts,
            pct(r.abstention_rate),
            pct(r.citation_validity),
            r.citations
        );
        if r.retrieval_n > 0 {
            let _ = writeln!(
                s,
                "  retrieval of required articles ({} records):",
                r.retrieval_n
            );
            for (k, recall) in &r.retrieval_recall {
                let ceiling = r.retrieval_ceiling.get(k).copied().unwrap_or(1.0);
                let hit = r.retrieval_hit.get(k).copied().unwrap_or(0.0);
                let _ = writeln!(
                    s,
                    "    @{k:<3} recall {recall:.3} (ceiling {ceiling:.3})  hit {hit:.3}"
                );
            }
        }
        if let Some(c) = r.cited_recall {
            let _ = writeln!(s, "  drafts cite {} of the required articles", pct(c));
        }
        if let Some(a) = r.answer_rouge_l {
            let _ = writeln!(
                s,
                "  answer overlap with the human reply: ROUGE-L {a:.3} ({} drafts)",
                r.answer_n
            );
        }
    }
    if let Some(m) = &report.summaries {
        let _ = writeln!(
            s,
            "\nhand-off summaries: ROUGE-L {:.3} vs lead-3 {:.3} ({} conversations)",
            m.rouge_l, m.lead3_rouge_l, m.n
        );
    }
    let t = &report.throughput;
    let _ = writeln!(
        s,
        "\nspeed: {} records in {:.2}s = {:.1} tickets/s",
        t.records, t.wall_seconds, t.tickets_per_second
    );
    for (stage, l) in &t.stages {
        let _ = writeln!(
            s,
            "  {stage:<11} p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms",
            l.p50_ms, l.p95_ms, l.p99_ms
        );
    }
    if let Some(m) = &t.manual {
        let _ = writeln!(
            s,
            "  manual baseline ({}): {:.0} s per ticket; the agent takes {:.4} s: {:.0}x",
            m.source, m.seconds_per_ticket, m.agent_seconds_per_ticket, m.speedup
        );
    } else {
        let _ = writeln!(
            s,
            "  manual baseline: none in the data; pass --manual-seconds to compare"
        );
    }
    let faults: Vec<String> = t.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        s,
        "  faults: {}",
        if faults.is_empty() {
            "none".into()
        } else {
            faults.join(", ")
        }
    );
    if let Some(c) = comparison {
        let _ = writeln!(
            s,
            "\ncompare: {} (incumbent) vs {} (candidate)",
            c.incumbent, c.candidate
        );
        for (name, f) in &c.fields {
            let _ = writeln!(
                s,
                "  {name:<12} macro-F1 {:.3} → {:.3}, accuracy {:.3} → {:.3}, agreement {}, {} disagreements",
                f.macro_f1.0,
                f.macro_f1.1,
                f.accuracy.0,
                f.accuracy.1,
                pct(f.agreement),
                f.disagreements.len()
            );
        }
        let _ = writeln!(
            s,
            "  triage p50 {:.2} ms → {:.2} ms",
            c.triage_p50_ms.0, c.triage_p50_ms.1
        );
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 320.0;
const H: f64 = 240.0;
const PAD: f64 = 36.0;

fn axes(s: &mut String, x_label: &str, y_label: &str) {
    let (x0, y0, x1, y1) = (PAD, H - PAD, W - 10.0, 10.0);
    let _ = write!(
        s,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" class="axis"/>"##
    );
    for t in [0.0, 0.5, 1.0] {
        let x = x0 + t * (x1 - x0);
        let y = y0 - t * (y0 - y1);
        let _ = write!(
            s,
            r##"<text x="{x}" y="{}" class="tick" text-anchor="middle">{t}</text><text x="{}" y="{}" class="tick" text-anchor="end">{t}</text>"##,
            y0 + 14.0,
            x0 - 4.0,
            y + 4.0
        );
    }
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" class="label" text-anchor="middle">{}</text><text x="12" y="{}" class="label" text-anchor="middle" transform="rotate(-90 12 {})">{}</text>"##,
        (x0 + x1) / 2.0,
        H - 4.0,
        esc(x_label),
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(y_label)
    );
}

fn sx(v: f64) -> f64 {
    PAD + v.clamp(0.0, 1.0) * (W - 10.0 - PAD)
}

fn sy(v: f64) -> f64 {
    (H - PAD) - v.clamp(0.0, 1.0) * (H - PAD - 10.0)
}

/// Reliability diagram: accuracy per confidence bin against the diagonal.
pub fn reliability_svg(bins: &[CalibrationBin], ece: f64) -> String {
    let mut s = format!(
        r##"<svg class="plot reliability" viewBox="0 0 {W} {H}" role="img" aria-label="reliability diagram"><title>Reliability diagram (ECE {ece:.3})</title>"##
    );
    axes(&mut s, "confidence", "accuracy");
    let _ = write!(
        s,
        r##"<line x1="{}" y1="{}" x2="{}" y2="{}" class="diagonal"/>"##,
        sx(0.0),
        sy(0.0),
        sx(1.0),
        sy(1.0)
    );
    for b in bins.iter().filter(|b| b.count > 0) {
        let x = sx(b.lower) + 1.0;
        let w = sx(b.upper) - sx(b.lower) - 2.0;
        let y = sy(b.accuracy);
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" class="bar"><title>{:.1}–{:.1}: {} predictions, confidence {:.3}, accuracy {:.3}</title></rect>"##,
            sy(0.0) - y,
            b.lower,
            b.upper,
            b.count,
            b.confidence,
            b.accuracy
        );
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" class="mean"/>"##,
            sx(b.confidence),
            sy(b.confidence)
        );
    }
    s.push_str("</svg>");
    s
}

/// Automation curve: accuracy of the auto-applied share against that share.
pub fn automation_svg(
    points: &[AutomationPoint],
    target: f64,
    chosen: Option<&AutomationPoint>,
) -> String {
    let mut s = format!(
        r##"<svg class="plot automation" viewBox="0 0 {W} {H}" role="img" aria-label="automation curve"><title>Automation curve</title>"##
    );
    axes(&mut s, "share auto-applied", "accuracy of those");
    let _ = write!(
        s,
        r##"<line x1="{}" y1="{:.1}" x2="{}" y2="{:.1}" class="target"/>"##,
        sx(0.0),
        sy(target),
        sx(1.0),
        sy(target)
    );
    let path: Vec<String> = points
        .iter()
        .filter(|p| p.coverage > 0.0)
        .map(|p| format!("{:.1},{:.1}", sx(p.coverage), sy(p.accuracy)))
        .collect();
    let _ = write!(
        s,
        r##"<polyline points="{}" class="curve"/>"##,
        path.join(" ")
    );
    if let Some(p) = chosen {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" class="chosen"><title>threshold {:.2}: {:.1}% auto-applied at {:.1}% accuracy</title></circle>"##,
            sx(p.coverage),
            sy(p.accuracy),
            p.threshold,
            p.coverage * 100.0,
            p.accuracy * 100.0
        );
    }
    s.push_str("</svg>");
    s
}

/// Confusion matrix heat map, rows normalised (gold × predicted).
pub fn confusion_svg(labels: &[String], matrix: &[Vec<usize>]) -> String {
    let k = labels.len().max(1);
    let size = 300.0;
    let cell = size / k as f64;
    let left = 90.0;
    let top = 10.0;
    let mut s = format!(
        r##"<svg class="plot confusion" viewBox="0 0 {} {}" role="img" aria-label="confusion matrix"><title>Confusion matrix (rows: gold, columns: predicted)</title>"##,
        left + size + 10.0,
        top + size + 30.0
    );
    for (g, row) in matrix.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (p, &count) in row.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let share = count as f64 / total.max(1) as f64;
            let class = if g == p { "hit" } else { "miss" };
            let _ = write!(
                s,
                r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" class="{class}" fill-opacity="{:.3}"><title>gold {} → predicted {}: {count} ({:.1}%)</title></rect>"##,
                left + p as f64 * cell,
                top + g as f64 * cell,
                cell,
                cell,
                0.15 + 0.85 * share,
                esc(&labels[g]),
                esc(&labels[p]),
                share * 100.0
            );
        }
    }
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{top}" width="{size}" height="{size}" class="frame"/>"##
    );
    if k <= 16 {
        for (i, l) in labels.iter().enumerate() {
            let _ = write!(
                s,
                r##"<text x="{}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
                left - 4.0,
                top + (i as f64 + 0.5) * cell + 3.0,
                esc(l)
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" class="label" text-anchor="middle">predicted ({k} classes)</text>"##,
        left + size / 2.0,
        top + size + 22.0
    );
    s.push_str("</svg>");
    s
}

fn field_section(name: &str, f: &ClassificationReport) -> String {
    let mut s = format!(
        r##"<section class="field" id="field-{0}"><h2>{0}</h2>"##,
        esc(name)
    );
    let auto = match &f.threshold_for_target {
        Some(p) => format!(
            "threshold <b>{:.2}</b> auto-applies <b>{}</b> at {} accuracy",
            p.threshold,
            pct(p.coverage),
            pct(p.accuracy)
        ),
        None => format!("no threshold reaches {} accuracy", pct(f.target_precision)),
    };
    let _ = write!(
        s,
        r##"<p class="headline">n {} · accuracy <b>{:.3}</b> · macro-F1 <b>{:.3}</b> · ECE <b>{:.3}</b> · {auto}</p><div class="plots">{}{}{}</div>"##,
        f.n,
        f.accuracy,
        f.macro_f1,
        f.ece,
        reliability_svg(&f.calibration, f.ece),
        automation_svg(
            &f.automation,
            f.target_precision,
            f.threshold_for_target.as_ref()
        ),
        confusion_svg(&f.labels, &f.confusion)
    );
    s.push_str(r##"<details><summary>per class</summary><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"##);
    for c in &f.classes {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
            esc(&c.label),
            c.precision,
            c.recall,
            c.f1,
            c.support
        );
    }
    s.push_str("</table></details></section>");
    s
}

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d2330; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
pre { background: #f4f6f9; padding: 1rem; overflow-x: auto; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
.plot { width: 320px; height: auto; background: #fbfcfe; border: 1px solid #dde3ea; }
.axis { stroke: #6b7280; } .diagonal { stroke: #9ca3af; stroke-dasharray: 4 3; }
.bar { fill: #3b82f6; fill-opacity: 0.6; } .mean { fill: #1e3a8a; }
.curve { fill: none; stroke: #059669; stroke-width: 2; } .target { stroke: #dc2626; stroke-dasharray: 5 3; }
.chosen { fill: #dc2626; } .hit { fill: #059669; } .miss { fill: #dc2626; } .frame { fill: none; stroke: #9ca3af; }
.tick { font-size: 9px; fill: #4b5563; } .label { font-size: 10px; fill: #1f2937; }
table { border-collapse: collapse; margin: 0.5rem 0; } td, th { padding: 2px 10px; border-bottom: 1px solid #e5e7eb; text-align: right; }
td:first-child, th:first-child { text-align: left; }
"#;

/// The HTML page.
pub fn html(report: &EvalReport, comparison: Option<&Comparison>) -> String {
    let mut s = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>deskhost eval: {}</title><style>{STYLE}</style></head><body>",
        esc(&report.dataset)
    );
    let _ = write!(
        s,
        "<h1>deskhost eval: {}</h1><pre class=\"summary\">{}</pre>",
        esc(&report.dataset),
        esc(&text(report, comparison))
    );
    for (name, f) in &report.fields {
        s.push_str(&field_section(name, f));
    }
    if let Some(c) = comparison {
        s.push_str("<section id=\"compare\"><h2>Disagreements</h2>");
        for (name, f) in &c.fields {
            let _ = write!(
                s,
                "<h3>{}</h3><table><tr><th>ticket</th><th>gold</th><th>incumbent</th><th>candidate</th></tr>",
                esc(name)
            );
            for d in f.disagreements.iter().take(50) {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&d.id),
                    esc(&d.gold),
                    esc(&d.incumbent),
                    esc(&d.candidate)
                );
            }
            s.push_str("</table>");
        }
        s.push_str("</section>");
    }
    s.push_str("</body></html>\n");
    s
}
